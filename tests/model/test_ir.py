"""IR validation: every rejection case raises its catalogue error with node id and JSON path,
before any compute; valid IRs resolve in declaration order and hash as Digest(ModelIR)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from umlos._generated.records import (
    IrAttrs,
    IrInitConstant,
    IrInitUniformFanIn,
    IrInput,
    IrNode,
    IrParameter,
    ModelIR,
)
from umlos.codec import digest
from umlos.errors import (
    CycleDetectedError,
    Error,
    InvalidIrError,
    ShapeMismatchError,
)
from umlos.model.ir import Attrs, Op, ir_hash, parse_ir, validate_ir

F = "float64"


def _inp(name: str, shape: tuple[int, ...], dtype: str = F, role: str = "features") -> IrInput:
    return IrInput(name=name, role=role, shape=shape, dtype=dtype)  # type: ignore[arg-type]


def _par(name: str, shape: tuple[int, ...], dtype: str = F) -> IrParameter:
    return IrParameter(name=name, shape=shape, dtype=dtype, init=IrInitConstant(value=0.0))  # type: ignore[arg-type]


def _node(
    node_id: str, instr: str, inputs: tuple[str, ...], shape_out: tuple[int, ...], **attrs: Any
) -> IrNode:
    return IrNode(
        node_id=node_id,
        instr=instr,  # type: ignore[arg-type]
        inputs=inputs,
        attrs=IrAttrs(**attrs) if attrs else None,
        shape_out=shape_out,
    )


def _base() -> ModelIR:
    """x[4] -> MATMUL w[4,3] -> BIAS_ADD b -> RELU -> logits; CROSS_ENTROPY with y."""
    return ModelIR(
        ir_version=1,
        name="base",
        inputs=(_inp("x", (4,)), _inp("y", (), "int64", "labels")),
        parameters=(
            IrParameter(name="w", shape=(4, 3), dtype=F, init=IrInitUniformFanIn(fan_in=4)),
            _par("b", (3,)),
        ),
        nodes=(
            _node("h", "MATMUL", ("x", "w"), (3,)),
            _node("z", "BIAS_ADD", ("h", "b"), (3,)),
            _node("logits", "RELU", ("z",), (3,)),
            _node("loss", "CROSS_ENTROPY", ("logits", "y"), ()),
        ),
        outputs=("logits",),
        loss="loss",
    )


def _with(ir: ModelIR, **changes: Any) -> ModelIR:
    return dataclasses.replace(ir, **changes)


def _replace_node(ir: ModelIR, index: int, node: IrNode) -> ModelIR:
    nodes = list(ir.nodes)
    nodes[index] = node
    return _with(ir, nodes=tuple(nodes))


def _single(
    instr: str,
    operands: tuple[str, ...],
    shape_out: tuple[int, ...],
    *,
    inputs: tuple[IrInput, ...] = (),
    params: tuple[IrParameter, ...] = (),
    **attrs: Any,
) -> ModelIR:
    """An IR with one node ``n`` (its output) over the given declarations."""
    return ModelIR(
        ir_version=1,
        inputs=inputs or (_inp("x", (2, 3)),),
        parameters=params,
        nodes=(_node("n", instr, operands, shape_out, **attrs),),
        outputs=("n",),
    )


def _rejects(ir: ModelIR, error: type[Error], path: str, node_id: str) -> Error:
    with pytest.raises(error) as info:
        validate_ir(ir)
    assert info.value.path == path, str(info.value)
    assert info.value.context.get("node_id") == node_id, info.value.context
    return info.value


# --- valid IRs -----------------------------------------------------------------------------------


def test_valid_ir_resolves_in_declaration_order() -> None:
    v = validate_ir(_base())
    assert [n.node_id for n in v.nodes] == ["h", "z", "logits", "loss"]
    assert [n.index for n in v.nodes] == [0, 1, 2, 3]
    assert v.features == "x" and v.labels == "y" and v.loss == "loss"
    assert v.parameter_elements == 15 and v.parameter_names == ("w", "b")
    assert v.shape("w") == (4, 3) and v.shape("logits") == (3,)
    assert [n.needs_labels for n in v.nodes] == [False, False, False, True]
    assert v.nodes[0].grad_operands == (False, True)  # x needs no gradient
    assert v.node("loss").grad_operands == (True, False)  # labels never do


def test_node_ids_need_no_ordering_convention() -> None:
    # "n10" sorts before "n2" as text; execution order must still be declaration order.
    ir = _single("RELU", ("x",), (2, 3))
    nodes = (
        _node("n2", "RELU", ("x",), (2, 3)),
        _node("n10", "TANH", ("n2",), (2, 3)),
        _node("n1", "SIGMOID", ("n10",), (2, 3)),
    )
    v = validate_ir(_with(ir, nodes=nodes, outputs=("n1",)))
    assert [n.node_id for n in v.nodes] == ["n2", "n10", "n1"]


def test_ir_hash_is_the_digest_of_the_record() -> None:
    ir = _base()
    assert validate_ir(ir).ir_hash == ir_hash(ir) == digest(ir.to_obj())
    assert ir_hash(_with(ir, name="other")) != ir_hash(ir)


def test_validated_ir_is_frozen() -> None:
    v = validate_ir(_base())
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.ir_hash = b""  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.nodes[0].op = Op.ADD  # type: ignore[misc]
    with pytest.raises(TypeError):
        v.values["x"] = v.values["y"]  # type: ignore[index]
    assert hash(v) == hash(validate_ir(_base())) and v == validate_ir(_base())


def test_attribute_defaults_are_filled() -> None:
    conv = _single(
        "CONV2D",
        ("x", "w"),
        (2, 3, 3),
        inputs=(_inp("x", (1, 3, 3)),),
        params=(_par("w", (2, 1, 1, 1)),),
    )
    assert validate_ir(conv).nodes[0].attrs == Attrs(kernel_size=(1, 1))
    pool = _single(
        "MAXPOOL2D", ("x",), (1, 1, 1), inputs=(_inp("x", (1, 3, 3)),), kernel_size=(2, 2)
    )
    assert validate_ir(pool).nodes[0].attrs.stride == (2, 2)  # stride defaults to the window
    soft = _single("SOFTMAX", ("x",), (2, 3))
    assert validate_ir(soft).nodes[0].attrs.axis == 1  # -1 normalised over per-sample axes
    ln = _single("LAYERNORM", ("x", "g", "b"), (2, 3), params=(_par("g", (3,)), _par("b", (3,))))
    assert validate_ir(ln).nodes[0].attrs.eps == 1e-5


# --- step 1: schema ------------------------------------------------------------------------------


def test_unknown_instruction() -> None:
    bad = _replace_node(_base(), 2, _node("logits", "SWISH", ("z",), (3,)))
    _rejects(bad, InvalidIrError, "$.nodes[2].instr", "logits")
    obj = _base().to_obj()
    obj["nodes"][0]["instr"] = "SWISH"
    with pytest.raises(InvalidIrError) as info:
        parse_ir(obj)
    assert info.value.path == "$.nodes[0].instr"


def test_bad_name_pattern() -> None:
    bad = _replace_node(_base(), 0, _node("1h", "MATMUL", ("x", "w"), (3,)))
    _rejects(bad, InvalidIrError, "$.nodes[0].node_id", "1h")


# --- step 2: declarations ------------------------------------------------------------------------


def test_duplicate_names() -> None:
    ir = _base()
    _rejects(
        _replace_node(ir, 0, _node("x", "MATMUL", ("x", "w"), (3,))),
        InvalidIrError,
        "$.nodes[0].node_id",
        "x",
    )
    _rejects(
        _with(ir, parameters=(*ir.parameters, _par("w", (1,)))),
        InvalidIrError,
        "$.parameters[2].name",
        "w",
    )
    _rejects(
        _with(ir, parameters=(*ir.parameters, _par("y", (1,)))),
        InvalidIrError,
        "$.parameters[2].name",
        "y",
    )


def test_input_roles() -> None:
    ir = _base()
    only_labels = (_inp("y", (), "int64", "labels"),)
    _rejects(_with(ir, inputs=only_labels), InvalidIrError, "$.inputs", "")
    two_features = (*ir.inputs, _inp("x2", (4,)))
    _rejects(_with(ir, inputs=two_features), InvalidIrError, "$.inputs[2].role", "x2")
    two_labels = (*ir.inputs, _inp("y2", (), "int64", "labels"))
    _rejects(_with(ir, inputs=two_labels), InvalidIrError, "$.inputs[2].role", "y2")


def test_zero_extents() -> None:
    ir = _base()
    _rejects(
        _with(ir, inputs=(_inp("x", (0,)), ir.inputs[1])),
        InvalidIrError,
        "$.inputs[0].shape[0]",
        "x",
    )
    _rejects(
        _with(ir, parameters=(ir.parameters[0], _par("b", (0,)))),
        InvalidIrError,
        "$.parameters[1].shape[0]",
        "b",
    )


def test_mixed_parameter_dtypes() -> None:
    ir = _base()
    _rejects(
        _with(ir, parameters=(ir.parameters[0], _par("b", (3,), "float32"))),
        InvalidIrError,
        "$.parameters[1].dtype",
        "b",
    )


# --- step 3: references --------------------------------------------------------------------------


def test_unknown_operand() -> None:
    bad = _replace_node(_base(), 1, _node("z", "BIAS_ADD", ("h", "bias"), (3,)))
    _rejects(bad, InvalidIrError, "$.nodes[1].inputs[1]", "z")


def test_forward_reference_is_a_cycle() -> None:
    bad = _replace_node(_base(), 1, _node("z", "BIAS_ADD", ("logits", "b"), (3,)))
    err = _rejects(bad, CycleDetectedError, "$.nodes[1].inputs[0]", "z")
    assert err.code_id == "CYCLE_DETECTED"


def test_self_reference_is_a_cycle() -> None:
    bad = _replace_node(_base(), 2, _node("logits", "RELU", ("logits",), (3,)))
    _rejects(bad, CycleDetectedError, "$.nodes[2].inputs[0]", "logits")


def test_cycle_is_reported_before_arity() -> None:
    bad = _replace_node(_base(), 2, _node("logits", "RELU", ("z", "loss"), (3,)))
    _rejects(bad, CycleDetectedError, "$.nodes[2].inputs[1]", "logits")


# --- step 3: arity and operand kinds -------------------------------------------------------------


@pytest.mark.parametrize(
    ("instr", "operands"),
    [("RELU", ("x", "x")), ("MATMUL", ("x",)), ("CONV2D", ("x",)), ("LAYERNORM", ("x", "g"))],
)
def test_arity(instr: str, operands: tuple[str, ...]) -> None:
    ir = _single(instr, operands, (2, 3), params=(_par("g", (3,)),))
    _rejects(ir, InvalidIrError, "$.nodes[0].inputs", "n")


def test_operand_kinds() -> None:
    p = (_par("w", (3, 3)), _par("v", (2, 3)))
    _rejects(
        _single("MATMUL", ("x", "x"), (2, 3), params=p), InvalidIrError, "$.nodes[0].inputs[1]", "n"
    )
    _rejects(_single("RELU", ("v",), (2, 3), params=p), InvalidIrError, "$.nodes[0].inputs[0]", "n")
    _rejects(_single("ADD", ("v", "v"), (2, 3), params=p), InvalidIrError, "$.nodes[0].inputs", "n")


def test_element_kinds() -> None:
    ids = (_inp("t", (2,), "int64"),)
    table = (_par("e", (5, 3)),)
    _rejects(_single("RELU", ("t",), (2,), inputs=ids), InvalidIrError, "$.nodes[0].inputs[0]", "n")
    _rejects(
        _single("EMBEDDING", ("x", "e"), (2, 3, 3), params=table),
        InvalidIrError,
        "$.nodes[0].inputs[0]",
        "n",
    )
    float_labels = (_inp("x", (3,)), _inp("y", (), F, "labels"))
    ce = _with(
        _single("RELU", ("x",), (3,), inputs=float_labels),
        nodes=(_node("n", "RELU", ("x",), (3,)), _node("loss", "CROSS_ENTROPY", ("n", "y"), ())),
        loss="loss",
    )
    _rejects(ce, InvalidIrError, "$.nodes[1].inputs[1]", "loss")


# --- step 3: attributes --------------------------------------------------------------------------


def test_foreign_attribute() -> None:
    _rejects(_single("RELU", ("x",), (2, 3), eps=1e-3), InvalidIrError, "$.nodes[0].attrs.eps", "n")
    _rejects(
        _single("SOFTMAX", ("x",), (2, 3), heads=2), InvalidIrError, "$.nodes[0].attrs.heads", "n"
    )
    conv = _single(
        "CONV2D",
        ("x", "w"),
        (1, 2, 2),
        inputs=(_inp("x", (1, 2, 2)),),
        params=(_par("w", (1, 1, 1, 1)),),
        kernel_size=(1, 1),
    )
    _rejects(conv, InvalidIrError, "$.nodes[0].attrs.kernel_size", "n")


@pytest.mark.parametrize(
    ("instr", "attr", "shape"),
    [
        ("MAXPOOL2D", "kernel_size", (1, 1, 1)),
        ("AVGPOOL2D", "kernel_size", (1, 1, 1)),
        ("DROPOUT", "p", (1, 2, 2)),
        ("RESHAPE", "shape", (4,)),
        ("TRANSPOSE", "perm", (1, 2, 2)),
    ],
)
def test_missing_required_attribute(instr: str, attr: str, shape: tuple[int, ...]) -> None:
    ir = _single(instr, ("x",), shape, inputs=(_inp("x", (1, 2, 2)),))
    _rejects(ir, InvalidIrError, f"$.nodes[0].attrs.{attr}", "n")


def test_bad_attribute_values() -> None:
    img = (_inp("x", (1, 4, 4)),)
    _rejects(
        _single("SOFTMAX", ("x",), (2, 3), axis=2), InvalidIrError, "$.nodes[0].attrs.axis", "n"
    )
    _rejects(
        _single("SOFTMAX", ("x",), (2, 3), axis=-3), InvalidIrError, "$.nodes[0].attrs.axis", "n"
    )
    _rejects(
        _single("MAXPOOL2D", ("x",), (1, 2, 2), inputs=img, kernel_size=(2, 2), padding=(2, 0)),
        InvalidIrError,
        "$.nodes[0].attrs.padding",
        "n",
    )
    _rejects(
        _single("AVGPOOL2D", ("x",), (1, 2, 2), inputs=img, kernel_size=(2, 2), stride=(0, 1)),
        InvalidIrError,
        "$.nodes[0].attrs.stride",
        "n",
    )
    _rejects(
        _single("MAXPOOL2D", ("x",), (1, 2, 2), inputs=img, kernel_size=(0, 2)),
        InvalidIrError,
        "$.nodes[0].attrs.kernel_size",
        "n",
    )
    _rejects(
        _single("TRANSPOSE", ("x",), (3, 2), perm=(0, 0)),
        InvalidIrError,
        "$.nodes[0].attrs.perm",
        "n",
    )
    _rejects(
        _single("TRANSPOSE", ("x",), (3, 2), perm=(1, 0, 2)),
        InvalidIrError,
        "$.nodes[0].attrs.perm",
        "n",
    )
    _rejects(
        _single("RESHAPE", ("x",), (6, 0), shape=(6, 0)),
        InvalidIrError,
        "$.nodes[0].attrs.shape[1]",
        "n",
    )


def test_heads_must_divide_the_width() -> None:
    att = _single("ATTENTION", ("x", "x", "x"), (2, 3), heads=2)
    _rejects(att, InvalidIrError, "$.nodes[0].attrs.heads", "n")


def test_attribute_record_checks_are_rerun() -> None:
    # p = 1 is outside [0, 1): the generated parser's range check fires inside validate_ir.
    _rejects(_single("DROPOUT", ("x",), (2, 3), p=1.0), InvalidIrError, "$.nodes[0].attrs.p", "n")


# --- step 3: shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ir", "path"),
    [
        (
            _single("MATMUL", ("x", "w"), (2, 4), params=(_par("w", (4, 4)),)),
            "$.nodes[0].inputs[1]",
        ),
        (
            _single("MATMUL", ("x", "w"), (2, 4), params=(_par("w", (3, 4, 1)),)),
            "$.nodes[0].inputs[1]",
        ),
        (
            _single("BIAS_ADD", ("x", "b"), (2, 3), params=(_par("b", (2,)),)),
            "$.nodes[0].inputs[1]",
        ),
        (_single("ADD", ("x", "b"), (2, 3), params=(_par("b", (3,)),)), "$.nodes[0].inputs[1]"),
        (
            _single(
                "LAYERNORM", ("x", "g", "b"), (2, 3), params=(_par("g", (3,)), _par("b", (2,)))
            ),
            "$.nodes[0].inputs[2]",
        ),
        (
            _single("CONV2D", ("x", "w"), (1, 2, 3), params=(_par("w", (1, 1, 1, 1)),)),
            "$.nodes[0].inputs[0]",
        ),
        (
            _single(
                "CONV2D",
                ("x", "w"),
                (1, 1, 1),
                inputs=(_inp("x", (2, 3, 3)),),
                params=(_par("w", (1, 1, 1, 1)),),
            ),
            "$.nodes[0].inputs[1]",
        ),
        (
            _single(
                "CONV2D",
                ("x", "w", "b"),
                (1, 3, 3),
                inputs=(_inp("x", (1, 3, 3)),),
                params=(_par("w", (1, 1, 1, 1)), _par("b", (2,))),
            ),
            "$.nodes[0].inputs[2]",
        ),
        (
            _single(
                "MAXPOOL2D", ("x",), (1, 1, 1), inputs=(_inp("x", (1, 1, 3)),), kernel_size=(2, 2)
            ),
            "$.nodes[0].inputs[0]",
        ),
        (_single("RESHAPE", ("x",), (5,), shape=(5,)), "$.nodes[0].attrs.shape"),
        (
            _single(
                "EMBEDDING",
                ("t", "e"),
                (2, 3),
                inputs=(_inp("t", (2,), "int64"),),
                params=(_par("e", (5,)),),
            ),
            "$.nodes[0].inputs[1]",
        ),
        (
            _single(
                "ATTENTION",
                ("x", "x", "y"),
                (2, 3),
                inputs=(_inp("x", (2, 3)), _inp("y", (3, 3), F, "labels")),
            ),
            "$.nodes[0].inputs[2]",
        ),
        (_single("RELU", ("x",), (3, 2)), "$.nodes[0].shape_out"),
    ],
    ids=[
        "matmul-inner",
        "matmul-rank",
        "bias",
        "add",
        "layernorm",
        "conv-rank",
        "conv-channels",
        "conv-bias",
        "pool-window",
        "reshape-numel",
        "embedding-table",
        "attention",
        "declared-shape",
    ],
)
def test_shape_mismatch(ir: ModelIR, path: str) -> None:
    err = _rejects(ir, ShapeMismatchError, path, "n")
    assert {"shape_in", "shape_expected"} <= set(err.context)


@pytest.mark.parametrize(
    ("head", "labels"),
    [
        ("CROSS_ENTROPY", _inp("y", (2,), "int64", "labels")),
        ("MSE", _inp("y", (2,), F, "labels")),
        ("BCE_LOGITS", _inp("y", (3, 2), F, "labels")),
    ],
)
def test_loss_head_shapes(head: str, labels: IrInput) -> None:
    ir = ModelIR(
        ir_version=1,
        inputs=(_inp("x", (2, 3)), labels),
        parameters=(),
        nodes=(_node("o", "RELU", ("x",), (2, 3)), _node("n", head, ("o", "y"), ())),
        outputs=("o",),
        loss="n",
    )
    if head == "CROSS_ENTROPY":
        validate_ir(ir)  # [2, 3] logits over 3 classes take [2] labels
        ir = _with(ir, inputs=(ir.inputs[0], _inp("y", (3,), "int64", "labels")))
    _rejects(ir, ShapeMismatchError, "$.nodes[1].inputs[1]", "n")


# --- step 4: outputs and loss --------------------------------------------------------------------


def test_outputs() -> None:
    ir = _base()
    _rejects(_with(ir, outputs=("x",)), InvalidIrError, "$.outputs[0]", "x")
    _rejects(_with(ir, outputs=("nope",)), InvalidIrError, "$.outputs[0]", "nope")
    _rejects(_with(ir, outputs=("logits", "loss")), InvalidIrError, "$.outputs[1]", "loss")


def test_loss() -> None:
    ir = _base()
    _rejects(_with(ir, loss="logits"), InvalidIrError, "$.loss", "logits")
    _rejects(_with(ir, loss="nope"), InvalidIrError, "$.loss", "nope")
    _rejects(_with(ir, loss=None), InvalidIrError, "$.nodes[3].node_id", "loss")
    extra = _node("loss2", "MSE", ("logits", "logits"), ())
    _rejects(_with(ir, nodes=(*ir.nodes, extra)), InvalidIrError, "$.nodes[4].node_id", "loss2")


def test_loss_head_cannot_be_consumed() -> None:
    ir = _base()
    after = _node("twice", "ADD", ("loss", "loss"), ())
    _rejects(_with(ir, nodes=(*ir.nodes, after)), InvalidIrError, "$.nodes[4].inputs[0]", "loss")


def test_inference_only_ir_is_valid() -> None:
    ir = _single("RELU", ("x",), (2, 3))
    assert validate_ir(ir).loss is None
