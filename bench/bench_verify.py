"""Cost of ``umlos verify`` against hashing the same bytes with ``sha256sum``.

Usage: ``python bench/bench_verify.py [--json] [--repeat N] [--hidden N] [--steps N]
[--checkpoint-frequency N] [--keep DIR]``.

Builds one committed run big enough to matter: an MLP with two hidden layers of ``--hidden``
units (default 2048: 4.3 M parameters, so 17 MB of float32 weights and 34 MB of AdamW slots per
checkpoint) trained for ``--steps`` steps on scikit-learn's digits with a checkpoint every
``--checkpoint-frequency`` steps (default 20 and 5: five checkpoints, about 260 MB). Then, for
each repetition, in turn: ``verify_run`` on the directory (all 28 steps) and ``sha256sum`` over
every file of it (one process: what a user would run to checksum the directory), and
``hashlib.file_digest`` over the same files (OpenSSL's SHA-256, the one verify uses: the floor
for reading and hashing those bytes once in this process). The files were just written, so all
three read from the page cache. The table reports medians and the ratios ours / baseline (above
1: slower).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = (
    "  preset: basic_cnn\n  preset_params: {in_channels: 1, height: 8, width: 8, out_features: 10}"
)


def build_run(base: Path, *, hidden: int, steps: int, frequency: int) -> Path:
    """The digits quickstart with its CNN swapped for a wide MLP; returns the run directory."""
    from umlos.quickstart import write_quickstart
    from umlos.runner import execute

    manifest = write_quickstart("cnn", base / "manifest")
    text = manifest.read_text()
    assert MODEL in text and "limits: {max_epochs: 8}" in text
    mlp = (
        "  preset: mlp\n"
        f"  preset_params: {{in_features: 64, hidden_sizes: [{hidden}, {hidden}], out_features: 10}}"
    )
    text = text.replace(MODEL, mlp).replace(
        "limits: {max_epochs: 8}", f"limits: {{max_steps: {steps}}}"
    )
    manifest.write_text(text + f"checkpoint_frequency: {frequency}\n")
    return Path(execute(manifest, runs_root=base / "runs").run_dir)


def files_of(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob("*") if p.is_file())


def time_verify(run_dir: Path) -> float:
    from umlos.runner.verify import verify_run

    start = time.perf_counter()
    report = verify_run(run_dir)
    elapsed = time.perf_counter() - start
    assert report.verdict == "PASS", [s for s in report.steps if s.status != "PASS"]
    return elapsed


def time_sha256sum(files: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_hashlib(files: list[Path]) -> float:
    """SHA-256 of every file with hashlib (OpenSSL, the library ``verify`` itself hashes with)."""
    start = time.perf_counter()
    for path in files:
        with path.open("rb") as fh:
            hashlib.file_digest(fh, "sha256")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--checkpoint-frequency", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the run here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        os.environ.setdefault("UMLOS_HOME", str(Path(tmp) / "home"))  # keys stay out of ~
        start = time.perf_counter()
        run_dir = build_run(
            base, hidden=args.hidden, steps=args.steps, frequency=args.checkpoint_frequency
        )
        build_s = time.perf_counter() - start
        files = files_of(run_dir)
        total = sum(p.stat().st_size for p in files)
        ours: list[float] = []
        theirs: list[float] = []
        hashed: list[float] = []
        time_verify(run_dir)  # warm-up: imports, the first manifest expansion
        for _ in range(args.repeat):
            ours.append(time_verify(run_dir))
            theirs.append(time_sha256sum(files))
            hashed.append(time_hashlib(files))
        checkpoints = sum(1 for p in (run_dir / "checkpoints").iterdir() if p.is_dir())
        result: dict[str, Any] = {
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "run": {
                "bytes": total,
                "files": len(files),
                "checkpoints": checkpoints,
                "hidden": args.hidden,
                "steps": args.steps,
                "build_s": round(build_s, 2),
            },
            "verify_s": statistics.median(ours),
            "sha256sum_s": statistics.median(theirs),
            "hashlib_s": statistics.median(hashed),
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "ratio_vs_hashlib": statistics.median(ours) / statistics.median(hashed),
            "verify_mb_per_s": total / 1e6 / statistics.median(ours),
            "sha256sum_mb_per_s": total / 1e6 / statistics.median(theirs),
            "repeat": args.repeat,
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    run = result["run"]
    print(
        f"run: {run['bytes'] / 1e6:.1f} MB in {run['files']} files, {run['checkpoints']} "
        f"checkpoints (MLP {args.hidden}x{args.hidden}, {args.steps} steps; built in "
        f"{run['build_s']} s)"
    )
    print(f"{'':12} {'median s':>9} {'MB/s':>8}")
    print(f"{'verify_run':12} {result['verify_s']:9.3f} {result['verify_mb_per_s']:8.0f}")
    print(f"{'sha256sum':12} {result['sha256sum_s']:9.3f} {result['sha256sum_mb_per_s']:8.0f}")
    hashlib_mb_s = run["bytes"] / 1e6 / result["hashlib_s"]
    print(f"{'hashlib':12} {result['hashlib_s']:9.3f} {hashlib_mb_s:8.0f}")
    print(
        f"ratio ours / sha256sum: {result['ratio']:.2f}x; ours / hashlib: "
        f"{result['ratio_vs_hashlib']:.2f}x (medians of {args.repeat})"
    )


if __name__ == "__main__":
    main()
