"""Strict decoding: cbor2's C decoder as an accelerator, the strict decoder as the authority.

The canonical encoding of a value is unique, so ``data`` is canonical exactly when re-encoding the
value cbor2 read from it gives back ``data``. That check accepts only canonical input whatever
cbor2 itself tolerates (short floats, bignums, non-shortest heads …). Anything else, including any
cbor2 error, goes to the strict decoder, which either names the broken rule with its byte offset or
(if cbor2 was merely stricter than the profile) returns the value itself.
"""

from __future__ import annotations

from typing import Any, NoReturn

import cbor2

from umlos.codec._encode import encode
from umlos.codec._errors import CborError
from umlos.codec._profile import MAX_DEPTH
from umlos.codec._strict import decode_strict

_MISS = object()


class _TagSeenError(Exception):
    pass


def _reject_tag(*_args: Any) -> NoReturn:
    raise _TagSeenError


# cbor2 resolves these tags natively (found by probing tags 0..65535 and 2^32-1, 2^32, 2^64-1 with
# cbor2 6.2.1; tests/codec/test_decode.py re-probes). Every tag must fail inside cbor2: value
# sharing (28/29) and string references (25/256) would otherwise return a graph whose re-encoding
# grows exponentially with the input size. Tags not listed here reach `tag_hook`.
_CBOR2_NATIVE_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
    43000, 55799,
)  # fmt: skip
_SEMANTIC_REJECT = dict.fromkeys(_CBOR2_NATIVE_TAGS, _reject_tag)


def fast_decode(data: bytes) -> object:
    """The value if cbor2 reads ``data`` and it re-encodes to exactly ``data``, else ``_MISS``."""
    try:
        value = cbor2.loads(
            data,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            semantic_decoders=_SEMANTIC_REJECT,
            tag_hook=_reject_tag,
        )
        canonical = encode(value) == data
    except Exception:  # never decisive: the strict decoder names the real problem
        return _MISS
    return value if canonical else _MISS


def decode(data: bytes | bytearray | memoryview) -> object:
    """Decode one canonical CBOR item, rejecting anything the encoder would not have written.

    Arrays come back as ``list`` (as ``tuple`` when they are map keys), maps as ``dict``, floats
    as ``float``. Non-canonical input of any kind (head lengths, key order, float width, NaN
    payloads, tags, simple values, indefinite lengths, trailing bytes …) raises
    :class:`~umlos.codec.CborError` with the rule in ``reason`` and the item's byte ``offset``.

    >>> from umlos.codec import CborError, decode
    >>> decode(bytes.fromhex("a261620162616102"))
    {'b': 1, 'aa': 2}
    >>> try:
    ...     decode(bytes.fromhex("a262616102616201"))
    ... except CborError as err:
    ...     print(err.reason, err.offset)
    CBOR_NON_CANONICAL 5
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CborError(
                f"decode() takes bytes, bytearray or memoryview, not {type(data).__qualname__}",
                reason="CBOR_UNSUPPORTED_TYPE",
            )
        data = bytes(data)
    value = fast_decode(data)
    if value is _MISS:
        try:
            return decode_strict(data)
        except RecursionError as exc:  # only when the caller's own stack is already nearly full
            raise CborError(
                "nesting too deep for the interpreter's stack",
                reason="CBOR_DEPTH_EXCEEDED",
                offset=0,
            ) from exc
    return value
