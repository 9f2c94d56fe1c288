"""Model IR v1: the instruction enum, frozen resolved nodes, and the validator.

:func:`validate_ir` checks a :class:`~umlos._generated.records.ModelIR` completely before any
compute and returns a :class:`ValidatedIR`: nodes resolved into frozen :class:`Node` values
(attribute defaults filled, SOFTMAX axis normalised), the shape and element kind of every value,
and ``ir_hash``. Execution order is declaration order (the schema forbids forward references, so
there are no tie-breaks). The format and ISA semantics are in ``docs/formats/model-ir.md``; the
choices in ADR 0011.

Validation is a numbered procedure; each failure raises the catalogue error with ``node_id`` in
its context and a JSON path:

1. Schema: the record round-trips through its generated parser (``INVALID_IR``).
2. Declarations: unique names across inputs, parameters and nodes; one ``features`` input, at
   most one ``labels`` input; positive extents; one parameter dtype (``INVALID_IR``).
3. Nodes, in order: operands resolve to an input, a parameter or an earlier node (a later node
   or the node itself is ``CYCLE_DETECTED``, an unknown name ``INVALID_IR``); arity, operand
   kind (activation or parameter) and element kind (float or int); attributes belong to the
   instruction and are well formed (``INVALID_IR``); operand shapes fit and the inferred output
   shape equals ``shape_out`` (``SHAPE_MISMATCH``).
4. Outputs and loss: outputs name nodes that need no labels; ``loss`` names the only loss head;
   no node consumes a loss head (``INVALID_IR``).

>>> from umlos._generated.records import IrInput, IrNode, IrParameter, IrInitConstant, ModelIR
>>> ir = ModelIR(
...     ir_version=1,
...     inputs=(IrInput(name="x", role="features", shape=(3,), dtype="float32"),),
...     parameters=(
...         IrParameter(name="w", shape=(3, 2), dtype="float32", init=IrInitConstant(value=0.0)),
...     ),
...     nodes=(IrNode(node_id="y", instr="MATMUL", inputs=("x", "w"), shape_out=(2,)),),
...     outputs=("y",),
... )
>>> v = validate_ir(ir)
>>> v.nodes[0].op, v.shape("y"), v.parameter_elements
(<Op.MATMUL: 'MATMUL'>, (2,), 6)
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from umlos._generated.records import IrAttrs, IrNode, ModelIR
from umlos.codec import digest
from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    CycleDetectedError,
    InvalidIrError,
    ShapeMismatchError,
)

__all__ = [
    "LOSS_OPS",
    "Attrs",
    "ElemKind",
    "Node",
    "Op",
    "ValidatedIR",
    "Value",
    "ir_hash",
    "parse_ir",
    "validate_ir",
]

Shape = tuple[int, ...]
ElemKind = Literal["float", "int"]
ValueKind = Literal["input", "parameter", "node"]


class Op(enum.StrEnum):
    """The closed instruction set of IR v1 (``model_ir.yaml#/$defs/ir_instruction``)."""

    MATMUL = "MATMUL"
    BIAS_ADD = "BIAS_ADD"
    ADD = "ADD"
    MUL = "MUL"
    RELU = "RELU"
    GELU = "GELU"
    TANH = "TANH"
    SIGMOID = "SIGMOID"
    SOFTMAX = "SOFTMAX"
    LAYERNORM = "LAYERNORM"
    CONV2D = "CONV2D"
    MAXPOOL2D = "MAXPOOL2D"
    AVGPOOL2D = "AVGPOOL2D"
    FLATTEN = "FLATTEN"
    RESHAPE = "RESHAPE"
    TRANSPOSE = "TRANSPOSE"
    EMBEDDING = "EMBEDDING"
    ATTENTION = "ATTENTION"
    DROPOUT = "DROPOUT"
    CROSS_ENTROPY = "CROSS_ENTROPY"
    BCE_LOGITS = "BCE_LOGITS"
    MSE = "MSE"


LOSS_OPS: Final = frozenset({Op.CROSS_ENTROPY, Op.BCE_LOGITS, Op.MSE})
"""Loss heads: per-sample losses, reduced to the IR's scalar ``[]`` by the batch mean."""

_NODE_PATH: Final = re.compile(r"^\$\.nodes\[(\d+)\]")
DEFAULT_EPS: Final = 1e-5  # LAYERNORM default (model_ir.yaml IrAttrs.eps)


@dataclass(frozen=True, slots=True)
class Attrs:
    """Attributes with the schema's defaults filled in; fields an op does not take keep defaults.

    ``axis`` is the SOFTMAX axis normalised to ``0 ≤ axis < rank`` over per-sample dimensions.
    ``stride`` defaults to ``kernel_size`` for pools and ``(1, 1)`` for CONV2D.
    """

    axis: int = 0
    eps: float = DEFAULT_EPS
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    heads: int = 1
    causal: bool = False
    p: float = 0.0
    shape: Shape = ()
    perm: Shape = ()


@dataclass(frozen=True, slots=True)
class Value:
    """A named IR value: its kind, shape (per-sample unless a parameter) and element kind."""

    name: str
    kind: ValueKind
    shape: Shape
    elem: ElemKind
    index: int  # position among inputs, parameters or nodes


@dataclass(frozen=True, slots=True)
class Node:
    """One resolved instruction: execution position, op, operands, attributes, output facts.

    ``needs_labels`` is true when the node depends on the labels input (skipped at inference).
    ``grad_operands[j]`` is true when operand ``j`` is a float value that depends on a parameter,
    i.e. when the backward pass must produce its gradient.
    """

    index: int
    node_id: str
    op: Op
    inputs: tuple[str, ...]
    attrs: Attrs
    shape_out: Shape
    needs_labels: bool
    grad_operands: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class ValidatedIR:
    """A checked IR: the record, its hash, resolved nodes in execution order and value facts.

    Construct only through :func:`validate_ir`.
    """

    ir: ModelIR
    ir_hash: bytes
    nodes: tuple[Node, ...]
    values: Mapping[str, Value] = field(repr=False, compare=False)  # derived from ir
    features: str
    labels: str | None
    parameter_elements: int

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Parameter names in registration order."""
        return tuple(p.name for p in self.ir.parameters)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output value names, in order."""
        return self.ir.outputs

    @property
    def loss(self) -> str | None:
        """The loss head's node id, or ``None`` for an inference-only IR."""
        return self.ir.loss

    @property
    def param_dtype(self) -> str | None:
        """The parameters' common dtype (``None`` when there are no parameters)."""
        return self.ir.parameters[0].dtype if self.ir.parameters else None

    def shape(self, name: str) -> Shape:
        """Shape of a value: per-sample for inputs and nodes, full for parameters."""
        return self.values[name].shape

    def node(self, node_id: str) -> Node:
        """The node named ``node_id``."""
        v = self.values[node_id]
        if v.kind != "node":
            raise KeyError(node_id)
        return self.nodes[v.index]

    def uses_dropout(self) -> bool:
        """Whether a DROPOUT node with ``p > 0`` exists (the ``dropout`` stream is then needed)."""
        return any(n.op is Op.DROPOUT and n.attrs.p > 0.0 for n in self.nodes)


def parse_ir(obj: object, *, json: bool = False) -> ModelIR:
    """Parse a ModelIR from its data-model (or JSON, ``json=True``) form; ``INVALID_IR`` on error.

    Schema violations (an unknown instruction, a bad name, a missing field) become
    :class:`~umlos.errors.InvalidIrError` with the parser's JSON path.

    >>> try:
    ...     parse_ir({"ir_version": 1, "inputs": [], "parameters": [], "nodes": [], "outputs": []})
    ... except InvalidIrError as exc:
    ...     print(exc.code_id, exc.path)
    INVALID_IR $.inputs
    """
    try:
        return ModelIR.from_obj(obj, json=json)
    except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
        raise _invalid(exc.message, exc.path or "$") from exc


def ir_hash(ir: ModelIR) -> bytes:
    """``Digest(ModelIR)``: SHA-256 of the canonical CBOR of the whole record (32 bytes)."""
    return digest(ir.to_obj())


# --- attribute tables --------------------------------------------------------------------------

_POOL_ATTRS: Final = frozenset({"kernel_size", "stride", "padding"})
_ALLOWED_ATTRS: Final[Mapping[Op, frozenset[str]]] = {
    Op.SOFTMAX: frozenset({"axis"}),
    Op.LAYERNORM: frozenset({"eps"}),
    Op.CONV2D: frozenset({"stride", "padding"}),
    Op.MAXPOOL2D: _POOL_ATTRS,
    Op.AVGPOOL2D: _POOL_ATTRS,
    Op.ATTENTION: frozenset({"heads", "causal"}),
    Op.DROPOUT: frozenset({"p"}),
    Op.RESHAPE: frozenset({"shape"}),
    Op.TRANSPOSE: frozenset({"perm"}),
}
_REQUIRED_ATTRS: Final[Mapping[Op, tuple[str, ...]]] = {
    Op.MAXPOOL2D: ("kernel_size",),
    Op.AVGPOOL2D: ("kernel_size",),
    Op.DROPOUT: ("p",),
    Op.RESHAPE: ("shape",),
    Op.TRANSPOSE: ("perm",),
}

# Operand roles per op: "x" an activation (input or node), "p" a parameter, "a" either. The
# tuple is the arity; CONV2D's bias is optional (2 or 3 operands).
_OPERANDS: Final[Mapping[Op, tuple[str, ...]]] = {
    Op.MATMUL: ("x", "p"),
    Op.BIAS_ADD: ("x", "p"),
    Op.ADD: ("a", "a"),
    Op.MUL: ("a", "a"),
    Op.RELU: ("x",),
    Op.GELU: ("x",),
    Op.TANH: ("x",),
    Op.SIGMOID: ("x",),
    Op.SOFTMAX: ("x",),
    Op.LAYERNORM: ("x", "p", "p"),
    Op.CONV2D: ("x", "p", "p"),
    Op.MAXPOOL2D: ("x",),
    Op.AVGPOOL2D: ("x",),
    Op.FLATTEN: ("x",),
    Op.RESHAPE: ("x",),
    Op.TRANSPOSE: ("x",),
    Op.EMBEDDING: ("x", "p"),
    Op.ATTENTION: ("x", "x", "x"),
    Op.DROPOUT: ("x",),
    Op.CROSS_ENTROPY: ("x", "x"),
    Op.BCE_LOGITS: ("x", "x"),
    Op.MSE: ("x", "x"),
}
# Operands that must hold integers; all others must hold floats.
_INT_OPERANDS: Final[Mapping[Op, frozenset[int]]] = {
    Op.EMBEDDING: frozenset({0}),
    Op.CROSS_ENTROPY: frozenset({1}),
}
_FLOAT_INPUT_DTYPES: Final = frozenset({"float32", "float64", "uint8", "bool"})


# --- errors ------------------------------------------------------------------------------------


def _invalid(message: str, path: str, node_id: str | None = None) -> InvalidIrError:
    return InvalidIrError(message, path=path, context={"node_id": node_id or ""})


def _mismatch(
    message: str, path: str, node_id: str, got: object, expected: object
) -> ShapeMismatchError:
    return ShapeMismatchError(
        message,
        path=path,
        context={"node_id": node_id, "shape_in": str(got), "shape_expected": str(expected)},
    )


# --- validation --------------------------------------------------------------------------------


def validate_ir(ir: ModelIR) -> ValidatedIR:
    """Check ``ir`` completely (module docstring, steps 1–4) and resolve it; no compute runs.

    Raises :class:`~umlos.errors.InvalidIrError`, :class:`~umlos.errors.CycleDetectedError` or
    :class:`~umlos.errors.ShapeMismatchError` with ``context["node_id"]`` and a JSON path.
    """
    # Step 1: records built in code skip the parser's checks (patterns, ranges); re-run them.
    try:
        ir = parse_ir(ir.to_obj())
    except InvalidIrError as exc:
        m = _NODE_PATH.match(exc.path or "")
        if m and int(m.group(1)) < len(ir.nodes):
            exc.context["node_id"] = ir.nodes[int(m.group(1))].node_id
        raise

    # Step 2: declarations.
    values: dict[str, Value] = {}

    def declare(value: Value, path: str) -> None:
        if value.name in values:
            raise _invalid(f"name {value.name!r} is declared twice", path, value.name)
        values[value.name] = value

    features: str | None = None
    labels: str | None = None
    for i, inp in enumerate(ir.inputs):
        path = f"$.inputs[{i}]"
        _check_extents(inp.shape, path + ".shape", inp.name)
        elem: ElemKind = "float" if inp.dtype in _FLOAT_INPUT_DTYPES else "int"
        declare(Value(inp.name, "input", inp.shape, elem, i), path + ".name")
        if inp.role == "features":
            if features is not None:
                raise _invalid("more than one input has role features", path + ".role", inp.name)
            features = inp.name
        else:
            if labels is not None:
                raise _invalid("more than one input has role labels", path + ".role", inp.name)
            labels = inp.name
    if features is None:
        raise _invalid("no input has role features", "$.inputs")
    dtypes = {p.dtype for p in ir.parameters}
    for i, par in enumerate(ir.parameters):
        path = f"$.parameters[{i}]"
        _check_extents(par.shape, path + ".shape", par.name)
        if par.dtype != ir.parameters[0].dtype:
            raise _invalid(
                f"parameters mix dtypes {sorted(dtypes)}; all must be the compute dtype",
                path + ".dtype",
                par.name,
            )
        declare(Value(par.name, "parameter", par.shape, "float", i), path + ".name")
    later = {n.node_id: i for i, n in enumerate(ir.nodes)}

    # Step 3: nodes in declaration (= execution) order.
    nodes: list[Node] = []
    consumed_losses: dict[str, str] = {}
    needs_labels: dict[str, bool] = {labels: True} if labels is not None else {}
    grad: dict[str, bool] = {p.name: True for p in ir.parameters}
    for i, raw in enumerate(ir.nodes):
        path = f"$.nodes[{i}]"
        node = _resolve_node(
            raw, i, path, values=values, later=later, needs_labels=needs_labels, grad=grad
        )
        for j, name in enumerate(node.inputs):
            v = values[name]
            if v.kind == "node" and nodes[v.index].op in LOSS_OPS:
                consumed_losses.setdefault(name, f"{path}.inputs[{j}]")
        declare(Value(node.node_id, "node", node.shape_out, "float", i), path + ".node_id")
        nodes.append(node)

    # Step 4: outputs and loss.
    for i, out in enumerate(ir.outputs):
        path = f"$.outputs[{i}]"
        ov = values.get(out)
        if ov is None or ov.kind != "node":
            raise _invalid(f"output {out!r} is not a node", path, out)
        if nodes[ov.index].needs_labels:
            raise _invalid(f"output {out!r} depends on the labels input", path, out)
    heads = [n for n in nodes if n.op in LOSS_OPS]
    if ir.loss is not None:
        lv = values.get(ir.loss)
        if lv is None or lv.kind != "node" or nodes[lv.index].op not in LOSS_OPS:
            raise _invalid(f"loss {ir.loss!r} is not a loss-head node", "$.loss", ir.loss)
    for n in heads:
        if n.node_id != ir.loss:
            raise _invalid(
                f"loss head {n.node_id!r} is not the IR's loss",
                f"$.nodes[{n.index}].node_id",
                n.node_id,
            )
    for name, where in consumed_losses.items():
        raise _invalid(f"loss head {name!r} cannot be an operand", where, name)

    return ValidatedIR(
        ir=ir,
        ir_hash=ir_hash(ir),
        nodes=tuple(nodes),
        values=MappingProxyType(values),
        features=features,
        labels=labels,
        parameter_elements=sum(math.prod(p.shape) for p in ir.parameters),
    )


def _check_extents(shape: Shape, path: str, name: str) -> None:
    for k, d in enumerate(shape):
        if d < 1:
            raise _invalid(f"extent {d} of {name!r} is not positive", f"{path}[{k}]", name)


def _resolve_node(
    raw: IrNode,
    index: int,
    path: str,
    *,
    values: Mapping[str, Value],
    later: Mapping[str, int],
    needs_labels: dict[str, bool],
    grad: dict[str, bool],
) -> Node:
    op = Op(raw.instr)
    nid = raw.node_id
    # References first: a cycle is reported as such even when the arity is also wrong.
    operands: list[Value] = []
    for j, name in enumerate(raw.inputs):
        where = f"{path}.inputs[{j}]"
        v = values.get(name)
        if v is None:
            if name in later and later[name] >= index:
                raise CycleDetectedError(
                    f"operand {name!r} of node {nid!r} is not an earlier node"
                    + (" (self-reference)" if name == nid else ""),
                    path=where,
                    context={"node_id": nid},
                )
            raise _invalid(f"operand {name!r} of node {nid!r} is not declared", where, nid)
        operands.append(v)
    roles = _OPERANDS[op]
    arity_ok = len(operands) == len(roles) or (op is Op.CONV2D and len(operands) == 2)
    if not arity_ok:
        raise _invalid(
            f"{op} takes {len(roles)} operands, got {len(operands)}", f"{path}.inputs", nid
        )
    ints = _INT_OPERANDS.get(op, frozenset())
    for j, v in enumerate(operands):
        where = f"{path}.inputs[{j}]"
        role = roles[j]
        if role == "x" and v.kind == "parameter":
            raise _invalid(
                f"operand {j} of {op} must be an activation, not a parameter", where, nid
            )
        if role == "p" and v.kind != "parameter":
            raise _invalid(f"operand {j} of {op} must be a parameter", where, nid)
        want: ElemKind = "int" if j in ints else "float"
        if v.elem != want:
            raise _invalid(
                f"operand {j} of {op} must hold {want}s, {v.name!r} holds {v.elem}s", where, nid
            )
    if op in (Op.ADD, Op.MUL) and all(v.kind == "parameter" for v in operands):
        raise _invalid(f"{op} needs at least one activation operand", f"{path}.inputs", nid)
    attrs = _resolve_attrs(op, raw.attrs, path + ".attrs", nid, [v.shape for v in operands])
    inferred = _infer_shape(op, attrs, operands, path, nid)
    if inferred != raw.shape_out:
        raise _mismatch(
            f"{op} node {nid!r} declares shape_out {list(raw.shape_out)}, inferred {list(inferred)}",
            f"{path}.shape_out",
            nid,
            list(raw.shape_out),
            list(inferred),
        )
    nl = any(needs_labels.get(v.name, False) for v in operands)
    needs_labels[nid] = nl
    gops = tuple(grad.get(v.name, False) and v.elem == "float" for v in operands)
    grad[nid] = any(gops)
    return Node(index, nid, op, tuple(raw.inputs), attrs, raw.shape_out, nl, gops)


def _resolve_attrs(op: Op, raw: IrAttrs | None, path: str, nid: str, shapes: list[Shape]) -> Attrs:
    given = raw.to_obj() if raw is not None else {}
    allowed = _ALLOWED_ATTRS.get(op, frozenset())
    for key in sorted(given):
        if key not in allowed:
            raise _invalid(f"attribute {key!r} does not belong to {op}", f"{path}.{key}", nid)
    for key in _REQUIRED_ATTRS.get(op, ()):
        if key not in given:
            raise _invalid(f"{op} requires attribute {key!r}", f"{path}.{key}", nid)
    a = raw if raw is not None else IrAttrs()
    x = shapes[0] if shapes else ()
    if op is Op.SOFTMAX:
        axis = -1 if a.axis is None else a.axis
        rank = len(x)
        if not -rank <= axis < rank:
            raise _invalid(f"axis {axis} is out of range for rank {rank}", f"{path}.axis", nid)
        return Attrs(axis=axis % rank)
    if op is Op.LAYERNORM:
        return Attrs(eps=DEFAULT_EPS if a.eps is None else a.eps)
    if op in (Op.CONV2D, Op.MAXPOOL2D, Op.AVGPOOL2D):
        kernel = _pair(a.kernel_size, (1, 1))
        if op is Op.CONV2D and len(shapes) > 1 and len(shapes[1]) == 4:
            kernel = (shapes[1][2], shapes[1][3])
        stride = _pair(a.stride, (1, 1) if op is Op.CONV2D else kernel)
        padding = _pair(a.padding, (0, 0))
        for name, pair in (("kernel_size", kernel), ("stride", stride)):
            if min(pair) < 1:
                raise _invalid(f"{name} must be positive, got {list(pair)}", f"{path}.{name}", nid)
        if op is not Op.CONV2D and any(2 * pd > k for pd, k in zip(padding, kernel, strict=True)):
            raise _invalid(
                f"padding {list(padding)} exceeds half the window {list(kernel)}",
                f"{path}.padding",
                nid,
            )
        return Attrs(kernel_size=kernel, stride=stride, padding=padding)
    if op is Op.ATTENTION:
        return Attrs(heads=1 if a.heads is None else a.heads, causal=bool(a.causal))
    if op is Op.DROPOUT:
        return Attrs(p=0.0 if a.p is None else a.p)
    if op is Op.RESHAPE:
        shape = a.shape or ()
        _check_extents(shape, f"{path}.shape", nid)
        return Attrs(shape=shape)
    if op is Op.TRANSPOSE:
        perm = a.perm or ()
        if sorted(perm) != list(range(len(x))):
            raise _invalid(
                f"perm {list(perm)} is not a permutation of the {len(x)} per-sample axes",
                f"{path}.perm",
                nid,
            )
        return Attrs(perm=perm)
    return Attrs()


def _pair(value: tuple[int, ...] | None, default: tuple[int, int]) -> tuple[int, int]:
    return default if value is None else (value[0], value[1])


def _infer_shape(op: Op, attrs: Attrs, operands: list[Value], path: str, nid: str) -> Shape:
    """The output shape of ``op`` over ``operands``; SHAPE_MISMATCH when they do not fit."""
    shapes = [v.shape for v in operands]
    x = shapes[0]

    def fail(j: int, got: Shape, expected: object, why: str) -> ShapeMismatchError:
        return _mismatch(
            f"{op} node {nid!r}: {why}", f"{path}.inputs[{j}]", nid, list(got), expected
        )

    def rank(j: int, lo: int, hi: int | None = None) -> None:
        r = len(shapes[j])
        if r < lo or (hi is not None and r > hi):
            want = (
                f"rank {lo}" if hi == lo else f"rank >= {lo}" if hi is None else f"rank {lo}..{hi}"
            )
            raise fail(j, shapes[j], want, f"operand {j} has rank {r}, needs {want}")

    if op is Op.MATMUL:
        rank(0, 1)
        rank(1, 2, 2)
        if x[-1] != shapes[1][0]:
            raise fail(1, shapes[1], [x[-1], "n"], "inner dimensions differ")
        return (*x[:-1], shapes[1][1])
    if op is Op.BIAS_ADD:
        rank(0, 1)
        if shapes[1] != (x[-1],):
            raise fail(1, shapes[1], [x[-1]], "bias must match the last axis")
        return x
    if op in (Op.ADD, Op.MUL):
        if shapes[1] != x:
            raise fail(1, shapes[1], list(x), "operands must have equal shapes")
        return x
    if op in (Op.RELU, Op.GELU, Op.TANH, Op.SIGMOID, Op.DROPOUT):
        return x
    if op is Op.SOFTMAX:
        return x
    if op is Op.LAYERNORM:
        rank(0, 1)
        for j in (1, 2):
            if shapes[j] != (x[-1],):
                raise fail(j, shapes[j], [x[-1]], "affine parameters must match the last axis")
        return x
    if op is Op.CONV2D:
        rank(0, 3, 3)
        rank(1, 4, 4)
        w = shapes[1]
        if w[1] != x[0]:
            raise fail(
                1, w, ["o", x[0], "kh", "kw"], "weight in-channels differ from input channels"
            )
        if len(shapes) == 3 and shapes[2] != (w[0],):
            raise fail(2, shapes[2], [w[0]], "bias must have one value per out-channel")
        return (w[0], *_window_out(x, attrs, op, path, nid))
    if op in (Op.MAXPOOL2D, Op.AVGPOOL2D):
        rank(0, 3, 3)
        return (x[0], *_window_out(x, attrs, op, path, nid))
    if op is Op.FLATTEN:
        return (math.prod(x),)
    if op is Op.RESHAPE:
        if math.prod(attrs.shape) != math.prod(x):
            raise _mismatch(
                f"RESHAPE node {nid!r}: {list(attrs.shape)} holds {math.prod(attrs.shape)} "
                f"elements, the input {math.prod(x)}",
                f"{path}.attrs.shape",
                nid,
                list(x),
                list(attrs.shape),
            )
        return attrs.shape
    if op is Op.TRANSPOSE:
        return tuple(x[k] for k in attrs.perm)
    if op is Op.EMBEDDING:
        rank(1, 2, 2)
        return (*x, shapes[1][1])
    if op is Op.ATTENTION:
        rank(0, 2, 2)
        for j in (1, 2):
            if shapes[j] != x:
                raise fail(j, shapes[j], list(x), "q, k and v must have equal shapes")
        if x[1] % attrs.heads:
            raise _invalid(
                f"heads {attrs.heads} does not divide the width {x[1]}", f"{path}.attrs.heads", nid
            )
        return x
    if op is Op.CROSS_ENTROPY:
        rank(0, 1)
        if shapes[1] != x[:-1]:
            raise fail(
                1,
                shapes[1],
                list(x[:-1]),
                "labels must have the logits' shape minus the class axis",
            )
        return ()
    # BCE_LOGITS, MSE
    if shapes[1] != x:
        raise fail(1, shapes[1], list(x), "targets must have the predictions' shape")
    return ()


def _window_out(x: Shape, attrs: Attrs, op: Op, path: str, nid: str) -> tuple[int, int]:
    out: list[int] = []
    for k in range(2):
        span = x[1 + k] + 2 * attrs.padding[k] - attrs.kernel_size[k]
        if span < 0:
            raise _mismatch(
                f"{op} node {nid!r}: window {list(attrs.kernel_size)} exceeds the padded input "
                f"{list(x[1:])}",
                f"{path}.inputs[0]",
                nid,
                list(x),
                f"spatial >= {list(attrs.kernel_size)} - 2*padding",
            )
        out.append(span // attrs.stride[k] + 1)
    return out[0], out[1]
