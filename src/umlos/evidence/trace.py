"""The trace sidecar: one hash-chained, append-only record stream per run (docs/formats/trace.md).

A trace file is a sequence of frames ``[u32le length | canonical CBOR record | u32le CRC-32C]``
(:mod:`umlos.evidence._frames`), one ``TraceRecord`` (``contracts/schemas/trace.yaml``) each,
chained as

    h0  = commit_hash(TRACE_CHAIN, [])
    h_i = commit_hash(TRACE_CHAIN, [h_(i-1), SHA-256(canonical CBOR of record i)])

where RUN_END is hashed without its ``trace_final_hash``, which stores the chain value that
includes RUN_END itself. :class:`TraceWriter` enforces the rules as it writes; :func:`read_trace`
checks the same rules (one implementation serves both) and fails with exactly one reason of
:data:`TRACE_FAILURES`, raised as :class:`~umlos.errors.TraceSchemaInvalidError` carrying the
``reason``, the byte ``offset`` of the frame at fault and the ``artifact`` read.

>>> from umlos.errors import TraceSchemaInvalidError
>>> TRACE_HEAD_HASH.hex()[:16]
'882b5851e1a6c9de'
>>> try:
...     read_trace(b"", artifact="empty.cborlog")
... except TraceSchemaInvalidError as err:
...     print(err.reason, err.offset, err.artifact)
MISSING_RUN_HEADER 0 empty.cborlog
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from umlos import _recordrt as _rt
from umlos._generated import tags
from umlos._generated.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    TraceCapExceededMandatoryError,
    TraceSchemaInvalidError,
)
from umlos._generated.records import (
    ManifestTraceConfig,
    TraceCheckpointCommit,
    TraceError,
    TraceIter,
    TraceRecord,
    TraceRunEnd,
    TraceRunHeader,
    TraceSamplingPolicy,
    trace_record_from_obj,
)
from umlos.codec import CborError, commit_hash, decode, digest, encode
from umlos.evidence._frames import (
    FRAME_OVERHEAD,
    MAX_FRAME_BYTES,
    Frame,
    FrameProblem,
    append_frames,
    fsync_dir,
    scan_frames,
)

__all__ = [
    "MANDATORY_KINDS",
    "MAX_FRAME_BYTES",
    "MAX_TRACE_BYTES",
    "TRACE_FAILURES",
    "TRACE_HEAD_HASH",
    "WRITE_BATCH_BYTES",
    "WRITE_BATCH_RECORDS",
    "FsyncPolicy",
    "TraceFailure",
    "TraceReadResult",
    "TraceWriter",
    "TraceWriterStats",
    "iter_is_kept",
    "read_trace",
    "record_hash",
    "sampling_policy",
    "trace_final_hash",
]

TraceFailure = Literal[
    "TRUNCATED_FRAME",  # the data ends inside a frame (a torn tail, or a cut file)
    "CRC_MISMATCH",  # a frame's CRC-32C does not match its payload
    "OVERSIZED_FRAME",  # a frame declares more than MAX_FRAME_BYTES
    "NOT_CANONICAL",  # a payload is not one canonical CBOR item (umlos.codec.decode refused it)
    "SCHEMA",  # a record fails its generated validator or a cross-field rule; `path` says where
    "OUT_OF_ORDER",  # a second RUN_HEADER, a decreasing t, or an ITER out of (t, rank, op_seq)
    "MISSING_RUN_HEADER",  # the first record is not RUN_HEADER, or there is no record
    "MISSING_RUN_END",  # the trace ends without RUN_END
    "RECORD_AFTER_END",  # a record follows RUN_END
    "CHAIN_BREAK",  # trace_final_hash or a trace_snapshot_hash is not the recomputed chain value
    "SIZE_CAP",  # a record or a step exceeds the policy's caps, or the file MAX_TRACE_BYTES
    "SAMPLING",  # a stored ITER is one the sampling policy drops
    "POLICY_MISMATCH",  # the sampling policy disagrees with RUN_HEADER
]
TRACE_FAILURES: Final[tuple[TraceFailure, ...]] = get_args(TraceFailure)
"""The closed list of reasons that :func:`read_trace` and :class:`TraceWriter` raise."""

FsyncPolicy = Literal["ALWAYS", "EXPLICIT", "NEVER"]
"""When a writer fsyncs: after every batch; only in ``sync()``, ``end()`` and ``close()`` (the run
loop syncs at checkpoints and at the end); or never (tests, benchmarks)."""

# Limits. Records are additionally bounded by _frames.MAX_FRAME_BYTES (16 MiB, re-exported): the
# policy's max_record_bytes is a uint32, but no record can be longer than one frame carries.
MAX_TRACE_BYTES: Final = 4 << 30
"""The largest file :func:`read_trace` loads. It holds the file and every decoded record in
memory (several times the file size). An ITER record is 150-350 bytes, so 4 GiB is over 10^7
kept records, far beyond a million-step run at the default 1-in-100 hash gate."""

WRITE_BATCH_RECORDS: Final = 64
"""Records buffered per write() call. One syscall costs about as much as encoding a record; 64
makes it noise, and a crash loses at most one batch, which resume re-creates anyway."""

WRITE_BATCH_BYTES: Final = 256 << 10
"""Buffered bytes that force a write whatever the record count: bounds a writer's memory."""

MANDATORY_KINDS: Final = frozenset(
    {
        "RUN_HEADER",
        "POLICY_GATE_VERDICT",
        "CHECKPOINT_COMMIT",
        "CERTIFICATE_INPUTS",
        "RUN_END",
        "ERROR",
    }
)
"""Record kinds that are never sampled out or dropped (spec evidence §2.4)."""

TRACE_HEAD_HASH: Final = commit_hash(tags.TRACE_CHAIN, [])
"""h0: the chain value of an empty trace."""

_U64_MAX: Final = 2**64 - 1
_U32_MAX: Final = 2**32 - 1


# ------------------------------------------------------------------------------------------------
# Hashing and sampling: pure functions of records.


def record_hash(record: TraceRecord) -> bytes:
    """A record's chain input: SHA-256 of its canonical CBOR (RUN_END without trace_final_hash).

    >>> from umlos._generated.records import TracePolicyGateVerdict
    >>> rec = TracePolicyGateVerdict(t=1, policy_gate_hash=bytes(32), transcript_hash=bytes(32))
    >>> record_hash(rec) == digest(rec.to_obj())
    True
    """
    obj = record.to_obj()
    if isinstance(record, TraceRunEnd):
        del obj["trace_final_hash"]
    return digest(obj)


def _link(prev: bytes, rec_hash: bytes) -> bytes:
    return commit_hash(tags.TRACE_CHAIN, [prev, rec_hash])


def trace_final_hash(records: Iterable[TraceRecord]) -> bytes:
    """The chain value after ``records`` (``TRACE_HEAD_HASH`` for none).

    Over a whole trace this is what its RUN_END stores; over a prefix it is the
    ``trace_snapshot_hash`` of a checkpoint taken after that prefix.

    >>> trace_final_hash([]) == TRACE_HEAD_HASH
    True
    """
    h = TRACE_HEAD_HASH
    for record in records:
        h = _link(h, record_hash(record))
    return h


def _gate_keeps(sample: str, m: int, k: int, fixed_k: int | None, record: TraceIter) -> bool:
    if sample == "HASH_GATED":
        # Spec decision A13: rank joins the preimage; the first 8 digest bytes are the integer.
        gate = digest([record.replay_token, [record.t, record.operator_seq, record.rank]])
        return int.from_bytes(gate[:8], "big") % m < k
    if sample == "FIXED_RATE":
        return fixed_k is not None and record.operator_seq % fixed_k == 0
    return True  # OFF keeps every record (A14)


def iter_is_kept(policy: TraceSamplingPolicy, record: TraceIter) -> bool:
    """Whether ``policy`` keeps ``record``: a pure function, the same answer on every machine.

    HASH_GATED keeps it iff ``u64_be(Digest([replay_token, [t, operator_seq, rank]])[0:8]) mod M
    < K``; FIXED_RATE iff ``operator_seq mod fixed_rate_k == 0``; OFF always.

    >>> rec = TraceIter(t=7, stage_id="train", operator_id="UML_OS.Data.NextBatch_v2",
    ...                 operator_seq=3, rank=0, status="ok", replay_token=bytes(32))
    >>> iter_is_kept(sampling_policy(None, sample_policy="FIXED_RATE", fixed_rate_k=3), rec)
    True
    """
    return _gate_keeps(
        policy.sample_policy, policy.hash_gate_m, policy.hash_gate_k, policy.fixed_rate_k, record
    )


def sampling_policy(config: ManifestTraceConfig | None, **overrides: object) -> TraceSamplingPolicy:
    """The TraceSamplingPolicy that a manifest's ``trace`` config declares, defaults filled.

    ``overrides`` replace single fields (tools and tests). The result is validated, including the
    cross-field rules the schema cannot state (``K <= M``; ``fixed_rate_k`` iff FIXED_RATE);
    a violation raises ``TraceSchemaInvalidError`` (SCHEMA).

    >>> p = sampling_policy(None)
    >>> p.sample_policy, p.hash_gate_m, p.hash_gate_k, p.max_record_bytes
    ('HASH_GATED', 100, 1, 1048576)
    """
    values: dict[str, object] = dict(ManifestTraceConfig.defaults)
    if config is not None:
        values.update(config.to_obj())
    values.update(overrides)
    if values.get("sample_policy") != "FIXED_RATE":
        values.pop("fixed_rate_k", None)
    return _checked_policy(values)


def _checked_policy(obj: object) -> TraceSamplingPolicy:
    try:
        policy = TraceSamplingPolicy.from_obj(obj, "$policy")
    except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
        raise _error("SCHEMA", f"sampling policy: {exc.message}", path=exc.path) from exc
    if policy.hash_gate_k > policy.hash_gate_m:
        raise _error("SCHEMA", "hash_gate_k exceeds hash_gate_m", path="$policy.hash_gate_k")
    if (policy.fixed_rate_k is not None) != (policy.sample_policy == "FIXED_RATE"):
        raise _error(
            "SCHEMA",
            "fixed_rate_k must be present iff sample_policy is FIXED_RATE",
            path="$policy.fixed_rate_k",
        )
    return policy


def _error(
    reason: TraceFailure,
    message: str,
    *,
    artifact: str | None = None,
    offset: int | None = None,
    index: int | None = None,
    path: str | None = None,
    t: int | None = None,
    run_id: str | None = None,
) -> TraceSchemaInvalidError:
    context: dict[str, object] = {}
    if t is not None:
        context["t"] = t
    if run_id is not None:
        context["run_id"] = run_id
    if index is not None:
        context["record_index"] = index
    return TraceSchemaInvalidError(
        message, reason=reason, path=path, offset=offset, artifact=artifact, context=context
    )


# ------------------------------------------------------------------------------------------------
# The rules, folded over records in file order. The writer, the reader and resume share this
# fold, so what the writer stores is exactly what the reader accepts.


def _step_of(rec: TraceRecord) -> int | None:
    return None if isinstance(rec, (TraceRunHeader, TraceRunEnd)) else rec.t


@dataclass(slots=True)
class _Fold:
    policy: TraceSamplingPolicy | None
    artifact: str | None
    chain: bytes = TRACE_HEAD_HASH
    count: int = 0  # records stored
    length: int = 0  # bytes stored, frames included
    header: TraceRunHeader | None = None
    ended: bool = False
    last_t: int = -1  # highest t offered (sampled-out and dropped ITERs included)
    closed_t: int = -1  # highest t of a non-ITER record: that step takes no more ITERs
    last_iter: tuple[int, int, int] = (-1, -1, -1)
    step_t: int = -1  # the step whose stored bytes are being counted
    step_bytes: int = 0  # canonical bytes stored for step_t, all kinds
    step_mandatory: int = 0  # ... of which mandatory records

    def fail(
        self, reason: TraceFailure, message: str, *, path: str | None = None, t: int | None = None
    ) -> TraceSchemaInvalidError:
        return _error(
            reason,
            message,
            artifact=self.artifact,
            offset=self.length,
            index=self.count,
            path=path,
            t=t,
            run_id=self.header.run_id if self.header is not None else None,
        )

    def check_order(self, rec: TraceRecord) -> None:
        """Ordering and cross-record identity rules (no state change; ``see`` applies them)."""
        if self.ended:
            raise self.fail("RECORD_AFTER_END", f"{rec.kind} record after RUN_END")
        if self.header is None:
            if not isinstance(rec, TraceRunHeader):
                raise self.fail("MISSING_RUN_HEADER", f"first record is {rec.kind}, not RUN_HEADER")
            self._check_header(rec)
            return
        where = f"$[{self.count}]"
        if isinstance(rec, TraceRunHeader):
            raise self.fail("OUT_OF_ORDER", "a second RUN_HEADER", path=where)
        if isinstance(rec, (TraceIter, TraceError)):
            if rec.replay_token != self.header.replay_token:
                raise self.fail(
                    "SCHEMA",
                    "replay_token differs from RUN_HEADER's",
                    path=f"{where}.replay_token",
                    t=rec.t,
                )
            if rec.rank >= self.header.world_size:
                raise self.fail(
                    "SCHEMA",
                    f"rank {rec.rank} is not below world_size {self.header.world_size}",
                    path=f"{where}.rank",
                    t=rec.t,
                )
        t = _step_of(rec)
        if t is None:
            return
        if t < self.last_t:
            raise self.fail(
                "OUT_OF_ORDER", f"step {t} after step {self.last_t}", path=f"{where}.t", t=t
            )
        if isinstance(rec, TraceIter):
            if t <= self.closed_t:
                raise self.fail(
                    "OUT_OF_ORDER",
                    f"ITER of step {t} after a non-ITER record of step {self.closed_t} "
                    "(those follow their step's ITERs)",
                    path=where,
                    t=t,
                )
            key = (rec.t, rec.rank, rec.operator_seq)
            if key <= self.last_iter:
                raise self.fail(
                    "OUT_OF_ORDER",
                    f"ITER (t, rank, operator_seq) = {key} does not follow {self.last_iter}",
                    path=where,
                    t=t,
                )

    def _check_header(self, rec: TraceRunHeader) -> None:
        no_redaction = rec.redaction_mode == "NONE"
        for name in ("redaction_key_id", "redaction_policy_hash"):
            if no_redaction != (getattr(rec, name) is None):
                raise self.fail(
                    "SCHEMA",
                    f"{name} must be present iff redaction_mode is not NONE",
                    path=f"$[0].{name}",
                )
        if rec.hash_gate_k > rec.hash_gate_m:
            raise self.fail("SCHEMA", "hash_gate_k exceeds hash_gate_m", path="$[0].hash_gate_k")
        policy = self.policy
        if policy is None:
            return
        for name in ("sample_policy", "hash_gate_m", "hash_gate_k"):
            if getattr(rec, name) != getattr(policy, name):
                raise self.fail(
                    "POLICY_MISMATCH",
                    f"RUN_HEADER {name} differs from the sampling policy's",
                    path=f"$[0].{name}",
                )
        if rec.trace_policy_hash != digest(policy.to_obj()):
            raise self.fail(
                "POLICY_MISMATCH",
                "trace_policy_hash is not the digest of the sampling policy",
                path="$[0].trace_policy_hash",
            )

    def see(self, rec: TraceRecord) -> None:
        """Apply a checked record's effect on the ordering state (stored or not)."""
        if isinstance(rec, TraceRunHeader):
            self.header = rec
        elif isinstance(rec, TraceRunEnd):
            self.ended = True
        else:
            self.last_t = max(self.last_t, rec.t)
            if isinstance(rec, TraceIter):
                self.last_iter = (rec.t, rec.rank, rec.operator_seq)
            else:
                self.closed_t = max(self.closed_t, rec.t)

    def kept(self, rec: TraceIter) -> bool:
        """The sampling rule, from RUN_HEADER (FIXED_RATE's k only comes with a policy)."""
        header = self.header
        assert header is not None  # check_order put it there
        if header.sample_policy == "FIXED_RATE" and self.policy is None:
            return True
        fixed_k = self.policy.fixed_rate_k if self.policy is not None else None
        return _gate_keeps(
            header.sample_policy, header.hash_gate_m, header.hash_gate_k, fixed_k, rec
        )

    def _stored_in_step(self, t: int) -> tuple[int, int]:
        return (self.step_bytes, self.step_mandatory) if t == self.step_t else (0, 0)

    def iter_fits(self, rec: TraceIter, size: int) -> bool:
        if self.policy is None:
            return True
        stored, _ = self._stored_in_step(rec.t)
        return (
            size <= self.policy.max_record_bytes and stored + size <= self.policy.max_bytes_per_step
        )

    def mandatory_overflow(self, rec: TraceRecord, size: int) -> str | None:
        """Why a mandatory record cannot be stored within the caps, or None if it can."""
        if self.policy is None:
            return None
        if size > self.policy.max_record_bytes:
            return (
                f"{rec.kind} record of {size} bytes exceeds max_record_bytes "
                f"{self.policy.max_record_bytes}"
            )
        t = _step_of(rec)
        if t is not None:
            _, mandatory = self._stored_in_step(t)
            if mandatory + size > self.policy.max_bytes_per_step:
                return (
                    f"mandatory records of step {t} need {mandatory + size} bytes, over "
                    f"max_bytes_per_step {self.policy.max_bytes_per_step}"
                )
        return None

    def check_links(self, rec: TraceRecord, new_chain: bytes) -> None:
        where = f"$[{self.count}]"
        if isinstance(rec, TraceCheckpointCommit) and rec.trace_snapshot_hash != self.chain:
            raise self.fail(
                "CHAIN_BREAK",
                "trace_snapshot_hash is not the chain value before this record",
                path=f"{where}.trace_snapshot_hash",
                t=rec.t,
            )
        if isinstance(rec, TraceRunEnd) and rec.trace_final_hash != new_chain:
            raise self.fail(
                "CHAIN_BREAK",
                "trace_final_hash is not the chain value that includes RUN_END",
                path=f"{where}.trace_final_hash",
            )

    def store(self, rec: TraceRecord, new_chain: bytes, size: int) -> None:
        self.see(rec)
        self.chain = new_chain
        self.count += 1
        self.length += size + FRAME_OVERHEAD
        t = _step_of(rec)
        if t is not None:
            if t != self.step_t:
                self.step_t, self.step_bytes, self.step_mandatory = t, 0, 0
            self.step_bytes += size
            if not isinstance(rec, TraceIter):
                self.step_mandatory += size


def _parse(payload: bytes, fold: _Fold) -> TraceRecord:
    try:
        obj = decode(payload)
    except CborError as exc:
        raise fold.fail(
            "NOT_CANONICAL",
            f"record is not canonical CBOR ({exc.reason} at payload byte {exc.offset})",
        ) from exc
    try:
        return trace_record_from_obj(obj, f"$[{fold.count}]")
    except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
        raise fold.fail("SCHEMA", exc.message, path=exc.path) from exc


def _admit_stored(rec: TraceRecord, payload: bytes, fold: _Fold) -> None:
    """Steps 4-7 of read_trace for one stored record, then fold it in."""
    fold.check_order(rec)
    size = len(payload)
    if isinstance(rec, TraceIter):
        if not fold.kept(rec):
            raise fold.fail("SAMPLING", "the sampling rule drops this ITER", t=rec.t)
        if not fold.iter_fits(rec, size):
            raise fold.fail(
                "SIZE_CAP", f"ITER of {size} bytes exceeds the record or step cap", t=rec.t
            )
    else:
        why = fold.mandatory_overflow(rec, size)
        if why is not None:
            raise fold.fail("SIZE_CAP", why, t=_step_of(rec))
    rec_hash = (
        record_hash(rec) if isinstance(rec, TraceRunEnd) else hashlib.sha256(payload).digest()
    )
    new_chain = _link(fold.chain, rec_hash)
    fold.check_links(rec, new_chain)
    fold.store(rec, new_chain, size)


def _replay(
    frames: Sequence[Frame], fold: _Fold, out: list[tuple[TraceRecord, int, bytes]]
) -> None:
    for frame in frames:
        rec = _parse(frame.payload, fold)
        _admit_stored(rec, frame.payload, fold)
        out.append((rec, frame.offset, fold.chain))


_FRAME_MESSAGES: Final[dict[FrameProblem, str]] = {
    "TRUNCATED_FRAME": "the data ends inside a frame (a torn or cut tail)",
    "CRC_MISMATCH": "the frame's CRC-32C does not match its payload",
    "OVERSIZED_FRAME": f"the frame declares more than MAX_FRAME_BYTES ({MAX_FRAME_BYTES})",
}


# ------------------------------------------------------------------------------------------------
# Reading.


@dataclass(frozen=True, slots=True)
class TraceReadResult:
    """A verified trace: its records, their frame offsets and the chain value after each."""

    records: tuple[TraceRecord, ...]
    offsets: tuple[int, ...]
    chain: tuple[bytes, ...]  # chain[i] = h_(i+1), the chain value after records[i]
    byte_length: int

    @property
    def header(self) -> TraceRunHeader:
        head = self.records[0]
        assert isinstance(head, TraceRunHeader)
        return head

    @property
    def end(self) -> TraceRunEnd:
        last = self.records[-1]
        assert isinstance(last, TraceRunEnd)
        return last

    @property
    def final_hash(self) -> bytes:
        """trace_final_hash: the chain value after RUN_END (what RUN_END stores)."""
        return self.chain[-1]


Source = str | os.PathLike[str] | bytes | bytearray | memoryview


def _check_size(size: int, artifact: str | None) -> None:
    if size > MAX_TRACE_BYTES:
        raise _error(
            "SIZE_CAP",
            f"{size} bytes exceed MAX_TRACE_BYTES ({MAX_TRACE_BYTES})",
            artifact=artifact,
            offset=MAX_TRACE_BYTES,
        )


def _load(source: Source, artifact: str | None) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        _check_size(len(source), artifact)
        return bytes(source), artifact
    path = Path(source)
    artifact = artifact if artifact is not None else str(path)
    _check_size(path.stat().st_size, artifact)
    return path.read_bytes(), artifact


def read_trace(
    source: Source,
    *,
    policy: TraceSamplingPolicy | None = None,
    artifact: str | None = None,
) -> TraceReadResult:
    """Read and verify a whole trace, or raise ``TraceSchemaInvalidError`` for the first fault.

    Records are checked in file order, so the failure reported is the one at the lowest offset.
    For each record:

    1. Size: the file is at most ``MAX_TRACE_BYTES`` (SIZE_CAP).
    2. Frame: complete, within ``MAX_FRAME_BYTES``, CRC-32C matches (TRUNCATED_FRAME,
       OVERSIZED_FRAME, CRC_MISMATCH).
    3. Decode: the payload is one canonical CBOR item (NOT_CANONICAL).
    4. Schema: it validates as a TraceRecord; RUN_HEADER's cross-field rules hold; ITER and ERROR
       carry RUN_HEADER's replay_token and a rank below its world_size (SCHEMA, with the path).
    5. Order: RUN_HEADER first and only once (MISSING_RUN_HEADER, OUT_OF_ORDER); t never
       decreases; ITERs strictly increase in (t, rank, operator_seq) and none follows a non-ITER
       record of its step (OUT_OF_ORDER); nothing follows RUN_END (RECORD_AFTER_END).
    6. Policy: with ``policy``, RUN_HEADER's gate fields and trace_policy_hash match it
       (POLICY_MISMATCH). Each ITER passes the sampling rule (SAMPLING: HASH_GATED is checked
       from RUN_HEADER alone, FIXED_RATE needs ``policy``). With ``policy``, each record respects
       max_record_bytes and the step cap the way the writer applies them (SIZE_CAP).
    7. Chain: a CHECKPOINT_COMMIT's trace_snapshot_hash is the chain value before it; RUN_END's
       trace_final_hash is the chain value after it (CHAIN_BREAK).

    Then: 8. the last record is RUN_END (MISSING_RUN_END).

    File-system errors (a missing file) propagate as ``OSError``.
    """
    if policy is not None:
        policy = _checked_policy(policy.to_obj())
    data, artifact = _load(source, artifact)
    fold = _Fold(policy, artifact)
    scan = scan_frames(data)
    stored: list[tuple[TraceRecord, int, bytes]] = []
    _replay(scan.frames, fold, stored)
    if scan.problem is not None:
        raise fold.fail(scan.problem, _FRAME_MESSAGES[scan.problem])
    if fold.header is None:
        raise fold.fail("MISSING_RUN_HEADER", "the trace holds no records")
    if not fold.ended:
        raise fold.fail("MISSING_RUN_END", "the trace ends without RUN_END")
    return TraceReadResult(
        records=tuple(r for r, _, _ in stored),
        offsets=tuple(o for _, o, _ in stored),
        chain=tuple(h for _, _, h in stored),
        byte_length=fold.length,
    )


# ------------------------------------------------------------------------------------------------
# Writing.


class _Appender:
    """Buffered, append-only framed writes to one file under an fsync policy.

    Shared with the step journal (:mod:`umlos.evidence.journal`).
    """

    def __init__(self, path: Path, fsync: FsyncPolicy, batch_records: int, created: bool) -> None:
        if fsync not in get_args(FsyncPolicy):
            raise ValueError(f"fsync must be one of {get_args(FsyncPolicy)}, not {fsync!r}")
        if batch_records < 1:
            raise ValueError("batch_records must be at least 1")
        self.path = path
        self.fsync: FsyncPolicy = fsync
        self.batch_records = batch_records
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.closed = False
        self._dir_synced = not created  # a new file's directory entry needs one fsync

    @classmethod
    def create(cls, path: Path, fsync: FsyncPolicy, batch_records: int) -> _Appender:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return cls(path, fsync, batch_records, True)

    @classmethod
    def resume(
        cls, path: Path, fsync: FsyncPolicy, batch_records: int, keep: int, length: int
    ) -> _Appender:
        """Cut ``path`` to its first ``keep`` bytes (if longer) and append after them."""
        if keep != length:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, keep)
                if fsync != "NEVER":
                    os.fsync(fd)
            finally:
                os.close(fd)
        return cls(path, fsync, batch_records, False)

    def add(self, payload: bytes) -> None:
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        self.pending.append(payload)
        self.pending_bytes += len(payload)
        if len(self.pending) >= self.batch_records or self.pending_bytes >= WRITE_BATCH_BYTES:
            self.flush()

    def flush(self, *, durable: bool = False) -> None:
        sync = self.fsync == "ALWAYS" or (durable and self.fsync == "EXPLICIT")
        if self.pending or sync:
            append_frames(self.path, self.pending, sync=sync)
            self.pending.clear()
            self.pending_bytes = 0
        if sync and not self._dir_synced:
            fsync_dir(self.path.parent)
            self._dir_synced = True

    def close(self) -> None:
        if not self.closed:
            self.flush(durable=True)
            self.closed = True


@dataclass(slots=True)
class TraceWriterStats:
    """What became of the records offered since the writer was opened (not persisted)."""

    stored: int = 0
    iter_offered: int = 0
    iter_sampled_out: int = 0
    iter_dropped_record_cap: int = 0
    iter_dropped_step_cap: int = 0


class TraceWriter:
    """Append records to a trace sidecar under the rules that :func:`read_trace` checks.

    ``append`` validates a record through its generated type, checks the ordering rules, applies
    the sampling policy (ITER only) and the caps, then buffers the framed record; it returns
    whether the record was stored. An ITER over ``max_record_bytes``, or one that would take its
    step's stored bytes over ``max_bytes_per_step``, is dropped and counted in :attr:`stats` (a
    step's ITERs arrive in operator_seq order, so the step loses its highest operator_seqs). A
    mandatory record over ``max_record_bytes``, or one that takes its step's mandatory bytes
    over ``max_bytes_per_step`` (so that no dropping of ITERs could make room), raises
    ``TraceCapExceededMandatoryError``. Any other violation raises ``TraceSchemaInvalidError``
    with a reason from :data:`TRACE_FAILURES`; a refused record leaves the writer unchanged.

    Records reach the file in batches (``batch_records``, ``WRITE_BATCH_BYTES``). ``flush``
    writes the batch; ``sync`` writes and fsyncs it (fsync policy ``EXPLICIT``, the default);
    ``end`` appends RUN_END and syncs.

    >>> import tempfile
    >>> from umlos._generated.records import TraceRunHeader
    >>> policy = sampling_policy(None, sample_policy="OFF")
    >>> token = bytes(32)
    >>> header = TraceRunHeader(
    ...     replay_token=token, run_id="0123456789abcdef", tenant_id="acme",
    ...     task_type="multiclass", world_size=1, backend_binary_hash=bytes(32),
    ...     driver_runtime_fingerprint_hash=bytes(32), policy_bundle_hash=bytes(32),
    ...     monitor_policy_hash=bytes(32), operator_contracts_root_hash=bytes(32),
    ...     redaction_mode="NONE", hash_gate_m=100, hash_gate_k=1, sample_policy="OFF",
    ...     trace_policy_hash=digest(policy.to_obj()))
    >>> path = Path(tempfile.mkdtemp()) / "trace_sidecar.cborlog"
    >>> with TraceWriter.create(path, policy, fsync="NEVER") as writer:
    ...     writer.append(header)
    ...     writer.append(TraceIter(t=1, stage_id="train", operator_seq=0, rank=0,
    ...         operator_id="UML_OS.Data.NextBatch_v2", status="ok", replay_token=token))
    ...     end = writer.end(status="COMPLETED", final_state_fp=bytes(32))
    True
    True
    >>> result = read_trace(path, policy=policy)
    >>> [r.kind for r in result.records], result.final_hash == end.trace_final_hash
    (['RUN_HEADER', 'ITER', 'RUN_END'], True)
    """

    def __init__(self, appender: _Appender, fold: _Fold) -> None:
        self._out = appender
        self._fold = fold
        self.stats = TraceWriterStats()

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        policy: TraceSamplingPolicy,
        *,
        fsync: FsyncPolicy = "EXPLICIT",
        batch_records: int = WRITE_BATCH_RECORDS,
    ) -> TraceWriter:
        """Start a new trace at ``path``, which must not exist (``FileExistsError``)."""
        policy = _checked_policy(policy.to_obj())
        target = Path(path)
        return cls(_Appender.create(target, fsync, batch_records), _Fold(policy, str(target)))

    @classmethod
    def open_existing(
        cls,
        path: str | os.PathLike[str],
        policy: TraceSamplingPolicy,
        *,
        up_to_records: int,
        expected_chain_hash: bytes | None = None,
        fsync: FsyncPolicy = "EXPLICIT",
        batch_records: int = WRITE_BATCH_RECORDS,
    ) -> TraceWriter:
        """Resume a trace: keep its first ``up_to_records`` records, cut the rest, append on.

        The kept records are verified as :func:`read_trace` verifies them (steps 2-7). The
        bytes after them (records written after the checkpoint, a torn tail) are truncated
        away. With ``expected_chain_hash`` (the checkpoint's ``trace_snapshot_hash``) the chain
        value after the kept records must equal it (CHAIN_BREAK). A file with fewer valid
        records than asked for fails with the frame problem that stopped the scan, or with
        TRUNCATED_FRAME where the file simply ends.
        """
        if up_to_records < 0:
            raise ValueError("up_to_records must be >= 0")
        policy = _checked_policy(policy.to_obj())
        target = Path(path)
        data, artifact = _load(target, None)
        fold = _Fold(policy, artifact)
        scan = scan_frames(data)
        kept = scan.frames[:up_to_records]
        _replay(kept, fold, [])
        if len(kept) < up_to_records:
            if scan.problem is not None:
                raise fold.fail(scan.problem, _FRAME_MESSAGES[scan.problem])
            raise fold.fail(
                "TRUNCATED_FRAME", f"the trace holds {len(kept)} records, not {up_to_records}"
            )
        if expected_chain_hash is not None and fold.chain != expected_chain_hash:
            raise fold.fail(
                "CHAIN_BREAK", f"the chain after {up_to_records} records is not the expected hash"
            )
        appender = _Appender.resume(target, fsync, batch_records, fold.length, len(data))
        return cls(appender, fold)

    @property
    def path(self) -> Path:
        return self._out.path

    @property
    def chain_hash(self) -> bytes:
        """The chain value after the last stored record: a checkpoint's trace_snapshot_hash."""
        return self._fold.chain

    @property
    def record_count(self) -> int:
        """Records stored (buffered ones included): the ``up_to_records`` to resume at."""
        return self._fold.count

    @property
    def byte_length(self) -> int:
        """The file's length once the buffer is written."""
        return self._fold.length

    @property
    def ended(self) -> bool:
        return self._fold.ended

    def append(self, record: TraceRecord) -> bool:
        """Validate, order-check, sample and cap ``record``; True if it was stored."""
        fold = self._fold
        if self._out.closed:
            raise ValueError(f"{self._out.path} is closed")
        path = f"$[{fold.count}]"
        gated = fold.header is not None and fold.header.sample_policy != "OFF"
        try:
            if isinstance(record, TraceIter):
                self.stats.iter_offered += 1
            if gated and isinstance(record, TraceIter):
                # Sample first: most ITERs are dropped, and the gate and the ordering rules read
                # only these fields. Full validation is for the records that are stored.
                _rt.enum_(record.kind, f"{path}.kind", ("ITER",))
                _rt.int_(record.t, f"{path}.t", 0, _U64_MAX)
                _rt.int_(record.rank, f"{path}.rank", 0, _U32_MAX)
                _rt.int_(record.operator_seq, f"{path}.operator_seq", 0, _U64_MAX)
                _rt.bytes_(record.replay_token, f"{path}.replay_token", False, 32, 32)
                fold.check_order(record)
                if not fold.kept(record):
                    fold.see(record)
                    self.stats.iter_sampled_out += 1
                    return False
            obj = record.to_obj()
            rec = trace_record_from_obj(obj, path)
        except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
            raise fold.fail("SCHEMA", exc.message, path=exc.path) from exc
        if not (gated and isinstance(rec, TraceIter)):  # else checked above
            fold.check_order(rec)
        payload = encode(obj)
        size = len(payload)
        if isinstance(rec, TraceIter):
            if not fold.iter_fits(rec, size):
                fold.see(rec)
                if fold.policy is not None and size > fold.policy.max_record_bytes:
                    self.stats.iter_dropped_record_cap += 1
                else:
                    self.stats.iter_dropped_step_cap += 1
                return False
        else:
            why = fold.mandatory_overflow(rec, size)
            if why is not None:
                raise self._cap_error(rec, why)
        if size > MAX_FRAME_BYTES:  # reachable only when the policy's cap is above the framing's
            raise fold.fail("SIZE_CAP", f"record of {size} bytes exceeds MAX_FRAME_BYTES")
        rec_hash = (
            record_hash(rec) if isinstance(rec, TraceRunEnd) else hashlib.sha256(payload).digest()
        )
        new_chain = _link(fold.chain, rec_hash)
        fold.check_links(rec, new_chain)
        fold.store(rec, new_chain, size)
        self.stats.stored += 1
        self._out.add(payload)
        if isinstance(rec, TraceRunEnd):
            self._out.flush(durable=True)
        return True

    def _cap_error(self, rec: TraceRecord, why: str) -> TraceCapExceededMandatoryError:
        fold = self._fold
        assert fold.policy is not None  # only a policy has caps
        step = _step_of(rec)
        return TraceCapExceededMandatoryError(
            why,
            artifact=fold.artifact,
            offset=fold.length,
            context={
                "t": step if step is not None else max(fold.last_t, 0),
                "run_id": fold.header.run_id if fold.header is not None else "",
                "trace_policy_hash": digest(fold.policy.to_obj()),
                "record_index": fold.count,
                "kind": rec.kind,
            },
        )

    def end(
        self,
        *,
        status: Literal["COMPLETED", "FAILED"],
        final_state_fp: bytes,
        denied_count: int | None = None,
    ) -> TraceRunEnd:
        """Append RUN_END carrying the trace_final_hash it must hold, then sync; return it."""
        draft = TraceRunEnd(
            status=status,
            final_state_fp=final_state_fp,
            trace_final_hash=bytes(32),
            denied_count=denied_count,
        )
        record = TraceRunEnd(
            status=status,
            final_state_fp=final_state_fp,
            trace_final_hash=_link(self._fold.chain, record_hash(draft)),
            denied_count=denied_count,
        )
        self.append(record)
        return record

    def flush(self) -> None:
        """Write the buffered records (fsync only under policy ``ALWAYS``)."""
        self._out.flush()

    def sync(self) -> None:
        """Write the buffered records and fsync the file (unless the policy is ``NEVER``)."""
        self._out.flush(durable=True)

    def close(self) -> None:
        """Write, sync and close; later appends raise ``ValueError``. RUN_END is not added."""
        self._out.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
