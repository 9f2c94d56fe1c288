"""SHA-256 over canonical encodings: plain digests, domain-separated commitments, raw files."""

from __future__ import annotations

import hashlib
import os

from umlos.codec._encode import Part, encode_parts, head
from umlos.codec._errors import CborError
from umlos.codec._profile import STREAM_MIN


def hash_parts(parts: list[Part], streamed: bool) -> bytes:
    """SHA-256 of the concatenated parts, without copying the large ones."""
    if not streamed:
        return hashlib.sha256(b"".join(parts)).digest()
    h = hashlib.sha256()
    pending: list[Part] = []
    for part in parts:
        if len(part) >= STREAM_MIN:  # memoryview parts are cast to "B", so len is the byte count
            if pending:
                h.update(b"".join(pending))
                pending.clear()
            h.update(part)
        else:
            pending.append(part)
    if pending:
        h.update(b"".join(pending))
    return h.digest()


def digest(obj: object) -> bytes:
    """SHA-256 of ``encode(obj)``: the plain digest (hash class D), 32 bytes.

    Non-finite floats are refused (``CBOR_NONFINITE_FLOAT``, decision A10). Large byte strings
    are hashed in place, never copied.

    >>> import hashlib
    >>> from umlos.codec import digest
    >>> digest([]).hex()[:16]
    '76be8b528d0075f7'
    >>> digest(b"payload") == hashlib.sha256(b"\\x47payload").digest()
    True
    """
    if type(obj) is bytes:  # hash head then buffer: no copy of a large payload
        h = hashlib.sha256(head(0x40, len(obj)))
        h.update(obj)
        return h.digest()
    parts, streamed = encode_parts(obj, allow_nonfinite=False)
    return hash_parts(parts, streamed)


def commit_hash(tag: str, payload: object) -> bytes:
    """SHA-256 of ``encode([tag, payload])``: a domain-separated commitment (hash class C).

    ``tag`` must be text (spec §1.3 wants explicit string labels). For the few identities whose
    "tag" is data (spec decision A23, e.g. a tenant id or a 32-byte hash), hash the same preimage
    with ``digest([tag, payload])``. Non-finite floats are refused (``CBOR_NONFINITE_FLOAT``).

    >>> from umlos.codec import commit_hash
    >>> commit_hash("trace_chain", []).hex()
    'd5a04212dc8be7c8c6eaab3fbaec45f4137bc49be0a0c2357f6df7954677719e'
    """
    if not isinstance(tag, str):
        raise CborError(
            f"a commitment's domain tag must be text, not {type(tag).__qualname__}",
            reason="CBOR_UNSUPPORTED_TYPE",
            path="$[0]",
        )
    parts, streamed = encode_parts([tag, payload], allow_nonfinite=False)
    return hash_parts(parts, streamed)


def sha256_file(path: str | os.PathLike[str]) -> bytes:
    """Raw SHA-256 of a file's bytes (hash class R), read in chunks, never whole.

    File-system errors propagate as the ``OSError`` that ``open`` raises: they are not codec
    failures, and callers map them to their own artifact errors.

    >>> import tempfile
    >>> from umlos.codec import sha256_file
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"abc"); f.flush()
    ...     sha256_file(f.name).hex()[:16]
    'ba7816bf8f01cfea'
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()
