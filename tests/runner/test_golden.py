"""The golden demo (examples/hello): pinned identities + a fixed test key → pinned hashes.

Regenerate golden.json (only for an intended format or arithmetic change, with an ADR):
    python -m tests.runner.test_golden
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from umlos.manifest import load_manifest
from umlos.runner import execute
from umlos.runner.pins import golden_pins

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"
KEY_SEED = hashlib.sha256(b"umlos golden demo key").digest()


def _golden_run(runs_root: Path) -> dict[str, Any]:
    backend = load_manifest(HELLO / "manifest.yaml").manifest.backend
    assert backend is not None
    summary = execute(
        HELLO / "manifest.yaml",
        runs_root=runs_root,
        signing_key=Ed25519PrivateKey.from_private_bytes(KEY_SEED),
        pins=golden_pins(backend),
    )
    keys = ("run_id", "manifest_hash", "trace_final_hash", "checkpoint_hash", "certificate_hash")
    return {k: summary.as_dict()[k] for k in keys} | {"steps": summary.steps}


def test_golden_demo_reproduces_its_committed_hashes(tmp_path: Path) -> None:
    expected = json.loads((HELLO / "golden.json").read_text())
    assert _golden_run(tmp_path) == expected


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UMLOS_HOME"] = tmp
        values = _golden_run(Path(tmp) / "runs")
    (HELLO / "golden.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    json.dump(values, sys.stdout, indent=2)
