"""The run-commit write-ahead log and the COMMITTED pointer (docs/formats/wal.md, ADR 0014).

One log per run, ``<run_dir>/wal/run_commit.cborlog``: framed records (``_frames``) PREPARE →
CERT_SIGNED → FINALIZE, or a ROLLBACK that only :func:`recover` writes. Each record carries
``wal_seq`` (0, +1), ``prev_record_hash`` (32 zero bytes first) and ``record_hash =
commit_hash(WAL_RECORD, record map without record_hash)``. Every append is fsynced before it
returns. ``<run_dir>/COMMITTED`` is the visibility barrier, published by create-if-absent only
after FINALIZE is durable.

>>> import tempfile
>>> from pathlib import Path
>>> from umlos._generated.records import WalPrepareBody
>>> tmp = tempfile.TemporaryDirectory()
>>> wal = RunCommitWal(Path(tmp.name), tenant_id="t", run_id="0123456789abcdef")
>>> rec = wal.append(WalPrepareBody(manifest_hash=bytes(32), policy_bundle_hash=bytes(32),
...     operator_registry_hash=bytes(32), determinism_profile_hash=bytes(32)))
>>> rec.wal_seq, rec.prev_record_hash == GENESIS_PREV_HASH, len(read_wal(wal.path))
(0, True, 1)
>>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import crc32c

from umlos import _faults
from umlos._generated import tags
from umlos._generated.records import (
    CommitPointer,
    FinalizeRunCommitResponse,
    WalAppendBody,
    WalCertSignedBody,
    WalFinalize,
    WalFinalizeBody,
    WalPrepareBody,
    WalRecord,
    WalRecoverRequest,
    WalRecoveryReport,
    WalRollback,
    WalRollbackBody,
    wal_append_body_from_obj,
    wal_record_from_obj,
)
from umlos.codec import CborError, commit_hash, decode, digest, encode
from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    ContractViolationError,
    WalCorruptionError,
)
from umlos.evidence._frames import (
    FRAME_OVERHEAD,
    FrameProblem,
    append_frames,
    fsync_dir,
    scan_frames,
)

__all__ = [
    "COMMITTED_FILE",
    "FINAL_ARTIFACTS",
    "GENESIS_PREV_HASH",
    "MAX_WAL_BYTES",
    "MAX_WAL_RECORDS",
    "MAX_WAL_RECORD_BYTES",
    "TMP_ARTIFACTS",
    "WAL_CORRUPTION_REASONS",
    "WAL_FILE",
    "WAL_WRITER_REASONS",
    "ArtifactHashFn",
    "FinalArtifact",
    "RemoveTmpFn",
    "RunCommitWal",
    "TmpArtifact",
    "WalCorruptionReason",
    "pointer_for",
    "pointer_path",
    "publish_committed",
    "read_wal",
    "recover",
    "wal_path",
    "wal_record_hash",
]

# --- layout and limits -----------------------------------------------------------------------

WAL_FILE: Final = Path("wal") / "run_commit.cborlog"
"""The log's path relative to the run directory."""
COMMITTED_FILE: Final = Path("COMMITTED")
"""The visibility barrier's path relative to the run directory."""
GENESIS_PREV_HASH: Final = bytes(32)
"""``prev_record_hash`` of ``wal_seq`` 0 (evidence §12.3)."""

# The largest legal record is a ROLLBACK naming 64 hashes (wal.yaml maxItems) with a 64-character
# tenant id: under 2.5 KiB of canonical CBOR. A declared length above this is damage, not data.
MAX_WAL_RECORD_BYTES: Final = 4096
# The record grammar allows PREPARE, CERT_SIGNED and one terminal record, nothing more.
MAX_WAL_RECORDS: Final = 3
# So no legal log is longer than this; a longer file is not read at all.
MAX_WAL_BYTES: Final = MAX_WAL_RECORDS * (FRAME_OVERHEAD + MAX_WAL_RECORD_BYTES)
# A COMMITTED pointer is seven short fields (< 300 bytes); only this much of the file is read.
_MAX_POINTER_BYTES: Final = 4096

# --- closed lists ----------------------------------------------------------------------------

WalCorruptionReason = Literal[
    "FRAME_TRUNCATED",
    "FRAME_CRC_MISMATCH",
    "FRAME_OVERSIZED",
    "LOG_OVERSIZED",
    "CBOR_INVALID",
    "SCHEMA_INVALID",
    "IDENTITY_MISMATCH",
    "SEQ_GAP",
    "RECORD_HASH_MISMATCH",
    "CHAIN_MISMATCH",
    "RECORD_ORDER",
    "DUPLICATE_TERMINAL",
    "RECORD_AFTER_TERMINAL",
    "POINTER_WITHOUT_FINALIZE",
    "POINTER_MISMATCH",
    "ARTIFACT_MISMATCH",
]
"""Every ``reason`` a :class:`~umlos.errors.WalCorruptionError` from this module carries."""

WAL_CORRUPTION_REASONS: Final[Mapping[str, str]] = {
    "FRAME_TRUNCATED": "A frame runs past the end of the log and is not a torn last append.",
    "FRAME_CRC_MISMATCH": "A frame's CRC-32C does not match and it is not a torn last append.",
    "FRAME_OVERSIZED": "A frame declares a length above MAX_WAL_RECORD_BYTES.",
    "LOG_OVERSIZED": "The log is longer than the longest legal log (MAX_WAL_BYTES).",
    "CBOR_INVALID": "A checksum-valid frame does not hold one canonical CBOR item.",
    "SCHEMA_INVALID": "A record does not validate against its wal.yaml type.",
    "IDENTITY_MISMATCH": "A record names another tenant or run than the log's.",
    "SEQ_GAP": "wal_seq is not 0 for the first record or the previous plus one (gap, duplicate, reorder).",
    "RECORD_HASH_MISMATCH": "A record's record_hash is not the commitment of its other fields.",
    "CHAIN_MISMATCH": "A record's prev_record_hash is not the previous record's record_hash.",
    "RECORD_ORDER": "Record types break PREPARE, CERT_SIGNED, then FINALIZE or ROLLBACK.",
    "DUPLICATE_TERMINAL": "A second terminal record (FINALIZE or ROLLBACK) follows the first.",
    "RECORD_AFTER_TERMINAL": "A non-terminal record or other bytes follow the terminal record.",
    "POINTER_WITHOUT_FINALIZE": "A COMMITTED pointer exists but the log does not end in FINALIZE.",
    "POINTER_MISMATCH": "The COMMITTED pointer differs from the one the FINALIZE record implies.",
    "ARTIFACT_MISMATCH": "A final artifact FINALIZE names is missing or has another hash.",
}
"""Reason → meaning, the text for ``WAL_CORRUPTION`` in ``contracts/errors.yaml``."""

WAL_WRITER_REASONS: Final[Mapping[str, str]] = {
    "WAL_RECORD_ORDER": "An append would break the record order (or is a ROLLBACK, which only recovery writes).",
    "WAL_WRITER_STALE": "An earlier append failed or the log changed underneath the writer; recover and reopen.",
}
"""Reason → meaning for the ``CONTRACT_VIOLATION`` errors a misused writer raises."""

FinalArtifact = Literal[
    "trace_final_hash", "checkpoint_hash", "lineage_root_hash", "certificate_hash"
]
"""The FINALIZE fields that name stored artifacts, as passed to an :data:`ArtifactHashFn`."""
FINAL_ARTIFACTS: Final[tuple[FinalArtifact, ...]] = get_args(FinalArtifact)

TmpArtifact = Literal[
    "trace_tmp_hash", "checkpoint_tmp_hash", "lineage_tmp_hash", "certificate_tmp_hash"
]
"""The record fields that name not-yet-committed artifacts, as passed to a :data:`RemoveTmpFn`."""
TMP_ARTIFACTS: Final[tuple[TmpArtifact, ...]] = get_args(TmpArtifact)

ArtifactHashFn = Callable[[FinalArtifact], bytes | None]
"""The identity hash of the run's stored artifact named by a FINALIZE field, or None if absent."""
RemoveTmpFn = Callable[[TmpArtifact, bytes], None]
"""Remove the not-yet-committed artifact ``(field, hash)``; must be idempotent (absent is fine)."""

_TERMINAL: Final = frozenset({"FINALIZE", "ROLLBACK"})
_NEXT: Final[Mapping[str | None, frozenset[str]]] = {
    None: frozenset({"PREPARE"}),
    "PREPARE": frozenset({"CERT_SIGNED", "ROLLBACK"}),
    "CERT_SIGNED": frozenset({"FINALIZE", "ROLLBACK"}),
    "FINALIZE": frozenset(),
    "ROLLBACK": frozenset(),
}
_U32: Final = struct.Struct("<I")


def wal_path(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run's commit log lives: ``<run_dir>/wal/run_commit.cborlog``."""
    return Path(run_dir) / WAL_FILE


def pointer_path(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run's COMMITTED pointer lives: ``<run_dir>/COMMITTED``."""
    return Path(run_dir) / COMMITTED_FILE


def wal_record_hash(record_map: Mapping[str, object]) -> bytes:
    """``commit_hash(WAL_RECORD, map without record_hash)`` (evidence §1.3, decisions §12.4/5).

    >>> wal_record_hash({"record_hash": b"ignored"}) == wal_record_hash({})
    True
    """
    return commit_hash(tags.WAL_RECORD, {k: v for k, v in record_map.items() if k != "record_hash"})


def pointer_for(final: WalFinalize) -> CommitPointer:
    """The COMMITTED pointer a durable FINALIZE record implies (the only one that may exist)."""
    return CommitPointer(
        tenant_id=final.tenant_id,
        run_id=final.run_id,
        trace_final_hash=final.trace_final_hash,
        checkpoint_hash=final.checkpoint_hash,
        lineage_root_hash=final.lineage_root_hash,
        certificate_hash=final.certificate_hash,
        wal_terminal_hash=final.record_hash,
    )


# --- errors ----------------------------------------------------------------------------------


def _corrupt(
    reason: WalCorruptionReason,
    message: str,
    *,
    path: Path,
    run_id: str,
    wal_seq: int,
    record_hash: bytes,
    offset: int | None = None,
    **extra: object,
) -> WalCorruptionError:
    """A ``WAL_CORRUPTION`` with its catalogue fields; ``record_hash`` is the offending record's
    stored hash when it decoded, else the last valid record's (zeros before the first)."""
    return WalCorruptionError(
        message,
        reason=reason,
        offset=offset,
        artifact=str(path),
        context={"run_id": run_id, "wal_seq": wal_seq, "record_hash": record_hash, **extra},
    )


def _writer_error(reason: str, message: str, path: Path) -> ContractViolationError:
    return ContractViolationError(
        message, reason=reason, artifact=str(path), context={"failure_operator": "WalAppend"}
    )


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Log:
    """A parsed log: its valid records and whether a torn last append follows them."""

    records: tuple[WalRecord, ...]
    valid_length: int
    torn_tail: bool


def _read_bytes(path: Path, run_id: str) -> bytes | None:
    """The log's bytes, or None when it does not exist; refuses a file no legal log can fill."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > MAX_WAL_BYTES:
            raise _corrupt(
                "LOG_OVERSIZED",
                f"log of {size} bytes exceeds the longest legal log ({MAX_WAL_BYTES})",
                path=path,
                run_id=run_id,
                wal_seq=0,
                record_hash=GENESIS_PREV_HASH,
            )
        data = b""
        while len(data) <= MAX_WAL_BYTES and (chunk := os.read(fd, MAX_WAL_BYTES + 1)):
            data += chunk  # a file that grew meanwhile stops here and fails in _Parser.run
        return data
    finally:
        os.close(fd)


def _parse(
    data: bytes,
    *,
    path: Path,
    tenant_id: str | None,
    run_id: str | None,
    tolerate_torn_tail: bool,
) -> _Log:
    """Check a whole log: steps 2-6 of :func:`recover`."""
    return _Parser(data, path, tenant_id, run_id).run(tolerate_torn_tail=tolerate_torn_tail)


class _Parser:
    """One pass over a log's bytes; raises at the first damage that is not a torn last append."""

    def __init__(self, data: bytes, path: Path, tenant_id: str | None, run_id: str | None) -> None:
        self.data = data
        self.path = path
        self.tenant_id = tenant_id
        self.run_id = run_id
        self.records: list[WalRecord] = []

    def fail(
        self,
        reason: WalCorruptionReason,
        message: str,
        *,
        offset: int,
        record_hash: bytes | None = None,
    ) -> WalCorruptionError:
        """The error for damage at ``offset`` in the record due next (``wal_seq`` = count so far)."""
        last_hash = self.records[-1].record_hash if self.records else GENESIS_PREV_HASH
        run_id = self.run_id if self.run_id is not None else self._first("run_id")
        return _corrupt(
            reason,
            message,
            path=self.path,
            run_id=run_id or "",
            wal_seq=len(self.records),
            record_hash=record_hash if record_hash is not None else last_hash,
            offset=offset,
        )

    def _first(self, field: str) -> str | None:
        return getattr(self.records[0], field) if self.records else None

    def run(self, *, tolerate_torn_tail: bool) -> _Log:
        if len(self.data) > MAX_WAL_BYTES:
            raise self.fail(
                "LOG_OVERSIZED",
                f"log of {len(self.data)} bytes exceeds the longest legal log ({MAX_WAL_BYTES})",
                offset=0,
            )
        # 2. Framing: every complete, checksum-valid frame from the start.
        scan = scan_frames(self.data)
        for frame in scan.frames:
            if not frame.payload and _is_zero_fill(self.data, frame.offset):
                # An append whose data never reached the disk reads back as zeros.
                return self.tail(frame.offset, None, tolerate_torn_tail, zero_fill=True)
            self.records.append(self.record(frame.payload, frame.offset))
        if scan.problem is None:
            return _Log(tuple(self.records), len(self.data), torn_tail=False)
        assert scan.problem_offset is not None
        return self.tail(scan.problem_offset, scan.problem, tolerate_torn_tail)

    def record(self, payload: bytes, offset: int) -> WalRecord:
        """Steps 2-6 for one checksum-valid frame."""
        seq = len(self.records)
        last_hash = self.records[-1].record_hash if self.records else GENESIS_PREV_HASH
        # 2. Framing: a checksum-valid frame must still have a legal record's length.
        if len(payload) > MAX_WAL_RECORD_BYTES:
            raise self.fail(
                "FRAME_OVERSIZED",
                f"record of {len(payload)} bytes exceeds {MAX_WAL_RECORD_BYTES}",
                offset=offset,
            )
        # 3. Records: canonical CBOR, then the wal.yaml type, then the run's identity.
        try:
            obj = decode(payload)
        except CborError as exc:
            msg = f"record is not canonical CBOR: {exc}"
            raise self.fail("CBOR_INVALID", msg, offset=offset) from exc
        try:
            record = wal_record_from_obj(obj)
        except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
            msg = f"record does not fit its schema: {exc}"
            raise self.fail("SCHEMA_INVALID", msg, offset=offset) from exc
        if encode(record.to_obj()) != payload:
            msg = "record does not round-trip through its schema type"
            raise self.fail("SCHEMA_INVALID", msg, offset=offset)
        own = record.record_hash
        tenant = self.tenant_id if self.tenant_id is not None else self._first("tenant_id")
        run = self.run_id if self.run_id is not None else self._first("run_id")
        if (tenant is not None and record.tenant_id != tenant) or (
            run is not None and record.run_id != run
        ):
            msg = f"record names {record.tenant_id}/{record.run_id}, the log is {tenant}/{run}"
            raise self.fail("IDENTITY_MISMATCH", msg, offset=offset, record_hash=own)
        # 4. Continuity: 0, then +1; a duplicated or reordered record shows up here.
        if record.wal_seq != seq:
            msg = f"wal_seq {record.wal_seq} where {seq} is due"
            raise self.fail("SEQ_GAP", msg, offset=offset, record_hash=own)
        # 5. Chain: recompute the record hash, then check the link to the previous record.
        if wal_record_hash(record.to_obj()) != own:
            msg = "record_hash is not the commitment of the record"
            raise self.fail("RECORD_HASH_MISMATCH", msg, offset=offset, record_hash=own)
        if record.prev_record_hash != last_hash:
            msg = "prev_record_hash is not the previous record_hash"
            raise self.fail("CHAIN_MISMATCH", msg, offset=offset, record_hash=own)
        # 6. Terminal rules: PREPARE, CERT_SIGNED, then exactly one terminal record, last.
        problem = _order_problem(_last_type_or_none(self.records), record.record_type)
        if problem is not None:
            msg = f"{record.record_type} cannot follow {_last_type(self.records)}"
            raise self.fail(problem, msg, offset=offset, record_hash=own)
        return record

    def tail(
        self,
        offset: int,
        problem: FrameProblem | None,
        tolerate_torn_tail: bool,
        *,
        zero_fill: bool = False,
    ) -> _Log:
        """Step 2 at the first damaged frame: a torn last append, or corruption."""
        last = _last_type_or_none(self.records)
        # Nothing is ever appended after a terminal record, so bytes there are not a torn append.
        if last in _TERMINAL:
            raise self.fail(
                "RECORD_AFTER_TERMINAL", f"bytes follow the terminal {last}", offset=offset
            )
        data = self.data
        declared = _U32.unpack_from(data, offset)[0] if len(data) - offset >= 4 else None
        if not zero_fill and declared is not None and declared > MAX_WAL_RECORD_BYTES:
            msg = f"frame declares {declared} bytes (> {MAX_WAL_RECORD_BYTES})"
            raise self.fail("FRAME_OVERSIZED", msg, offset=offset)
        torn = zero_fill or _is_torn(data, offset, problem)
        if torn and tolerate_torn_tail:
            return _Log(tuple(self.records), offset, torn_tail=True)
        if problem == "CRC_MISMATCH":
            raise self.fail("FRAME_CRC_MISMATCH", "frame checksum does not match", offset=offset)
        what = "a torn last append" if torn else "a frame runs past the end of the log"
        raise self.fail("FRAME_TRUNCATED", what, offset=offset)


def _order_problem(last_type: str | None, new_type: str) -> WalCorruptionReason | None:
    if last_type in _TERMINAL:
        return "DUPLICATE_TERMINAL" if new_type in _TERMINAL else "RECORD_AFTER_TERMINAL"
    if new_type not in _NEXT[last_type]:
        return "RECORD_ORDER"
    return None


def _last_type(records: list[WalRecord] | tuple[WalRecord, ...]) -> str:
    return records[-1].record_type if records else "the start of the log"


def _last_type_or_none(records: list[WalRecord]) -> str | None:
    return records[-1].record_type if records else None


def _is_zero_fill(data: bytes, offset: int) -> bool:
    rest = memoryview(data)[offset:]
    return len(rest) <= FRAME_OVERHEAD + MAX_WAL_RECORD_BYTES and not any(rest)


def _is_torn(data: bytes, offset: int, problem: FrameProblem | None) -> bool:
    """Whether the bytes from ``offset`` can be one interrupted append of one frame.

    They must fit in one frame, be cut short (``TRUNCATED_FRAME``) or end exactly at EOF with a
    bad checksum (a partly persisted write), and contain no intact frame: damage followed by an
    intact record is a corrupted middle, never a torn tail.
    """
    end = len(data)
    if end - offset > FRAME_OVERHEAD + MAX_WAL_RECORD_BYTES:
        return False
    if problem == "CRC_MISMATCH":
        if offset + FRAME_OVERHEAD + _U32.unpack_from(data, offset)[0] != end:
            return False
    elif problem != "TRUNCATED_FRAME":
        return False
    return _first_intact_frame(data, offset + 1) is None


def _first_intact_frame(data: bytes, start: int) -> int | None:
    """The first offset at or after ``start`` where a non-empty, checksum-valid frame of legal
    size lies (records are never empty, and the genesis hash's zeros read as empty frames)."""
    end = len(data)
    for q in range(start, end - FRAME_OVERHEAD):
        (length,) = _U32.unpack_from(data, q)
        stop = q + FRAME_OVERHEAD + length
        if (
            0 < length <= MAX_WAL_RECORD_BYTES
            and stop <= end
            and crc32c.crc32c(data[q + 4 : stop - 4]) == _U32.unpack_from(data, stop - 4)[0]
        ):
            return q
    return None


def read_wal(
    path: str | os.PathLike[str], *, tenant_id: str | None = None, run_id: str | None = None
) -> tuple[WalRecord, ...]:
    """Every record of the log at ``path``, strictly checked (for verification; changes nothing).

    Unlike :func:`recover` this tolerates nothing: a torn last frame is ``FRAME_TRUNCATED`` or
    ``FRAME_CRC_MISMATCH``. ``tenant_id``/``run_id``, when given, must match every record; else
    all records must name the first record's. Raises :class:`~umlos.errors.WalCorruptionError`
    (reasons: :data:`WAL_CORRUPTION_REASONS`), or ``FileNotFoundError`` if there is no log.
    """
    p = Path(path)
    data = _read_bytes(p, run_id or "")
    if data is None:
        raise FileNotFoundError(f"no commit log at {p}")
    return _parse(
        data, path=p, tenant_id=tenant_id, run_id=run_id, tolerate_torn_tail=False
    ).records


# --- writing ---------------------------------------------------------------------------------


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_dir(d.parent)


class RunCommitWal:
    """The commit log of one run; one writer per ``(tenant_id, run_id)`` (evidence §1.1).

    Opening reads the existing log strictly: a log with a torn tail must go through
    :func:`recover` first. :meth:`append` takes a record body (type and payload), fills in
    identity, ``wal_seq``, ``prev_record_hash`` and ``record_hash``, validates the record
    against wal.yaml and returns only once the frame is fsynced.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     wal = RunCommitWal(run_dir, tenant_id="t", run_id="0123456789abcdef")
    ...     wal.records, wal.path.relative_to(run_dir).as_posix()
    ((), 'wal/run_commit.cborlog')
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, tenant_id: str, run_id: str) -> None:
        WalRecoverRequest.from_obj({"tenant_id": tenant_id, "run_id": run_id})  # id patterns
        self.run_dir = Path(run_dir)
        self.path = wal_path(self.run_dir)
        self.tenant_id = tenant_id
        self.run_id = run_id
        data = _read_bytes(self.path, run_id)
        log = (
            _Log((), 0, torn_tail=False)
            if data is None
            else _parse(
                data, path=self.path, tenant_id=tenant_id, run_id=run_id, tolerate_torn_tail=False
            )
        )
        self._records: list[WalRecord] = list(log.records)
        self._length = log.valid_length
        self._failed = False

    @property
    def records(self) -> tuple[WalRecord, ...]:
        """The records written so far, in ``wal_seq`` order."""
        return tuple(self._records)

    def append(self, body: WalPrepareBody | WalCertSignedBody | WalFinalizeBody) -> WalRecord:
        """Durably append PREPARE, CERT_SIGNED or FINALIZE; returns the stored record.

        Raises ``CONTRACT_VIOLATION`` ``WAL_RECORD_ORDER`` for a record out of order (or a
        ROLLBACK), ``WAL_WRITER_STALE`` after a failed append or if the file changed; the
        ``API_*`` errors for a payload that does not fit wal.yaml. An ``OSError`` from the
        file system (ENOSPC, EIO) propagates and leaves at most a torn last frame, which
        :func:`recover` discards; this writer then refuses further appends.
        """
        kind: str = body.record_type
        if kind == "ROLLBACK":
            raise _writer_error(
                "WAL_RECORD_ORDER", "ROLLBACK is written only by recover()", self.path
            )
        return self._append(body)

    def _append(self, body: WalAppendBody) -> WalRecord:
        if self._failed:
            raise _writer_error(
                "WAL_WRITER_STALE", "an earlier append failed; run recover() first", self.path
            )
        # Validate the caller's part first: nothing unchecked reaches the hash or the disk.
        wal_append_body_from_obj(body.to_obj())
        problem = _order_problem(_last_type_or_none(self._records), body.record_type)
        if problem is not None:
            raise _writer_error(
                "WAL_RECORD_ORDER",
                f"{body.record_type} cannot follow {_last_type(self._records)} ({problem})",
                self.path,
            )
        obj: dict[str, object] = {
            **body.to_obj(),
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "wal_seq": len(self._records),
            "prev_record_hash": (
                self._records[-1].record_hash if self._records else GENESIS_PREV_HASH
            ),
        }
        obj["record_hash"] = wal_record_hash(obj)
        record = wal_record_from_obj(obj)
        payload = encode(record.to_obj())
        on_disk = self.path.stat().st_size if self.path.exists() else 0
        if on_disk != self._length:
            self._failed = True
            raise _writer_error(
                "WAL_WRITER_STALE",
                f"log is {on_disk} bytes, the writer expected {self._length}",
                self.path,
            )
        if self._length == 0:
            _make_dirs(self.path.parent)
        try:
            _faults.point("wal-append")  # crash tests: just before the record reaches the file
            new_length = append_frames(self.path, [payload], sync=True)
            if self._length == 0:
                fsync_dir(self.path.parent)  # the file's directory entry is durable too
        except BaseException:
            self._failed = True
            raise
        if new_length != self._length + FRAME_OVERHEAD + len(payload):
            self._failed = True  # another process appended too: one writer per run (§1.1)
            raise _writer_error(
                "WAL_WRITER_STALE",
                f"log grew to {new_length} bytes, not {self._length + FRAME_OVERHEAD + len(payload)}",
                self.path,
            )
        self._length = new_length
        self._records.append(record)
        return record


# --- the COMMITTED pointer -------------------------------------------------------------------


def _create_if_absent(path: Path, data: bytes) -> bool:
    """Publish ``data`` at ``path`` unless it exists; True if this call created it.

    The bytes go to a private temp file that is fsynced, then hard-linked into place: ``link``
    fails if the name exists, so a pointer is never overwritten and never seen half-written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            _faults.point("committed-written")  # crash tests: pointer written, not yet fsynced
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp_name, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        os.unlink(tmp_name)
    fsync_dir(path.parent)
    return created


def _read_pointer(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_POINTER_BYTES + 1)
    except FileNotFoundError:
        return None


def _publish(run_dir: Path, final: WalFinalize, log: Path) -> bool:
    """Create the pointer ``final`` implies, or check that the existing one is byte-identical."""
    expected = encode(pointer_for(final).to_obj())
    path = pointer_path(run_dir)
    existing = _read_pointer(path)
    created = False
    if existing is None:
        created = _create_if_absent(path, expected)
        if not created:
            existing = _read_pointer(path)
    if not created and existing != expected:
        raise _corrupt(
            "POINTER_MISMATCH",
            "the COMMITTED pointer differs from the one FINALIZE implies",
            path=log,
            run_id=final.run_id,
            wal_seq=final.wal_seq,
            record_hash=final.record_hash,
            pointer=str(path),
        )
    return created


def publish_committed(
    run_dir: str | os.PathLike[str], pointer: CommitPointer
) -> FinalizeRunCommitResponse:
    """Publish the COMMITTED pointer after FINALIZE is durable (create-if-absent).

    ``pointer`` must be :func:`pointer_for` of the log's last record, which must be FINALIZE
    (else ``POINTER_WITHOUT_FINALIZE`` or ``POINTER_MISMATCH``). If a pointer exists already its
    canonical bytes must be identical (else ``POINTER_MISMATCH``); the response says whether
    this call created it. The final artifacts are the caller's to have checked: it has just
    written their hashes into FINALIZE (:func:`recover` re-checks them on restart).
    """
    run_dir = Path(run_dir)
    pointer.from_obj(pointer.to_obj())  # validate against wal.yaml
    log_path = wal_path(run_dir)
    data = _read_bytes(log_path, pointer.run_id) or b""
    records = _parse(
        data,
        path=log_path,
        tenant_id=pointer.tenant_id,
        run_id=pointer.run_id,
        tolerate_torn_tail=False,
    ).records
    last = records[-1] if records else None
    if not isinstance(last, WalFinalize):
        raise _corrupt(
            "POINTER_WITHOUT_FINALIZE",
            f"cannot publish COMMITTED: the log ends in {_last_type(records)}",
            path=log_path,
            run_id=pointer.run_id,
            wal_seq=len(records),
            record_hash=last.record_hash if last else GENESIS_PREV_HASH,
        )
    if pointer != pointer_for(last):
        raise _corrupt(
            "POINTER_MISMATCH",
            "the pointer does not match the FINALIZE record",
            path=log_path,
            run_id=pointer.run_id,
            wal_seq=last.wal_seq,
            record_hash=last.record_hash,
        )
    created = _publish(run_dir, last, log_path)
    return FinalizeRunCommitResponse(
        pointer=pointer, commit_pointer_hash=digest(pointer.to_obj()), published=created
    )


# --- recovery --------------------------------------------------------------------------------


def _truncate(path: Path, length: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked_log(run_dir: Path, *, tenant_id: str, run_id: str) -> tuple[Path, _Log]:
    """Steps 1-7 of recovery: read, parse (setting a torn last append aside), check the pointer."""
    log_path = wal_path(run_dir)
    # 1. Enumerate: the log's bytes (no file = no records).
    data = _read_bytes(log_path, run_id) or b""
    # 2-6. Framing (a torn last append is set aside, not yet removed), records (CBOR, schema,
    #      identity), continuity, chain, terminal rules: _Parser.run, .record and .tail.
    log = _parse(data, path=log_path, tenant_id=tenant_id, run_id=run_id, tolerate_torn_tail=True)
    records = log.records
    last = records[-1] if records else None
    # 7. Pointer: COMMITTED is published only after a durable FINALIZE, so a pointer beside any
    #    other log state means lost or altered evidence. Abort; never delete it (ADR 0014).
    if not isinstance(last, WalFinalize) and pointer_path(run_dir).exists():
        raise _corrupt(
            "POINTER_WITHOUT_FINALIZE",
            f"a COMMITTED pointer exists but the log ends in {_last_type(records)}",
            path=log_path,
            run_id=run_id,
            wal_seq=len(records),
            record_hash=last.record_hash if last else GENESIS_PREV_HASH,
        )
    return log_path, log


def recover(
    run_dir: str | os.PathLike[str],
    *,
    tenant_id: str,
    run_id: str,
    artifact_hash: ArtifactHashFn,
    remove_tmp: RemoveTmpFn,
) -> WalRecoveryReport:
    """Bring a run to a consistent commit state after a restart (evidence §1.6, ADR 0014).

    Checks first, changes after: nothing is modified until steps 1–7 pass. The only changes are
    truncating a torn last frame, the rollback's ``remove_tmp`` calls and the ROLLBACK append
    (8c), and publishing a missing pointer after FINALIZE (8a). Idempotent: a second call finds
    the terminal record and changes nothing. Raises
    :class:`~umlos.errors.WalCorruptionError` (:data:`WAL_CORRUPTION_REASONS`) on any damage
    that is not a torn last append; that is an abort, never a repair.
    """
    WalRecoverRequest.from_obj({"tenant_id": tenant_id, "run_id": run_id})
    run_dir = Path(run_dir)
    log_path, log = _checked_log(run_dir, tenant_id=tenant_id, run_id=run_id)
    records = log.records
    last = records[-1] if records else None

    def report(**fields: object) -> WalRecoveryReport:
        base: dict[str, object] = {
            "tenant_id": tenant_id,
            "run_id": run_id,
            "records_validated": len(records),
            "removed_tmp_hashes": [],
            "rollback_appended": False,
            "pointer_published": False,
            "torn_tail_discarded": log.torn_tail,
        }
        return WalRecoveryReport.from_obj({**base, **fields})

    # 8a. FINALIZE: every final artifact is present with the committed hash; roll forward.
    if isinstance(last, WalFinalize):
        for field in FINAL_ARTIFACTS:
            want: bytes = getattr(last, field)
            found = artifact_hash(field)
            if found != want:
                state = "nothing" if found is None else f"{bytes(found).hex()[:16]}…"
                raise _corrupt(
                    "ARTIFACT_MISMATCH",
                    f"{field}: FINALIZE names {want.hex()[:16]}…, the store has {state}",
                    path=log_path,
                    run_id=run_id,
                    wal_seq=last.wal_seq,
                    record_hash=last.record_hash,
                    artifact_field=field,
                )
        published = _publish(run_dir, last, log_path)
        return report(
            commit_status="COMMITTED",
            terminal_record_hash=last.record_hash,
            pointer_published=published,
        )

    # 8b. ROLLBACK: already rolled back; the pointer check (7) showed nothing is visible.
    if isinstance(last, WalRollback):
        return report(
            commit_status="ROLLED_BACK",
            terminal_record_hash=last.record_hash,
            removed_tmp_hashes=list(last.removed_tmp_hashes),
        )

    # From here on the log is changed. First drop the torn last append, durably.
    if log.torn_tail:
        _truncate(log_path, log.valid_length)

    # 8d. No records: nothing was prepared, nothing to undo.
    if last is None:
        return report(commit_status="EMPTY")

    # 8c. PREPARE or CERT_SIGNED: deterministic rollback. Remove every temp artifact the log
    #     names (sorted by hash, then field), then append ROLLBACK naming all of them.
    tmp_refs = sorted(
        {(h, f) for r in records for f in TMP_ARTIFACTS if (h := getattr(r, f, None)) is not None}
    )
    for h, f in tmp_refs:
        remove_tmp(f, h)
    removed = sorted({h for h, _ in tmp_refs})
    writer = RunCommitWal(run_dir, tenant_id=tenant_id, run_id=run_id)
    rollback = writer._append(WalRollbackBody(removed_tmp_hashes=tuple(removed)))
    return report(
        commit_status="ROLLED_BACK",
        terminal_record_hash=rollback.record_hash,
        removed_tmp_hashes=removed,
        rollback_appended=True,
    )


def resume(
    run_dir: str | os.PathLike[str], *, tenant_id: str, run_id: str
) -> tuple[WalRecord, ...]:
    """Prepare an interrupted run's log for the run to continue (``umlos run --resume``).

    Unlike :func:`recover`, a log that ends in PREPARE or CERT_SIGNED is kept: the resumed run
    re-creates the same artifacts deterministically and goes on to FINALIZE. Only a torn last
    append is removed. Returns the surviving records; the caller stops if the last is terminal
    (FINALIZE: already committed; ROLLBACK: the run was abandoned and cannot be resumed).
    Every other kind of damage raises :class:`~umlos.errors.WalCorruptionError`, as in
    :func:`recover`.
    """
    log_path, log = _checked_log(Path(run_dir), tenant_id=tenant_id, run_id=run_id)
    records = log.records
    last = records[-1] if records else None
    if log.torn_tail and not isinstance(last, (WalFinalize, WalRollback)):
        _truncate(log_path, log.valid_length)
    return tuple(records)
