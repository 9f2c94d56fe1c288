"""The numpy executor end to end: whole-model gradients vs central differences, the D12
accumulation order, determinism, dropout draws, per-sample gradients, optimizer updates against
independent implementations, clipping helpers, input checks, the fingerprint and step times."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from umlos._generated.records import (
    BasicCnnPresetParams,
    DriverRuntimeFingerprint,
    IrAttrs,
    IrInitConstant,
    IrInitUniformFanIn,
    IrInput,
    IrNode,
    IrParameter,
    MlpPresetParams,
    ModelIR,
    ModelPresetBasicCnn,
    ModelPresetMlp,
    ModelPresetTinyTransformer,
    ModelSpec,
    TinyTransformerPresetParams,
)
from umlos.codec import digest
from umlos.errors import BackendContractViolationError, ContractViolationError, ShapeMismatchError
from umlos.model import Op, expand_preset, init_parameters, validate_ir
from umlos.model.backends import (
    BACKENDS,
    Backend,
    OptimizerStep,
    get_backend,
    slot_names,
    zero_slots,
)
from umlos.model.backends.numpy_backend import NumpyBackend, NumpyProgram, _combine
from umlos.numerics import PhiloxStream, fixed_mean, words

SEED = bytes(range(32))
Array = np.ndarray[Any, Any]


def _program(
    spec_or_ir: ModelSpec | ModelIR, task: str = "multiclass", dtype: str = "float64"
) -> NumpyProgram:
    ir = (
        spec_or_ir
        if isinstance(spec_or_ir, ModelIR)
        else expand_preset(spec_or_ir, task_type=task, dtype=dtype)
    )  # type: ignore[arg-type]
    return NumpyBackend().compile(validate_ir(ir), dtype)  # type: ignore[arg-type]


def _batch(prog: NumpyProgram, bsz: int, seed: int = 0) -> dict[str, Array]:
    """Random features and labels matching the program's IR inputs."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for inp in prog.ir.ir.inputs:
        shape = (bsz, *inp.shape)
        v = prog.ir.values[inp.name]
        if v.elem == "int":
            hi = _int_bound(prog, inp.name)
            out[inp.name] = rng.integers(0, hi, shape)
        elif inp.role == "labels" and prog.ir.node(prog.ir.loss or "").op is Op.BCE_LOGITS:
            out[inp.name] = rng.integers(0, 2, shape).astype(inp.dtype)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
    return out


def _int_bound(prog: NumpyProgram, name: str) -> int:
    for node in prog.ir.nodes:
        if node.op is Op.EMBEDDING and node.inputs[0] == name:
            return prog.ir.shape(node.inputs[1])[0]
        if node.op is Op.CROSS_ENTROPY and node.inputs[1] == name:
            return prog.ir.shape(node.inputs[0])[-1]
    raise AssertionError(name)


def _fd_check(
    prog: NumpyProgram,
    batch: dict[str, Array],
    *,
    rng: PhiloxStream | None = None,
    per_param: int = 4,
    tol: float = 2e-6,
) -> None:
    """Analytic gradients of the mean loss vs central differences at sampled coordinates."""
    params = prog.to_device(init_parameters(prog.ir, SEED))
    res = prog.loss_and_grads(params, batch, rng=rng)
    pick = np.random.default_rng(1)
    mode = "train"

    def loss() -> float:
        value = prog.forward(params, batch, mode=mode, rng=rng).loss
        assert value is not None
        return value

    for name, theta in params.items():
        flat = theta.reshape(-1)
        for i in pick.choice(flat.size, min(per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            numeric = (up - down) / 2e-6
            analytic = float(res.grads[name].reshape(-1)[i])
            assert abs(analytic - numeric) <= tol * max(1.0, abs(numeric)), (
                name,
                i,
                analytic,
                numeric,
            )


TINY_MLP = ModelPresetMlp(
    preset_params=MlpPresetParams(
        in_features=5, hidden_sizes=(7, 4), out_features=3, activation="gelu"
    )
)
TINY_CNN = ModelPresetBasicCnn(
    preset_params=BasicCnnPresetParams(
        in_channels=2, height=6, width=5, conv_channels=(3, 2), hidden_size=5, out_features=3
    )
)


def _tiny_transformer(causal: bool) -> ModelPresetTinyTransformer:
    return ModelPresetTinyTransformer(
        preset_params=TinyTransformerPresetParams(
            vocab_size=7,
            seq_len=4,
            d_model=8,
            heads=2,
            layers=2,
            ffn_dim=6,
            causal=causal,
            out_features=7 if causal else 3,
        )
    )


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "encoder", "lm"])
def test_preset_gradients_match_finite_differences(name: str, task: str) -> None:
    spec = {
        "mlp": TINY_MLP,
        "cnn": TINY_CNN,
        "encoder": _tiny_transformer(False),
        "lm": _tiny_transformer(True),
    }[name]
    prog = _program(spec, task)
    _fd_check(prog, _batch(prog, 3))


def _kitchen_sink(dtype: str = "float64") -> ModelIR:
    """A custom IR over the instructions the presets do not use, with a shared value (D12)."""
    u = IrInitUniformFanIn(fan_in=4)

    def node(
        nid: str, instr: str, inputs: tuple[str, ...], out: tuple[int, ...], **a: Any
    ) -> IrNode:
        return IrNode(
            node_id=nid,
            instr=instr,
            inputs=inputs,
            shape_out=out,
            attrs=IrAttrs(**a) if a else None,
        )  # type: ignore[arg-type]

    return ModelIR(
        ir_version=1,
        name="kitchen_sink",
        inputs=(
            IrInput(name="x", role="features", shape=(1, 4, 4), dtype=dtype),  # type: ignore[arg-type]
            IrInput(name="y", role="labels", shape=(2, 3), dtype=dtype),  # type: ignore[arg-type]
        ),
        parameters=(
            IrParameter(name="k", shape=(2, 1, 3, 3), dtype=dtype, init=u),  # type: ignore[arg-type]
            IrParameter(name="s", shape=(2, 2, 2), dtype=dtype, init=IrInitConstant(value=1.5)),  # type: ignore[arg-type]
            IrParameter(name="w", shape=(2, 3), dtype=dtype, init=u),  # type: ignore[arg-type]
        ),
        nodes=(
            node("c", "CONV2D", ("x", "k"), (2, 2, 2), stride=(2, 2), padding=(1, 1)),
            node(
                "a",
                "AVGPOOL2D",
                ("c",),
                (2, 2, 2),
                kernel_size=(3, 3),
                stride=(1, 1),
                padding=(1, 1),
            ),
            node("m", "MUL", ("a", "s"), (2, 2, 2)),
            node("g", "SIGMOID", ("m",), (2, 2, 2)),
            node("t", "TANH", ("c",), (2, 2, 2)),  # c has two consumers: contributions summed (D12)
            node("r", "ADD", ("g", "t"), (2, 2, 2)),
            node("d", "DROPOUT", ("r",), (2, 2, 2), p=0.25),
            node("tr", "TRANSPOSE", ("d",), (2, 2, 2), perm=(1, 2, 0)),
            node("rs", "RESHAPE", ("tr",), (4, 2), shape=(4, 2)),
            node("sm", "SOFTMAX", ("rs",), (4, 2), axis=0),
            node("fl", "RESHAPE", ("sm",), (2, 2, 2), shape=(2, 2, 2)),
            node("mx", "MAXPOOL2D", ("fl",), (2, 1, 2), kernel_size=(2, 1)),
            node("sq", "RESHAPE", ("mx",), (2, 2), shape=(2, 2)),
            node("logits", "MATMUL", ("sq", "w"), (2, 3)),
            node("loss", "BCE_LOGITS", ("logits", "y"), ()),
        ),
        outputs=("logits",),
        loss="loss",
    )


def test_kitchen_sink_gradients_with_dropout() -> None:
    prog = _program(_kitchen_sink())
    batch = _batch(prog, 4)
    batch["y"] = (batch["y"] > 0).astype(np.float64)
    _fd_check(prog, batch, rng=PhiloxStream.from_seed(bytes(16)), per_param=6)


def test_accumulation_is_binary64_in_consumer_order() -> None:
    big = np.array([1e8], np.float32)
    parts = [(5, 0, np.array([1.0], np.float32)), (2, 1, -big), (2, 0, big)]
    # Sorted: (2,0) +1e8, (2,1) -1e8, (5,0) +1; in binary64 exactly 1.0 (float32 would lose it).
    out = _combine(parts)
    assert out.dtype == np.float32 and out.tolist() == [1.0]
    assert [p[:2] for p in parts] == [(2, 0), (2, 1), (5, 0)]


def test_steps_are_bit_reproducible() -> None:
    for dtype in ("float32", "float64"):
        runs = []
        for _ in range(2):
            prog = _program(_tiny_transformer(True), dtype=dtype)
            params = prog.to_device(init_parameters(prog.ir, SEED))
            res = prog.loss_and_grads(params, _batch(prog, 5))
            runs.append((res.per_sample_loss.tobytes(), [g.tobytes() for g in res.grads.values()]))
            assert all(g.dtype == np.dtype(dtype) for g in res.grads.values())
            assert res.per_sample_loss.dtype == np.float64
        assert runs[0] == runs[1]


def test_reported_loss_is_fixed_mean_of_per_sample_losses() -> None:
    prog = _program(TINY_MLP, dtype="float32")
    params = prog.to_device(init_parameters(prog.ir, SEED))
    res = prog.loss_and_grads(params, _batch(prog, 6))
    assert res.loss == fixed_mean(res.per_sample_loss)
    fwd = prog.forward(params, _batch(prog, 6))
    np.testing.assert_array_equal(fwd.per_sample_loss, res.per_sample_loss)  # type: ignore[arg-type]


def test_forward_without_labels_skips_the_loss() -> None:
    prog = _program(TINY_MLP)
    params = prog.to_device(init_parameters(prog.ir, SEED))
    batch = _batch(prog, 3)
    del batch["y"]
    fwd = prog.forward(params, batch, mode="infer")
    assert fwd.per_sample_loss is None and fwd.loss is None
    assert fwd.nodes_executed == len(prog.ir.nodes) - 1
    assert list(fwd.outputs) == ["logits"] and fwd.outputs["logits"].shape == (3, 3)
    with pytest.raises(ContractViolationError):
        prog.loss_and_grads(params, batch)


def test_dropout_draws_and_modes() -> None:
    prog = _program(_kitchen_sink())
    params = prog.to_device(init_parameters(prog.ir, SEED))
    batch = _batch(prog, 4)
    rng = PhiloxStream.from_seed(bytes(16))
    with pytest.raises(ContractViolationError) as info:
        prog.loss_and_grads(params, batch)
    assert info.value.path == "$.rng"
    res = prog.loss_and_grads(params, batch, rng=rng)
    assert res.rng_next == rng.advance(math.ceil(4 * 8 / 4))  # one word per element
    # Eval and infer never draw and return the stream unchanged.
    assert prog.forward(params, batch, mode="eval", rng=rng).rng_next == rng
    # The mask is "word >= floor(p * 2^32)", recomputed independently from the words.
    w, _ = words(rng, 32)
    keep = (w.astype(np.int64) >= int(0.25 * 2**32)).reshape(4, 2, 2, 2)
    masks, _ = prog._masks(4, "train", rng, with_labels=True)
    np.testing.assert_array_equal(masks["d"], keep)


def test_per_sample_grads_average_to_the_batch_gradient() -> None:
    prog = _program(_kitchen_sink())
    params = prog.to_device(init_parameters(prog.ir, SEED))
    batch = _batch(prog, 5)
    rng = PhiloxStream.from_seed(bytes(16))
    full = prog.loss_and_grads(params, batch, rng=rng)
    per = prog.per_sample_grads(params, batch, rng=rng)
    assert per.rng_next == full.rng_next
    np.testing.assert_array_equal(per.per_sample_loss, full.per_sample_loss)
    for name, g in full.grads.items():
        assert per.grads[name].shape == (5, *g.shape)
        np.testing.assert_allclose(per.grads[name].mean(axis=0), g, rtol=1e-12, atol=1e-15)


# --- optimizer -----------------------------------------------------------------------------------


def _reference_update(
    theta: list[float], grad: list[float], state: dict[str, list[float]], h: OptimizerStep
) -> None:
    """The schema formulas, element by element in Python floats (binary64), in place."""
    for i, (p, g) in enumerate(zip(theta, grad, strict=True)):
        if h.kind == "sgd":
            if h.weight_decay:
                g = g + h.weight_decay * p
            d = g
            if h.momentum > 0:
                buf = g if h.opt_step == 1 else h.momentum * state["buf"][i] + g
                state["buf"][i] = buf
                d = g + h.momentum * buf if h.nesterov else buf
            theta[i] = p - h.lr * d
        else:
            m = h.beta1 * state["m"][i] + (1 - h.beta1) * g
            v = h.beta2 * state["v"][i] + (1 - h.beta2) * g * g
            state["m"][i], state["v"][i] = m, v
            bc1, bc2 = 1 - h.beta1**h.opt_step, 1 - h.beta2**h.opt_step
            p = p - (h.lr * h.weight_decay) * p
            theta[i] = p - h.lr * (m / bc1) / (math.sqrt(v / bc2) + h.eps)


@pytest.mark.parametrize(
    "hyper",
    [
        dict(kind="sgd", lr=0.1),
        dict(kind="sgd", lr=0.1, weight_decay=0.01),
        dict(kind="sgd", lr=0.1, momentum=0.9),
        dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        dict(kind="adamw", lr=1e-2, weight_decay=0.01),
    ],
    ids=["sgd", "sgd-wd", "momentum", "nesterov", "adamw"],
)
def test_optimizer_matches_the_formulas_bit_for_bit(hyper: dict[str, Any]) -> None:
    prog = _program(TINY_MLP)
    rng = np.random.default_rng(3)
    params = prog.to_device(init_parameters(prog.ir, SEED))
    h1 = OptimizerStep(opt_step=1, **hyper)
    slots = prog.to_device(zero_slots(h1, prog.to_host(params)))
    assert list(slots) == slot_names(h1, list(params))
    ref = {k: v.ravel().tolist() for k, v in prog.to_host(params).items()}
    ref_state = {
        k: {"buf": [0.0] * len(v), "m": [0.0] * len(v), "v": [0.0] * len(v)} for k, v in ref.items()
    }
    for k in range(1, 4):
        h = dataclasses.replace(h1, opt_step=k)
        grads = {n: rng.standard_normal(p.shape) for n, p in params.items()}
        for n, values in ref.items():
            _reference_update(values, grads[n].ravel().tolist(), ref_state[n], h)
        params, slots = prog.apply_update(params, grads, slots, h)
    for n, p in params.items():
        assert p.ravel().tolist() == ref[n], n


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_agrees_with_torch_optim(kind: str) -> None:
    torch = pytest.importorskip("torch")
    prog = _program(TINY_MLP)
    host = init_parameters(prog.ir, SEED)
    tparams = [torch.tensor(v, requires_grad=True) for v in host.values()]
    if kind == "sgd":
        h1 = OptimizerStep(
            kind="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3, opt_step=1
        )
        opt = torch.optim.SGD(tparams, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        h1 = OptimizerStep(kind="adamw", lr=1e-2, weight_decay=0.01, opt_step=1)
        opt = torch.optim.AdamW(tparams, lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    params = prog.to_device(host)
    slots = prog.to_device(zero_slots(h1, host))
    rng = np.random.default_rng(4)
    for k in range(1, 6):
        grads = {n: rng.standard_normal(p.shape) for n, p in params.items()}
        params, slots = prog.apply_update(params, grads, slots, dataclasses.replace(h1, opt_step=k))
        for t, g in zip(tparams, grads.values(), strict=True):
            t.grad = torch.tensor(g)
        opt.step()
    for t, p in zip(tparams, params.values(), strict=True):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_sum_of_squares_and_scale() -> None:
    prog = _program(TINY_MLP, dtype="float32")
    tensors = prog.to_device({"a": np.array([3.0, 4.0]), "b": np.array([[1.0, 2.0]])})
    assert prog.sum_of_squares(tensors) == [25.0, 5.0]
    scaled = prog.scale_(tensors, 0.5)
    assert scaled["a"].tolist() == [1.5, 2.0] and scaled["a"].dtype == np.float32


def test_device_copies_do_not_alias() -> None:
    prog = _program(TINY_MLP)
    host = {"a": np.ones(3)}
    dev = prog.to_device(host)
    dev["a"] += 1
    assert host["a"].tolist() == [1.0, 1.0, 1.0]
    back = prog.to_host(dev)
    back["a"][0] = 9
    assert dev["a"][0] == 2.0


# --- input checks --------------------------------------------------------------------------------


def test_batch_checks() -> None:
    prog = _program(TINY_MLP)
    params = prog.to_device(init_parameters(prog.ir, SEED))
    good = _batch(prog, 2)
    with pytest.raises(ShapeMismatchError) as shape_err:
        prog.forward(params, {**good, "x": np.zeros((2, 4))})
    assert shape_err.value.path == "$.batch.x"
    with pytest.raises(ShapeMismatchError):
        prog.forward(params, {**good, "y": np.zeros(3, np.int64)})
    with pytest.raises(ContractViolationError) as extra:
        prog.forward(params, {**good, "z": np.zeros(2)})
    assert extra.value.path == "$.batch.z"
    with pytest.raises(ContractViolationError):
        prog.forward(params, {"y": good["y"]})
    with pytest.raises(ContractViolationError):
        prog.forward(params, {**good, "y": good["y"].astype(np.float64)})
    with pytest.raises(ContractViolationError):
        prog.forward(params, {"x": np.zeros((0, 5))})
    with pytest.raises(ContractViolationError) as missing:
        prog.forward({k: v for k, v in params.items() if k != "fc1.bias"}, good)
    assert missing.value.path == "$.params.fc1.bias"


def test_compile_checks_the_parameter_dtype() -> None:
    ir = validate_ir(expand_preset(TINY_MLP, task_type="multiclass", dtype="float32"))
    with pytest.raises(ContractViolationError):
        NumpyBackend().compile(ir, "float64")


# --- backend identity ----------------------------------------------------------------------------


def test_fingerprint() -> None:
    fp = NumpyBackend().fingerprint()
    assert DriverRuntimeFingerprint.from_obj(fp.to_obj()) == fp  # schema-valid
    assert (fp.gpu_model, fp.gpu_sm_count, fp.cuda_version) == ("none", 0, "none")
    assert fp.primitive_allowlist_used_hash == digest(sorted(op.value for op in Op))
    assert fp.compiler_flags_hash == digest([])
    flags = {
        "env.OMP_NUM_THREADS",
        "env.OPENBLAS_NUM_THREADS",
        "blas.name",
        "blas.num_threads",
        "numpy.version",
    }
    assert flags <= set(fp.runtime_flags)
    assert fp.accumulation_policy == "FIXED_DTYPE_FIXED_ORDER" and fp.deterministic_kernels_enabled
    assert NumpyBackend().fingerprint() == fp


def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = get_backend("numpy")
    assert isinstance(backend, Backend) and backend.name == "numpy"
    with pytest.raises(ContractViolationError):
        get_backend("jax")
    monkeypatch.setitem(BACKENDS, "ghost", ("umlos.model.backends._no_such_module", "Ghost"))  # type: ignore[index]
    with pytest.raises(BackendContractViolationError) as info:
        get_backend("ghost")
    assert info.value.reason == "BACKEND_UNAVAILABLE"
