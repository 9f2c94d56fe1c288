"""Full regeneration time and determinism.

Runs `render` (check + compile + emit + format) several times on the repository's contracts,
reports the first (cold) and the median warm wall time, and checks that every run produced identical bytes, also when the
contracts are copied to another directory first.

    python bench/bench_generate.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import umlos.codegen as codegen

ROOT = Path(__file__).resolve().parents[1]


def _fingerprint(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(files.items()):
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    times, prints = [], set()
    files: dict[str, bytes] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        files = codegen.render(ROOT / "contracts")
        times.append(time.perf_counter() - start)
        prints.add(_fingerprint(files))
    with tempfile.TemporaryDirectory() as tmp:
        moved = Path(tmp, "somewhere", "contracts")
        shutil.copytree(ROOT / "contracts", moved)
        prints.add(_fingerprint(codegen.render(moved)))
    result = {
        "runs": args.repeat + 1,
        "files": len(files),
        "bytes": sum(len(d) for d in files.values()),
        "cold_seconds": round(times[0], 3),
        "warm_median_seconds": round(statistics.median(times[1:] or times), 3),
        "identical": len(prints) == 1,
        "fingerprint": next(iter(prints)) if len(prints) == 1 else sorted(prints),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"regenerated {result['files']} files ({result['bytes']} bytes): first run in a fresh "
            f"process {result['cold_seconds']} s, then median {result['warm_median_seconds']} s "
            f"(parsed contracts are cached by content); identical across {result['runs']} runs "
            f"and two directories: {result['identical']}"
        )


if __name__ == "__main__":
    main()
