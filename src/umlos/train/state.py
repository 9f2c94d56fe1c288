"""Explicit training state: ``init(run) -> State`` and ``step(state, batch) -> (State, metrics)``.

Everything the next step reads is in :class:`State`: parameters and optimizer slots (on the
backend's device), data cursors, the dropout Philox stream, the step counters and the stage
position. :func:`serialize` writes it as a canonical-CBOR ``TrainingStateHeader`` plus one tensor
blob; :func:`restore` checks every hash before any value is used, and continuing from a restored
state is bit-identical to never having stopped.

Device buffers are donated: after ``step(state, batch)`` the *old* state's parameters may have
been updated in place (the torch backend does so for speed). Keep the returned state only.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from umlos._generated import tags
from umlos._generated.records import (
    DataCursor,
    ManifestStage,
    RngStreamState,
    TrainingStateHeader,
)
from umlos.codec import CborError, commit_hash, decode, encode
from umlos.errors import (
    CheckpointInvalidError,
    InvalidObjectiveError,
    NonFiniteGradientError,
)
from umlos.model.backends.base import zero_slots
from umlos.numerics import PhiloxStream, fixed_sum
from umlos.numerics.philox import RNG_STATE_TAG
from umlos.train import _tensorio
from umlos.train.fingerprint import ZERO_FP, functional_fp, state_fp
from umlos.train.run import Batch, Run

STATE_VERSION: Final = 1
MAGIC: Final = b"UMLOSTS1"
_HEAD = struct.Struct("<8sQ")  # magic, header length
# Epsilon in the clipping factor min(1, C / (norm + eps)): keeps the factor finite at norm 0.
CLIP_EPS: Final = 1e-6
DROPOUT_STREAM: Final = "dropout"


@dataclass(frozen=True, slots=True)
class StepMetrics:
    """What one training step reports; every float is binary64 and fixed-order."""

    t: int
    stage_id: str
    loss: float
    grad_norm: float
    clipped: bool
    batch_size: int
    epoch: int


@dataclass(frozen=True, slots=True)
class State:
    """The whole training state. Build with :func:`init` or :func:`restore`, advance with :func:`step`."""

    run: Run
    params: Mapping[str, Any]
    opt_state: Mapping[str, Any]
    t: int
    opt_step: int
    stage_index: int
    stage_step: int
    stage_epochs: int
    cursors: Mapping[str, DataCursor]
    dropout: PhiloxStream
    loss_total: float
    state_fp: bytes

    @property
    def stage(self) -> ManifestStage | None:
        stages = self.run.manifest.pipeline_stages
        return stages[self.stage_index] if self.stage_index < len(stages) else None

    @property
    def done(self) -> bool:
        return self.stage_index >= len(self.run.manifest.pipeline_stages)


def init(run: Run) -> State:
    """The state before step 1: initialized parameters, zero optimizer slots, cursors at 0."""
    host = run.init_parameters()
    hyper = run.optimizer_step(1)
    slots = zero_slots(hyper, host)
    cursors = {key: DataCursor(epoch=0, global_position=0) for key in run.train_dataset_keys()}
    dropout_seed = commit_hash(tags.RNG_SUBSTREAM, [run.compute_seed, DROPOUT_STREAM, 0, 0])
    state = State(
        run=run,
        params=run.program.to_device(host),
        opt_state=run.program.to_device(slots),
        t=0,
        opt_step=0,
        stage_index=0,
        stage_step=0,
        stage_epochs=0,
        cursors=cursors,
        dropout=PhiloxStream.from_seed(dropout_seed[:16]),
        loss_total=0.0,
        state_fp=ZERO_FP,
    )
    return replace(state, state_fp=fingerprint(state))


def fingerprint(state: State) -> bytes:
    """``state_fp`` of this state (chained from the previous one); moves tensors to the host."""
    params = state.run.program.to_host(state.params)
    slots = state.run.program.to_host(state.opt_state)
    return state_fp(
        state.state_fp if state.t else ZERO_FP,
        state.t,
        params=params,
        slots=slots,
        cursors=state.cursors,
        streams=_rng_states(state),
        loss_total=state.loss_total,
    )


def functional_fingerprint(state: State) -> bytes:
    """``functional_fp`` (D8): the model's outputs and loss on the fixed probe set.

    The probe is samples ``0 .. probe_size - 1`` (mod N) of ``evaluation.probe_dataset_key``,
    run in eval mode; outputs are hashed as little-endian binary64.
    """
    run = state.run
    evaluation = run.manifest.evaluation
    assert evaluation is not None and evaluation.probe_dataset_key is not None  # normalized
    key = evaluation.probe_dataset_key
    n = run.dataset(key).cardinality
    indices = (np.arange(evaluation.probe_size or 1024, dtype=np.uint64) % np.uint64(n)).astype(
        np.uint64
    )
    result = run.program.forward(state.params, run.arrays(key, indices), mode="eval")
    return functional_fp(result.loss or 0.0, result.outputs)


def next_batch(state: State) -> Batch:
    """The next training batch of the current stage (which must be a train stage)."""
    stage = state.stage
    if stage is None or stage.type != "train":
        raise CheckpointInvalidError(
            "next_batch needs an active train stage", reason="STATE_MISMATCH"
        )
    return state.run.train_batch(stage.dataset_key, state.cursors[stage.dataset_key])


def step(state: State, batch: Batch) -> tuple[State, StepMetrics]:
    """One optimizer step on ``batch``: forward, backward, clip, update, advance counters.

    A NaN or infinite loss raises :class:`~umlos.errors.InvalidObjectiveError` and a non-finite
    gradient norm :class:`~umlos.errors.NonFiniteGradientError`; neither applies an update.
    """
    run = state.run
    program = run.program
    stage = state.stage
    assert stage is not None and stage.type == "train"
    result = program.loss_and_grads(state.params, batch.arrays, rng=state.dropout)
    loss = result.loss
    t = state.t + 1
    if not math.isfinite(loss):
        raise InvalidObjectiveError(
            f"loss is {loss} at step {t}",
            context={
                "t": t,
                "failure_operator": "UML_OS.Objective.TotalLoss_v1",
                "objective_value": repr(loss),
            },
        )
    squares = program.sum_of_squares(result.grads)
    grad_norm = math.sqrt(fixed_sum(np.asarray(squares, dtype=np.float64))) if squares else 0.0
    if not math.isfinite(grad_norm):
        raise NonFiniteGradientError(
            f"gradient norm is {grad_norm} at step {t}",
            context={"t": t, "failure_operator": "UML_OS.Model.Backward_v1"},
        )
    grads = result.grads
    clip = run.manifest.grad_clip_norm
    clipped = clip is not None and grad_norm > clip
    if clipped:
        assert clip is not None
        grads = program.scale_(grads, min(1.0, clip / (grad_norm + CLIP_EPS)))
    opt_step = state.opt_step + 1
    params, opt_state = program.apply_update(
        state.params, grads, state.opt_state, run.optimizer_step(opt_step)
    )
    cursors = dict(state.cursors)
    cursors[stage.dataset_key] = batch.cursor_next
    epochs = state.stage_epochs + (batch.cursor_next.epoch - batch.cursor.epoch)
    # The constructor, not dataclasses.replace: this is the per-step hot path.
    new = State(
        run=run,
        params=params,
        opt_state=opt_state,
        t=t,
        opt_step=opt_step,
        stage_index=state.stage_index,
        stage_step=state.stage_step + 1,
        stage_epochs=epochs,
        cursors=cursors,
        dropout=result.rng_next or state.dropout,
        loss_total=loss,
        state_fp=state.state_fp,
    )
    metrics = StepMetrics(
        t=t,
        stage_id=stage.step_id,
        loss=loss,
        grad_norm=grad_norm,
        clipped=clipped,
        batch_size=len(batch.indices),
        epoch=batch.cursor.epoch,
    )
    return new, metrics


def stage_finished(state: State) -> bool:
    """Whether the current train stage has reached one of its limits (D2/D4)."""
    stage = state.stage
    if stage is None or stage.type != "train" or stage.limits is None:
        return True
    limits = stage.limits
    if limits.max_steps is not None and state.stage_step >= limits.max_steps:
        return True
    return limits.max_epochs is not None and state.stage_epochs >= limits.max_epochs


def advance_stage(state: State, *, t_increment: int = 0) -> State:
    """Move to the next stage (declaration order, D4)."""
    return replace(
        state,
        stage_index=state.stage_index + 1,
        stage_step=0,
        stage_epochs=0,
        t=state.t + t_increment,
    )


# --- serialization ----------------------------------------------------------------------------


def _rng_states(state: State) -> tuple[RngStreamState, ...]:
    rs = state.dropout.rng_state()
    return (
        RngStreamState(
            stream=DROPOUT_STREAM, key=rs[1:3], counter=rs[3:7], offset=state.dropout.offset
        ),
    )


def header(
    state: State, params: Mapping[str, NDArray[Any]], slots: Mapping[str, NDArray[Any]]
) -> tuple[TrainingStateHeader, bytes]:
    """The state's header record and tensor blob (parameters, then optimizer slots)."""
    run = state.run
    descriptors, blob = _tensorio.pack([*params.items(), *slots.items()])
    n = len(params)
    head = TrainingStateHeader(
        state_version=STATE_VERSION,
        manifest_hash=run.manifest_hash,
        ir_hash=run.ir_hash,
        replay_token=run.replay_token,
        t=state.t,
        opt_step=state.opt_step,
        stage_index=state.stage_index,
        stage_step=state.stage_step,
        stage_epochs=state.stage_epochs,
        kernel_state=_kernel_state(state),
        data_cursors=dict(state.cursors),
        rng_streams=_rng_states(state),
        parameters=descriptors[:n],
        optimizer_slots=descriptors[n:],
        loss_total=state.loss_total,
        state_fp=state.state_fp,
    )
    return head, blob


def _kernel_state(state: State) -> Any:
    stage = state.stage
    if stage is None:
        return "S_TERMINATED" if "S_TERMINATED" in _KERNEL_STATES else "S_INIT"
    return {"train": "S_TRAINING", "eval": "S_EVALUATING", "infer": "S_INFERENCING"}[stage.type]


_KERNEL_STATES: Final = frozenset(
    TrainingStateHeader.__dataclass_fields__["kernel_state"].type.split("'")[1::2]
)


def serialize(state: State) -> bytes:
    """``MAGIC | u64le header length | canonical CBOR header | tensor blob``; deterministic."""
    program = state.run.program
    head, blob = header(state, program.to_host(state.params), program.to_host(state.opt_state))
    head_bytes = encode(head.to_obj())
    return _HEAD.pack(MAGIC, len(head_bytes)) + head_bytes + blob


def restore(run: Run, data: bytes, *, artifact: str = "training state") -> State:
    """Rebuild a state from :func:`serialize` output, checking magic, header, hashes and bindings."""
    if len(data) < _HEAD.size:
        raise CheckpointInvalidError(
            "data is shorter than its header", reason="STATE_TRUNCATED", artifact=artifact
        )
    magic, head_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointInvalidError(
            "not a UML_OS training state", reason="STATE_MAGIC", artifact=artifact, offset=0
        )
    start = _HEAD.size
    if start + head_len > len(data):
        raise CheckpointInvalidError(
            "header runs past the end of the data",
            reason="STATE_TRUNCATED",
            artifact=artifact,
            offset=start,
        )
    try:
        head = TrainingStateHeader.from_obj(decode(data[start : start + head_len]))
    except CborError as exc:
        raise CheckpointInvalidError(
            f"header is not canonical CBOR: {exc}",
            reason="STATE_HEADER",
            artifact=artifact,
            offset=start + (exc.offset or 0),
        ) from exc
    except Exception as exc:  # generated validators raise API_* errors with a JSON path
        raise CheckpointInvalidError(
            f"header does not validate: {exc}", reason="STATE_HEADER", artifact=artifact
        ) from exc
    for name, ours, theirs in (
        ("manifest_hash", run.manifest_hash, head.manifest_hash),
        ("ir_hash", run.ir_hash, head.ir_hash),
        ("replay_token", run.replay_token, head.replay_token),
    ):
        if ours != theirs:
            raise CheckpointInvalidError(
                f"state was written for another run ({name} differs)",
                reason="STATE_MISMATCH",
                artifact=artifact,
                path=f"$.{name}",
            )
    tensors = _tensorio.unpack(
        [*head.parameters, *head.optimizer_slots],
        memoryview(data)[start + head_len :],
        artifact=artifact,
    )
    param_names = [d.name for d in head.parameters]
    expected = (
        list(run.ir.ir.parameters_by_name)
        if hasattr(run.ir, "ir") and hasattr(run.ir.ir, "parameters_by_name")
        else [p.name for p in run.model_ir.parameters]
    )
    if param_names != expected:
        raise CheckpointInvalidError(
            "parameter names differ from the IR's",
            reason="STATE_MISMATCH",
            artifact=artifact,
            path="$.parameters",
        )
    params = {d.name: tensors[d.name] for d in head.parameters}
    slots = {d.name: tensors[d.name] for d in head.optimizer_slots}
    stream = next((s for s in head.rng_streams if s.stream == DROPOUT_STREAM), None)
    if stream is None:
        raise CheckpointInvalidError(
            "dropout stream missing", reason="STATE_HEADER", artifact=artifact, path="$.rng_streams"
        )
    return State(
        run=run,
        params=run.program.to_device(params),
        opt_state=run.program.to_device(slots),
        t=head.t,
        opt_step=head.opt_step,
        stage_index=head.stage_index,
        stage_step=head.stage_step,
        stage_epochs=head.stage_epochs,
        cursors=dict(head.data_cursors),
        dropout=PhiloxStream.from_rng_state(
            (RNG_STATE_TAG, *stream.key, *stream.counter), stream.offset
        ),
        loss_total=head.loss_total if head.loss_total is not None else 0.0,
        state_fp=head.state_fp,
    )
