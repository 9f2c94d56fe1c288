"""An independent, scalar, pure-Python reading of docs/numerics.md.

Written from the algorithm descriptions (Random123 Philox4x32-10, decision A36, the reduction
order) with Python integers and floats only, one value at a time, and shares no code with
``umlos.numerics``. Tests compare the vectorized implementation against it, and
``regen_golden.py`` derives the pinned golden file from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF


def mulhilo(a: int, b: int) -> tuple[int, int]:
    product = a * b
    return product >> 32, product & MASK32


def philox(counter: list[int], key: list[int], rounds: int = 10) -> list[int]:
    c = list(counter)
    k0, k1 = key
    for r in range(rounds):
        if r > 0:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        hi0, lo0 = mulhilo(M0, c[0])
        hi1, lo1 = mulhilo(M1, c[2])
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def seed_state(seed: bytes) -> tuple[list[int], int]:
    """(key, counter base as a 128-bit int) from a 16- or 32-byte seed."""
    s = seed[:16]
    key = [int.from_bytes(s[0:4], "little"), int.from_bytes(s[4:8], "little")]
    base = int.from_bytes(s[8:12], "little") | (int.from_bytes(s[12:16], "little") << 32)
    return key, base


def counter_words(value: int) -> list[int]:
    return [(value >> (32 * i)) & MASK32 for i in range(4)]


class ScalarStream:
    """Words of a stream one at a time, tracking how many whole blocks a call consumed."""

    def __init__(self, key: list[int], base: int, offset: int = 0) -> None:
        self.key = key
        self.base = base
        self.offset = offset

    def call(self) -> Iterator[int]:
        """A word iterator for one transform call; ``self.offset`` is updated as blocks open."""
        while True:
            block = philox(counter_words(self.base + self.offset), self.key)
            self.offset += 1
            yield from block


def uniform_f32(stream: ScalarStream, n: int) -> list[float]:
    it = stream.call()
    out = [(next(it) >> 8) / 2**24 for _ in range(n)]
    return out


def uniform_f64(stream: ScalarStream, n: int) -> list[float]:
    it = stream.call()
    out = []
    for _ in range(n):
        wa = next(it)
        wb = next(it)
        out.append(((wa << 21) | (wb >> 11)) / 2**53)
    return out


def lemire(it: Iterator[int], bound: int) -> int:
    """Lemire's nearly divisionless method with the early-out written out as in his paper."""
    m = next(it) * bound
    low = m & MASK32
    if low < bound:
        threshold = (2**32 - bound) % bound
        while low < threshold:
            m = next(it) * bound
            low = m & MASK32
    return m >> 32


def bounded_ints(stream: ScalarStream, bounds: list[int]) -> list[int]:
    it = stream.call()
    return [lemire(it, b) for b in bounds]


def normals(stream: ScalarStream, n: int) -> list[float]:
    it = stream.call()
    out: list[float] = []
    while len(out) < n:
        u1 = ((next(it) << 21) | (next(it) >> 11)) / 2**53
        u2 = ((next(it) << 21) | (next(it) >> 11)) / 2**53
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        theta = 2.0 * math.pi * u2
        out.append(r * math.cos(theta))
        out.append(r * math.sin(theta))
    return out[:n]


def permutation(stream: ScalarStream, n: int) -> list[int]:
    a = list(range(n))
    if n <= 1:
        return a
    it = stream.call()
    for i in range(n - 1, 0, -1):
        j = lemire(it, i + 1)
        a[i], a[j] = a[j], a[i]
    return a


def neumaier(s: float, c: float, x: float) -> tuple[float, float]:
    """Neumaier's step in its textbook branch form (the library uses TwoSum instead)."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


def fixed_sum(values: list[float], chunk: int = 256) -> float:
    big_s, big_c = 0.0, 0.0
    for start in range(0, len(values), chunk):
        s, c = 0.0, 0.0
        for x in values[start : start + chunk]:
            s, c = neumaier(s, c, x)
        big_s, big_c = neumaier(big_s, big_c, s)
        big_c += c
    return big_s + big_c if math.isfinite(big_s) else big_s
