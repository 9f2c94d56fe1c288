"""Property tests: round trip, order invariance, differential checks, hostile input.

The default suite stays fast; set UMLOS_CODEC_EXAMPLES=<factor> to multiply every example count
(e.g. 50 for a long fuzzing run).
"""

from __future__ import annotations

import math
import os
import random
import struct
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.codec.codec_helpers import same
from umlos.codec import CborError, decode, encode
from umlos.codec._decode import _MISS, fast_decode
from umlos.codec._strict import decode_strict

_SCALE = int(os.environ.get("UMLOS_CODEC_EXAMPLES", "1"))
FAST = settings(
    max_examples=200 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MANY = settings(
    max_examples=600 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

BOUNDARY_INTS = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
ints = st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.sampled_from(
    BOUNDARY_INTS + [-1 - n for n in BOUNDARY_INTS]
)
floats = st.floats(allow_nan=False) | st.sampled_from([math.nan, 0.0, -0.0, math.inf, -math.inf])
scalars = st.none() | st.booleans() | ints | floats | st.text(max_size=12) | st.binary(max_size=40)
keys = st.recursive(
    st.text(max_size=6) | ints | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=4,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)
text_key_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every dict rebuilt in a random insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _write_binary64(encoder: Any, value: float) -> None:
    encoder.write(struct.pack(">Bd", 0xFB, value))


def _check_decoders_agree(data: bytes) -> None:
    """decode() accepts only canonical bytes, fails only with CborError, and the two paths agree."""
    fast = fast_decode(data)
    try:
        strict = decode_strict(data)
    except CborError:
        assert fast is _MISS, "fast path accepted what the strict decoder rejects"
        try:
            decode(data)
        except CborError:
            return
        raise AssertionError("decode() accepted what the strict decoder rejects") from None
    assert encode(strict) == data, "strict decoder accepted non-canonical bytes"
    if fast is not _MISS:
        assert same(fast, strict)
    assert same(decode(data), strict)


@FAST
@given(values)
def test_round_trip_is_type_exact(value: Any) -> None:
    data = encode(value)
    assert same(decode(data), value)
    assert same(decode_strict(data), value)
    assert fast_decode(data) is not _MISS  # canonical input never needs the slow path


@FAST
@given(values, st.randoms(use_true_random=False))
def test_encoding_ignores_insertion_order(value: Any, rng: random.Random) -> None:
    assert encode(_shuffled(value, rng)) == encode(value)


@FAST
@given(text_key_values)
def test_encoder_matches_cbor2_canonical_on_text_keys(value: Any) -> None:
    # An independent encoder: with text keys only, cbor2's length-first order equals bytewise
    # order; floats are forced to binary64 since cbor2's canonical mode shortens them.
    expected = cbor2.dumps(value, canonical=True, encoders={float: _write_binary64})
    assert encode(value) == expected


@MANY
@given(st.binary(max_size=48))
def test_random_bytes_only_raise_cbor_error(data: bytes) -> None:
    _check_decoders_agree(data)


@MANY
@given(
    values,
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
            st.integers(0, 2**16),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_encodings(value: Any, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(encode(value))
    for op, where, byte in edits:
        i = where % (len(data) + 1)
        if op == "insert":
            data.insert(i, byte)
        elif not data:
            continue
        elif op == "truncate":
            del data[i % len(data) :]
        elif op == "delete":
            del data[i % len(data)]
        elif op == "flip":
            data[i % len(data)] ^= 1 << (byte % 8)
        else:
            data[i % len(data)] = byte
    _check_decoders_agree(bytes(data))


@FAST
@given(
    st.recursive(
        st.none() | st.integers() | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    st.booleans(),
)
def test_cbor2_output_is_judged_like_any_input(value: Any, canonical: bool) -> None:
    # cbor2 writes short floats, bignums and length-first keys: plausible non-canonical input.
    _check_decoders_agree(cbor2.dumps(value, canonical=canonical))
