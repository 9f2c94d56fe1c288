"""Cost of evidence: `umlos run` (full evidence) vs the same training without evidence vs a plain
PyTorch loop, for the digits MLP and CNN on the torch backend (CPU, 1 thread).

    python bench/bench_run.py [--json] [--repeat N]

Contenders, each running the whole manifest (all train steps + the test evaluation):
* ``evidence`` — `umlos.runner.execute`: WAL, trace, journal, checkpoints (manifest's frequency,
  here only at the end), signed certificate, COMMITTED pointer.
* ``no_evidence`` — `umlos.train.train(prepare(manifest))`: the same kernel, no evidence.
* ``plain`` — an `nn.Module` + `torch.optim.AdamW` loop over the same data with `torch.randperm`
  shuffling, `loss.item()` each step and a final test-accuracy pass: what a user writes by hand.

Timed, for all three: from the manifest (or script start) to the result — dataset loading,
set-up, training, evaluation; process start and imports excluded. Medians over ``--repeat`` runs;
ratios of medians.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812

sys.path.insert(0, str(Path(__file__).parent))
from bench_backend import Cnn, Mlp  # noqa: E402
from umlos.data.sampler import _epoch_indices  # noqa: E402
from umlos.manifest import load_manifest, loads_manifest  # noqa: E402
from umlos.runner import execute  # noqa: E402
from umlos.train import prepare, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _manifest(example: str, tmp: Path) -> Path:
    source = ROOT / "examples" / example / "manifest.yaml"
    text = source.read_text().replace("backend: {name: numpy,", "backend: {name: torch,")
    path = tmp / f"{example}.yaml"
    path.write_text(text)
    return path


def _plain(example: str, manifest_path: Path) -> float:
    loaded = load_manifest(manifest_path)
    stage = loaded.manifest.pipeline_stages[0]
    assert stage.limits is not None and stage.limits.max_epochs is not None
    batch = loaded.manifest.global_batch_size
    start = time.perf_counter()
    # What a hand-written script does first: load digits, split four in five / one in five.
    from sklearn.datasets import load_digits

    data = load_digits()
    index = np.arange(len(data.target))
    train_rows, test_rows = index % 5 != 0, index % 5 == 0
    x = torch.tensor(data.data[train_rows], dtype=torch.float32)
    y = torch.tensor(data.target[train_rows], dtype=torch.int64)
    xt = torch.tensor(data.data[test_rows], dtype=torch.float32)
    yt = torch.tensor(data.target[test_rows], dtype=torch.int64)
    if example == "digits_cnn":
        x, xt = x.reshape(-1, 1, 8, 8), xt.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = Mlp() if example == "digits_mlp" else Cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.0001)
    for _ in range(stage.limits.max_epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            loss.item()
    with torch.no_grad():
        float((model(xt).argmax(1) == yt).float().mean())
    return time.perf_counter() - start


def _no_evidence(manifest_path: Path) -> float:
    start = time.perf_counter()
    train(prepare(loads_manifest(manifest_path.read_text(), source=str(manifest_path))))
    return time.perf_counter() - start


def _evidence(manifest_path: Path, runs: Path) -> float:
    start = time.perf_counter()
    execute(manifest_path, runs_root=runs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UMLOS_HOME"] = str(Path(tmp) / "home")
        for example in ("digits_mlp", "digits_cnn"):
            manifest = _manifest(example, Path(tmp))
            times: dict[str, list[float]] = {"evidence": [], "no_evidence": [], "plain": []}
            for i in range(args.repeat):
                # Cold caches for each contender (the sampler keeps an epoch's permutation),
                # and alternating order, so that neither side inherits the other's warm state.
                runs = Path(tmp) / f"runs{example}{i}"
                jobs = [
                    ("evidence", functools.partial(_evidence, manifest, runs)),
                    ("no_evidence", functools.partial(_no_evidence, manifest)),
                    ("plain", functools.partial(_plain, example, manifest)),
                ]
                for name, job in jobs if i % 2 == 0 else reversed(jobs):
                    _epoch_indices.cache_clear()
                    times[name].append(job())
            med = {k: statistics.median(v) for k, v in times.items()}
            results.append(
                {
                    "example": example,
                    "median_s": med,
                    "evidence_over_no_evidence": med["evidence"] / med["no_evidence"],
                    "evidence_over_plain": med["evidence"] / med["plain"],
                    "no_evidence_over_plain": med["no_evidence"] / med["plain"],
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'example':11} {'evidence s':>10} {'no-ev s':>8} {'plain s':>8} {'ev/no-ev':>9} {'ev/plain':>9} {'no-ev/plain':>11}"
    )
    for r in results:
        m = r["median_s"]
        print(
            f"{r['example']:11} {m['evidence']:10.2f} {m['no_evidence']:8.2f} {m['plain']:8.2f} "
            f"{r['evidence_over_no_evidence']:9.3f} {r['evidence_over_plain']:9.3f} "
            f"{r['no_evidence_over_plain']:11.3f}"
        )


if __name__ == "__main__":
    main()
