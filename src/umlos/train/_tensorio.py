"""Tensors ↔ bytes without pickle: little-endian, C order, 64-byte aligned, each with its SHA-256.

The layout is the one training states and checkpoints share: a list of ``TensorDescriptor``
records (name, dtype, shape, byte offset, byte length, sha256) and one blob. Offsets are aligned
to :data:`ALIGNMENT` with zero padding so a reader can map tensors in place; the padding is part
of the blob and therefore of any hash over it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umlos._generated.records import TensorDescriptor
from umlos.errors import CheckpointInvalidError

# 64 bytes: a cache line and the widest SIMD load on current CPUs.
ALIGNMENT = 64
_DTYPES: Mapping[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
}


def pack(tensors: Sequence[tuple[str, NDArray[Any]]]) -> tuple[tuple[TensorDescriptor, ...], bytes]:
    """Serialize named arrays in the given order.

    >>> import numpy as np
    >>> desc, blob = pack([("w", np.ones(2, np.float32))])
    >>> desc[0].byte_length, len(blob)
    (8, 8)
    """
    parts: list[bytes] = []
    descriptors = []
    offset = 0
    for name, array in tensors:
        dtype_name = str(array.dtype)
        if dtype_name not in _DTYPES:
            raise CheckpointInvalidError(
                f"tensor {name!r} has unsupported dtype {dtype_name}", reason="TENSOR_DTYPE"
            )
        pad = (-offset) % ALIGNMENT
        if pad:
            parts.append(bytes(pad))
            offset += pad
        data = np.ascontiguousarray(array, dtype=_DTYPES[dtype_name]).tobytes()
        descriptors.append(
            TensorDescriptor(
                name=name,
                dtype=dtype_name,  # type: ignore[arg-type]
                shape=tuple(int(d) for d in array.shape),
                byte_offset=offset,
                byte_length=len(data),
                sha256=hashlib.sha256(data).digest(),
            )
        )
        parts.append(data)
        offset += len(data)
    return tuple(descriptors), b"".join(parts)


def unpack(
    descriptors: Sequence[TensorDescriptor], blob: bytes | memoryview, *, artifact: str
) -> dict[str, NDArray[Any]]:
    """Read tensors back, checking every length and hash before any value is used."""
    view = memoryview(blob)
    out: dict[str, NDArray[Any]] = {}
    end = 0
    for i, d in enumerate(descriptors):
        path = f"$.tensors[{i}]"
        dtype = _DTYPES.get(d.dtype)
        if dtype is None:
            raise CheckpointInvalidError(
                f"unknown dtype {d.dtype}", reason="TENSOR_DTYPE", artifact=artifact, path=path
            )
        expected = int(np.prod(d.shape, dtype=np.int64)) * dtype.itemsize
        if d.byte_length != expected or d.byte_offset < end or d.byte_offset % ALIGNMENT:
            raise CheckpointInvalidError(
                f"tensor {d.name!r} has an inconsistent layout",
                reason="TENSOR_LAYOUT",
                artifact=artifact,
                path=path,
            )
        stop = d.byte_offset + d.byte_length
        if stop > len(view):
            raise CheckpointInvalidError(
                f"tensor {d.name!r} runs past the end of the data",
                reason="TENSOR_TRUNCATED",
                artifact=artifact,
                path=path,
                offset=d.byte_offset,
            )
        chunk = view[d.byte_offset : stop]
        if hashlib.sha256(chunk).digest() != d.sha256:
            raise CheckpointInvalidError(
                f"tensor {d.name!r} does not match its sha256",
                reason="TENSOR_HASH",
                artifact=artifact,
                path=path,
                offset=d.byte_offset,
            )
        if d.name in out:
            raise CheckpointInvalidError(
                f"tensor {d.name!r} appears twice",
                reason="TENSOR_LAYOUT",
                artifact=artifact,
                path=path,
            )
        array = np.frombuffer(chunk, dtype=dtype).reshape(d.shape).astype(dtype.newbyteorder("="))
        out[d.name] = array
        end = stop
    return out
