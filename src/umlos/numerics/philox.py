"""Philox4x32-10, vectorized over numpy arrays, and the explicit stream state built on it.

numpy ships Philox4x64 only; the spec fixes Philox4x32-10 (Random123), so we implement it here
with uint64 arithmetic for the 32×32→64 multiplies (ADR 0005). A :class:`PhiloxStream` is a frozen
value: drawing returns the numbers *and* a new stream, so that every draw is visible in the code
and the whole state is ``(key, counter_base, offset)``.

>>> import numpy as np
>>> ctr = np.zeros(4, dtype=np.uint32)
>>> key = np.zeros(2, dtype=np.uint32)
>>> [f"{w:08x}" for w in philox4x32_10(ctr, key).tolist()]
['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
from numpy.typing import NDArray

from umlos.errors import ContractViolationError, CounterOverflowError
from umlos.numerics import _reasons
from umlos.numerics.policy import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
    RNG_STATE_TAG,
    SEED_LENGTHS,
    UINT32_MAX,
    UINT64_MAX,
    UINT128_MAX,
)

__all__ = [
    "RNG_STATE_TAG",
    "PhiloxStream",
    "blocks",
    "philox4x32_10",
    "words",
]

_MASK32: Final = np.uint64(UINT32_MAX)
_SHIFT32: Final = np.uint64(32)
_M0: Final = np.uint64(PHILOX_M0)
_M1: Final = np.uint64(PHILOX_M1)
_W0: Final = np.uint64(PHILOX_W0)
_W1: Final = np.uint64(PHILOX_W1)
_TILE: Final = 1 << 15

Count: TypeAlias = int | np.integer[Any]
"""A non-negative count: a Python or numpy integer (never a bool)."""


def _require_u32(value: object, name: str, last: int) -> NDArray[np.uint32]:
    # Only genuine uint32 arrays are accepted: silently casting int64 or float input would hide
    # values outside [0, 2^32) that the caller believed were meaningful.
    if not isinstance(value, np.ndarray) or value.dtype != np.uint32:
        got = type(value).__name__ if not isinstance(value, np.ndarray) else str(value.dtype)
        raise ContractViolationError(
            f"expected a numpy uint32 array, got {got}", reason=_reasons.BAD_DTYPE, path=f"$.{name}"
        )
    if value.ndim == 0 or value.shape[-1] != last:
        raise ContractViolationError(
            f"expected shape (..., {last}), got {value.shape}",
            reason=_reasons.BAD_SHAPE,
            path=f"$.{name}",
        )
    return value


def _as_count(value: object, name: str) -> int:
    """A non-negative Python or numpy integer (never a bool) as ``int``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ContractViolationError(
            f"expected a non-negative integer, got {value!r}",
            reason=_reasons.OUT_OF_RANGE,
            path=f"$.{name}",
        )
    return int(value)


def philox4x32_10(counter: NDArray[np.uint32], key: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """Apply the Philox4x32-10 bijection to every counter.

    ``counter`` has shape ``(..., 4)`` and ``key`` shape ``(..., 2)``; their leading dimensions
    broadcast. Word 0 is the least significant word of the 128-bit counter. Returns uint32 words
    of shape ``broadcast(...) + (4,)``. Raises :class:`~umlos.errors.ContractViolationError`
    (reason ``dtype``, ``shape`` or ``broadcast``) on malformed input.

    >>> import numpy as np
    >>> ones = np.uint32(0xFFFFFFFF)
    >>> out = philox4x32_10(np.full((3, 4), ones), np.full(2, ones))
    >>> out.shape, f"{int(out[2, 0]):08x}"
    ((3, 4), '408f276d')
    """
    ctr = _require_u32(counter, "counter", 4)
    k = _require_u32(key, "key", 2)
    try:
        batch = np.broadcast_shapes(ctr.shape[:-1], k.shape[:-1])
    except ValueError as exc:
        raise ContractViolationError(
            f"counter batch shape {ctr.shape[:-1]} does not broadcast with key batch shape "
            f"{k.shape[:-1]}",
            reason=_reasons.BAD_SHAPE,
            path="$.key",
        ) from exc

    n = int(np.prod(batch, dtype=np.int64))
    flat_ctr = np.broadcast_to(ctr, (*batch, 4)).reshape(n, 4)
    # One key for the whole batch (the common case) stays a single row instead of a copy per row.
    flat_key = k.reshape(1, 2) if k.size == 2 else np.broadcast_to(k, (*batch, 2)).reshape(n, 2)
    out = np.empty((n, 4), np.uint32)
    # Tiles keep the ~8 live uint64 vectors in cache; results do not depend on the tile size.
    for lo in range(0, n, _TILE):
        hi = min(lo + _TILE, n)
        tile_key = flat_key if flat_key.shape[0] == 1 else flat_key[lo:hi]
        _rounds(flat_ctr[lo:hi], tile_key, out[lo:hi])
    return out.reshape((*batch, 4))


def _rounds(ctr: NDArray[np.uint32], key: NDArray[np.uint32], out: NDArray[np.uint32]) -> None:
    """The ten Philox rounds on (m, 4) counters with (m, 2) or (1, 2) keys, written to ``out``."""
    c0 = ctr[:, 0].astype(np.uint64)
    c1 = ctr[:, 1].astype(np.uint64)
    c2 = ctr[:, 2].astype(np.uint64)
    c3 = ctr[:, 3].astype(np.uint64)
    k0 = key[:, 0].astype(np.uint64)
    k1 = key[:, 1].astype(np.uint64)
    lo0 = np.empty_like(c0)
    lo1 = np.empty_like(c0)
    for rnd in range(PHILOX_ROUNDS):
        if rnd:
            # Key schedule: Weyl increments mod 2^32 between rounds.
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        # A 32×32-bit product fits exactly in uint64, so hi/lo are a shift and a mask.
        np.multiply(c0, _M0, out=lo0)
        np.multiply(c2, _M1, out=lo1)
        # new = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0]; the buffers are reused in place.
        np.right_shift(lo1, _SHIFT32, out=c2)  # c2 <- hi1 (old c2 no longer needed)
        c2 ^= c1
        c2 ^= k0
        np.right_shift(lo0, _SHIFT32, out=c0)  # c0 <- hi0 (old c0 no longer needed)
        c0 ^= c3
        c0 ^= k1
        np.bitwise_and(lo1, _MASK32, out=c1)
        np.bitwise_and(lo0, _MASK32, out=c3)
        # c2 holds new word 0 and c0 holds new word 2: swap the names.
        c0, c2 = c2, c0
    out[:, 0] = c0
    out[:, 1] = c1
    out[:, 2] = c2
    out[:, 3] = c3


def _check_room(base: int, offset: int, n: int) -> None:
    """Raise unless ``n`` more blocks fit: offset stays a uint64 and the counter never wraps."""
    if offset + n > UINT64_MAX:
        raise CounterOverflowError(
            f"RNG offset {offset} + {n} blocks would pass uint64",
            path="$.offset",
            context={"counter_name": _reasons.RNG_OFFSET, "counter_value": offset},
        )
    if base + offset + n > UINT128_MAX:
        raise CounterOverflowError(
            f"Philox counter {base + offset:#x} + {n} blocks would wrap past 2^128",
            path="$.offset",
            context={"counter_name": _reasons.PHILOX_COUNTER, "counter_value": base + offset},
        )


def _blocks_available(stream: PhiloxStream) -> int:
    """How many more blocks the stream can draw before :func:`_check_room` fails."""
    base = _words_to_int(stream.counter_base)
    return min(UINT64_MAX - stream.offset, UINT128_MAX - base - stream.offset)


def _words_to_int(ws: Sequence[int]) -> int:
    return sum(int(w) << (32 * i) for i, w in enumerate(ws))


def _int_to_words(value: int, count: int) -> tuple[int, ...]:
    return tuple((value >> (32 * i)) & UINT32_MAX for i in range(count))


@dataclass(frozen=True, slots=True)
class PhiloxStream:
    """An explicit Philox4x32-10 stream: ``key``, 128-bit ``counter_base`` and block ``offset``.

    One *draw* is one 128-bit block (four u32 words); block ``i`` of the stream is
    ``philox4x32_10(counter_base + i, key)`` with little-endian carry across the four counter
    words. ``offset`` counts blocks drawn so far (a uint64; exceeding it raises
    :class:`~umlos.errors.CounterOverflowError`, as does a 128-bit counter that would wrap).
    Streams are values: drawing returns a new stream and never changes this one.

    >>> s = PhiloxStream.from_seed(bytes(range(16)))
    >>> s.key, s.counter_base, s.offset
    ((50462976, 117835012), (185207048, 252579084, 0, 0), 0)
    >>> _, s2 = blocks(s, 3)
    >>> s2.offset, s2.counter == (185207051, 252579084, 0, 0)
    (3, True)
    """

    key: tuple[int, int]
    counter_base: tuple[int, int, int, int]
    offset: int = 0

    def __post_init__(self) -> None:
        # Tuples only: a list would make this "frozen" value mutable and unhashable.
        for name, value, size in (("key", self.key, 2), ("counter_base", self.counter_base, 4)):
            if not isinstance(value, tuple) or len(value) != size:
                raise ContractViolationError(
                    f"{name} must be a tuple of {size} uint32 words, got {value!r}",
                    reason=_reasons.BAD_SHAPE,
                    path=f"$.{name}",
                )
        for i, w in enumerate((*self.key, *self.counter_base)):
            if type(w) is not int or not 0 <= w <= UINT32_MAX:
                where = f"$.key[{i}]" if i < 2 else f"$.counter_base[{i - 2}]"
                raise ContractViolationError(
                    f"expected a uint32 word, got {w!r}", reason=_reasons.OUT_OF_RANGE, path=where
                )
        if type(self.offset) is not int or self.offset < 0:
            raise ContractViolationError(
                f"expected a non-negative offset, got {self.offset!r}",
                reason=_reasons.OUT_OF_RANGE,
                path="$.offset",
            )
        _check_room(_words_to_int(self.counter_base), 0, self.offset)

    @classmethod
    def from_seed(cls, seed: bytes) -> PhiloxStream:
        """Map a 16- or 32-byte seed to a fresh stream (A36).

        ``key = [u32_le(s[0:4]), u32_le(s[4:8])]``,
        ``counter_base = [u32_le(s[8:12]), u32_le(s[12:16]), 0, 0]``; a 32-byte seed uses its
        first 16 bytes.

        >>> PhiloxStream.from_seed(bytes(16)).counter_base
        (0, 0, 0, 0)
        """
        if not isinstance(seed, bytes | bytearray) or len(seed) not in SEED_LENGTHS:
            got = f"{len(seed)} bytes" if isinstance(seed, bytes | bytearray) else type(seed)
            raise ContractViolationError(
                f"seed must be 16 or 32 bytes, got {got}", reason=_reasons.BAD_SEED, path="$.seed"
            )
        w = [int.from_bytes(seed[i : i + 4], "little") for i in range(0, 16, 4)]
        return cls(key=(w[0], w[1]), counter_base=(w[2], w[3], 0, 0), offset=0)

    @property
    def counter(self) -> tuple[int, int, int, int]:
        """The counter of the next block to draw: ``counter_base + offset`` (4 u32 words)."""
        c = _int_to_words(_words_to_int(self.counter_base) + self.offset, 4)
        return (c[0], c[1], c[2], c[3])

    def advance(self, n_blocks: Count) -> PhiloxStream:
        """Return the stream after ``n_blocks`` more draws, without computing them."""
        n_blocks = _as_count(n_blocks, "n_blocks")
        _check_room(_words_to_int(self.counter_base), self.offset, n_blocks)
        return PhiloxStream(self.key, self.counter_base, self.offset + n_blocks)

    def rng_state(self) -> tuple[str, int, int, int, int, int, int]:
        """The checkpoint form ``[tag, key0, key1, ctr0, ctr1, ctr2, ctr3]`` (current counter).

        Saved together with :attr:`offset`; :meth:`from_rng_state` restores the stream exactly.

        >>> s = PhiloxStream.from_seed(bytes(16)).advance(5)
        >>> s.rng_state()
        ('rng_state_v1', 0, 0, 5, 0, 0, 0)
        >>> PhiloxStream.from_rng_state(s.rng_state(), s.offset) == s
        True
        """
        c = self.counter
        return (RNG_STATE_TAG, self.key[0], self.key[1], c[0], c[1], c[2], c[3])

    @classmethod
    def from_rng_state(cls, state: Sequence[object], offset: int) -> PhiloxStream:
        """Rebuild a stream from :meth:`rng_state` and its offset (``base = counter - offset``)."""
        if len(state) != 7 or state[0] != RNG_STATE_TAG:
            raise ContractViolationError(
                f"expected [{RNG_STATE_TAG!r}, key0, key1, ctr0..ctr3]",
                reason=_reasons.BAD_STATE,
                path="$.rng_state",
            )
        ws: list[int] = []
        for i, w in enumerate(state[1:], start=1):
            if type(w) is not int or not 0 <= w <= UINT32_MAX:
                raise ContractViolationError(
                    f"expected a uint32 word, got {w!r}",
                    reason=_reasons.OUT_OF_RANGE,
                    path=f"$.rng_state[{i}]",
                )
            ws.append(w)
        if type(offset) is not int or not 0 <= offset <= UINT64_MAX:
            raise ContractViolationError(
                f"expected a uint64 offset, got {offset!r}",
                reason=_reasons.OUT_OF_RANGE,
                path="$.offset",
            )
        base = _words_to_int(ws[2:]) - offset
        if base < 0:
            raise ContractViolationError(
                "offset is larger than the saved counter",
                reason=_reasons.BAD_STATE,
                path="$.offset",
            )
        b = _int_to_words(base, 4)
        return cls(key=(ws[0], ws[1]), counter_base=(b[0], b[1], b[2], b[3]), offset=offset)


def _counters(start: int, n: int) -> NDArray[np.uint32]:
    """Counters ``start … start+n-1`` as (n, 4) uint32 words, little-endian carry."""
    lo_start = np.uint64(start & UINT64_MAX)
    hi_start = np.uint64(start >> 64)
    lo = np.arange(n, dtype=np.uint64)
    lo += lo_start  # wraps modulo 2^64 by design; the wrap is the carry into the high half
    hi = np.full(n, hi_start, np.uint64)
    hi += lo < lo_start
    out = np.empty((n, 4), np.uint32)
    out[:, 0] = lo & _MASK32
    out[:, 1] = lo >> _SHIFT32
    out[:, 2] = hi & _MASK32
    out[:, 3] = hi >> _SHIFT32
    return out


def _peek_blocks(stream: PhiloxStream, first: int, n: int) -> NDArray[np.uint32]:
    """Blocks ``first … first+n-1`` counted from the stream's offset, without advancing."""
    base = _words_to_int(stream.counter_base)
    _check_room(base, stream.offset + first, n)
    start = base + stream.offset + first
    key = np.array(stream.key, np.uint32)
    return philox4x32_10(_counters(start, n), key)


def blocks(stream: PhiloxStream, n: Count) -> tuple[NDArray[np.uint32], PhiloxStream]:
    """Draw ``n`` blocks: an ``(n, 4)`` uint32 array and the stream advanced by ``n``.

    >>> s = PhiloxStream.from_seed(bytes(16))
    >>> out, s = blocks(s, 2)
    >>> out.shape, s.offset, f"{int(out[0, 0]):08x}"
    ((2, 4), 2, '6627e8d5')
    """
    count = _as_count(n, "n")
    return _peek_blocks(stream, 0, count), stream.advance(count)


def words(stream: PhiloxStream, n: Count) -> tuple[NDArray[np.uint32], PhiloxStream]:
    """Draw ``n`` u32 words in order w0..w3 of each block; consumes ``ceil(n / 4)`` blocks.

    Unused words of the last block are discarded, so the state stays a whole number of blocks.

    >>> s = PhiloxStream.from_seed(bytes(16))
    >>> w, s = words(s, 5)
    >>> w.shape, s.offset
    ((5,), 2)
    """
    count = _as_count(n, "n")
    out, new = blocks(stream, -(-count // 4))
    return out.reshape(-1)[:count], new
