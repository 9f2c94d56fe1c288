"""digest, commit_hash and sha256_file: goldens, equivalence to hashing encode(), no copies."""

from __future__ import annotations

import hashlib
import math
import tracemalloc
from pathlib import Path

import pytest

from umlos.codec import CborError, commit_hash, digest, encode, sha256_file

SAMPLES: list[object] = [
    [],
    {},
    0,
    -(2**64),
    "trace",
    b"",
    {"t": 1, "loss": 0.25, "h": bytes(32), "nested": {"x": [None, True]}},
    [b"\x00" * 70_000, "tail", {"blob": bytearray(b"\x01" * 100_000)}],  # streamed parts
    memoryview(b"\x02" * 200_000),
]


@pytest.mark.parametrize("value", SAMPLES, ids=range(len(SAMPLES)))
def test_digest_is_sha256_of_encoding(value: object) -> None:
    assert digest(value) == hashlib.sha256(encode(value)).digest()


@pytest.mark.parametrize("value", SAMPLES, ids=range(len(SAMPLES)))
def test_commit_hash_is_sha256_of_tagged_pair(value: object) -> None:
    assert commit_hash("x_v1", value) == hashlib.sha256(encode(["x_v1", value])).digest()


def test_digest_and_commit_are_distinct_hash_classes() -> None:
    assert commit_hash("t", []) != digest([])
    assert commit_hash("t", []) == digest(["t", []])  # same preimage, by definition


def test_commit_payload_stays_nested() -> None:
    preimage = bytes.fromhex("826e6469676573745f636174616c6f67820180")
    assert commit_hash("digest_catalog", [1, []]) == hashlib.sha256(preimage).digest()


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_hashes_refuse_nonfinite_floats(bad: float) -> None:
    with pytest.raises(CborError) as info:
        digest({"m": [bad]})
    assert (info.value.reason, info.value.path) == ("CBOR_NONFINITE_FLOAT", "$.m[0]")
    with pytest.raises(CborError) as info:
        commit_hash("tag", {"m": bad})
    assert (info.value.reason, info.value.path) == ("CBOR_NONFINITE_FLOAT", "$[1].m")


def test_commit_tag_must_be_text() -> None:
    with pytest.raises(CborError) as info:
        commit_hash(b"tag", [])  # type: ignore[arg-type]
    assert (info.value.reason, info.value.path) == ("CBOR_UNSUPPORTED_TYPE", "$[0]")


def _peak_bytes(fn: object, *args: object) -> int:
    tracemalloc.start()
    try:
        fn(*args)  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "wrap", [lambda b: b, lambda b: {"blob": b, "n": 1}, lambda b: [memoryview(b)]]
)
def test_digest_does_not_copy_large_payloads(wrap: object) -> None:
    payload = b"\x5a" * (8 << 20)
    value = wrap(payload)  # type: ignore[operator]
    assert _peak_bytes(digest, value) < (1 << 20)


def test_sha256_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).digest()
    assert sha256_file(str(path)) == hashlib.sha256(data).digest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").digest()


def test_sha256_file_missing_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "absent")
