"""Expand a manifest's model declaration (``ModelSpec``) into an IR v1 (UML_OS.Model.ExpandPreset).

Every preset reads features from the input ``x`` (role features) and, for training, labels from
``y`` (role labels), produces the output ``logits`` and ends in the task's loss head ``loss``:

* multiclass: CROSS_ENTROPY; ``y`` is int64 class ids shaped like ``logits`` minus its class axis.
* binary: BCE_LOGITS; ``y`` holds 0/1 targets in the compute dtype, shaped like ``logits``.
* regression: MSE; ``y`` holds targets in the compute dtype, shaped like ``logits``.

Names are stable (they are part of ``ir_hash``, checkpoints and fingerprints): dense layers are
``fc<i>`` (hidden, 1-based) and ``head`` (output), with parameters ``<layer>.weight`` ``[in, out]``
and ``<layer>.bias``; convolutions ``conv<i>``; transformer blocks ``h<i>`` (0-based). Weights
and biases use ``uniform_fan_in`` with the layer's fan-in, embeddings ``normal(0.02)``,
LayerNorm ``gamma = 1`` and ``beta = 0``.

The tiny transformer has two heads (ADR 0011): with ``causal = false`` it is the sequence
encoder of the manifest schema (final LAYERNORM, FLATTEN, output layer: one prediction per
sample); with ``causal = true`` it is a causal language model whose output layer is applied at
every position, giving ``logits [seq_len, out_features]`` and a loss averaged over positions
(labels ``[seq_len]`` token ids for multiclass).

>>> from umlos._generated.records import MlpPresetParams, ModelPresetMlp
>>> spec = ModelPresetMlp(
...     preset_params=MlpPresetParams(in_features=64, hidden_sizes=(128,), out_features=10)
... )
>>> ir = expand_preset(spec, task_type="multiclass", dtype="float32")
>>> [p.name for p in ir.parameters]
['fc1.weight', 'fc1.bias', 'head.weight', 'head.bias']
>>> [(n.node_id, n.instr) for n in ir.nodes][-2:]
[('logits', 'BIAS_ADD'), ('loss', 'CROSS_ENTROPY')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from umlos._generated.records import (
    BasicCnnPresetParams,
    IrAttrs,
    IrInit,
    IrInitConstant,
    IrInitNormal,
    IrInitUniformFanIn,
    IrInput,
    IrNode,
    IrParameter,
    MlpPresetParams,
    ModelCustomIr,
    ModelIR,
    ModelPresetBasicCnn,
    ModelPresetLinear,
    ModelPresetMlp,
    ModelPresetTinyTransformer,
    ModelSpec,
    TinyTransformerPresetParams,
)
from umlos.errors import ContractViolationError, InvalidIrError, ShapeMismatchError

__all__ = ["EMBEDDING_STD", "TaskType", "expand_preset"]

TaskType = Literal["multiclass", "binary", "regression"]
ComputeDtype = Literal["float32", "float64"]

EMBEDDING_STD = 0.02
"""Standard deviation of token and positional embeddings (spec decision D6)."""

_ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "tanh": "TANH", "sigmoid": "SIGMOID"}
_LOSS_HEADS = {"multiclass": "CROSS_ENTROPY", "binary": "BCE_LOGITS", "regression": "MSE"}
_PARAMS = "$.model.preset_params"


@dataclass
class _Builder:
    """Accumulates parameters and nodes in registration / execution order."""

    dtype: ComputeDtype
    parameters: list[IrParameter] = field(default_factory=list)
    nodes: list[IrNode] = field(default_factory=list)

    def param(self, name: str, shape: tuple[int, ...], init: IrInit) -> str:
        self.parameters.append(IrParameter(name=name, shape=shape, dtype=self.dtype, init=init))
        return name

    def node(
        self,
        node_id: str,
        instr: Any,
        inputs: tuple[str, ...],
        shape_out: tuple[int, ...],
        attrs: IrAttrs | None = None,
    ) -> str:
        self.nodes.append(
            IrNode(node_id=node_id, instr=instr, inputs=inputs, attrs=attrs, shape_out=shape_out)
        )
        return node_id

    def dense(
        self, name: str, x: str, *, lead: tuple[int, ...], fan_in: int, width: int, out_id: str
    ) -> str:
        """MATMUL + BIAS_ADD with ``uniform_fan_in`` weight and bias."""
        init = IrInitUniformFanIn(fan_in=fan_in)
        w = self.param(f"{name}.weight", (fan_in, width), init)
        b = self.param(f"{name}.bias", (width,), init)
        h = self.node(f"{name}.matmul", "MATMUL", (x, w), (*lead, width))
        return self.node(out_id, "BIAS_ADD", (h, b), (*lead, width))

    def finish(
        self,
        name: str,
        features: IrInput,
        logits: str,
        logits_shape: tuple[int, ...],
        task_type: TaskType,
    ) -> ModelIR:
        """Add the labels input and the task's loss head."""
        if task_type == "multiclass":
            labels = IrInput(name="y", role="labels", shape=logits_shape[:-1], dtype="int64")
        else:
            labels = IrInput(name="y", role="labels", shape=logits_shape, dtype=self.dtype)
        self.node("loss", _LOSS_HEADS[task_type], (logits, "y"), ())
        return ModelIR(
            ir_version=1,
            name=name,
            inputs=(features, labels),
            parameters=tuple(self.parameters),
            nodes=tuple(self.nodes),
            outputs=(logits,),
            loss="loss",
        )


def expand_preset(spec: ModelSpec, *, task_type: TaskType, dtype: ComputeDtype) -> ModelIR:
    """The IR of ``spec`` for ``task_type`` with every parameter in ``dtype`` (not yet validated).

    A custom IR passes through unchanged once its parameter dtype is checked against ``dtype``
    (``INVALID_IR`` otherwise). Presets whose geometry collapses (e.g. an image too small for its
    pooling stages) raise ``SHAPE_MISMATCH`` at the offending preset parameter.
    """
    if task_type not in _LOSS_HEADS:
        raise ContractViolationError(f"unknown task_type {task_type!r}", path="$.task_type")
    if isinstance(spec, ModelCustomIr):
        for i, p in enumerate(spec.ir.parameters):
            if p.dtype != dtype:
                raise InvalidIrError(
                    f"parameter {p.name!r} has dtype {p.dtype}, the run computes in {dtype}",
                    path=f"$.model.ir.parameters[{i}].dtype",
                    context={"node_id": p.name},
                )
        return spec.ir
    if isinstance(spec, ModelPresetLinear):
        pp = spec.preset_params
        return _mlp(
            "linear",
            in_features=pp.in_features,
            hidden=(),
            out_features=pp.out_features,
            activation="relu",
            task_type=task_type,
            dtype=dtype,
        )
    if isinstance(spec, ModelPresetMlp):
        mp = spec.preset_params
        activation = _default(mp.activation, MlpPresetParams, "activation")
        return _mlp(
            "mlp",
            in_features=mp.in_features,
            hidden=mp.hidden_sizes,
            out_features=mp.out_features,
            activation=activation,
            task_type=task_type,
            dtype=dtype,
        )
    if isinstance(spec, ModelPresetBasicCnn):
        return _basic_cnn(spec.preset_params, task_type, dtype)
    if isinstance(spec, ModelPresetTinyTransformer):
        return _tiny_transformer(spec.preset_params, task_type, dtype)
    raise ContractViolationError(  # pragma: no cover - the union is closed
        f"unknown model spec {type(spec).__qualname__}", path="$.model.preset"
    )


def _default(value: Any, record: Any, name: str) -> Any:
    return record.defaults[name] if value is None else value


def _mlp(
    name: str,
    *,
    in_features: int,
    hidden: tuple[int, ...],
    out_features: int,
    activation: str,
    task_type: TaskType,
    dtype: ComputeDtype,
) -> ModelIR:
    b = _Builder(dtype)
    x = IrInput(name="x", role="features", shape=(in_features,), dtype=dtype)
    h, width = "x", in_features
    for i, size in enumerate(hidden, start=1):
        h = b.dense(f"fc{i}", h, lead=(), fan_in=width, width=size, out_id=f"fc{i}")
        h = b.node(f"act{i}", _ACTIVATIONS[activation], (h,), (size,))
        width = size
    logits = b.dense("head", h, lead=(), fan_in=width, width=out_features, out_id="logits")
    return b.finish(name, x, logits, (out_features,), task_type)


def _basic_cnn(pp: BasicCnnPresetParams, task_type: TaskType, dtype: ComputeDtype) -> ModelIR:
    channels: tuple[int, ...] = tuple(
        _default(pp.conv_channels, BasicCnnPresetParams, "conv_channels")
    )
    k: int = _default(pp.kernel_size, BasicCnnPresetParams, "kernel_size")
    hidden: int = _default(pp.hidden_size, BasicCnnPresetParams, "hidden_size")
    act = _ACTIVATIONS[_default(pp.activation, BasicCnnPresetParams, "activation")]
    b = _Builder(dtype)
    x = IrInput(name="x", role="features", shape=(pp.in_channels, pp.height, pp.width), dtype=dtype)
    h, c, hh, ww = "x", pp.in_channels, pp.height, pp.width
    pad = k // 2
    for i, out_c in enumerate(channels, start=1):
        init = IrInitUniformFanIn(fan_in=c * k * k)
        w = b.param(f"conv{i}.weight", (out_c, c, k, k), init)
        bias = b.param(f"conv{i}.bias", (out_c,), init)
        hh, ww = hh + 2 * pad - k + 1, ww + 2 * pad - k + 1
        attrs = IrAttrs(stride=(1, 1), padding=(pad, pad))
        h = b.node(f"conv{i}", "CONV2D", (h, w, bias), (out_c, hh, ww), attrs)
        h = b.node(f"conv{i}.act", act, (h,), (out_c, hh, ww))
        if hh < 2 or ww < 2:
            raise ShapeMismatchError(
                f"conv block {i} sees a {hh}x{ww} map, too small for its 2x2 max-pool",
                path=f"{_PARAMS}.conv_channels[{i - 1}]",
                context={
                    "node_id": f"pool{i}",
                    "shape_in": str([out_c, hh, ww]),
                    "shape_expected": "height and width >= 2",
                },
            )
        hh, ww = hh // 2, ww // 2
        pool = IrAttrs(kernel_size=(2, 2), stride=(2, 2))
        h = b.node(f"pool{i}", "MAXPOOL2D", (h,), (out_c, hh, ww), pool)
        c = out_c
    flat = c * hh * ww
    h = b.node("flatten", "FLATTEN", (h,), (flat,))
    h = b.dense("fc1", h, lead=(), fan_in=flat, width=hidden, out_id="fc1")
    h = b.node("act1", act, (h,), (hidden,))
    logits = b.dense("head", h, lead=(), fan_in=hidden, width=pp.out_features, out_id="logits")
    return b.finish("basic_cnn", x, logits, (pp.out_features,), task_type)


def _tiny_transformer(
    pp: TinyTransformerPresetParams, task_type: TaskType, dtype: ComputeDtype
) -> ModelIR:
    d = TinyTransformerPresetParams.defaults
    dm: int = _default(pp.d_model, TinyTransformerPresetParams, "d_model")
    heads: int = _default(pp.heads, TinyTransformerPresetParams, "heads")
    layers: int = _default(pp.layers, TinyTransformerPresetParams, "layers")
    ffn: int = _default(pp.ffn_dim, TinyTransformerPresetParams, "ffn_dim")
    causal = bool(pp.causal if pp.causal is not None else d["causal"])
    seq, out = pp.seq_len, pp.out_features
    b = _Builder(dtype)
    normal = IrInitNormal(std=EMBEDDING_STD)
    one, zero = IrInitConstant(value=1.0), IrInitConstant(value=0.0)
    x = IrInput(name="x", role="features", shape=(seq,), dtype="int64")
    ld = (seq, dm)
    tok = b.param("tok_emb.weight", (pp.vocab_size, dm), normal)
    pos = b.param("pos_emb", ld, normal)
    h = b.node("tok_emb", "EMBEDDING", ("x", tok), ld)
    h = b.node("embed", "ADD", (h, pos), ld)

    def layernorm(prefix: str, src: str) -> str:
        g = b.param(f"{prefix}.weight", (dm,), one)
        beta = b.param(f"{prefix}.bias", (dm,), zero)
        return b.node(prefix, "LAYERNORM", (src, g, beta), ld)

    for i in range(layers):
        p = f"h{i}"
        fan_d = IrInitUniformFanIn(fan_in=dm)
        n1 = layernorm(f"{p}.ln1", h)
        q = b.node(f"{p}.q", "MATMUL", (n1, b.param(f"{p}.attn.wq", (dm, dm), fan_d)), ld)
        k = b.node(f"{p}.k", "MATMUL", (n1, b.param(f"{p}.attn.wk", (dm, dm), fan_d)), ld)
        v = b.node(f"{p}.v", "MATMUL", (n1, b.param(f"{p}.attn.wv", (dm, dm), fan_d)), ld)
        a = b.node(f"{p}.attn", "ATTENTION", (q, k, v), ld, IrAttrs(heads=heads, causal=causal))
        wo = b.param(f"{p}.attn.wo", (dm, dm), fan_d)
        a = b.node(f"{p}.attn_out", "MATMUL", (a, wo), ld)
        h = b.node(f"{p}.res1", "ADD", (h, a), ld)
        n2 = layernorm(f"{p}.ln2", h)
        w1 = b.param(f"{p}.mlp.w1", (dm, ffn), fan_d)
        f = b.node(f"{p}.fc", "MATMUL", (n2, w1), (seq, ffn))
        f = b.node(f"{p}.gelu", "GELU", (f,), (seq, ffn))
        w2 = b.param(f"{p}.mlp.w2", (ffn, dm), IrInitUniformFanIn(fan_in=ffn))
        f = b.node(f"{p}.proj", "MATMUL", (f, w2), ld)
        h = b.node(f"{p}.res2", "ADD", (h, f), ld)
    h = layernorm("ln_f", h)
    if causal:
        # Language-model head: the output layer at every position, logits [seq, out].
        logits = b.dense("head", h, lead=(seq,), fan_in=dm, width=out, out_id="logits")
        shape: tuple[int, ...] = (seq, out)
    else:
        h = b.node("flatten", "FLATTEN", (h,), (seq * dm,))
        logits = b.dense("head", h, lead=(), fan_in=seq * dm, width=out, out_id="logits")
        shape = (out,)
    return b.finish("tiny_transformer", x, logits, shape, task_type)
