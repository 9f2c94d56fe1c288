"""`umlos run`: determinism, idempotence, and crash-safe resume (SIGKILL at every kill point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from umlos.runner import RunExistsError, execute


def test_same_manifest_twice_gives_the_same_certificate(
    small_manifest: Path, tmp_path: Path
) -> None:
    a = execute(small_manifest, runs_root=tmp_path / "a")
    b = execute(small_manifest, runs_root=tmp_path / "b")
    assert a.status == b.status == "COMMITTED"
    assert a.certificate_hash == b.certificate_hash
    assert a.trace_final_hash == b.trace_final_hash and a.checkpoint_hash == b.checkpoint_hash
    assert a.steps == 31  # 30 train steps + 1 evaluation
    assert 0.0 <= a.metrics["evaluate.accuracy"] <= 1.0


def test_a_committed_run_is_not_run_again(small_manifest: Path, tmp_path: Path) -> None:
    first = execute(small_manifest, runs_root=tmp_path)
    certificate = Path(first.run_dir, "execution_certificate.cbor").read_bytes()
    again = execute(small_manifest, runs_root=tmp_path)
    assert again.certificate_hash == first.certificate_hash
    assert Path(first.run_dir, "execution_certificate.cbor").read_bytes() == certificate


# Every named point of the runner, some several times: mid-training, around checkpoints, after
# the trace ends, around the certificate and each WAL record.
KILL_POINTS = [
    "wal-prepared:1",
    "step:1",
    "step:6",
    "checkpoint-before:1",
    "checkpoint-after:1",
    "checkpoint-file:3",
    "checkpoint-file:12",
    "checkpoint-rename:2",
    "checkpoint-pointer:3",
    "wal-append:1",
    "wal-append:2",
    "wal-append:3",
    "committed-written:1",
    "step:15",
    "checkpoint-before:3",
    "checkpoint-after:4",
    "step:29",
    "trace-ended:1",
    "certificate-written:1",
    "wal-cert-signed:1",
    "wal-finalized:1",
]


def _run_in_subprocess(manifest: Path, runs_root: Path, crash_at: str) -> int:
    code = (
        "import sys\nfrom umlos.runner import execute\n"
        f"execute({str(manifest)!r}, runs_root={str(runs_root)!r})\n"
    )
    env = {**os.environ, "UMLOS_CRASH_AT": crash_at}
    return subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", KILL_POINTS)
def test_resume_after_sigkill_reaches_the_same_certificate(
    small_manifest: Path, tmp_path: Path, crash_at: str
) -> None:
    reference = execute(small_manifest, runs_root=tmp_path / "reference")
    runs = tmp_path / "crashed"
    assert _run_in_subprocess(small_manifest, runs, crash_at) == -9  # SIGKILL
    with pytest.raises(RunExistsError):
        execute(small_manifest, runs_root=runs)
    resumed = execute(small_manifest, runs_root=runs, resume_run=True)
    assert resumed.status == "COMMITTED"
    assert resumed.certificate_hash == reference.certificate_hash
    assert resumed.trace_final_hash == reference.trace_final_hash
    for name in ("trace/trace.cborlog", "journal/journal.cborlog", "execution_certificate.cbor"):
        assert (
            Path(resumed.run_dir, name).read_bytes() == Path(reference.run_dir, name).read_bytes()
        ), name
