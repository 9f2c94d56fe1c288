"""merkle_root: the rule in docs/formats/canonical-cbor.md, pinned values, malformed leaves."""

from __future__ import annotations

import hashlib

import pytest

from umlos.codec import CborError, commit_hash, merkle_root

NODE, EMPTY = "ckpt_merkle_node_v1", "ckpt_merkle_root_v1"
LEAVES = [hashlib.sha256(bytes([i])).digest() for i in range(8)]

# Regression pins, computed once; the structural tests below say why they are right.
PINNED = [
    "78cbba4685f14d402431c2104f48715b064c3eeea6811a114160221252d30c0e",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "7202d07e1702573647d47213c66927a6a8217d3747a74f4660942ba57486aebb",
    "74477a709079ce85d30b30174dbae9b7b7c1c0736cade2c632c9a30888feb105",
    "f5e97e2b956833bfcabfa21c7b7753c1c42175ac0e1e82aa33d3e223cfdeba1c",
    "2a0a4b814508297ba01805e397a8ffd2f596e909d7efe5811cf0a7859b7076e7",
    "15052481cd65fe6fdb38259931eee790d5bc85d9b3ad6b4a9d8a88e5a9a3be3e",
    "267258f8c8132c581d8623841b85c8e38cba188e82b794f7520b7115ca99a3fe",
]


def _root(leaves: list[bytes]) -> bytes:
    return merkle_root(leaves, node_tag=NODE, empty_tag=EMPTY)


def _node(left: bytes, right: bytes) -> bytes:
    return commit_hash(NODE, [left, right])


@pytest.mark.parametrize("n", range(len(PINNED)))
def test_pinned_roots(n: int) -> None:
    assert _root(LEAVES[:n]).hex() == PINNED[n]


def test_empty_tree_is_the_empty_commitment() -> None:
    assert _root([]) == commit_hash(EMPTY, [])
    upstream = merkle_root([], node_tag="ckpt_merkle_node", empty_tag="ckpt_merkle_root")
    assert upstream.hex() == "65dd5dace7e49fcbcc256bccab337b01efa618aadcd7ffd1becc23ffd577e48e"


def test_single_leaf_is_the_root() -> None:
    assert _root(LEAVES[:1]) == LEAVES[0]


def test_structure_up_to_seven_leaves() -> None:
    a, b, c, d, e, f, g = LEAVES[:7]
    assert _root([a, b]) == _node(a, b)
    assert _root([a, b, c]) == _node(_node(a, b), c)  # c promoted, not paired with itself
    assert _root([a, b, c, d]) == _node(_node(a, b), _node(c, d))
    assert _root([a, b, c, d, e]) == _node(_node(_node(a, b), _node(c, d)), e)
    ab_cd = _node(_node(a, b), _node(c, d))
    assert _root([a, b, c, d, e, f, g]) == _node(ab_cd, _node(_node(e, f), g))


def test_odd_node_is_not_duplicated() -> None:
    # With duplication (Bitcoin's rule) these two would collide: CVE-2012-2459.
    a, b, c = LEAVES[:3]
    assert _root([a, b, c]) != _root([a, b, c, c])


def test_order_matters() -> None:
    assert _root(LEAVES[:2]) != _root(LEAVES[1::-1])


def test_byte_like_leaves() -> None:
    leaves = [bytearray(LEAVES[0]), memoryview(LEAVES[1])]
    assert _root(leaves) == _root(LEAVES[:2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("leaves", "path"),
    [([LEAVES[0], b"short"], "$[1]"), ([LEAVES[0], LEAVES[1], "00" * 32], "$[2]")],
)
def test_malformed_leaves(leaves: list[bytes], path: str) -> None:
    with pytest.raises(CborError) as info:
        _root(leaves)
    assert (info.value.reason, info.value.path) == ("CBOR_UNSUPPORTED_TYPE", path)


def test_tags_must_be_text() -> None:
    with pytest.raises(CborError):
        merkle_root(LEAVES[:2], node_tag=b"n", empty_tag=EMPTY)  # type: ignore[arg-type]
