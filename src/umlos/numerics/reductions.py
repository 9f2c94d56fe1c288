"""Fixed-order binary64 reductions for every critical sum (loss, metrics, norms, DP, collectives).

The order of operations is part of the contract, so results are bit-identical across calls,
thread counts, BLAS builds and memory layouts (no BLAS, no pairwise ``np.sum``):

1. Values are cast to float64 and read in logical C (row-major) order, whatever the layout.
2. They are cut into consecutive chunks of :data:`~umlos.numerics.policy.REDUCTION_CHUNK` (256)
   elements; the last chunk may be shorter (no padding).
3. Each chunk is summed left to right with compensated summation, giving a pair ``(s_i, c_i)``
   (running sum, accumulated rounding error), both starting at ``+0.0``. One step adds ``x``:
   ``t = s + x; z = t - s; c = c + ((s - (t - z)) + (x - z)); s = t``. The bracket is Knuth's
   TwoSum, the exact rounding error of ``s + x``, so this is Neumaier's algorithm bit for bit
   (his branch on ``|s| ≥ |x|`` computes the same exact error) without a data-dependent branch.
4. The chunks are combined left to right: ``(S, C)`` starts at ``(+0.0, +0.0)``; for each chunk,
   the step above adds ``s_i`` to ``(S, C)``, then ``C = C + c_i``.
5. The result is ``S + C`` if ``S`` is finite, else ``S``.

Step 5 makes non-finite values propagate as in a naive sum: any NaN, or both ``+inf`` and
``-inf``, gives NaN; infinities of one sign (or a running sum that overflows) give that
infinity. An empty input sums to ``+0.0``; the sign of a zero result is not meaningful.

>>> import numpy as np
>>> fixed_sum(np.array([1.0, 1e100, 1.0, -1e100]))
2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos.errors import ContractViolationError
from umlos.numerics import _reasons
from umlos.numerics.policy import REDUCTION_CHUNK

__all__ = [
    "fixed_dot",
    "fixed_l2_norm",
    "fixed_mean",
    "fixed_sum",
    "fixed_sum_of_squares",
]

# Chunks are summed a group at a time, transposed so that each of the 256 steps reads one
# contiguous vector; 2^12 chunks × 256 × 8 bytes = 8 MiB per group. Any group size gives the
# same bits: chunks are independent until step 4.
_GROUP_CHUNKS: Final = 1 << 12
# Below this many full chunks the per-step numpy call overhead costs more than a Python loop;
# both paths perform the same binary64 operations in the same order.
_VECTOR_MIN_CHUNKS: Final = 32


def _as_flat(x: ArrayLike, path: str) -> NDArray[Any]:
    """The values of ``x`` as a flat real vector in logical C order (converted later, per group)."""
    arr = np.asarray(x)
    if not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise ContractViolationError(
            f"expected a real numeric array, got dtype {arr.dtype}",
            reason=_reasons.BAD_DTYPE,
            path=path,
        )
    # ravel(order="C") reads logical row-major order, so F-ordered or strided views of the same
    # values produce the same vector and therefore the same bits.
    return np.ravel(arr, order="C")


def _as_f64(x: ArrayLike, path: str) -> NDArray[np.float64]:
    return _as_flat(x, path).astype(np.float64, copy=False)


def _chunk_pairs(v: NDArray[Any]) -> tuple[list[float], list[float]]:
    """Per-chunk compensated pairs ``(s_i, c_i)`` in chunk order."""
    n = v.size
    full = n // REDUCTION_CHUNK
    s_out: list[float] = []
    c_out: list[float] = []
    if full >= _VECTOR_MIN_CHUNKS:
        for g0 in range(0, full, _GROUP_CHUNKS):
            g1 = min(g0 + _GROUP_CHUNKS, full)
            block = v[g0 * REDUCTION_CHUNK : g1 * REDUCTION_CHUNK].reshape(-1, REDUCTION_CHUNK)
            s_g, c_g = _compensated_rows(np.ascontiguousarray(block.T, dtype=np.float64))
            s_out += s_g.tolist()
            c_out += c_g.tolist()
        done = full * REDUCTION_CHUNK
    else:
        done = 0
    values = v[done:].astype(np.float64).tolist()
    for k in range(0, len(values), REDUCTION_CHUNK):
        s_k, c_k = _compensated_scalar(values[k : k + REDUCTION_CHUNK])
        s_out.append(s_k)
        c_out.append(c_k)
    return s_out, c_out


def _compensated_scalar(values: list[float]) -> tuple[float, float]:
    """The same step as :func:`_compensated_rows` on Python floats (binary64, round to nearest)."""
    s = 0.0
    c = 0.0
    for x in values:
        t = s + x
        z = t - s
        c += (s - (t - z)) + (x - z)
        s = t
    return s, c


def _compensated_rows(cols: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Compensated sums over axis 0 of ``cols`` (positions × chunks): one pair per chunk."""
    width = cols.shape[1]
    s = np.zeros(width, np.float64)
    c = np.zeros(width, np.float64)
    t = np.empty(width, np.float64)
    z = np.empty(width, np.float64)
    e = np.empty(width, np.float64)
    for x in cols:
        # TwoSum: e = (s - (t - z)) + (x - z) is the exact rounding error of t = s + x, the same
        # value Neumaier's branch computes, but without a data-dependent select.
        np.add(s, x, out=t)
        np.subtract(t, s, out=z)
        np.subtract(t, z, out=e)
        np.subtract(s, e, out=e)
        np.subtract(x, z, out=z)
        e += z
        c += e
        s, t = t, s
    return s, c


def _combine(s: list[float], c: list[float]) -> float:
    """Steps 4 and 5: chunk pairs combined left to right (sequential by definition)."""
    big_s = 0.0
    big_c = 0.0
    for s_i, c_i in zip(s, c, strict=True):
        t = big_s + s_i
        z = t - big_s
        big_c += (big_s - (t - z)) + (s_i - z)
        big_s = t
        big_c += c_i
    return big_s + big_c if math.isfinite(big_s) else big_s


def _sum_vector(v: NDArray[Any]) -> float:
    if v.size <= REDUCTION_CHUNK:
        # One chunk on Python floats (which never warn): the same steps as below without
        # numpy's per-call overhead. Per-step losses and norms are this small and on the hot path.
        s, c = _compensated_scalar(v.astype(np.float64).tolist())
        return _combine([s], [c])
    # inf - inf inside the compensation is expected (step 5 discards it), so no warnings.
    with np.errstate(invalid="ignore", over="ignore"):
        return _combine(*_chunk_pairs(v))


def fixed_sum(x: ArrayLike) -> float:
    """Sum in binary64 in the fixed chunked order of this module (see the module docstring).

    Accepts any real array (float, int, bool); integers above 2^53 round when cast to float64.
    The result is independent of memory layout, BLAS and thread count.

    >>> import numpy as np
    >>> fixed_sum(np.full(1000, 0.1, np.float32)) == fixed_sum(np.full(1000, 0.1, np.float32))
    True
    >>> fixed_sum([1e16, 1.0, -1e16])
    1.0
    """
    return _sum_vector(_as_flat(x, "$.x"))


def fixed_dot(a: ArrayLike, b: ArrayLike) -> float:
    """``Σ a_i · b_i``: each product rounded once in binary64, then :func:`fixed_sum`.

    ``a`` and ``b`` must have the same shape (no broadcasting); order is logical C order.

    >>> fixed_dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    32.0
    """
    va = np.asarray(a)
    vb = np.asarray(b)
    if va.shape != vb.shape:
        raise ContractViolationError(
            f"shapes differ: {va.shape} vs {vb.shape}", reason=_reasons.BAD_SHAPE, path="$.b"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        products = _as_f64(va, "$.a") * _as_f64(vb, "$.b")
    return _sum_vector(products)


def fixed_sum_of_squares(x: ArrayLike) -> float:
    """``Σ x_i²`` in binary64 (squares rounded once), in the fixed order.

    >>> fixed_sum_of_squares([3.0, 4.0])
    25.0
    """
    v = _as_f64(x, "$.x")
    with np.errstate(over="ignore"):
        return _sum_vector(v * v)


def fixed_mean(x: ArrayLike) -> float:
    """``fixed_sum(x) / n`` with ``n`` the element count as binary64; empty input is an error.

    >>> fixed_mean([1.0, 2.0, 4.0])
    2.3333333333333335
    """
    v = _as_flat(x, "$.x")
    if v.size == 0:
        raise ContractViolationError("mean of an empty array", reason=_reasons.EMPTY, path="$.x")
    return _sum_vector(v) / float(v.size)


def fixed_l2_norm(arrays: Sequence[ArrayLike]) -> float:
    """Global L2 norm over several arrays: ``sqrt(fixed_sum(concat(x_k²)))``.

    The arrays are taken in the given order, each in logical C order, and concatenated before
    chunking, so chunk boundaries follow the global element index (the order of the gradient
    norm used for clipping).

    >>> import numpy as np
    >>> fixed_l2_norm([np.array([3.0]), np.array([[4.0, 12.0]])])
    13.0
    """
    parts = [_as_f64(a, f"$.arrays[{i}]") for i, a in enumerate(arrays)]
    v = np.concatenate(parts) if parts else np.empty(0, np.float64)
    with np.errstate(over="ignore"):
        return math.sqrt(_sum_vector(v * v))
