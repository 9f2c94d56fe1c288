"""Explicit training state: determinism, bit-identical restore, and the failure rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.train.conftest import manifest
from umlos.errors import CheckpointInvalidError, InvalidObjectiveError
from umlos.train import init, next_batch, prepare, restore, serialize, step, train
from umlos.train.state import MAGIC

PRESETS = ["mlp", "basic_cnn", "tiny_transformer"]
BACKENDS = ["numpy", "torch"]


def _steps(state, n):  # type: ignore[no-untyped-def]
    for _ in range(n):
        state, _ = step(state, next_batch(state))
    return state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("preset", PRESETS)
def test_restore_then_continue_is_bit_identical(preset: str, dtype: str, backend: str) -> None:
    run = prepare(manifest(preset, backend=backend, dtype=dtype))
    straight = _steps(init(run), 5)
    paused = _steps(init(run), 2)
    resumed = _steps(restore(run, serialize(paused)), 3)
    assert serialize(resumed) == serialize(straight)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_same_configuration_twice_gives_identical_parameters(preset: str, backend: str) -> None:
    a = train(prepare(manifest(preset, backend=backend, dtype="float32")))
    b = train(prepare(manifest(preset, backend=backend, dtype="float32")))
    assert serialize(a.state) == serialize(b.state)
    assert [m.loss for m in a.steps] == [m.loss for m in b.steps]


def test_stage_loop_honours_limits_and_counts_eval_once() -> None:
    result = train(prepare(manifest("mlp", steps=4)))
    assert [m.t for m in result.steps] == [1, 2, 3, 4]
    assert len(result.evals) == 1 and result.evals[0].t == 5
    assert result.state.done and result.evals[0].samples == 96
    assert 0.0 <= (result.evals[0].accuracy or 0.0) <= 1.0


def test_nan_loss_is_invalid_objective_and_applies_no_update() -> None:
    run = prepare(manifest("mlp", optimizer="{type: sgd, lr: 1.0e+30}", dtype="float32"))
    state = _steps(init(run), 1)
    before = run.program.to_host(state.params)
    with pytest.raises((InvalidObjectiveError,)) as info:
        for _ in range(20):
            state = _steps(state, 1)
            before = run.program.to_host(state.params)
    assert info.value.code_id == "INVALID_OBJECTIVE"
    after = run.program.to_host(state.params)
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)


def test_state_fp_chains_and_changes_every_step() -> None:
    from umlos.train import fingerprint

    run = prepare(manifest("mlp"))
    s0 = init(run)
    s1 = _steps(s0, 1)
    fp1 = fingerprint(s1)
    assert fp1 != s0.state_fp and len(fp1) == 32
    assert fingerprint(restore(run, serialize(s1))) == fp1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"NOTSTATE" + b[8:], "STATE_MAGIC"),
        (lambda b: b[:20], "STATE_TRUNCATED"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "TENSOR_HASH"),
        (lambda b: b[:-4], "TENSOR_TRUNCATED"),
        (lambda b: b[:16] + b"\xff" + b[17:], "STATE_HEADER"),
    ],
    ids=["magic", "truncated-header", "tensor-bitflip", "tensor-truncated", "header-garbage"],
)
def test_corrupt_state_is_rejected_before_use(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    run = prepare(manifest("mlp"))
    blob = serialize(_steps(init(run), 1))
    assert blob.startswith(MAGIC)
    with pytest.raises(CheckpointInvalidError) as info:
        restore(run, mutate(blob))
    assert info.value.reason == reason


def test_state_of_another_run_is_rejected() -> None:
    blob = serialize(init(prepare(manifest("mlp"))))
    other = prepare(manifest("mlp", optimizer="{type: sgd, lr: 0.5}"))
    with pytest.raises(CheckpointInvalidError) as info:
        restore(other, blob)
    assert info.value.reason == "STATE_MISMATCH"


def test_grad_clipping_limits_the_update_norm() -> None:
    run = prepare(manifest("mlp", extra="grad_clip_norm: 0.001"))
    _, metrics = step(init(run), next_batch(init(run)))
    assert metrics.clipped and metrics.grad_norm > 0.001
    assert dataclasses.is_dataclass(metrics)


def test_invalid_objective_becomes_a_valid_failure_record() -> None:
    from umlos._generated.records import ErrorRecord
    from umlos.codec import decode, encode
    from umlos.errors import error_record

    run = prepare(manifest("mlp", optimizer="{type: sgd, lr: 1.0e+30}", dtype="float32"))
    state = init(run)
    with pytest.raises(InvalidObjectiveError) as info:
        for _ in range(20):
            state = _steps(state, 1)
    record = error_record(info.value, t=state.t + 1, replay_token=run.replay_token)
    assert record.numeric_code == 1204 and record.severity == "FATAL"
    assert record.failure_operator == "UML_OS.Objective.TotalLoss_v1"
    assert ErrorRecord.from_obj(decode(encode(record.to_obj()))) == record


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_fingerprint_is_stable_and_tracks_the_model(backend: str) -> None:
    from umlos.train import functional_fingerprint

    run = prepare(manifest("mlp", backend=backend))
    s0 = init(run)
    fp0 = functional_fingerprint(s0)
    assert fp0 == functional_fingerprint(restore(run, serialize(s0)))
    assert functional_fingerprint(_steps(s0, 1)) != fp0
