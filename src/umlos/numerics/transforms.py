"""Bit-exact transforms from Philox words to uniforms, bounded integers, normals and permutations.

Every function takes a :class:`~umlos.numerics.philox.PhiloxStream` and returns
``(values, new_stream)``. Words are consumed in order w0..w3 of each block, block after block; a
call always consumes whole blocks, and the unused words of its last block are discarded. The
exact formulas are in ``docs/numerics.md`` (decision A36); they are defined so that a third party
can reimplement them bit for bit, except :func:`normal_f64`, which depends on ``log``/``cos``/
``sin`` (see its docstring).

>>> from umlos.numerics import PhiloxStream, uniform_f64
>>> u, s = uniform_f64(PhiloxStream.from_seed(bytes(16)), 3)
>>> bool(((0.0 <= u) & (u < 1.0)).all()), s.offset
(True, 2)
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos.errors import ContractViolationError
from umlos.numerics import _reasons
from umlos.numerics.philox import (
    Count,
    PhiloxStream,
    _as_count,
    _blocks_available,
    _peek_blocks,
    words,
)
from umlos.numerics.policy import (
    BOUNDED_INT_MAX_BOUND,
    F32_MANTISSA_BITS,
    F64_MANTISSA_BITS,
    TWO_PI,
)

__all__ = [
    "bounded_ints",
    "bounded_ints_varying",
    "normal_f64",
    "permutation",
    "uniform_f32",
    "uniform_f64",
]

_MASK32: Final = np.uint64(0xFFFF_FFFF)
_TWO32: Final = np.uint64(1 << 32)
_F32_SCALE: Final = np.float32(2.0**-F32_MANTISSA_BITS)
_F64_SCALE: Final = 2.0**-F64_MANTISSA_BITS
# Window bounds of the varying-bound scan: large windows when rejections are rare (the usual case
# for Fisher–Yates bounds far below 2^32), small ones when they are frequent.
_MIN_WINDOW: Final = 16
_MAX_WINDOW: Final = 1 << 16


def uniform_f32(stream: PhiloxStream, size: Count) -> tuple[NDArray[np.float32], PhiloxStream]:
    """``size`` float32 uniforms in ``[0, 1)``: ``(w >> 8) · 2^-24``, one word each.

    Consumes ``ceil(size / 4)`` blocks. Both steps are exact in float32.

    >>> from umlos.numerics import PhiloxStream
    >>> u, s = uniform_f32(PhiloxStream.from_seed(bytes(16)), 1)
    >>> float(u[0]) == (0x6627E8D5 >> 8) / 2**24
    True
    """
    w, new = words(stream, _as_count(size, "size"))
    return _f32_from_words(w), new


def _f32_from_words(w: NDArray[np.uint32]) -> NDArray[np.float32]:
    return (w >> np.uint32(32 - F32_MANTISSA_BITS)).astype(np.float32) * _F32_SCALE


def uniform_f64(stream: PhiloxStream, size: Count) -> tuple[NDArray[np.float64], PhiloxStream]:
    """``size`` float64 uniforms in ``[0, 1)``: ``((wa << 21) | (wb >> 11)) · 2^-53``.

    Uniform ``i`` takes words ``2i`` (``wa``) and ``2i + 1`` (``wb``), so one block gives two
    values; consumes ``ceil(size / 2)`` blocks. The 53-bit integer is formed first and converted
    exactly, then scaled by a power of two (exact).

    >>> from umlos.numerics import PhiloxStream
    >>> u, s = uniform_f64(PhiloxStream.from_seed(bytes(16)), 1)
    >>> float(u[0]) == ((0x6627E8D5 << 21) | (0xE169C58D >> 11)) / 2**53
    True
    """
    n = _as_count(size, "size")
    w, new = words(stream, 2 * n)
    return _f64_from_words(w), new


def _f64_from_words(w: NDArray[np.uint32]) -> NDArray[np.float64]:
    """Pairs ``(wa, wb)`` of consecutive words to one float64 each."""
    w64 = w.astype(np.uint64)
    k = (w64[0::2] << np.uint64(21)) | (w64[1::2] >> np.uint64(11))
    # k < 2^53 converts exactly; the power-of-two scale is exact too.
    return k.astype(np.float64) * _F64_SCALE


def normal_f64(stream: PhiloxStream, size: Count) -> tuple[NDArray[np.float64], PhiloxStream]:
    """``size`` standard normals by Box–Muller on pairs of :func:`uniform_f64` values.

    Block ``b`` gives ``u1`` (words 0, 1) and ``u2`` (words 2, 3), then, in binary64,
    ``r = sqrt(-2 · log(1 - u1))``, ``θ = TWO_PI · u2`` and the two outputs ``r · cos(θ)``
    (first) and ``r · sin(θ)`` (second). ``1 - u1`` lies in ``(0, 1]`` so ``log`` never sees 0.
    Consumes ``ceil(size / 2)`` blocks; an odd ``size`` drops the last sine value.

    Unlike the other transforms this is *not* bit-portable: ``log``, ``cos`` and ``sin`` come
    from numpy's float64 kernels, whose last bit may differ across CPUs and numpy builds. Results
    are bitwise reproducible only within one equivalence class (E0); see ``docs/numerics.md``.

    >>> from umlos.numerics import PhiloxStream
    >>> z, s = normal_f64(PhiloxStream.from_seed(bytes(16)), 3)
    >>> z.shape, s.offset
    ((3,), 2)
    """
    n = _as_count(size, "size")
    pairs = -(-n // 2)
    u, new = uniform_f64(stream, 2 * pairs)
    u1 = u[0::2]
    u2 = u[1::2]
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    theta = TWO_PI * u2
    z = np.empty(2 * pairs, np.float64)
    z[0::2] = r * np.cos(theta)
    z[1::2] = r * np.sin(theta)
    return z[:n], new


class _Words:
    """Words of a stream read ahead without consuming it; blocks are computed on demand."""

    def __init__(self, stream: PhiloxStream, expected_words: int) -> None:
        self._stream = stream
        self._buf = np.empty(0, np.uint64)
        self._want = max(expected_words, 64)
        # Read-ahead stops at the end of the counter space, so speculation alone never raises.
        self._room = _blocks_available(stream)

    def get(self, start: int, stop: int) -> NDArray[np.uint64]:
        """Words ``start … stop-1``; fewer at the end of the counter space, never none."""
        have = self._buf.size
        if stop > have:
            first = have // 4
            # Grow geometrically so a long rejection run costs O(log) Philox calls.
            need = -(-max(stop - have, self._want, have // 2) // 4)
            # Past the last block only a draw that needs a word raises (inside _peek_blocks).
            need = min(need, self._room - first) if start < 4 * self._room else 1
            more = _peek_blocks(self._stream, first, need)
            self._buf = np.concatenate([self._buf, more.reshape(-1).astype(np.uint64)])
        return self._buf[start:stop]


def _thresholds(bounds: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # Lemire's rejection threshold: 2^32 mod n; a word is rejected iff (w·n mod 2^32) < it.
    return (_TWO32 - bounds) % bounds


def _check_bounds(lo: int, hi: int, path: str) -> None:
    if lo < 1 or hi > BOUNDED_INT_MAX_BOUND:
        raise ContractViolationError(
            f"bounds must lie in [1, 2^32], got [{lo}, {hi}]",
            reason=_reasons.OUT_OF_RANGE,
            path=path,
        )


def bounded_ints(
    stream: PhiloxStream, bound: Count, size: Count
) -> tuple[NDArray[np.int64], PhiloxStream]:
    """``size`` integers uniform in ``[0, bound)``, ``1 ≤ bound ≤ 2^32`` (Lemire, with rejection).

    Each output reads the next unused word ``w``: with ``m = w · bound`` (exact, 64-bit) and
    ``t = 2^32 mod bound``, the word is accepted iff ``m mod 2^32 ≥ t`` and the output is
    ``m >> 32``; a rejected word is skipped and the same output reads the following word. The
    call consumes the blocks up to and including the one holding the last accepted word.

    >>> from umlos.numerics import PhiloxStream
    >>> x, s = bounded_ints(PhiloxStream.from_seed(bytes(16)), 10, 5)
    >>> x.tolist(), s.offset
    ([3, 8, 7, 6, 9], 2)
    """
    n = _as_count(size, "size")
    b = _as_count(bound, "bound")
    _check_bounds(b, b, "$.bound")
    t = _thresholds(np.array([b], np.uint64))[0]
    b64 = np.uint64(b)
    # The acceptance test does not depend on the output index, so accepted positions are simply
    # the nonzero entries of one mask; read ahead until there are enough of them.
    src = _Words(stream, n + n // 8 + 8)
    out = np.empty(n, np.int64)
    have = 0
    scanned = 0  # words examined so far
    used = 0  # words up to and including the last accepted one
    while have < n:
        chunk = max(n - have, 64) + (n - have) // 8
        m = src.get(scanned, scanned + chunk) * b64
        idx = np.flatnonzero((m & _MASK32) >= t)[: n - have]
        out[have : have + idx.size] = m[idx] >> np.uint64(32)
        have += idx.size
        if idx.size:
            used = scanned + int(idx[-1]) + 1
        scanned += m.size
    return out, stream.advance(-(-used // 4))


def bounded_ints_varying(
    stream: PhiloxStream, bounds: ArrayLike
) -> tuple[NDArray[np.int64], PhiloxStream]:
    """One integer in ``[0, bounds[i])`` per entry of ``bounds``, drawn in index order.

    Same rule as :func:`bounded_ints` with the bound of output ``i``: output ``i`` reads words
    until one is accepted for ``bounds[i]``, then output ``i + 1`` continues with the next word.

    >>> from umlos.numerics import PhiloxStream
    >>> x, s = bounded_ints_varying(PhiloxStream.from_seed(bytes(16)), [10, 10, 10, 10, 10])
    >>> x.tolist(), s.offset
    ([3, 8, 7, 6, 9], 2)
    """
    raw = np.asarray(bounds)
    if raw.ndim != 1:
        raise ContractViolationError(
            f"bounds must be 1-D, got shape {raw.shape}", reason=_reasons.BAD_SHAPE, path="$.bounds"
        )
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise ContractViolationError(
            f"bounds must be integers, got {raw.dtype}", reason=_reasons.BAD_DTYPE, path="$.bounds"
        )
    if raw.size:
        # Python ints: comparing uint64 with int64 in numpy would go through float64.
        _check_bounds(int(raw.min()), int(raw.max()), "$.bounds")
    if raw.size and bool((raw == raw[0]).all()):
        # One bound throughout: the position-independent scan is the same rule, only faster.
        return bounded_ints(stream, int(raw[0]), raw.size)
    b = raw.astype(np.uint64)
    t = _thresholds(b)
    m_total = b.size
    out = np.empty(m_total, np.int64)
    src = _Words(stream, m_total + 8)
    k = 0  # next output
    p = 0  # next unread word
    window = _MAX_WINDOW
    while k < m_total:
        w = src.get(p, p + min(m_total - k, window))
        size = w.size
        m = w * b[k : k + size]
        ok = (m & _MASK32) >= t[k : k + size]
        # Outputs before the first rejection are final; the rejected word is skipped and the
        # output it was meant for retries on the next word, exactly as the scalar definition.
        first_bad = size if ok.all() else int(np.argmin(ok))
        out[k : k + first_bad] = m[:first_bad] >> np.uint64(32)
        k += first_bad
        p += first_bad
        if first_bad < size:
            p += 1
            window = max(window // 2, _MIN_WINDOW)
        else:
            window = min(window * 2, _MAX_WINDOW)
    return out, stream.advance(-(-p // 4))


def permutation(stream: PhiloxStream, n: Count) -> tuple[NDArray[np.int64], PhiloxStream]:
    """A uniformly random permutation of ``0 … n-1`` (Fisher–Yates, top down).

    Starting from the identity, for ``i = n-1`` down to ``1``: ``j`` is the next bounded draw in
    ``[0, i]`` (bound ``i + 1``, see :func:`bounded_ints_varying`), then ``a[i]`` and ``a[j]``
    are swapped. ``n ≤ 1`` draws nothing.

    >>> from umlos.numerics import PhiloxStream
    >>> p, s = permutation(PhiloxStream.from_seed(bytes(16)), 5)
    >>> sorted(p.tolist()), s.offset
    ([0, 1, 2, 3, 4], 1)
    """
    count = _as_count(n, "n")
    if count <= 1:
        return np.arange(count, dtype=np.int64), stream
    js, new = bounded_ints_varying(stream, np.arange(count, 1, -1, dtype=np.int64))
    # The swaps are inherently sequential; a Python list is the fastest container for them.
    a = list(range(count))
    for i, j in zip(range(count - 1, 0, -1), js.tolist(), strict=True):
        a[i], a[j] = a[j], a[i]
    return np.array(a, np.int64), new
