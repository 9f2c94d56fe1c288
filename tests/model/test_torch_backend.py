"""The torch backend against the numpy reference: every instruction's values and gradients, whole
MLP and CNN steps, the optimizer's operation order (bit for bit on the CPU), reproducibility,
per-sample gradients, the gradient-norm sums, input checks, the fingerprint, and CUDA.

Tolerances are declared once (``F64`` and ``F32`` below). The torch backend computes gradients
with autograd, sums multi-consumer and broadcast gradients in the compute dtype and reduces in
torch's order, so it agrees with numpy within them, not bit for bit; the optimizer update, whose
operation order ADR 0008 fixes, is compared bit for bit.
"""

from __future__ import annotations

import dataclasses
import doctest
import gc
import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import umlos.model.backends.torch_backend as torch_backend
from umlos._generated.records import (
    BasicCnnPresetParams,
    DriverRuntimeFingerprint,
    IrAttrs,
    IrInitUniformFanIn,
    IrInput,
    IrNode,
    IrParameter,
    MlpPresetParams,
    ModelIR,
    ModelPresetBasicCnn,
    ModelPresetMlp,
)
from umlos.codec import digest
from umlos.errors import BackendContractViolationError, ContractViolationError, ShapeMismatchError
from umlos.model import Op, ValidatedIR, expand_preset, init_parameters, validate_ir
from umlos.model.backends import OptimizerStep, Program, get_backend, zero_slots
from umlos.model.backends.numpy_backend import NumpyBackend
from umlos.model.backends.torch_backend import KERNELS, TorchBackend, TorchProgram
from umlos.numerics import PhiloxStream, fixed_sum_of_squares

Array = np.ndarray[Any, Any]
SEED = bytes(range(32))

CUDA_SKIP = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=(
        "!!! NO CUDA DEVICE: the torch backend's CUDA path (device='cuda', cuBLAS workspace, "
        "cuDNN determinism) is NOT TESTED in this run; run the suite on a GPU machine !!!"
    ),
)


@dataclasses.dataclass(frozen=True)
class Tol:
    """``|a − b| ≤ atol·max|b| + rtol·|b|`` elementwise: relative, with a floor at the scale."""

    rtol: float
    atol: float


# float64: both backends are binary64 throughout; differences are reduction orders (a few ulp
# per sum), far below 1e-10.
F64 = Tol(rtol=1e-10, atol=1e-12)
# float32: one ulp is 6e-8; sums over up to a few hundred terms in different orders, and the
# loss gradient (torch: binary64 then cast; numpy: float32), differ by tens of ulp (measured
# ≤ 1e-6 of the scale); a few optimizer steps amplify that a little.
F32 = Tol(rtol=1e-5, atol=5e-6)


# Sums of squares: torch's binary64 2-norm squared on the host (reduction order plus 2 ulp,
# measured ≤ 3e-15) against numpy's compensated fixed-order sum.
SUMS = Tol(rtol=1e-14, atol=0.0)


def assert_close(a: Any, b: Any, tol: Tol, what: str = "") -> None:
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (what, a64.shape, b64.shape)
    scale = float(np.max(np.abs(b64))) if b64.size else 0.0
    bound = tol.atol * scale + tol.rtol * np.abs(b64)
    worst = float(np.max(np.abs(a64 - b64) - bound)) if b64.size else 0.0
    assert worst <= 0.0, f"{what}: max excess {worst:.3e} over {tol} (scale {scale:.3e})"


# --- IR construction -----------------------------------------------------------------------------


class _Build:
    """A small IR builder: features ``x``, optional labels ``t``, parameters with fan-in init."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.inputs: list[IrInput] = []
        self.params: list[IrParameter] = []
        self.nodes: list[IrNode] = []

    def inp(self, name: str, shape: tuple[int, ...], role: str = "features", dt: str = "") -> str:
        self.inputs.append(
            IrInput(name=name, role=role, shape=shape, dtype=dt or self.dtype)  # type: ignore[arg-type]
        )
        return name

    def par(self, name: str, shape: tuple[int, ...]) -> str:
        init = IrInitUniformFanIn(fan_in=shape[0] if len(shape) == 1 else math.prod(shape[1:]))
        self.params.append(
            IrParameter(name=name, shape=shape, dtype=self.dtype, init=init)  # type: ignore[arg-type]
        )
        return name

    def node(
        self, nid: str, instr: str, ins: tuple[str, ...], out: tuple[int, ...], **a: Any
    ) -> str:
        attrs = IrAttrs(**a) if a else None
        self.nodes.append(IrNode(node_id=nid, instr=instr, inputs=ins, shape_out=out, attrs=attrs))  # type: ignore[arg-type]
        return nid

    def mse_head(self, value: str, shape: tuple[int, ...], outputs: tuple[str, ...]) -> ModelIR:
        """Flatten ``value`` and regress it on labels ``t`` (MSE), returning the IR."""
        n = math.prod(shape)
        flat = self.node("flat_out", "FLATTEN", (value,), (n,)) if len(shape) != 1 else value
        t = self.inp("t", (n,), role="labels")
        self.node("loss", "MSE", (flat, t), ())
        return self.finish(outputs)

    def finish(self, outputs: tuple[str, ...]) -> ModelIR:
        return ModelIR(
            ir_version=1,
            name="case",
            inputs=tuple(self.inputs),
            parameters=tuple(self.params),
            nodes=tuple(self.nodes),
            outputs=outputs,
            loss="loss",
        )


def _pre(b: _Build, shape: tuple[int, ...], k: int = 6, name: str = "h") -> str:
    """An activation of ``shape`` that depends on a parameter (so its gradient is tested)."""
    x = "x" if any(i.name == "x" for i in b.inputs) else b.inp("x", (k,))
    n = math.prod(shape)
    h = b.node(f"{name}_mm", "MATMUL", (x, b.par(f"{name}.w", (k, n))), (n,))
    return b.node(name, "RESHAPE", (h,), shape, shape=shape) if len(shape) != 1 else h


def _unary(
    op: str, in_shape: tuple[int, ...] = (3, 4), out: tuple[int, ...] | None = None, **a: Any
) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        shape = in_shape
        h = _pre(b, shape)
        o = out or shape
        return b.mse_head(b.node("op", op, (h,), o, **a), o, ("op",))

    return build


def _matmul(lead: tuple[int, ...]) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        h = _pre(b, (*lead, 4))
        out = b.node("op", "MATMUL", (h, b.par("w", (4, 3))), (*lead, 3))
        return b.mse_head(out, (*lead, 3), ("op",))

    return build


def _bias_add(fused: bool) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        h = _pre(b, (5,))
        src = h if fused else b.node("th", "TANH", (h,), (5,))
        return b.mse_head(b.node("op", "BIAS_ADD", (src, b.par("b", (5,))), (5,)), (5,), ("op",))

    return build


def _binary(op: str, second: str) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        h1 = _pre(b, (2, 3), name="h1")
        h2 = _pre(b, (2, 3), name="h2") if second == "activation" else b.par("p", (2, 3))
        return b.mse_head(b.node("op", op, (h1, h2), (2, 3)), (2, 3), ("op",))

    return build


def _layernorm(dtype: str) -> ModelIR:
    b = _Build(dtype)
    h = _pre(b, (2, 5))
    out = b.node("op", "LAYERNORM", (h, b.par("g", (5,)), b.par("be", (5,))), (2, 5), eps=1e-3)
    return b.mse_head(out, (2, 5), ("op",))


def _conv(bias: bool) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        h = _pre(b, (2, 5, 5))
        ins = (h, b.par("w", (3, 2, 3, 3)), *((b.par("cb", (3,)),) if bias else ()))
        out = b.node("op", "CONV2D", ins, (3, 3, 3), stride=(2, 1), padding=(1, 0))
        return b.mse_head(out, (3, 3, 3), ("op",))

    return build


def _pool(op: str, k: int, s: int, p: int) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        h = _pre(b, (2, 5, 5))
        o = (5 + 2 * p - k) // s + 1
        out = b.node("op", op, (h,), (2, o, o), kernel_size=(k, k), stride=(s, s), padding=(p, p))
        return b.mse_head(out, (2, o, o), ("op",))

    return build


def _embedding(dtype: str) -> ModelIR:
    b = _Build(dtype)
    ids = b.inp("x", (4,), dt="int64")
    out = b.node("op", "EMBEDDING", (ids, b.par("table", (7, 3))), (4, 3))
    return b.mse_head(out, (4, 3), ("op",))


def _attention(causal: bool) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        x = b.inp("x", (4, 5))
        q, k, v = (b.node(n, "MATMUL", (x, b.par(f"w{n}", (5, 6))), (4, 6)) for n in "qkv")
        out = b.node("op", "ATTENTION", (q, k, v), (4, 6), heads=2, causal=causal)
        return b.mse_head(out, (4, 6), ("op",))

    return build


def _cross_entropy(positions: int) -> Callable[[str], ModelIR]:
    def build(dtype: str) -> ModelIR:
        b = _Build(dtype)
        shape = (positions, 5) if positions > 1 else (5,)
        z = _pre(b, shape)
        y = b.inp("y", shape[:-1], role="labels", dt="int64")
        b.node("loss", "CROSS_ENTROPY", (z, y), ())
        return b.finish((z,))

    return build


def _bce(dtype: str) -> ModelIR:
    b = _Build(dtype)
    z = _pre(b, (4,))
    b.node("loss", "BCE_LOGITS", (z, b.inp("t", (4,), role="labels")), ())
    return b.finish((z,))


CASES: dict[str, Callable[[str], ModelIR]] = {
    "MATMUL": _matmul(()),
    "MATMUL_rank3": _matmul((2,)),
    "BIAS_ADD": _bias_add(fused=False),
    "BIAS_ADD_fused_with_MATMUL": _bias_add(fused=True),
    "ADD": _binary("ADD", "activation"),
    "ADD_parameter": _binary("ADD", "parameter"),
    "MUL": _binary("MUL", "activation"),
    "MUL_parameter": _binary("MUL", "parameter"),
    "RELU": _unary("RELU"),
    "GELU": _unary("GELU"),
    "TANH": _unary("TANH"),
    "SIGMOID": _unary("SIGMOID"),
    "SOFTMAX_axis0": _unary("SOFTMAX", axis=0),
    "SOFTMAX_last": _unary("SOFTMAX", axis=-1),
    "LAYERNORM": _layernorm,
    "CONV2D": _conv(bias=True),
    "CONV2D_no_bias": _conv(bias=False),
    "MAXPOOL2D": _pool("MAXPOOL2D", 2, 2, 1),
    "MAXPOOL2D_overlapping": _pool("MAXPOOL2D", 3, 1, 1),
    "AVGPOOL2D": _pool("AVGPOOL2D", 2, 2, 1),
    "AVGPOOL2D_overlapping": _pool("AVGPOOL2D", 3, 1, 1),
    "FLATTEN": _unary("FLATTEN", (2, 3), (6,)),
    "RESHAPE": _unary("RESHAPE", (2, 6), (3, 4), shape=(3, 4)),
    "TRANSPOSE": _unary("TRANSPOSE", (2, 3, 4), (4, 2, 3), perm=(2, 0, 1)),
    "EMBEDDING": _embedding,
    "ATTENTION": _attention(causal=False),
    "ATTENTION_causal": _attention(causal=True),
    "DROPOUT": _unary("DROPOUT", (3, 4), p=0.4),
    "CROSS_ENTROPY": _cross_entropy(1),
    "CROSS_ENTROPY_positions": _cross_entropy(3),
    "BCE_LOGITS": _bce,
    "MSE": _unary("TANH"),  # every MSE-headed case exercises MSE; this one names it
}


def _batch(ir: ValidatedIR, bsz: int, seed: int = 0) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for inp in ir.ir.inputs:
        shape = (bsz, *inp.shape)
        if ir.values[inp.name].elem == "int":
            bound = next(
                ir.shape(n.inputs[1])[0] if n.op is Op.EMBEDDING else ir.shape(n.inputs[0])[-1]
                for n in ir.nodes
                if n.op in (Op.EMBEDDING, Op.CROSS_ENTROPY) and inp.name in n.inputs
            )
            out[inp.name] = rng.integers(0, bound, shape)
        elif inp.role == "labels" and ir.node(ir.loss or "").op is Op.BCE_LOGITS:
            out[inp.name] = rng.integers(0, 2, shape).astype(inp.dtype)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
    return out


def _programs(ir: ModelIR, dtype: str) -> tuple[Program, TorchProgram, ValidatedIR]:
    v = validate_ir(ir)
    return NumpyBackend().compile(v, dtype), TorchBackend().compile(v, dtype), v  # type: ignore[arg-type]


def _compare_passes(ir: ModelIR, dtype: str, tol: Tol, *, bsz: int = 3) -> None:
    ref, prog, v = _programs(ir, dtype)
    host = init_parameters(v, SEED)
    batch = _batch(v, bsz)
    stream = PhiloxStream.from_seed(bytes(16)) if v.uses_dropout() else None
    r_ref = ref.loss_and_grads(ref.to_device(host), batch, rng=stream)
    r = prog.loss_and_grads(prog.to_device(host), batch, rng=stream)
    assert r.rng_next == r_ref.rng_next
    assert r.per_sample_loss.dtype == np.float64
    assert_close(r.per_sample_loss, r_ref.per_sample_loss, tol, "per-sample loss")
    assert list(r.grads) == list(r_ref.grads)
    got = prog.to_host(r.grads)
    for name, g in ref.to_host(r_ref.grads).items():
        assert got[name].dtype == np.dtype(dtype)
        assert_close(got[name], g, tol, f"grad {name}")
    for mode in ("train", "eval"):
        f_ref = ref.forward(ref.to_device(host), batch, mode=mode, rng=stream)  # type: ignore[arg-type]
        f = prog.forward(prog.to_device(host), batch, mode=mode, rng=stream)  # type: ignore[arg-type]
        assert f.nodes_executed == f_ref.nodes_executed
        assert f.rng_next == f_ref.rng_next
        for name, out in f_ref.outputs.items():
            assert f.outputs[name].dtype == np.dtype(dtype)
            assert_close(f.outputs[name], out, tol, f"{mode} output {name}")
        assert f.per_sample_loss is not None and f_ref.per_sample_loss is not None
        assert_close(f.per_sample_loss, f_ref.per_sample_loss, tol, f"{mode} loss")


def test_table_covers_the_isa() -> None:
    assert set(KERNELS) == set(Op)
    covered = {n.instr for build in CASES.values() for n in build("float64").nodes}
    assert covered == {op.value for op in Op}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("dtype", "tol"), [("float64", F64), ("float32", F32)], ids=["f64", "f32"])
def test_instruction_matches_numpy(case: str, dtype: str, tol: Tol) -> None:
    _compare_passes(CASES[case](dtype), dtype, tol)


# --- whole models --------------------------------------------------------------------------------

MLP = ModelPresetMlp(
    preset_params=MlpPresetParams(in_features=64, hidden_sizes=(128,), out_features=10)
)
CNN = ModelPresetBasicCnn(
    preset_params=BasicCnnPresetParams(in_channels=1, height=8, width=8, out_features=10)
)
HYPERS = {
    "sgd": OptimizerStep(kind="sgd", lr=0.05, opt_step=1, momentum=0.9, weight_decay=1e-3),
    "sgd_nesterov": OptimizerStep(kind="sgd", lr=0.05, opt_step=1, momentum=0.9, nesterov=True),
    "sgd_plain": OptimizerStep(kind="sgd", lr=0.05, opt_step=1),
    "adamw": OptimizerStep(kind="adamw", lr=1e-3, opt_step=1, weight_decay=0.01),
}


def _train(prog: Program, v: ValidatedIR, hyper: OptimizerStep, steps: int) -> dict[str, Any]:
    """``steps`` full steps (loss, norm, clip, update) from the fixed init on fixed batches."""
    host = init_parameters(v, SEED)
    params = prog.to_device(host)
    slots = prog.to_device(zero_slots(hyper, host))
    losses, norms = [], []
    for k in range(1, steps + 1):
        res = prog.loss_and_grads(params, _batch(v, 16, seed=k))
        norm = math.sqrt(math.fsum(prog.sum_of_squares(res.grads)))
        grads = prog.scale_(res.grads, min(1.0, 1.0 / (norm + 1e-6)))
        params, slots = prog.apply_update(
            params, grads, slots, dataclasses.replace(hyper, opt_step=k)
        )
        losses.append(res.per_sample_loss)
        norms.append(norm)
    return {
        "params": prog.to_host(params),
        "slots": prog.to_host(slots),
        "losses": losses,
        "norms": norms,
    }


@pytest.mark.parametrize("hyper", sorted(HYPERS))
@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize(("dtype", "tol"), [("float64", F64), ("float32", F32)], ids=["f64", "f32"])
def test_model_steps_match_numpy(model: str, hyper: str, dtype: str, tol: Tol) -> None:
    v = validate_ir(
        expand_preset(MLP if model == "mlp" else CNN, task_type="multiclass", dtype=dtype)
    )  # type: ignore[arg-type]
    ref = _train(NumpyBackend().compile(v, dtype), v, HYPERS[hyper], 3)  # type: ignore[arg-type]
    got = _train(TorchBackend().compile(v, dtype), v, HYPERS[hyper], 3)  # type: ignore[arg-type]
    for k, (a, b) in enumerate(zip(got["losses"], ref["losses"], strict=True)):
        assert_close(a, b, tol, f"step {k + 1} losses")
    assert_close(got["norms"], ref["norms"], tol, "gradient norms")
    for part in ("params", "slots"):
        assert list(got[part]) == list(ref[part])
        for name, value in ref[part].items():
            assert_close(got[part][name], value, tol, f"{part} {name}")


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_same_configuration_twice_is_bit_identical(model: str) -> None:
    v = validate_ir(
        expand_preset(MLP if model == "mlp" else CNN, task_type="multiclass", dtype="float32")
    )
    runs = [_train(TorchBackend().compile(v, "float32"), v, HYPERS["adamw"], 3) for _ in range(2)]
    for name, value in runs[0]["params"].items():
        assert value.tobytes() == runs[1]["params"][name].tobytes(), name
    for a, b in zip(runs[0]["losses"], runs[1]["losses"], strict=True):
        assert a.tobytes() == b.tobytes()
    assert runs[0]["norms"] == runs[1]["norms"]


# --- optimizer: ADR 0008's operation order, bit for bit -------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hyper", sorted(HYPERS))
def test_update_is_bit_identical_to_numpy(hyper: str, dtype: str) -> None:
    """Same parameters, gradients and slots in; the same bits out, step after step.

    Both evaluate the documented operations one rounding at a time in the compute dtype, so on
    the CPU the results are equal, not merely close (torch's ``alpha=`` forms would fuse a
    multiply-add and break this). One exception, documented in ADR 0012: torch's binary64
    ``sqrt`` is faithful, not correctly rounded, so binary64 AdamW may differ in the last bit of
    a few elements; that case is held to a few ulp instead.
    """
    v = validate_ir(expand_preset(MLP, task_type="multiclass", dtype=dtype))  # type: ignore[arg-type]
    ref = NumpyBackend().compile(v, dtype)  # type: ignore[arg-type]
    prog = TorchBackend().compile(v, dtype)  # type: ignore[arg-type]
    h = HYPERS[hyper]
    exact = not (h.kind == "adamw" and dtype == "float64")
    host = init_parameters(v, SEED)
    rng = np.random.default_rng(7)
    state: dict[str, dict[str, Array]] = {"ref": dict(host), "got": dict(host)}
    slots = {"ref": zero_slots(h, host), "got": zero_slots(h, host)}
    programs: dict[str, Program] = {"ref": ref, "got": prog}
    for k in (1, 2, 3):
        grads = {n: rng.standard_normal(a.shape).astype(dtype) for n, a in host.items()}
        hk = dataclasses.replace(h, opt_step=k)
        for key, p in programs.items():
            params, new_slots = p.apply_update(
                p.to_device(state[key]), p.to_device(grads), p.to_device(slots[key]), hk
            )
            state[key], slots[key] = p.to_host(params), p.to_host(new_slots)
        assert list(slots["got"]) == list(slots["ref"])
        for part in ("params", "slots"):
            got, want = (
                (state, slots)[part == "slots"]["got"],
                (state, slots)[part == "slots"]["ref"],
            )
            for name, value in want.items():
                if exact:
                    assert got[name].tobytes() == value.tobytes(), (k, part, name)
                else:
                    assert_close(got[name], value, Tol(rtol=4e-16, atol=4e-16), f"{k} {name}")


def test_float32_square_root_is_correctly_rounded() -> None:
    """The reason for the binary64 detour in AdamW: torch's own float32 sqrt is not IEEE."""
    prog = TorchBackend().compile(validate_ir(_layernorm("float32")), "float32")
    x = np.random.default_rng(0).random(200_000).astype(np.float32)
    t = torch.from_numpy(x.copy())
    prog._sqrt_([t])
    assert t.numpy().tobytes() == np.sqrt(x).tobytes()


def test_update_consumes_in_place_and_keeps_order() -> None:
    v = validate_ir(expand_preset(MLP, task_type="multiclass", dtype="float32"))
    prog = TorchBackend().compile(v, "float32")
    host = init_parameters(v, SEED)
    params = prog.to_device(host)
    before = {n: t.data_ptr() for n, t in params.items()}
    res = prog.loss_and_grads(params, _batch(v, 4))
    h = HYPERS["adamw"]
    new, slots = prog.apply_update(params, res.grads, prog.to_device(zero_slots(h, host)), h)
    assert list(new) == list(v.parameter_names)
    assert {n: t.data_ptr() for n, t in new.items()} == before  # updated where they live
    assert list(slots) == [f"{n}/{s}" for n in v.parameter_names for s in ("exp_avg", "exp_avg_sq")]


# --- per-sample gradients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "CONV2D",
        "ATTENTION_causal",
        "EMBEDDING",
        "DROPOUT",
        "CROSS_ENTROPY_positions",
        "BIAS_ADD_fused_with_MATMUL",
        "LAYERNORM",
        "MAXPOOL2D_overlapping",
    ],
)
def test_per_sample_grads_match_numpy(case: str) -> None:
    ref, prog, v = _programs(CASES[case]("float64"), "float64")
    host = init_parameters(v, SEED)
    batch = _batch(v, 4)
    stream = PhiloxStream.from_seed(bytes(16)) if v.uses_dropout() else None
    r_ref = ref.per_sample_grads(ref.to_device(host), batch, rng=stream)
    r = prog.per_sample_grads(prog.to_device(host), batch, rng=stream)
    assert r.rng_next == r_ref.rng_next
    assert_close(r.per_sample_loss, r_ref.per_sample_loss, F64, "losses")
    for name, g in ref.to_host(r_ref.grads).items():
        got = prog.to_host(r.grads)[name]
        assert got.shape == (4, *v.shape(name))
        assert_close(got, g, F64, name)
    # Their mean is the batch gradient (seed 1/B).
    mean = prog.to_host(prog.loss_and_grads(prog.to_device(host), batch, rng=stream).grads)
    for name, g in prog.to_host(r.grads).items():
        assert_close(g.mean(axis=0), mean[name], F64, f"mean {name}")


# --- gradient-norm sums and clipping ------------------------------------------------------------


def test_sum_of_squares_is_binary64_and_survives_in_place_changes() -> None:
    v = validate_ir(expand_preset(CNN, task_type="multiclass", dtype="float32"))
    prog = TorchBackend().compile(v, "float32")
    params = prog.to_device(init_parameters(v, SEED))
    res = prog.loss_and_grads(params, _batch(v, 8))
    host = prog.to_host(res.grads)
    exact = [fixed_sum_of_squares(g) for g in host.values()]
    served = prog.sum_of_squares(res.grads)  # computed alongside the losses
    fresh = prog.sum_of_squares(dict(res.grads))  # same tensors: served again
    recomputed = prog.sum_of_squares({k: t.clone() for k, t in res.grads.items()})
    assert served == fresh == recomputed
    assert_close(served, exact, SUMS, "sums vs fixed_sum_of_squares")
    scaled = prog.scale_(res.grads, 0.5)  # in place: the served sums must not be reused
    after = prog.sum_of_squares(scaled)
    expect = [fixed_sum_of_squares(g * np.float32(0.5)) for g in host.values()]
    assert_close(after, expect, SUMS, "after scale_")
    assert prog.sum_of_squares({}) == []


def test_norm_cache_does_not_keep_gradients_alive() -> None:
    v = validate_ir(expand_preset(MLP, task_type="multiclass", dtype="float32"))
    prog = TorchBackend().compile(v, "float32")
    params = prog.to_device(init_parameters(v, SEED))
    res = prog.loss_and_grads(params, _batch(v, 4))
    ref = weakref.ref(res.grads["fc1.weight"])
    del res
    gc.collect()
    assert ref() is None


def test_sum_of_squares_float64_and_mixed_shapes() -> None:
    prog = TorchBackend().compile(validate_ir(_layernorm("float64")), "float64")
    rng = np.random.default_rng(3)
    host = {"a": rng.standard_normal((3, 5)), "b": rng.standard_normal(7)}
    sums = prog.sum_of_squares(prog.to_device(host))
    assert_close(sums, [fixed_sum_of_squares(a) for a in host.values()], SUMS)


# --- inputs and errors ---------------------------------------------------------------------------


def test_forward_without_labels_skips_the_loss_head() -> None:
    ref, prog, v = _programs(CASES["CROSS_ENTROPY"]("float64"), "float64")
    host = init_parameters(v, SEED)
    batch = {"x": _batch(v, 5)["x"]}
    f_ref = ref.forward(ref.to_device(host), batch)
    f = prog.forward(prog.to_device(host), batch, mode="infer")
    assert f.per_sample_loss is None and f.loss is None
    assert f.nodes_executed == f_ref.nodes_executed
    (name,) = v.outputs
    assert_close(f.outputs[name], f_ref.outputs[name], F64, "logits")


def test_dropout_needs_the_stream_in_train_mode_only() -> None:
    _, prog, v = _programs(CASES["DROPOUT"]("float64"), "float64")
    params = prog.to_device(init_parameters(v, SEED))
    batch = _batch(v, 2)
    with pytest.raises(ContractViolationError, match="dropout stream"):
        prog.loss_and_grads(params, batch)
    assert prog.forward(params, batch, mode="eval").rng_next is None


@pytest.mark.parametrize(
    ("case", "mutate", "error", "reason"),
    [
        (
            "CROSS_ENTROPY",
            lambda b: b.update(y=b["y"] + 5),
            ContractViolationError,
            "LABEL_OUT_OF_RANGE",
        ),
        ("EMBEDDING", lambda b: b.update(x=-b["x"] - 1), ContractViolationError, "ID_OUT_OF_RANGE"),
        (
            "CROSS_ENTROPY",
            lambda b: b.update(y=b["y"].astype(np.float64)),
            ContractViolationError,
            None,
        ),
        ("CROSS_ENTROPY", lambda b: b.pop("y"), ContractViolationError, None),
        ("CROSS_ENTROPY", lambda b: b.update(z=b["x"]), ContractViolationError, None),
        ("CROSS_ENTROPY", lambda b: b.update(x=b["x"][:, :3]), ShapeMismatchError, None),
        (
            "CROSS_ENTROPY",
            lambda b: b.update(x=b["x"][:0], y=b["y"][:0]),
            ContractViolationError,
            None,
        ),
    ],
    ids=["label-range", "id-range", "float-labels", "missing", "unknown", "shape", "empty"],
)
def test_batch_checks_match_numpy(
    case: str,
    mutate: Callable[[dict[str, Array]], object],
    error: type[Exception],
    reason: str | None,
) -> None:
    ref, prog, v = _programs(CASES[case]("float64"), "float64")
    host = init_parameters(v, SEED)
    for p in (ref, prog):
        batch = _batch(v, 3)
        mutate(batch)
        with pytest.raises(error) as info:
            p.loss_and_grads(p.to_device(host), batch)
        if reason is not None:
            assert info.value.reason == reason  # type: ignore[attr-defined]


def test_parameter_and_compile_checks() -> None:
    v = validate_ir(expand_preset(MLP, task_type="multiclass", dtype="float32"))
    with pytest.raises(ContractViolationError, match="parameters are float32"):
        TorchBackend().compile(v, "float64")
    prog = TorchBackend().compile(v, "float32")
    params = prog.to_device(init_parameters(v, SEED))
    batch = _batch(v, 2)
    with pytest.raises(ContractViolationError, match="missing"):
        prog.loss_and_grads({k: t for k, t in params.items() if k != "head.bias"}, batch)
    with pytest.raises(ContractViolationError, match="expected a tensor of shape"):
        prog.loss_and_grads({**params, "head.bias": params["head.weight"]}, batch)
    tanh = CASES["TANH"]("float32")  # drop its MSE head and labels: an inference-only IR
    no_loss = validate_ir(
        dataclasses.replace(tanh, loss=None, nodes=tanh.nodes[:-1], inputs=tanh.inputs[:1])
    )
    inference = TorchBackend().compile(no_loss, "float32")
    weights = inference.to_device(init_parameters(no_loss, SEED))
    features = {"x": _batch(no_loss, 2)["x"]}
    with pytest.raises(ContractViolationError, match="no loss"):
        inference.loss_and_grads(weights, features)
    assert inference.forward(weights, features).per_sample_loss is None


def test_host_and_device_copies_do_not_alias() -> None:
    v = validate_ir(expand_preset(MLP, task_type="multiclass", dtype="float32"))
    prog = TorchBackend().compile(v, "float32")
    host = init_parameters(v, SEED)
    keep = {k: a.copy() for k, a in host.items()}
    params = prog.to_device(host)
    back = prog.to_host(params)
    h = HYPERS["sgd_plain"]
    prog.apply_update(params, prog.loss_and_grads(params, _batch(v, 2)).grads, {}, h)
    for name in host:
        assert host[name].tobytes() == keep[name].tobytes()  # to_device copied
        assert back[name].tobytes() == keep[name].tobytes()  # to_host copied


def test_backend_options() -> None:
    with pytest.raises(ContractViolationError, match="num_threads"):
        TorchBackend(num_threads=0)
    with pytest.raises(ContractViolationError, match="device"):
        TorchBackend(device="tpu")
    with pytest.raises(ContractViolationError, match="device"):
        TorchBackend(device="not a device")
    if torch.cuda.is_available():
        assert TorchBackend(device="cuda").device.type == "cuda"
    else:
        with pytest.raises(BackendContractViolationError) as info:
            TorchBackend(device="cuda")
        assert info.value.reason == "BACKEND_UNAVAILABLE"
    backend = get_backend("torch", num_threads=1)
    assert isinstance(backend, TorchBackend) and backend.name == "torch"


def test_nondeterministic_kernel_is_a_catalogue_error() -> None:
    with (
        pytest.raises(BackendContractViolationError) as info,
        torch_backend._determinism_guard(),
    ):
        raise RuntimeError("scatter_add_cuda_kernel does not have a deterministic implementation")
    assert info.value.reason == "NONDETERMINISTIC_KERNEL"
    with pytest.raises(RuntimeError, match="other"), torch_backend._determinism_guard():
        raise RuntimeError("other")


def test_fingerprint_cpu() -> None:
    fp = TorchBackend().fingerprint()
    assert DriverRuntimeFingerprint.from_obj(fp.to_obj()) == fp  # all 17 keys, schema-valid
    assert (fp.gpu_model, fp.gpu_sm_count, fp.cuda_version, fp.cudnn_version) == (
        "none",
        0,
        "none",
        "none",
    )
    assert (fp.driver_version, fp.cublas_version, fp.nccl_version) == ("none", "none", "none")
    assert fp.deterministic_kernels_enabled and not fp.nondeterministic_atomics_used
    assert fp.primitive_allowlist_used_hash == digest(sorted(op.value for op in Op))
    assert fp.backend_build_id == torch.version.git_version
    flags = fp.runtime_flags
    assert flags["torch.num_threads"] == "1" and flags["device"] == "cpu"
    assert flags["cuda.matmul.allow_tf32"] == flags["cudnn.allow_tf32"] == "false"
    assert flags["torch.deterministic_algorithms"] == "true"
    assert "env.CUBLAS_WORKSPACE_CONFIG" in flags
    assert fp == TorchBackend().fingerprint()  # nothing volatile


def test_determinism_settings_are_applied() -> None:
    TorchBackend(num_threads=1)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.get_num_threads() == 1
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic


def test_module_docstrings() -> None:
    result = doctest.testmod(torch_backend, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- CUDA ----------------------------------------------------------------------------------------


@CUDA_SKIP
@pytest.mark.parametrize(("dtype", "tol"), [("float64", F64), ("float32", F32)], ids=["f64", "f32"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cuda_steps_match_numpy(model: str, dtype: str, tol: Tol) -> None:
    v = validate_ir(
        expand_preset(MLP if model == "mlp" else CNN, task_type="multiclass", dtype=dtype)
    )  # type: ignore[arg-type]
    ref = _train(NumpyBackend().compile(v, dtype), v, HYPERS["adamw"], 3)  # type: ignore[arg-type]
    got = _train(TorchBackend(device="cuda").compile(v, dtype), v, HYPERS["adamw"], 3)  # type: ignore[arg-type]
    for name, value in ref["params"].items():
        assert_close(got["params"][name], value, tol, name)
    assert_close(got["norms"], ref["norms"], tol, "norms")


@CUDA_SKIP
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_instruction_matches_numpy(case: str) -> None:
    ir = CASES[case]("float64")
    v = validate_ir(ir)
    ref, prog = (
        NumpyBackend().compile(v, "float64"),
        TorchBackend(device="cuda").compile(v, "float64"),
    )
    host = init_parameters(v, SEED)
    batch = _batch(v, 3)
    stream = PhiloxStream.from_seed(bytes(16)) if v.uses_dropout() else None
    r_ref = ref.loss_and_grads(ref.to_device(host), batch, rng=stream)
    r = prog.loss_and_grads(prog.to_device(host), batch, rng=stream)
    assert_close(r.per_sample_loss, r_ref.per_sample_loss, F64, "loss")
    for name, g in ref.to_host(r_ref.grads).items():
        assert_close(prog.to_host(r.grads)[name], g, F64, name)


@CUDA_SKIP
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cuda_same_configuration_twice_is_bit_identical(model: str) -> None:
    v = validate_ir(
        expand_preset(MLP if model == "mlp" else CNN, task_type="multiclass", dtype="float32")
    )
    runs = [
        _train(TorchBackend(device="cuda").compile(v, "float32"), v, HYPERS["adamw"], 3)
        for _ in range(2)
    ]
    for name, value in runs[0]["params"].items():
        assert value.tobytes() == runs[1]["params"][name].tobytes(), name
    assert runs[0]["norms"] == runs[1]["norms"]


@CUDA_SKIP
def test_cuda_fingerprint_and_settings() -> None:
    import os

    fp = TorchBackend(device="cuda").fingerprint()
    assert DriverRuntimeFingerprint.from_obj(fp.to_obj()) == fp
    assert fp.gpu_model != "none" and fp.gpu_sm_count > 0
    assert fp.cuda_version == torch.version.cuda
    assert fp.runtime_flags["env.CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    assert fp.runtime_flags["device"].startswith("cuda:")


@CUDA_SKIP
def test_cuda_per_sample_grads_and_norms() -> None:
    ref, _, v = _programs(CASES["CONV2D"]("float64"), "float64")
    prog = TorchBackend(device="cuda").compile(v, "float64")
    host = init_parameters(v, SEED)
    batch = _batch(v, 4)
    r_ref = ref.per_sample_grads(ref.to_device(host), batch)
    r = prog.per_sample_grads(prog.to_device(host), batch)
    for name, g in ref.to_host(r_ref.grads).items():
        assert_close(prog.to_host(r.grads)[name], g, F64, name)
    res = prog.loss_and_grads(prog.to_device(host), batch)
    exact = [fixed_sum_of_squares(g) for g in prog.to_host(res.grads).values()]
    assert_close(prog.sum_of_squares(res.grads), exact, SUMS, "sums")
