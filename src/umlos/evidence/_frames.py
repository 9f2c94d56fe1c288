"""Framed append-only logs: ``[u32le length | canonical CBOR | u32le CRC-32C]`` per record.

The trace sidecar, the step journal and the run-commit WAL share this framing (spec evidence
§1.4, §12.18). :func:`scan_frames` never raises: it returns the valid prefix and names the first
problem, because a torn last frame is an expected crash artifact that recovery handles, while the
same bytes in the middle of a log are corruption. Each log's reader decides which is which.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import crc32c

_U32: Final = struct.Struct("<I")
# One record's canonical CBOR is never near this: trace records are capped far lower, and a
# larger declared length is the signature of a torn or garbage length field.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
FRAME_OVERHEAD: Final = 8

FrameProblem = Literal["TRUNCATED_FRAME", "CRC_MISMATCH", "OVERSIZED_FRAME"]


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class FrameScan:
    """The valid frames of a log, and where and why scanning stopped (``problem`` is None at EOF)."""

    frames: tuple[Frame, ...]
    valid_length: int
    problem: FrameProblem | None = None
    problem_offset: int | None = None


def encode_frame(payload: bytes) -> bytes:
    """Frame one record.

    >>> encode_frame(b"\\xa0").hex()
    '01000000a0f7e636f0'
    """
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return _U32.pack(len(payload)) + payload + _U32.pack(crc32c.crc32c(payload))


def scan_frames(data: bytes | memoryview) -> FrameScan:
    """Every complete, checksum-valid frame from the start, stopping at the first problem."""
    view = memoryview(data)
    frames: list[Frame] = []
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < FRAME_OVERHEAD:
            return FrameScan(tuple(frames), pos, "TRUNCATED_FRAME", pos)
        (length,) = _U32.unpack_from(view, pos)
        if length > MAX_FRAME_BYTES:
            return FrameScan(tuple(frames), pos, "OVERSIZED_FRAME", pos)
        stop = pos + 4 + length + 4
        if stop > end:
            return FrameScan(tuple(frames), pos, "TRUNCATED_FRAME", pos)
        payload = bytes(view[pos + 4 : pos + 4 + length])
        (crc,) = _U32.unpack_from(view, pos + 4 + length)
        if crc != crc32c.crc32c(payload):
            return FrameScan(tuple(frames), pos, "CRC_MISMATCH", pos)
        frames.append(Frame(pos, payload))
        pos = stop
    return FrameScan(tuple(frames), pos)


def append_frames(path: Path, payloads: Sequence[bytes], *, sync: bool) -> int:
    """Append framed records to ``path`` (created if absent); fsync the file when ``sync``.

    Returns the file's new length. A crash mid-append leaves at most one torn frame at the
    end, which :func:`scan_frames` reports as ``TRUNCATED_FRAME`` or ``CRC_MISMATCH``.
    """
    blob = b"".join(encode_frame(p) for p in payloads)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(blob)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or a new file in it survives a crash (POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
