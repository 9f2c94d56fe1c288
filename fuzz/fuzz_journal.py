"""Fuzz ``read_journal``: raw bytes, or re-framed payloads. An accepted journal must be a prefix
of the original (a journal has no end marker; every entry is hash-linked to the one before)."""

from __future__ import annotations

import _harness

from umlos.evidence.journal import read_journal

ORIGINAL: list[bytes] = []


def one_input(data: bytes) -> None:
    log = _harness.log_input(data)
    read_journal(log)
    got = _harness.payloads(log)
    if got != ORIGINAL[: len(got)]:
        raise AssertionError("read_journal accepted entries that are not the original's")


if __name__ == "__main__":
    data = (_harness.committed_run() / "journal/journal.cborlog").read_bytes()
    ORIGINAL = _harness.payloads(data)
    _harness.main("journal", one_input, _harness.log_seeds(data))
