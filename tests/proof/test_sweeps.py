"""Corruption sweeps over one real committed run, with counts.

1. **Truncation** at every byte offset of the last record of the run-commit WAL (FINALIZE), the
   trace (RUN_END) and the journal (the last step's entry). Every cut is detected by the strict
   reader — or, for a cut exactly at a record boundary of a log that has no end marker (WAL,
   journal), by :func:`~umlos.runner.verify.verify_run` — and recovery returns to the last valid
   commit state: ``wal.recover`` rolls the run back to its intact PREPARE/CERT_SIGNED records
   (always to the same bytes), and the trace and journal writers' ``open_existing`` resume at the
   newest checkpoint whose records are intact, leaving exactly the original prefix.
2. **Single-bit flips**: ``FLIPS_PER_KIND`` distinct, seeded bit positions per artifact kind,
   each detected by the kind's reader (the fastest detector; ``DETECTORS`` below names it) with
   zero silent acceptances. Every ``len // VERIFY_SAMPLE``-th flip is also run through the full
   ``verify_run``, which must FAIL and name the damaged file. The full verifier on every flip
   would take about 15 ms × 10,000 on a 2-core machine; the readers are what it calls anyway.

The counts land in ``TRUNCATION_TABLE`` and ``FLIP_TABLE``; each test asserts its rows and the
module prints both tables when it finishes (``pytest tests/proof/test_sweeps.py -s``).
docs/reliability.md ("Corruption sweeps and fuzzing") records the numbers of the last run.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from tests.proof.conftest import CommittedRun
from umlos._generated.records import (
    CheckpointTraceLink,
    EnvironmentManifest,
    ExecutionCertificate,
    Manifest,
    TraceSamplingPolicy,
    VerifyReport,
)
from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH
from umlos.codec import decode, encode
from umlos.errors import Error, TraceSchemaInvalidError, WalCorruptionError
from umlos.evidence._frames import scan_frames
from umlos.evidence.certificate import verify_certificate
from umlos.evidence.checkpoint import verify_checkpoint
from umlos.evidence.journal import JournalWriter, read_journal
from umlos.evidence.trace import TraceWriter, read_trace, sampling_policy
from umlos.evidence.wal import TMP_ARTIFACTS, pointer_path, read_wal, recover, wal_path
from umlos.manifest import normalize, policy_bundle_hash, replay_token
from umlos.runner.verify import verify_run

SEED: Final = 20260521
FLIPS_PER_KIND: Final = 1000
VERIFY_SAMPLE: Final = 50  # flips per kind also run through the full verify_run

WAL: Final = "wal/run_commit.cborlog"
TRACE: Final = "trace/trace.cborlog"
JOURNAL: Final = "journal/journal.cborlog"
CERTIFICATE: Final = "execution_certificate.cbor"
MANIFEST: Final = "manifest.cbor"
ENVIRONMENT: Final = "environment.cbor"

TRUNCATION_TABLE: dict[str, dict[str, int]] = {}
FLIP_TABLE: dict[str, FlipRow] = {}


@dataclass
class FlipRow:
    flips: int = 0
    detected: int = 0
    silent: list[tuple[str, int]] = field(default_factory=list)
    verify_runs: int = 0
    verify_named: int = 0
    how: Counter[str] = field(default_factory=Counter)


# --- what the run holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """Values of the pristine run that the detectors compare against (as verify_run would)."""

    run: CommittedRun
    manifest: Manifest
    policy: TraceSamplingPolicy
    certificate: ExecutionCertificate
    checkpoints: tuple[str, ...]  # "checkpoints/<t:020d>", ascending
    links: tuple[CheckpointTraceLink, ...]  # their trace links, same order


@pytest.fixture(scope="module")
def facts(committed_run: CommittedRun) -> Facts:
    root = committed_run.root
    manifest = Manifest.from_obj(decode((root / MANIFEST).read_bytes()))
    dirs = sorted(
        p.relative_to(root).as_posix()
        for p in (root / "checkpoints").iterdir()
        if p.is_dir() and p.name.isdigit()
    )
    assert len(dirs) >= 3, dirs
    return Facts(
        run=committed_run,
        manifest=manifest,
        policy=sampling_policy(manifest.trace),
        certificate=ExecutionCertificate.from_obj(decode((root / CERTIFICATE).read_bytes())),
        checkpoints=tuple(dirs),
        links=tuple(verify_checkpoint(root / d).trace_link for d in dirs),
    )


@pytest.fixture(scope="module", autouse=True)
def _print_tables() -> Iterator[None]:
    yield
    print("\n\nTruncation sweeps (every byte offset of the last record)")
    print(f"{'log':<10}{'record bytes':>14}{'cuts':>7}{'reader':>9}{'verify':>9}{'recovered':>11}")
    for name, row in TRUNCATION_TABLE.items():
        print(
            f"{name:<10}{row['record_bytes']:>14}{row['cuts']:>7}{row['reader']:>9}"
            f"{row['verify']:>9}{row['recovered']:>11}"
        )
    print(f"\nSingle-bit flips (seed {SEED}; verify_run on a sample)")
    print(f"{'kind':<22}{'flips':>7}{'detected':>10}{'silent':>8}{'verify FAIL+named':>19}")
    for kind, r in FLIP_TABLE.items():
        print(
            f"{kind:<22}{r.flips:>7}{r.detected:>10}{len(r.silent):>8}"
            f"{f'{r.verify_named}/{r.verify_runs}':>19}"
        )
        print(f"    {', '.join(f'{k} {n}' for k, n in r.how.most_common())}")


def _names(report: VerifyReport, rel: str) -> bool:
    """The report FAILs some step whose artifact (or detail) is ``rel``."""
    return any(s.status == "FAIL" and (s.artifact == rel or rel in s.detail) for s in report.steps)


def _assert_verify_names(run_dir: Path, run: CommittedRun, rel: str) -> None:
    report = verify_run(run_dir, trust_store=run.trust_store)
    failed = {s.step_id: (s.artifact, s.detail) for s in report.steps if s.status == "FAIL"}
    assert all("internal error" not in s.detail for s in report.steps), failed
    assert report.verdict == "FAIL", rel
    assert _names(report, rel), (rel, failed)


def _label(exc: Error) -> str:
    return f"{exc.code_id}/{exc.reason}" if exc.reason else exc.code_id


# --- 1. truncation sweeps -----------------------------------------------------------------------


def _forbidden(*args: object) -> None:
    """Recovery of a log that does not end in FINALIZE must not call this."""
    raise AssertionError(f"unexpected recovery callback {args}")


class _Removed:
    """A ``remove_tmp`` that records what recovery asks to remove (and removes nothing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []

    def __call__(self, field_name: str, digest: bytes) -> None:
        self.calls.append((digest, field_name))


def test_wal_truncated_inside_finalize_is_detected_and_rolls_back(
    committed_run: CommittedRun, run_copy: Path
) -> None:
    ids = {"tenant_id": committed_run.tenant_id, "run_id": committed_run.run_id}
    log, pointer = wal_path(run_copy), pointer_path(run_copy)
    data, pointer_bytes = log.read_bytes(), pointer.read_bytes()
    original = read_wal(log, **ids)
    assert [r.record_type for r in original] == ["PREPARE", "CERT_SIGNED", "FINALIZE"]
    start = scan_frames(data).frames[-1].offset
    tmp_named = sorted(
        {(getattr(r, f), f) for r in original[:2] for f in TMP_ARTIFACTS if getattr(r, f, None)}
    )
    row = {"record_bytes": len(data) - start, "cuts": 0, "reader": 0, "verify": 0, "recovered": 0}
    how: Counter[str] = Counter()
    rolled_back: bytes | None = None
    for cut in range(start, len(data)):
        log.write_bytes(data[:cut])
        row["cuts"] += 1
        # The strict reader. A cut exactly at the frame boundary leaves a shorter valid log
        # (the WAL has no end marker): only the verifier, which needs FINALIZE, can refuse it.
        if cut == start:
            assert read_wal(log, **ids) == original[:2]
            _assert_verify_names(run_copy, committed_run, WAL)
            row["verify"] += 1
        else:
            with pytest.raises(WalCorruptionError) as info:
                read_wal(log, **ids)
            assert info.value.offset == start, cut
            how[_label(info.value)] += 1
            row["reader"] += 1
        # Recovery beside the published pointer: a FINALIZE was lost, so abort, change nothing.
        with pytest.raises(WalCorruptionError) as info:
            recover(run_copy, **ids, artifact_hash=_forbidden, remove_tmp=_forbidden)
        assert info.value.reason == "POINTER_WITHOUT_FINALIZE", cut
        assert log.read_bytes() == data[:cut] and pointer.read_bytes() == pointer_bytes
        # Recovery after a crash inside the FINALIZE append (the pointer is published only
        # after FINALIZE is durable, so it does not exist yet): deterministic rollback.
        pointer.unlink()
        removed = _Removed()
        report = recover(run_copy, **ids, artifact_hash=_forbidden, remove_tmp=removed)
        assert (report.commit_status, report.records_validated) == ("ROLLED_BACK", 2), cut
        assert report.rollback_appended and not report.pointer_published
        assert report.torn_tail_discarded == (cut > start)
        assert sorted(removed.calls) == tmp_named
        after = log.read_bytes()
        rolled_back = rolled_back or after
        assert after == rolled_back, cut  # the same state whatever the cut
        assert after[:start] == data[:start]
        recovered = read_wal(log, **ids)
        assert recovered[:2] == original[:2] and recovered[2].record_type == "ROLLBACK"
        again = recover(run_copy, **ids, artifact_hash=_forbidden, remove_tmp=_forbidden)
        assert again.commit_status == "ROLLED_BACK" and not again.rollback_appended
        assert log.read_bytes() == rolled_back and not pointer.exists()
        row["recovered"] += 1
        pointer.write_bytes(pointer_bytes)
    TRUNCATION_TABLE["wal"] = row
    assert row["cuts"] == row["record_bytes"] == row["reader"] + row["verify"] == row["recovered"]
    assert set(how) == {"WAL_CORRUPTION/FRAME_TRUNCATED"}, how


def _newest_link(
    links: tuple[CheckpointTraceLink, ...],
    count: Callable[[CheckpointTraceLink], int | None],
    intact: int,
) -> CheckpointTraceLink:
    """The newest checkpoint whose ``count`` of trace records (journal entries) is intact."""
    return [link for link in links if (count(link) or 0) <= intact][-1]


def test_trace_truncated_inside_run_end_is_detected_and_resumes_at_the_checkpoint(
    facts: Facts, run_copy: Path
) -> None:
    path = run_copy / TRACE
    data = path.read_bytes()
    whole = read_trace(data, policy=facts.policy)
    start = whole.offsets[-1]
    assert whole.records[-1].kind == "RUN_END"
    row = {"record_bytes": len(data) - start, "cuts": 0, "reader": 0, "verify": 0, "recovered": 0}
    how: Counter[str] = Counter()
    for cut in range(start, len(data)):
        row["cuts"] += 1
        with pytest.raises(TraceSchemaInvalidError) as info:
            read_trace(data[:cut], policy=facts.policy)
        assert info.value.reason == ("MISSING_RUN_END" if cut == start else "TRUNCATED_FRAME")
        how[_label(info.value)] += 1
        row["reader"] += 1
        # Resume (what `umlos run --resume` does): keep the records the newest checkpoint
        # counted, verify them against its snapshot hash, cut the rest.
        intact = len(scan_frames(data[:cut]).frames)
        link = _newest_link(facts.links, lambda k: k.trace_record_count, intact)
        path.write_bytes(data[:cut])
        writer = TraceWriter.open_existing(
            path,
            facts.policy,
            up_to_records=link.trace_record_count,
            expected_chain_hash=link.trace_snapshot_hash,
            fsync="NEVER",
        )
        writer.close()
        assert writer.record_count == link.trace_record_count
        assert writer.chain_hash == link.trace_snapshot_hash
        assert path.read_bytes() == data[: whole.offsets[link.trace_record_count]], cut
        row["recovered"] += 1
    TRUNCATION_TABLE["trace"] = row
    assert row["cuts"] == row["record_bytes"] == row["reader"] == row["recovered"]


def test_journal_truncated_inside_its_last_entry_is_detected_and_resumes_at_a_checkpoint(
    facts: Facts, run_copy: Path
) -> None:
    path = run_copy / JOURNAL
    data = path.read_bytes()
    whole = read_journal(data)
    start = whole.offsets[-1]
    newest = facts.links[-1]
    assert newest.journal_entry_count == len(whole.entries)  # the last checkpoint covers it
    row = {"record_bytes": len(data) - start, "cuts": 0, "reader": 0, "verify": 0, "recovered": 0}
    how: Counter[str] = Counter()
    for cut in range(start, len(data)):
        row["cuts"] += 1
        path.write_bytes(data[:cut])
        if cut == start:
            # No end marker: a boundary cut is a shorter valid journal; the verifier ties the
            # journal to the trace's step range and refuses it.
            assert read_journal(data[:cut]).entries == whole.entries[:-1]
            _assert_verify_names(run_copy, facts.run, JOURNAL)
            row["verify"] += 1
        else:
            with pytest.raises(TraceSchemaInvalidError) as info:
                read_journal(data[:cut])
            assert info.value.reason == "JOURNAL_TRUNCATED_FRAME" and info.value.offset == start
            how[_label(info.value)] += 1
            row["reader"] += 1
        # The checkpoint that counted the lost entry cannot be resumed from: refused by name.
        with pytest.raises(TraceSchemaInvalidError):
            JournalWriter.open_existing(
                path,
                up_to_entries=newest.journal_entry_count or 0,
                expected_link_hash=newest.journal_link_hash,
                fsync="NEVER",
            )
        assert path.read_bytes() == data[:cut]
        # The newest checkpoint whose entries are intact is, and leaves the original prefix.
        intact = len(scan_frames(data[:cut]).frames)
        link = _newest_link(facts.links, lambda k: k.journal_entry_count, intact)
        writer = JournalWriter.open_existing(
            path,
            up_to_entries=link.journal_entry_count or 0,
            expected_link_hash=link.journal_link_hash,
            fsync="NEVER",
        )
        writer.close()
        assert writer.head_link_hash == link.journal_link_hash
        assert path.read_bytes() == data[: whole.offsets[link.journal_entry_count or 0]], cut
        row["recovered"] += 1
    TRUNCATION_TABLE["journal"] = row
    assert row["cuts"] == row["record_bytes"] == row["reader"] + row["verify"] == row["recovered"]


# --- 2. single-bit flips ----------------------------------------------------------------------

Detector = Callable[[Facts, Path, str], str | None]


def _wal_reader(f: Facts, run: Path, rel: str) -> str | None:
    read_wal(run / rel, tenant_id=f.run.tenant_id, run_id=f.run.run_id)
    return None


def _trace_reader(f: Facts, run: Path, rel: str) -> str | None:
    read_trace(run / rel, policy=f.policy)
    return None


def _journal_reader(f: Facts, run: Path, rel: str) -> str | None:
    read_journal(run / rel)
    return None


def _checkpoint_reader(f: Facts, run: Path, rel: str) -> str | None:
    verify_checkpoint(run / "/".join(rel.split("/")[:2]))
    return None


def _certificate_reader(f: Facts, run: Path, rel: str) -> str | None:
    p = f.certificate.signed_payload
    expected = {"tenant_id": p.tenant_id, "run_id": p.run_id, "replay_token": p.replay_token}
    verify_certificate(
        (run / rel).read_bytes(), f.run.trust_store, f.run.revocations, expected=expected
    )
    return None


def _manifest_reader(f: Facts, run: Path, rel: str) -> str | None:
    """manifest.cbor has no reader of its own: verify_run step 3 (strict CBOR, schema, already
    normalized) and the manifest_hash the certificate signs (step 22) are what detect it."""
    data = (run / rel).read_bytes()
    manifest = normalize(Manifest.from_obj(decode(data)))
    if encode(manifest.to_obj()) != data:
        return "NOT_NORMALIZED"
    if hashlib.sha256(data).digest() != f.certificate.signed_payload.manifest_hash:
        return "MANIFEST_HASH≠certificate"
    return None


def _environment_reader(f: Facts, run: Path, rel: str) -> str | None:
    """environment.cbor: verify_run steps 5-6 (strict CBOR, schema; the replay token recomputed
    from it must be the one the certificate signs)."""
    data = (run / rel).read_bytes()
    env = EnvironmentManifest.from_obj(decode(data))
    m = f.manifest
    token = replay_token(
        spec_version=m.spec_version,
        policy_bundle_hash=policy_bundle_hash(m),
        env_manifest_hash=hashlib.sha256(data).digest(),
        determinism_profile_hash=env.determinism_profile_hash,
        driver_runtime_fingerprint_hash=env.driver_runtime_fingerprint_hash,
        seed=m.seed,
        operator_registry_root_hash=OPERATOR_REGISTRY_ROOT_HASH,
    )
    if token != f.certificate.signed_payload.replay_token:
        return "REPLAY_TOKEN≠certificate"
    return None


def _in_checkpoints(*inner: str) -> Callable[[Facts], list[str]]:
    return lambda f: [f"{d}/{name}" for d in f.checkpoints for name in inner]


# kind -> (the files it covers, its fastest detector)
DETECTORS: Final[dict[str, tuple[Callable[[Facts], list[str]], Detector]]] = {
    "wal": (lambda f: [WAL], _wal_reader),
    "trace": (lambda f: [TRACE], _trace_reader),
    "journal": (lambda f: [JOURNAL], _journal_reader),
    "checkpoint_header": (_in_checkpoints("checkpoint_header.cbor"), _checkpoint_reader),
    "checkpoint_manifest": (_in_checkpoints("checkpoint_manifest.cbor"), _checkpoint_reader),
    "training_state_header": (_in_checkpoints("state/training_state.cbor"), _checkpoint_reader),
    "tensor_shards": (
        _in_checkpoints("tensors/rank=0/shard=0.bin", "optimizer/rank=0/state.bin"),
        _checkpoint_reader,
    ),
    "certificate": (lambda f: [CERTIFICATE], _certificate_reader),
    "manifest.cbor": (lambda f: [MANIFEST], _manifest_reader),
    "environment.cbor": (lambda f: [ENVIRONMENT], _environment_reader),
}


def _positions(files: list[str], sizes: list[int], rng: random.Random) -> list[tuple[str, int]]:
    """``FLIPS_PER_KIND`` distinct (file, bit) positions, uniform over the kind's bits."""
    total = sum(sizes) * 8
    out = []
    for bit in rng.sample(range(total), min(FLIPS_PER_KIND, total)):
        for rel, size in zip(files, sizes, strict=True):
            if bit < size * 8:
                out.append((rel, bit))
                break
            bit -= size * 8
    return out


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_every_single_bit_flip_is_detected(kind: str, facts: Facts, run_copy: Path) -> None:
    files_of, detect = DETECTORS[kind]
    files = files_of(facts)
    originals = {rel: (run_copy / rel).read_bytes() for rel in files}
    assert detect(facts, run_copy, files[0]) is None  # the pristine artifact passes
    positions = _positions(
        files, [len(originals[r]) for r in files], random.Random(f"{SEED}:{kind}")
    )
    every = len(positions) // VERIFY_SAMPLE
    row = FlipRow()
    for index, (rel, bit) in enumerate(positions):
        path = run_copy / rel
        damaged = bytearray(originals[rel])
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(damaged)
        try:
            verdict = detect(facts, run_copy, rel)
        except Error as exc:  # anything else is a crash: it propagates and fails the test
            verdict = _label(exc)
        row.flips += 1
        if verdict is None:
            row.silent.append((rel, bit))
        else:
            row.detected += 1
            row.how[verdict] += 1
        if index % every == 0:
            _assert_verify_names(run_copy, facts.run, rel)
            row.verify_runs += 1
            row.verify_named += 1
        path.write_bytes(originals[rel])
    FLIP_TABLE[kind] = row
    assert row.silent == [], f"{len(row.silent)} silent acceptances, first {row.silent[:5]}"
    assert row.flips == row.detected == FLIPS_PER_KIND
    assert row.verify_runs == row.verify_named == VERIFY_SAMPLE
