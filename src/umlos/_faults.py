"""Crash points for the durability tests: ``UMLOS_CRASH_AT=<label>:<n>`` kills the process.

The n-th time the run reaches the point named ``label`` it sends itself SIGKILL — no cleanup,
no flush, exactly what a power cut or the OOM killer does. Unset (always, outside the tests),
:func:`point` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ENV = "UMLOS_CRASH_AT"
_counts: dict[str, int] = {}


def point(label: str) -> None:
    spec = os.environ.get(_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != label:
        return
    _counts[label] = _counts.get(label, 0) + 1
    if _counts[label] == int(nth or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
