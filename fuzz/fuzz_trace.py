"""Fuzz ``read_trace``: raw bytes, or re-framed payloads (valid CRCs, so edits reach the record
checks). An accepted trace must be the original: its chain binds every record."""

from __future__ import annotations

import _harness

from umlos.evidence.trace import read_trace

ORIGINAL = b""


def one_input(data: bytes) -> None:
    log = _harness.log_input(data)
    read_trace(log)
    if log != ORIGINAL:
        raise AssertionError("read_trace accepted a trace other than the original")


if __name__ == "__main__":
    ORIGINAL = (_harness.committed_run() / "trace/trace.cborlog").read_bytes()
    _harness.main("trace", one_input, _harness.log_seeds(ORIGINAL))
