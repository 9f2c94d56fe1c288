"""The run-commit WAL: golden bytes, every corruption kind, torn tails, bit flips, crashes.

What each group proves:
- goldens: the file bytes and record hashes are fixed, and an independent encoder agrees;
- the writer fills seq/chain/hash, validates, refuses out-of-order appends, fsyncs every append;
- one negative test per corruption reason (a meta-test checks the list is complete), and
  recovery never changes anything when it aborts;
- a torn last append (cut at every byte offset, zero-filled, or checksum-bad) is discarded and
  the run rolls back to the last durable state; ≥ 1,000 random bit flips are all detected;
- SIGKILL at every write/fsync of the protocol and at random times, and ENOSPC/EIO on append,
  always recover to a consistent COMMITTED / ROLLED_BACK / EMPTY state.
"""

from __future__ import annotations

import dataclasses
import doctest
import errno
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import cbor2
import crc32c
import pytest

from tests.conftest import ROOT
from umlos._generated import tags
from umlos._generated.records import (
    CommitPointer,
    WalCertSignedBody,
    WalFinalize,
    WalFinalizeBody,
    WalPrepareBody,
    WalRecord,
    WalRecoveryReport,
    WalRollback,
    WalRollbackBody,
)
from umlos.codec import digest, encode
from umlos.errors import (
    ApiShapeMismatchError,
    ContractViolationError,
    WalCorruptionError,
)
from umlos.evidence._frames import encode_frame
from umlos.evidence.wal import (
    FINAL_ARTIFACTS,
    GENESIS_PREV_HASH,
    MAX_WAL_BYTES,
    MAX_WAL_RECORD_BYTES,
    WAL_CORRUPTION_REASONS,
    WAL_WRITER_REASONS,
    RunCommitWal,
    TmpArtifact,
    WalCorruptionReason,
    pointer_for,
    pointer_path,
    publish_committed,
    read_wal,
    recover,
    wal_path,
    wal_record_hash,
)

TENANT = "tenant-a"
RUN = "0123456789abcdef"

# The run's final artifacts: content-addressed blobs under <run_dir>/objects/<field>.bin whose
# identity is SHA-256 of the bytes (a stand-in for trace_final_hash, checkpoint_hash, …).
CONTENT: dict[str, bytes] = {
    "trace_final_hash": b"trace sidecar bytes",
    "checkpoint_hash": b"checkpoint manifest bytes",
    "lineage_root_hash": b"lineage objects",
    "certificate_hash": b"signed execution certificate",
}
TMP_TO_FINAL: dict[str, str] = {
    "trace_tmp_hash": "trace_final_hash",
    "checkpoint_tmp_hash": "checkpoint_hash",
    "lineage_tmp_hash": "lineage_root_hash",
    "certificate_tmp_hash": "certificate_hash",
}


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


FINAL = {name: h(data) for name, data in CONTENT.items()}
CONTEXT = {
    "manifest_hash": h(b"manifest"),
    "policy_bundle_hash": h(b"policy bundle"),
    "operator_registry_hash": h(b"operator registry"),
    "determinism_profile_hash": h(b"determinism profile"),
}
PREPARE = WalPrepareBody(
    manifest_hash=CONTEXT["manifest_hash"],
    policy_bundle_hash=CONTEXT["policy_bundle_hash"],
    operator_registry_hash=CONTEXT["operator_registry_hash"],
    determinism_profile_hash=CONTEXT["determinism_profile_hash"],
)
CERT = WalCertSignedBody(
    certificate_tmp_hash=FINAL["certificate_hash"],
    trace_tmp_hash=FINAL["trace_final_hash"],
    checkpoint_tmp_hash=FINAL["checkpoint_hash"],
    lineage_tmp_hash=FINAL["lineage_root_hash"],
    policy_bundle_hash=CONTEXT["policy_bundle_hash"],
    determinism_profile_hash=CONTEXT["determinism_profile_hash"],
)
FINALIZE = WalFinalizeBody(
    trace_final_hash=FINAL["trace_final_hash"],
    checkpoint_hash=FINAL["checkpoint_hash"],
    lineage_root_hash=FINAL["lineage_root_hash"],
    certificate_hash=FINAL["certificate_hash"],
    manifest_hash=PREPARE.manifest_hash,
    policy_bundle_hash=PREPARE.policy_bundle_hash,
    operator_registry_hash=PREPARE.operator_registry_hash,
    determinism_profile_hash=PREPARE.determinism_profile_hash,
)
BODIES: tuple[WalPrepareBody | WalCertSignedBody | WalFinalizeBody, ...] = (PREPARE, CERT, FINALIZE)

# --- pinned values (recompute only with a deliberate, MAJOR format change) -------------------
GOLDEN_FILE_SHA256 = "99badc521ac8341fe789430c8b4e1997e903d82f0c6b01cc6c19cad2f8e61981"
GOLDEN_RECORD_HASHES = (
    "d0b3ea037b6d3fe87a5b9d195d05f0df6f5c626175b72b0f96f1bf8403bffcf4",  # PREPARE
    "612611b3a00ac6cd0314c534c17df0187986558618385c13dfa3429a48b12f4f",  # CERT_SIGNED
    "94852b52704ef4ae838345e15ffcd28ccedecc1c71ac511b80040713c0a4d587",  # FINALIZE
)
GOLDEN_ROLLBACK_HASH = "cbad3c85d58db616858dac15b1153c6edd313d2c3b7115111102ecd824651bd6"  # ROLLBACK appended by recover() after PREPARE, CERT_SIGNED
GOLDEN_POINTER_SHA256 = "552a59a06ba12cf8547cbb91171e997616c5d9b25ec241b68b99a300e2ebc015"  # commit_pointer_hash = digest(pointer) = SHA-256 of the file
GOLDEN_FIRST_FRAME_HEAD = "84010000"  # u32le 388: the PREPARE record's CBOR length


class Store:
    """The caller's artifact callbacks over ``<run_dir>/objects``."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "objects"
        self.removed: list[tuple[str, bytes]] = []

    def write_all(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, data in CONTENT.items():
            (self.dir / f"{name}.bin").write_bytes(data)

    def artifact_hash(self, field: str) -> bytes | None:
        path = self.dir / f"{field}.bin"
        return h(path.read_bytes()) if path.exists() else None

    def remove_tmp(self, field: TmpArtifact, tmp_hash: bytes) -> None:
        self.removed.append((field, tmp_hash))
        path = self.dir / f"{TMP_TO_FINAL[field]}.bin"
        if path.exists() and h(path.read_bytes()) == tmp_hash:
            path.unlink()

    def holds(self, tmp_hash: bytes) -> bool:
        return self.dir.exists() and any(h(p.read_bytes()) == tmp_hash for p in self.dir.iterdir())


def run_recover(run_dir: Path, run_id: str = RUN) -> WalRecoveryReport:
    store = Store(run_dir)
    return recover(
        run_dir,
        tenant_id=TENANT,
        run_id=run_id,
        artifact_hash=store.artifact_hash,
        remove_tmp=store.remove_tmp,
    )


def write_log(run_dir: Path, n: int, *, publish: bool = False) -> tuple[WalRecord, ...]:
    """The protocol up to record ``n`` (artifacts before CERT_SIGNED), optionally publishing."""
    wal = RunCommitWal(run_dir, tenant_id=TENANT, run_id=RUN)
    for i, body in enumerate(BODIES[:n]):
        if i == 1:
            Store(run_dir).write_all()
        wal.append(body)
    if publish:
        last = wal.records[-1]
        assert isinstance(last, WalFinalize)
        publish_committed(run_dir, pointer_for(last))
    return wal.records


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, tuple[WalRecord, ...]]:
    run_dir = tmp_path_factory.mktemp("golden")
    records = write_log(run_dir, 3)
    return wal_path(run_dir).read_bytes(), records


def frames_of(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos : pos + n + 8])
        pos += n + 8
    return out


def raw_frame(
    seq: int,
    prev: bytes,
    body: object,
    *,
    tenant: str = TENANT,
    run: str = RUN,
    record_hash: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A correctly framed record with chosen fields (hash computed unless given)."""
    obj = {
        **body.to_obj(),  # type: ignore[attr-defined]
        "tenant_id": tenant,
        "run_id": run,
        "wal_seq": seq,
        "prev_record_hash": prev,
    }
    obj["record_hash"] = wal_record_hash(obj) if record_hash is None else record_hash
    return encode_frame(encode(obj)), obj["record_hash"]


def stage(
    run_dir: Path, log: bytes, *, pointer: bytes | None = None, artifacts: bool = True
) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    wal_path(run_dir).parent.mkdir(parents=True)
    wal_path(run_dir).write_bytes(log)
    if artifacts:
        Store(run_dir).write_all()
    if pointer is not None:
        pointer_path(run_dir).write_bytes(pointer)


def restage(run_dir: Path, log: bytes, *, pointer: bytes | None = None) -> None:
    """A cheaper :func:`stage` for loops: rewrite the log and pointer, restore artifacts."""
    wal_path(run_dir).parent.mkdir(parents=True, exist_ok=True)
    wal_path(run_dir).write_bytes(log)
    if pointer is None:
        pointer_path(run_dir).unlink(missing_ok=True)
    else:
        pointer_path(run_dir).write_bytes(pointer)
    store = Store(run_dir)
    store.dir.mkdir(exist_ok=True)
    for name, data in CONTENT.items():
        if not (store.dir / f"{name}.bin").exists():
            (store.dir / f"{name}.bin").write_bytes(data)


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """For loops of thousands of recoveries that test detection, not durability (which
    test_every_append_is_fsynced_before_it_returns and the SIGKILL tests cover)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file under the run directory, by relative path."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def fast_snapshot(run_dir: Path) -> tuple[bytes | None, ...]:
    """The files recovery may change (log, pointer, artifacts), for loops of thousands."""
    paths = [wal_path(run_dir), pointer_path(run_dir)]
    paths += [Store(run_dir).dir / f"{name}.bin" for name in CONTENT]
    return tuple(p.read_bytes() if p.exists() else None for p in paths)


# --- goldens ---------------------------------------------------------------------------------


def test_golden_log_bytes_and_record_hashes(golden: tuple[bytes, tuple[WalRecord, ...]]) -> None:
    data, records = golden
    assert hashlib.sha256(data).hexdigest() == GOLDEN_FILE_SHA256
    assert tuple(r.record_hash.hex() for r in records) == GOLDEN_RECORD_HASHES
    assert data[:4].hex() == GOLDEN_FIRST_FRAME_HEAD
    assert [r.record_type for r in records] == ["PREPARE", "CERT_SIGNED", "FINALIZE"]
    assert [r.wal_seq for r in records] == [0, 1, 2]
    assert records[0].prev_record_hash == GENESIS_PREV_HASH == bytes(32)
    assert [r.prev_record_hash for r in records[1:]] == [r.record_hash for r in records[:-1]]


def test_golden_pointer_and_rollback(tmp_path: Path) -> None:
    records = write_log(tmp_path / "c", 3, publish=True)
    assert isinstance(records[-1], WalFinalize)
    ptr_bytes = pointer_path(tmp_path / "c").read_bytes()
    assert hashlib.sha256(ptr_bytes).hexdigest() == GOLDEN_POINTER_SHA256
    assert digest(pointer_for(records[-1]).to_obj()).hex() == GOLDEN_POINTER_SHA256
    write_log(tmp_path / "r", 2)
    report = run_recover(tmp_path / "r")
    assert report.terminal_record_hash is not None
    assert report.terminal_record_hash.hex() == GOLDEN_ROLLBACK_HASH


def test_record_hash_and_frame_match_an_independent_encoder(
    golden: tuple[bytes, tuple[WalRecord, ...]],
) -> None:
    data, records = golden
    for frame, record in zip(frames_of(data), records, strict=True):
        obj = record.to_obj()
        payload = cbor2.dumps(obj, canonical=True)  # cbor2's canonical mode, not our encoder
        assert frame == struct.pack("<I", len(payload)) + payload + struct.pack(
            "<I", crc32c.crc32c(payload)
        )
        preimage = {k: v for k, v in obj.items() if k != "record_hash"}
        expected = h(cbor2.dumps([tags.WAL_RECORD, preimage], canonical=True))
        assert record.record_hash == expected
        assert "record_length_u32" not in obj and "record_crc32c" not in obj  # frame only (§12.5)


def test_read_wal_returns_the_written_records(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]]
) -> None:
    stage(tmp_path, golden[0])
    assert read_wal(wal_path(tmp_path)) == golden[1]
    assert read_wal(wal_path(tmp_path), tenant_id=TENANT, run_id=RUN) == golden[1]
    with pytest.raises(FileNotFoundError):
        read_wal(tmp_path / "nothing")


def test_reopened_writer_continues_the_chain(tmp_path: Path) -> None:
    first = write_log(tmp_path, 1)
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    assert wal.records == first
    rec = wal.append(CERT)
    assert (rec.wal_seq, rec.prev_record_hash) == (1, first[0].record_hash)


def test_largest_legal_record_fits_the_limit() -> None:
    tenant = "t" * 64
    rollback = raw_frame(
        2,
        bytes(32),
        WalRollbackBody(removed_tmp_hashes=tuple(h(bytes([i])) for i in range(64))),
        tenant=tenant,
    )[0]
    finalize = raw_frame(2, bytes(32), FINALIZE, tenant=tenant)[0]
    assert len(finalize) - 8 < len(rollback) - 8 < 2560 < MAX_WAL_RECORD_BYTES


def test_docstring_examples_run() -> None:
    import umlos.evidence.wal

    result = doctest.testmod(umlos.evidence.wal, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --- writer rules ----------------------------------------------------------------------------


def test_append_refuses_rollback_and_out_of_order_records(tmp_path: Path) -> None:
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    rollback: Any = WalRollbackBody(removed_tmp_hashes=())  # outside the signature on purpose
    for early in (CERT, FINALIZE, rollback):
        with pytest.raises(ContractViolationError) as err:
            wal.append(early)
        assert err.value.reason == "WAL_RECORD_ORDER"
    wal.append(PREPARE)
    for again in (PREPARE, FINALIZE):
        with pytest.raises(ContractViolationError, match="cannot follow PREPARE"):
            wal.append(again)
    wal.append(CERT)
    wal.append(FINALIZE)
    for late in BODIES:
        with pytest.raises(ContractViolationError) as err:
            wal.append(late)
        assert err.value.reason == "WAL_RECORD_ORDER"
    assert len(read_wal(wal.path)) == 3


def test_append_validates_the_body_before_writing(tmp_path: Path) -> None:
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    bad = dataclasses.replace(PREPARE, manifest_hash=bytes(31))
    with pytest.raises(ApiShapeMismatchError, match="manifest_hash"):
        wal.append(bad)
    assert not wal.path.exists()
    with pytest.raises(ApiShapeMismatchError):
        RunCommitWal(tmp_path, tenant_id=TENANT, run_id="not-hex")


def test_writer_detects_a_log_changed_underneath(tmp_path: Path) -> None:
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    wal.append(PREPARE)
    other = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    other.append(CERT)
    with pytest.raises(ContractViolationError) as err:
        wal.append(CERT)
    assert err.value.reason == "WAL_WRITER_STALE"
    assert len(read_wal(wal.path)) == 2


def test_writer_refuses_to_open_a_log_with_a_torn_tail(tmp_path: Path) -> None:
    write_log(tmp_path, 2)
    data = wal_path(tmp_path).read_bytes()
    wal_path(tmp_path).write_bytes(data[:-3])
    with pytest.raises(WalCorruptionError) as err:
        RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    assert err.value.reason == "FRAME_TRUNCATED"
    with pytest.raises(WalCorruptionError):
        read_wal(wal_path(tmp_path))  # strict: no tail tolerance


def test_every_append_is_fsynced_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_write, real_link = os.fsync, os.write, os.link

    def name(fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    def fsync(fd: int) -> None:
        events.append(("fsync", name(fd)))
        real_fsync(fd)

    def write(fd: int, data: bytes) -> int:
        events.append(("write", name(fd)))
        return real_write(fd, data)

    def link(src: str, dst: str) -> None:
        events.append(("link", str(dst)))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "link", link)
    run_dir = tmp_path / "runs" / TENANT / RUN
    log = str(wal_path(run_dir))
    wal = RunCommitWal(run_dir, tenant_id=TENANT, run_id=RUN)
    for i, body in enumerate(BODIES):
        before = len(events)
        wal.append(body)
        mine = events[before:]
        write_at = mine.index(("write", log))
        assert ("fsync", log) in mine[write_at:], f"append {i} returned before fsync(log)"
        if i == 0:  # created: every new directory entry up to the run dir is durable
            assert ("fsync", str(run_dir / "wal")) in mine
            assert ("fsync", str(run_dir)) in mine
            assert ("fsync", str(tmp_path)) in mine
    before = len(events)
    last = wal.records[-1]
    assert isinstance(last, WalFinalize)
    publish_committed(run_dir, pointer_for(last))
    mine = events[before:]
    link_at = mine.index(("link", str(pointer_path(run_dir))))
    assert mine[link_at - 1][0] == "fsync"  # the temp file's bytes before the name
    assert mine[-1] == ("fsync", str(run_dir))  # the new name after


# --- recovery outcomes -----------------------------------------------------------------------


def test_recover_empty_run(tmp_path: Path) -> None:
    report = run_recover(tmp_path)
    assert (report.commit_status, report.records_validated, report.terminal_record_hash) == (
        "EMPTY",
        0,
        None,
    )
    assert snapshot(tmp_path) == {}


def test_crash_after_prepare_rolls_back(tmp_path: Path) -> None:
    records = write_log(tmp_path, 1)
    report = run_recover(tmp_path)
    assert report.commit_status == "ROLLED_BACK"
    assert report.rollback_appended and report.removed_tmp_hashes == ()
    after = read_wal(wal_path(tmp_path))
    assert after[:1] == records and isinstance(after[1], WalRollback)
    assert report.terminal_record_hash == after[1].record_hash


def test_crash_after_cert_removes_temp_artifacts_and_rolls_back(tmp_path: Path) -> None:
    """Spec test vector crash-after-cert (and crash-before-finalize)."""
    write_log(tmp_path, 2)
    store = Store(tmp_path)
    report = recover(
        tmp_path,
        tenant_id=TENANT,
        run_id=RUN,
        artifact_hash=store.artifact_hash,
        remove_tmp=store.remove_tmp,
    )
    tmp_hashes = sorted(FINAL.values())
    assert report.commit_status == "ROLLED_BACK"
    assert list(report.removed_tmp_hashes) == tmp_hashes
    assert sorted(hh for _, hh in store.removed) == tmp_hashes
    assert not any(store.holds(x) for x in tmp_hashes)
    last = read_wal(wal_path(tmp_path))[-1]
    assert isinstance(last, WalRollback) and list(last.removed_tmp_hashes) == tmp_hashes
    assert not pointer_path(tmp_path).exists()


def test_finalize_without_pointer_rolls_forward(tmp_path: Path) -> None:
    records = write_log(tmp_path, 3)
    report = run_recover(tmp_path)
    assert report.commit_status == "COMMITTED" and report.pointer_published
    assert report.terminal_record_hash == records[-1].record_hash
    assert isinstance(records[-1], WalFinalize)
    assert pointer_path(tmp_path).read_bytes() == encode(pointer_for(records[-1]).to_obj())


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_recover_is_idempotent(tmp_path: Path, n: int) -> None:
    write_log(tmp_path, n)
    first = run_recover(tmp_path)
    state = snapshot(tmp_path)
    second = run_recover(tmp_path)
    assert snapshot(tmp_path) == state
    assert (second.commit_status, second.terminal_record_hash, second.removed_tmp_hashes) == (
        first.commit_status,
        first.terminal_record_hash,
        first.removed_tmp_hashes,
    )
    assert not (second.rollback_appended or second.pointer_published)


def test_publish_committed(tmp_path: Path) -> None:
    records = write_log(tmp_path, 2)
    ptr = CommitPointer(tenant_id=TENANT, run_id=RUN, wal_terminal_hash=bytes(32), **FINAL)
    with pytest.raises(WalCorruptionError) as err:
        publish_committed(tmp_path, ptr)
    assert err.value.reason == "POINTER_WITHOUT_FINALIZE"
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    fin = wal.append(FINALIZE)
    assert isinstance(fin, WalFinalize) and len(records) == 2
    with pytest.raises(WalCorruptionError) as err:
        publish_committed(tmp_path, ptr)  # wal_terminal_hash is not FINALIZE's
    assert err.value.reason == "POINTER_MISMATCH"
    assert not pointer_path(tmp_path).exists()
    good = pointer_for(fin)
    first = publish_committed(tmp_path, good)
    again = publish_committed(tmp_path, good)
    assert (first.published, again.published) == (True, False)
    assert (
        first.commit_pointer_hash == digest(good.to_obj()) == h(pointer_path(tmp_path).read_bytes())
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


# --- every corruption kind -------------------------------------------------------------------


def _cases(
    data: bytes, records: tuple[WalRecord, ...]
) -> dict[str, tuple[str, bytes, bytes | None, bool]]:
    """name -> (reason, log bytes, pointer bytes or None, artifacts present)."""
    f0, f1, f2 = frames_of(data)
    h0, h1, h2 = (r.record_hash for r in records)
    fin = records[2]
    assert isinstance(fin, WalFinalize)
    ptr = encode(pointer_for(fin).to_obj())
    other_ptr = encode({**pointer_for(fin).to_obj(), "certificate_hash": bytes(32)})
    oversized = bytearray(f1)
    oversized[:4] = struct.pack("<I", 70_000)
    long_f0 = bytearray(f0)
    long_f0[:4] = struct.pack("<I", len(data))  # runs past EOF, yet intact frames follow
    crc_bad = bytearray(f0)
    crc_bad[20] ^= 0x01
    return {
        "truncated_middle_frame": ("FRAME_TRUNCATED", bytes(long_f0) + f1 + f2, None, True),
        "crc_mismatch_middle": ("FRAME_CRC_MISMATCH", bytes(crc_bad) + f1 + f2, None, True),
        "oversized_declared": ("FRAME_OVERSIZED", f0 + bytes(oversized) + f2, None, True),
        "oversized_valid_frame": (
            "FRAME_OVERSIZED",
            f0 + encode_frame(bytes(MAX_WAL_RECORD_BYTES + 1)),
            None,
            True,
        ),
        "log_oversized": ("LOG_OVERSIZED", f0 + bytes(MAX_WAL_BYTES), None, True),
        "not_canonical_cbor": ("CBOR_INVALID", f0 + encode_frame(b"\x18\x05"), None, True),
        "schema": (
            "SCHEMA_INVALID",
            f0 + encode_frame(encode({"record_type": "CERT_SIGNED"})),
            None,
            True,
        ),
        "other_run": (
            "IDENTITY_MISMATCH",
            f0 + raw_frame(1, h0, CERT, run="fedcba9876543210")[0],
            None,
            True,
        ),
        "other_tenant": (
            "IDENTITY_MISMATCH",
            f0 + raw_frame(1, h0, CERT, tenant="b")[0],
            None,
            True,
        ),
        "seq_gap": ("SEQ_GAP", f0 + raw_frame(2, h0, CERT)[0], None, True),
        "duplicate_record": ("SEQ_GAP", f0 + f1 + f1, None, True),
        "reordered_first": ("SEQ_GAP", f1 + f0 + f2, None, True),
        "reordered_last": ("SEQ_GAP", f0 + f2 + f1, None, True),
        "record_hash": (
            "RECORD_HASH_MISMATCH",
            f0 + raw_frame(1, h0, CERT, record_hash=h1[::-1])[0],
            None,
            True,
        ),
        "chain": ("CHAIN_MISMATCH", f0 + raw_frame(1, bytes(32), CERT)[0], None, True),
        "first_not_prepare": ("RECORD_ORDER", raw_frame(0, bytes(32), CERT)[0], None, True),
        "finalize_without_cert": ("RECORD_ORDER", f0 + raw_frame(1, h0, FINALIZE)[0], None, True),
        "duplicate_finalize": (
            "DUPLICATE_TERMINAL",
            data + raw_frame(3, h2, FINALIZE)[0],
            None,
            True,
        ),
        "rollback_after_finalize": (
            "DUPLICATE_TERMINAL",
            data + raw_frame(3, h2, WalRollbackBody(removed_tmp_hashes=()))[0],
            None,
            True,
        ),
        "record_after_terminal": (
            "RECORD_AFTER_TERMINAL",
            data + raw_frame(3, h2, CERT)[0],
            None,
            True,
        ),
        "torn_bytes_after_terminal": ("RECORD_AFTER_TERMINAL", data + f0[:10], None, True),
        "pointer_before_finalize": ("POINTER_WITHOUT_FINALIZE", f0 + f1, ptr, True),
        "pointer_on_empty_log": ("POINTER_WITHOUT_FINALIZE", b"", ptr, True),
        "pointer_differs": ("POINTER_MISMATCH", data, other_ptr, True),
        "pointer_garbage": ("POINTER_MISMATCH", data, b"\x00garbage", True),
        "artifact_missing": ("ARTIFACT_MISMATCH", data, None, False),
    }


CASE_NAMES = [
    "truncated_middle_frame", "crc_mismatch_middle", "oversized_declared", "oversized_valid_frame",
    "log_oversized", "not_canonical_cbor", "schema", "other_run", "other_tenant", "seq_gap",
    "duplicate_record", "reordered_first", "reordered_last", "record_hash", "chain",
    "first_not_prepare", "finalize_without_cert", "duplicate_finalize", "rollback_after_finalize",
    "record_after_terminal", "torn_bytes_after_terminal", "pointer_before_finalize",
    "pointer_on_empty_log", "pointer_differs", "pointer_garbage", "artifact_missing",
]  # fmt: skip
_LOG_LEVEL = {"POINTER_WITHOUT_FINALIZE", "POINTER_MISMATCH", "ARTIFACT_MISMATCH"}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corruption_is_named_and_recovery_changes_nothing(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]], name: str
) -> None:
    reason, log, pointer, artifacts = _cases(*golden)[name]
    stage(tmp_path, log, pointer=pointer, artifacts=artifacts)
    before = snapshot(tmp_path)
    with pytest.raises(WalCorruptionError) as err:
        run_recover(tmp_path)
    assert err.value.reason == reason, str(err.value)
    assert err.value.code_id == "WAL_CORRUPTION"
    assert {"run_id", "wal_seq", "record_hash"} <= set(err.value.context)
    assert snapshot(tmp_path) == before, "an aborted recovery must not change anything"
    if reason not in _LOG_LEVEL and log:
        with pytest.raises(WalCorruptionError) as strict:
            read_wal(wal_path(tmp_path))
        assert strict.value.reason == reason


def test_every_corruption_reason_has_a_negative_test(
    golden: tuple[bytes, tuple[WalRecord, ...]],
) -> None:
    cases = _cases(*golden)
    assert sorted(cases) == sorted(CASE_NAMES)
    assert {reason for reason, *_ in cases.values()} == set(WAL_CORRUPTION_REASONS)
    assert set(WAL_CORRUPTION_REASONS) == set(get_args(WalCorruptionReason))


def test_artifact_with_another_hash_is_a_mismatch(tmp_path: Path) -> None:
    write_log(tmp_path, 3)
    (Store(tmp_path).dir / "checkpoint_hash.bin").write_bytes(b"tampered")
    with pytest.raises(WalCorruptionError) as err:
        run_recover(tmp_path)
    assert err.value.reason == "ARTIFACT_MISMATCH"
    assert err.value.context["artifact_field"] == "checkpoint_hash"
    assert not pointer_path(tmp_path).exists()


def test_reasons_are_declared_in_the_error_catalogue() -> None:
    declared = set(getattr(WalCorruptionError, "reasons", ()))
    assert set(WAL_CORRUPTION_REASONS) <= declared
    assert set(WAL_WRITER_REASONS) <= set(getattr(ContractViolationError, "reasons", ()))


# --- torn tails ------------------------------------------------------------------------------


def _expected_after_discard(tmp_path: Path, n: int) -> tuple[WalRecoveryReport, bytes]:
    """What recovering a clean log of ``n`` records gives: the state a torn append falls back to."""
    ref = tmp_path / f"ref{n}"
    write_log(ref, n)
    report = run_recover(ref)
    return report, wal_path(ref).read_bytes() if wal_path(ref).exists() else b""


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.usefixtures("no_fsync")
def test_truncation_at_every_offset_of_the_last_record_is_a_torn_tail(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]], n: int
) -> None:
    data = b"".join(frames_of(golden[0])[:n])
    start = len(b"".join(frames_of(golden[0])[: n - 1]))
    expected, expected_log = _expected_after_discard(tmp_path, n - 1)
    run_dir = tmp_path / "run"
    for cut in range(start + 1, len(data)):
        restage(run_dir, data[:cut])
        report = run_recover(run_dir)
        assert report.torn_tail_discarded, cut
        assert report.records_validated == n - 1
        assert report.commit_status == expected.commit_status
        assert report.terminal_record_hash == expected.terminal_record_hash
        assert wal_path(run_dir).read_bytes() == expected_log, cut
        assert not pointer_path(run_dir).exists()


def test_zero_filled_tail_is_a_torn_append(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]]
) -> None:
    f0, f1, _ = frames_of(golden[0])
    for fill in (3, 8, 100, len(f1)):
        stage(tmp_path, f0 + bytes(fill))
        report = run_recover(tmp_path)
        assert report.torn_tail_discarded and report.records_validated == 1
        assert report.commit_status == "ROLLED_BACK"


def test_checksum_bad_last_frame_is_a_torn_append(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]]
) -> None:
    f0, f1, _ = frames_of(golden[0])
    bad = bytearray(f1)
    bad[len(bad) // 2] ^= 0x40
    stage(tmp_path, f0 + bytes(bad))
    report = run_recover(tmp_path)
    assert report.torn_tail_discarded and report.records_validated == 1
    assert report.removed_tmp_hashes == ()  # the discarded CERT_SIGNED named nothing durable
    stage(tmp_path, f0 + bytes(bad))
    with pytest.raises(WalCorruptionError) as err:
        read_wal(wal_path(tmp_path))
    assert err.value.reason == "FRAME_CRC_MISMATCH"


def test_torn_finalize_next_to_a_pointer_is_corruption(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]]
) -> None:
    """COMMITTED exists only after FINALIZE was fsynced, so FINALIZE cannot be a torn append."""
    write_log(tmp_path, 3, publish=True)
    wal_path(tmp_path).write_bytes(golden[0][:-5])
    before = snapshot(tmp_path)
    with pytest.raises(WalCorruptionError) as err:
        run_recover(tmp_path)
    assert err.value.reason == "POINTER_WITHOUT_FINALIZE"
    assert snapshot(tmp_path) == before


# --- random bit flips ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_fsync")
@pytest.mark.parametrize("published", [True, False], ids=["committed", "finalized-unpublished"])
def test_random_bit_flips_are_all_detected(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]], published: bool
) -> None:
    """Each flip is a named corruption, or a torn-tail discard of exactly the damaged last frame
    (then the run rolls back to the intact prefix). Never is altered content accepted."""
    data, records = golden
    fin = records[-1]
    assert isinstance(fin, WalFinalize)
    pointer = encode(pointer_for(fin).to_obj()) if published else None
    last_start = len(data) - len(frames_of(data)[-1])
    rng = random.Random(0x57A1 + published)
    seen: dict[str, int] = {}
    run_dir = tmp_path / "run"
    for _ in range(1000):
        bit = rng.randrange(len(data) * 8)
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        restage(run_dir, bytes(flipped), pointer=pointer)
        before = fast_snapshot(run_dir)
        try:
            report = run_recover(run_dir)
        except WalCorruptionError as exc:
            assert exc.reason is not None
            seen[exc.reason] = seen.get(exc.reason, 0) + 1
            assert fast_snapshot(run_dir) == before
            continue
        assert report.torn_tail_discarded, f"bit {bit} accepted silently"
        assert bit // 8 >= last_start and report.records_validated == len(records) - 1
        assert report.commit_status == "ROLLED_BACK"
        assert read_wal(wal_path(run_dir))[:-1] == records[:-1]
        seen["torn"] = seen.get("torn", 0) + 1
    if published:
        assert "torn" not in seen and seen.get("POINTER_WITHOUT_FINALIZE", 0) > 0
    else:
        assert seen.get("torn", 0) > 0
    assert seen.get("FRAME_CRC_MISMATCH", 0) > 0


def test_flipped_pointer_bits_are_detected(
    tmp_path: Path, golden: tuple[bytes, tuple[WalRecord, ...]]
) -> None:
    fin = golden[1][-1]
    assert isinstance(fin, WalFinalize)
    pointer = encode(pointer_for(fin).to_obj())
    rng = random.Random(7)
    for _ in range(50):
        bit = rng.randrange(len(pointer) * 8)
        flipped = bytearray(pointer)
        flipped[bit // 8] ^= 1 << (bit % 8)
        stage(tmp_path, golden[0], pointer=bytes(flipped))
        with pytest.raises(WalCorruptionError) as err:
            run_recover(tmp_path)
        assert err.value.reason == "POINTER_MISMATCH"


# --- ENOSPC and EIO on append ----------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("written", [0, 1, 7, 40])
def test_enospc_on_append_leaves_a_recoverable_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, written: int
) -> None:
    write_log(tmp_path, n)
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)
    if n == 1:
        Store(tmp_path).write_all()
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if written:
            real_write(fd, bytes(data)[:written])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full_disk)
        with pytest.raises(OSError) as err:
            wal.append(BODIES[n])
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(ContractViolationError) as stale:
        wal.append(BODIES[n])
    assert stale.value.reason == "WAL_WRITER_STALE"
    report = run_recover(tmp_path)
    assert report.torn_tail_discarded == bool(written)
    assert report.records_validated == n
    assert report.commit_status == ("EMPTY" if n == 0 else "ROLLED_BACK")
    run_recover(tmp_path)  # and the result is stable
    assert len(read_wal(wal_path(tmp_path))) == (0 if n == 0 else n + 1)


def test_eio_on_fsync_poisons_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path, 2)
    wal = RunCommitWal(tmp_path, tenant_id=TENANT, run_id=RUN)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError):
            wal.append(FINALIZE)
    with pytest.raises(ContractViolationError):
        wal.append(FINALIZE)
    # The bytes reached the page cache: recovery sees a complete FINALIZE and rolls forward.
    assert run_recover(tmp_path).commit_status == "COMMITTED"


# --- SIGKILL fault injection -----------------------------------------------------------------

# The writer. Mode "points": one interpreter forks one writer per kill point; the writer hooks
# os.write / os.fsync (which the WAL and the pointer publication call) and SIGKILLs itself just
# before event KILL_AT ("before" a write = before that append; "before" an fsync = between write
# and fsync; "partial" = after half of a write's bytes); -1 runs to the end and prints the event
# list. Mode "loop": runs many runs back to back until the test kills it at a random time. Both
# print "ack <id> <stage>" once a step is durable.
CHILD = r"""
import os, signal, sys
from pathlib import Path
from umlos._generated.records import wal_append_body_from_obj
from umlos.evidence.wal import RunCommitWal, pointer_for, publish_committed

TENANT = __TENANT__
CONTENT = __CONTENT__
BODIES = [wal_append_body_from_obj(o) for o in __BODIES__]
kill_at, kill_how, events = -1, "", []
real_write, real_fsync = os.write, os.fsync

def event(kind, fd, data=None):
    if len(events) == kill_at:
        if kill_how == "partial" and data is not None:
            real_write(fd, bytes(data)[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    events.append(kind + ":" + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))

def write(fd, data):
    event("write", fd, data)
    return real_write(fd, data)

def fsync(fd):
    event("fsync", fd)
    return real_fsync(fd)

os.write, os.fsync = write, fsync

def protocol(run_dir, run_id, ack):
    wal = RunCommitWal(run_dir, tenant_id=TENANT, run_id=run_id)
    wal.append(BODIES[0]); ack("PREPARE")
    objects = Path(run_dir) / "objects"
    objects.mkdir()
    for name, data in CONTENT.items():  # artifact durability is their writers' job
        (objects / (name + ".bin")).write_bytes(data)
    wal.append(BODIES[1]); ack("CERT_SIGNED")
    fin = wal.append(BODIES[2]); ack("FINALIZE")
    publish_committed(run_dir, pointer_for(fin)); ack("COMMITTED")

mode, root = sys.argv[1], Path(sys.argv[2])
if mode == "points":
    for n, spec in enumerate(sys.argv[3:]):
        at, how = spec.split(":")
        pid = os.fork()
        if pid == 0:
            kill_at, kill_how = int(at), how
            protocol(root / str(n), __RUN__, lambda s: print(f"ack {n} {s}", flush=True))
            print(f"events {n} " + " ".join(events), flush=True)
            os._exit(0)
        print(f"exit {n} {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}", flush=True)
else:
    for i in range(int(sys.argv[3])):
        protocol(root / f"{i:016x}", f"{i:016x}", lambda s, i=i: print(f"ack {i} {s}", flush=True))
"""


def child_source() -> str:
    return (
        CHILD.replace("__TENANT__", repr(TENANT))
        .replace("__RUN__", repr(RUN))
        .replace("__CONTENT__", repr(CONTENT))
        .replace("__BODIES__", repr([b.to_obj() for b in BODIES]))
    )


@pytest.fixture(scope="module")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Children cache bytecode in a private directory (the generated records module is large)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env


def parse_acks(out: str) -> dict[int, list[str]]:
    acks: dict[int, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("ack "):
            _, i, step = line.split()
            acks.setdefault(int(i), []).append(step)
    return acks


def assert_consistent(run_dir: Path, run_id: str, acked: list[str]) -> None:
    """Recovery gives COMMITTED, ROLLED_BACK or EMPTY, each with its invariants, and nothing
    acknowledged as durable is lost; a second recovery changes nothing."""
    report = run_recover(run_dir, run_id)
    store = Store(run_dir)
    records = (
        read_wal(wal_path(run_dir), tenant_id=TENANT, run_id=run_id)
        if wal_path(run_dir).exists()
        else ()
    )
    if report.commit_status == "COMMITTED":
        last = records[-1]
        assert isinstance(last, WalFinalize)
        assert pointer_path(run_dir).read_bytes() == encode(pointer_for(last).to_obj())
        assert all(store.artifact_hash(f) == getattr(last, f) for f in FINAL_ARTIFACTS)
        if "COMMITTED" in acked:  # published before the kill, so recovery only checks it
            assert not report.pointer_published
    elif report.commit_status == "ROLLED_BACK":
        assert isinstance(records[-1], WalRollback)
        assert not pointer_path(run_dir).exists()
        assert not any(store.holds(x) for x in report.removed_tmp_hashes)
        assert "FINALIZE" not in acked, "a durable FINALIZE was rolled back"
    else:
        assert report.commit_status == "EMPTY" and records == ()
        assert not pointer_path(run_dir).exists()
        assert not acked, "a durable PREPARE was lost"
    again = run_recover(run_dir, run_id)
    assert (again.commit_status, again.terminal_record_hash) == (
        report.commit_status,
        report.terminal_record_hash,
    )
    assert not (again.rollback_appended or again.pointer_published or again.torn_tail_discarded)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", child_source(), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _points(tmp_path: Path, specs: list[str], env: dict[str, str]) -> tuple[str, dict[int, int]]:
    tmp_path.mkdir()  # so that every writer creates the same directories
    proc = _spawn(["points", str(tmp_path), *specs], env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    exits = {
        int(n): int(code)
        for _, n, code in (ln.split() for ln in out.splitlines() if ln.startswith("exit "))
    }
    assert sorted(exits) == list(range(len(specs))), err
    return out, exits


def test_sigkill_at_every_write_and_fsync_recovers_consistently(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    out, exits = _points(tmp_path / "full", ["-1:none"], child_env)
    assert exits == {0: 0}
    events = next(ln for ln in out.splitlines() if ln.startswith("events 0 ")).split()[2:]
    assert parse_acks(out)[0] == ["PREPARE", "CERT_SIGNED", "FINALIZE", "COMMITTED"]
    assert_consistent(tmp_path / "full" / "0", RUN, parse_acks(out)[0])
    # Each append is one write then one fsync of the log; creation and publication fsync the
    # directories; the pointer's temp file is written and fsynced before it is linked.
    assert [e for e in events if e.endswith("run_commit.cborlog")] == [
        "write:run_commit.cborlog",
        "fsync:run_commit.cborlog",
    ] * 3
    specs = [f"{i}:before" for i in range(len(events))]
    specs += [f"{i}:partial" for i, e in enumerate(events) if e.startswith("write:")]
    out, exits = _points(tmp_path / "killed", specs, child_env)
    acks = parse_acks(out)
    outcomes: dict[str, int] = {}
    for n, spec in enumerate(specs):
        assert exits[n] == -signal.SIGKILL, spec
        run_dir = tmp_path / "killed" / str(n)
        assert_consistent(run_dir, RUN, acks.get(n, []))
        status = run_recover(run_dir).commit_status
        outcomes[status] = outcomes.get(status, 0) + 1
    assert set(outcomes) == {"EMPTY", "ROLLED_BACK", "COMMITTED"}, outcomes


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_random_times_recovers_consistently(
    tmp_path: Path, child_env: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    runs = 40
    proc = _spawn(["loop", str(tmp_path), str(runs)], child_env)
    assert proc.stdout is not None
    target, lines = rng.randrange(1, 4 * runs - 8), list[str]()
    while len(lines) < target and (line := proc.stdout.readline()):
        lines.append(line)
    time.sleep(rng.uniform(0, 0.004))
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL)
    acks = parse_acks("".join(lines) + out)
    run_dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert run_dirs
    for run_dir in run_dirs:
        assert_consistent(run_dir, run_dir.name, acks.get(int(run_dir.name, 16), []))
