"""Encoder rules that the vector files do not pin: types, subclasses, paths, limits, the key cache."""

from __future__ import annotations

import array
import enum
import math
import struct
from collections import OrderedDict, defaultdict
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import pytest

from umlos.codec import MAX_DEPTH, CborError, decode, encode
from umlos.codec import _encode as encode_module
from umlos.codec._profile import ORDER_CACHE_MAX, ORDER_CACHE_MAX_KEYS
from umlos.errors import ContractViolationError, Error


def _fails(value: object, reason: str, path: str, **kwargs: Any) -> CborError:
    with pytest.raises(CborError) as info:
        encode(value, **kwargs)
    assert info.value.reason == reason
    assert info.value.path == path
    return info.value


def test_error_is_a_contract_violation_with_catalogue_code() -> None:
    err = _fails(2**64, "CBOR_INT_OUT_OF_RANGE", "$")
    assert isinstance(err, ContractViolationError)
    assert isinstance(err, Error)
    assert err.code_id == "CONTRACT_VIOLATION"
    assert err.offset is None
    assert str(err).endswith("— at $")


def test_bool_is_checked_before_int() -> None:
    assert encode([1, True, 0, False]).hex() == "8401f500f4"


def test_tuple_encodes_as_array_and_decodes_as_list() -> None:
    assert encode((1, (2, 3))) == encode([1, [2, 3]])
    assert decode(encode((1, (2, 3)))) == [1, [2, 3]]


@pytest.mark.parametrize(
    "value",
    [bytearray(b"\x01\x02"), memoryview(b"\x01\x02"), memoryview(b"\x00\x01\x02\x03")[1:3]],
    ids=["bytearray", "memoryview", "memoryview-slice"],
)
def test_byte_likes_encode_as_byte_strings(value: object) -> None:
    assert encode(value).hex() == "420102"
    assert encode([value]).hex() == "81420102"


def test_memoryview_of_wide_items_encodes_raw_bytes() -> None:
    words = array.array("I", [1, 2])
    assert encode(memoryview(words)) == encode(words.tobytes())


def test_non_contiguous_memoryview_is_copied_in_order() -> None:
    view = memoryview(b"abcdef")[::2]
    assert encode(view) == encode(b"ace")


def test_large_bytes_at_top_level_and_nested() -> None:
    blob = bytes(range(256)) * 300  # 76800 bytes: above the streaming threshold
    assert encode(blob) == b"\x5a\x00\x01\x2c\x00" + blob
    assert encode({"b": blob}) == b"\xa1\x61\x62\x5a\x00\x01\x2c\x00" + blob


def test_floats_never_shorten() -> None:
    assert encode(0.5).hex() == "fb3fe0000000000000"
    assert encode(65504.0).hex() == "fb40effc0000000000"  # the largest binary16 value


def test_nonfinite_allowed_by_default_and_refusable() -> None:
    assert encode(math.inf).hex() == "fb7ff0000000000000"
    assert encode(math.nan).hex() == "fb7ff8000000000000"
    _fails([math.inf], "CBOR_NONFINITE_FLOAT", "$[0]", allow_nonfinite=False)
    _fails({"x": -math.inf}, "CBOR_NONFINITE_FLOAT", "$.x", allow_nonfinite=False)
    assert encode(1.5, allow_nonfinite=False).hex() == "fb3ff8000000000000"


@pytest.mark.parametrize("bits", ["7ff8000000000001", "fff8000000000000", "7ff0000000000001"])
def test_other_nans_are_refused_even_when_nonfinite_is_allowed(bits: str) -> None:
    nan = struct.unpack(">d", bytes.fromhex(bits))[0]
    _fails(nan, "CBOR_NON_CANONICAL_NAN", "$", allow_nonfinite=True)
    _fails([nan], "CBOR_NON_CANONICAL_NAN", "$[0]", allow_nonfinite=False)


def test_lone_surrogate_is_refused_with_cause() -> None:
    err = _fails({"a": ["ok", "x\ud800"]}, "CBOR_INVALID_UTF8", "$.a[1]")
    assert isinstance(err.__cause__, UnicodeEncodeError)
    _fails({"\udfff": 1}, "CBOR_INVALID_UTF8", '$["\\udfff"]')


def test_text_is_not_normalised() -> None:
    assert encode("\u00e9") != encode("e\u0301")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1}, "$"),
        ([object()], "$[0]"),
        ({"when": Decimal("1.5")}, "$.when"),
        ({"a b": [0, 1j]}, '$["a b"][1]'),
        ({5: {"k": np.int64(3)}}, "$[5].k"),
        ({("x", 1): [None, frozenset()]}, "$[('x', 1)][1]"),
    ],
)
def test_unsupported_types_name_their_path(value: object, path: str) -> None:
    _fails(value, "CBOR_UNSUPPORTED_TYPE", path)


def test_path_index_points_at_first_failing_element() -> None:
    bad = object()
    _fails([1, 2, bad, bad], "CBOR_UNSUPPORTED_TYPE", "$[2]")


@pytest.mark.parametrize(
    ("key", "segment"),
    [(1.0, "[1.0]"), (True, "[True]"), (None, "[None]"), ((1, 2.5), "[(1, 2.5)][1]")],
)
def test_invalid_key_types(key: object, segment: str) -> None:
    _fails({"outer": {key: 1}}, "CBOR_INVALID_KEY", "$.outer" + segment)


def test_key_types_int_bytes_and_tuples_are_accepted() -> None:
    value = {(1, ("a", b"\x00")): 1, b"k": 2, -3: 3, "t": 4}
    assert decode(encode(value)) == value


def test_key_order_is_bytewise_over_encodings_not_length_first() -> None:
    # Length-first (RFC 7049) order would put "a" (2 bytes) before 1000 (3 bytes).
    assert encode({"a": 1, 1000: 2}).hex() == "a21903e8026161" + "01"


@pytest.mark.parametrize("order", [("a", "bb", "c"), ("c", "bb", "a"), ("bb", "a", "c")])
def test_insertion_order_does_not_matter(order: tuple[str, ...]) -> None:
    value = {k: len(k) for k in order}
    assert encode(value).hex() == "a3616101616301626262" + "02"


def test_key_cache_never_conflates_equal_keys_of_other_types() -> None:
    # 1 == 1.0 == True as dict keys; only all-str key tuples are cached, so these never share.
    assert encode({1: "x"}).hex() == "a1016178"
    _fails({True: "x"}, "CBOR_INVALID_KEY", "$[True]")
    _fails({1.0: "x"}, "CBOR_INVALID_KEY", "$[1.0]")


def test_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encode_module, "_ORDER_CACHE", {})
    for i in range(ORDER_CACHE_MAX + 10):
        encode({f"k{i}": 0, "z": 1})
    assert 0 < len(encode_module._ORDER_CACHE) <= ORDER_CACHE_MAX


def test_big_maps_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encode_module, "_ORDER_CACHE", {})
    encode({str(i): i for i in range(ORDER_CACHE_MAX_KEYS + 1)})
    assert encode_module._ORDER_CACHE == {}


class _Colour(enum.StrEnum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


class _Point(NamedTuple):
    x: int
    y: int


class _Loud(str):
    def __str__(self) -> str:
        return self.upper()


def test_subclasses_encode_as_their_base_value() -> None:
    assert encode(_Colour.RED) == encode("red")
    assert encode(_Level.HIGH) == encode(3)
    assert encode({_Colour.RED: _Level.HIGH}) == encode({"red": 3})
    assert encode(_Point(1, 2)) == encode([1, 2])
    assert encode(OrderedDict([("b", 1), ("a", 2)])) == encode({"a": 2, "b": 1})
    assert encode(defaultdict(list, {"a": []})) == encode({"a": []})
    assert encode(np.float64(1.5)) == encode(1.5)
    assert encode(_Loud("quiet")) == encode("quiet")  # overrides cannot change the value
    assert encode({_Point(1, 2): 0}) == encode({(1, 2): 0})


def test_duplicate_encoded_keys_are_refused() -> None:
    class Twin(str):
        # Distinct dict keys whose text is equal: the only way to reach a duplicate encoding.
        def __hash__(self) -> int:
            return id(self)

        def __eq__(self, other: object) -> bool:
            return self is other

    _fails({Twin("a"): 1, Twin("a"): 2}, "CBOR_DUPLICATE_KEY", "$.a")


def _nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth_limit_matches_decoder() -> None:
    ok = _nested_lists(MAX_DEPTH)
    assert decode(encode(ok)) == ok
    err = _fails(_nested_lists(MAX_DEPTH + 1), "CBOR_DEPTH_EXCEEDED", "$" + "[0]" * MAX_DEPTH)
    assert "256" in err.message


def test_depth_counts_maps_and_array_keys() -> None:
    value: Any = 0
    for _ in range(MAX_DEPTH):
        value = {"k": value}
    encode(value)
    _fails({"k": value}, "CBOR_DEPTH_EXCEEDED", "$" + ".k" * MAX_DEPTH)
    key: Any = ()  # the map is one level, the key tuples the other 255
    for _ in range(MAX_DEPTH - 2):
        key = (key,)
    encode({key: 0})
    with pytest.raises(CborError) as info:
        encode({(key,): 0})
    assert info.value.reason == "CBOR_DEPTH_EXCEEDED"


def test_self_referencing_list_fails_cleanly() -> None:
    loop: list[Any] = []
    loop.append(loop)
    _fails(loop, "CBOR_DEPTH_EXCEEDED", "$" + "[0]" * MAX_DEPTH)
