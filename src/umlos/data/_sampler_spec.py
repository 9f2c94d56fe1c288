"""The upstream block-affine permutation (sampling mode ``…_BLOCK_AFFINE_V1``, kernel §3.3).

``[0, N)`` is cut into blocks of ``BS`` positions; the full blocks are shuffled by Fisher–Yates
(ADR 0005's top-down rule, :func:`umlos.numerics.permutation`), the tail block stays last, and
inside a block position ``p`` maps to ``(a · p + c) mod m`` with ``a`` coprime to the block
length ``m``. The Philox counters are decision D9's literal reading. The exact definition is
``docs/formats/nextbatch.md`` §2.

>>> import numpy as np
>>> perm = SpecBlockAffinePermutation.from_seed(bytes(16), 10, 4)
>>> perm.num_full, perm.has_tail
(2, True)
>>> sorted(perm.index_at(np.arange(10, dtype=np.uint64)).tolist()) == list(range(10))
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos.data._sampler_positions import as_positions
from umlos.errors import ContractViolationError
from umlos.numerics import PhiloxStream, permutation, philox4x32_10

__all__ = ["MAX_PERMUTED_BLOCKS", "SpecBlockAffinePermutation"]

MAX_PERMUTED_BLOCKS: Final = 1 << 22
"""Most full blocks one epoch may shuffle. The block order is materialized (kernel §3.3: O(number
of blocks) memory) by a Python swap loop, about 1 s and 150 MB at this size; the spec's own
large case (N = 10^9, BS = 2^20) has 954 blocks."""

_MASK32: Final = 0xFFFF_FFFF
# Below this block length a·p + c stays under 2^64, so uint64 arrays compute it exactly.
_EXACT_U64_BLOCK: Final = 1 << 32


@functools.lru_cache(maxsize=4)
def _block_order(seed: bytes, num_full: int) -> NDArray[np.uint64]:
    # Cached because every call of an epoch needs the same order and building it is the only
    # O(num_blocks) step; the value is a pure function of the key, so the cache changes no result.
    order, _ = permutation(PhiloxStream.from_seed(seed), num_full)
    out = order.astype(np.uint64)
    out.flags.writeable = False
    return out


def _coprime_multiplier(k0: int, m: int) -> int:
    """``a = 1 + (k0 mod (m−1))``, moved forward cyclically in ``[1, m−1]`` to the first value
    coprime to ``m`` (kernel §3.3). ``m ≥ 2``."""
    a = 1 + k0 % (m - 1)
    for i in range(m - 1):
        cand = 1 + (a - 1 + i) % (m - 1)
        if math.gcd(cand, m) == 1:
            return cand
    # 1 is always coprime, so the scan cannot fail; the spec names the error anyway.
    raise ContractViolationError(  # pragma: no cover
        f"no multiplier coprime to block length {m}", reason="NUMERIC_OUT_OF_RANGE", path="$"
    )


@dataclass(frozen=True, slots=True)
class SpecBlockAffinePermutation:
    """One epoch's block-affine bijection of ``[0, cardinality)`` (the upstream sampler).

    Build it with :meth:`from_seed`; :meth:`index_at` maps positions to sample indices. With the
    default block size ``2^20`` and ``N < 2^20`` there is no full block and the whole epoch is
    the single affine map ``(a · p + c) mod N`` (the §12.3 warning).

    >>> perm = SpecBlockAffinePermutation.from_seed(bytes(16), 7, 1 << 20)
    >>> idx = perm.index_at(np.arange(7, dtype=np.uint64)).tolist()
    >>> sorted(idx), len({(b - a) % 7 for a, b in zip(idx, idx[1:])})  # one fixed stride
    ([0, 1, 2, 3, 4, 5, 6], 1)
    """

    cardinality: int
    block_size: int
    seed: bytes
    block_order: NDArray[np.uint64]

    @property
    def num_full(self) -> int:
        """Number of full blocks, ``N // BS``; only these are shuffled."""
        return self.cardinality // self.block_size

    @property
    def has_tail(self) -> bool:
        """Whether a shorter last block exists (``N % BS != 0``); it never moves."""
        return self.cardinality % self.block_size != 0

    @classmethod
    def from_seed(
        cls, seed: bytes, cardinality: int, block_size: int
    ) -> SpecBlockAffinePermutation:
        """Shuffle the full blocks of ``[0, cardinality)`` with the 16-byte epoch seed's stream.

        The caller checks ``N // BS ≤ MAX_PERMUTED_BLOCKS``.

        >>> SpecBlockAffinePermutation.from_seed(bytes(16), 12, 4).block_order.size
        3
        """
        order = _block_order(bytes(seed), cardinality // block_size)
        return cls(
            cardinality=cardinality, block_size=block_size, seed=bytes(seed), block_order=order
        )

    def _block_params(self, blocks: list[int]) -> list[tuple[int, int, int, int]]:
        """``(start, m, a, c)`` of each physical block id (D9 counter layout)."""
        key = np.array(
            [int.from_bytes(self.seed[0:4], "little"), int.from_bytes(self.seed[4:8], "little")],
            np.uint32,
        )
        w2 = int.from_bytes(self.seed[8:12], "little")
        w3 = int.from_bytes(self.seed[12:16], "little")
        # Counter [seed word 2, seed word 3, block_id low, block_id high]: the stream's counter
        # base plus block_id · 2^64 ("counter tuple (epoch_seed, block_id)", D9).
        ctr = np.array([[w2, w3, b & _MASK32, b >> 32] for b in blocks], np.uint32).reshape(-1, 4)
        out = philox4x32_10(ctr, key).tolist()
        params = []
        for b, (x0, x1, x2, x3) in zip(blocks, out, strict=True):
            start = b * self.block_size
            m = min(self.block_size, self.cardinality - start)
            if m == 1:
                params.append((start, 1, 1, 0))
                continue
            k0 = int(x0) | (int(x1) << 32)
            k1 = int(x2) | (int(x3) << 32)
            params.append((start, m, _coprime_multiplier(k0, m), k1 % m))
        return params

    def index_at(self, positions: ArrayLike) -> NDArray[np.uint64]:
        """Sample indices (uint64) at ``positions``: 1-D integers in ``[0, cardinality)``
        (a scalar gives a one-element array).

        Out-of-range positions raise
        :class:`~umlos.errors.GlobalPositionExceedsCardinalityError`.

        Only the blocks the positions fall in are evaluated, so a batch costs O(batch + blocks
        touched) on top of the epoch's cached block order.

        >>> perm = SpecBlockAffinePermutation.from_seed(bytes(16), 10, 4)
        >>> sorted(perm.index_at([8, 9]).tolist())  # the tail block stays last
        [8, 9]
        """
        pos = as_positions(positions, self.cardinality)
        if pos.size == 0:
            return pos
        bs = np.uint64(self.block_size)
        logical = pos // bs
        local = pos % bs
        physical = logical.copy()
        full = logical < np.uint64(self.num_full)
        physical[full] = self.block_order[logical[full].astype(np.intp)]
        uniq, inverse = np.unique(physical, return_inverse=True)
        params = self._block_params([int(b) for b in uniq.tolist()])
        if max((p[1] for p in params), default=0) <= _EXACT_U64_BLOCK:
            start, m, a, c = (
                np.array(col, np.uint64)[inverse] for col in zip(*params, strict=True)
            )
            # a, local < m ≤ 2^32, so a · local < 2^64 and nothing wraps.
            return start + (a * local % m + c) % m
        # Blocks longer than 2^32 need 128-bit products: Python integers, one position at a time.
        out = np.empty(pos.shape, np.uint64)
        for i, (k, lp) in enumerate(zip(inverse.tolist(), local.tolist(), strict=True)):
            start_i, m_i, a_i, c_i = params[k]
            out[i] = start_i + (a_i * lp + c_i) % m_i
        return out
