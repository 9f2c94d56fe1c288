"""The numpy reference backend: one op table of hand-written forward and gradient kernels.

``OPS`` maps every :class:`~umlos.model.ir.Op` to a ``(forward, backward)`` pair; the executor
runs the nodes in execution order, then the gradient kernels in reverse order. Semantics are in
``docs/formats/model-ir.md``; the decisions (loss precision, accumulation order, dropout draws)
in ADR 0011. Summary of the numerics:

* Activations, gradients and parameters stay in the compute dtype (float32 or float64); matmul
  and convolution inner products use BLAS in that dtype.
* Gradient contributions to one value are summed in binary64 in (consumer position, operand
  index) order and cast once (D12). Batch reductions of parameter gradients outside BLAS
  (biases, LayerNorm affine, embeddings, broadcast ADD/MUL operands) accumulate in binary64 and
  cast once (kernel §4.4).
* Per-sample losses are computed in binary64 from the compute-dtype predictions; a sample's
  loss over several positions or elements is :func:`~umlos.numerics.fixed_sum` of them divided
  by their count (vectorised over samples, bit-identical to calling ``fixed_sum`` per row).
* Results are deterministic for a fixed numpy/BLAS build, CPU and BLAS thread count. This
  module sets no thread counts: pin ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
  ``MKL_NUM_THREADS`` (1 for golden runs) before numpy is imported; the fingerprint records them.

>>> import numpy as np
>>> from umlos._generated.records import LinearPresetParams, ModelPresetLinear
>>> from umlos.model import expand_preset, init_parameters, validate_ir
>>> spec = ModelPresetLinear(preset_params=LinearPresetParams(in_features=4, out_features=3))
>>> ir = validate_ir(expand_preset(spec, task_type="multiclass", dtype="float64"))
>>> prog = NumpyBackend().compile(ir, "float64")
>>> params = prog.to_device(init_parameters(ir, bytes(32)))
>>> batch = {"x": np.ones((2, 4)), "y": np.array([0, 2])}
>>> res = prog.loss_and_grads(params, batch)
>>> res.per_sample_loss.shape, list(res.grads)
((2,), ['head.weight', 'head.bias'])
"""

from __future__ import annotations

import functools
import math
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy.special import erf

import umlos
from umlos._generated.records import DriverRuntimeFingerprint
from umlos.codec import digest
from umlos.errors import ContractViolationError, PrimitiveUnsupportedError
from umlos.model.backends.base import (
    Backend,
    ComputeDtype,
    ExecMode,
    ForwardResult,
    OptimizerStep,
    Program,
    StepResult,
    check_batch,
)
from umlos.model.ir import Node, Op, ValidatedIR
from umlos.numerics import PhiloxStream, fixed_sum_of_squares, words
from umlos.numerics.policy import REDUCTION_CHUNK

__all__ = ["OPS", "Bwd", "Ctx", "NumpyBackend", "NumpyProgram", "row_fixed_sums"]

Array = NDArray[Any]
F64 = NDArray[np.float64]

NONE: Final = "none"  # CPU sentinel of the GPU fingerprint fields (driver_fingerprint.yaml)
THREAD_ENV: Final = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_SQRT_HALF: Final = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a kernel may read besides its operands."""

    dtype: np.dtype[Any]
    batch: int
    masks: Mapping[str, NDArray[np.bool_]]  # DROPOUT keep masks by node id (train mode only)


@dataclass(frozen=True, slots=True)
class Bwd:
    """What a gradient kernel gets besides ``ctx`` and the node."""

    xs: list[Array]  # operands as in the forward pass
    out: Array  # the forward output
    saved: Any  # what the forward kernel saved
    g: Array  # gradient of the output (compute dtype; [B] for loss heads)
    need: tuple[bool, ...]  # which operands need a gradient (others may be None)


Forward = Callable[[Ctx, Node, list[Array]], tuple[Array, Any]]
Backward = Callable[[Ctx, Node, Bwd], list[Array | None]]


# --- shared helpers ----------------------------------------------------------------------------


def _reduce_to(g: Array, like: Array) -> Array:
    """Sum ``g`` over its leading axes down to ``like``'s shape, in binary64, cast once."""
    if g.shape == like.shape:
        return g
    lead = g.ndim - like.ndim
    flat = g.reshape(-1, *like.shape) if lead else g
    out: Array = flat.sum(axis=0, dtype=np.float64).astype(g.dtype)
    return out


def row_fixed_sums(a: F64) -> F64:
    """Per row of ``a`` ``[B, n]`` (binary64): :func:`~umlos.numerics.fixed_sum` of the row.

    The same chunked compensated procedure (``docs/numerics.md``), vectorised across rows, so
    each result is bit-identical to ``fixed_sum(a[i])``.

    >>> import numpy as np
    >>> row_fixed_sums(np.array([[1.0, 1e100, 1.0, -1e100], [0.5, 0.25, 0.0, 0.0]])).tolist()
    [2.0, 0.75]
    """
    rows, n = a.shape
    big_s = np.zeros(rows, np.float64)
    big_c = np.zeros(rows, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, REDUCTION_CHUNK):
            s = np.zeros(rows, np.float64)
            c = np.zeros(rows, np.float64)
            for j in range(start, min(start + REDUCTION_CHUNK, n)):
                s, c = _two_sum_step(s, c, a[:, j])
            big_s, big_c = _two_sum_step(big_s, big_c, s)
            big_c = big_c + c
        return np.where(np.isfinite(big_s), big_s + big_c, big_s)


def _two_sum_step(s: F64, c: F64, x: F64) -> tuple[F64, F64]:
    t = s + x
    z = t - s
    return t, c + ((s - (t - z)) + (x - z))


def _per_sample_mean(elementwise: F64) -> F64:
    """Each sample's mean over its elements: ``fixed_sum / count`` in binary64."""
    flat = elementwise.reshape(elementwise.shape[0], -1)
    if flat.shape[1] == 1:
        return flat[:, 0] + 0.0  # fixed_sum of one value is the value (and -0.0 becomes +0.0)
    return row_fixed_sums(flat) / float(flat.shape[1])


def _per_sample_coef(g: Array, count: int, ndim: int) -> Array:
    """The loss-head seed ``g`` ``[B]`` divided by the element count, shaped to broadcast."""
    coef: Array = g / g.dtype.type(count)
    return coef.reshape(coef.shape[0], *([1] * (ndim - 1)))


def _stable_sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))
    out: Array = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
    return out


def _softmax(x: Array, axis: int) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out: Array = e / e.sum(axis=axis, keepdims=True)
    return out


# --- elementwise and dense kernels ---------------------------------------------------------------


def _matmul_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x, w = xs
    out = x.reshape(-1, w.shape[0]) @ w
    return out.reshape(*x.shape[:-1], w.shape[1]), None


def _matmul_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    x, w = b.xs
    g2 = b.g.reshape(-1, w.shape[1])
    dx = (g2 @ w.T).reshape(x.shape) if b.need[0] else None
    dw = x.reshape(-1, w.shape[0]).T @ g2 if b.need[1] else None
    return [dx, dw]


def _bias_add_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return xs[0] + xs[1], None


def _bias_add_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [b.g if b.need[0] else None, _reduce_to(b.g, b.xs[1]) if b.need[1] else None]


def _add_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return xs[0] + xs[1], None


def _add_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [_reduce_to(b.g, x) if n else None for x, n in zip(b.xs, b.need, strict=True)]


def _mul_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return xs[0] * xs[1], None


def _mul_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    x, y = b.xs
    return [
        _reduce_to(b.g * y, x) if b.need[0] else None,
        _reduce_to(b.g * x, y) if b.need[1] else None,
    ]


def _relu_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return np.maximum(xs[0], 0), None


def _relu_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [np.where(b.xs[0] > 0, b.g, 0)]


def _gelu_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x = xs[0]
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    return x * cdf, cdf


def _gelu_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    x = b.xs[0]
    pdf = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return [b.g * (b.saved + x * pdf)]


def _tanh_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return np.tanh(xs[0]), None


def _tanh_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [b.g * (1.0 - b.out * b.out)]


def _sigmoid_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return _stable_sigmoid(xs[0]), None


def _sigmoid_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [b.g * b.out * (1.0 - b.out)]


def _softmax_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return _softmax(xs[0], node.attrs.axis + 1), None


def _softmax_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    axis = node.attrs.axis + 1
    return [b.out * (b.g - (b.g * b.out).sum(axis=axis, keepdims=True))]


def _layernorm_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x, gamma, beta = xs
    xc = x - x.mean(axis=-1, keepdims=True)
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + x.dtype.type(node.attrs.eps))
    xhat = xc * rstd
    return xhat * gamma + beta, (xhat, rstd)


def _layernorm_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    _, gamma, beta = b.xs
    xhat, rstd = b.saved
    dx = None
    if b.need[0]:
        dxhat = b.g * gamma
        dx = rstd * (
            dxhat
            - dxhat.mean(axis=-1, keepdims=True)
            - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
        )
    dgamma = _reduce_to(b.g * xhat, gamma) if b.need[1] else None
    dbeta = _reduce_to(b.g, beta) if b.need[2] else None
    return [dx, dgamma, dbeta]


# --- image kernels -------------------------------------------------------------------------------


def _windows(xp: Array, node: Node, out_hw: tuple[int, int]) -> Array:
    """``[B, C, Ho, Wo, kh, kw]`` strided view of the padded input's windows."""
    (sh, sw), (ho, wo) = node.attrs.stride, out_hw
    v = sliding_window_view(xp, node.attrs.kernel_size, axis=(2, 3))
    return v[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw]


def _pad(x: Array, node: Node, value: float) -> Array:
    ph, pw = node.attrs.padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _scatter_windows(d6: Array, node: Node, x_shape: tuple[int, ...]) -> Array:
    """col2im: add ``d6`` ``[B, C, kh, kw, Ho, Wo]`` back onto the padded input, then crop.

    One pass per kernel position (not per pixel); overlapping windows are added in kernel
    row-major order, which fixes the summation order.
    """
    b, c, h, w = x_shape
    (ph, pw), (sh, sw) = node.attrs.padding, node.attrs.stride
    kh, kw = node.attrs.kernel_size
    ho, wo = d6.shape[4], d6.shape[5]
    dxp = np.zeros((b, c, h + 2 * ph, w + 2 * pw), d6.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += d6[
                :, :, i, j
            ]
    return dxp[:, :, ph : ph + h, pw : pw + w]


def _conv_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x, w = xs[0], xs[1]
    bsz = x.shape[0]
    o, ho, wo = node.shape_out
    cols = _windows(_pad(x, node, 0.0), node, (ho, wo))  # [B, C, Ho, Wo, kh, kw]
    cols2 = cols.transpose(0, 2, 3, 1, 4, 5).reshape(bsz * ho * wo, -1)
    wm = w.reshape(o, -1)
    out = (cols2 @ wm.T).reshape(bsz, ho, wo, o).transpose(0, 3, 1, 2)
    if len(xs) == 3:
        out = out + xs[2][:, None, None]
    return np.ascontiguousarray(out), cols2


def _conv_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    x, w = b.xs[0], b.xs[1]
    o, ho, wo = node.shape_out
    g2 = b.g.transpose(0, 2, 3, 1).reshape(-1, o)
    grads: list[Array | None] = [None] * len(b.xs)
    if b.need[0]:
        c = x.shape[1]
        kh, kw = node.attrs.kernel_size
        dcols = (g2 @ w.reshape(o, -1)).reshape(x.shape[0], ho, wo, c, kh, kw)
        grads[0] = _scatter_windows(dcols.transpose(0, 3, 4, 5, 1, 2), node, x.shape)
    if b.need[1]:
        grads[1] = (g2.T @ b.saved).reshape(w.shape)
    if len(b.xs) == 3 and b.need[2]:
        grads[2] = g2.sum(axis=0, dtype=np.float64).astype(b.g.dtype)
    return grads


def _maxpool_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x = xs[0]
    c, ho, wo = node.shape_out
    win = _windows(_pad(x, node, -np.inf), node, (ho, wo)).reshape(x.shape[0], c, ho, wo, -1)
    idx = win.argmax(axis=-1)  # first maximum in window row-major order
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def _maxpool_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    kh, kw = node.attrs.kernel_size
    d6 = np.zeros((*b.g.shape[:2], kh, kw, *b.g.shape[2:]), b.g.dtype)
    for i in range(kh):
        for j in range(kw):
            d6[:, :, i, j] = np.where(b.saved == i * kw + j, b.g, 0)
    return [_scatter_windows(d6, node, b.xs[0].shape)]


def _avgpool_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    x = xs[0]
    _, ho, wo = node.shape_out
    kh, kw = node.attrs.kernel_size
    win = _windows(_pad(x, node, 0.0), node, (ho, wo))
    acc = np.zeros((x.shape[0], x.shape[1], ho, wo), x.dtype)
    for i in range(kh):  # fixed order: kernel row-major; zero padding counts in the divisor
        for j in range(kw):
            acc += win[..., i, j]
    return acc / x.dtype.type(kh * kw), None


def _avgpool_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    kh, kw = node.attrs.kernel_size
    gs = b.g / b.g.dtype.type(kh * kw)
    d6 = np.broadcast_to(gs[:, :, None, None], (*b.g.shape[:2], kh, kw, *b.g.shape[2:]))
    return [_scatter_windows(d6, node, b.xs[0].shape)]


# --- shape kernels -------------------------------------------------------------------------------


def _reshape_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    return xs[0].reshape(xs[0].shape[0], *node.shape_out), None


def _reshape_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    return [b.g.reshape(b.xs[0].shape)]


def _transpose_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    axes = (0, *(k + 1 for k in node.attrs.perm))
    return np.ascontiguousarray(xs[0].transpose(axes)), None


def _transpose_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    inverse = np.argsort((0, *(k + 1 for k in node.attrs.perm)))
    return [np.ascontiguousarray(b.g.transpose(tuple(int(a) for a in inverse)))]


# --- sequence kernels ----------------------------------------------------------------------------


def _embedding_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    ids, table = xs
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ContractViolationError(
            f"token ids must lie in [0, {table.shape[0]}), got [{ids.min()}, {ids.max()}]",
            reason="ID_OUT_OF_RANGE",
            path=f"$.batch.{node.inputs[0]}",
        )
    return table[ids], None


def _embedding_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    ids, table = b.xs
    flat = ids.reshape(-1)
    rows = b.g.reshape(-1, table.shape[1]).astype(np.float64)
    # Scatter-add in binary64, each table row summing its contributions in batch row order: a
    # stable sort groups equal ids without reordering them, and reduceat adds each group's rows
    # one after another (np.add.at gives the same bits, several times slower).
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    acc = np.zeros(table.shape, np.float64)
    acc[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return [None, acc.astype(b.g.dtype)]


def _heads(x: Array, h: int) -> Array:
    b, length, d = x.shape
    return x.reshape(b, length, h, d // h).transpose(0, 2, 1, 3)


def _merge(x: Array) -> Array:
    b, h, length, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, length, h * dh)


def _attention_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    h = node.attrs.heads
    q, k, v = (_heads(t, h) for t in xs)
    scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    s = (q @ k.transpose(0, 1, 3, 2)) * scale
    if node.attrs.causal:
        length = s.shape[-1]
        s = np.where(np.tri(length, dtype=bool), s, -np.inf)
    p = _softmax(s, -1)
    return _merge(p @ v), (q, k, v, p, scale)


def _attention_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    q, k, v, p, scale = b.saved
    go = _heads(b.g, node.attrs.heads)
    dv = p.transpose(0, 1, 3, 2) @ go
    dp = go @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * scale
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    return [_merge(dq), _merge(dk), _merge(dv)]


def _dropout_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    keep = ctx.masks.get(node.node_id)
    if keep is None:  # eval/infer, or p == 0: identity
        return xs[0], None
    scale = xs[0].dtype.type(1.0 / (1.0 - node.attrs.p))
    return np.where(keep, xs[0] * scale, 0), (keep, scale)


def _dropout_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    if b.saved is None:
        return [b.g]
    keep, scale = b.saved
    return [np.where(keep, b.g * scale, 0)]


# --- loss heads: forward yields per-sample binary64 losses [B] ---------------------------------


def _check_labels(labels: Array, classes: int, node: Node) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ContractViolationError(
            f"class labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]",
            reason="LABEL_OUT_OF_RANGE",
            path=f"$.batch.{node.inputs[1]}",
        )


def _cross_entropy_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    z, labels = xs
    _check_labels(labels, z.shape[-1], node)
    z64 = z.astype(np.float64)
    m = z64.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(z64 - m).sum(axis=-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(z64, labels[..., None], axis=-1)[..., 0]
    return _per_sample_mean(lse - picked), None


def _cross_entropy_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    z, labels = b.xs
    d = _softmax(z, -1)
    onehot = np.arange(z.shape[-1]) == labels[..., None]
    d = np.where(onehot, d - 1.0, d)
    positions = math.prod(z.shape[1:-1])
    return [d * _per_sample_coef(b.g, positions, z.ndim), None]


def _bce_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    z, t = (a.astype(np.float64) for a in xs)
    elem = np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return _per_sample_mean(elem), None


def _bce_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    z, t = b.xs
    coef = _per_sample_coef(b.g, math.prod(z.shape[1:]), z.ndim)
    dz = (_stable_sigmoid(z) - t) * coef if b.need[0] else None
    dt = -z * coef if b.need[1] else None
    return [dz, dt]


def _mse_fwd(ctx: Ctx, node: Node, xs: list[Array]) -> tuple[Array, Any]:
    d = xs[0].astype(np.float64) - xs[1].astype(np.float64)
    return _per_sample_mean(d * d), None


def _mse_bwd(ctx: Ctx, node: Node, b: Bwd) -> list[Array | None]:
    pred, target = b.xs
    coef = _per_sample_coef(b.g, math.prod(pred.shape[1:]), pred.ndim)
    dp = 2.0 * (pred - target) * coef
    return [dp if b.need[0] else None, -dp if b.need[1] else None]


OPS: Final[Mapping[Op, tuple[Forward, Backward]]] = {
    Op.MATMUL: (_matmul_fwd, _matmul_bwd),
    Op.BIAS_ADD: (_bias_add_fwd, _bias_add_bwd),
    Op.ADD: (_add_fwd, _add_bwd),
    Op.MUL: (_mul_fwd, _mul_bwd),
    Op.RELU: (_relu_fwd, _relu_bwd),
    Op.GELU: (_gelu_fwd, _gelu_bwd),
    Op.TANH: (_tanh_fwd, _tanh_bwd),
    Op.SIGMOID: (_sigmoid_fwd, _sigmoid_bwd),
    Op.SOFTMAX: (_softmax_fwd, _softmax_bwd),
    Op.LAYERNORM: (_layernorm_fwd, _layernorm_bwd),
    Op.CONV2D: (_conv_fwd, _conv_bwd),
    Op.MAXPOOL2D: (_maxpool_fwd, _maxpool_bwd),
    Op.AVGPOOL2D: (_avgpool_fwd, _avgpool_bwd),
    Op.FLATTEN: (_reshape_fwd, _reshape_bwd),
    Op.RESHAPE: (_reshape_fwd, _reshape_bwd),
    Op.TRANSPOSE: (_transpose_fwd, _transpose_bwd),
    Op.EMBEDDING: (_embedding_fwd, _embedding_bwd),
    Op.ATTENTION: (_attention_fwd, _attention_bwd),
    Op.DROPOUT: (_dropout_fwd, _dropout_bwd),
    Op.CROSS_ENTROPY: (_cross_entropy_fwd, _cross_entropy_bwd),
    Op.BCE_LOGITS: (_bce_fwd, _bce_bwd),
    Op.MSE: (_mse_fwd, _mse_bwd),
}
"""The op table: instruction → (forward kernel, gradient kernel)."""


# --- the executor ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Trace:
    """One forward pass: every computed value, what kernels saved, and nodes run."""

    values: dict[str, Array]
    saved: dict[str, Any]
    executed: tuple[Node, ...]


_F = TypeVar("_F", bound=Callable[..., Any])


def _quiet_fp(method: _F) -> _F:
    """Run with floating-point warnings off: overflow and NaN are data here, not bugs. The
    train layer turns a non-finite loss or gradient norm into a typed error (ADR 0008)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)

    return cast(_F, wrapper)


class NumpyProgram:
    """A validated IR compiled for the numpy backend (see :class:`~umlos.model.backends.Program`)."""

    def __init__(self, ir: ValidatedIR, dtype: ComputeDtype) -> None:
        if dtype not in ("float32", "float64"):
            raise ContractViolationError(f"unsupported compute dtype {dtype!r}", path="$.dtype")
        for node in ir.nodes:
            if node.op not in OPS:  # pragma: no cover - the table covers the ISA
                raise PrimitiveUnsupportedError(
                    f"no numpy kernel for {node.op}",
                    path=f"$.nodes[{node.index}].instr",
                    context={"node_id": node.node_id, "instr": node.op.value},
                )
        if ir.param_dtype is not None and ir.param_dtype != dtype:
            raise ContractViolationError(
                f"the IR's parameters are {ir.param_dtype}, the program computes in {dtype}",
                path="$.parameters[0].dtype",
            )
        self._ir = ir
        self._dtype: ComputeDtype = dtype
        self._np_dtype = np.dtype(dtype)
        self._params = ir.parameter_names
        self._shapes = {name: ir.shape(name) for name in self._params}
        self._inputs = ir.ir.inputs

    @property
    def ir(self) -> ValidatedIR:
        """The IR this program runs."""
        return self._ir

    @property
    def dtype(self) -> ComputeDtype:
        """The compute dtype."""
        return self._dtype

    # -- transfers --

    def to_device(self, arrays: Mapping[str, Array]) -> dict[str, Any]:
        """Copies in the compute dtype (the "device" is host memory owned by the program)."""
        return {k: np.array(v, dtype=self._np_dtype, copy=True) for k, v in arrays.items()}

    def to_host(self, arrays: Mapping[str, Any]) -> dict[str, Array]:
        """Copies, so later in-place updates never reach the caller's arrays."""
        return {k: np.array(v, copy=True) for k, v in arrays.items()}

    # -- passes --

    @_quiet_fp
    def loss_and_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, Array],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Forward (train mode) and backward; gradients of the batch-mean loss."""
        loss = self._require_loss()
        feeds, bsz = self._feeds(batch, labels_required=True)
        masks, rng_next = self._masks(bsz, "train", rng, with_labels=True)
        trace = self._forward(params, feeds, bsz, masks, with_labels=True)
        seed = np.full(bsz, 1.0 / bsz, self._np_dtype)
        grads = self._backward(trace, Ctx(self._np_dtype, bsz, masks), seed)
        return StepResult(trace.values[loss], grads, rng_next)

    @_quiet_fp
    def per_sample_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, Array],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Each sample's own gradient (seed 1, not 1/B), stacked ``[B, *shape]``.

        Dropout masks are drawn once for the whole batch (as in :meth:`loss_and_grads`), then
        each sample runs alone with its slice, so the stream advances identically.
        """
        loss = self._require_loss()
        feeds, bsz = self._feeds(batch, labels_required=True)
        masks, rng_next = self._masks(bsz, "train", rng, with_labels=True)
        losses: list[F64] = []
        per: dict[str, list[Array]] = {name: [] for name in self._params}
        one = np.ones(1, self._np_dtype)
        for i in range(bsz):
            f_i = {k: v[i : i + 1] for k, v in feeds.items()}
            m_i = {k: v[i : i + 1] for k, v in masks.items()}
            trace = self._forward(params, f_i, 1, m_i, with_labels=True)
            grads = self._backward(trace, Ctx(self._np_dtype, 1, m_i), one)
            losses.append(trace.values[loss])
            for name in self._params:
                per[name].append(grads[name])
        stacked = {name: np.stack(per[name]) for name in self._params}
        return StepResult(np.concatenate(losses), stacked, rng_next)

    @_quiet_fp
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
        trace = self._forward(params, feeds, bsz, masks, with_labels=with_labels)
        outputs = {name: trace.values[name] for name in self._ir.outputs}
        loss = self._ir.loss
        per_sample = trace.values[loss] if loss is not None and with_labels else None
        return ForwardResult(outputs, per_sample, len(trace.executed), rng_next)

    # -- optimizer and clipping --

    @_quiet_fp
    def apply_update(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        opt_state: Mapping[str, Any],
        hyper: OptimizerStep,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """SGD or AdamW in ADR 0008's operation order, in place, per parameter in order."""
        t = self._np_dtype.type
        new_params = dict(params)
        state = dict(opt_state)
        lr = t(hyper.lr)
        for name in self._params:
            theta: Array = new_params[name]
            g: Array = grads[name]
            if hyper.kind == "sgd":
                if hyper.weight_decay != 0.0:
                    g = g + t(hyper.weight_decay) * theta
                step = g
                if hyper.momentum > 0.0:
                    mu = t(hyper.momentum)
                    key = f"{name}/momentum_buffer"
                    # buf = g at the first update (the schema's rule; μ·0 + g could flip -0.0).
                    buf = g.copy() if hyper.opt_step == 1 else mu * state[key] + g
                    state[key] = buf
                    step = g + mu * buf if hyper.nesterov else buf
                theta -= lr * step
            else:
                k = hyper.opt_step
                b1, b2 = hyper.beta1, hyper.beta2
                bc1, bc2 = t(1.0 - b1**k), t(1.0 - b2**k)  # binary64, then cast
                m_key, v_key = f"{name}/exp_avg", f"{name}/exp_avg_sq"
                m = t(b1) * state[m_key] + t(1.0 - b1) * g
                v = t(b2) * state[v_key] + t(1.0 - b2) * g * g
                state[m_key], state[v_key] = m, v
                theta -= t(hyper.lr * hyper.weight_decay) * theta
                theta -= lr * (m / bc1) / (np.sqrt(v / bc2) + t(hyper.eps))
            new_params[name] = theta
        return new_params, state

    @_quiet_fp
    def sum_of_squares(self, tensors: Mapping[str, Any]) -> list[float]:
        """``fixed_sum_of_squares`` of each tensor, in mapping order, binary64."""
        return [fixed_sum_of_squares(v) for v in tensors.values()]

    @_quiet_fp
    def scale_(self, tensors: Mapping[str, Any], factor: float) -> dict[str, Any]:
        """Multiply in place by ``factor`` cast to the compute dtype."""
        f = self._np_dtype.type(factor)
        out = dict(tensors)
        for v in out.values():
            v *= f
        return out

    # -- internals --

    def _require_loss(self) -> str:
        if self._ir.loss is None:
            raise ContractViolationError("the IR declares no loss node", path="$.loss")
        return self._ir.loss

    def _feeds(
        self, batch: Mapping[str, Array], *, labels_required: bool
    ) -> tuple[dict[str, Array], int]:
        return check_batch(
            self._ir, batch, float_dtype=self._np_dtype, labels_required=labels_required
        )

    def _runs(self, node: Node, with_labels: bool) -> bool:
        return with_labels or not node.needs_labels

    def _masks(
        self, bsz: int, mode: ExecMode, rng: PhiloxStream | None, *, with_labels: bool
    ) -> tuple[dict[str, NDArray[np.bool_]], PhiloxStream | None]:
        """Keep masks of the DROPOUT nodes that run, drawn in execution order."""
        masks: dict[str, NDArray[np.bool_]] = {}
        if mode != "train":
            return masks, rng
        for node in self._ir.nodes:
            if (
                node.op is not Op.DROPOUT
                or node.attrs.p == 0.0
                or not self._runs(node, with_labels)
            ):
                continue
            if rng is None:
                raise ContractViolationError(
                    "train mode with DROPOUT needs the dropout stream", path="$.rng"
                )
            w, rng = words(rng, bsz * math.prod(node.shape_out))
            threshold = np.uint32(math.floor(node.attrs.p * 2.0**32))
            masks[node.node_id] = (w >= threshold).reshape(bsz, *node.shape_out)
        return masks, rng

    def _forward(
        self,
        params: Mapping[str, Any],
        feeds: Mapping[str, Array],
        bsz: int,
        masks: Mapping[str, NDArray[np.bool_]],
        *,
        with_labels: bool,
    ) -> _Trace:
        values: dict[str, Array] = dict(feeds)
        for name in self._params:
            try:
                p = params[name]
            except KeyError:
                raise ContractViolationError(
                    f"parameter {name!r} is missing", path=f"$.params.{name}"
                ) from None
            if p.shape != self._shapes[name]:
                raise ContractViolationError(
                    f"parameter {name!r} has shape {list(p.shape)}, expected {list(self._shapes[name])}",
                    path=f"$.params.{name}",
                )
            values[name] = p
        ctx = Ctx(self._np_dtype, bsz, masks)
        saved: dict[str, Any] = {}
        executed: list[Node] = []
        for node in self._ir.nodes:
            if not self._runs(node, with_labels):
                continue
            out, s = OPS[node.op][0](ctx, node, [values[n] for n in node.inputs])
            values[node.node_id] = out
            saved[node.node_id] = s
            executed.append(node)
        return _Trace(values, saved, tuple(executed))

    def _backward(self, trace: _Trace, ctx: Ctx, seed: Array) -> dict[str, Array]:
        """Reverse pass seeded at the loss node; contributions combined per D12."""
        loss = self._require_loss()
        contribs: dict[str, list[tuple[int, int, Array]]] = {loss: [(-1, 0, seed)]}
        values = trace.values
        for node in reversed(trace.executed):
            parts = contribs.pop(node.node_id, None)
            if parts is None or not any(node.grad_operands):
                continue
            g = _combine(parts)
            xs = [values[n] for n in node.inputs]
            bwd = Bwd(xs, values[node.node_id], trace.saved[node.node_id], g, node.grad_operands)
            grads = OPS[node.op][1](ctx, node, bwd)
            for j, (name, gj) in enumerate(zip(node.inputs, grads, strict=True)):
                if node.grad_operands[j] and gj is not None:
                    contribs.setdefault(name, []).append((node.index, j, gj))
        out: dict[str, Array] = {}
        for name in self._params:
            parts = contribs.get(name)
            out[name] = _combine(parts) if parts else np.zeros(self._shapes[name], self._np_dtype)
        return out


def _combine(parts: list[tuple[int, int, Array]]) -> Array:
    """Sum gradient contributions in (consumer position, operand index) order, binary64, cast once."""
    if len(parts) == 1:
        return parts[0][2]
    parts.sort(key=lambda p: (p[0], p[1]))
    acc = parts[0][2].astype(np.float64)
    for _, _, g in parts[1:]:
        acc += g
    return acc.astype(parts[0][2].dtype)


class NumpyBackend:
    """The reference backend: numpy + BLAS on the CPU, float32 or float64.

    >>> NumpyBackend().fingerprint().gpu_model
    'none'
    """

    name = "numpy"

    def fingerprint(self) -> DriverRuntimeFingerprint:
        """CPU sentinels for the GPU fields; numpy, BLAS, SIMD and thread settings as flags."""
        config: Mapping[str, Any] = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        simd = config.get("SIMD Extensions", {})
        compiler = config.get("Compilers", {}).get("c", {})
        flags = {
            "numpy.version": np.__version__,
            "python.version": platform.python_version(),
            "cpu.machine": platform.machine() or "unknown",
            "blas.name": str(blas.get("name", "unknown")),
            "blas.version": str(blas.get("version", "unknown")),
            "blas.config": str(blas.get("openblas configuration", "unknown")),
            "numpy.simd.baseline": ",".join(simd.get("baseline", [])) or "none",
            "numpy.simd.found": ",".join(simd.get("found", [])) or "none",
            "scipy.version": _scipy_version(),
            "sys.byteorder": sys.byteorder,
        }
        for var in THREAD_ENV:
            flags[f"env.{var}"] = os.environ.get(var, "unset")
        flags.update(_blas_runtime())
        compiler_id = " ".join(str(compiler.get(k, "")) for k in ("name", "version")).strip()
        return DriverRuntimeFingerprint(
            gpu_model=NONE,
            gpu_sm_count=0,
            driver_version=NONE,
            cuda_version=NONE,
            cudnn_version=NONE,
            cublas_version=NONE,
            nccl_version=NONE,
            os_kernel_version=platform.release() or "unknown",
            compiler_id=compiler_id or NONE,
            compiler_flags_hash=digest([]),  # numpy does not record its compiler flags
            backend_adapter_version=f"umlos {umlos.__version__} numpy {np.__version__}",
            backend_build_id=f"numpy-{np.__version__}/{flags['blas.name']}-{flags['blas.version']}",
            primitive_allowlist_used_hash=digest(sorted(op.value for op in OPS)),
            deterministic_kernels_enabled=True,
            nondeterministic_atomics_used=False,
            runtime_flags=dict(sorted(flags.items())),
            accumulation_policy="FIXED_DTYPE_FIXED_ORDER",
        )

    def compile(self, ir: ValidatedIR, dtype: ComputeDtype) -> NumpyProgram:
        """Compile ``ir`` for ``dtype`` (checks kernel coverage and the parameter dtype)."""
        return NumpyProgram(ir, dtype)


def _blas_runtime() -> dict[str, str]:
    """Threads and the dispatched kernel of numpy's BLAS, as loaded now (results depend on both:
    float32 GEMM results were observed to change between 1 and 2 OpenBLAS threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - present wherever scikit-learn is
        return {"blas.num_threads": "unknown"}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath", "")):
            return {
                "blas.num_threads": str(pool.get("num_threads", "unknown")),
                "blas.architecture": str(pool.get("architecture", "unknown")),
                "blas.threading_layer": str(pool.get("threading_layer", "unknown")),
            }
    return {"blas.num_threads": "unknown"}


def _scipy_version() -> str:
    import scipy

    return str(scipy.__version__)


if TYPE_CHECKING:  # mypy proves the classes satisfy the protocols of ADR 0008

    def _conforms(ir: ValidatedIR) -> tuple[Backend, Program]:
        return NumpyBackend(), NumpyProgram(ir, "float64")
