"""The keyed Feistel permutation of ``[0, N)`` (sampling mode ``…_FEISTEL_V1``, ADR 0010).

An alternating (unbalanced when the bit count is odd) Feistel network over the smallest
power-of-two domain ``2^b ≥ N``, keyed by eight 64-bit round keys drawn from the epoch seed's
Philox stream, and restricted to ``[0, N)`` by cycle-walking. Positions map to indices one at a
time and independently, so a batch costs O(batch) and nothing of size N is ever built. The
exact definition is ``docs/formats/nextbatch.md`` §3.

>>> import numpy as np
>>> perm = FeistelPermutation.from_seed(bytes(16), 10)
>>> sorted(perm.index_at(np.arange(10)).tolist()) == list(range(10))
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos.data._sampler_positions import as_positions
from umlos.numerics import PhiloxStream, words

__all__ = ["FEISTEL_ROUNDS", "FeistelPermutation"]

FEISTEL_ROUNDS: Final = 8
"""Rounds of the network. Luby–Rackoff needs 4 with ideal round functions; ours are a cheap
mixer, and 8 rounds cost little next to the batch fetch (ADR 0010). Even, so that the halves end
at their starting widths."""

# SplitMix64's output finalizer (Steele, Lea & Flood 2014): a bijection of 64-bit words with full
# avalanche, used as the round function's mixer.
_MIX_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX_M2: Final = np.uint64(0x94D049BB133111EB)
_S30: Final = np.uint64(30)
_S27: Final = np.uint64(27)
_S31: Final = np.uint64(31)
_S32: Final = np.uint64(32)


def _mix64(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # Array arithmetic wraps modulo 2^64 silently, which is the intent (numpy warns only on
    # scalar overflow, and callers always pass 1-D arrays).
    z = (z ^ (z >> _S30)) * _MIX_M1
    z = (z ^ (z >> _S27)) * _MIX_M2
    return z ^ (z >> _S31)


@functools.lru_cache(maxsize=16)
def _round_keys(seed: bytes) -> tuple[int, ...]:
    # Cached because every batch of an epoch needs the same keys and a four-block Philox call
    # costs about as much as the whole network on a batch; a pure function, so no result changes.
    w, _ = words(PhiloxStream.from_seed(seed), 2 * FEISTEL_ROUNDS)
    ws = [int(x) for x in w.tolist()]
    return tuple(ws[2 * i] | (ws[2 * i + 1] << 32) for i in range(FEISTEL_ROUNDS))


@dataclass(frozen=True, slots=True)
class FeistelPermutation:
    """One epoch's keyed Feistel bijection of ``[0, cardinality)``.

    Build it with :meth:`from_seed`; :meth:`index_at` maps positions of the epoch to sample
    indices. ``round_keys`` are the eight 64-bit keys drawn from the seed's Philox stream.

    >>> perm = FeistelPermutation.from_seed(bytes(range(16)), 1797)
    >>> perm.bits, len(perm.round_keys)
    (11, 8)
    >>> idx = perm.index_at(np.arange(1797))
    >>> bool((np.sort(idx) == np.arange(1797)).all())
    True
    """

    cardinality: int
    bits: int
    round_keys: tuple[int, ...]

    @classmethod
    def from_seed(cls, seed: bytes, cardinality: int) -> FeistelPermutation:
        """Derive the round keys from a 16-byte epoch seed for a domain of ``cardinality``.

        ``K_i = w[2i] | w[2i+1] << 32`` for the first ``2 · FEISTEL_ROUNDS`` words ``w`` of
        ``PhiloxStream.from_seed(seed)``; ``bits = bit_length(cardinality − 1)``.

        >>> FeistelPermutation.from_seed(bytes(16), 1).bits
        0
        """
        keys = _round_keys(bytes(seed))
        return cls(cardinality=cardinality, bits=(cardinality - 1).bit_length(), round_keys=keys)

    def _encrypt(self, x: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """One pass of the network over ``[0, 2^bits)`` (a bijection of that domain)."""
        wl = self.bits // 2  # left width; the right half keeps the extra bit when bits is odd
        wr = self.bits - wl
        left = x >> np.uint64(wr)
        right = x & np.uint64((1 << wr) - 1)
        for key in self.round_keys:
            if wl:
                # F = the top wl bits of mix64(R ^ K); a zero-width left half takes nothing.
                f = _mix64(right ^ np.uint64(key)) >> np.uint64(64 - wl)
                left = left ^ f
            left, right = right, left
            wl, wr = wr, wl
        # An even round count leaves the widths as they started: left has bits//2 bits.
        return (left << np.uint64(wr)) | right

    def index_at(self, positions: ArrayLike) -> NDArray[np.uint64]:
        """Sample indices (uint64) at ``positions``: 1-D integers in ``[0, cardinality)``
        (a scalar gives a one-element array).

        Out-of-range positions raise
        :class:`~umlos.errors.GlobalPositionExceedsCardinalityError`.

        Cycle-walking: encrypt, and re-encrypt the values that land in ``[N, 2^bits)`` until all
        lie in ``[0, N)``. Each walk follows the cycle of a permutation of the power-of-two domain,
        which returns to ``[0, N)`` (it contains its start), so the loop ends; since ``2^bits < 2N``
        fewer than two passes per position are expected.

        >>> perm = FeistelPermutation.from_seed(bytes(16), 5)
        >>> sorted(perm.index_at(np.arange(5, dtype=np.uint64)).tolist())
        [0, 1, 2, 3, 4]
        """
        pos = as_positions(positions, self.cardinality)
        if self.bits == 0:
            return pos  # N = 1: the only position is 0
        n = np.uint64(self.cardinality)
        out = self._encrypt(pos)
        todo = np.flatnonzero(out >= n)
        while todo.size:
            walked = self._encrypt(out[todo])
            out[todo] = walked
            todo = todo[walked >= n]
        return out
