"""Fixed-order reductions: accuracy, bit-exact order, layout independence, non-finite values."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from umlos.errors import ContractViolationError
from umlos.numerics import (
    fixed_dot,
    fixed_l2_norm,
    fixed_mean,
    fixed_sum,
    fixed_sum_of_squares,
)
from umlos.numerics import reductions as red

from . import scalar_reference as ref

CHUNK_SIZES = [0, 1, 255, 256, 257, 511, 512, 513, 32 * 256 - 1, 32 * 256, 65536 + 3]
finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300,
                   max_value=1e300)  # fmt: skip


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _same(a: float, b: float) -> bool:
    """Bitwise equality, so that NaN == NaN and -0.0 != 0.0 are seen."""
    return _bits(a) == _bits(b)


@pytest.mark.parametrize("n", CHUNK_SIZES)
def test_matches_the_scalar_definition_bit_for_bit(n: int) -> None:
    # The reference uses Neumaier's branch form; the library uses TwoSum. Equal bits on
    # wide-range data show the two error terms agree, in both the numpy and the Python path.
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * np.exp(rng.uniform(-30, 30, n))
    assert _same(fixed_sum(x), ref.fixed_sum(x.tolist()))


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 9000), elements=finite))
def test_matches_the_scalar_definition_on_arbitrary_finite_data(x: np.ndarray) -> None:
    assert _same(fixed_sum(x), ref.fixed_sum(x.tolist()))


@pytest.mark.parametrize("n", CHUNK_SIZES)
def test_close_to_the_exactly_rounded_sum(n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    x = rng.standard_normal(n)
    exact = math.fsum(x.tolist())
    got = fixed_sum(x)
    # Compensated summation: error of order one ulp of the result plus u^2·Σ|x|.
    tolerance = math.ulp(exact) + 4 * 2.0**-106 * n * float(np.abs(x).sum())
    assert abs(got - exact) <= tolerance


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 3000), elements=finite))
def test_within_one_ulp_of_fsum_for_well_conditioned_data(x: np.ndarray) -> None:
    exact = math.fsum(x.tolist())
    bound = math.ulp(exact) + len(x) * 2.0**-104 * math.fsum(abs(v) for v in x.tolist())
    assert abs(fixed_sum(x) - exact) <= bound


def test_exact_on_integer_valued_data() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-(2**40), 2**40, size=100_003).astype(np.float64)
    assert fixed_sum(x) == float(sum(int(v) for v in x.astype(np.int64)))


def test_ill_conditioned_sum_where_naive_summation_fails() -> None:
    # Σ = 1 per block of [1e16, 1, -1e16], spread across chunk boundaries.
    x = np.tile([1e16, 1.0, -1e16], 1000)
    naive = 0.0
    for v in x.tolist():
        naive += v
    assert naive == 0.0
    assert fixed_sum(x) == 1000.0


def test_cancellation_across_chunks_keeps_the_compensation() -> None:
    # Chunk 0 = [1, 1e100, ...zeros], chunk 1 = [1, -1e100, ...]: each chunk's s_i has lost
    # its 1, which survives only in c_i; step 4 must carry c_i forward.
    x = np.zeros(512)
    x[0], x[1], x[256], x[257] = 1.0, 1e100, 1.0, -1e100
    assert fixed_sum(x) == 2.0
    assert math.fsum(x.tolist()) == 2.0


def test_float32_input_is_summed_in_binary64() -> None:
    x = np.full(10_000, 0.1, np.float32)
    assert fixed_sum(x) == math.fsum([float(np.float32(0.1))] * 10_000)


def test_bit_identical_across_calls_and_layouts() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((37, 123)) * 1e8
    results = {_bits(fixed_sum(a)) for _ in range(3)}
    # The same logical values in Fortran order, as a strided view and as a list: C-order result.
    results.add(_bits(fixed_sum(np.asfortranarray(a))))
    results.add(_bits(fixed_sum(np.ascontiguousarray(a.T).T)))
    results.add(_bits(fixed_sum(a.tolist())))
    results.add(_bits(ref.fixed_sum(a.reshape(-1).tolist())))
    assert len(results) == 1


def test_the_sum_follows_logical_c_order_not_transposition() -> None:
    # A transposed matrix is a different logical order, so it may legitimately round
    # differently; it must equal the reference over its own C-order reading.
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 7)) * np.exp(rng.uniform(-20, 20, (300, 7)))
    assert _same(fixed_sum(a.T), ref.fixed_sum(a.T.reshape(-1).tolist()))


def test_the_python_and_numpy_chunk_paths_agree() -> None:
    rng = np.random.default_rng(5)
    v = rng.standard_normal(256 * 40) * np.exp(rng.uniform(-25, 25, 256 * 40))
    s_vec, c_vec = red._chunk_pairs(v)
    for i in range(40):
        s_i, c_i = red._compensated_scalar(v[256 * i : 256 * (i + 1)].tolist())
        assert _same(s_vec[i], s_i) and _same(c_vec[i], c_i)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, math.inf, 2.0], math.inf),
        ([-math.inf] * 600, -math.inf),
        ([math.inf, -math.inf], math.nan),
        ([1.0, math.nan, 1.0], math.nan),
        ([1e308] * 300, math.inf),
        ([1e308, 1e308, -1e308], math.inf),  # the running sum overflows, as in a naive sum
    ],
)
def test_non_finite_values_propagate(values: list[float], expected: float) -> None:
    with np.errstate(all="raise"):
        got = fixed_sum(np.array(values))
    assert _same(got, expected) or (math.isnan(expected) and math.isnan(got))


def test_infinities_in_different_chunks_give_nan() -> None:
    x = np.zeros(1000)
    x[3], x[900] = math.inf, -math.inf
    assert math.isnan(fixed_sum(x))


def test_empty_sum_is_zero() -> None:
    assert _same(fixed_sum(np.empty((0, 3))), 0.0)


def test_integer_and_bool_input() -> None:
    assert fixed_sum(np.arange(1000, dtype=np.int32)) == 499500.0
    assert fixed_sum(np.array([True, False, True])) == 2.0


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array(["a"]), np.array([None])])
def test_non_real_input_is_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ContractViolationError) as info:
        fixed_sum(bad)
    assert info.value.reason == "NUMERIC_BAD_DTYPE"


def test_dot_rounds_each_product_then_sums_in_the_fixed_order() -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal((50, 41)).astype(np.float32)
    b = rng.standard_normal((50, 41))
    products = (a.astype(np.float64) * b).reshape(-1).tolist()
    assert _same(fixed_dot(a, b), ref.fixed_sum(products))
    assert _same(fixed_dot(np.asfortranarray(a), b), fixed_dot(a, b))


def test_dot_requires_equal_shapes() -> None:
    with pytest.raises(ContractViolationError) as info:
        fixed_dot(np.ones(3), np.ones((1, 3)))
    assert info.value.reason == "NUMERIC_BAD_SHAPE"


def test_sum_of_squares_and_mean() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert fixed_sum_of_squares(x) == 30.0
    assert fixed_mean(x) == 2.5
    with pytest.raises(ContractViolationError) as info:
        fixed_mean(np.empty(0))
    assert info.value.reason == "NUMERIC_EMPTY"


def test_l2_norm_chunks_over_the_concatenation() -> None:
    rng = np.random.default_rng(8)
    # Sizes chosen so that chunk boundaries fall inside arrays, not at their ends.
    arrays = [rng.standard_normal(s) * 10.0**k for k, s in enumerate([(100,), (17, 9), (300,)])]
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    expected = math.sqrt(ref.fixed_sum((flat * flat).tolist()))
    assert _same(fixed_l2_norm(arrays), expected)
    assert fixed_l2_norm([]) == 0.0
    assert fixed_l2_norm([np.array([3.0]), np.array([4.0])]) == 5.0


def test_l2_norm_is_order_sensitive_by_contract() -> None:
    # The order of the arrays is part of the definition (registration order of parameters).
    a, b = np.array([1e16, 1.0]), np.array([-1e16, 3.0])
    assert fixed_l2_norm([a, b]) == math.sqrt(ref.fixed_sum([1e32, 1.0, 1e32, 9.0]))


def test_group_size_does_not_change_the_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal(256 * 200 + 17) * np.exp(rng.uniform(-30, 30, 256 * 200 + 17))
    default = fixed_sum(x)
    monkeypatch.setattr(red, "_GROUP_CHUNKS", 3)
    assert _same(fixed_sum(x), default)


def test_a_million_float32_values_across_groups() -> None:
    n = red._GROUP_CHUNKS * 256 + 1000  # more than one group of chunks, plus a tail
    x = np.random.default_rng(10).standard_normal(n).astype(np.float32)
    exact = math.fsum(x.astype(np.float64).tolist())
    assert abs(fixed_sum(x) - exact) <= math.ulp(exact)
