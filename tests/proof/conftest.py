"""One real committed run, made once per session, and private copies of it to damage.

The run is the classification quickstart (iris, an MLP) shortened to 12 training steps with a
checkpoint every 4, executed by :func:`umlos.runner.execute` under a private ``UMLOS_HOME`` (a
fresh signing key). Its directory holds every artifact kind the sweeps corrupt: the run-commit
WAL, the trace, the journal, four checkpoints, the certificate, ``manifest.cbor`` and
``environment.cbor``. Tests never touch the original: they mutate a :func:`run_copy`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from umlos._generated.records import RevocationBundle, TrustStore
from umlos.codec import decode
from umlos.evidence.keys import trust_store
from umlos.quickstart import write_quickstart
from umlos.runner import execute
from umlos.runner.verify import verify_run

MAX_STEPS = 12
CHECKPOINT_FREQUENCY = 4


@dataclass(frozen=True)
class CommittedRun:
    """The pristine run directory and what a verifier needs besides it."""

    root: Path  # <runs>/<run_id>; never written after the fixture returns
    home: Path  # the UMLOS_HOME it was signed under
    run_id: str
    tenant_id: str
    trust_store: TrustStore  # the verifier's store: the key the run was signed with
    revocations: RevocationBundle

    def copy_to(self, parent: Path) -> Path:
        """A private copy under ``parent/<run_id>`` (verify_run checks the directory's name)."""
        dest = parent / self.run_id
        shutil.copytree(self.root, dest)
        return dest


@pytest.fixture(scope="session")
def committed_run(tmp_path_factory: pytest.TempPathFactory) -> CommittedRun:
    base = tmp_path_factory.mktemp("proof-run")
    home = base / "umlos-home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLOS_HOME", str(home))
        manifest = write_quickstart("classification", base / "manifest")
        text = manifest.read_text()
        short = text.replace("limits: {max_epochs: 60}", f"limits: {{max_steps: {MAX_STEPS}}}")
        assert short != text, "the quickstart template changed: update the proof fixture"
        manifest.write_text(short + f"checkpoint_frequency: {CHECKPOINT_FREQUENCY}\n")
        summary = execute(manifest, runs_root=base / "runs")
        store = trust_store()
    root = Path(summary.run_dir)
    assert summary.status == "COMMITTED", summary
    report = verify_run(root, trust_store=store)
    assert report.verdict == "PASS", [s for s in report.steps if s.status != "PASS"]
    assert report.tenant_id is not None
    return CommittedRun(
        root=root,
        home=home,
        run_id=summary.run_id,
        tenant_id=report.tenant_id,
        trust_store=store,
        revocations=RevocationBundle.from_obj(
            decode((root / "revocation_bundle.cbor").read_bytes())
        ),
    )


@pytest.fixture(autouse=True)
def _umlos_home(committed_run: CommittedRun, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every proof test sees the key store the run was signed with, never the user's."""
    monkeypatch.setenv("UMLOS_HOME", str(committed_run.home))
    yield


@pytest.fixture
def run_copy(committed_run: CommittedRun, tmp_path: Path) -> Path:
    """A private, mutable copy of the committed run, under its own run id."""
    return committed_run.copy_to(tmp_path / "runs")
