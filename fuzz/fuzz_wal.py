"""Fuzz the run-commit WAL: ``read_wal`` (accepted ⇒ a prefix of the original records) and
``recover`` (returns a report or aborts with a typed error; afterwards the log reads strictly).
Mode bit 1 of the first byte publishes the run's COMMITTED pointer beside the log."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import _harness

from umlos.evidence.wal import read_wal, recover, wal_path

RUN = Path()
ORIGINAL: list[bytes] = []


def one_input(data: bytes) -> None:
    log = _harness.log_input(data)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / RUN.name
        path = wal_path(run_dir)
        path.parent.mkdir(parents=True)
        path.write_bytes(log)
        try:
            read_wal(path)
            got = _harness.payloads(log)
            if got != ORIGINAL[: len(got)]:
                raise AssertionError("read_wal accepted records that are not the original's")
        except _harness.Error:
            pass
        if data and data[0] & 2:
            shutil.copyfile(RUN / "COMMITTED", run_dir / "COMMITTED")
        final = read_wal(wal_path(RUN))[-1]
        recover(
            run_dir,
            tenant_id=final.tenant_id,
            run_id=final.run_id,
            artifact_hash=lambda name: getattr(final, name),
            remove_tmp=lambda _name, _hash: None,
        )
        read_wal(path)  # what recovery leaves must read strictly


if __name__ == "__main__":
    RUN = _harness.committed_run()
    original = wal_path(RUN).read_bytes()
    ORIGINAL = _harness.payloads(original)
    seeds = _harness.log_seeds(original)
    _harness.main("wal", one_input, seeds + [bytes([s[0] | 2]) + s[1:] for s in seeds])
