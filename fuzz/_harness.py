"""Shared plumbing of the atheris harnesses in this folder (see README.md).

Each ``fuzz_<parser>.py`` defines ``one_input(data: bytes) -> None`` and calls :func:`main`. The
harness imports ``umlos`` under atheris' coverage instrumentation, makes one small committed run
(the seeds), and fuzzes. A :class:`umlos.errors.Error` is the expected outcome for bad input;
any other exception is a finding: its signature (type and innermost frame) is counted, the first
input per signature is saved under ``$UMLOS_FUZZ_OUT/<target>/`` (default
``/tmp/umlos-fuzz``), and the campaign goes on, so one
known bug does not hide the next. A hang is libFuzzer's ``-timeout`` (10 s here). Progress and
findings are written to ``$UMLOS_FUZZ_OUT/<target>/summary.json`` every few seconds.

Not a test dependency: atheris is installed by hand for a campaign (``pip install atheris``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parents[1]
# Outside the work tree: findings are inputs to look at, not files to commit.
OUT = Path(os.environ.get("UMLOS_FUZZ_OUT", Path(tempfile.gettempdir()) / "umlos-fuzz"))
sys.path.insert(0, str(ROOT / "src"))

PARSERS = (
    "umlos.codec",
    "umlos.contracts",
    "umlos.evidence.certificate",
    "umlos.evidence.checkpoint",
    "umlos.evidence.journal",
    "umlos.evidence.trace",
    "umlos.evidence.wal",
    "umlos.manifest",
    "umlos.model.ir",
    "umlos.runner",
)
with atheris.instrument_imports(include=["umlos"]):
    for _module in PARSERS:  # imported first, so that every umlos module is instrumented
        importlib.import_module(_module)

from umlos.errors import Error  # noqa: E402 - only after the instrumented imports


def committed_run() -> Path:
    """The proof fixture's run (tests/proof/conftest.py), made once per process in a temp dir."""
    from umlos.quickstart import write_quickstart
    from umlos.runner import execute

    base = Path(tempfile.mkdtemp(prefix="umlos-fuzz-"))
    os.environ["UMLOS_HOME"] = str(base / "home")
    manifest = write_quickstart("classification", base / "manifest")
    text = manifest.read_text().replace("limits: {max_epochs: 60}", "limits: {max_steps: 12}")
    manifest.write_text(text + "checkpoint_frequency: 4\n")
    return Path(execute(manifest, runs_root=base / "runs").run_dir)


class _Stats:
    def __init__(self, target: str) -> None:
        self.target = target
        self.dir = OUT / target
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.executions = 0
        self.typed_errors = 0
        self.accepted = 0
        self.findings: dict[str, dict[str, Any]] = {}
        self.last_write = 0.0

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_write < 5:
            return
        self.last_write = now
        summary = {
            "target": self.target,
            "executions": self.executions,
            "seconds": round(now - self.started, 1),
            "accepted": self.accepted,
            "typed_errors": self.typed_errors,
            "unique_findings": len(self.findings),
            "findings": self.findings,
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-1] if frames else None
    where = f"{Path(inner.filename).name}:{inner.lineno}" if inner else "?"
    return f"{type(exc).__name__} at {where}"


def main(target: str, one_input: Callable[[bytes], None], seeds: list[bytes]) -> None:
    """Fuzz ``one_input`` from ``seeds`` with libFuzzer flags from the command line."""
    stats = _Stats(target)
    stop = os.environ.get("FUZZ_STOP_ON_CRASH") == "1"

    def test_one_input(data: bytes) -> None:
        stats.executions += 1
        try:
            one_input(data)
            stats.accepted += 1
        except Error:
            stats.typed_errors += 1
        except Exception as exc:
            if stop:
                raise
            sig = _signature(exc)
            entry = stats.findings.setdefault(sig, {"count": 0})
            entry["count"] += 1
            if entry["count"] == 1:
                name = hashlib.sha1(data).hexdigest()
                (stats.dir / f"{name}.bin").write_bytes(data)
                entry["input"] = f"{name}.bin"
                entry["traceback"] = "".join(traceback.format_exception(exc))[-3000:]
                stats.write(force=True)
        stats.write()

    corpus = Path(tempfile.mkdtemp(prefix=f"umlos-corpus-{target}-"))
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    argv = [*sys.argv]
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(str(corpus))
    if not any(a.startswith("-timeout=") for a in argv[1:]):
        argv.append("-timeout=10")
    if not any(a.startswith("-max_len=") for a in argv[1:]):
        argv.append(f"-max_len={max(4096, 2 * max(len(s) for s in seeds))}")
    atheris.Setup(argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        stats.write(force=True)
        shutil.rmtree(corpus, ignore_errors=True)


# --- helpers the harnesses share -------------------------------------------------------------

SEPARATOR = b"\xff\x00SEP\x00\xff"
"""Splits a 'reframed' input into record payloads; each is framed with a valid CRC-32C."""


def reframe(data: bytes) -> bytes:
    from umlos.evidence._frames import encode_frame

    return b"".join(encode_frame(chunk) for chunk in data.split(SEPARATOR))


def payloads(log: bytes) -> list[bytes]:
    from umlos.evidence._frames import scan_frames

    return [f.payload for f in scan_frames(log).frames]


def log_seeds(log: bytes) -> list[bytes]:
    """Mode byte 0: the raw log; mode byte 1: its payloads, joined by SEPARATOR."""
    return [b"\x00" + log, b"\x01" + SEPARATOR.join(payloads(log))]


def log_input(data: bytes) -> bytes:
    if not data:
        return b""
    return reframe(data[1:]) if data[0] & 1 else data[1:]
