"""Every numpy kernel against an independent implementation (values) and central differences
(gradients), in float64.

The references below are written from the ISA text (docs/formats/model-ir.md) with scalar
``math`` functions and explicit loops, sharing no code with the kernels; they are slow, so the
shapes are tiny. Hypothesis varies shapes, strides and paddings where a case is cheap.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.model._helpers import Array, backward, check_grads, ctx, forward, make_node
from umlos.errors import ContractViolationError
from umlos.model.backends.numpy_backend import OPS, row_fixed_sums
from umlos.model.ir import LOSS_OPS, Attrs, Op
from umlos.numerics import fixed_sum

HYP = settings(max_examples=20, deadline=None)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    """Normals with |x| >= 0.1, so kinks (RELU at 0, max ties) stay out of the FD stencil."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.1, np.sign(x + 1e-12) * 0.1 + x, x)


def _elementwise(fn: Any, x: Array) -> Array:
    return np.vectorize(fn, otypes=[np.float64])(x)


def test_table_covers_the_isa() -> None:
    assert set(OPS) == set(Op)


# --- dense ---------------------------------------------------------------------------------------


@HYP
@given(lead=st.lists(st.integers(1, 3), max_size=2), k=st.integers(1, 4), n=st.integers(1, 4))
def test_matmul(lead: list[int], k: int, n: int) -> None:
    rng = _rng(len(lead) * 100 + k * 10 + n)
    x = rng.standard_normal((2, *lead, k))
    w = rng.standard_normal((k, n))
    ref = np.zeros((2, *lead, n))
    for idx in itertools.product(*(range(d) for d in (2, *lead))):
        for j in range(n):
            ref[(*idx, j)] = math.fsum(x[(*idx, i)] * w[i, j] for i in range(k))
    node = make_node(Op.MATMUL, 2, (*lead, n))
    np.testing.assert_allclose(forward(node, [x, w])[0], ref, rtol=1e-12, atol=1e-12)
    check_grads(node, [x, w], rng=rng)


def test_bias_add() -> None:
    rng = _rng(1)
    x, b = rng.standard_normal((3, 2, 4)), rng.standard_normal(4)
    node = make_node(Op.BIAS_ADD, 2, (2, 4))
    ref = np.array([[[x[i, j, c] + b[c] for c in range(4)] for j in range(2)] for i in range(3)])
    np.testing.assert_array_equal(forward(node, [x, b])[0], ref)
    check_grads(node, [x, b], rng=rng)


@pytest.mark.parametrize("op", [Op.ADD, Op.MUL])
@pytest.mark.parametrize("second", ["activation", "parameter"])
def test_add_mul(op: Op, second: str) -> None:
    rng = _rng(2)
    a = rng.standard_normal((3, 2, 2))
    b = rng.standard_normal((3, 2, 2) if second == "activation" else (2, 2))
    bb = np.broadcast_to(b, a.shape)
    fn = (lambda u, v: u + v) if op is Op.ADD else (lambda u, v: u * v)
    ref = np.array([fn(u, v) for u, v in zip(a.ravel(), bb.ravel(), strict=True)]).reshape(a.shape)
    node = make_node(op, 2, (2, 2))
    np.testing.assert_array_equal(forward(node, [a, b])[0], ref)
    check_grads(node, [a, b], rng=rng)


# --- elementwise ---------------------------------------------------------------------------------

_SCALAR_REFS = {
    Op.RELU: lambda v: max(v, 0.0),
    Op.GELU: lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    Op.TANH: math.tanh,
    Op.SIGMOID: lambda v: 1.0 / (1.0 + math.exp(-v)),
}


@pytest.mark.parametrize("op", list(_SCALAR_REFS))
def test_activation(op: Op) -> None:
    rng = _rng(3)
    x = _away_from_zero(rng, (4, 3, 2)) * 3.0
    node = make_node(op, 1, (3, 2))
    np.testing.assert_allclose(
        forward(node, [x])[0], _elementwise(_SCALAR_REFS[op], x), rtol=1e-14, atol=1e-15
    )
    check_grads(node, [x], rng=rng)


def test_sigmoid_is_stable_at_extremes() -> None:
    x = np.array([[-800.0, -40.0, 0.0, 40.0, 800.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = forward(make_node(Op.SIGMOID, 1, (5,)), [x])[0]
    assert y[0, 0] == 0.0 and y[0, 2] == 0.5 and y[0, 4] == 1.0


@HYP
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), data=st.data())
def test_softmax(shape: list[int], data: st.DataObject) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = _rng(sum(shape) + axis)
    x = rng.standard_normal((2, *shape)) * 4
    a = axis % len(shape) + 1
    moved = np.moveaxis(x, a, -1)
    ref = np.empty_like(moved)
    for idx in np.ndindex(moved.shape[:-1]):
        row = moved[idx]
        m = max(row)
        e = [math.exp(v - m) for v in row]
        ref[idx] = [v / math.fsum(e) for v in e]
    node = make_node(Op.SOFTMAX, 1, tuple(shape), Attrs(axis=axis % len(shape)))
    np.testing.assert_allclose(forward(node, [x])[0], np.moveaxis(ref, -1, a), rtol=1e-13)
    check_grads(node, [x], rng=rng)


def test_softmax_survives_huge_logits() -> None:
    x = np.array([[1000.0, 1000.0, -1000.0]])
    y = forward(make_node(Op.SOFTMAX, 1, (3,), Attrs(axis=0)), [x])[0]
    np.testing.assert_array_equal(y, [[0.5, 0.5, 0.0]])


def test_layernorm() -> None:
    rng = _rng(4)
    x = rng.standard_normal((3, 2, 5))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    eps = 1e-3
    ref = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = list(x[idx])
        mu = math.fsum(row) / len(row)
        var = math.fsum((v - mu) ** 2 for v in row) / len(row)
        ref[idx] = [
            (v - mu) / math.sqrt(var + eps) * g + b
            for v, g, b in zip(row, gamma, beta, strict=True)
        ]
    node = make_node(Op.LAYERNORM, 3, (2, 5), Attrs(eps=eps))
    np.testing.assert_allclose(forward(node, [x, gamma, beta])[0], ref, rtol=1e-12, atol=1e-12)
    check_grads(node, [x, gamma, beta], rng=rng)


# --- images --------------------------------------------------------------------------------------


def _out_hw(
    h: int, w: int, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]
) -> tuple[int, int]:
    return (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1


def _conv_ref(x: Array, w: Array, b: Array | None, s: tuple[int, int], p: tuple[int, int]) -> Array:
    bsz, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = _out_hw(h, wd, (kh, kw), s, p)
    out = np.zeros((bsz, o, ho, wo))
    for n, oc, i, j in itertools.product(range(bsz), range(o), range(ho), range(wo)):
        terms = []
        for ic, di, dj in itertools.product(range(c), range(kh), range(kw)):
            r, q = i * s[0] + di - p[0], j * s[1] + dj - p[1]
            if 0 <= r < h and 0 <= q < wd:
                terms.append(x[n, ic, r, q] * w[oc, ic, di, dj])
        out[n, oc, i, j] = math.fsum(terms) + (b[oc] if b is not None else 0.0)
    return out


@HYP
@given(
    c=st.integers(1, 2),
    o=st.integers(1, 2),
    hw=st.tuples(st.integers(3, 5), st.integers(3, 5)),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    p=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    bias=st.booleans(),
)
def test_conv2d(
    c: int,
    o: int,
    hw: tuple[int, int],
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    bias: bool,
) -> None:
    rng = _rng(c + o * 3 + hw[0] * 7 + k[1] * 11)
    x = rng.standard_normal((2, c, *hw))
    w = rng.standard_normal((o, c, *k))
    b = rng.standard_normal(o) if bias else None
    ref = _conv_ref(x, w, b, s, p)
    xs = [x, w] + ([b] if b is not None else [])
    node = make_node(Op.CONV2D, len(xs), ref.shape[1:], Attrs(kernel_size=k, stride=s, padding=p))
    np.testing.assert_allclose(forward(node, xs)[0], ref, rtol=1e-12, atol=1e-12)
    check_grads(node, xs, rng=rng)


def _pool_ref(
    x: Array, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], kind: str
) -> Array:
    bsz, c, h, w = x.shape
    ho, wo = _out_hw(h, w, k, s, p)
    out = np.zeros((bsz, c, ho, wo))
    for n, ch, i, j in itertools.product(range(bsz), range(c), range(ho), range(wo)):
        vals = []
        for di, dj in itertools.product(range(k[0]), range(k[1])):
            r, q = i * s[0] + di - p[0], j * s[1] + dj - p[1]
            inside = 0 <= r < h and 0 <= q < w
            vals.append(x[n, ch, r, q] if inside else (-math.inf if kind == "max" else 0.0))
        out[n, ch, i, j] = max(vals) if kind == "max" else math.fsum(vals) / (k[0] * k[1])
    return out


@HYP
@given(
    kind=st.sampled_from(["max", "avg"]),
    hw=st.tuples(st.integers(2, 5), st.integers(2, 5)),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pad=st.booleans(),
)
def test_pools(
    kind: str, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], pad: bool
) -> None:
    k = (min(k[0], hw[0]), min(k[1], hw[1]))
    p = (k[0] // 2, k[1] // 2) if pad else (0, 0)
    rng = _rng(hw[0] + 5 * k[0] + 17 * s[1])
    # Distinct values keep max-pool ties (and FD across them) out of the test.
    x = rng.permutation(2 * 2 * hw[0] * hw[1]).reshape(2, 2, *hw) * 0.1 + 0.05
    ref = _pool_ref(x, k, s, p, kind)
    op = Op.MAXPOOL2D if kind == "max" else Op.AVGPOOL2D
    node = make_node(op, 1, ref.shape[1:], Attrs(kernel_size=k, stride=s, padding=p))
    np.testing.assert_allclose(forward(node, [x])[0], ref, rtol=1e-13)
    check_grads(node, [x], rng=rng, atol=1e-6)


def test_maxpool_ties_route_to_the_first_maximum() -> None:
    x = np.ones((1, 1, 2, 2))
    node = make_node(Op.MAXPOOL2D, 1, (1, 1, 1), Attrs(kernel_size=(2, 2), stride=(2, 2)))
    (dx,) = backward(node, [x], np.ones((1, 1, 1, 1)))
    assert dx is not None
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 0.0], [0.0, 0.0]])


# --- shapes --------------------------------------------------------------------------------------


def test_flatten_reshape_transpose() -> None:
    rng = _rng(5)
    x = rng.standard_normal((2, 2, 3, 4))
    flat = make_node(Op.FLATTEN, 1, (24,))
    np.testing.assert_array_equal(forward(flat, [x])[0], np.array([list(r.ravel()) for r in x]))
    check_grads(flat, [x], rng=rng)
    resh = make_node(Op.RESHAPE, 1, (6, 4), Attrs(shape=(6, 4)))
    np.testing.assert_array_equal(forward(resh, [x])[0][1, 5], x[1, 1, 2])
    check_grads(resh, [x], rng=rng)
    perm = (2, 0, 1)
    tr = make_node(Op.TRANSPOSE, 1, (4, 2, 3), Attrs(perm=perm))
    y = forward(tr, [x])[0]
    for n, i, j, k in itertools.product(range(2), range(2), range(3), range(4)):
        assert y[n, k, i, j] == x[n, i, j, k]
    check_grads(tr, [x], rng=rng)


# --- sequences -----------------------------------------------------------------------------------


def test_embedding() -> None:
    rng = _rng(6)
    ids = np.array([[0, 2, 2], [1, 0, 2]])
    table = rng.standard_normal((3, 4))
    node = make_node(Op.EMBEDDING, 2, (3, 4), grad=(False, True))
    y = forward(node, [ids, table])[0]
    for n, i in itertools.product(range(2), range(3)):
        np.testing.assert_array_equal(y[n, i], table[ids[n, i]])
    check_grads(node, [ids, table], rng=rng)


def test_embedding_gradient_sums_in_batch_row_order() -> None:
    rng = _rng(13)
    ids = rng.integers(0, 5, (6, 7))
    scales = 10.0 ** rng.integers(-8, 9, (6, 7, 1))  # wide magnitudes: the order shows
    g = (rng.standard_normal((6, 7, 3)) * scales).astype(np.float32)
    ref = np.zeros((5, 3), np.float64)
    for n, i in itertools.product(range(6), range(7)):  # sequential, binary64, then one cast
        ref[ids[n, i]] += g[n, i]
    node = make_node(Op.EMBEDDING, 2, (7, 3), grad=(False, True))
    (_, dt) = backward(node, [ids, np.zeros((5, 3), np.float32)], g, ctx(6, "float32"))
    assert dt is not None
    np.testing.assert_array_equal(dt, ref.astype(np.float32))


def test_embedding_rejects_out_of_range_ids() -> None:
    node = make_node(Op.EMBEDDING, 2, (1, 2), grad=(False, True))
    with pytest.raises(ContractViolationError) as info:
        forward(node, [np.array([[3]]), np.zeros((3, 2))])
    assert info.value.reason == "ID_OUT_OF_RANGE"


def _attention_ref(q: Array, k: Array, v: Array, heads: int, causal: bool) -> Array:
    bsz, length, d = q.shape
    dh = d // heads
    out = np.zeros_like(q)
    for n, h, i in itertools.product(range(bsz), range(heads), range(length)):
        cols = slice(h * dh, (h + 1) * dh)
        js = range(i + 1) if causal else range(length)
        scores = [math.fsum(q[n, i, cols] * k[n, j, cols]) / math.sqrt(dh) for j in js]
        m = max(scores)
        e = [math.exp(sc - m) for sc in scores]
        z = math.fsum(e)
        for c in range(dh):
            out[n, i, h * dh + c] = math.fsum(
                e[t] / z * v[n, j, h * dh + c] for t, j in enumerate(js)
            )
    return out


@pytest.mark.parametrize(("heads", "causal"), [(1, False), (2, False), (2, True), (4, True)])
def test_attention(heads: int, causal: bool) -> None:
    rng = _rng(7 + heads)
    q, k, v = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    node = make_node(Op.ATTENTION, 3, (3, 4), Attrs(heads=heads, causal=causal))
    ref = _attention_ref(q, k, v, heads, causal)
    np.testing.assert_allclose(forward(node, [q, k, v])[0], ref, rtol=1e-12, atol=1e-13)
    check_grads(node, [q, k, v], rng=rng)


def test_dropout_train_and_eval() -> None:
    rng = _rng(8)
    x = rng.standard_normal((2, 5))
    keep = np.array([[True, False, True, True, False], [False, True, True, True, True]])
    node = make_node(Op.DROPOUT, 1, (5,), Attrs(p=0.25))
    train = ctx(2, masks={"n": keep})
    y = forward(node, [x], train)[0]
    np.testing.assert_array_equal(y, np.where(keep, x * (1.0 / 0.75), 0.0))
    check_grads(node, [x], rng=rng, c=train)
    np.testing.assert_array_equal(forward(node, [x])[0], x)  # no mask: identity (eval/infer)
    check_grads(node, [x], rng=rng)


# --- loss heads ----------------------------------------------------------------------------------


def _ce_ref(z: Array, y: Array) -> Array:
    out = []
    for n in range(z.shape[0]):
        terms = []
        for idx in np.ndindex(z.shape[1:-1]):
            row = z[(n, *idx)]
            m = max(row)
            terms.append(m + math.log(math.fsum(math.exp(v - m) for v in row)) - row[y[(n, *idx)]])
        out.append(fixed_sum(terms) / len(terms))
    return np.array(out)


@pytest.mark.parametrize("positions", [(), (3,), (2, 2)])
def test_cross_entropy(positions: tuple[int, ...]) -> None:
    rng = _rng(9)
    z = rng.standard_normal((4, *positions, 5)) * 3
    y = rng.integers(0, 5, (4, *positions))
    node = make_node(Op.CROSS_ENTROPY, 2, (), grad=(True, False))
    np.testing.assert_allclose(forward(node, [z, y])[0], _ce_ref(z, y), rtol=1e-14)
    check_grads(node, [z, y], rng=rng)


def test_cross_entropy_is_stable_and_checks_labels() -> None:
    node = make_node(Op.CROSS_ENTROPY, 2, (), grad=(True, False))
    loss = forward(node, [np.array([[1e4, 0.0]]), np.array([1])])[0]
    assert loss[0] == 1e4
    with pytest.raises(ContractViolationError) as info:
        forward(node, [np.zeros((1, 2)), np.array([2])])
    assert info.value.reason == "LABEL_OUT_OF_RANGE"


def test_bce_logits() -> None:
    rng = _rng(10)
    z = rng.standard_normal((4, 3)) * 5
    t = rng.integers(0, 2, (4, 3)).astype(np.float64)
    ref = [
        fixed_sum(
            [
                max(a, 0.0) - a * b + math.log1p(math.exp(-abs(a)))
                for a, b in zip(zr, tr, strict=True)
            ]
        )
        / 3
        for zr, tr in zip(z, t, strict=True)
    ]
    node = make_node(Op.BCE_LOGITS, 2, ())
    np.testing.assert_allclose(forward(node, [z, t])[0], ref, rtol=1e-14)
    check_grads(node, [z, t], rng=rng)


def test_mse() -> None:
    rng = _rng(11)
    pred, target = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    ref = [fixed_sum(((p - t) ** 2).ravel()) / 6 for p, t in zip(pred, target, strict=True)]
    node = make_node(Op.MSE, 2, ())
    np.testing.assert_array_equal(forward(node, [pred, target])[0], ref)
    check_grads(node, [pred, target], rng=rng)


@pytest.mark.parametrize("op", sorted(LOSS_OPS))
def test_loss_heads_return_binary64_per_sample_losses_in_float32(op: Op) -> None:
    rng = _rng(12)
    z = rng.standard_normal((3, 4)).astype(np.float32)
    other = (
        rng.integers(0, 4, 3) if op is Op.CROSS_ENTROPY else rng.random((3, 4)).astype(np.float32)
    )
    node = make_node(op, 2, (), grad=(True, op is not Op.CROSS_ENTROPY))
    loss = forward(node, [z, other], ctx(3, "float32"))[0]
    assert loss.dtype == np.float64 and loss.shape == (3,)
    grads = backward(node, [z, other], np.full(3, 1 / 3, np.float32), ctx(3, "float32"))
    assert grads[0] is not None and grads[0].dtype == np.float32


@HYP
@given(rows=st.integers(1, 4), n=st.integers(1, 600), scale=st.sampled_from([1.0, 1e10, 1e300]))
def test_row_fixed_sums_equal_fixed_sum_per_row(rows: int, n: int, scale: float) -> None:
    a = _rng(n).standard_normal((rows, n)) * scale
    expected = [fixed_sum(r) for r in a]
    np.testing.assert_array_equal(row_fixed_sums(a), expected)
