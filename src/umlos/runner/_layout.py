"""The run directory: one place that names every file (docs/formats/run-directory.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from umlos.evidence.wal import pointer_path, wal_path


@dataclass(frozen=True, slots=True)
class RunLayout:
    """Paths inside ``<runs_root>/<run_id>/``."""

    root: Path

    @property
    def manifest_source(self) -> Path:
        """The manifest exactly as the user gave it (bytes copied)."""
        return self.root / "manifest.yaml"

    @property
    def manifest_normalized(self) -> Path:
        """Canonical CBOR of the normalized manifest; its digest is ``manifest_hash``."""
        return self.root / "manifest.cbor"

    @property
    def environment(self) -> Path:
        """Canonical CBOR of the captured EnvironmentManifest."""
        return self.root / "environment.cbor"

    @property
    def trace(self) -> Path:
        return self.root / "trace" / "trace.cborlog"

    @property
    def journal(self) -> Path:
        return self.root / "journal" / "journal.cborlog"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def certificate(self) -> Path:
        return self.root / "execution_certificate.cbor"

    @property
    def revocations(self) -> Path:
        return self.root / "revocation_bundle.cbor"

    @property
    def trust_store(self) -> Path:
        """The public trust roots the run was signed under (never a private key)."""
        return self.root / "trust_store.cbor"

    @property
    def wal(self) -> Path:
        return wal_path(self.root)

    @property
    def committed(self) -> Path:
        return pointer_path(self.root)

    @property
    def summary(self) -> Path:
        """Human-readable summary (``run.json``); derived, never an input to verification."""
        return self.root / "run.json"
