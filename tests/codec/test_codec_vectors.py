"""Conformance vectors: the 24 upstream ones and ours (tests/vectors/canonical_cbor_extra.json)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.codec.codec_helpers import EXTRA, UPSTREAM, from_json, load, same
from umlos.codec import CborError, commit_hash, decode, digest, encode
from umlos.codec._strict import decode_strict

UPSTREAM_VECTORS = load(UPSTREAM)["vectors"]
EXTRA_DOC = load(EXTRA)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def test_upstream_file_is_complete() -> None:
    assert len(UPSTREAM_VECTORS) == 24


@pytest.mark.parametrize(
    "vector",
    UPSTREAM_VECTORS + EXTRA_DOC["vectors"],
    ids=_ids(UPSTREAM_VECTORS + EXTRA_DOC["vectors"]),
)
def test_vector_encodes_to_expected_bytes(vector: dict[str, Any]) -> None:
    assert encode(from_json(vector["input_json"])).hex() == vector["expected_cbor_hex"]


@pytest.mark.parametrize(
    "vector",
    UPSTREAM_VECTORS + EXTRA_DOC["vectors"],
    ids=_ids(UPSTREAM_VECTORS + EXTRA_DOC["vectors"]),
)
def test_vector_decodes_to_input(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["expected_cbor_hex"])
    expected = from_json(vector["input_json"])
    assert same(decode(data), expected)
    assert same(decode_strict(data), expected)


@pytest.mark.parametrize(
    "case", EXTRA_DOC["decode_rejections"], ids=_ids(EXTRA_DOC["decode_rejections"])
)
def test_decode_rejection(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"])
    for decoder in (decode, decode_strict):
        with pytest.raises(CborError) as info:
            decoder(data)
        assert info.value.reason == case["expected_error_reason"]
        assert info.value.offset == case["expected_offset"]


@pytest.mark.parametrize(
    "case", EXTRA_DOC["encode_rejections"], ids=_ids(EXTRA_DOC["encode_rejections"])
)
def test_encode_rejection(case: dict[str, Any]) -> None:
    value = from_json(case["input_json"])
    via = case["via"]
    with pytest.raises(CborError) as info:
        if via == "encode":
            encode(value)
        elif via == "digest":
            digest(value)
        else:
            commit_hash(via.removeprefix("commit_hash:"), value)
    assert info.value.reason == case["expected_error_reason"]
    assert info.value.path == case["expected_path"]


@pytest.mark.parametrize("case", EXTRA_DOC["commitments"], ids=_ids(EXTRA_DOC["commitments"]))
def test_golden_commitment(case: dict[str, Any]) -> None:
    assert (
        commit_hash(case["tag"], from_json(case["payload_json"])).hex()
        == case["expected_sha256_hex"]
    )
