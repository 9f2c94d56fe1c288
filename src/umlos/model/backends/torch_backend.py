"""The torch backend: the IR lowered once per program to a list of torch calls; autograd for grads.

Same semantics as the numpy reference (``docs/formats/model-ir.md``, ADR 0011): MATMUL is
``x · W`` with ``W [in, out]``, CONV2D is NCHW/OIHW, pools pad with ``-inf`` (max) and zeros
(average, zeros counted), loss heads give per-sample losses in binary64 computed from the
compute-dtype predictions, and backpropagation seeds ``1/B`` in the compute dtype. Decisions and
measurements are in ADR 0012. What differs from numpy, by design:

* Gradients come from autograd. Sums of several gradient contributions, and bias or broadcast
  reductions, are done by torch in the compute dtype (numpy: binary64, cast once), so the two
  backends agree within a tolerance (E1), not bit for bit.
* :meth:`TorchProgram.sum_of_squares` is binary64 but in torch's reduction order (a binary64
  2-norm per tensor, squared on the host), not :func:`~umlos.numerics.fixed_sum_of_squares`
  (that would cost 256 dependent vector steps per call): relative differences around 1e-15.
* :meth:`TorchProgram.apply_update` performs ADR 0008's operations one rounding at a time (no
  fused multiply-add, no ``alpha=``): on the CPU it is bit-identical to the numpy backend, except
  that a binary64 AdamW square root may be one ulp off (torch's vectorised ``sqrt`` is faithful,
  not correctly rounded; float32 roots are taken in binary64 and are exact).

Determinism (process-wide, set when a :class:`TorchBackend` is created): deterministic
algorithms on, a fixed intra-op thread count (``num_threads``, default 1), TF32 off for cuBLAS
and cuDNN, cuDNN benchmarking off and deterministic, oneDNN deterministic, float32 matmul
precision ``highest``. On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` (``:4096:8``) in the
environment before CUDA initialises: the backend sets it when CUDA is not yet initialised and
refuses to run otherwise; the value is part of the fingerprint.

>>> import numpy as np
>>> from umlos._generated.records import LinearPresetParams, ModelPresetLinear
>>> from umlos.model import expand_preset, init_parameters, validate_ir
>>> spec = ModelPresetLinear(preset_params=LinearPresetParams(in_features=4, out_features=3))
>>> ir = validate_ir(expand_preset(spec, task_type="multiclass", dtype="float64"))
>>> prog = TorchBackend().compile(ir, "float64")
>>> params = prog.to_device(init_parameters(ir, bytes(32)))
>>> res = prog.loss_and_grads(params, {"x": np.ones((2, 4)), "y": np.array([0, 2])})
>>> res.per_sample_loss.dtype, [tuple(g.shape) for g in res.grads.values()]
(dtype('float64'), [(4, 3), (3,)])
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import math
import os
import platform
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal spelling
from numpy.typing import NDArray

import umlos
from umlos._generated.records import DriverRuntimeFingerprint
from umlos.codec import digest
from umlos.errors import (
    BackendContractViolationError,
    ContractViolationError,
    PrimitiveUnsupportedError,
)
from umlos.model.backends.base import (
    ComputeDtype,
    ExecMode,
    ForwardResult,
    OptimizerStep,
    StepResult,
    check_batch,
)
from umlos.model.ir import Node, Op, ValidatedIR
from umlos.numerics import PhiloxStream, words

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "KERNELS",
    "TorchBackend",
    "TorchProgram",
    "configure_determinism",
]

Tensor = torch.Tensor
Array = NDArray[Any]
_Tensors = list[Tensor] | tuple[Tensor, ...]  # what torch._foreach_* take and return

CUBLAS_WORKSPACE_CONFIG: Final = ":4096:8"
"""cuBLAS workspace setting that makes its GEMMs deterministic (one of the two NVIDIA documents)."""
_CUBLAS_DETERMINISTIC: Final = frozenset({":4096:8", ":16:8"})
NONE: Final = "none"  # CPU sentinel of the GPU fingerprint fields (driver_fingerprint.yaml)
_TORCH_DTYPES: Final[Mapping[str, torch.dtype]] = {
    "float32": torch.float32,
    "float64": torch.float64,
}
# The message torch raises when deterministic mode meets an op without a deterministic kernel.
_NONDETERMINISTIC_MARK: Final = "does not have a deterministic implementation"


# --- kernels -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What a kernel may read besides its operands: DROPOUT keep masks (train mode only)."""

    masks: Mapping[str, Tensor]


Kernel = Callable[[list[Tensor], _Ctx], Tensor]
"""A compiled node: operands in IR order (batch axis first) and the call context → output."""
Builder = Callable[[Node], Kernel]


def _matmul(node: Node) -> Kernel:
    return lambda xs, ctx: torch.matmul(xs[0], xs[1])


def _add(node: Node) -> Kernel:  # BIAS_ADD and ADD: a parameter operand broadcasts over the batch
    return lambda xs, ctx: xs[0] + xs[1]


def _mul(node: Node) -> Kernel:
    return lambda xs, ctx: xs[0] * xs[1]


def _unary(fn: Callable[[Tensor], Tensor]) -> Builder:
    return lambda node: lambda xs, ctx: fn(xs[0])


def _gelu(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="none")  # the exact erf form


def _softmax(node: Node) -> Kernel:
    dim = node.attrs.axis + 1
    return lambda xs, ctx: torch.softmax(xs[0], dim)


def _layernorm(node: Node) -> Kernel:
    eps = node.attrs.eps

    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        x = xs[0]
        return F.layer_norm(x, (x.shape[-1],), xs[1], xs[2], eps)

    return run


def _conv2d(node: Node) -> Kernel:
    stride, padding = node.attrs.stride, node.attrs.padding

    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        bias = xs[2] if len(xs) == 3 else None
        return F.conv2d(xs[0], xs[1], bias, stride, padding)

    return run


def _maxpool2d(node: Node) -> Kernel:
    k, s, p = node.attrs.kernel_size, node.attrs.stride, node.attrs.padding
    # Implicit -inf padding and the first maximum in window row-major order, like numpy's argmax.
    return lambda xs, ctx: F.max_pool2d(xs[0], k, s, p)


def _avgpool2d(node: Node) -> Kernel:
    k, s, p = node.attrs.kernel_size, node.attrs.stride, node.attrs.padding
    return lambda xs, ctx: F.avg_pool2d(xs[0], k, s, p, count_include_pad=True)


def _reshape(node: Node) -> Kernel:  # FLATTEN and RESHAPE
    shape = node.shape_out
    return lambda xs, ctx: xs[0].reshape(xs[0].shape[0], *shape)


def _transpose(node: Node) -> Kernel:
    dims = (0, *(k + 1 for k in node.attrs.perm))
    return lambda xs, ctx: xs[0].permute(dims)


def _embedding(node: Node) -> Kernel:
    return lambda xs, ctx: F.embedding(xs[0], xs[1])


def _attention(node: Node) -> Kernel:
    heads, causal = node.attrs.heads, node.attrs.causal

    def split(x: Tensor) -> Tensor:
        b, length, d = x.shape
        return x.reshape(b, length, heads, d // heads).transpose(1, 2)

    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        q, k, v = (split(t) for t in xs)
        # Scale rounded to the compute dtype and applied to the scores, as numpy does.
        scale = float(np.dtype(_np_name(q.dtype)).type(1.0 / math.sqrt(q.shape[-1])))
        s = torch.matmul(q, k.transpose(-2, -1)) * scale
        if causal:
            length = s.shape[-1]
            keep = torch.ones(length, length, dtype=torch.bool, device=s.device).tril()
            s = s.masked_fill(~keep, -math.inf)
        out = torch.matmul(torch.softmax(s, -1), v)
        b, _, length, _ = out.shape
        return out.transpose(1, 2).reshape(b, length, -1)

    return run


def _dropout(node: Node) -> Kernel:
    scale_of = 1.0 / (1.0 - node.attrs.p)
    nid = node.node_id

    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        keep = ctx.masks.get(nid)
        if keep is None:  # eval/infer, or p == 0: identity
            return xs[0]
        x = xs[0]
        scale = float(np.dtype(_np_name(x.dtype)).type(scale_of))
        return torch.where(keep, x * scale, 0.0)

    return run


def _per_sample_mean(elementwise: Tensor) -> Tensor:
    """Each sample's mean over its remaining axes, binary64 ``[B]``."""
    flat = elementwise.reshape(elementwise.shape[0], -1)
    return flat[:, 0] if flat.shape[1] == 1 else flat.mean(dim=1)


def _cross_entropy(node: Node) -> Kernel:
    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        z, labels = xs
        # lse - z[label] in binary64 from the compute-dtype logits (log-softmax is stable).
        if z.dim() == 2:  # one position per sample: no reshapes (each is an autograd node)
            return F.cross_entropy(z.to(torch.float64), labels, reduction="none")
        per_position = F.cross_entropy(
            z.to(torch.float64).reshape(-1, z.shape[-1]), labels.reshape(-1), reduction="none"
        )
        return _per_sample_mean(per_position.reshape(z.shape[0], -1))

    return run


def _bce_logits(node: Node) -> Kernel:
    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        z, t = xs[0].to(torch.float64), xs[1].to(torch.float64)
        elem = torch.clamp_min(z, 0.0) - z * t + torch.log1p(torch.exp(-z.abs()))
        return _per_sample_mean(elem)

    return run


def _mse(node: Node) -> Kernel:
    def run(xs: list[Tensor], ctx: _Ctx) -> Tensor:
        d = xs[0].to(torch.float64) - xs[1].to(torch.float64)
        return _per_sample_mean(d * d)

    return run


KERNELS: Final[Mapping[Op, Builder]] = {
    Op.MATMUL: _matmul,
    Op.BIAS_ADD: _add,
    Op.ADD: _add,
    Op.MUL: _mul,
    Op.RELU: _unary(torch.relu),
    Op.GELU: _unary(_gelu),
    Op.TANH: _unary(torch.tanh),
    Op.SIGMOID: _unary(torch.sigmoid),
    Op.SOFTMAX: _softmax,
    Op.LAYERNORM: _layernorm,
    Op.CONV2D: _conv2d,
    Op.MAXPOOL2D: _maxpool2d,
    Op.AVGPOOL2D: _avgpool2d,
    Op.FLATTEN: _reshape,
    Op.RESHAPE: _reshape,
    Op.TRANSPOSE: _transpose,
    Op.EMBEDDING: _embedding,
    Op.ATTENTION: _attention,
    Op.DROPOUT: _dropout,
    Op.CROSS_ENTROPY: _cross_entropy,
    Op.BCE_LOGITS: _bce_logits,
    Op.MSE: _mse,
}
"""The op table: instruction → builder of its forward kernel (autograd supplies the gradient)."""


def _linear(xs: list[Tensor], ctx: _Ctx) -> Tensor:
    """Fused MATMUL → BIAS_ADD on ``[B, k]`` rows: ``b + x · W`` as one GEMM with ``beta = 1``."""
    return torch.addmm(xs[2], xs[0], xs[1])


def _fusable_linear(ir: ValidatedIR) -> dict[str, str]:
    """BIAS_ADD node → the MATMUL it can absorb (``addmm``), by node id.

    Only when the MATMUL reads a rank-1 per-sample value (``[B, k]`` rows: a plain GEMM) and
    nothing but that BIAS_ADD reads its result (no other node, not an output, not the loss):
    the product is then never needed on its own. The GEMM adds the bias to the finished
    product, the same two roundings as the separate ops (ADR 0012).
    """
    readers: dict[str, int] = {}
    for node in ir.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    kept = set(ir.outputs) | ({ir.loss} if ir.loss else set())
    out: dict[str, str] = {}
    for node in ir.nodes:
        if node.op is not Op.BIAS_ADD:
            continue
        src = ir.values[node.inputs[0]]
        if src.kind != "node":
            continue
        mm = ir.nodes[src.index]
        if (
            mm.op is Op.MATMUL
            and len(ir.shape(mm.inputs[0])) == 1
            and readers.get(mm.node_id) == 1
            and mm.node_id not in kept
        ):
            out[node.node_id] = mm.node_id
    return out


def _np_name(dtype: torch.dtype) -> str:
    return "float64" if dtype == torch.float64 else "float32"


# --- determinism settings ----------------------------------------------------------------------


def configure_determinism(num_threads: int, device: torch.device) -> None:
    """Apply the process-wide settings the torch backend relies on (module docstring).

    They are global to the process, like torch's own switches: every program of the process,
    and any other torch code in it, runs under them. Raises ``BackendContractViolationError``
    (reason ``CUBLAS_WORKSPACE_UNSET``) when a CUDA device is requested, cuBLAS is not
    configured deterministically, and CUDA is already initialised (too late to set it).

    >>> configure_determinism(1, torch.device("cpu"))
    >>> torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    (True, 1)
    """
    if device.type == "cuda":
        value = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        if value not in _CUBLAS_DETERMINISTIC:
            if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # unannotated in torch
                raise BackendContractViolationError(
                    f"CUBLAS_WORKSPACE_CONFIG is {value!r} and CUDA is already initialised; set it "
                    f"to {CUBLAS_WORKSPACE_CONFIG!r} before the process touches CUDA",
                    reason="CUBLAS_WORKSPACE_UNSET",
                    path="$.backend.device",
                    context={"failure_operator": "UML_OS.Backend.LoadDriver"},
                )
            # cuBLAS reads it when its first handle is created, which has not happened yet.
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    torch.use_deterministic_algorithms(True)
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    # The legacy TF32 switches: mixing them with the fp32_precision API makes torch raise.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # Typed as a descriptor in torch's stubs; assigning through the module is the documented API.
    torch.backends.mkldnn.deterministic = True  # type: ignore[assignment]
    torch.set_float32_matmul_precision("highest")


# --- the program -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    """One node (or a fused pair ending in ``node``) bound at compile time."""

    node: Node
    kernel: Kernel
    operands: tuple[int, ...]
    out: int
    nodes: int = 1  # IR nodes this step executes


@dataclass(frozen=True, slots=True)
class _IntCheck:
    """An integer input read as class labels or token ids: its range is checked on the host."""

    input_name: str
    bound: int
    node: Node
    reason: str
    what: str


class TorchProgram:
    """A validated IR compiled for torch (see :class:`~umlos.model.backends.Program`).

    Parameters, gradients and optimizer slots are torch tensors on :attr:`device`. Batches
    arrive as host arrays; CPU float inputs already in the compute dtype are used without a copy.
    """

    def __init__(self, ir: ValidatedIR, dtype: ComputeDtype, device: torch.device) -> None:
        if dtype not in _TORCH_DTYPES:
            raise ContractViolationError(f"unsupported compute dtype {dtype!r}", path="$.dtype")
        if ir.param_dtype is not None and ir.param_dtype != dtype:
            raise ContractViolationError(
                f"the IR's parameters are {ir.param_dtype}, the program computes in {dtype}",
                path="$.parameters[0].dtype",
            )
        self._ir = ir
        self._dtype: ComputeDtype = dtype
        self._np_dtype = np.dtype(dtype)
        self._torch_dtype = _TORCH_DTYPES[dtype]
        self._device = device
        self._params = ir.parameter_names
        self._shapes = {name: ir.shape(name) for name in self._params}
        self._inputs = ir.ir.inputs
        # Every value gets a slot in a flat environment list: inputs, parameters, then nodes.
        names = [i.name for i in self._inputs] + list(self._params)
        names += [n.node_id for n in ir.nodes]
        self._slot = {name: k for k, name in enumerate(names)}
        self._n_slots = len(names)
        steps: list[_Step] = []
        checks: list[_IntCheck] = []
        fused = _fusable_linear(ir)
        for node in ir.nodes:
            builder = KERNELS.get(node.op)
            if builder is None:  # pragma: no cover - the table covers the ISA
                raise PrimitiveUnsupportedError(
                    f"no torch kernel for {node.op}",
                    path=f"$.nodes[{node.index}].instr",
                    context={"node_id": node.node_id, "instr": node.op.value},
                )
            out = self._slot[node.node_id]
            if node.node_id in fused.values():
                continue  # computed by the BIAS_ADD that reads it
            if node.node_id in fused:
                mm = ir.node(fused[node.node_id])
                ins = (mm.inputs[0], mm.inputs[1], node.inputs[1])
                operands = tuple(self._slot[name] for name in ins)
                steps.append(_Step(node, _linear, operands, out, nodes=2))
            else:
                operands = tuple(self._slot[name] for name in node.inputs)
                steps.append(_Step(node, builder(node), operands, out))
            if node.op is Op.CROSS_ENTROPY:
                classes = ir.shape(node.inputs[0])[-1]
                checks.append(
                    _IntCheck(node.inputs[1], classes, node, "LABEL_OUT_OF_RANGE", "class labels")
                )
            elif node.op is Op.EMBEDDING:
                rows = ir.shape(node.inputs[1])[0]
                checks.append(_IntCheck(node.inputs[0], rows, node, "ID_OUT_OF_RANGE", "token ids"))
        self._steps_all = tuple(steps)
        self._steps_unlabelled = tuple(s for s in steps if not s.node.needs_labels)
        self._checks = tuple(checks)
        self._dropouts = tuple(n for n in ir.nodes if n.op is Op.DROPOUT and n.attrs.p > 0.0)
        self._loss_slot = self._slot[ir.loss] if ir.loss is not None else None
        self._seeds: dict[int, Tensor] = {}
        self._norm_cache: tuple[list[weakref.ref[Tensor]], list[int], list[float]] | None = None
        self._f64_buffers: dict[tuple[tuple[tuple[int, ...], torch.device], ...], list[Tensor]] = {}

    @property
    def ir(self) -> ValidatedIR:
        """The IR this program runs."""
        return self._ir

    @property
    def dtype(self) -> ComputeDtype:
        """The compute dtype."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """The torch device holding parameters, gradients and optimizer slots."""
        return self._device

    # -- transfers --

    def to_device(self, arrays: Mapping[str, Array]) -> dict[str, Any]:
        """New device tensors in the compute dtype (copies: the caller's arrays stay untouched)."""
        return {
            k: torch.tensor(np.asarray(v), dtype=self._torch_dtype, device=self._device)
            for k, v in arrays.items()
        }

    def to_host(self, arrays: Mapping[str, Any]) -> dict[str, Array]:
        """New host arrays (never views of device memory, which later updates overwrite)."""
        return {k: np.array(v.detach().cpu().numpy(), copy=True) for k, v in arrays.items()}

    # -- passes --

    def loss_and_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, Array],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Forward (train mode) and backward; gradients of the batch-mean loss."""
        loss_slot = self._require_loss()
        feeds, bsz = self._feeds(batch, labels_required=True)
        masks, rng_next = self._masks(bsz, "train", rng, with_labels=True)
        leaves = self._leaves(params)
        try:  # (a try block costs nothing until it catches; a context manager would)
            env = self._run(leaves, feeds, _Ctx(masks), self._steps_all)
            per_sample = env[loss_slot]
            grads = _grad(per_sample, self._seed(bsz), [leaves[name] for name in self._params])
        except RuntimeError as exc:
            if _NONDETERMINISTIC_MARK not in str(exc):
                raise
            raise _nondeterministic(exc) from exc
        out = {
            name: g if g is not None else torch.zeros_like(leaves[name])
            for name, g in zip(self._params, grads, strict=True)
        }
        # The train step asks for the gradient norm next (ADR 0008), so the per-tensor sums of
        # squares are computed now and cross to the host with the losses: one transfer (one
        # device sync on CUDA) per step instead of two. sum_of_squares serves them from here.
        # (Gradients carry no graph, so no autograd bookkeeping happens below.)
        values = list(out.values())
        host = _host_f64(torch.cat((per_sample.detach(), _norms(values))))
        norms = host[bsz:]
        # Weak references: the cache must not keep a step's gradients alive into the next one.
        self._norm_cache = (
            [weakref.ref(v) for v in values],
            [v._version for v in values],
            (norms * norms).tolist(),
        )
        return StepResult(host[:bsz], out, rng_next)

    def per_sample_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, Array],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Each sample's own gradient (seed 1, not 1/B), stacked ``[B, *shape]``.

        ``torch.func.vmap`` over ``torch.func.grad`` of a one-sample forward pass: each sample
        runs alone (batch of one), with its slice of dropout masks drawn once for the batch.
        """
        loss_slot = self._require_loss()
        feeds, bsz = self._feeds(batch, labels_required=True)
        masks, rng_next = self._masks(bsz, "train", rng, with_labels=True)
        detached = {name: t.detach() for name, t in self._checked_params(params).items()}

        def sample_loss(
            p: dict[str, Tensor], f: dict[str, Tensor], m: dict[str, Tensor]
        ) -> tuple[Tensor, Tensor]:
            one = {k: v.unsqueeze(0) for k, v in f.items()}
            env = self._run(p, one, _Ctx({k: v.unsqueeze(0) for k, v in m.items()}), None)
            value = env[loss_slot][0]
            return value, value.detach()

        fn = torch.func.vmap(
            torch.func.grad(sample_loss, has_aux=True), in_dims=(None, 0, 0), randomness="error"
        )
        with _determinism_guard():
            grads, losses = fn(detached, feeds, masks)
        out = {name: grads[name].to(self._torch_dtype) for name in self._params}
        return StepResult(_host_f64(losses), out, rng_next)

    def forward(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, Array],
        *,
        mode: ExecMode = "eval",
        rng: PhiloxStream | None = None,
    ) -> ForwardResult:
        """Forward only; loss-head nodes run when labels are fed and the IR has a loss."""
        with_labels = self._ir.labels is not None and self._ir.labels in batch
        feeds, bsz = self._feeds(batch, labels_required=False)
        masks, rng_next = self._masks(bsz, mode, rng, with_labels=with_labels)
        steps = self._steps_all if with_labels else self._steps_unlabelled
        with torch.no_grad(), _determinism_guard():
            env = self._run(self._checked_params(params), feeds, _Ctx(masks), steps)
        outputs = {
            name: np.ascontiguousarray(env[self._slot[name]].cpu().numpy())
            for name in self._ir.outputs
        }
        per_sample = None
        if self._loss_slot is not None and with_labels:
            per_sample = _host_f64(env[self._loss_slot])
        return ForwardResult(outputs, per_sample, sum(st.nodes for st in steps), rng_next)

    # -- optimizer and clipping --

    def apply_update(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        opt_state: Mapping[str, Any],
        hyper: OptimizerStep,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """SGD or AdamW in ADR 0008's operation order, in place, all parameters per operation.

        Every operation is one rounding in the compute dtype, with its scalar rounded to the
        compute dtype first (as numpy does): ``_foreach_*`` calls without ``alpha`` (which
        torch evaluates as a fused multiply-add).
        """
        t = self._np_dtype.type

        def c(value: float) -> float:  # a scalar as the compute dtype holds it
            return float(t(value))

        new_params = dict(params)
        state = dict(opt_state)
        theta: list[Tensor] = [new_params[name] for name in self._params]
        g: _Tensors = [grads[name] for name in self._params]
        if not theta:
            return new_params, state
        with torch.no_grad():
            if hyper.kind == "sgd":
                if hyper.weight_decay != 0.0:
                    g = torch._foreach_add(
                        list(g), torch._foreach_mul(theta, c(hyper.weight_decay))
                    )
                step: _Tensors = g
                if hyper.momentum > 0.0:
                    mu = c(hyper.momentum)
                    keys = [f"{name}/momentum_buffer" for name in self._params]
                    buf: _Tensors
                    if hyper.opt_step == 1:  # buf = g at the first update (schema rule)
                        buf = [x.clone() for x in g]
                    else:
                        buf = [state[k] for k in keys]
                        torch._foreach_mul_(buf, mu)
                        torch._foreach_add_(buf, g)
                    state.update(zip(keys, buf, strict=True))
                    step = (
                        torch._foreach_add(g, torch._foreach_mul(buf, mu))
                        if hyper.nesterov
                        else buf
                    )
                torch._foreach_sub_(theta, torch._foreach_mul(step, c(hyper.lr)))
            else:
                k = hyper.opt_step
                b1, b2 = hyper.beta1, hyper.beta2
                bc1, bc2 = c(1.0 - b1**k), c(1.0 - b2**k)  # binary64, then cast
                m = [state[f"{name}/exp_avg"] for name in self._params]
                v = [state[f"{name}/exp_avg_sq"] for name in self._params]
                torch._foreach_mul_(m, c(b1))
                torch._foreach_add_(m, torch._foreach_mul(g, c(1.0 - b1)))
                torch._foreach_mul_(v, c(b2))
                gg = torch._foreach_mul(g, c(1.0 - b2))
                torch._foreach_mul_(gg, g)
                torch._foreach_add_(v, gg)
                torch._foreach_sub_(
                    theta, torch._foreach_mul(theta, c(hyper.lr * hyper.weight_decay))
                )
                m_hat = torch._foreach_div(m, bc1)
                den = torch._foreach_div(v, bc2)
                self._sqrt_(den)
                torch._foreach_add_(den, c(hyper.eps))
                # θ + (−lr·m̂)/den: addcdiv evaluates value·t1, then /t2, then +self, each
                # rounded (a division cannot fuse into a multiply-add), which is numpy's
                # θ − (lr·m̂)/den bit for bit. (addcmul, by contrast, does fuse: not used.)
                torch._foreach_addcdiv_(theta, m_hat, den, value=-c(hyper.lr))
        return new_params, state

    def sum_of_squares(self, tensors: Mapping[str, Any]) -> list[float]:
        """Per tensor, in mapping order: ``Σ x²`` in binary64, with one host transfer.

        One ``_foreach_norm`` call computes every tensor's 2-norm in binary64 on the device
        (elements widened first, so float32 squares are exact); the norms cross to the host
        together and are squared there. The result follows torch's reduction order
        (deterministic for a fixed build, device and thread count), not
        :func:`~umlos.numerics.fixed_sum_of_squares`: it agrees with the numpy backend to about
        1e-15 relative (sqrt then square adds at most 2 ulp). For the gradients that
        :meth:`loss_and_grads` just returned, untouched since (same tensors, same version
        counters), the values it computed alongside the losses are returned.
        """
        values = list(tensors.values())
        if not values:
            return []
        cached = self._norm_cache
        if (
            cached is not None
            and len(cached[0]) == len(values)
            and all(ref() is v for ref, v in zip(cached[0], values, strict=True))
            and [v._version for v in values] == cached[1]
        ):
            return list(cached[2])
        with torch.no_grad():
            norms = _host_f64(_norms([v.detach() for v in values]))
        out: list[float] = (norms * norms).tolist()
        return out

    def _sqrt_(self, values: _Tensors) -> None:
        """Square roots in place, correctly rounded for float32.

        torch's vectorised CPU ``sqrt`` is faithful, not IEEE (one value in ten is one ulp
        off in float32, one in a hundred in binary64). float32 values take the root in binary64
        and round once: a faithful binary64 root rounded to float32 is the correctly rounded
        float32 root (53 ≥ 2·24 + 3 bits), so the float32 update equals numpy's bit for bit.
        binary64 roots stay torch's (within one ulp of numpy's; ADR 0012).
        """
        if all(v.dtype == torch.float64 for v in values):
            torch._foreach_sqrt_(values)
            return
        wide = self._f64_like(list(values))
        torch._foreach_copy_(wide, values)
        torch._foreach_sqrt_(wide)
        torch._foreach_copy_(values, wide)

    def _f64_like(self, values: list[Tensor]) -> list[Tensor]:
        """binary64 scratch tensors shaped like ``values``, allocated once per set of shapes."""
        key = tuple((tuple(v.shape), v.device) for v in values)
        buffers = self._f64_buffers.get(key)
        if buffers is None:
            buffers = [torch.empty_like(v, dtype=torch.float64) for v in values]
            self._f64_buffers[key] = buffers
        return buffers

    def scale_(self, tensors: Mapping[str, Any], factor: float) -> dict[str, Any]:
        """Multiply in place by ``factor`` cast to the compute dtype."""
        out = dict(tensors)
        if out:
            with torch.no_grad():
                torch._foreach_mul_(list(out.values()), float(self._np_dtype.type(factor)))
        return out

    # -- internals --

    def _require_loss(self) -> int:
        if self._loss_slot is None:
            raise ContractViolationError("the IR declares no loss node", path="$.loss")
        return self._loss_slot

    def _seed(self, bsz: int) -> Tensor:
        """``dL/dloss_i = 1/B`` rounded to the compute dtype, as a binary64 tensor (the loss's)."""
        seed = self._seeds.get(bsz)
        if seed is None:
            value = float(self._np_dtype.type(1.0 / bsz))
            seed = torch.full((bsz,), value, dtype=torch.float64, device=self._device)
            self._seeds[bsz] = seed
        return seed

    def _checked_params(self, params: Mapping[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name in self._params:
            try:
                p = params[name]
            except KeyError:
                raise ContractViolationError(
                    f"parameter {name!r} is missing", path=f"$.params.{name}"
                ) from None
            if not isinstance(p, torch.Tensor) or tuple(p.shape) != self._shapes[name]:
                got = list(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ContractViolationError(
                    f"parameter {name!r} is {got}, expected a tensor of shape "
                    f"{list(self._shapes[name])}",
                    path=f"$.params.{name}",
                )
            out[name] = p
        return out

    def _leaves(self, params: Mapping[str, Any]) -> dict[str, Tensor]:
        """The parameters as autograd leaves (flagged in place: they are the program's tensors)."""
        out = self._checked_params(params)
        for p in out.values():
            if not p.requires_grad:
                p.requires_grad_(True)
        return out

    def _feeds(
        self, batch: Mapping[str, Array], *, labels_required: bool
    ) -> tuple[dict[str, Tensor], int]:
        """Check a host batch (:func:`check_batch`, as every backend does) and move it to the device."""
        host, bsz = check_batch(
            self._ir, batch, float_dtype=self._np_dtype, labels_required=labels_required
        )
        # Label and id ranges are checked here, on the host, so a step needs no device sync.
        for check in self._checks:
            values = host.get(check.input_name)
            if values is None:  # labels not fed: the loss head does not run
                continue
            low, high = values.min(), values.max()
            if low < 0 or high >= check.bound:
                raise ContractViolationError(
                    f"{check.what} must lie in [0, {check.bound}), got [{low}, {high}]",
                    reason=check.reason,
                    path=f"$.batch.{check.input_name}",
                )
        return {k: self._tensor(v) for k, v in host.items()}, bsz

    def _tensor(self, arr: Array) -> Tensor:
        if not arr.flags.writeable:  # torch.from_numpy shares memory and wants it writable
            arr = arr.copy()
        t = torch.from_numpy(arr)
        return t if self._device.type == "cpu" else t.to(self._device)

    def _masks(
        self, bsz: int, mode: ExecMode, rng: PhiloxStream | None, *, with_labels: bool
    ) -> tuple[dict[str, Tensor], PhiloxStream | None]:
        """Keep masks of the DROPOUT nodes that run, drawn in execution order on the host."""
        masks: dict[str, Tensor] = {}
        if mode != "train":
            return masks, rng
        for node in self._dropouts:
            if node.needs_labels and not with_labels:
                continue
            if rng is None:
                raise ContractViolationError(
                    "train mode with DROPOUT needs the dropout stream", path="$.rng"
                )
            w, rng = words(rng, bsz * math.prod(node.shape_out))
            threshold = np.uint32(math.floor(node.attrs.p * 2.0**32))
            keep = (w >= threshold).reshape(bsz, *node.shape_out)
            masks[node.node_id] = self._tensor(keep)
        return masks, rng

    def _run(
        self,
        params: Mapping[str, Tensor],
        feeds: Mapping[str, Tensor],
        ctx: _Ctx,
        steps: Sequence[_Step] | None,
    ) -> list[Tensor]:
        env: list[Any] = [None] * self._n_slots
        slot = self._slot
        for name, value in feeds.items():
            env[slot[name]] = value
        for name in self._params:
            env[slot[name]] = params[name]
        for step in self._steps_all if steps is None else steps:
            env[step.out] = step.kernel([env[i] for i in step.operands], ctx)
        return env


# torch.autograd.grad validates and re-wraps its arguments (shape checks through the symbolic
# shape machinery, ~40 µs a call on a small CPU) before it calls this engine entry point; our
# seed is built to the loss's exact shape and dtype, so the step calls the entry point directly.
# torch is pinned exactly (pyproject), and the public call is the fallback if it ever moves.
_ENGINE_RUN_BACKWARD: Final[Callable[..., tuple[Tensor | None, ...]] | None] = getattr(
    torch.autograd.graph, "_engine_run_backward", None
)


def _grad(output: Tensor, seed: Tensor, inputs: list[Tensor]) -> tuple[Tensor | None, ...]:
    """``d(seed · output)/d inputs``; ``None`` for an input the output does not depend on."""
    if _ENGINE_RUN_BACKWARD is not None:
        # (outputs, grad_outputs, keep_graph, create_graph, inputs, allow_unused, accumulate)
        return _ENGINE_RUN_BACKWARD((output,), (seed,), False, False, tuple(inputs), True, False)
    return torch.autograd.grad(output, inputs, grad_outputs=seed, allow_unused=True)


def _norms(values: list[Tensor]) -> Tensor:
    """Every tensor's 2-norm, computed in binary64, as one device vector."""
    return torch.stack(torch._foreach_norm(values, 2, dtype=torch.float64))


def _host_f64(t: Tensor) -> NDArray[np.float64]:
    """A new binary64 host array (loss heads already give binary64; ``.to`` is skipped on CPU)."""
    if t.device.type != "cpu" or t.dtype != torch.float64:
        t = t.to("cpu", torch.float64)
    out: NDArray[np.float64] = t.detach().numpy().copy()
    return out


def _nondeterministic(exc: RuntimeError) -> BackendContractViolationError:
    """torch's "no deterministic implementation" error as the catalogue error."""
    return BackendContractViolationError(
        f"torch has no deterministic kernel here: {exc}",
        reason="NONDETERMINISTIC_KERNEL",
        path="$.backend",
        context={"failure_operator": "UML_OS.Model.Forward"},
    )


@contextlib.contextmanager
def _determinism_guard() -> Iterator[None]:
    """:func:`_nondeterministic` for a block (the passes that are not per-step hot)."""
    try:
        yield
    except RuntimeError as exc:
        if _NONDETERMINISTIC_MARK not in str(exc):
            raise
        raise _nondeterministic(exc) from exc


# --- the backend -------------------------------------------------------------------------------


class TorchBackend:
    """The torch backend on ``device`` (``cpu`` or ``cuda[:index]``) with ``num_threads``.

    Creating one applies :func:`configure_determinism` to the process.

    >>> TorchBackend().fingerprint().gpu_model
    'none'
    """

    name = "torch"

    def __init__(self, device: str = "cpu", num_threads: int = 1) -> None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ContractViolationError(
                f"num_threads must be a positive int, got {num_threads!r}",
                path="$.backend.num_threads",
            )
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ContractViolationError(
                f"unknown torch device {device!r}", path="$.backend.device"
            ) from exc
        if dev.type not in ("cpu", "cuda"):
            raise ContractViolationError(
                f"device must be cpu or cuda, got {device!r}", path="$.backend.device"
            )
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendContractViolationError(
                    "device cuda requested but torch sees no CUDA device",
                    reason="BACKEND_UNAVAILABLE",
                    path="$.backend.device",
                )
            index: int | None = dev.index  # None for a bare "cuda" (torch's stubs say int)
            if index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
        configure_determinism(num_threads, dev)
        self.device = dev
        self.num_threads = num_threads

    def compile(self, ir: ValidatedIR, dtype: ComputeDtype) -> TorchProgram:
        """Compile ``ir`` for ``dtype``: one kernel closure per node, bound once."""
        return TorchProgram(ir, dtype, self.device)

    def fingerprint(self) -> DriverRuntimeFingerprint:
        """Versions, build and determinism switches; the CPU sentinels when not on CUDA."""
        config = torch.__config__.show()
        cuda = self.device.type == "cuda"
        flags = {
            "torch.version": str(torch.__version__),  # a str subclass; records want str
            "python.version": platform.python_version(),
            "cpu.machine": platform.machine() or "unknown",
            "cpu.capability": torch.backends.cpu.get_cpu_capability(),
            "device": str(self.device),
            "torch.num_threads": str(torch.get_num_threads()),
            "torch.deterministic_algorithms": _b(torch.are_deterministic_algorithms_enabled()),
            "torch.deterministic_warn_only": _b(
                torch.is_deterministic_algorithms_warn_only_enabled()
            ),
            "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda.matmul.allow_tf32": _b(torch.backends.cuda.matmul.allow_tf32),
            "cudnn.allow_tf32": _b(torch.backends.cudnn.allow_tf32),
            "cudnn.benchmark": _b(torch.backends.cudnn.benchmark),
            "cudnn.deterministic": _b(torch.backends.cudnn.deterministic),
            "mkldnn.enabled": _b(torch.backends.mkldnn.enabled),
            "mkldnn.deterministic": _b(torch.backends.mkldnn.deterministic),
            "blas.info": _config_value(config, "BLAS_INFO"),
            "env.CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "unset"),
        }
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR"):
            flags[f"env.{var}"] = os.environ.get(var, "unset")
        gpu_model, sm_count = NONE, 0
        driver = cuda_version = cudnn = cublas = nccl = NONE
        if cuda:
            props = torch.cuda.get_device_properties(self.device)
            gpu_model, sm_count = props.name, int(props.multi_processor_count)
            flags["cuda.capability"] = f"{props.major}.{props.minor}"
            driver = _driver_version()
            cuda_version = torch.version.cuda or "unknown"
            cudnn = str(torch.backends.cudnn.version() or "unknown")  # type: ignore[no-untyped-call]
            cublas = _cublas_version()
            nccl = _nccl_version()
        compiler = re.search(r"^\s*-\s*(GCC|Clang|MSVC|clang)\s+(\S+)", config, re.MULTILINE)
        cxx_flags = _config_value(config, "CXX_FLAGS", "")
        return DriverRuntimeFingerprint(
            gpu_model=gpu_model,
            gpu_sm_count=sm_count,
            driver_version=driver,
            cuda_version=cuda_version,
            cudnn_version=cudnn,
            cublas_version=cublas,
            nccl_version=nccl,
            os_kernel_version=platform.release() or "unknown",
            compiler_id=f"{compiler.group(1)} {compiler.group(2)}" if compiler else NONE,
            compiler_flags_hash=digest(sorted(set(cxx_flags.split()))),
            backend_adapter_version=f"umlos {umlos.__version__} torch {torch.__version__}",
            backend_build_id=torch.version.git_version,
            primitive_allowlist_used_hash=digest(sorted(op.value for op in KERNELS)),
            deterministic_kernels_enabled=torch.are_deterministic_algorithms_enabled()
            and not torch.is_deterministic_algorithms_warn_only_enabled(),
            nondeterministic_atomics_used=False,
            runtime_flags=dict(sorted(flags.items())),
            accumulation_policy="FIXED_DTYPE_FIXED_ORDER",
        )


def _b(value: object) -> str:
    return "true" if value else "false"


def _config_value(config: str, key: str, default: str = "unknown") -> str:
    """One ``KEY=value`` of torch's build settings line (values end at ``, NEXT_KEY=``)."""
    match = re.search(rf"\b{key}=(.*?)(?:, [A-Z_]+=|$)", config, re.MULTILINE)
    return match.group(1).strip() if match else default


def _driver_version() -> str:
    """The NVIDIA driver version from NVML, else the CUDA driver API version, else unknown."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() == 0:
            buf = ctypes.create_string_buffer(96)
            ok = nvml.nvmlSystemGetDriverVersion(buf, ctypes.c_uint(96)) == 0
            nvml.nvmlShutdown()
            if ok:
                return buf.value.decode("ascii", "replace")
    except OSError:
        pass
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return f"cuda-driver-api-{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        pass
    return "unknown"


def _cublas_version() -> str:
    """cuBLAS as installed with torch (the nvidia-cublas wheel), else the toolkit torch names."""
    for dist in ("nvidia-cublas-cu13", "nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"bundled-cuda-{torch.version.cuda}"


def _nccl_version() -> str:
    try:
        version: tuple[int, ...] = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
    except (AttributeError, RuntimeError):  # a build without NCCL
        return "unknown"
    return ".".join(str(x) for x in version)
