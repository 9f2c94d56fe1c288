"""The stage loop (D4) and evaluation in binary64.

Stages run in declaration order. A train stage steps until one of its limits is reached; an eval
stage makes exactly one sequential pass (D10) and counts as one ``t``. Evaluation metrics are
computed on the host in binary64 with fixed-order reductions, whatever the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umlos.numerics import fixed_mean
from umlos.train.run import Run
from umlos.train.state import (
    State,
    StepMetrics,
    advance_stage,
    init,
    next_batch,
    stage_finished,
    step,
)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Metrics of one sequential pass; ``accuracy`` is ``None`` for regression."""

    stage_id: str
    dataset_key: str
    t: int
    samples: int
    loss: float
    accuracy: float | None
    mse: float | None = None
    mae: float | None = None


@dataclass
class RunResult:
    state: State
    steps: list[StepMetrics] = field(default_factory=list)
    evals: list[EvalResult] = field(default_factory=list)


def evaluate(state: State, dataset_key: str, *, stage_id: str = "eval") -> EvalResult:
    """Loss and accuracy (or MSE/MAE) over one sequential pass of ``dataset_key``."""
    run = state.run
    losses: list[NDArray[np.float64]] = []
    correct = 0
    sq: list[NDArray[np.float64]] = []
    ab: list[NDArray[np.float64]] = []
    task = run.manifest.task_type
    for batch in run.eval_batches(dataset_key):
        result = run.program.forward(state.params, batch.arrays, mode="eval")
        if result.per_sample_loss is not None:
            losses.append(result.per_sample_loss)
        out = np.asarray(result.outputs[run.ir.outputs[0]], dtype=np.float64)
        labels = batch.arrays.get(run.ir.labels) if run.ir.labels is not None else None
        if labels is None:
            continue
        if task == "multiclass":
            correct += int(np.sum(_argmax_last(out).reshape(labels.shape) == labels))
        elif task == "binary":
            predicted = (out.reshape(labels.shape) > 0.0).astype(labels.dtype)
            correct += int(np.sum(predicted == labels))
        else:
            diff = out.reshape(labels.shape) - np.asarray(labels, dtype=np.float64)
            sq.append((diff * diff).ravel())
            ab.append(np.abs(diff).ravel())
    n = run.dataset(dataset_key).cardinality
    per_sample = np.concatenate(losses) if losses else np.zeros(0)
    loss = fixed_mean(per_sample) if per_sample.size else float("nan")
    if task == "regression":
        return EvalResult(
            stage_id=stage_id,
            dataset_key=dataset_key,
            t=state.t,
            samples=n,
            loss=loss,
            accuracy=None,
            mse=fixed_mean(np.concatenate(sq)) if sq else None,
            mae=fixed_mean(np.concatenate(ab)) if ab else None,
        )
    labels_per_sample = _labels_per_sample(run, dataset_key)
    return EvalResult(
        stage_id=stage_id,
        dataset_key=dataset_key,
        t=state.t,
        samples=n,
        loss=loss,
        accuracy=correct / (labels_per_sample * n),
    )


def _labels_per_sample(run: Run, key: str) -> int:
    labels = run.dataset(key).labels
    return int(np.prod(labels.shape[1:], dtype=np.int64)) if labels.ndim > 1 else 1


def _argmax_last(x: NDArray[np.float64]) -> NDArray[np.int64]:
    # The first maximum wins on ties: a fixed, documented tie-break.
    out: NDArray[np.int64] = np.argmax(x, axis=-1).astype(np.int64)
    return out


def train(
    run: Run,
    *,
    state: State | None = None,
    on_step: Callable[[State, StepMetrics], Any] | None = None,
    on_eval: Callable[[State, EvalResult], Any] | None = None,
) -> RunResult:
    """Run every remaining stage of ``run`` from ``state`` (default: a fresh :func:`init`)."""
    current = state or init(run)
    result = RunResult(current)
    while not current.done:
        stage = current.stage
        assert stage is not None
        if stage.type == "train":
            while not stage_finished(current):
                current, metrics = step(current, next_batch(current))
                result.steps.append(metrics)
                if on_step is not None:
                    on_step(current, metrics)
            current = advance_stage(current)
        else:
            current = advance_stage(current, t_increment=1)
            evaluation = evaluate(current, stage.dataset_key, stage_id=stage.step_id)
            result.evals.append(evaluation)
            if on_eval is not None:
                on_eval(current, evaluation)
    result.state = current
    return result
