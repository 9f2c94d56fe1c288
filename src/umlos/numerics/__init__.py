"""Numerics: Philox4x32-10 streams, bit-exact random transforms, fixed-order binary64 sums.

Everything here is a pure function of its arguments. Randomness flows through explicit
:class:`PhiloxStream` values (``draw(stream, …) -> (values, new_stream)``), and every critical
sum goes through :func:`fixed_sum` and its relatives, whose operation order is part of the
contract. The exact definitions are in ``docs/numerics.md``; the choices are in ADR 0005.

>>> from umlos.numerics import PhiloxStream, fixed_sum, uniform_f64
>>> stream = PhiloxStream.from_seed(bytes(range(16)))
>>> u, stream = uniform_f64(stream, 1000)
>>> stream.offset
500
>>> fixed_sum(u) == fixed_sum(u.copy(order="F"))
True
"""

from umlos.numerics import policy
from umlos.numerics.philox import PhiloxStream, blocks, philox4x32_10, words
from umlos.numerics.reductions import (
    fixed_dot,
    fixed_l2_norm,
    fixed_mean,
    fixed_sum,
    fixed_sum_of_squares,
)
from umlos.numerics.transforms import (
    bounded_ints,
    bounded_ints_varying,
    normal_f64,
    permutation,
    uniform_f32,
    uniform_f64,
)

__all__ = [
    "PhiloxStream",
    "blocks",
    "bounded_ints",
    "bounded_ints_varying",
    "fixed_dot",
    "fixed_l2_norm",
    "fixed_mean",
    "fixed_sum",
    "fixed_sum_of_squares",
    "normal_f64",
    "permutation",
    "philox4x32_10",
    "policy",
    "uniform_f32",
    "uniform_f64",
    "words",
]
