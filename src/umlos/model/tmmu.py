"""TMMU: the deterministic memory plan of one schedule of an IR (kernel spec §7, D13).

:func:`plan_memory` is a pure function: the same IR, schedule, batch size, dtype, arena config,
rank and world size give the same :class:`~umlos._generated.records.TmmuPlan`, byte for byte, and
so the same ``tmmu_plan_hash``. Nothing is allocated here; binding a plan to real buffers is
``PrepareMemory``'s job. The format is described in ``docs/formats/tmmu-plan.md``.

The procedure, as numbered in the code:

1. **Schedule.** ``forward`` = the nodes in IR order (n positions); ``train`` = the forward pass
   followed by the backward pass in reverse node order (2n positions, D13), so activations saved
   for the backward pass stay live across the boundary.
2. **Tensors and liveness.** Every input, parameter and node output, and in ``train`` the
   gradient ``grad:<name>`` of every parameter and activation the loss depends on. A tensor is
   live from the position that produces it to the last position that reads it, both inclusive.
3. **Slots** (per arena, linear scan): tensors sorted by (birth, size descending, name); the
   slots of tensors dead before the next birth are freed; each tensor takes the lowest free slot.
   Intervals form an interval graph, so the slot count equals the most tensors live at once.
4. **Offsets** (per arena, slots by id): ``off_0 = 0``, ``off_k+1 = align_up(off_k + size_k,
   align_k+1)``; the arena's peak is the end of its last slot rounded up to ``page_size``.
5. **Checks**: capacity (``ArenaTooSmallError``), then :func:`verify_plan` (alignment and
   no two simultaneously live tensors overlapping).
6. **Hash**: ``tmmu_plan_hash = Commit(TMMU_PLAN, [...])`` over the tables of the record.

>>> from umlos._generated.records import IrInput, IrNode, ModelIR
>>> from umlos.model.ir import validate_ir
>>> ir = validate_ir(ModelIR(ir_version=1, inputs=(IrInput(name="x", role="features", shape=(16,),
...     dtype="float32"),), parameters=(), nodes=(IrNode(node_id="a", instr="RELU",
...     inputs=("x",), shape_out=(16,)), IrNode(node_id="b", instr="TANH", inputs=("a",),
...     shape_out=(16,)), IrNode(node_id="c", instr="SIGMOID", inputs=("b",),
...     shape_out=(16,))), outputs=("c",)))
>>> plan = plan_memory(ir, schedule="forward", batch_size=8, dtype="float32")
>>> [(s.tensor, s.logical_slot, s.offset) for s in plan.slots]
[('a', 0, 0), ('b', 1, 512), ('c', 0, 0), ('x', 1, 512)]
>>> plan.metrics.peak_logical_slots, plan.metrics.tensor_count
(2, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from umlos._generated import tags
from umlos._generated.records import (
    TmmuArenaConfig,
    TmmuArenaPlan,
    TmmuPlan,
    TmmuPlanMetrics,
    TmmuSlotAssignment,
)
from umlos.codec import commit_hash, digest
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
from umlos.model.ir import ValidatedIR

__all__ = [
    "ARENAS",
    "DEFAULT_ALIGNMENT",
    "DEFAULT_PAGE_SIZE",
    "Arena",
    "Schedule",
    "arena_config_hash",
    "execution_order",
    "plan_memory",
    "verify_plan",
]

Arena = Literal["parameters", "activations", "gradients"]
Schedule = Literal["train", "forward"]

ARENAS: Final[tuple[Arena, ...]] = ("parameters", "activations", "gradients")
"""Arenas in ``tmmu_arena`` enum order: the order of ``TmmuPlan.arenas`` and of the hash tables."""

DEFAULT_ALIGNMENT: Final = 128
"""TmmuArenaConfig default (kernel §0.N): a cache line pair and any SIMD width we target."""
DEFAULT_PAGE_SIZE: Final = 4096
"""TmmuArenaConfig default: the usual OS page."""

PLAN_VERSION: Final = 1
_U64_MAX: Final = (1 << 64) - 1
_ITEMSIZE: Final[Mapping[str, int]] = {
    "float32": 4,
    "float64": 8,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "bool": 1,
}

# What each instruction's gradient kernel reads besides the incoming gradient (kernel §7:
# saved_for_backward). Operand indices, and whether it reads its own output. This is the
# planner's model of the backends (values that can be recomputed cheaply, e.g. DROPOUT's mask from
# the Philox stream, are not saved); changing it changes plans and so their hashes.
_SAVED: Final[Mapping[str, tuple[tuple[int, ...], bool]]] = {
    "MATMUL": ((0, 1), False),
    "BIAS_ADD": ((), False),
    "ADD": ((), False),
    "MUL": ((0, 1), False),
    "RELU": ((), True),
    "GELU": ((0,), False),
    "TANH": ((), True),
    "SIGMOID": ((), True),
    "SOFTMAX": ((), True),
    "LAYERNORM": ((0, 1), False),
    "CONV2D": ((0, 1), False),
    "MAXPOOL2D": ((0,), False),
    "AVGPOOL2D": ((), False),
    "FLATTEN": ((), False),
    "RESHAPE": ((), False),
    "TRANSPOSE": ((), False),
    "EMBEDDING": ((0,), False),
    "ATTENTION": ((0, 1, 2), False),
    "DROPOUT": ((), False),
    "CROSS_ENTROPY": ((0, 1), False),
    "BCE_LOGITS": ((0, 1), False),
    "MSE": ((0, 1), False),
}


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    arena: Arena
    size: int
    itemsize: int
    live_from: int
    live_to: int


def plan_memory(
    ir: ValidatedIR,
    *,
    schedule: Schedule,
    batch_size: int,
    dtype: Literal["float32", "float64"],
    arena_config: Mapping[str, TmmuArenaConfig] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> TmmuPlan:
    """Plan the memory of one ``schedule`` of ``ir`` for ``batch_size`` samples per call.

    ``arena_config`` maps arena names to limits; missing arenas and
    fields take the defaults (alignment 128, page 4096, unbounded). Parameters are replicated
    (``shard_spec_hash = Digest([])``).

    The planner re-checks what it relies on rather than trusting that ``ir`` came from
    :func:`~umlos.model.ir.validate_ir`: ``InvalidIrShapesError`` (an operand without a known
    shape), ``LivenessCycleError`` (an operand produced at or after its reader). It also raises
    ``InvalidIrError`` (train schedule without a loss),
    ``AllocationOverflowError`` (a size or offset past uint64), ``ArenaTooSmallError`` (a peak
    above ``capacity_bytes``) and, for a planner bug only, ``AlignmentViolationError`` /
    ``AddressCollisionError``.

    >>> from umlos._generated.records import IrInput, IrNode, ModelIR, TmmuArenaConfig
    >>> from umlos.model.ir import validate_ir
    >>> ir = validate_ir(ModelIR(ir_version=1, inputs=(IrInput(name="x", role="features", shape=(4,),
    ...     dtype="float64"),), parameters=(), nodes=(IrNode(node_id="y", instr="RELU",
    ...     inputs=("x",), shape_out=(4,)),), outputs=("y",)))
    >>> plan = plan_memory(ir, schedule="forward", batch_size=2, dtype="float64",
    ...     arena_config={"activations": TmmuArenaConfig(alignment_bytes=64, page_size=64)})
    >>> [(s.tensor, s.offset, s.size) for s in plan.slots], plan.peak_bytes
    ([('x', 0, 64), ('y', 64, 64)], 128)
    """
    ir_hash = ir.ir_hash
    if schedule not in ("train", "forward"):
        raise ContractViolationError(
            f"schedule must be 'train' or 'forward', got {schedule!r}", path="$.schedule"
        )
    if dtype not in ("float32", "float64"):
        raise ContractViolationError(
            f"compute dtype must be float32 or float64, got {dtype!r}", path="$.compute_dtype"
        )
    _check_count(batch_size, "$.batch_size", 1, _U64_MAX)
    _check_count(rank, "$.rank", 0, (1 << 32) - 1)
    _check_count(world_size, "$.world_size", 1, (1 << 32) - 1)
    if rank >= world_size:
        raise ContractViolationError(
            f"rank {rank} is not below world_size {world_size}", path="$.rank"
        )
    configs = _fill_config(arena_config or {})

    # 1. Schedule.
    order = execution_order(ir, schedule)
    # 2. Tensors and liveness.
    tensors = _liveness(ir, schedule, batch_size, dtype)
    # 3-4. Slots, then offsets, per arena.
    slots: dict[str, tuple[int, int, int]] = {}  # tensor -> (slot, offset, alignment)
    arena_plans: list[TmmuArenaPlan] = []
    address_table: list[list[object]] = []
    largest_sum = 0
    for arena in ARENAS:
        members = [t for t in tensors if t.arena == arena]
        if not members:
            continue
        config = configs[arena]
        slot_of = _assign_slots(members)
        slot_size, slot_align = _slot_extents(members, slot_of, config.alignment_bytes or 1)
        offsets, end = _offsets(arena, slot_size, slot_align)
        peak = _align_up(end, config.page_size or 1, arena)
        # 5. Capacity.
        if config.capacity_bytes is not None and peak > config.capacity_bytes:
            raise ArenaTooSmallError(
                f"arena {arena} holds {config.capacity_bytes} bytes but the plan needs {peak}",
                path=f"$.arena_config.{arena}.capacity_bytes",
                context={"arena": arena, "capacity": config.capacity_bytes, "required": peak},
            )
        for t in members:
            s = slot_of[t.name]
            slots[t.name] = (s, offsets[s], slot_align[s])
        for s, size in enumerate(slot_size):
            address_table.append([arena, s, offsets[s], size])
        largest_sum += sum(slot_size)
        arena_plans.append(
            TmmuArenaPlan(
                arena=arena,
                alignment_bytes=config.alignment_bytes or 1,
                slot_count=len(slot_size),
                peak_bytes=peak,
                capacity_bytes=config.capacity_bytes,
            )
        )

    assignments = tuple(
        TmmuSlotAssignment(
            tensor=t.name,
            arena=t.arena,
            logical_slot=slots[t.name][0],
            offset=slots[t.name][1],
            size=t.size,
            alignment=slots[t.name][2],
            live_from=t.live_from,
            live_to=t.live_to,
        )
        for t in sorted(tensors, key=lambda t: t.name.encode())
    )
    peak_total = sum(a.peak_bytes for a in arena_plans)
    if peak_total > _U64_MAX:
        raise AllocationOverflowError(
            f"total peak {peak_total} bytes passes uint64",
            path="$.peak_bytes",
            context={"arena": "all", "offset": 0, "size": peak_total},
        )
    slot_total = sum(a.slot_count for a in arena_plans)
    metrics = TmmuPlanMetrics(
        tensor_count=len(tensors),
        peak_logical_slots=slot_total,
        max_live=_max_live(tensors, len(order)),
        memory_reuse_ratio=1.0 - slot_total / len(tensors) if tensors else 0.0,
        internal_fragmentation_ratio=1.0 - largest_sum / peak_total if peak_total else 0.0,
    )

    # 6. Hash (the plan's tables, the hash itself left out).
    config_hash = _config_hash(configs)
    order_hash = digest(order)
    shard_hash = digest([])
    plan_hash = commit_hash(
        tags.TMMU_PLAN,
        [
            ir_hash,
            schedule,
            config_hash,
            order_hash,
            rank,
            world_size,
            shard_hash,
            [[a.tensor, a.arena, a.logical_slot] for a in assignments],
            address_table,
        ],
    )
    plan = TmmuPlan(
        plan_version=PLAN_VERSION,
        ir_hash=ir_hash,
        schedule=schedule,
        batch_size=batch_size,
        compute_dtype=dtype,
        rank=rank,
        world_size=world_size,
        arena_config_hash=config_hash,
        execution_order_hash=order_hash,
        shard_spec_hash=shard_hash,
        arenas=tuple(arena_plans),
        slots=assignments,
        peak_bytes=peak_total,
        metrics=metrics,
        tmmu_plan_hash=plan_hash,
    )
    # 5. Self-check: a planner bug must not reach a backend as overlapping buffers.
    verify_plan(plan)
    return plan


def verify_plan(plan: TmmuPlan) -> None:
    """Check a plan's geometry: every offset aligned, no two live tensors overlapping in memory.

    Used on every plan :func:`plan_memory` builds and on plans read back from a checkpoint.
    Raises ``AlignmentViolationError`` (an offset not a multiple of its slot's alignment, or an
    alignment below the arena's or not a power of two) or ``AddressCollisionError`` (two tensors
    of one arena whose lifetimes and byte ranges both intersect, or a slot past the arena's peak).

    >>> from umlos._generated.records import IrInput, IrNode, ModelIR
    >>> from umlos.model.ir import validate_ir
    >>> ir = validate_ir(ModelIR(ir_version=1, inputs=(IrInput(name="x", role="features", shape=(4,),
    ...     dtype="float32"),), parameters=(), nodes=(IrNode(node_id="y", instr="RELU",
    ...     inputs=("x",), shape_out=(4,)),), outputs=("y",)))
    >>> verify_plan(plan_memory(ir, schedule="forward", batch_size=1, dtype="float32"))
    """
    arena_align = {a.arena: a.alignment_bytes for a in plan.arenas}
    arena_peak = {a.arena: a.peak_bytes for a in plan.arenas}
    by_arena: dict[str, list[TmmuSlotAssignment]] = {}
    for index, s in enumerate(plan.slots):
        path = f"$.slots[{index}]"
        base = arena_align.get(s.arena, 1)
        if s.alignment < base or s.alignment & (s.alignment - 1) or s.offset % s.alignment:
            raise AlignmentViolationError(
                f"tensor {s.tensor}: offset {s.offset} with alignment {s.alignment} "
                f"(arena alignment {base})",
                path=path,
                context={"arena": s.arena, "logical_slot": s.logical_slot},
            )
        if s.arena not in arena_peak or s.offset + s.size > arena_peak[s.arena]:
            raise AddressCollisionError(
                f"tensor {s.tensor} ends at {s.offset + s.size}, past the end of arena {s.arena}",
                path=path,
                context={"arena": s.arena, "logical_slot": s.logical_slot},
            )
        by_arena.setdefault(s.arena, []).append(s)
    for arena in ARENAS:
        _check_disjoint(by_arena.get(arena, []))


def execution_order(ir: ValidatedIR, schedule: Schedule) -> list[list[str]]:
    """The schedule as ``[node_id, "fwd" | "bwd"]`` pairs (its digest is ``execution_order_hash``).

    >>> from umlos._generated.records import IrInput, IrNode, ModelIR
    >>> from umlos.model.ir import validate_ir
    >>> ir = validate_ir(ModelIR(ir_version=1, inputs=(IrInput(name="x", role="features", shape=(1,),
    ...     dtype="float32"),), parameters=(), nodes=(IrNode(node_id="a", instr="RELU",
    ...     inputs=("x",), shape_out=(1,)), IrNode(node_id="b", instr="TANH", inputs=("a",),
    ...     shape_out=(1,))), outputs=("b",)))
    >>> execution_order(ir, "train")
    [['a', 'fwd'], ['b', 'fwd'], ['b', 'bwd'], ['a', 'bwd']]
    """
    ids = [node.node_id for node in ir.ir.nodes]
    order = [[i, "fwd"] for i in ids]
    if schedule == "train":
        order += [[i, "bwd"] for i in reversed(ids)]
    return order


def arena_config_hash(config: Mapping[str, TmmuArenaConfig]) -> bytes:
    """``Digest`` of the arena config map with every arena and default filled in.

    An empty map and a map spelling out the defaults therefore hash alike.

    >>> from umlos._generated.records import TmmuArenaConfig
    >>> arena_config_hash({}) == arena_config_hash(
    ...     {"gradients": TmmuArenaConfig(alignment_bytes=128, page_size=4096)})
    True
    """
    return _config_hash(_fill_config(config))


def _config_hash(filled: Mapping[Arena, TmmuArenaConfig]) -> bytes:
    return digest({arena: filled[arena].to_obj() for arena in ARENAS})


# --- internals -------------------------------------------------------------------------------


def _check_count(value: object, path: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ContractViolationError(
            f"expected an integer in [{low}, {high}], got {value!r}", path=path
        )


def _fill_config(config: Mapping[str, TmmuArenaConfig]) -> dict[Arena, TmmuArenaConfig]:
    unknown = sorted(set(config) - set(ARENAS))
    if unknown:
        raise ContractViolationError(
            f"unknown arena {unknown[0]!r} (arenas: {', '.join(ARENAS)})",
            path=f"$.arena_config.{unknown[0]}",
        )
    out: dict[Arena, TmmuArenaConfig] = {}
    for arena in ARENAS:
        given = config.get(arena, TmmuArenaConfig())
        align = DEFAULT_ALIGNMENT if given.alignment_bytes is None else given.alignment_bytes
        page = DEFAULT_PAGE_SIZE if given.page_size is None else given.page_size
        for field, value in (("alignment_bytes", align), ("page_size", page)):
            # Both are powers of two by contract: align_up and the alignment check rely on it.
            if isinstance(value, bool) or value < 1 or value & (value - 1):
                raise ContractViolationError(
                    f"{field} must be a power of two, got {value}",
                    path=f"$.arena_config.{arena}.{field}",
                )
        out[arena] = TmmuArenaConfig(
            capacity_bytes=given.capacity_bytes, alignment_bytes=align, page_size=page
        )
    return out


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _liveness(ir: ValidatedIR, schedule: Schedule, batch_size: int, dtype: str) -> list[_Tensor]:
    """Step 2: every planned tensor with its size and inclusive lifetime."""
    model, ir_hash = ir.ir, ir.ir_hash
    n = len(model.nodes)
    last = (2 * n if schedule == "train" else n) - 1
    compute = _ITEMSIZE[dtype]

    def bwd(i: int) -> int:  # schedule position of node i's gradient kernel
        return 2 * n - 1 - i

    pos: dict[str, int] = {}  # producer position; inputs and parameters are ready at 0
    shape: dict[str, tuple[int, ...]] = {}
    itemsize: dict[str, int] = {}
    arena: dict[str, Arena] = {}
    for inp in model.inputs:
        shape[inp.name] = (batch_size, *inp.shape)
        # Backends cast float inputs to the compute dtype and integer inputs to int64.
        value = ir.values.get(inp.name)
        itemsize[inp.name] = compute if value is None or value.elem == "float" else 8
        arena[inp.name], pos[inp.name] = "activations", 0
    for par in model.parameters:
        shape[par.name] = tuple(par.shape)
        itemsize[par.name] = compute
        arena[par.name], pos[par.name] = "parameters", 0
    node_index = {node.node_id: i for i, node in enumerate(model.nodes)}
    for i, node in enumerate(model.nodes):
        for ref in node.inputs:
            where = node_index.get(ref)
            if where is not None and where >= i:
                raise LivenessCycleError(
                    f"node {node.node_id} reads {ref}, which is produced at position {where}",
                    path=f"$.nodes[{i}].inputs",
                    context={"ir_hash": ir_hash, "node_id": node.node_id},
                )
            if ref not in shape:
                raise InvalidIrShapesError(
                    f"node {node.node_id} reads {ref}, which has no known shape",
                    path=f"$.nodes[{i}].inputs",
                    context={"ir_hash": ir_hash, "node_id": node.node_id},
                )
        shape[node.node_id] = (batch_size, *node.shape_out)
        itemsize[node.node_id] = compute
        arena[node.node_id], pos[node.node_id] = "activations", i

    death = dict(pos)
    for name, home in arena.items():
        if home == "parameters":
            death[name] = last  # persistent
    for result in (*model.outputs, *((model.loss,) if model.loss else ())):
        if result in death:
            death[result] = last  # the caller reads results after the schedule
    for i, node in enumerate(model.nodes):
        for ref in node.inputs:
            death[ref] = max(death[ref], i)
    grad_from: dict[str, int] = {}
    grad_to: dict[str, int] = {}
    if schedule == "train":
        if model.loss is None or model.loss not in node_index:
            raise InvalidIrError(
                "the train schedule needs a loss node",
                path="$.loss",
                context={"ir_hash": ir_hash, "node_id": model.loss or ""},
            )
        grad_from, grad_to = _gradient_lifetimes(ir, model.loss, bwd, last)
        for i, node in enumerate(model.nodes):
            if node.node_id not in grad_to:
                continue  # no gradient reaches this node: its backward step does nothing
            saved_inputs, saves_output = _SAVED[node.instr]
            for k in saved_inputs:
                if k < len(node.inputs):  # CONV2D's bias is optional
                    ref = node.inputs[k]
                    death[ref] = max(death[ref], bwd(i))
            if saves_output:
                death[node.node_id] = max(death[node.node_id], bwd(i))

    tensors = [
        _Tensor(name, home, _nbytes(name, shape, itemsize), itemsize[name], pos[name], death[name])
        for name, home in arena.items()
    ]
    tensors += [
        _Tensor(
            f"grad:{name}",
            "gradients",
            _nbytes(name, shape, itemsize),
            itemsize[name],
            grad_from[name],
            grad_to[name],
        )
        for name in grad_to
    ]
    return tensors


def _gradient_lifetimes(
    ir: ValidatedIR, loss: str, bwd: Callable[[int], int], last: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Lifetimes of ``grad:<name>`` for every parameter and activation on a path to the loss.

    An operand gets a gradient when the IR marks it (``Node.grad_operands``: a float value that
    depends on a parameter) and its consumer is itself on a path to the loss. A gradient is born
    at the first backward position that writes to it (its latest forward consumer, or the seed of
    the loss) and read last by its producer's backward step; a parameter's gradient lives to the
    end of the schedule (the optimizer reads it). Unreached parameters still get a zero gradient,
    born where the backward pass starts.
    """
    on_path = {loss}
    grad_from: dict[str, int] = {}
    grad_to: dict[str, int] = {}
    params = set(ir.parameter_names)
    for node in reversed(ir.nodes):
        if node.node_id not in on_path:
            continue
        b = bwd(node.index)
        if node.node_id == loss:
            grad_from[loss] = b  # the seed dL/dL
        grad_to[node.node_id] = b
        for ref, needed in zip(node.inputs, node.grad_operands, strict=True):
            if not needed:
                continue
            on_path.add(ref)
            grad_from.setdefault(ref, b)  # positions ascend, so the first write is the smallest
            if ref in params:
                grad_to[ref] = last
    start = len(ir.nodes)
    for name in ir.parameter_names:
        if name not in grad_to:
            grad_from[name], grad_to[name] = start, last
    return grad_from, grad_to


def _nbytes(name: str, shape: Mapping[str, tuple[int, ...]], itemsize: Mapping[str, int]) -> int:
    size = _numel(shape[name]) * itemsize[name]
    if size > _U64_MAX:
        raise AllocationOverflowError(
            f"tensor {name} needs {size} bytes, past uint64",
            path="$.batch_size",
            context={"arena": "activations", "offset": 0, "size": size},
        )
    return size


def _assign_slots(members: Sequence[_Tensor]) -> dict[str, int]:
    """Step 3: linear scan, lowest free slot; frees are applied before each birth."""
    ordered = sorted(members, key=lambda t: (t.live_from, -t.size, t.name.encode()))
    slot_of: dict[str, int] = {}
    busy: list[tuple[int, int]] = []  # (live_to, slot) of tensors holding a slot
    free: list[int] = []
    count = 0
    for t in ordered:
        still = []
        for live_to, s in busy:
            if live_to < t.live_from:
                free.append(s)
            else:
                still.append((live_to, s))
        busy = still
        if free:
            free.sort()
            s = free.pop(0)
        else:
            s, count = count, count + 1
        slot_of[t.name] = s
        busy.append((t.live_to, s))
    return slot_of


def _slot_extents(
    members: Sequence[_Tensor], slot_of: Mapping[str, int], arena_alignment: int
) -> tuple[list[int], list[int]]:
    """Per slot: the largest tensor's bytes and max(tensor alignment, arena alignment)."""
    count = max(slot_of.values()) + 1
    size = [0] * count
    align = [arena_alignment] * count
    for t in members:
        s = slot_of[t.name]
        size[s] = max(size[s], t.size)
        # A tensor's own alignment is its element size (its dtype's natural alignment).
        align[s] = max(align[s], t.itemsize)
    return size, align


def _align_up(value: int, alignment: int, arena: str) -> int:
    out = (value + alignment - 1) & ~(alignment - 1)
    if out > _U64_MAX:
        raise AllocationOverflowError(
            f"offset {value} aligned to {alignment} passes uint64 in arena {arena}",
            path=f"$.arena_config.{arena}",
            context={"arena": arena, "offset": value, "size": 0},
        )
    return out


def _offsets(arena: str, size: Sequence[int], align: Sequence[int]) -> tuple[list[int], int]:
    """Step 4: aligned prefix sums over slots in id order; returns offsets and the end."""
    offsets: list[int] = []
    end = 0
    for s, nbytes in enumerate(size):
        off = _align_up(end, align[s], arena)
        end = off + nbytes
        if end > _U64_MAX:
            raise AllocationOverflowError(
                f"offset {off} + size {nbytes} overflows arena {arena}",
                path=f"$.arena_config.{arena}",
                context={"arena": arena, "offset": off, "size": nbytes},
            )
        offsets.append(off)
    return offsets, end


def _max_live(tensors: Sequence[_Tensor], length: int) -> int:
    """Most tensors live at one schedule position (a sweep over birth/death events)."""
    delta = [0] * (length + 1)
    for t in tensors:
        delta[t.live_from] += 1
        delta[t.live_to + 1] -= 1
    best = live = 0
    for d in delta:
        live += d
        best = max(best, live)
    return best


def _check_disjoint(slots: Sequence[TmmuSlotAssignment]) -> None:
    """No two tensors of one arena overlap in both lifetime and bytes (sweep over births)."""
    ordered = sorted(slots, key=lambda s: (s.live_from, s.offset, s.tensor.encode()))
    live: list[TmmuSlotAssignment] = []
    for s in ordered:
        live = [o for o in live if o.live_to >= s.live_from]
        for o in live:
            if s.size and o.size and s.offset < o.offset + o.size and o.offset < s.offset + s.size:
                raise AddressCollisionError(
                    f"tensors {o.tensor} and {s.tensor} overlap in arena {s.arena} "
                    f"(bytes {s.offset}..{s.offset + s.size} and {o.offset}..{o.offset + o.size}, "
                    f"both live at position {s.live_from})",
                    path="$.slots",
                    context={"arena": s.arena, "logical_slot": s.logical_slot},
                )
        live.append(s)
