"""Wall time of ``umlos replay`` against the run it replays, measured side by side.

Usage: ``python bench/bench_replay.py [--json] [--repeat N] [--manifest PATH]``.

The run engine records no wall time (evidence stays timeless), so the original run is timed
here: each repetition runs ``execute`` on the manifest (default
``examples/digits_mlp/manifest.yaml``) into a fresh runs root, then ``replay_run`` on the run
directory it produced (a full re-execution in a temporary scratch directory, trace comparison
included). The table reports medians over repetitions and the ratio replay / original; above 1
is the cost of replay beyond re-execution (reading and verifying both traces, the certificate
rebinding, the comparison, the scratch copy). A warm-up pair runs first so that imports and
dataset loading count for neither side. The key store is a temporary ``UMLOS_HOME``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT / "examples" / "digits_mlp" / "manifest.yaml"


def measure(manifest: Path, repeat: int) -> dict[str, Any]:
    from umlos.runner import execute
    from umlos.runner.replay import replay_outcome

    originals: list[float] = []
    replays: list[float] = []
    verdicts: set[str] = set()
    steps = 0
    with tempfile.TemporaryDirectory(prefix="umlos-bench-replay-") as tmp:
        os.environ["UMLOS_HOME"] = str(Path(tmp) / "home")
        for i in range(repeat + 1):  # pair 0 is the warm-up
            started = time.perf_counter()
            summary = execute(manifest, runs_root=Path(tmp) / f"runs-{i}")
            original = time.perf_counter() - started
            started = time.perf_counter()
            outcome = replay_outcome(summary.run_dir)
            replay = time.perf_counter() - started
            if i:
                originals.append(original)
                replays.append(replay)
            verdicts.add(outcome.report.verdict)
            steps = summary.steps
    original_s = statistics.median(originals)
    replay_s = statistics.median(replays)
    return {
        "manifest": str(manifest.relative_to(ROOT) if manifest.is_relative_to(ROOT) else manifest),
        "steps": steps,
        "repeat": repeat,
        "original_s": original_s,
        "replay_s": replay_s,
        "ratio": replay_s / original_s,
        "verdicts": sorted(verdicts),
        "originals_s": originals,
        "replays_s": replays,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="timed pairs (default 3)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args(argv)
    result = measure(args.manifest.resolve(), max(1, args.repeat))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"{result['manifest']}: {result['steps']} steps, median of {result['repeat']}")
        print(f"  original execute   {result['original_s']:8.3f} s")
        print(f"  replay_run (full)  {result['replay_s']:8.3f} s")
        print(f"  ratio replay / original: {result['ratio']:.3f}x")
        print(f"  verdicts: {', '.join(result['verdicts'])}")
    return 0 if result["verdicts"] == ["E0"] else 1


if __name__ == "__main__":
    sys.exit(main())
