"""Decoder behaviour beyond the vector file: inputs, limits, and the cbor2 fast path's safety."""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import cbor2
import pytest

from umlos.codec import MAX_DEPTH, CborError, decode, encode
from umlos.codec._decode import _CBOR2_NATIVE_TAGS, _MISS, fast_decode
from umlos.codec._strict import decode_strict


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 256**size:
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise AssertionError(n)


def _reason(data: bytes) -> tuple[str, int | None]:
    with pytest.raises(CborError) as info:
        decode(data)
    return info.value.reason, info.value.offset


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda t: t.__name__)
def test_accepts_byte_likes(wrap: Any) -> None:
    assert decode(wrap(bytes.fromhex("a1616101"))) == {"a": 1}


def test_refuses_non_bytes_input() -> None:
    with pytest.raises(CborError) as info:
        decode("a0")  # type: ignore[arg-type]
    assert info.value.reason == "CBOR_UNSUPPORTED_TYPE"


def test_signed_zero_and_nan_come_back_exactly() -> None:
    neg_zero = decode(bytes.fromhex("fb8000000000000000"))
    assert isinstance(neg_zero, float)
    assert math.copysign(1.0, neg_zero) == -1.0
    nan = decode(bytes.fromhex("fb7ff8000000000000"))
    assert isinstance(nan, float)
    assert struct.pack(">d", nan).hex() == "7ff8000000000000"


def test_array_keys_come_back_as_tuples() -> None:
    value = decode(encode({(1, ("a", b"")): [1, [2]]}))
    assert value == {(1, ("a", b"")): [1, [2]]}
    assert isinstance(value, dict)
    (key,) = value
    assert type(key) is tuple and type(key[1]) is tuple


def test_utf8_error_keeps_its_cause() -> None:
    with pytest.raises(CborError) as info:
        decode(bytes.fromhex("8262616161ff"))
    assert info.value.reason == "CBOR_INVALID_UTF8"
    assert info.value.offset == 4
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_error_message_names_the_byte_offset() -> None:
    with pytest.raises(CborError) as info:
        decode(bytes.fromhex("a2616201616102"))
    assert str(info.value).endswith("— at byte 4")


@pytest.mark.parametrize("major", [2, 3, 4, 5])
@pytest.mark.parametrize("declared", [2**16, 2**32 - 1, 2**63, 2**64 - 1])
def test_huge_declared_lengths_fail_at_once(major: int, declared: int) -> None:
    data = _head(major, declared) + b"\x00" * 16
    tracemalloc.start()
    try:
        assert _reason(data) == ("CBOR_LENGTH_EXCEEDED", 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # rejected from the head alone: nothing near the declared size allocated


def test_many_small_items_decode() -> None:
    data = _head(4, 200_000) + b"\x80" * 200_000
    assert decode(data) == [[]] * 200_000


def test_depth_boundary_agrees_between_paths() -> None:
    ok = b"\x81" * MAX_DEPTH + b"\x00"
    assert fast_decode(ok) is not _MISS  # canonical input stays on the fast path
    assert decode(ok) == decode_strict(ok)
    too_deep = b"\x81" * (MAX_DEPTH + 1) + b"\x00"
    assert fast_decode(too_deep) is _MISS
    assert _reason(too_deep) == ("CBOR_DEPTH_EXCEEDED", MAX_DEPTH)


def test_deep_array_keys_count_towards_depth() -> None:
    key = b"\x81" * (MAX_DEPTH - 1) + b"\x00"  # the map is the 256th level
    assert decode(b"\xa1" + key + b"\x00")
    assert _reason(b"\xa1\x81" + key + b"\x00") == ("CBOR_DEPTH_EXCEEDED", MAX_DEPTH)


def test_fast_path_rejects_every_tag() -> None:
    # cbor2 resolves some tags natively (dates, bignums, value sharing, string references …);
    # every one of them must fail inside cbor2, or a shared graph could blow up on re-encoding.
    tags = [*range(0x10000), 2**32 - 1, 2**32, 2**64 - 1]
    for tag in tags:
        for payload in (b"\x00", b"\x80"):
            assert fast_decode(_head(6, tag) + payload) is _MISS, tag


def test_native_tag_list_matches_cbor2() -> None:
    class SeenError(Exception):
        pass

    def hook(*_args: object) -> None:
        raise SeenError

    native = []
    for tag in [*range(0x10000), 2**32 - 1, 2**32, 2**64 - 1]:
        for payload in (b"\x00", b"\x80", b"\x60"):
            try:
                cbor2.loads(_head(6, tag) + payload, tag_hook=hook)
            except cbor2.CBORDecodeError as exc:
                if isinstance(exc.__cause__, SeenError):
                    continue  # reached tag_hook: not native
            except SeenError:
                continue
            native.append(tag)
            break
    assert set(native) <= set(_CBOR2_NATIVE_TAGS)


def test_value_sharing_bomb_is_rejected_without_expanding() -> None:
    # [shareable x, ref, ref] nested 40 deep would be a 2^40-node tree if resolved.
    data = b""
    for _ in range(40):
        data = b"\xd8\x1c\x82" + (data or b"\x00") + b"\xd8\x1d\x00"
    tracemalloc.start()
    try:
        assert _reason(data)[0] == "CBOR_FORBIDDEN_TAG"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # a resolved graph would need far more than this


def test_strict_decoder_returns_value_when_cbor2_is_merely_stricter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise cbor2.CBORDecodeError("refused")

    monkeypatch.setattr(cbor2, "loads", refuse)
    assert decode(bytes.fromhex("a1616101")) == {"a": 1}
