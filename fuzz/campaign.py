"""Run every harness for a fixed time and print the table docs/reliability.md ("Corruption sweeps and fuzzing") quotes.

    python fuzz/campaign.py --seconds 120 --jobs 2

Each harness runs as ``python fuzz/fuzz_<target>.py -max_total_time=SECONDS`` (plus any
libFuzzer flags after ``--``); executions come from libFuzzer's "Done N runs" line, findings
from the harness' summary.json under $UMLOS_FUZZ_OUT (default /tmp/umlos-fuzz).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = (
    "cbor",
    "trace",
    "journal",
    "wal",
    "checkpoint",
    "certificate",
    "manifest",
    "ir",
    "contracts",
)
OUT = Path(os.environ.get("UMLOS_FUZZ_OUT", Path(tempfile.gettempdir()) / "umlos-fuzz"))


def run(target: str, seconds: int, extra: list[str]) -> dict[str, object]:
    cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), f"-max_total_time={seconds}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, check=False)
    (OUT / target).mkdir(parents=True, exist_ok=True)
    (OUT / target / "libfuzzer.log").write_text(proc.stderr[-200_000:])
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    summary_path = OUT / target / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "target": target,
        "exit": proc.returncode,
        "executions": int(done.group(1)) if done else summary.get("executions", 0),
        "seconds": int(done.group(2)) if done else summary.get("seconds", 0),
        "accepted": summary.get("accepted", 0),
        "findings": {k: v["count"] for k, v in summary.get("findings", {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="per target")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--targets", nargs="*", default=list(TARGETS))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda t: run(t, args.seconds, extra), args.targets))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "campaign.json").write_text(json.dumps(rows, indent=2))
    print("| parser | executions | seconds | exec/s | accepted | findings (signature: count) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        rate = int(r["executions"]) // max(int(r["seconds"]), 1)  # type: ignore[call-overload]
        found = "; ".join(f"{k}: {v}" for k, v in r["findings"].items()) or "none"  # type: ignore[attr-defined]
        print(
            f"| {r['target']} | {r['executions']} | {r['seconds']} | {rate} | "
            f"{r['accepted']} | {found} |"
        )


if __name__ == "__main__":
    main()
