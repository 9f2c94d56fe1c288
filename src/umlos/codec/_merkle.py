"""Binary Merkle root over 32-byte leaves (docs/formats/canonical-cbor.md, "Merkle root")."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from umlos.codec._encode import encode
from umlos.codec._errors import CborError
from umlos.codec._hash import commit_hash

_LEAF_SIZE = 32
# Inside a node preimage each child is a byte string of 32 bytes: head 0x58 0x20.
_CHILD_HEAD = b"\x58\x20"


def merkle_root(leaves: Sequence[bytes], *, node_tag: str, empty_tag: str) -> bytes:
    """Root of the binary Merkle tree over 32-byte ``leaves``.

    No leaves: ``commit_hash(empty_tag, [])``. One leaf: that leaf. Otherwise adjacent nodes pair
    up as ``commit_hash(node_tag, [left, right])`` level by level, and an odd last node moves up
    unchanged (never duplicated, so ``[a, b, c]`` and ``[a, b, c, c]`` differ: CVE-2012-2459).
    Leaves must already be domain-separated hashes (computed under a tag other than
    ``node_tag``), or a leaf could pose as an inner node.

    >>> from umlos.codec import commit_hash, merkle_root
    >>> a, b, c = (bytes([i]) * 32 for i in range(3))
    >>> tags = {"node_tag": "ckpt_merkle_node_v1", "empty_tag": "ckpt_merkle_root_v1"}
    >>> merkle_root([a, b, c], **tags) == commit_hash(
    ...     "ckpt_merkle_node_v1", [commit_hash("ckpt_merkle_node_v1", [a, b]), c])
    True
    """
    for name, tag in (("node_tag", node_tag), ("empty_tag", empty_tag)):
        if not isinstance(tag, str):
            raise CborError(
                f"{name} must be text, not {type(tag).__qualname__}",
                reason="CBOR_UNSUPPORTED_TYPE",
            )
    level: list[bytes] = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, (bytes, bytearray, memoryview)):
            raise CborError(
                f"Merkle leaf must be bytes, not {type(leaf).__qualname__}",
                reason="CBOR_UNSUPPORTED_TYPE",
                path=f"$[{i}]",
            )
        value = bytes(leaf)
        if len(value) != _LEAF_SIZE:
            raise CborError(
                f"Merkle leaf must be a 32-byte hash, got {len(value)} bytes",
                reason="CBOR_UNSUPPORTED_TYPE",
                path=f"$[{i}]",
            )
        level.append(value)
    if not level:
        return commit_hash(empty_tag, [])
    # commit_hash(node_tag, [left, right]), with the constant prefix encoded once.
    prefix = b"\x82" + encode(node_tag) + b"\x82" + _CHILD_HEAD
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"".join((prefix, level[i], _CHILD_HEAD, level[i + 1]))).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])  # promoted unchanged: no duplication (CVE-2012-2459)
        level = paired
    return level[0]
