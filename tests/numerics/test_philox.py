"""Philox4x32-10: known answers, a differential test against a scalar reference, stream state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from umlos.errors import ContractViolationError, CounterOverflowError
from umlos.numerics import PhiloxStream, blocks, bounded_ints, permutation, philox4x32_10, words
from umlos.numerics.policy import UINT64_MAX

from . import scalar_reference as ref

KAT_FILE = Path(__file__).resolve().parents[1] / "vectors" / "philox4x32_10_kat.txt"
u32 = st.integers(0, 0xFFFFFFFF)


def _kat_rows() -> list[tuple[list[int], list[int], list[int]]]:
    rows = []
    for line in KAT_FILE.read_text(encoding="ascii").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rounds, *hexwords = line.split()
        assert (name, rounds) == ("philox4x32", "10")
        ws = [int(h, 16) for h in hexwords]
        rows.append((ws[0:4], ws[4:6], ws[6:10]))
    return rows


KAT = _kat_rows()


def test_kat_file_has_the_three_random123_vectors() -> None:
    assert len(KAT) == 3


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_known_answers(counter: list[int], key: list[int], expected: list[int]) -> None:
    out = philox4x32_10(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert out.dtype == np.uint32
    assert out.tolist() == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_scalar_reference_passes_known_answers(
    counter: list[int], key: list[int], expected: list[int]
) -> None:
    # The differential tests below are only as good as the reference: pin it to the KAT too.
    assert ref.philox(counter, key) == expected


def test_known_answers_as_one_batch() -> None:
    counters = np.array([c for c, _, _ in KAT], np.uint32)
    keys = np.array([k for _, k, _ in KAT], np.uint32)
    assert philox4x32_10(counters, keys).tolist() == [e for _, _, e in KAT]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(u32, min_size=4, max_size=4), st.lists(u32, min_size=2,
       max_size=2)), min_size=1, max_size=8))  # fmt: skip
def test_matches_scalar_reference(cases: list[tuple[list[int], list[int]]]) -> None:
    counters = np.array([c for c, _ in cases], np.uint32)
    keys = np.array([k for _, k in cases], np.uint32)
    assert philox4x32_10(counters, keys).tolist() == [ref.philox(c, k) for c, k in cases]


def test_broadcasts_one_key_over_many_counters() -> None:
    rng = np.random.default_rng(1)
    counters = rng.integers(0, 2**32, size=(3, 5, 4), dtype=np.uint32)
    key = np.array([0xA4093822, 0x299F31D0], np.uint32)
    out = philox4x32_10(counters, key)
    assert out.shape == (3, 5, 4)
    assert out[2, 4].tolist() == ref.philox(counters[2, 4].tolist(), key.tolist())


def test_broadcasts_one_counter_over_many_keys() -> None:
    counter = np.array([1, 2, 3, 4], np.uint32)
    keys = np.array([[0, 0], [5, 6], [0xFFFFFFFF, 7]], np.uint32).reshape(3, 1, 2)
    out = philox4x32_10(counter, keys)
    assert out.shape == (3, 1, 4)
    assert [row[0] for row in out.tolist()] == [ref.philox([1, 2, 3, 4], k) for k in
                                                 keys.reshape(3, 2).tolist()]  # fmt: skip


def test_many_blocks_cross_the_internal_tile_size() -> None:
    # 2^15 + 3 counters straddle a tile boundary; tiles must not change results.
    stream = PhiloxStream.from_seed(bytes(range(16)))
    out, _ = blocks(stream, (1 << 15) + 3)
    for i in (0, (1 << 15) - 1, 1 << 15, (1 << 15) + 2):
        expected = ref.philox(ref.counter_words(_base(stream) + i), list(stream.key))
        assert out[i].tolist() == expected


def test_empty_batch() -> None:
    out = philox4x32_10(np.zeros((0, 4), np.uint32), np.zeros(2, np.uint32))
    assert out.shape == (0, 4)


@pytest.mark.parametrize(
    ("counter", "key", "reason", "path"),
    [
        (np.zeros(4, np.int64), np.zeros(2, np.uint32), "NUMERIC_BAD_DTYPE", "$.counter"),
        ([0, 0, 0, 0], np.zeros(2, np.uint32), "NUMERIC_BAD_DTYPE", "$.counter"),
        (np.zeros(4, np.uint32), np.zeros(2, np.uint64), "NUMERIC_BAD_DTYPE", "$.key"),
        (np.zeros(3, np.uint32), np.zeros(2, np.uint32), "NUMERIC_BAD_SHAPE", "$.counter"),
        (np.zeros(4, np.uint32), np.zeros((2, 3), np.uint32), "NUMERIC_BAD_SHAPE", "$.key"),
        (np.zeros((), np.uint32), np.zeros(2, np.uint32), "NUMERIC_BAD_SHAPE", "$.counter"),
        (np.zeros((3, 4), np.uint32), np.zeros((2, 2), np.uint32), "NUMERIC_BAD_SHAPE", "$.key"),
    ],
)
def test_rejects_malformed_input(counter: object, key: object, reason: str, path: str) -> None:
    with pytest.raises(ContractViolationError) as info:
        philox4x32_10(counter, key)  # type: ignore[arg-type]
    assert (info.value.reason, info.value.path) == (reason, path)


# --- streams ----------------------------------------------------------------------------------


def _base(stream: PhiloxStream) -> int:
    return sum(w << (32 * i) for i, w in enumerate(stream.counter_base))


def test_from_seed_maps_bytes_little_endian() -> None:
    seed = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
    s = PhiloxStream.from_seed(seed)
    assert s.key == (0x04030201, 0x08070605)
    assert s.counter_base == (0x0C0B0A09, 0x100F0E0D, 0, 0)
    assert s.offset == 0


def test_32_byte_seed_uses_its_first_16_bytes() -> None:
    seed = bytes(range(32))
    assert PhiloxStream.from_seed(seed) == PhiloxStream.from_seed(seed[:16])


@pytest.mark.parametrize("seed", [b"", bytes(15), bytes(17), bytes(31), bytes(64), "x" * 16])
def test_from_seed_rejects_other_lengths(seed: bytes) -> None:
    with pytest.raises(ContractViolationError) as info:
        PhiloxStream.from_seed(seed)
    assert info.value.reason == "RNG_BAD_SEED"


def test_blocks_are_the_counters_base_plus_offset() -> None:
    s = PhiloxStream.from_seed(bytes(range(16)))
    first, s = blocks(s, 3)
    second, s = blocks(s, 2)
    assert s.offset == 5
    expected = [ref.philox(ref.counter_words(_base(s) + i), list(s.key)) for i in range(5)]
    assert np.concatenate([first, second]).tolist() == expected


def test_drawing_leaves_the_original_stream_unchanged() -> None:
    s = PhiloxStream.from_seed(bytes(16))
    a, _ = blocks(s, 4)
    b, _ = blocks(s, 4)
    assert s.offset == 0
    assert np.array_equal(a, b)


def test_counter_carries_across_all_four_words() -> None:
    s = PhiloxStream(key=(7, 9), counter_base=(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    assert s.advance(1).counter == (0, 0, 0, 1)
    out, s2 = blocks(s, 3)
    assert s2.counter == (2, 0, 0, 1)
    expected = [
        ref.philox([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0], [7, 9]),
        ref.philox([0, 0, 0, 1], [7, 9]),
        ref.philox([1, 0, 0, 1], [7, 9]),
    ]
    assert out.tolist() == expected


def test_counter_carries_from_word_1_into_word_2() -> None:
    s = PhiloxStream(key=(1, 2), counter_base=(0xFFFFFFFE, 0xFFFFFFFF, 5, 0))
    out, _ = blocks(s, 3)
    assert out[2].tolist() == ref.philox([0, 0, 6, 0], [1, 2])


def test_words_take_w0_to_w3_block_after_block() -> None:
    s = PhiloxStream.from_seed(bytes(range(16)))
    blk, _ = blocks(s, 2)
    w, s2 = words(s, 6)
    assert w.tolist() == blk.reshape(-1)[:6].tolist()
    assert s2.offset == 2  # the two unused words of block 1 are discarded
    _, s3 = words(s, 0)
    assert s3.offset == 0


def test_offset_overflow_is_a_counter_overflow() -> None:
    s = PhiloxStream(key=(0, 0), counter_base=(0, 0, 0, 0), offset=UINT64_MAX - 2)
    s = s.advance(2)
    assert s.offset == UINT64_MAX
    with pytest.raises(CounterOverflowError) as info:
        s.advance(1)
    assert info.value.context == {"counter_name": "rng_offset", "counter_value": UINT64_MAX}
    with pytest.raises(CounterOverflowError):
        blocks(PhiloxStream((0, 0), (0, 0, 0, 0), UINT64_MAX - 1), 2)
    with pytest.raises(CounterOverflowError):
        PhiloxStream((0, 0), (0, 0, 0, 0), UINT64_MAX + 1)


def test_128_bit_counter_never_wraps() -> None:
    top = (0xFFFFFFFF,) * 4
    with pytest.raises(CounterOverflowError):
        PhiloxStream(key=(0, 0), counter_base=top, offset=1)
    with pytest.raises(CounterOverflowError) as info:
        blocks(PhiloxStream(key=(0, 0), counter_base=top), 1)
    assert info.value.context["counter_name"] == "philox_counter"


def test_draws_up_to_the_last_block_succeed_despite_read_ahead() -> None:
    # Transforms read words ahead speculatively; near the end of the offset space that must
    # not raise while the words actually consumed still fit.
    s = PhiloxStream(key=(3, 4), counter_base=(0, 0, 0, 0), offset=UINT64_MAX - 3)
    _, s2 = bounded_ints(s, 6, 8)  # 8 words = 2 blocks, about 3 available
    assert s2.offset <= UINT64_MAX
    p, _ = permutation(PhiloxStream((3, 4), (0, 0, 0, 0), UINT64_MAX - 2), 5)
    assert sorted(p.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(CounterOverflowError):
        bounded_ints(s, 6, 17)  # 17 words need 5 blocks


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"key": (0, 2**32), "counter_base": (0, 0, 0, 0)}, "$.key[1]"),
        ({"key": (0, 0), "counter_base": (0, 0, -1, 0)}, "$.counter_base[2]"),
        ({"key": [0, 0], "counter_base": (0, 0, 0, 0)}, "$.key"),
        ({"key": (0, 0), "counter_base": (0, 0, 0)}, "$.counter_base"),
        ({"key": (0, 0), "counter_base": (0, 0, 0, 0), "offset": -1}, "$.offset"),
        ({"key": (0, 0.0), "counter_base": (0, 0, 0, 0)}, "$.key[1]"),
    ],
)
def test_stream_rejects_bad_fields(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(ContractViolationError) as info:
        PhiloxStream(**kwargs)  # type: ignore[arg-type]
    assert info.value.path == path


@pytest.mark.parametrize("n", [-1, 1.0, True, "3"])
def test_draw_counts_must_be_non_negative_integers(n: object) -> None:
    with pytest.raises(ContractViolationError):
        blocks(PhiloxStream.from_seed(bytes(16)), n)  # type: ignore[arg-type]


def test_numpy_integer_counts_are_accepted() -> None:
    out, s = blocks(PhiloxStream.from_seed(bytes(16)), np.int64(2))
    assert out.shape == (2, 4) and s.offset == 2


def test_rng_state_records_the_current_counter() -> None:
    s = PhiloxStream(key=(1, 2), counter_base=(0xFFFFFFFF, 3, 0, 0)).advance(2)
    assert s.rng_state() == ("rng_state_v1", 1, 2, 1, 4, 0, 0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.binary(min_size=16, max_size=16),
    before=st.integers(0, 40),
    after=st.integers(0, 40),
)
def test_restore_mid_stream_gives_the_same_subsequent_draws(
    seed: bytes, before: int, after: int
) -> None:
    s = PhiloxStream.from_seed(seed)
    _, mid = blocks(s, before)
    saved_state, saved_offset = mid.rng_state(), mid.offset
    continued, _ = blocks(mid, after)
    restored = PhiloxStream.from_rng_state(list(saved_state), saved_offset)
    assert restored == mid
    again, _ = blocks(restored, after)
    assert np.array_equal(continued, again)


@pytest.mark.parametrize(
    ("state", "offset", "path"),
    [
        (("rng_state", 0, 0, 0, 0, 0, 0), 0, "$.rng_state"),
        (("rng_state_v1", 0, 0, 0, 0, 0), 0, "$.rng_state"),
        (("rng_state_v1", 0, 0, 2**32, 0, 0, 0), 0, "$.rng_state[3]"),
        (("rng_state_v1", 0, 0, 3, 0, 0, 0), 4, "$.offset"),
        (("rng_state_v1", 0, 0, 3, 0, 0, 0), -1, "$.offset"),
    ],
)
def test_from_rng_state_rejects_inconsistent_state(
    state: tuple[object, ...], offset: int, path: str
) -> None:
    with pytest.raises(ContractViolationError) as info:
        PhiloxStream.from_rng_state(state, offset)
    assert info.value.path == path
