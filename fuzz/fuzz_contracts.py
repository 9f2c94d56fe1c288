"""Fuzz ``umlos.contracts.check``: the input replaces one file of a private copy of
``contracts/`` (first byte picks the file). It must return a CheckResult (issues, not
tracebacks) or raise a typed error."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import _harness

from umlos.contracts import check

CONTRACTS = _harness.ROOT / "contracts"
FILES = sorted(p.relative_to(CONTRACTS).as_posix() for p in CONTRACTS.rglob("*.yaml"))
COPY = Path()


def one_input(data: bytes) -> None:
    if not data:
        return
    rel = FILES[data[0] % len(FILES)]
    (COPY / rel).write_bytes(data[1:])
    try:
        result = check(COPY)
        if not result.ok and not result.issues:
            raise AssertionError("check failed without naming an issue")
    finally:
        shutil.copyfile(CONTRACTS / rel, COPY / rel)


if __name__ == "__main__":
    COPY = Path(tempfile.mkdtemp(prefix="umlos-fuzz-contracts-")) / "contracts"
    shutil.copytree(CONTRACTS, COPY)
    check(COPY)  # warm the caches
    seeds = [bytes([i]) + (CONTRACTS / rel).read_bytes() for i, rel in enumerate(FILES)]
    _harness.main("contracts", one_input, seeds)
