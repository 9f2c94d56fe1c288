"""Training-step time of the torch backend against a plain PyTorch loop and the numpy backend.

Usage: ``python bench/bench_backend.py [--json] [--steps N] [--warmup N] [--rounds N]
[--threads N]``. Two models of the issue's target: the MLP (64 → 128 → 10 on 8×8 digits-like
data, batch 64) and the basic CNN (1×8×8, conv 16 and 32 channels k3, hidden 128), each with
SGD (momentum 0.9) and AdamW, float32, on the CPU.

Contenders, all fed the same batches from the same initial weights:

* ``torch_backend`` — one UML_OS step: ``loss_and_grads`` (per-sample binary64 losses to the
  host), ``sum_of_squares`` for the global gradient norm, ``apply_update``, and the host-side
  numerics of the train layer: the reported loss ``fixed_mean(per_sample_loss)`` and the norm
  ``sqrt(fixed_sum(sums))``. That is what the train loop does per step.
* ``torch_backend_only`` — the same without the two host-side fixed-order sums (the backend's
  own share of the step).
* ``plain_torch`` — the same model as an ``nn.Module`` with ``torch.optim.SGD``/``AdamW`` as a
  user writes it: ``zero_grad(set_to_none=True)``, forward, ``cross_entropy``, ``backward``,
  ``step``, ``loss.item()``; torch's defaults except the thread count (deterministic mode off).
* ``plain_torch_deterministic`` — the same loop under the backend's deterministic settings.
* ``numpy_backend`` — the reference backend's step, same as ``torch_backend``.

Each contender runs ``warmup`` steps, then ``rounds × steps`` timed steps, interleaved step by
step in a random order (seeded) so that machine noise and cache warmth hit them alike. Reported: the median
per-step time over all timed steps, and ratios of medians (``torch_backend / plain_torch``; the
issue's target is ≤ 1.10). Results go into ADR 0012.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread for numpy (the reference backend's golden setting), fixed before numpy
# loads: idle BLAS threads spinning on the second core would otherwise slow the contender that
# runs next. torch's thread count is set separately (--threads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from torch import nn  # noqa: E402

from umlos._generated.records import (  # noqa: E402
    BasicCnnPresetParams,
    MlpPresetParams,
    ModelPresetBasicCnn,
    ModelPresetMlp,
)
from umlos.model import expand_preset, init_parameters, validate_ir  # noqa: E402
from umlos.model.backends import OptimizerStep, get_backend, zero_slots  # noqa: E402
from umlos.numerics import fixed_sum  # noqa: E402

BATCH = 64
N_BATCHES = 16  # distinct batches cycled through (the data's content does not affect timing)
SEED = bytes(32)


def make_data(shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Digits-like data: values in [0, 16] as sklearn's 8×8 digits, 10 classes."""
    rng = np.random.default_rng(1234)
    return [
        (
            rng.integers(0, 17, size=(BATCH, *shape)).astype(np.float32),
            rng.integers(0, 10, size=BATCH).astype(np.int64),
        )
        for _ in range(N_BATCHES)
    ]


def hypers(kind: str) -> tuple[OptimizerStep, Callable[[Any], torch.optim.Optimizer]]:
    if kind == "sgd":
        step = OptimizerStep(kind="sgd", lr=0.01, opt_step=1, momentum=0.9)
        return step, lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)
    step = OptimizerStep(kind="adamw", lr=1e-3, opt_step=1, weight_decay=0.01)
    return step, lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc1(x)))


class Cnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 2 * 2, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(F.relu(self.fc1(x.flatten(1))))


def load_module(module: nn.Module, host: dict[str, np.ndarray]) -> None:
    """Copy UML_OS weights in: dense weights are [in, out] in the IR, [out, in] in nn.Linear."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = torch.from_numpy(host[name].copy())
            if isinstance(module.get_submodule(name.rsplit(".", 1)[0]), nn.Linear) and (
                name.endswith("weight")
            ):
                value = value.T
            p.copy_(value)


def backend_stepper(
    backend_name: str,
    ir: Any,
    host: dict[str, np.ndarray],
    kind: str,
    threads: int,
    *,
    host_numerics: bool = True,
) -> Callable[[tuple[np.ndarray, np.ndarray]], float]:
    options = {"num_threads": threads} if backend_name == "torch" else {}
    prog = get_backend(backend_name, **options).compile(ir, "float32")
    hyper0, _ = hypers(kind)
    state = {"params": prog.to_device(host), "slots": prog.to_device(zero_slots(hyper0, host))}
    counter = [0]

    def step(batch: tuple[np.ndarray, np.ndarray]) -> float:
        counter[0] += 1
        res = prog.loss_and_grads(state["params"], {"x": batch[0], "y": batch[1]})
        sums = prog.sum_of_squares(res.grads)
        if host_numerics:  # what the train layer adds: the fixed-order reported loss and norm
            loss = res.loss
            norm = math.sqrt(fixed_sum(sums))
        else:
            loss, norm = float(res.per_sample_loss[0]), sums[0]
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise RuntimeError("non-finite loss or gradient norm")
        hyper = dataclasses.replace(hyper0, opt_step=counter[0])
        state["params"], state["slots"] = prog.apply_update(
            state["params"], res.grads, state["slots"], hyper
        )
        return loss

    return step


def train_stepper(
    model_name: str, kind: str, threads: int, backend_name: str = "torch"
) -> Callable[[tuple[np.ndarray, np.ndarray]], float]:
    """The real thing: ``umlos.train.step`` on a run prepared from a manifest (same model and
    optimizer; the batches are the benchmark's, handed over as ``Batch`` values)."""
    from umlos._generated.records import DataCursor, RegisterDatasetRequest
    from umlos.data import register_dataset
    from umlos.manifest import loads_manifest
    from umlos.train import Batch, init, prepare
    from umlos.train import step as train_step

    rec = register_dataset(
        RegisterDatasetRequest(
            dataset_key="train",
            id="digits",
            version="v1",
            format="builtin",
            builtin="digits",
            feature_key="x",
            label_key="y",
        )
    )
    model = (
        "{preset: mlp, preset_params: {in_features: 64, hidden_sizes: [128], out_features: 10}}"
        if model_name == "mlp"
        else "{preset: basic_cnn, preset_params: {in_channels: 1, height: 8, width: 8, "
        "out_features: 10}}"
    )
    optimizer = (
        "{type: sgd, lr: 0.01, momentum: 0.9}"
        if kind == "sgd"
        else "{type: adamw, lr: 0.001, weight_decay: 0.01}"
    )
    run = prepare(
        loads_manifest(
            f"""
spec_version: UML_OS.Config.Manifest_v1
tenant_id: bench
seed: 1
global_batch_size: {BATCH}
task_type: multiclass
datasets:
  train: {{id: digits, version: v1, format: builtin, builtin: digits,
           hash: '{rec.content_hash.hex()}', cardinality: {rec.cardinality}}}
pipeline_stages:
  - {{step_id: fit, type: train, dataset_key: train, limits: {{max_steps: 1000000}}}}
model: {model}
optimizer: {optimizer}
backend: {{name: {backend_name}, dtype: float32, num_threads: {threads}}}
"""
        )
    )
    holder = [init(run)]
    batches: dict[int, Batch] = {}
    cursor = DataCursor(epoch=0, global_position=0)

    def step(batch: tuple[np.ndarray, np.ndarray]) -> float:
        key = id(batch)
        if key not in batches:
            arrays = {run.ir.features: batch[0], run.ir.labels or "y": batch[1]}
            batches[key] = Batch("train", np.arange(BATCH, dtype=np.uint64), arrays, cursor, cursor)
        holder[0], metrics = train_step(holder[0], batches[key])
        return metrics.loss

    return step


def plain_stepper(
    model_name: str, host: dict[str, np.ndarray], kind: str, deterministic: bool
) -> Callable[[tuple[np.ndarray, np.ndarray]], float]:
    module: nn.Module = Mlp() if model_name == "mlp" else Cnn()
    load_module(module, host)
    _, make_opt = hypers(kind)
    opt = make_opt(module.parameters())
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def step(batch: tuple[np.ndarray, np.ndarray]) -> float:
        # A DataLoader hands the loop tensors; converting once keeps that out of the timing.
        key = id(batch)
        if key not in cache:
            cache[key] = (torch.from_numpy(batch[0]), torch.from_numpy(batch[1]))
        x, y = cache[key]
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(deterministic)
        try:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(module(x), y)
            loss.backward()
            opt.step()
            return float(loss.item())
        finally:
            torch.use_deterministic_algorithms(previous)

    return step


def run_case(
    model_name: str, kind: str, steps: int, warmup: int, rounds: int, threads: int
) -> dict[str, Any]:
    if model_name == "mlp":
        spec: Any = ModelPresetMlp(
            preset_params=MlpPresetParams(in_features=64, hidden_sizes=(128,), out_features=10)
        )
        shape: tuple[int, ...] = (64,)
    else:
        spec = ModelPresetBasicCnn(
            preset_params=BasicCnnPresetParams(in_channels=1, height=8, width=8, out_features=10)
        )
        shape = (1, 8, 8)
    ir = validate_ir(expand_preset(spec, task_type="multiclass", dtype="float32"))
    host = init_parameters(ir, SEED)
    data = make_data(shape)
    steppers = {
        "umlos_train_step": train_stepper(model_name, kind, threads),
        "torch_backend": backend_stepper("torch", ir, host, kind, threads),
        "torch_backend_only": backend_stepper(
            "torch", ir, host, kind, threads, host_numerics=False
        ),
        "plain_torch": plain_stepper(model_name, host, kind, deterministic=False),
        "plain_torch_deterministic": plain_stepper(model_name, host, kind, deterministic=True),
        "numpy_backend": backend_stepper("numpy", ir, host, kind, threads),
    }
    times: dict[str, list[float]] = {name: [] for name in steppers}
    first_loss: dict[str, float] = {}
    for name, fn in steppers.items():
        for i in range(warmup):
            loss = fn(data[i % N_BATCHES])
            first_loss.setdefault(name, loss)
    # Interleaved step by step in a fresh (seeded) random order each time, so load spikes hit
    # every contender alike and none always runs after the same neighbour (whose code and data
    # it would find warm or cold in the caches).
    names = list(steppers)
    order = random.Random(0)
    for i in range(steps * rounds):
        batch = data[(warmup + i) % N_BATCHES]
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            steppers[name](batch)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "model": model_name,
        "optimizer": kind,
        "median_step_s": medians,
        "first_loss": first_loss,
        "ratio_umlos_train_step_over_plain": medians["umlos_train_step"] / medians["plain_torch"],
        "ratio_torch_backend_over_plain": medians["torch_backend"] / medians["plain_torch"],
        "ratio_torch_backend_over_plain_deterministic": medians["torch_backend"]
        / medians["plain_torch_deterministic"],
        "ratio_torch_backend_only_over_plain": medians["torch_backend_only"]
        / medians["plain_torch"],
        "ratio_numpy_backend_over_torch_backend": medians["numpy_backend"]
        / medians["torch_backend"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": args.threads,
        },
        "batch": BATCH,
        "cases": [
            run_case(model, kind, args.steps, args.warmup, args.rounds, args.threads)
            for model in ("mlp", "cnn")
            for kind in ("sgd", "adamw")
        ],
    }
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    print(f"machine: {results['machine']}")
    header = f"{'model':5} {'opt':6} {'step ms':>8} {'torch_be ms':>11} {'be_only ms':>10} {'plain ms':>9} "
    header += f"{'plain_det ms':>12} {'numpy ms':>9} {'step/plain':>10} {'be/plain':>9} {'only/plain':>10} {'be/det':>7}"
    print(header)
    for case in results["cases"]:
        m = case["median_step_s"]
        print(
            f"{case['model']:5} {case['optimizer']:6} {m['umlos_train_step'] * 1e3:8.3f} "
            f"{m['torch_backend'] * 1e3:11.3f} "
            f"{m['torch_backend_only'] * 1e3:10.3f} {m['plain_torch'] * 1e3:9.3f} "
            f"{m['plain_torch_deterministic'] * 1e3:12.3f} {m['numpy_backend'] * 1e3:9.3f} "
            f"{case['ratio_umlos_train_step_over_plain']:10.3f} "
            f"{case['ratio_torch_backend_over_plain']:9.3f} "
            f"{case['ratio_torch_backend_only_over_plain']:10.3f} "
            f"{case['ratio_torch_backend_over_plain_deterministic']:7.3f}"
        )


if __name__ == "__main__":
    main()
