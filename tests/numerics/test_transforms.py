"""Transforms: pinned golden values, the scalar definitions, ranges, and words consumed."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from umlos.errors import ContractViolationError
from umlos.numerics import (
    PhiloxStream,
    bounded_ints,
    bounded_ints_varying,
    normal_f64,
    permutation,
    uniform_f32,
    uniform_f64,
)
from umlos.numerics.transforms import _f32_from_words, _f64_from_words

from . import scalar_reference as ref

GOLDEN_FILE = Path(__file__).resolve().parents[1] / "vectors" / "philox_transforms.json"
GOLDEN: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
SEED = bytes.fromhex(GOLDEN["seed_hex"])
seeds = st.binary(min_size=16, max_size=16)
# Bounds that stress the rejection path: 2^31 + 1 rejects almost half of all words.
bounds = st.one_of(
    st.sampled_from([1, 2, 3, 2**31, 2**31 + 1, 2**32 - 1, 2**32]),
    st.integers(1, 2**32),
)


def _fresh() -> PhiloxStream:
    return PhiloxStream.from_seed(SEED)


def _ref_stream(seed: bytes) -> ref.ScalarStream:
    key, base = ref.seed_state(seed)
    return ref.ScalarStream(key, base)


# --- golden values ----------------------------------------------------------------------------


def test_golden_stream_mapping() -> None:
    s = _fresh()
    assert list(s.key) == GOLDEN["key"]
    assert list(s.counter_base) == GOLDEN["counter_base"]


def test_golden_uniform_f32() -> None:
    g = GOLDEN["uniform_f32"]
    u, s = uniform_f32(_fresh(), g["count"])
    assert u.dtype == np.float32
    assert [float(v).hex() for v in u] == g["values_hex"]
    assert s.offset == g["offset_after"]


def test_golden_uniform_f64() -> None:
    g = GOLDEN["uniform_f64"]
    u, s = uniform_f64(_fresh(), g["count"])
    assert u.dtype == np.float64
    assert [float(v).hex() for v in u] == g["values_hex"]
    assert s.offset == g["offset_after"]


@pytest.mark.parametrize("g", GOLDEN["bounded_ints"], ids=lambda g: f"bound={g['bound']}")
def test_golden_bounded_ints(g: dict[str, Any]) -> None:
    x, s = bounded_ints(_fresh(), g["bound"], g["count"])
    assert x.tolist() == g["values"]
    assert s.offset == g["offset_after"]
    y, s2 = bounded_ints_varying(_fresh(), [g["bound"]] * g["count"])
    assert y.tolist() == g["values"]
    assert s2.offset == g["offset_after"]


def test_golden_covers_the_required_bounds() -> None:
    covered = {g["bound"] for g in GOLDEN["bounded_ints"]}
    assert {1, 2**32 - 1, 6, 1000003} <= covered
    # The golden set must include a bound whose draws actually rejected words.
    assert any(g["offset_after"] > -(-g["count"] // 4) for g in GOLDEN["bounded_ints"])


def test_golden_normals_within_libm_tolerance() -> None:
    g = GOLDEN["normal_f64"]
    z, s = normal_f64(_fresh(), g["count"])
    expected = np.array([float.fromhex(h) for h in g["values_hex"]])
    # log/cos/sin may differ in the last bits between libm and numpy's SIMD kernels.
    np.testing.assert_allclose(z, expected, rtol=1e-14, atol=1e-300)
    assert s.offset == g["offset_after"]


def test_golden_permutation_of_10() -> None:
    g = GOLDEN["permutation_10"]
    p, s = permutation(_fresh(), 10)
    assert p.tolist() == g["values"]
    assert s.offset == g["offset_after"]


def test_golden_permutation_of_1000() -> None:
    g = GOLDEN["permutation_1000"]
    p, s = permutation(_fresh(), 1000)
    digest = hashlib.sha256(p.astype("<u4").tobytes()).hexdigest()
    assert digest == g["sha256_u32le"]
    assert s.offset == g["offset_after"]


def test_golden_file_is_what_the_reference_generates() -> None:
    from .regen_golden import build

    assert build() | {"normal_f64": GOLDEN["normal_f64"]} == GOLDEN


# --- definitions against the scalar reference ---------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 41), skip=st.integers(0, 5))
def test_uniforms_match_scalar_definition(seed: bytes, n: int, skip: int) -> None:
    s = PhiloxStream.from_seed(seed).advance(skip)
    r32 = ref.ScalarStream(*ref.seed_state(seed), offset=skip)
    u32, s32 = uniform_f32(s, n)
    assert u32.tolist() == ref.uniform_f32(r32, n)
    assert s32.offset == r32.offset
    r64 = ref.ScalarStream(*ref.seed_state(seed), offset=skip)
    u64, s64 = uniform_f64(s, n)
    assert u64.tolist() == ref.uniform_f64(r64, n)
    assert s64.offset == r64.offset


@settings(max_examples=60, deadline=None)
@given(seed=seeds, bound=bounds, n=st.integers(0, 40))
def test_bounded_ints_match_scalar_lemire(seed: bytes, bound: int, n: int) -> None:
    r = _ref_stream(seed)
    expected = ref.bounded_ints(r, [bound] * n)
    x, s = bounded_ints(PhiloxStream.from_seed(seed), bound, n)
    assert x.tolist() == expected
    assert s.offset == r.offset


@settings(max_examples=60, deadline=None)
@given(seed=seeds, bs=st.lists(bounds, max_size=40))
def test_varying_bounds_match_scalar_lemire(seed: bytes, bs: list[int]) -> None:
    r = _ref_stream(seed)
    expected = ref.bounded_ints(r, bs)
    x, s = bounded_ints_varying(PhiloxStream.from_seed(seed), np.array(bs, np.uint64))
    assert x.tolist() == expected
    assert s.offset == r.offset


def test_varying_bounds_with_many_rejections_match_scalar_lemire() -> None:
    # Alternating bounds defeat the single-bound fast path and reject often, exercising the
    # window shrinking and read-ahead of the vectorized scan.
    bs = [2**31 + 1, 2**31 + 3] * 600
    r = _ref_stream(SEED)
    expected = ref.bounded_ints(r, bs)
    x, s = bounded_ints_varying(_fresh(), bs)
    assert x.tolist() == expected
    assert s.offset == r.offset


def test_large_single_bound_draw_matches_scalar_lemire() -> None:
    # Long enough for the read-ahead to need more than one round.
    r = _ref_stream(SEED)
    expected = ref.bounded_ints(r, [2**31 + 1] * 5000)
    x, s = bounded_ints(_fresh(), 2**31 + 1, 5000)
    assert x.tolist() == expected
    assert s.offset == r.offset


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 300))
def test_permutation_matches_scalar_fisher_yates(seed: bytes, n: int) -> None:
    r = _ref_stream(seed)
    expected = ref.permutation(r, n)
    p, s = permutation(PhiloxStream.from_seed(seed), n)
    assert p.tolist() == expected
    assert s.offset == r.offset


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 21))
def test_normals_match_scalar_box_muller(seed: bytes, n: int) -> None:
    r = _ref_stream(seed)
    expected = ref.normals(r, n)
    z, s = normal_f64(PhiloxStream.from_seed(seed), n)
    np.testing.assert_allclose(z, expected, rtol=1e-14, atol=1e-300)
    assert s.offset == r.offset


# --- ranges and shapes --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 2000))
def test_uniforms_lie_in_the_half_open_unit_interval(seed: bytes, n: int) -> None:
    s = PhiloxStream.from_seed(seed)
    u32, _ = uniform_f32(s, n)
    u64, _ = uniform_f64(s, n)
    for u in (u32, u64):
        assert u.shape == (n,)
        assert bool(((u >= 0.0) & (u < 1.0)).all())


def test_uniform_extremes_from_extreme_words() -> None:
    # The word -> float maps at their ends: all-zero words give 0.0 and all-one words the largest
    # float below 1.0 (the formulas never round up to 1.0).
    w = np.array([0, 0, 0xFFFFFFFF, 0xFFFFFFFF], np.uint32)
    assert _f32_from_words(w).tolist() == [0.0, 0.0, 1.0 - 2.0**-24, 1.0 - 2.0**-24]
    assert _f64_from_words(w).tolist() == [0.0, 1.0 - 2.0**-53]
    # wa supplies the high 32 bits, wb's top 21 bits the low ones.
    pair = np.array([1, 0x80000000], np.uint32)
    assert _f64_from_words(pair).tolist() == [((1 << 21) | (1 << 20)) / 2**53]


@settings(max_examples=40, deadline=None)
@given(seed=seeds, bound=bounds, n=st.integers(0, 500))
def test_bounded_ints_lie_in_range(seed: bytes, bound: int, n: int) -> None:
    x, _ = bounded_ints(PhiloxStream.from_seed(seed), bound, n)
    assert x.dtype == np.int64
    assert bool(((x >= 0) & (x < bound)).all())


@settings(max_examples=30, deadline=None)
@given(seed=seeds, n=st.integers(0, 3000))
def test_permutation_is_a_bijection(seed: bytes, n: int) -> None:
    p, _ = permutation(PhiloxStream.from_seed(seed), n)
    assert p.dtype == np.int64
    assert np.array_equal(np.sort(p), np.arange(n))


def test_normals_consume_one_block_per_pair() -> None:
    _, s = normal_f64(_fresh(), 4)
    assert s.offset == 2
    z5, s5 = normal_f64(_fresh(), 5)
    z6, _ = normal_f64(_fresh(), 6)
    assert s5.offset == 3
    assert np.array_equal(z5, z6[:5])


def test_normals_have_plausible_moments() -> None:
    # A smoke test of the whole pipeline, not a statistical proof: 4σ bounds for 2^16 samples.
    z, _ = normal_f64(_fresh(), 1 << 16)
    assert abs(float(z.mean())) < 4 / math.sqrt(z.size)
    assert abs(float(z.var()) - 1.0) < 4 * math.sqrt(2 / z.size)


def test_bounded_ints_are_unbiased_for_a_small_bound() -> None:
    x, _ = bounded_ints(_fresh(), 6, 60000)
    counts = np.bincount(x, minlength=6)
    expected = 10000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 25.7  # chi-square 0.9999 quantile, 5 degrees of freedom


def test_zero_and_one_element_permutations_draw_nothing() -> None:
    for n in (0, 1):
        p, s = permutation(_fresh(), n)
        assert p.tolist() == list(range(n))
        assert s.offset == 0


@pytest.mark.parametrize("bound", [0, -1, 2**32 + 1])
def test_bounds_outside_1_to_2_32_are_rejected(bound: int) -> None:
    with pytest.raises(ContractViolationError) as info:
        bounded_ints(_fresh(), bound, 1)
    assert info.value.path == "$.bound"
    with pytest.raises(ContractViolationError) as info:
        bounded_ints_varying(_fresh(), np.array([3, bound], np.int64))
    assert info.value.path == "$.bounds"


@pytest.mark.parametrize(
    ("bs", "reason"),
    [
        (np.array([1.5, 2.0]), "NUMERIC_BAD_DTYPE"),
        (np.array([True, True]), "NUMERIC_BAD_DTYPE"),
        (["a"], "NUMERIC_BAD_DTYPE"),
        (np.array([[2, 3]]), "NUMERIC_BAD_SHAPE"),
        (5, "NUMERIC_BAD_SHAPE"),
    ],
)
def test_varying_bounds_must_be_a_1d_integer_array(bs: object, reason: str) -> None:
    with pytest.raises(ContractViolationError) as info:
        bounded_ints_varying(_fresh(), bs)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_empty_varying_bounds_draw_nothing() -> None:
    x, s = bounded_ints_varying(_fresh(), [])
    assert x.shape == (0,) and s.offset == 0
