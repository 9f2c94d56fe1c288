"""Dataset decoding, content hashing and manifest checks, for every source format."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest

from tests.manifest.manifest_helpers import base, dump
from umlos._generated import tags
from umlos._generated.records import ManifestDatasetRef, RegisterDatasetRequest
from umlos.data import (
    BUILTINS,
    Dataset,
    content_hash,
    load_dataset,
    load_datasets,
    register_dataset,
)
from umlos.errors import ApiShapeMismatchError, CardinalityMismatchError, ContractViolationError
from umlos.manifest import load_manifest

# Pinned: content hash of scikit-learn's bundled digits (1797 x 64 float64, int64 labels). It
# changes only if the data or the DATASET_CONTENT_HASH preimage changes.
DIGITS_HASH = "2a11cfba6f2cce481155bce5b3a39928c741c12f4cc476406b951c32af2055e1"


def _independent_hash(x: np.ndarray, y: np.ndarray) -> bytes:
    # [tag, [dtype, shape, sha256, dtype, shape, sha256]]: text, uints and bytes only, so
    # cbor2's canonical bytes equal the profile's.
    parts: list[Any] = []
    for a in (x, y):
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        parts += [a.dtype.name, list(a.shape), hashlib.sha256(le.tobytes(order="C")).digest()]
    return hashlib.sha256(cbor2.dumps([tags.DATASET_CONTENT_HASH, parts], canonical=True)).digest()


def _request(fmt: str, **kw: Any) -> RegisterDatasetRequest:
    fields: dict[str, Any] = {
        "dataset_key": "train",
        "id": "toy",
        "version": "v1",
        "format": fmt,
        "feature_key": "x",
        "label_key": "y",
    }
    fields.update(kw)
    return RegisterDatasetRequest(**fields)


def _ref(record_hash: bytes, n: int, fmt: Any, **kw: Any) -> ManifestDatasetRef:
    return ManifestDatasetRef(
        id="toy", version="v1", hash=record_hash, cardinality=n, format=fmt, **kw
    )


X = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
Y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)


def test_content_hash_matches_the_preimage() -> None:
    assert content_hash(X, Y) == _independent_hash(X, Y)
    assert content_hash(X, Y) != content_hash(X, Y[::-1].copy())
    assert content_hash(X, Y) != content_hash(X.astype(np.float64), Y)
    assert content_hash(X, Y) != content_hash(X.reshape(6, 4), Y)


def test_content_hash_ignores_byte_order_and_memory_layout() -> None:
    big = X.astype(">f4")
    fortran = np.asfortranarray(X)
    assert content_hash(big, Y) == content_hash(fortran, Y) == content_hash(X, Y)
    assert X.flags.writeable  # hashing never flips the caller's array


def test_npz_round_trip(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    rec = register_dataset(_request("npz", path="d.npz"), base_dir=tmp_path)
    assert rec.content_hash == _independent_hash(X, Y)
    assert (rec.cardinality, rec.feature_shape, rec.feature_dtype) == (6, (2, 2), "float32")
    assert (rec.label_shape, rec.label_dtype, rec.num_classes) == ((), "int64", 3)
    assert rec.path == "d.npz" and rec.builtin is None

    ds = load_dataset("train", _ref(rec.content_hash, 6, "npz", path="d.npz"), tmp_path)
    assert isinstance(ds, Dataset) and ds.record == rec and ds.cardinality == 6
    np.testing.assert_array_equal(ds.features, X)
    np.testing.assert_array_equal(ds.labels, Y)
    for arr in (ds.features, ds.labels):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0


def test_npz_identity_survives_recompression_and_byte_order(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=X, y=Y)
    np.savez_compressed(tmp_path / "b.npz", x=X.astype(">f4"), y=Y.astype(">i8"))
    a = register_dataset(_request("npz", path="a.npz"), base_dir=tmp_path)
    b = register_dataset(_request("npz", path="b.npz"), base_dir=tmp_path)
    assert a.content_hash == b.content_hash


def test_npz_custom_keys_and_label_casting(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=X, targets=Y.astype(np.uint8))
    req = _request("npz", path=str(tmp_path / "d.npz"), feature_key="images", label_key="targets")
    rec = register_dataset(req)  # an absolute path ignores base_dir
    assert rec.label_dtype == "int64"
    assert rec.content_hash == content_hash(X, Y)


def test_npy_directory_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "x.npy", X)
    np.save(d / "y.npy", Y.astype(np.float64))
    rec = register_dataset(_request("npy", path="arrays"), base_dir=tmp_path)
    assert (rec.label_dtype, rec.num_classes) == ("float64", None)
    ds = load_dataset("train", _ref(rec.content_hash, 6, "npy", path="arrays"), tmp_path)
    np.testing.assert_array_equal(ds.features, X)


def test_npy_source_must_be_a_directory(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ContractViolationError, match="directory"):
        register_dataset(_request("npy", path="x.npy"), base_dir=tmp_path)


CSV = "a,label,b\n1,0,2.5\n3,1,-4e-1\n\n5,2,6\n"


def test_csv_round_trip(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("\ufeff" + CSV, encoding="utf-8")
    rec = register_dataset(_request("csv", path="d.csv", label_key="label"), base_dir=tmp_path)
    x = np.array([[1, 2.5], [3, -0.4], [5, 6]], dtype=np.float64)
    y = np.array([0, 1, 2], dtype=np.int64)
    assert rec.content_hash == content_hash(x, y)
    assert (rec.cardinality, rec.feature_shape, rec.num_classes) == (3, (2,), 3)


def test_csv_float_labels(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("f,y\n1,0.5\n2,1\n", encoding="utf-8")
    rec = register_dataset(_request("csv", path="d.csv"), base_dir=tmp_path)
    assert rec.label_dtype == "float64"
    assert rec.content_hash == content_hash(np.array([[1.0], [2.0]]), np.array([0.5, 1.0]))


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("f,y\n1,0\n2,zero\n", 3, "'zero'"),
        ("f,y\n1,0\n\n,1\n", 4, "''"),
        ("f,y\n1,0\nnan,1\n", 3, "'nan'"),
        ("f,y\n1,0\n1_000,1\n", 3, "'1_000'"),
        ("f,y\n1,0\n2,1,3\n", 3, "3 fields"),
        ('f,y\n1,0\n"2,1\n', 3, "malformed"),
    ],
    ids=["word", "empty_cell", "nan", "underscore", "extra_field", "open_quote"],
)
def test_malformed_csv_names_the_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    (tmp_path / "d.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ContractViolationError) as info:
        register_dataset(_request("csv", path="d.csv"), base_dir=tmp_path)
    err = info.value
    assert err.context["line"] == line
    assert f"line {line}" in err.message and fragment in err.message
    assert err.artifact == str(tmp_path / "d.csv")
    assert err.path == "$.datasets.train"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("f,y\n", "no data rows"),
        ("f,g\n1,2\n", "no label column"),
        ("y\n1\n", "feature"),
    ],
)
def test_csv_shape_errors(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "d.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ContractViolationError, match=fragment):
        register_dataset(_request("csv", path="d.csv"), base_dir=tmp_path)


def test_builtin_digits_hash_is_pinned() -> None:
    req = _request("builtin", builtin="digits", expected_hash=bytes.fromhex(DIGITS_HASH))
    rec = register_dataset(req)
    assert rec.content_hash.hex() == DIGITS_HASH
    assert (rec.cardinality, rec.feature_shape, rec.feature_dtype) == (1797, (64,), "float64")
    assert (rec.label_dtype, rec.num_classes, rec.path) == ("int64", 10, None)


@pytest.mark.parametrize("name", [n for n in BUILTINS if n != "digits"])
def test_other_builtins_load(name: str) -> None:
    rec = register_dataset(_request("builtin", builtin=name))
    assert rec.cardinality > 0
    assert rec.label_dtype == ("float64" if name == "diabetes" else "int64")


def test_unknown_builtin() -> None:
    with pytest.raises(ApiShapeMismatchError) as info:
        register_dataset(_request("builtin", builtin="mnist"))
    assert (info.value.path, info.value.reason) == ("$.datasets.train.builtin", "CONSTRAINT")


def test_hash_mismatch_names_key_and_both_hashes(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    wrong = bytes(32)
    with pytest.raises(CardinalityMismatchError) as info:
        load_dataset("train", _ref(wrong, 6, "npz", path="d.npz"), tmp_path)
    err = info.value
    found = content_hash(X, Y).hex()
    assert "'train'" in err.message and wrong.hex() in err.message and found in err.message
    assert err.path == "$.datasets.train.hash"
    assert err.context["dataset_key"] == "train"
    assert err.context["registered_hash"] == wrong.hex() and err.context["found_hash"] == found


def test_cardinality_mismatch_names_key_and_both_counts(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    with pytest.raises(CardinalityMismatchError) as info:
        load_dataset("val", _ref(content_hash(X, Y), 7, "npz", path="d.npz"), tmp_path)
    err = info.value
    assert "'val'" in err.message and "7" in err.message and "6" in err.message
    assert err.path == "$.datasets.val.cardinality"
    assert (err.context["registered_cardinality"], err.context["found_cardinality"]) == (7, 6)


@pytest.mark.parametrize("fmt", ["npz", "npy", "csv"])
def test_missing_source_is_a_typed_error(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ContractViolationError) as info:
        register_dataset(_request(fmt, path="absent.bin"), base_dir=tmp_path)
    assert info.value.artifact == str(tmp_path / "absent.bin")
    assert info.value.path == "$.datasets.train.path"
    assert "not found" in info.value.message


def test_missing_path_is_a_shape_error() -> None:
    with pytest.raises(ApiShapeMismatchError) as info:
        register_dataset(_request("npz"))
    assert info.value.reason == "MISSING_FIELD"


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"x": X.astype(np.float16), "y": Y}, "NUMERIC_BAD_DTYPE"),
        ({"x": X, "y": Y.astype(np.complex64)}, "NUMERIC_BAD_DTYPE"),
        ({"x": X, "y": Y[:5]}, "NUMERIC_BAD_SHAPE"),
        ({"x": np.float32(1.0), "y": Y}, "NUMERIC_BAD_SHAPE"),
        ({"x": X[:0], "y": Y[:0]}, "NUMERIC_EMPTY"),
    ],
    ids=["float16_features", "complex_labels", "row_mismatch", "scalar_features", "empty"],
)
def test_bad_arrays(tmp_path: Path, arrays: dict[str, Any], reason: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ContractViolationError) as info:
        register_dataset(_request("npz", path="d.npz"), base_dir=tmp_path)
    assert info.value.reason == reason


def test_npz_without_the_named_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=X, y=Y)
    with pytest.raises(ContractViolationError, match="no array 'x'"):
        register_dataset(_request("npz", path="d.npz"), base_dir=tmp_path)


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}] * 6, dtype=object), y=Y)
    with pytest.raises(ContractViolationError):
        register_dataset(_request("npz", path="d.npz"), base_dir=tmp_path)


def test_corrupt_npz(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ContractViolationError):
        register_dataset(_request("npz", path="d.npz"), base_dir=tmp_path)


def test_load_datasets_resolves_paths_against_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "train.npz", x=X, y=Y)
    np.savez(tmp_path / "data" / "val.npz", x=X[:3], y=Y[:3])
    obj = base()
    obj["datasets"]["train"].update(hash=content_hash(X, Y).hex(), cardinality=6)
    obj["datasets"]["val"].update(hash=content_hash(X[:3], Y[:3]).hex(), cardinality=3)
    obj["model"]["preset_params"]["in_features"] = 4
    path = tmp_path / "run.yaml"
    path.write_text(dump(obj), encoding="utf-8")
    datasets = load_datasets(load_manifest(path))
    assert list(datasets) == ["train", "val"]
    assert datasets["val"].cardinality == 3 and datasets["val"].key == "val"
