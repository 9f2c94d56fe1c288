"""Strict canonical-CBOR decoder (pure Python, no cbor2).

It is the authority on what is canonical: every rejection names the rule (a ``CBOR_*`` reason) and
the byte offset of the item that breaks it. It shares no code with the encoder or with cbor2, so
it doubles as the independent implementation in the differential tests.

Checks run in the order "is the item complete and well formed" (truncation, reserved values,
declared lengths against the remaining input) before "is it allowed and canonical", so a cut-off
input is reported as truncated even when its first bytes are also non-canonical.
"""

from __future__ import annotations

import math
import struct

from umlos.codec._errors import CborError, CborReason
from umlos.codec._profile import CANONICAL_NAN, MAX_DEPTH

_BE16 = struct.Struct(">H").unpack_from
_BE32 = struct.Struct(">I").unpack_from
_BE64 = struct.Struct(">Q").unpack_from
_F64 = struct.Struct(">d").unpack_from

_MAJOR_NAMES = ("uint", "nint", "byte string", "text string", "array", "map", "tag", "simple")
# Smallest argument that needs each head size: a smaller one must use the shorter head.
_MIN_FOR_SIZE = {1: 24, 2: 0x100, 4: 0x10000, 8: 0x100000000}


def _fail(reason: CborReason, message: str, offset: int) -> CborError:
    return CborError(message, reason=reason, offset=offset)


def decode_strict(data: bytes) -> object:
    """Decode one canonical CBOR item that spans all of ``data``; raise CborError otherwise."""
    end = len(data)
    if end == 0:
        raise _fail("CBOR_TRUNCATED", "empty input: expected one CBOR item", 0)
    value, pos = _item(data, 0, end, 0)
    if pos != end:
        raise _fail("CBOR_TRAILING_BYTES", f"{end - pos} byte(s) after the top-level item", pos)
    return value


def _argument(data: bytes, pos: int, end: int, ai: int) -> tuple[int, int]:
    """Read the head at ``pos`` whose additional information is 24..27: (argument, next pos)."""
    size = 1 << (ai - 24)
    if pos + 1 + size > end:
        raise _fail(
            "CBOR_TRUNCATED", f"input ends inside a head that needs {size} argument byte(s)", pos
        )
    if size == 1:
        n = data[pos + 1]
    elif size == 2:
        n = _BE16(data, pos + 1)[0]
    elif size == 4:
        n = _BE32(data, pos + 1)[0]
    else:
        n = _BE64(data, pos + 1)[0]
    return n, pos + 1 + size


def _check_shortest(n: int, ai: int, pos: int) -> None:
    if n < _MIN_FOR_SIZE[1 << (ai - 24)]:
        raise _fail(
            "CBOR_NON_CANONICAL",
            f"argument {n} uses {1 << (ai - 24)} byte(s) where a shorter head fits",
            pos,
        )


def _item(data: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    ib = data[pos]
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        return _simple_or_float(data, pos, end, ai)
    if ai < 24:
        n, p = ai, pos + 1
    elif ai < 28:
        n, p = _argument(data, pos, end, ai)
        if major == 6:  # reported as a tag even when its head is also not the shortest
            raise _fail("CBOR_FORBIDDEN_TAG", f"tag {n} is not allowed", pos)
        _check_shortest(n, ai, pos)
    elif ai == 31 and 2 <= major <= 5:
        raise _fail(
            "CBOR_INDEFINITE_LENGTH", f"indefinite-length {_MAJOR_NAMES[major]} is not allowed", pos
        )
    else:  # 28..30 are reserved; 31 is ill-formed on integers and tags (RFC 8949 §3)
        raise _fail(
            "CBOR_INVALID_ITEM",
            f"initial byte 0x{ib:02x}: additional information {ai} is not valid for "
            f"major type {major}",
            pos,
        )

    if major == 0:
        return n, p
    if major == 1:
        return -1 - n, p
    if major in (2, 3):
        q = p + n
        if q > end:
            raise _fail(
                "CBOR_LENGTH_EXCEEDED",
                f"{_MAJOR_NAMES[major]} declares {n} bytes but only {end - p} remain",
                pos,
            )
        if major == 2:
            return data[p:q], q
        try:
            return data[p:q].decode("utf-8"), q
        except UnicodeDecodeError as exc:
            err = _fail(
                "CBOR_INVALID_UTF8", f"text string is not valid UTF-8 (at byte {exc.start})", pos
            )
            raise err from exc
    if major == 6:
        raise _fail("CBOR_FORBIDDEN_TAG", f"tag {n} is not allowed", pos)
    # Arrays and maps: every element needs at least one byte, so a count larger than the rest of
    # the input fails here, before any allocation or loop.
    if depth >= MAX_DEPTH:
        raise _fail("CBOR_DEPTH_EXCEEDED", f"more than {MAX_DEPTH} nested containers", pos)
    if major == 4:
        if n > end - p:
            raise _fail(
                "CBOR_LENGTH_EXCEEDED",
                f"array declares {n} items but only {end - p} bytes remain",
                pos,
            )
        items: list[object] = []
        for _ in range(n):
            if p >= end:
                raise _fail("CBOR_TRUNCATED", "input ends where an array item was expected", p)
            value, p = _item(data, p, end, depth + 1)
            items.append(value)
        return items, p
    if 2 * n > end - p:
        raise _fail(
            "CBOR_LENGTH_EXCEEDED",
            f"map declares {n} entries but only {end - p} bytes remain",
            pos,
        )
    out: dict[object, object] = {}
    previous = b""
    for _ in range(n):
        start = p
        if p >= end:
            raise _fail("CBOR_TRUNCATED", "input ends where a map key was expected", p)
        key, p = _key(data, p, end, depth + 1)
        encoded = data[start:p]
        if encoded <= previous:  # RFC 8949 §4.2.1: bytewise order of the encoded keys
            if encoded == previous:
                raise _fail("CBOR_DUPLICATE_KEY", f"duplicate map key {key!r}", start)
            raise _fail(
                "CBOR_NON_CANONICAL",
                f"map key {key!r} is out of order (keys sort by their encoded bytes)",
                start,
            )
        previous = encoded
        if p >= end:
            raise _fail("CBOR_TRUNCATED", "input ends where a map value was expected", p)
        out[key], p = _item(data, p, end, depth + 1)
    return out, p


def _key(data: bytes, pos: int, end: int, depth: int) -> tuple[object, int]:
    """A map key: text, integer, byte string, or an array of those (returned as a tuple)."""
    major = data[pos] >> 5
    if major <= 3:
        return _item(data, pos, end, depth)
    if major == 4:
        ai = data[pos] & 0x1F
        if ai >= 28:
            return _item(data, pos, end, depth)  # raises the precise head error
        if depth >= MAX_DEPTH:
            raise _fail("CBOR_DEPTH_EXCEEDED", f"more than {MAX_DEPTH} nested containers", pos)
        if ai < 24:
            n, p = ai, pos + 1
        else:
            n, p = _argument(data, pos, end, ai)
            _check_shortest(n, ai, pos)
        if n > end - p:
            raise _fail(
                "CBOR_LENGTH_EXCEEDED",
                f"array declares {n} items but only {end - p} bytes remain",
                pos,
            )
        parts: list[object] = []
        for _ in range(n):
            if p >= end:
                raise _fail("CBOR_TRUNCATED", "input ends where an array item was expected", p)
            value, p = _key(data, p, end, depth + 1)
            parts.append(value)
        return tuple(parts), p
    if major == 5:
        raise _fail("CBOR_INVALID_KEY", "a map is not allowed as a map key", pos)
    # Tags, simple values and floats: report their own defect first, else the key type.
    value, _ = _item(data, pos, end, depth)
    raise _fail(
        "CBOR_INVALID_KEY",
        f"map key {value!r} of type {type(value).__name__} is not allowed "
        "(keys are text, integers, byte strings, or arrays of those)",
        pos,
    )


def _simple_or_float(data: bytes, pos: int, end: int, ai: int) -> tuple[object, int]:
    if ai == 20:
        return False, pos + 1
    if ai == 21:
        return True, pos + 1
    if ai == 22:
        return None, pos + 1
    if ai == 27:
        if pos + 9 > end:
            raise _fail("CBOR_TRUNCATED", "input ends inside a binary64 float", pos)
        raw = data[pos + 1 : pos + 9]
        value: float = _F64(raw)[0]
        if math.isnan(value) and raw != CANONICAL_NAN:
            raise _fail(
                "CBOR_NON_CANONICAL_NAN",
                f"NaN with bit pattern {raw.hex()}; the only NaN allowed is {CANONICAL_NAN.hex()}",
                pos,
            )
        return value, pos + 9
    if ai in (25, 26):
        size = 2 if ai == 25 else 4
        if pos + 1 + size > end:
            raise _fail("CBOR_TRUNCATED", f"input ends inside a {8 * size}-bit float", pos)
        raise _fail(
            "CBOR_NON_CANONICAL", f"{8 * size}-bit float: every float must be binary64", pos
        )
    if ai < 24:  # 0..19 unassigned, 23 is `undefined`
        raise _fail("CBOR_FORBIDDEN_SIMPLE", f"simple value {ai} is not allowed", pos)
    if ai == 24:
        if pos + 2 > end:
            raise _fail("CBOR_TRUNCATED", "input ends inside a simple value", pos)
        value_byte = data[pos + 1]
        if value_byte < 32:  # RFC 8949 §3.3: two-byte simple values below 32 are not well formed
            raise _fail("CBOR_INVALID_ITEM", f"simple value {value_byte} in the two-byte form", pos)
        raise _fail("CBOR_FORBIDDEN_SIMPLE", f"simple value {value_byte} is not allowed", pos)
    if ai == 31:
        raise _fail("CBOR_INVALID_ITEM", "break stop code outside an indefinite-length item", pos)
    raise _fail("CBOR_INVALID_ITEM", f"initial byte 0x{0xE0 | ai:02x} is reserved", pos)
