"""The TMMU planner: liveness, slot reuse, aligned offsets, the plan hash, and its errors.

Properties are checked on random DAGs (chains with residual skips) and on the presets: no two
tensors of one arena that are live at the same schedule position share a byte; every offset is
aligned; each reusing arena uses exactly as many slots as tensors are ever live at once (the
interval-graph optimum); the plan never needs more bytes than giving every tensor its own aligned
buffer; planning is deterministic and the hash of a fixed plan is pinned.
"""

from __future__ import annotations

import dataclasses
import doctest
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import umlos.model.tmmu as tmmu
from umlos._generated.records import (
    BasicCnnPresetParams,
    IrInitUniformFanIn,
    IrInput,
    IrNode,
    IrParameter,
    MlpPresetParams,
    ModelIR,
    ModelPresetBasicCnn,
    ModelPresetMlp,
    TmmuArenaConfig,
    TmmuPlan,
)
from umlos.errors import (
    AddressCollisionError,
    AlignmentViolationError,
    AllocationOverflowError,
    ArenaTooSmallError,
    ContractViolationError,
    InvalidIrError,
    InvalidIrShapesError,
    LivenessCycleError,
)
from umlos.model import ValidatedIR, expand_preset, validate_ir
from umlos.model.tmmu import ARENAS, arena_config_hash, execution_order, plan_memory, verify_plan

HYP = settings(max_examples=60, deadline=None)


# --- IR builders ---------------------------------------------------------------------------------


def chain(n: int, width: int = 16) -> ValidatedIR:
    """x → TANH → TANH → … (n nodes), no parameters: forward only."""
    nodes = []
    prev = "x"
    for i in range(n):
        nodes.append(IrNode(node_id=f"n{i}", instr="TANH", inputs=(prev,), shape_out=(width,)))
        prev = f"n{i}"
    return validate_ir(
        ModelIR(
            ir_version=1,
            inputs=(IrInput(name="x", role="features", shape=(width,), dtype="float32"),),
            parameters=(),
            nodes=tuple(nodes),
            outputs=(prev,),
        )
    )


def residual_net(ops: list[tuple[str, int]], width: int = 8) -> ValidatedIR:
    """A random residual DAG with a parameter and an MSE head.

    Each entry of ``ops`` is ``(kind, back)``: ``unary`` applies TANH to the latest value,
    ``skip`` ADDs the latest value and the one ``back`` values earlier (a residual edge),
    ``dense`` multiplies the latest value by a fresh weight.
    """
    u = IrInitUniformFanIn(fan_in=width)
    params: list[IrParameter] = [
        IrParameter(name="w0", shape=(width, width), dtype="float32", init=u)
    ]
    nodes = [IrNode(node_id="v0", instr="MATMUL", inputs=("x", "w0"), shape_out=(width,))]
    values = ["v0"]
    for i, (kind, back) in enumerate(ops, start=1):
        nid = f"v{i}"
        if kind == "unary":
            node = IrNode(node_id=nid, instr="TANH", inputs=(values[-1],), shape_out=(width,))
        elif kind == "skip":
            other = values[max(0, len(values) - 1 - back)]
            node = IrNode(node_id=nid, instr="ADD", inputs=(values[-1], other), shape_out=(width,))
        else:
            w = f"w{i}"
            params.append(IrParameter(name=w, shape=(width, width), dtype="float32", init=u))
            node = IrNode(node_id=nid, instr="MATMUL", inputs=(values[-1], w), shape_out=(width,))
        nodes.append(node)
        values.append(nid)
    nodes.append(IrNode(node_id="loss", instr="MSE", inputs=(values[-1], "t"), shape_out=()))
    return validate_ir(
        ModelIR(
            ir_version=1,
            name="residual",
            inputs=(
                IrInput(name="x", role="features", shape=(width,), dtype="float32"),
                IrInput(name="t", role="labels", shape=(width,), dtype="float32"),
            ),
            parameters=tuple(params),
            nodes=tuple(nodes),
            outputs=(values[-1],),
            loss="loss",
        )
    )


MLP = validate_ir(
    expand_preset(
        ModelPresetMlp(
            preset_params=MlpPresetParams(in_features=64, hidden_sizes=(128,), out_features=10)
        ),
        task_type="multiclass",
        dtype="float32",
    )
)
CNN = validate_ir(
    expand_preset(
        ModelPresetBasicCnn(
            preset_params=BasicCnnPresetParams(in_channels=1, height=8, width=8, out_features=10)
        ),
        task_type="multiclass",
        dtype="float32",
    )
)


# --- the properties --------------------------------------------------------------------------------


def check_plan(plan: TmmuPlan) -> None:
    """Every geometric property a plan must have, checked by brute force."""
    by_arena: dict[str, list] = {}
    for s in plan.slots:
        by_arena.setdefault(s.arena, []).append(s)
    arenas = {a.arena: a for a in plan.arenas}
    assert [a.arena for a in plan.arenas] == [a for a in ARENAS if a in by_arena]
    for arena, slots in by_arena.items():
        summary = arenas[arena]
        # Aligned: to the slot's alignment, which is at least the arena's, and a power of two.
        for s in slots:
            assert s.alignment >= summary.alignment_bytes
            assert s.alignment & (s.alignment - 1) == 0
            assert s.offset % s.alignment == 0
            assert s.offset + s.size <= summary.peak_bytes
        # No overlap between tensors live at the same time (all pairs).
        for i, a in enumerate(slots):
            for b in slots[i + 1 :]:
                if a.live_from <= b.live_to and b.live_from <= a.live_to:
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
                    assert a.logical_slot != b.logical_slot
        # Optimal slot count: the most tensors of this arena live at one position.
        positions = range(max(s.live_to for s in slots) + 1)
        most = max(sum(s.live_from <= p <= s.live_to for s in slots) for p in positions)
        assert summary.slot_count == most
        assert {s.logical_slot for s in slots} == set(range(summary.slot_count))
        # Never worse than a private aligned buffer per tensor (each rounded up to alignment).
        naive = sum(-(-s.size // s.alignment) * s.alignment for s in slots)
        end = max(s.offset + s.size for s in slots)
        assert end <= naive
    assert plan.peak_bytes == sum(a.peak_bytes for a in plan.arenas)
    assert plan.metrics.tensor_count == len(plan.slots)
    assert plan.metrics.peak_logical_slots == sum(a.slot_count for a in plan.arenas)
    assert [s.tensor for s in plan.slots] == sorted(s.tensor for s in plan.slots)
    assert TmmuPlan.from_obj(plan.to_obj()) == plan  # schema-valid record


ops_strategy = st.lists(
    st.tuples(st.sampled_from(["unary", "skip", "dense"]), st.integers(1, 6)),
    min_size=1,
    max_size=24,
)


@HYP
@given(
    ops=ops_strategy,
    schedule=st.sampled_from(["train", "forward"]),
    batch=st.integers(1, 64),
    align=st.sampled_from([1, 8, 64, 128, 512]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_random_residual_graphs(
    ops: list[tuple[str, int]], schedule: str, batch: int, align: int, dtype: str
) -> None:
    ir = residual_net(ops)
    config = {a: TmmuArenaConfig(alignment_bytes=align, page_size=64) for a in ARENAS}
    plan = plan_memory(ir, schedule=schedule, batch_size=batch, dtype=dtype, arena_config=config)  # type: ignore[arg-type]
    check_plan(plan)
    again = plan_memory(ir, schedule=schedule, batch_size=batch, dtype=dtype, arena_config=config)  # type: ignore[arg-type]
    assert again == plan


@pytest.mark.parametrize("ir", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("schedule", ["train", "forward"])
def test_presets(ir: ValidatedIR, schedule: str) -> None:
    plan = plan_memory(ir, schedule=schedule, batch_size=64, dtype="float32")  # type: ignore[arg-type]
    check_plan(plan)
    acts = next(a for a in plan.arenas if a.arena == "activations")
    count = sum(s.arena == "activations" for s in plan.slots)
    assert acts.slot_count < count  # activations are reused
    params = next(a for a in plan.arenas if a.arena == "parameters")
    assert params.slot_count == len(ir.parameter_names)  # never reused


# --- liveness ---------------------------------------------------------------------------------------


def test_chain_reuses_two_slots() -> None:
    """A chain needs only an input and an output buffer at each step: two slots, ping-pong."""
    plan = plan_memory(chain(10), schedule="forward", batch_size=4, dtype="float32")
    check_plan(plan)
    (acts,) = plan.arenas
    assert (acts.arena, acts.slot_count) == ("activations", 2)
    assert plan.metrics.max_live == 2
    assert plan.metrics.memory_reuse_ratio == 1 - 2 / 11
    slots = {s.tensor: s.logical_slot for s in plan.slots}
    assert [slots[f"n{i}"] for i in range(4)] == [0, 1, 0, 1]


def test_residual_edge_keeps_its_source_alive() -> None:
    ir = residual_net([("unary", 1), ("unary", 1), ("unary", 1), ("skip", 3)])
    plan = plan_memory(ir, schedule="forward", batch_size=2, dtype="float32")
    check_plan(plan)
    live = {s.tensor: (s.live_from, s.live_to) for s in plan.slots}
    assert live["v0"] == (0, 4)  # read again by the ADD at position 4
    acts = next(a for a in plan.arenas if a.arena == "activations")
    # v0 held across the chain, the labels t held until the loss, and the chain's ping-pong.
    assert acts.slot_count == 4


def test_train_schedule_keeps_saved_activations_and_plans_gradients() -> None:
    plan = plan_memory(MLP, schedule="train", batch_size=8, dtype="float32")
    n = len(MLP.nodes)
    assert execution_order(MLP, "train") == [[x.node_id, "fwd"] for x in MLP.nodes] + [
        [x.node_id, "bwd"] for x in reversed(MLP.nodes)
    ]
    live = {s.tensor: (s.live_from, s.live_to, s.arena) for s in plan.slots}
    pos = {x.node_id: i for i, x in enumerate(MLP.nodes)}
    bwd = {x: 2 * n - 1 - i for x, i in pos.items()}
    # x is read by fc1's MATMUL gradient (dW = xᵀ·g) in the backward pass.
    assert live["x"][1] == bwd["fc1.matmul"]
    # RELU saves its output; its gradient reads it at its backward position.
    assert live["act1"][1] >= bwd["act1"]
    # Parameter gradients live to the end (the optimizer reads them); all are planned.
    for name in MLP.parameter_names:
        assert live[f"grad:{name}"][1] == 2 * n - 1
        assert live[f"grad:{name}"][2] == "gradients"
        assert live[name] == (0, 2 * n - 1, "parameters")
    # The loss's gradient is the seed, born at the loss's backward position.
    assert live["grad:loss"][0] == bwd["loss"]
    assert "grad:x" not in live and "grad:y" not in live  # inputs get no gradient


def test_forward_schedule_has_no_gradients() -> None:
    plan = plan_memory(CNN, schedule="forward", batch_size=8, dtype="float32")
    assert not any(s.tensor.startswith("grad:") for s in plan.slots)
    assert "gradients" not in {a.arena for a in plan.arenas}


def test_sizes_follow_batch_dtype_and_element_kind() -> None:
    plan = plan_memory(MLP, schedule="forward", batch_size=5, dtype="float64")
    size = {s.tensor: s.size for s in plan.slots}
    assert size["x"] == 5 * 64 * 8
    assert size["y"] == 5 * 8  # int64 labels whatever the compute dtype
    assert size["fc1.weight"] == 64 * 128 * 8  # parameters have no batch axis
    assert size["loss"] == 5 * 8  # per-sample losses


# --- hashing -----------------------------------------------------------------------------------------


def test_plan_is_deterministic_and_its_hash_pinned() -> None:
    plans = [plan_memory(MLP, schedule="train", batch_size=64, dtype="float32") for _ in range(2)]
    assert plans[0] == plans[1]
    assert plans[0].tmmu_plan_hash.hex() == PINNED_MLP_TRAIN_HASH


# Changing the planner's rules (sort keys, saved-for-backward table, offsets) changes this: that
# is a MAJOR change of the plan format (docs/formats/tmmu-plan.md), not a test to update lightly.
PINNED_MLP_TRAIN_HASH = "ef61f8a6a061d93a0a87cd2268f418ef5444c7f6e1a350d66afbdaf6519ecbd3"


def test_hash_binds_every_input() -> None:
    base = plan_memory(MLP, schedule="train", batch_size=64, dtype="float32")
    variants = [
        plan_memory(MLP, schedule="forward", batch_size=64, dtype="float32"),
        plan_memory(MLP, schedule="train", batch_size=32, dtype="float32"),
        plan_memory(MLP, schedule="train", batch_size=64, dtype="float64"),
        plan_memory(MLP, schedule="train", batch_size=64, dtype="float32", rank=1, world_size=2),
        plan_memory(
            MLP,
            schedule="train",
            batch_size=64,
            dtype="float32",
            arena_config={"activations": TmmuArenaConfig(alignment_bytes=256)},
        ),
        plan_memory(CNN, schedule="train", batch_size=64, dtype="float32"),
    ]
    hashes = {p.tmmu_plan_hash for p in [base, *variants]}
    assert len(hashes) == len(variants) + 1
    # The hash is over the plan's tables; the record carries the inputs' digests.
    assert base.arena_config_hash == arena_config_hash({})
    assert base.ir_hash == MLP.ir_hash


def test_arena_config_defaults_hash_alike() -> None:
    spelled = {a: TmmuArenaConfig(alignment_bytes=128, page_size=4096) for a in ARENAS}
    assert arena_config_hash(spelled) == arena_config_hash({})
    assert arena_config_hash({"parameters": TmmuArenaConfig(capacity_bytes=10)}) != (
        arena_config_hash({})
    )


# --- errors ------------------------------------------------------------------------------------------


def test_arena_too_small() -> None:
    plan = plan_memory(MLP, schedule="train", batch_size=64, dtype="float32")
    acts = next(a for a in plan.arenas if a.arena == "activations")
    fits = {"activations": TmmuArenaConfig(capacity_bytes=acts.peak_bytes)}
    plan_memory(MLP, schedule="train", batch_size=64, dtype="float32", arena_config=fits)
    small = {"activations": TmmuArenaConfig(capacity_bytes=acts.peak_bytes - 1)}
    with pytest.raises(ArenaTooSmallError) as info:
        plan_memory(MLP, schedule="train", batch_size=64, dtype="float32", arena_config=small)
    assert info.value.context == {
        "arena": "activations",
        "capacity": acts.peak_bytes - 1,
        "required": acts.peak_bytes,
    }
    assert info.value.path == "$.arena_config.activations.capacity_bytes"


def test_verify_rejects_misaligned_and_overlapping_plans() -> None:
    plan = plan_memory(chain(4), schedule="forward", batch_size=4, dtype="float32")
    verify_plan(plan)
    slots = list(plan.slots)
    k = next(i for i, s in enumerate(slots) if s.offset > 0)
    shifted = dataclasses.replace(slots[k], offset=slots[k].offset + 4)
    with pytest.raises(AlignmentViolationError) as info:
        verify_plan(dataclasses.replace(plan, slots=(*slots[:k], shifted, *slots[k + 1 :])))
    assert info.value.path == f"$.slots[{k}]"
    collided = dataclasses.replace(slots[k], offset=0)  # onto a tensor live at the same time
    with pytest.raises(AddressCollisionError):
        verify_plan(dataclasses.replace(plan, slots=(*slots[:k], collided, *slots[k + 1 :])))
    past_end = dataclasses.replace(slots[k], offset=plan.peak_bytes)
    with pytest.raises(AddressCollisionError):
        verify_plan(dataclasses.replace(plan, slots=(*slots[:k], past_end, *slots[k + 1 :])))


def test_planner_rechecks_what_it_relies_on() -> None:
    """A ValidatedIR built around validate_ir (here by replacing its record) is not trusted."""
    good = chain(3)
    nodes = list(good.ir.nodes)
    nodes[0] = dataclasses.replace(nodes[0], inputs=("n2",))  # reads a later node
    with pytest.raises(LivenessCycleError) as info:
        plan_memory(
            dataclasses.replace(good, ir=dataclasses.replace(good.ir, nodes=tuple(nodes))),
            schedule="forward",
            batch_size=1,
            dtype="float32",
        )
    assert info.value.context["node_id"] == "n0"
    nodes[0] = dataclasses.replace(nodes[0], inputs=("ghost",))  # a value with no shape
    with pytest.raises(InvalidIrShapesError):
        plan_memory(
            dataclasses.replace(good, ir=dataclasses.replace(good.ir, nodes=tuple(nodes))),
            schedule="forward",
            batch_size=1,
            dtype="float32",
        )


def test_train_needs_a_loss() -> None:
    with pytest.raises(InvalidIrError, match="loss"):
        plan_memory(chain(2), schedule="train", batch_size=1, dtype="float32")


def test_sizes_past_uint64_overflow() -> None:
    with pytest.raises(AllocationOverflowError):
        plan_memory(chain(2), schedule="forward", batch_size=2**64 - 1, dtype="float64")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "backward"}, "schedule"),
        ({"dtype": "float16"}, "dtype"),
        ({"batch_size": 0}, "integer"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"arena_config": {"scratch": TmmuArenaConfig()}}, "unknown arena"),
        ({"arena_config": {"gradients": TmmuArenaConfig(alignment_bytes=96)}}, "power of two"),
        ({"arena_config": {"gradients": TmmuArenaConfig(page_size=3000)}}, "power of two"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"schedule": "forward", "batch_size": 1, "dtype": "float32"}
    args.update(kwargs)
    with pytest.raises(ContractViolationError, match=match):
        plan_memory(chain(2), **args)  # type: ignore[arg-type]


def test_metrics() -> None:
    plan = plan_memory(CNN, schedule="train", batch_size=16, dtype="float32")
    m = plan.metrics
    assert 0.0 < m.memory_reuse_ratio < 1.0
    assert 0.0 <= m.internal_fragmentation_ratio < 1.0
    per_position = Counter()
    for s in plan.slots:
        for p in range(s.live_from, s.live_to + 1):
            per_position[p] += 1
    assert m.max_live == max(per_position.values())


def test_module_docstrings() -> None:
    result = doctest.testmod(tmmu)
    assert result.attempted > 0 and result.failed == 0
