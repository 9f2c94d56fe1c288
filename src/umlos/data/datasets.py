"""Dataset decoding, content hashing and registration (dataset.yaml, UML_OS.Data.RegisterDataset_v1).

A dataset is a features array and a labels array with the same leading length N. Sources:

- ``npz``: one ``.npz`` file holding arrays named ``feature_key`` and ``label_key``.
- ``npy``: a directory holding ``<feature_key>.npy`` and ``<label_key>.npy`` (dataset.yaml).
- ``csv``: UTF-8 text, a header row, then one sample per row. The ``label_key`` column is the
  label; every other column, in header order, is a float64 feature. Labels are int64 when every
  label cell is an integer literal, else float64. Cells must be finite decimal numbers; blank
  lines are skipped. A bad row fails with its 1-based line number.
- ``builtin``: a dataset shipped inside scikit-learn (:data:`BUILTINS`), never downloaded.

Decoded arrays are canonicalised before hashing: C order, little-endian, dtype one of the tensor
dtypes (features as stored; labels int64 for any integer or bool type, float32/float64 kept),
then made read-only. The content hash is ``Commit(DATASET_CONTENT_HASH, [feature_dtype,
feature_shape, SHA-256(feature bytes), label_dtype, label_shape, SHA-256(label bytes)])`` with
full shapes (leading N included), so it identifies the decoded values, not the file bytes.

Failures: a missing or unreadable source, a malformed file or a wrong dtype/shape is
CONTRACT_VIOLATION (reasons NUMERIC_BAD_DTYPE, NUMERIC_BAD_SHAPE, NUMERIC_EMPTY where they
apply); an unknown builtin or a missing path is API_SHAPE_MISMATCH; data that differs from the
hash or cardinality the manifest declares is CARDINALITY_MISMATCH.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import math
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from umlos._generated.records import DatasetRecord, ManifestDatasetRef, RegisterDatasetRequest
from umlos._generated.tags import DATASET_CONTENT_HASH
from umlos.codec import commit_hash
from umlos.errors import ApiShapeMismatchError, CardinalityMismatchError, ContractViolationError
from umlos.manifest import LoadedManifest

BUILTINS: Final = ("breast_cancer", "diabetes", "digits", "iris", "wine")
"""Builtin dataset names: scikit-learn's bundled ``load_<name>`` datasets (no network)."""

TENSOR_DTYPES: Final = ("float32", "float64", "int32", "int64", "uint8", "bool")
"""Element types a dataset array may have (tensor.yaml ``tensor_dtype``)."""

MAX_NDIM: Final = 8
"""tensor.yaml ``tensor_shape`` allows at most eight dimensions."""

_INT_LITERAL = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """A decoded dataset: read-only arrays and their registration record."""

    key: str
    features: Array
    labels: Array
    record: DatasetRecord

    @property
    def cardinality(self) -> int:
        """Number of samples N."""
        return self.record.cardinality


# --------------------------------------------------------------------------- hashing


def _canonical(arr: Array) -> Array:
    """C-ordered little-endian read-only copy (a read-only view when already canonical)."""
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    out = np.ascontiguousarray(arr, dtype=dtype)
    if out is arr:  # never flip the caller's own array to read-only
        out = arr.view()
    out.flags.writeable = False
    return out


def content_hash(features: Array, labels: Array) -> bytes:
    """The DATASET_CONTENT_HASH commitment of two arrays (dtype, full shape, element bytes).

    >>> import numpy as np
    >>> from umlos.data import content_hash
    >>> h = content_hash(np.zeros((2, 3), np.float32), np.array([0, 1], np.int64))
    >>> len(h)
    32
    """
    parts: list[object] = []
    for arr in (features, labels):
        a = _canonical(arr)
        parts += [str(a.dtype.name), [int(n) for n in a.shape], hashlib.sha256(a.data).digest()]
    return commit_hash(DATASET_CONTENT_HASH, parts)


# --------------------------------------------------------------------------- decoding


def _data_error(
    message: str,
    source: str,
    *,
    path: str,
    reason: str = "DATA_MALFORMED",
    context: Mapping[str, Any] | None = None,
) -> ContractViolationError:
    return ContractViolationError(
        message, reason=reason, path=path, artifact=source, context=dict(context or {})
    )


def _resolve(request: RegisterDatasetRequest, base_dir: Path, where: str) -> Path:
    if request.path is None:
        raise ApiShapeMismatchError(
            f"format {request.format} needs a path", reason="MISSING_FIELD", path=where
        )
    p = Path(request.path)
    p = p if p.is_absolute() else base_dir / p
    if not p.exists():
        raise _data_error(
            f"dataset source not found: {p}",
            str(p),
            path=f"{where}.path",
            reason="DATA_SOURCE_MISSING",
            context={"dataset_key": request.dataset_key},
        )
    return p


def _decode_error(p: Path, where: str, exc: Exception) -> ContractViolationError:
    return _data_error(f"cannot decode {p.name}: {exc}", str(p), path=where)


# What numpy raises for a corrupt or refused file (ValueError covers object arrays, whose
# pickles are never loaded, and malformed headers).
_DECODE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _read_npz(request: RegisterDatasetRequest, base_dir: Path, where: str) -> tuple[Array, Array]:
    p = _resolve(request, base_dir, where)
    if not p.is_file():
        raise _data_error("an npz source must be a file", str(p), path=f"{where}.path")
    out = []
    # We own the file handle: numpy leaks its own when the zip directory is corrupt.
    with p.open("rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
        except _DECODE_ERRORS as exc:
            raise _decode_error(p, f"{where}.path", exc) from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _data_error("not an npz archive", str(p), path=f"{where}.path")
        with archive:
            for key in (request.feature_key, request.label_key):
                if key not in archive.files:
                    raise _data_error(
                        f"npz has no array {key!r} (it has {sorted(archive.files)})",
                        str(p),
                        path=where,
                    )
                try:
                    out.append(archive[key])
                except _DECODE_ERRORS as exc:
                    raise _decode_error(p, where, exc) from exc
    return out[0], out[1]


def _read_npy(request: RegisterDatasetRequest, base_dir: Path, where: str) -> tuple[Array, Array]:
    d = _resolve(request, base_dir, where)
    if not d.is_dir():
        raise _data_error(
            "an npy source is a directory holding <feature_key>.npy and <label_key>.npy",
            str(d),
            path=f"{where}.path",
        )
    out = []
    for key in (request.feature_key, request.label_key):
        f = d / f"{key}.npy"
        if not f.is_file():
            raise _data_error(
                f"missing {f.name} in {d}", str(f), path=where, reason="DATA_SOURCE_MISSING"
            )
        with f.open("rb") as handle:
            try:
                arr = np.load(handle, allow_pickle=False)
            except _DECODE_ERRORS as exc:
                raise _decode_error(f, where, exc) from exc
        if not isinstance(arr, np.ndarray):
            raise _data_error(f"{f.name} does not hold one array", str(f), path=where)
        out.append(arr)
    return out[0], out[1]


def _read_csv(request: RegisterDatasetRequest, base_dir: Path, where: str) -> tuple[Array, Array]:
    p = _resolve(request, base_dir, where)
    source = str(p)
    try:
        handle = p.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise _data_error(f"cannot read {p}: {exc.strerror}", source, path=f"{where}.path") from exc
    features: list[list[float]] = []
    labels: list[str] = []
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise _data_error(
                    "empty csv file (a header row is required)",
                    source,
                    path=where,
                    reason="NUMERIC_EMPTY",
                )
            header = [h.strip() for h in header]
            if request.label_key not in header:
                raise _data_error(
                    f"csv header has no label column {request.label_key!r}",
                    source,
                    path=where,
                    context={"line": 1},
                )
            if len(set(header)) != len(header):
                raise _data_error(
                    "csv header repeats a column name", source, path=where, context={"line": 1}
                )
            if len(header) < 2:
                raise _data_error(
                    "csv needs at least one feature column", source, path=where, context={"line": 1}
                )
            label_col = header.index(request.label_key)
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise _data_error(
                        f"line {line}: {len(row)} fields, the header has {len(header)}",
                        source,
                        path=where,
                        context={"line": line},
                    )
                values = []
                for col, cell in enumerate(row):
                    if col == label_col:
                        labels.append(
                            _parse_cell(cell, header[col], line, source, where, label=True)
                        )
                    else:
                        values.append(float(_parse_cell(cell, header[col], line, source, where)))
                features.append(values)
        except csv.Error as exc:
            raise _data_error(
                f"line {reader.line_num}: malformed csv ({exc})",
                source,
                path=where,
                context={"line": reader.line_num},
            ) from exc
        except UnicodeDecodeError as exc:
            raise _data_error("csv file is not valid UTF-8", source, path=where) from exc
    if not features:
        raise _data_error("csv has no data rows", source, path=where, reason="NUMERIC_EMPTY")
    x = np.asarray(features, dtype=np.float64)
    if all(_INT_LITERAL.fullmatch(v) for v in labels):
        try:
            y = np.asarray([int(v) for v in labels], dtype=np.int64)
        except OverflowError as exc:
            raise _data_error("an integer label does not fit int64", source, path=where) from exc
    else:
        y = np.asarray([float(v) for v in labels], dtype=np.float64)
    return x, y


def _parse_cell(
    cell: str, column: str, line: int, source: str, where: str, *, label: bool = False
) -> str:
    """The stripped cell text if it is a finite decimal literal (no nan, inf or ``1_000``)."""
    text = cell.strip()
    if _DECIMAL.fullmatch(text) is None or not math.isfinite(float(text)):
        what = "label" if label else "value"
        raise _data_error(
            f"line {line}, column {column!r}: {what} {cell!r} is not a finite decimal number",
            source,
            path=where,
            context={"line": line, "column": column},
        )
    return text


def _read_builtin(request: RegisterDatasetRequest, where: str) -> tuple[Array, Array]:
    name = request.builtin
    if name is None:
        raise ApiShapeMismatchError(
            "format builtin needs a builtin name", reason="MISSING_FIELD", path=where
        )
    if name not in BUILTINS:
        raise ApiShapeMismatchError(
            f"unknown builtin dataset {name!r}; expected one of {list(BUILTINS)}",
            reason="CONSTRAINT",
            path=f"{where}.builtin",
        )
    # Imported here: scikit-learn is slow to import and only builtin datasets need it.
    sk = importlib.import_module("sklearn.datasets")
    loader: Callable[..., tuple[Array, Array]] = getattr(sk, f"load_{name}")
    x, y = loader(return_X_y=True)
    return np.asarray(x), np.asarray(y)


# --------------------------------------------------------------------------- canonical form


def _check_arrays(x: Array, y: Array, source: str, where: str) -> tuple[Array, Array]:
    if x.dtype.name not in TENSOR_DTYPES:
        raise _data_error(
            f"feature dtype {x.dtype} is not one of {list(TENSOR_DTYPES)}",
            source,
            path=where,
            reason="NUMERIC_BAD_DTYPE",
        )
    if y.dtype.kind in "biu":
        if y.dtype.kind == "u" and y.size and int(y.max()) > np.iinfo(np.int64).max:
            raise _data_error(
                "a label does not fit int64", source, path=where, reason="NUMERIC_OUT_OF_RANGE"
            )
        y = y.astype(np.int64)
    elif y.dtype.name not in ("float32", "float64"):
        raise _data_error(
            f"label dtype {y.dtype} is not an integer, bool, float32 or float64 type",
            source,
            path=where,
            reason="NUMERIC_BAD_DTYPE",
        )
    for name, a in (("features", x), ("labels", y)):
        if a.ndim < 1 or a.ndim > MAX_NDIM:
            raise _data_error(
                f"{name} have {a.ndim} dimensions, expected 1..{MAX_NDIM}",
                source,
                path=where,
                reason="NUMERIC_BAD_SHAPE",
            )
    if x.shape[0] != y.shape[0]:
        raise _data_error(
            f"features have {x.shape[0]} rows, labels {y.shape[0]}",
            source,
            path=where,
            reason="NUMERIC_BAD_SHAPE",
        )
    if x.shape[0] == 0:
        raise _data_error("the dataset has no samples", source, path=where, reason="NUMERIC_EMPTY")
    return _canonical(x), _canonical(y)


def _num_classes(y: Array) -> int | None:
    if y.dtype != np.int64 or int(y.min()) < 0:
        return None
    n = int(y.max()) + 1
    return n if n <= 0xFFFFFFFF else None


def _read(request: RegisterDatasetRequest, base_dir: Path) -> Dataset:
    where = f"$.datasets.{request.dataset_key}"
    if request.format == "builtin":
        x, y = _read_builtin(request, where)
        source = f"builtin:{request.builtin}"
    else:
        readers = {"npz": _read_npz, "npy": _read_npy, "csv": _read_csv, "text": _read_text}
        x, y = readers[request.format](request, base_dir, where)
        source = str(request.path)
    if (request.window is not None) != (request.format == "text"):
        raise ApiShapeMismatchError(
            "window is required for format text and only there",
            reason="CONSTRAINT",
            path=f"{where}.window",
        )
    if request.rows is not None:
        x, y = _slice_rows(x, y, request, where)
    x, y = _check_arrays(x, y, source, where)
    obj: dict[str, object] = {
        "dataset_key": request.dataset_key,
        "id": request.id,
        "version": request.version,
        "content_hash": content_hash(x, y),
        "cardinality": int(x.shape[0]),
        "format": request.format,
        "feature_key": request.feature_key,
        "label_key": request.label_key,
        "feature_shape": [int(n) for n in x.shape[1:]],
        "feature_dtype": x.dtype.name,
        "label_shape": [int(n) for n in y.shape[1:]],
        "label_dtype": y.dtype.name,
    }
    if request.path is not None and request.format != "builtin":
        obj["path"] = request.path
    if request.builtin is not None:
        obj["builtin"] = request.builtin
    if request.rows is not None:
        obj["rows"] = request.rows.to_obj()
    if request.window is not None:
        obj["window"] = request.window
    n_classes = _num_classes(y)
    if n_classes is not None and n_classes >= 1:
        obj["num_classes"] = n_classes
    record = DatasetRecord.from_obj(obj, where)
    _check_expected(request, record, where)
    return Dataset(key=request.dataset_key, features=x, labels=y, record=record)


def _slice_rows(
    x: Array, y: Array, request: RegisterDatasetRequest, where: str
) -> tuple[Array, Array]:
    rows = request.rows
    assert rows is not None
    n = int(x.shape[0])
    modulus = rows.modulus or 1
    remainders = rows.remainders if rows.remainders is not None else (0,)
    if not rows.start < rows.stop <= n:
        raise ApiShapeMismatchError(
            f"rows [{rows.start}, {rows.stop}) is not a non-empty range within the source's {n} samples",
            reason="CONSTRAINT",
            path=f"{where}.rows",
        )
    if list(remainders) != sorted(remainders) or remainders[-1] >= modulus:
        raise ApiShapeMismatchError(
            f"remainders {list(remainders)} must be ascending and below modulus {modulus}",
            reason="CONSTRAINT",
            path=f"{where}.rows.remainders",
        )
    index = np.arange(rows.start, rows.stop)
    index = index[np.isin((index - rows.start) % modulus, remainders)]
    if index.size == 0:
        raise ApiShapeMismatchError(
            "rows selects no sample", reason="CONSTRAINT", path=f"{where}.rows"
        )
    return x[index], y[index]


def _read_text(request: RegisterDatasetRequest, base_dir: Path, where: str) -> tuple[Array, Array]:
    """Byte-level language-model windows: features = bytes [i, i+w), labels = [i+1, i+w+1)."""
    p = _resolve(request, base_dir, where)
    window = request.window
    if window is None:
        raise ApiShapeMismatchError(
            "format text needs a window", reason="MISSING_FIELD", path=f"{where}.window"
        )
    try:
        raw = p.read_bytes()
        raw.decode("utf-8")
    except OSError as exc:
        raise _data_error(
            f"cannot read {p}: {exc.strerror}",
            str(p),
            path=f"{where}.path",
            reason="DATA_SOURCE_MISSING",
        ) from exc
    except UnicodeDecodeError as exc:
        raise _data_error(
            f"text is not valid UTF-8 at byte {exc.start}", str(p), path=f"{where}.path"
        ) from exc
    tokens = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    n = (len(tokens) - 1) // window
    if n < 1:
        raise _data_error(
            f"text has {len(tokens)} bytes, fewer than one window of {window + 1}",
            str(p),
            path=f"{where}.path",
            reason="NUMERIC_EMPTY",
        )
    span = tokens[: n * window + 1]
    x = span[:-1].reshape(n, window)
    y = span[1:].reshape(n, window)
    return x, y


def _check_expected(request: RegisterDatasetRequest, record: DatasetRecord, where: str) -> None:
    key = request.dataset_key
    context = {
        "dataset_key": key,
        "registered_hash": (request.expected_hash or record.content_hash).hex(),
        "found_hash": record.content_hash.hex(),
        "registered_cardinality": request.expected_cardinality,
        "found_cardinality": record.cardinality,
    }
    exp_n = request.expected_cardinality
    if exp_n is not None and exp_n != record.cardinality:
        raise CardinalityMismatchError(
            f"dataset {key!r}: the manifest declares cardinality {exp_n}, "
            f"the data has {record.cardinality} samples",
            path=f"{where}.cardinality",
            context=context,
        )
    exp_h = request.expected_hash
    if exp_h is not None and exp_h != record.content_hash:
        raise CardinalityMismatchError(
            f"dataset {key!r}: the manifest declares hash {exp_h.hex()}, "
            f"the data hashes to {record.content_hash.hex()}",
            path=f"{where}.hash",
            context=context,
        )


# --------------------------------------------------------------------------- public API


def register_dataset(
    request: RegisterDatasetRequest, *, base_dir: Path | str = "."
) -> DatasetRecord:
    """Decode a dataset source, hash it and return its record (UML_OS.Data.RegisterDataset_v1).

    Write the record's ``content_hash`` and ``cardinality`` into the manifest's dataset entry.
    Expected values in the request that differ from the data are CARDINALITY_MISMATCH.

    >>> from umlos._generated.records import RegisterDatasetRequest
    >>> from umlos.data import register_dataset
    >>> req = RegisterDatasetRequest(dataset_key="train", id="iris", version="v1",
    ...     format="builtin", builtin="iris", feature_key="x", label_key="y")
    >>> rec = register_dataset(req)
    >>> rec.cardinality, rec.feature_shape, rec.num_classes
    (150, (4,), 3)
    """
    # Validate a hand-built request as a wire payload would be (key and name patterns).
    request = RegisterDatasetRequest.from_obj(request.to_obj(), "$.request")
    return _read(request, Path(base_dir)).record


def load_dataset(key: str, ref: ManifestDatasetRef, base_dir: Path | str = ".") -> Dataset:
    """Decode the dataset a manifest declares under ``key`` and check it against the
    declared ``hash`` and ``cardinality`` (CARDINALITY_MISMATCH naming the key and both values).

    Relative paths resolve against ``base_dir`` (the manifest's directory).

    >>> from umlos.data import load_dataset
    >>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
    >>> m = loads_manifest(EXAMPLE_MANIFEST).manifest
    >>> ds = load_dataset("train", m.datasets["train"])
    >>> ds.features.shape, ds.labels.dtype.name, ds.features.flags.writeable
    ((150, 4), 'int64', False)
    """
    request = RegisterDatasetRequest(
        dataset_key=key,
        id=ref.id,
        version=ref.version,
        format=ref.format,
        path=ref.path,
        builtin=ref.builtin,
        feature_key=ref.feature_key or "x",
        label_key=ref.label_key or "y",
        expected_hash=ref.hash,
        expected_cardinality=ref.cardinality,
        rows=ref.rows,
        window=ref.window,
    )
    return _read(request, Path(base_dir))


def load_datasets(loaded: LoadedManifest) -> dict[str, Dataset]:
    """Every dataset a loaded manifest declares, checked, in ascending key order.

    >>> from umlos.data import load_datasets
    >>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
    >>> sorted(load_datasets(loads_manifest(EXAMPLE_MANIFEST)))
    ['train']
    """
    m = loaded.manifest
    return {key: load_dataset(key, m.datasets[key], loaded.base_dir) for key in sorted(m.datasets)}
