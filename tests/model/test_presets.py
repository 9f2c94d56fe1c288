"""Preset expansion: structure, shapes, loss heads per task, defaults, and pinned ir_hash values.

A pinned hash changing means every recorded run of that preset changes identity: update it only
with an ADR note.
"""

from __future__ import annotations

import pytest

from umlos._generated.records import (
    BasicCnnPresetParams,
    LinearPresetParams,
    MlpPresetParams,
    ModelCustomIr,
    ModelPresetBasicCnn,
    ModelPresetLinear,
    ModelPresetMlp,
    ModelPresetTinyTransformer,
    ModelSpec,
    TinyTransformerPresetParams,
)
from umlos.errors import ContractViolationError, InvalidIrError, ShapeMismatchError
from umlos.model import Op, expand_preset, validate_ir

LINEAR = ModelPresetLinear(preset_params=LinearPresetParams(in_features=64, out_features=10))
MLP = ModelPresetMlp(
    preset_params=MlpPresetParams(in_features=64, hidden_sizes=(128,), out_features=10)
)
CNN = ModelPresetBasicCnn(
    preset_params=BasicCnnPresetParams(in_channels=1, height=8, width=8, out_features=10)
)
ENCODER = ModelPresetTinyTransformer(
    preset_params=TinyTransformerPresetParams(vocab_size=64, seq_len=32, out_features=4)
)
LM = ModelPresetTinyTransformer(
    preset_params=TinyTransformerPresetParams(
        vocab_size=64, seq_len=32, out_features=64, causal=True
    )
)

PINNED = {
    ("linear", "float32"): "0989906bfc142c7690137d985c80c5a8ae2b9f6cf76da664057a88ead79fc1d4",
    ("linear", "float64"): "c9893d8942ed77fb1ef8befc21dfe61ee6ad44b2a963f32a65177658123440c8",
    ("mlp", "float32"): "889c22bab44017175f8db0ccc9990f90e3935a1aa6afa456d2f769cef5fa0dcd",
    ("mlp", "float64"): "f55b6dbee3ded72be2871408b0dff57371532c3953b27ec818c017d010b8442b",
    ("cnn", "float32"): "5d671dca533dac5f4e5187f213042f6f08500b8eb680aea05efc6d98e5c8bcc2",
    ("cnn", "float64"): "ff2777f21d1a686c2c6bc4bacae8ec6acb69084ee2e3913f129718fbe351d74a",
    ("encoder", "float32"): "67d03a694be504a60fd6bb64f3219fb5915b2a974e74848728d2ebe42ee30cb4",
    ("encoder", "float64"): "5cfd6b96bbc70990059154569b63be1ed5777c86f1a73bb76712ebb72f0aad13",
    ("lm", "float32"): "02d30b52952a4f305a08e3a038a7d35326df1128dff27bd9a9795db5cb551e03",
    ("lm", "float64"): "6eacf3a5cf370d8267da1acbce9bb92eb5286c5779a91e8934b316ee54282b4c",
}
SPECS: dict[str, ModelSpec] = {
    "linear": LINEAR,
    "mlp": MLP,
    "cnn": CNN,
    "encoder": ENCODER,
    "lm": LM,
}


@pytest.mark.parametrize(("name", "dtype"), sorted(PINNED))
def test_pinned_ir_hash(name: str, dtype: str) -> None:
    ir = expand_preset(SPECS[name], task_type="multiclass", dtype=dtype)  # type: ignore[arg-type]
    assert validate_ir(ir).ir_hash.hex() == PINNED[(name, dtype)]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_every_preset_validates_for_every_task(name: str, task: str) -> None:
    v = validate_ir(expand_preset(SPECS[name], task_type=task, dtype="float32"))  # type: ignore[arg-type]
    head = {"multiclass": Op.CROSS_ENTROPY, "binary": Op.BCE_LOGITS, "regression": Op.MSE}[task]
    assert v.nodes[-1].op is head and v.loss == "loss" and v.outputs == ("logits",)
    labels = v.values["y"]
    logits = v.shape("logits")
    if task == "multiclass":
        assert labels.elem == "int" and labels.shape == logits[:-1]
    else:
        assert labels.elem == "float" and labels.shape == logits
        assert v.ir.inputs[1].dtype == "float32"
    assert all(p.dtype == "float32" for p in v.ir.parameters)


def test_linear_structure() -> None:
    v = validate_ir(expand_preset(LINEAR, task_type="multiclass", dtype="float64"))
    assert [(n.node_id, n.op, n.shape_out) for n in v.nodes] == [
        ("head.matmul", Op.MATMUL, (10,)),
        ("logits", Op.BIAS_ADD, (10,)),
        ("loss", Op.CROSS_ENTROPY, ()),
    ]
    assert [(p.name, p.shape, p.init.to_obj()) for p in v.ir.parameters] == [
        ("head.weight", (64, 10), {"scheme": "uniform_fan_in", "fan_in": 64}),
        ("head.bias", (10,), {"scheme": "uniform_fan_in", "fan_in": 64}),
    ]


def test_mlp_structure_and_activation() -> None:
    spec = ModelPresetMlp(
        preset_params=MlpPresetParams(
            in_features=5, hidden_sizes=(7, 6), out_features=3, activation="tanh"
        )
    )
    v = validate_ir(expand_preset(spec, task_type="regression", dtype="float64"))
    assert [n.op.value for n in v.nodes] == [
        "MATMUL",
        "BIAS_ADD",
        "TANH",
        "MATMUL",
        "BIAS_ADD",
        "TANH",
        "MATMUL",
        "BIAS_ADD",
        "MSE",
    ]
    assert [(p.name, p.shape) for p in v.ir.parameters] == [
        ("fc1.weight", (5, 7)),
        ("fc1.bias", (7,)),
        ("fc2.weight", (7, 6)),
        ("fc2.bias", (6,)),
        ("head.weight", (6, 3)),
        ("head.bias", (3,)),
    ]
    default = validate_ir(expand_preset(MLP, task_type="multiclass", dtype="float64"))
    assert default.node("act1").op is Op.RELU  # schema default activation


def test_basic_cnn_defaults_and_shapes() -> None:
    v = validate_ir(expand_preset(CNN, task_type="multiclass", dtype="float32"))
    shapes = {n.node_id: n.shape_out for n in v.nodes}
    assert shapes["conv1"] == (16, 8, 8) and shapes["pool1"] == (16, 4, 4)
    assert shapes["conv2"] == (32, 4, 4) and shapes["pool2"] == (32, 2, 2)
    assert shapes["flatten"] == (128,) and shapes["fc1"] == (128,) and shapes["logits"] == (10,)
    conv1 = v.node("conv1")
    assert conv1.attrs.padding == (1, 1) and conv1.attrs.stride == (1, 1)
    assert v.ir.parameters[0].init.to_obj() == {"scheme": "uniform_fan_in", "fan_in": 9}
    assert v.ir.parameters[2].shape == (32, 16, 3, 3)
    assert v.parameter_elements == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 128 * 128 + 128 + 128 * 10 + 10


def test_basic_cnn_rejects_images_too_small_for_pooling() -> None:
    tiny = ModelPresetBasicCnn(
        preset_params=BasicCnnPresetParams(in_channels=1, height=3, width=3, out_features=2)
    )
    with pytest.raises(ShapeMismatchError) as info:
        expand_preset(tiny, task_type="multiclass", dtype="float32")
    assert info.value.path == "$.model.preset_params.conv_channels[1]"
    assert info.value.context["node_id"] == "pool2"


def test_tiny_transformer_encoder() -> None:
    v = validate_ir(expand_preset(ENCODER, task_type="multiclass", dtype="float32"))
    ops = [n.op.value for n in v.nodes]
    block = [
        "LAYERNORM",
        "MATMUL",
        "MATMUL",
        "MATMUL",
        "ATTENTION",
        "MATMUL",
        "ADD",
        "LAYERNORM",
        "MATMUL",
        "GELU",
        "MATMUL",
        "ADD",
    ]
    assert ops == [
        "EMBEDDING",
        "ADD",
        *block,
        *block,
        "LAYERNORM",
        "FLATTEN",
        "MATMUL",
        "BIAS_ADD",
        "CROSS_ENTROPY",
    ]
    assert v.values["x"].elem == "int" and v.shape("x") == (32,)
    assert v.shape("logits") == (4,) and v.shape("y") == ()
    attn = v.node("h0.attn")
    assert attn.attrs.heads == 4 and not attn.attrs.causal
    assert v.ir.parameters[0].init.to_obj() == {"scheme": "normal", "std": 0.02}
    assert v.shape("h1.fc") == (32, 256)


def test_tiny_transformer_causal_lm_predicts_every_position() -> None:
    v = validate_ir(expand_preset(LM, task_type="multiclass", dtype="float32"))
    assert v.node("h0.attn").attrs.causal
    assert "flatten" not in v.values
    assert v.shape("logits") == (32, 64) and v.shape("y") == (32,)
    assert v.shape("head.weight") == (64, 64)


def test_tiny_transformer_heads_must_divide_width() -> None:
    spec = ModelPresetTinyTransformer(
        preset_params=TinyTransformerPresetParams(
            vocab_size=8, seq_len=4, d_model=6, heads=4, out_features=2
        )
    )
    with pytest.raises(InvalidIrError) as info:
        validate_ir(expand_preset(spec, task_type="multiclass", dtype="float32"))
    assert info.value.path == "$.nodes[6].attrs.heads"


def test_custom_ir_passes_through() -> None:
    ir = expand_preset(MLP, task_type="binary", dtype="float64")
    assert expand_preset(ModelCustomIr(ir=ir), task_type="binary", dtype="float64") is ir
    with pytest.raises(InvalidIrError) as info:
        expand_preset(ModelCustomIr(ir=ir), task_type="binary", dtype="float32")
    assert info.value.path == "$.model.ir.parameters[0].dtype"


def test_unknown_task_type() -> None:
    with pytest.raises(ContractViolationError):
        expand_preset(MLP, task_type="ranking", dtype="float32")  # type: ignore[arg-type]
