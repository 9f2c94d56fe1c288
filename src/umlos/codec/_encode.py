"""Canonical-CBOR encoder (pure Python).

Chosen over handing a prepared tree to cbor2's C encoder by measurement (ADR 0004): the validating
walk that the profile needs anyway costs about as much as encoding, so encoding in the same walk
is faster than walking and then calling cbor2.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from itertools import pairwise
from operator import itemgetter
from typing import Any

from umlos.codec._errors import CborError, CborReason
from umlos.codec._profile import (
    CANONICAL_NAN,
    MAX_DEPTH,
    ORDER_CACHE_MAX,
    ORDER_CACHE_MAX_KEYS,
    STREAM_MIN,
    UINT_MAX,
)

Part = bytes | memoryview
Write = Callable[[Part], object]

_U8 = struct.Struct(">BB").pack
_U16 = struct.Struct(">BH").pack
_U32 = struct.Struct(">BI").pack
_U64 = struct.Struct(">BQ").pack
_F64 = struct.Struct(">Bd").pack


def head(major: int, n: int) -> bytes:
    """Shortest head for a major type (pre-shifted: 0x00, 0x20 … 0xe0) and argument ``n``."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return _U8(major | 24, n)
    if n < 0x10000:
        return _U16(major | 25, n)
    if n < 0x100000000:
        return _U32(major | 26, n)
    return _U64(major | 27, n)


def _table(major: int) -> tuple[bytes, ...]:
    return tuple(head(major, n) for n in range(256))


# Heads for arguments below 256 are looked up, not built: most items in records are that small.
_UINT = _table(0x00)
_NINT = _table(0x20)
_BYTES = _table(0x40)
_TEXT = _table(0x60)
_ARRAY = _table(0x80)
_MAP = _table(0xA0)

_ORDER_CACHE: dict[tuple[object, ...], tuple[tuple[bytes, object], ...]] = {}
_first = itemgetter(0)


class _EncodeError(Exception):
    """Internal: carries a failure up the recursion, collecting the path on the way."""

    def __init__(self, reason: CborReason, message: str) -> None:
        super().__init__(message)
        self.reason: CborReason = reason
        self.message = message
        self.trail: list[str] = []


# Per-call state, touched only on slow paths: [allow_nonfinite, streamed]. A list, because
# creating it costs a fifth of creating a slotted instance, and encode() is called per record.
_Ctx = list[bool]
_ALLOW_NONFINITE = 0
_STREAMED = 1  # set when a part of at least STREAM_MIN bytes was written


def encode_parts(obj: object, *, allow_nonfinite: bool) -> tuple[list[Part], bool]:
    """Encode ``obj`` into a list of parts; also say whether any part is big enough to stream."""
    parts: list[Part] = []
    ctx = [allow_nonfinite, False]
    try:
        _enc(obj, parts.append, 0, ctx)
    except (_EncodeError, RecursionError) as exc:
        raise _public_error(exc) from exc.__cause__ if isinstance(exc, _EncodeError) else exc
    return parts, ctx[_STREAMED]


def _public_error(exc: _EncodeError | RecursionError) -> CborError:
    if isinstance(exc, RecursionError):  # only when the caller's own stack is nearly full
        return CborError(
            "nesting too deep for the interpreter's stack", reason="CBOR_DEPTH_EXCEEDED", path="$"
        )
    return CborError(exc.message, reason=exc.reason, path="$" + "".join(reversed(exc.trail)))


def encode(obj: object, *, allow_nonfinite: bool = True) -> bytes:
    """Encode ``obj`` as canonical CBOR (profile: docs/formats/canonical-cbor.md).

    Data model: ``None``, ``bool``, ``int`` in [-2^64, 2^64-1], ``float`` (always binary64, bit
    pattern kept, so ``-0.0`` stays distinct), ``str`` (UTF-8, never normalised), ``bytes`` (also
    ``bytearray`` and ``memoryview``), ``list``/``tuple`` as arrays, ``dict`` as maps whose keys are
    ``str``, ``int``, ``bytes`` or tuples of those, sorted by their encoded bytes. Subclasses
    (``StrEnum``, ``IntEnum``, ``OrderedDict`` …) encode as their base type's value.

    ``±inf`` and the NaN ``0x7ff8000000000000`` are accepted unless ``allow_nonfinite=False``;
    any other NaN is refused. Failures raise :class:`~umlos.codec.CborError` whose ``path`` names
    the offending value.

    >>> from umlos.codec import CborError, encode
    >>> encode({"b": 1, "aa": 2}).hex()
    'a261620162616102'
    >>> encode([1.0, -0.0]).hex()
    '82fb3ff0000000000000fb8000000000000000'
    >>> try:
    ...     encode({"steps": [1, 2**64]})
    ... except CborError as err:
    ...     print(err.reason, err.path)
    CBOR_INT_OUT_OF_RANGE $.steps[1]
    """
    if type(obj) is bytes:  # one copy instead of two for large payloads
        return head(0x40, len(obj)) + obj
    # encode_parts() inlined: this runs once per record and the extra call costs ~5%.
    parts: list[Part] = []
    try:
        _enc(obj, parts.append, 0, [allow_nonfinite, False])
    except (_EncodeError, RecursionError) as exc:
        raise _public_error(exc) from exc.__cause__ if isinstance(exc, _EncodeError) else exc
    return b"".join(parts)


def _enc(x: Any, w: Write, depth: int, ctx: _Ctx) -> None:
    # `x` is Any on purpose: dispatch is on `type(x)` kept in a local, which mypy cannot narrow.
    # Exact-type dispatch first, most frequent record field types first; anything else (subclasses,
    # buffers, unsupported types) goes to _enc_other.
    t = type(x)
    if t is str:
        try:
            b = x.encode()
        except UnicodeEncodeError as exc:
            raise _EncodeError(
                "CBOR_INVALID_UTF8",
                f"text is not valid UTF-8 (lone surrogate at index {exc.start})",
            ) from exc
        n = len(b)
        w(_TEXT[n] if n < 0x100 else head(0x60, n))
        w(b)
    elif t is int:
        if x >= 0:
            if x < 0x100:
                w(_UINT[x])
            elif x < 0x10000:
                w(_U16(0x19, x))
            elif x < 0x100000000:
                w(_U32(0x1A, x))
            elif x <= UINT_MAX:
                w(_U64(0x1B, x))
            else:
                raise _EncodeError("CBOR_INT_OUT_OF_RANGE", f"integer {x} is above 2^64-1")
        else:
            m = -1 - x
            if m < 0x100:
                w(_NINT[m])
            elif m < 0x10000:
                w(_U16(0x39, m))
            elif m < 0x100000000:
                w(_U32(0x3A, m))
            elif m <= UINT_MAX:
                w(_U64(0x3B, m))
            else:
                raise _EncodeError("CBOR_INT_OUT_OF_RANGE", f"integer {x} is below -2^64")
    elif t is bytes:
        n = len(x)
        if n < 0x100:
            w(_BYTES[n])
        else:
            w(head(0x40, n))
            if n >= STREAM_MIN:
                ctx[_STREAMED] = True
        w(x)
    elif t is float:
        if x - x == 0.0:  # finite: inf - inf and nan - nan are nan
            w(_F64(0xFB, x))
        else:
            _enc_nonfinite(x, w, ctx)
    elif t is dict:
        n = len(x)
        if depth >= MAX_DEPTH:
            raise _depth_fail()
        w(_MAP[n] if n < 0x100 else head(0xA0, n))
        if n:
            keys = tuple(x)
            order = _ORDER_CACHE.get(keys)
            if order is None:
                order = _order_keys(keys, depth + 1, ctx)
            depth += 1
            try:
                for kb, k in order:
                    w(kb)
                    _enc(x[k], w, depth, ctx)
            except _EncodeError as fail:
                fail.trail.append(key_segment(k))
                raise
    elif t is list or t is tuple:
        n = len(x)
        if depth >= MAX_DEPTH:
            raise _depth_fail()
        w(_ARRAY[n] if n < 0x100 else head(0x80, n))
        depth += 1
        try:
            for v in x:
                _enc(v, w, depth, ctx)
        except _EncodeError as fail:
            fail.trail.append(f"[{_index_of(x, v)}]")
            raise
    elif t is bool:
        w(b"\xf5" if x else b"\xf4")
    elif x is None:
        w(b"\xf6")
    else:
        _enc_other(x, w, depth, ctx)


def _enc_nonfinite(x: float, w: Write, ctx: _Ctx) -> None:
    bits = _F64(0xFB, x)
    if math.isnan(x) and bits[1:] != CANONICAL_NAN:
        raise _EncodeError(
            "CBOR_NON_CANONICAL_NAN",
            f"NaN with bit pattern {bits[1:].hex()}; the only NaN allowed is {CANONICAL_NAN.hex()}",
        )
    if not ctx[_ALLOW_NONFINITE]:
        raise _EncodeError("CBOR_NONFINITE_FLOAT", f"non-finite float {x!r} in a hashed payload")
    w(bits)


def _enc_other(x: object, w: Write, depth: int, ctx: _Ctx) -> None:
    # Subclasses are encoded as their base type's value (StrEnum, IntEnum, numpy.float64,
    # OrderedDict, NamedTuple …), read through the base class so that overrides cannot change it.
    if isinstance(x, str):
        _enc(str.__str__(x), w, depth, ctx)
    elif isinstance(x, int):  # bool is final, so this is never a bool
        _enc(int.__int__(x), w, depth, ctx)
    elif isinstance(x, float):
        _enc(float.__float__(x), w, depth, ctx)
    elif isinstance(x, (bytes, bytearray, memoryview)):
        view = memoryview(x)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B")  # byte length, whatever the item format
        n = view.nbytes
        w(head(0x40, n))
        w(view)
        if n >= STREAM_MIN:
            ctx[_STREAMED] = True
    elif isinstance(x, dict):
        _enc(dict(x), w, depth, ctx)
    elif isinstance(x, (list, tuple)):
        _enc(list(x), w, depth, ctx)
    else:
        raise _EncodeError(
            "CBOR_UNSUPPORTED_TYPE",
            f"{type(x).__qualname__} has no canonical CBOR mapping (allowed: None, bool, int, "
            "float, str, bytes, list, tuple, dict)",
        )


def _order_keys(
    keys: tuple[object, ...], depth: int, ctx: _Ctx
) -> tuple[tuple[bytes, object], ...]:
    """Validate and encode a map's keys and sort them by their encoded bytes (RFC 8949 §4.2.1)."""
    encoded: list[tuple[bytes, object]] = []
    for k in keys:
        parts: list[Part] = []
        try:
            _enc_key(k, parts.append, depth, ctx)
        except _EncodeError as fail:
            fail.trail.append(key_segment(k))
            raise
        encoded.append((b"".join(parts), k))
    encoded.sort(key=_first)
    for (prev, _), (kb, k) in pairwise(encoded):
        if kb == prev:  # only reachable through subclasses with an unusual __eq__/__hash__
            dup = _EncodeError(
                "CBOR_DUPLICATE_KEY", f"two keys encode to the same bytes {kb.hex()}"
            )
            dup.trail.append(key_segment(k))
            raise dup
    order = tuple(encoded)
    # Only all-str key tuples are cached: tuple equality would conflate 1, 1.0 and True.
    if len(keys) <= ORDER_CACHE_MAX_KEYS and all(type(k) is str for k in keys):
        if len(_ORDER_CACHE) >= ORDER_CACHE_MAX:
            _ORDER_CACHE.clear()
        _ORDER_CACHE[keys] = order
    return order


def _enc_key(k: Any, w: Write, depth: int, ctx: _Ctx) -> None:
    # Decision A7: keys are text, integers, byte strings, or arrays (tuples) of those.
    t = type(k)
    if t is str or t is int or t is bytes:
        _enc(k, w, depth, ctx)
    elif t is tuple:
        if depth >= MAX_DEPTH:
            raise _depth_fail()
        w(head(0x80, len(k)))
        for i, e in enumerate(k):
            try:
                _enc_key(e, w, depth + 1, ctx)
            except _EncodeError as fail:
                fail.trail.append(f"[{i}]")
                raise
    elif t is not bool and isinstance(k, (str, int, bytes)):
        _enc_other(k, w, depth, ctx)
    elif t is not bool and isinstance(k, tuple):
        _enc_key(tuple(k), w, depth, ctx)
    else:
        raise _EncodeError(
            "CBOR_INVALID_KEY",
            f"map key of type {t.__qualname__} is not allowed (keys are str, int, bytes, "
            "or tuples of those)",
        )


def _depth_fail() -> _EncodeError:
    return _EncodeError("CBOR_DEPTH_EXCEEDED", f"more than {MAX_DEPTH} nested containers")


def _index_of(seq: list[object] | tuple[object, ...], item: object) -> int:
    # Called only on failure: the first element that is `item` failed first, since encoding is
    # a function of the object, so the identity search names the right index.
    for i, e in enumerate(seq):
        if e is item:
            return i
    return -1


def key_segment(k: object) -> str:
    """Path segment for map key ``k``: ``.name`` for identifier-like text, else ``[...]``."""
    if isinstance(k, str):
        text = str.__str__(k)
        return f".{text}" if text.isidentifier() else f"[{json.dumps(text)}]"
    return f"[{k!r}]"
