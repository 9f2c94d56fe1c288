"""Canonical CBOR, domain-separated digests and Merkle roots (docs/formats/canonical-cbor.md).

The bottom layer of UML_OS: every hash in a trace, checkpoint or certificate is SHA-256 over the
bytes this module writes, so its output is fixed by the profile, never by Python's dict order.

>>> from umlos.codec import decode, encode
>>> data = encode({"t": 3, "operator_id": "UML_OS.Data.NextBatch_v2", "loss": 0.5})
>>> data.hex()[:12]
'a3617403646c'
>>> decode(data) == {"t": 3, "operator_id": "UML_OS.Data.NextBatch_v2", "loss": 0.5}
True
"""

from umlos.codec._decode import decode
from umlos.codec._encode import encode
from umlos.codec._errors import CBOR_REASONS, CborError, CborReason
from umlos.codec._hash import commit_hash, digest, sha256_file
from umlos.codec._merkle import merkle_root
from umlos.codec._profile import MAX_DEPTH

__all__ = [
    "CBOR_REASONS",
    "MAX_DEPTH",
    "CborError",
    "CborReason",
    "commit_hash",
    "decode",
    "digest",
    "encode",
    "merkle_root",
    "sha256_file",
]

# Public objects say where to import them from.
for _obj in (CborError, commit_hash, decode, digest, encode, merkle_root, sha256_file):
    _obj.__module__ = __name__
del _obj
