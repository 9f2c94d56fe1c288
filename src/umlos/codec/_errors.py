"""The codec's single error class and its closed list of reasons."""

from __future__ import annotations

from typing import Literal, get_args

from umlos.errors import ContractViolationError

CborReason = Literal[
    "CBOR_TRUNCATED",
    "CBOR_TRAILING_BYTES",
    "CBOR_NON_CANONICAL",
    "CBOR_INDEFINITE_LENGTH",
    "CBOR_INVALID_UTF8",
    "CBOR_DUPLICATE_KEY",
    "CBOR_DEPTH_EXCEEDED",
    "CBOR_LENGTH_EXCEEDED",
    "CBOR_FORBIDDEN_TAG",
    "CBOR_FORBIDDEN_SIMPLE",
    "CBOR_NON_CANONICAL_NAN",
    "CBOR_NONFINITE_FLOAT",
    "CBOR_UNSUPPORTED_TYPE",
    "CBOR_INT_OUT_OF_RANGE",
    "CBOR_INVALID_KEY",
    "CBOR_INVALID_ITEM",
]
"""Sub-codes of ``CONTRACT_VIOLATION`` (``contracts/errors.yaml``) that the codec raises."""

CBOR_REASONS: frozenset[str] = frozenset(get_args(CborReason))


class CborError(ContractViolationError):
    """Every failure of the canonical-CBOR codec.

    ``reason`` is one of :data:`CBOR_REASONS`. Decoder errors carry ``offset`` (the byte offset of
    the offending item); encoder errors carry ``path`` (``$``, ``$.key``, ``$[3]``).

    >>> from umlos.codec import CborError, decode
    >>> try:
    ...     decode(b"\\x18\\x05")
    ... except CborError as err:
    ...     print(err.reason, err.offset)
    CBOR_NON_CANONICAL 0
    """

    reason: CborReason

    def __init__(
        self,
        message: str,
        *,
        reason: CborReason,
        offset: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, offset=offset, path=path)
