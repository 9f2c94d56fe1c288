"""Fuzz ``umlos.codec.decode``: accepted input must re-encode to itself (canonical)."""

from __future__ import annotations

import _harness

from umlos.codec import decode, encode


def one_input(data: bytes) -> None:
    value = decode(data)
    if encode(value) != data:
        raise AssertionError(f"decode accepted non-canonical input {data.hex()}")


if __name__ == "__main__":
    run = _harness.committed_run()
    seeds = [p.read_bytes() for p in sorted(run.rglob("*.cbor"))]
    for log in ("trace/trace.cborlog", "journal/journal.cborlog", "wal/run_commit.cborlog"):
        seeds += _harness.payloads((run / log).read_bytes())
    _harness.main("cbor", one_input, seeds)
