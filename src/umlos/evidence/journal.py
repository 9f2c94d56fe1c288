"""The step journal: one hash-linked entry per kernel step and rank (docs/formats/journal.md).

Separate from the run-commit WAL (spec evidence §1.1): the WAL commits a run's artifact set once,
the journal records the state at the end of every step so that an auditor can tie each step's
data cursors, RNG offsets and trace position together. A journal file is a sequence of frames
``[u32le length | canonical CBOR JournalEntry | u32le CRC-32C]`` (:mod:`umlos.evidence._frames`),
and entry ``i`` is

    {journal_seq: i, prev_link_hash, event, link_hash}
    link_hash = commit_hash(JOURNAL_LINK, [prev_link_hash, event, event.t])

with ``prev_link_hash`` the previous entry's ``link_hash`` (32 zero bytes for the first).
:func:`read_journal` fails with exactly one reason of :data:`JOURNAL_FAILURES`, raised as
:class:`~umlos.errors.TraceSchemaInvalidError` with the byte ``offset`` of the frame at fault.

>>> import tempfile
>>> from pathlib import Path
>>> from umlos._generated.records import JournalEvent
>>> path = Path(tempfile.mkdtemp()) / "run_journal.cborlog"
>>> def event(t):
...     return JournalEvent(t=t, rank=0, stage_id="train", data_cursors_hash=bytes(32),
...                         rng_offsets_hash=bytes(32), resource_ledger_hash=bytes(32),
...                         trace_chain_hash=bytes(32))
>>> with JournalWriter.create(path, fsync="NEVER") as journal:
...     first = journal.append(event(1))
...     second = journal.append(event(2))
>>> second.prev_link_hash == first.link_hash, read_journal(path).head_link_hash == second.link_hash
(True, True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from umlos._generated import tags
from umlos._generated.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    TraceSchemaInvalidError,
)
from umlos._generated.records import JournalEntry, JournalEvent
from umlos.codec import CborError, commit_hash, decode, encode
from umlos.evidence._frames import FRAME_OVERHEAD, Frame, FrameProblem, scan_frames
from umlos.evidence.trace import FsyncPolicy, _Appender

__all__ = [
    "GENESIS_LINK_HASH",
    "JOURNAL_FAILURES",
    "MAX_ENTRY_BYTES",
    "MAX_JOURNAL_BYTES",
    "WRITE_BATCH_ENTRIES",
    "JournalFailure",
    "JournalReadResult",
    "JournalWriter",
    "journal_link_hash",
    "read_journal",
]

JournalFailure = Literal[
    "JOURNAL_TRUNCATED_FRAME",  # the data ends inside a frame (a torn or cut tail)
    "JOURNAL_CRC_MISMATCH",  # a frame's CRC-32C does not match its payload
    "JOURNAL_OVERSIZED_FRAME",  # a frame declares more than MAX_ENTRY_BYTES
    "JOURNAL_NOT_CANONICAL",  # a payload is not one canonical CBOR item
    "JOURNAL_SCHEMA",  # an entry fails its generated validator, or its rank is not the journal's
    "JOURNAL_SEQ_GAP",  # journal_seq is not the entry's position
    "JOURNAL_OUT_OF_ORDER",  # event.t does not increase strictly
    "JOURNAL_LINK_BREAK",  # prev_link_hash or link_hash is not the recomputed chain value
    "JOURNAL_SIZE_CAP",  # the file exceeds MAX_JOURNAL_BYTES
]
JOURNAL_FAILURES: Final[tuple[JournalFailure, ...]] = get_args(JournalFailure)
"""The closed list of reasons that :func:`read_journal` and :class:`JournalWriter` raise."""

MAX_ENTRY_BYTES: Final = 4096
"""The largest entry frame accepted. A JournalEntry with every optional hash present and a
64-character stage id is under 700 bytes (tests/evidence/test_journal.py pins the bound), so
4 KiB leaves room for added optional fields while a garbled length is refused early."""

MAX_JOURNAL_BYTES: Final = 1 << 30
"""The largest file :func:`read_journal` loads: at under 700 bytes an entry, 1 GiB is over
1.5·10^6 steps, and the reader holds every entry in memory."""

WRITE_BATCH_ENTRIES: Final = 16
"""Entries buffered per write() call: one entry per step makes a syscall per step measurable on
small models; 16 steps lost in a crash are re-created by resuming from the checkpoint."""

GENESIS_LINK_HASH: Final = bytes(32)
"""prev_link_hash of the first entry (journal.yaml)."""


def journal_link_hash(prev_link_hash: bytes, event: JournalEvent) -> bytes:
    """``commit_hash(JOURNAL_LINK, [prev_link_hash, event, event.t])``: an entry's link_hash.

    >>> ev = JournalEvent(t=1, rank=0, stage_id="train", data_cursors_hash=bytes(32),
    ...                   rng_offsets_hash=bytes(32), resource_ledger_hash=bytes(32),
    ...                   trace_chain_hash=bytes(32))
    >>> len(journal_link_hash(GENESIS_LINK_HASH, ev))
    32
    """
    return commit_hash(tags.JOURNAL_LINK, [prev_link_hash, event.to_obj(), event.t])


def _error(
    reason: JournalFailure,
    message: str,
    *,
    artifact: str | None,
    offset: int,
    index: int,
    path: str | None = None,
    t: int | None = None,
) -> TraceSchemaInvalidError:
    context: dict[str, object] = {"record_index": index}
    if t is not None:
        context["t"] = t
    return TraceSchemaInvalidError(
        message, reason=reason, path=path, offset=offset, artifact=artifact, context=context
    )


@dataclass(slots=True)
class _Chain:
    """Sequence, order and link state, shared by the writer, the reader and resume."""

    artifact: str | None
    count: int = 0
    length: int = 0
    head: bytes = GENESIS_LINK_HASH
    last_t: int = -1
    rank: int | None = None

    def fail(
        self, reason: JournalFailure, message: str, *, path: str | None = None, t: int | None = None
    ) -> TraceSchemaInvalidError:
        return _error(
            reason,
            message,
            artifact=self.artifact,
            offset=self.length,
            index=self.count,
            path=path,
            t=t,
        )

    def check_event(self, event: JournalEvent) -> None:
        where = f"$[{self.count}].event"
        if self.rank is not None and event.rank != self.rank:
            raise self.fail(
                "JOURNAL_SCHEMA",
                f"rank {event.rank} in a journal of rank {self.rank} (one journal per rank)",
                path=f"{where}.rank",
                t=event.t,
            )
        if event.t <= self.last_t:
            raise self.fail(
                "JOURNAL_OUT_OF_ORDER",
                f"step {event.t} after step {self.last_t} (one entry per step, in step order)",
                path=f"{where}.t",
                t=event.t,
            )

    def store(self, entry: JournalEntry, size: int) -> None:
        self.count += 1
        self.length += size + FRAME_OVERHEAD
        self.head = entry.link_hash
        self.last_t = entry.event.t
        self.rank = entry.event.rank


def _admit(payload: bytes, chain: _Chain) -> JournalEntry:
    """Steps 3-6 of read_journal for one entry, then fold it in."""
    where = f"$[{chain.count}]"
    try:
        obj = decode(payload)
    except CborError as exc:
        raise chain.fail(
            "JOURNAL_NOT_CANONICAL",
            f"entry is not canonical CBOR ({exc.reason} at payload byte {exc.offset})",
        ) from exc
    try:
        entry = JournalEntry.from_obj(obj, where)
    except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
        raise chain.fail("JOURNAL_SCHEMA", exc.message, path=exc.path) from exc
    t = entry.event.t
    if entry.journal_seq != chain.count:
        raise chain.fail(
            "JOURNAL_SEQ_GAP",
            f"journal_seq {entry.journal_seq} at position {chain.count}",
            path=f"{where}.journal_seq",
            t=t,
        )
    chain.check_event(entry.event)
    if entry.prev_link_hash != chain.head:
        raise chain.fail(
            "JOURNAL_LINK_BREAK",
            "prev_link_hash is not the previous entry's link_hash",
            path=f"{where}.prev_link_hash",
            t=t,
        )
    if entry.link_hash != journal_link_hash(entry.prev_link_hash, entry.event):
        raise chain.fail(
            "JOURNAL_LINK_BREAK",
            "link_hash is not the commitment over [prev_link_hash, event, t]",
            path=f"{where}.link_hash",
            t=t,
        )
    chain.store(entry, len(payload))
    return entry


_FRAME_REASONS: Final[dict[FrameProblem, tuple[JournalFailure, str]]] = {
    "TRUNCATED_FRAME": ("JOURNAL_TRUNCATED_FRAME", "the data ends inside a frame"),
    "CRC_MISMATCH": ("JOURNAL_CRC_MISMATCH", "the frame's CRC-32C does not match its payload"),
    "OVERSIZED_FRAME": ("JOURNAL_OVERSIZED_FRAME", "the frame declares an impossible length"),
}


def _admit_frames(frames: Sequence[Frame], chain: _Chain) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    for frame in frames:
        if len(frame.payload) > MAX_ENTRY_BYTES:
            raise chain.fail(
                "JOURNAL_OVERSIZED_FRAME",
                f"entry of {len(frame.payload)} bytes exceeds MAX_ENTRY_BYTES ({MAX_ENTRY_BYTES})",
            )
        entries.append(_admit(frame.payload, chain))
    return entries


def _frame_failure(problem: FrameProblem, chain: _Chain) -> TraceSchemaInvalidError:
    reason, message = _FRAME_REASONS[problem]
    return chain.fail(reason, message)


Source = str | os.PathLike[str] | bytes | bytearray | memoryview


def _check_size(size: int, artifact: str | None) -> None:
    if size > MAX_JOURNAL_BYTES:
        raise _error(
            "JOURNAL_SIZE_CAP",
            f"{size} bytes exceed MAX_JOURNAL_BYTES ({MAX_JOURNAL_BYTES})",
            artifact=artifact,
            offset=MAX_JOURNAL_BYTES,
            index=0,
        )


def _load(source: Source, artifact: str | None) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        _check_size(len(source), artifact)
        return bytes(source), artifact
    path = Path(source)
    artifact = artifact if artifact is not None else str(path)
    _check_size(path.stat().st_size, artifact)
    return path.read_bytes(), artifact


@dataclass(frozen=True, slots=True)
class JournalReadResult:
    """A verified journal: its entries, their frame offsets and the last link hash."""

    entries: tuple[JournalEntry, ...]
    offsets: tuple[int, ...]
    head_link_hash: bytes  # link_hash of the last entry; GENESIS_LINK_HASH for an empty journal
    byte_length: int


def read_journal(
    source: Source,
    *,
    artifact: str | None = None,
) -> JournalReadResult:
    """Read and verify a whole journal, or raise ``TraceSchemaInvalidError`` for the first fault.

    Entries are checked in file order, so the failure reported is the one at the lowest offset.
    An empty journal is valid (a run that stopped before its first step ended). For each entry:

    1. Size: the file is at most ``MAX_JOURNAL_BYTES`` (JOURNAL_SIZE_CAP).
    2. Frame: complete, its length within ``MAX_ENTRY_BYTES``, CRC-32C matches
       (JOURNAL_TRUNCATED_FRAME, JOURNAL_OVERSIZED_FRAME, JOURNAL_CRC_MISMATCH).
    3. Decode: one canonical CBOR item (JOURNAL_NOT_CANONICAL).
    4. Schema: a valid JournalEntry whose event.rank is the first entry's (JOURNAL_SCHEMA).
    5. Order: journal_seq equals the entry's position (JOURNAL_SEQ_GAP) and event.t is above the
       previous entry's (JOURNAL_OUT_OF_ORDER).
    6. Links: prev_link_hash is the previous link_hash (32 zero bytes first) and link_hash is
       ``journal_link_hash(prev_link_hash, event)`` (JOURNAL_LINK_BREAK).
    """
    data, artifact = _load(source, artifact)
    chain = _Chain(artifact)
    scan = scan_frames(data)
    entries = _admit_frames(scan.frames, chain)
    if scan.problem is not None:
        raise _frame_failure(scan.problem, chain)
    return JournalReadResult(
        entries=tuple(entries),
        offsets=tuple(f.offset for f in scan.frames),
        head_link_hash=chain.head,
        byte_length=chain.length,
    )


class JournalWriter:
    """Append one entry per step to a journal, under the rules :func:`read_journal` checks.

    ``append(event)`` validates the event, checks its rank and step order, links it and buffers
    the framed entry (``WRITE_BATCH_ENTRIES`` per write); ``sync`` writes and fsyncs under the
    default ``EXPLICIT`` policy (the run loop syncs at checkpoints and at the end).
    """

    def __init__(self, appender: _Appender, chain: _Chain) -> None:
        self._out = appender
        self._chain = chain

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "EXPLICIT",
        batch_entries: int = WRITE_BATCH_ENTRIES,
    ) -> JournalWriter:
        """Start a new journal at ``path``, which must not exist (``FileExistsError``)."""
        target = Path(path)
        return cls(_Appender.create(target, fsync, batch_entries), _Chain(str(target)))

    @classmethod
    def open_existing(
        cls,
        path: str | os.PathLike[str],
        *,
        up_to_entries: int,
        expected_link_hash: bytes | None = None,
        fsync: FsyncPolicy = "EXPLICIT",
        batch_entries: int = WRITE_BATCH_ENTRIES,
    ) -> JournalWriter:
        """Resume a journal: keep its first ``up_to_entries`` entries, cut the rest, append on.

        The kept entries are verified as :func:`read_journal` verifies them; later bytes are
        truncated away. With ``expected_link_hash`` the last kept link_hash must equal it
        (JOURNAL_LINK_BREAK). Fewer valid entries than asked for fail with the frame problem
        that stopped the scan, or JOURNAL_TRUNCATED_FRAME where the file simply ends.
        """
        if up_to_entries < 0:
            raise ValueError("up_to_entries must be >= 0")
        target = Path(path)
        data, artifact = _load(target, None)
        chain = _Chain(artifact)
        scan = scan_frames(data)
        _admit_frames(scan.frames[:up_to_entries], chain)
        if chain.count < up_to_entries:
            if scan.problem is not None:
                raise _frame_failure(scan.problem, chain)
            raise chain.fail(
                "JOURNAL_TRUNCATED_FRAME",
                f"the journal holds {chain.count} entries, not {up_to_entries}",
            )
        if expected_link_hash is not None and chain.head != expected_link_hash:
            raise chain.fail(
                "JOURNAL_LINK_BREAK",
                f"the link hash after {up_to_entries} entries is not the expected one",
            )
        appender = _Appender.resume(target, fsync, batch_entries, chain.length, len(data))
        return cls(appender, chain)

    @property
    def path(self) -> Path:
        return self._out.path

    @property
    def head_link_hash(self) -> bytes:
        """link_hash of the last entry (GENESIS_LINK_HASH before the first)."""
        return self._chain.head

    @property
    def entry_count(self) -> int:
        """Entries stored (buffered ones included): the ``up_to_entries`` to resume at."""
        return self._chain.count

    @property
    def byte_length(self) -> int:
        """The file's length once the buffer is written."""
        return self._chain.length

    def append(self, event: JournalEvent) -> JournalEntry:
        """Link ``event`` after the last entry, buffer it, and return the stored entry."""
        chain = self._chain
        if self._out.closed:
            raise ValueError(f"{self._out.path} is closed")
        obj = event.to_obj()  # once: validated, hashed and stored from the same map
        try:
            event = JournalEvent.from_obj(obj, f"$[{chain.count}].event")
        except (ApiShapeMismatchError, ApiTypeMismatchError) as exc:
            raise chain.fail("JOURNAL_SCHEMA", exc.message, path=exc.path) from exc
        chain.check_event(event)
        link = commit_hash(tags.JOURNAL_LINK, [chain.head, obj, event.t])
        entry = JournalEntry(
            journal_seq=chain.count, prev_link_hash=chain.head, event=event, link_hash=link
        )
        payload = encode(
            {
                "journal_seq": entry.journal_seq,
                "prev_link_hash": entry.prev_link_hash,
                "event": obj,
                "link_hash": link,
            }
        )
        if len(payload) > MAX_ENTRY_BYTES:  # unreachable for schema-valid events; kept honest
            raise chain.fail("JOURNAL_OVERSIZED_FRAME", "entry exceeds MAX_ENTRY_BYTES")
        chain.store(entry, len(payload))
        self._out.add(payload)
        return entry

    def flush(self) -> None:
        """Write the buffered entries (fsync only under policy ``ALWAYS``)."""
        self._out.flush()

    def sync(self) -> None:
        """Write the buffered entries and fsync the file (unless the policy is ``NEVER``)."""
        self._out.flush(durable=True)

    def close(self) -> None:
        """Write, sync and close; later appends raise ``ValueError``."""
        self._out.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
