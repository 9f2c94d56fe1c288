"""`umlos verify`: a committed run passes every step; each way of breaking it fails the step that
checks it, and says which artifact; random byte flips anywhere are caught; nothing is written."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import importlib
import math
import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import ROOT
from umlos._generated.records import (
    CommitPointer,
    ExecutionCertificate,
    JournalEntry,
    TrustStore,
    VerifyReport,
)
from umlos.codec import decode, encode
from umlos.errors import Error
from umlos.evidence._frames import encode_frame, scan_frames
from umlos.evidence.certificate import encode_certificate, local_trust_store, sign_certificate
from umlos.evidence.journal import journal_link_hash
from umlos.evidence.keys import load_signing_key, public_key_bytes
from umlos.manifest import load_manifest, loads_manifest
from umlos.quickstart import write_quickstart
from umlos.runner import execute
from umlos.runner.pins import golden_pins
from umlos.runner.verify import STEPS, exit_code, failed_step, verify_run

CKPT_7 = "checkpoints/00000000000000000007"
CKPT_14 = "checkpoints/00000000000000000014"


def _manifest(directory: Path, *, extra: str = "") -> Path:
    path = write_quickstart("classification", directory)
    text = path.read_text().replace("limits: {max_epochs: 60}", "limits: {max_steps: 20}")
    path.write_text(text + "checkpoint_frequency: 7\n" + extra)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two committed runs, signed with the key store every test in this folder uses: ``a`` (the
    iris quickstart, 20 steps and an evaluation, checkpoints at 7, 14, 21) and ``b`` (the same
    manifest under another environment, so another run)."""
    home = tmp_path_factory.getbasetemp() / "umlos-home"  # as the autouse fixture sets it
    base = tmp_path_factory.mktemp("verify-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLOS_HOME", str(home))
        manifest = _manifest(base / "m")
        a = execute(manifest, runs_root=base / "runs")
        # The environment's ten captured variables are part of the run's identity.
        mp.setenv("OMP_NUM_THREADS", "3")
        b = execute(manifest, runs_root=base / "runs")
    assert a.run_id != b.run_id
    yield {"a": Path(a.run_dir), "b": Path(b.run_dir)}


@pytest.fixture
def run(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of run ``a`` (under its own run id: the name is checked)."""
    dest = tmp_path / "runs" / runs["a"].name
    shutil.copytree(runs["a"], dest)
    return dest


def snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry under ``root``: kind, bytes (files) and modification time."""
    out: dict[str, tuple[str, bytes | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            info = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            out[path.relative_to(root).as_posix()] = (
                "dir" if path.is_dir() else "file",
                data,
                info.st_mtime_ns,
            )
    return out


def statuses(report: VerifyReport) -> dict[str, str]:
    return {s.step_id: s.status for s in report.steps}


def failing(report: VerifyReport) -> dict[str, tuple[str, str]]:
    """step_id -> (artifact, detail) of every failing step."""
    return {s.step_id: (s.artifact, s.detail) for s in report.steps if s.status == "FAIL"}


def first_failure(report: VerifyReport) -> str | None:
    step = failed_step(report)
    return step.step_id if step is not None else None


def assert_only_fails(report: VerifyReport, *step_ids: str) -> None:
    assert report.verdict == "FAIL"
    assert set(failing(report)) == set(step_ids), failing(report)


def resign(run: Path, **changes: object) -> None:
    """Replace the certificate by one signed with the trusted key over a changed payload: the
    signature verifies, so only the steps that recompute the changed values can notice."""
    path = run / "execution_certificate.cbor"
    cert = ExecutionCertificate.from_obj(decode(path.read_bytes()))
    payload = dataclasses.replace(cert.signed_payload, **changes)
    path.write_bytes(encode_certificate(sign_certificate(payload, load_signing_key())))


# --- the committed run --------------------------------------------------------------------------


def test_committed_run_verifies_and_nothing_is_written(run: Path) -> None:
    before = snapshot(run)
    report = verify_run(run)
    assert [s.status for s in report.steps] == ["PASS"] * len(STEPS), failing(report)
    assert report.verdict == "PASS" and report.first_failed_step is None
    assert exit_code(report) == 0 and failed_step(report) is None
    assert report.run_id == run.name and report.tenant_id == "quickstart"
    assert report.certificate_hash is not None
    assert snapshot(run) == before


def test_report_is_a_valid_record_and_deterministic(run: Path) -> None:
    first = verify_run(run)
    assert VerifyReport.from_obj(first.to_obj()) == first
    assert encode(verify_run(run).to_obj()) == encode(first.to_obj())


def test_step_table_numbers_and_exit_codes() -> None:
    assert [s.step_no for s in STEPS] == list(range(1, len(STEPS) + 1))
    assert len({s.step_id for s in STEPS}) == len(STEPS)
    groups = [s.step_id.split(".")[0] for s in STEPS]
    assert list(dict.fromkeys(groups)) == [
        "layout",
        "manifest",
        "environment",
        "certificate",
        "trace",
        "journal",
        "checkpoints",
        "wal",
        "bindings",
    ]
    assert [s.exit_code for s in STEPS] == [10 + s.group for s in STEPS]
    assert {s.exit_code for s in STEPS} == set(range(11, 20))


def _documented_steps(text: str, pattern: str) -> list[tuple[int, str, int]]:
    return [(int(n), sid, int(code)) for n, sid, code in re.findall(pattern, text, flags=re.M)]


def test_documented_procedure_is_the_code() -> None:
    """The module docstring's table and docs/formats/run-directory.md list exactly STEPS."""
    ours = [(s.step_no, s.step_id, s.exit_code) for s in STEPS]
    docs = (ROOT / "docs" / "formats" / "run-directory.md").read_text()
    assert _documented_steps(docs, r"^\| (\d+) \| `([a-z._]+)` \|.*\| (\d+) \|$") == ours
    module = importlib.import_module("umlos.runner.verify")
    table = _documented_steps(module.__doc__ or "", r"^ *(\d+) +([a-z]+\.[a-z_]+) .* (\d+)$")
    assert table == ours


def test_module_examples_run() -> None:
    assert doctest.testmod(importlib.import_module("umlos.runner.verify")).failed == 0


def test_run_copied_elsewhere_under_its_name_verifies(run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / run.name
    shutil.copytree(run, moved)
    report = verify_run(moved)
    assert report.verdict == "PASS"
    assert encode(report.to_obj()) == encode(verify_run(run).to_obj())  # no path in the report


def test_golden_run_with_pinned_environment_verifies(tmp_path: Path) -> None:
    """A run whose environment is pinned (examples/hello) verifies like any other: verify reads
    the environment from the directory and never captures the machine's."""
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello"
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"umlos golden demo key").digest())
    backend = load_manifest(hello / "manifest.yaml").manifest.backend
    assert backend is not None
    summary = execute(
        hello / "manifest.yaml", runs_root=tmp_path, signing_key=key, pins=golden_pins(backend)
    )
    store = local_trust_store([public_key_bytes(key)])
    report = verify_run(summary.run_dir, trust_store=store)
    assert report.verdict == "PASS", failing(report)
    assert report.certificate_hash is not None
    assert report.certificate_hash.hex() == summary.certificate_hash


# --- 1. layout ----------------------------------------------------------------------------------


def test_missing_file_fails_layout(run: Path) -> None:
    (run / "journal" / "journal.cborlog").unlink()
    report = verify_run(run)
    assert failing(report)["layout.required"][0] == "journal/journal.cborlog"
    assert first_failure(report) == "layout.required"
    assert exit_code(report) == 11
    assert statuses(report)["journal.read"] == "FAIL"
    assert statuses(report)["journal.trace"] == "SKIP"
    assert statuses(report)["wal.finalize"] == "PASS"  # independent steps still run


def test_extra_file_fails_layout(run: Path) -> None:
    (run / "trace" / "notes.txt").write_text("hello")
    report = verify_run(run)
    assert_only_fails(report, "layout.unexpected")
    assert failing(report)["layout.unexpected"][0] == "trace/notes.txt"


def test_extra_file_inside_checkpoint_fails_layout(run: Path) -> None:
    (run / CKPT_7 / "tensors" / "rank=0" / "shard=1.bin").write_bytes(b"\0" * 8)
    report = verify_run(run)
    assert failing(report)["layout.unexpected"][0] == f"{CKPT_7}/tensors/rank=0/shard=1.bin"
    assert failing(report)["checkpoints.verify"][0] == f"{CKPT_7}/tensors/rank=0/shard=1.bin"


def test_undecodable_file_name_is_reported_safely(run: Path) -> None:
    fd = os.open(os.fsencode(run / "journal") + b"/bad\xff", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    report = verify_run(run)
    assert failing(report)["layout.unexpected"][0] == ascii("journal/bad\udcff")
    assert VerifyReport.from_obj(decode(encode(report.to_obj()))) == report


def test_missing_directory_fails_every_step_without_raising(tmp_path: Path) -> None:
    report = verify_run(tmp_path / "0123456789abcdef")
    assert first_failure(report) == "layout.required" and exit_code(report) == 11
    assert {s.status for s in report.steps} == {"FAIL", "SKIP"}
    assert not any("internal error" in s.detail for s in report.steps)


def test_symlink_fails_layout(run: Path) -> None:
    target = run / "manifest.yaml"
    (run / "manifest.yaml.bak").symlink_to(target)
    report = verify_run(run)
    assert failing(report)["layout.unexpected"][0] == "manifest.yaml.bak"


def test_crash_leftovers_are_ignored_but_named(run: Path) -> None:
    (run / ".COMMITTED.x1y2.tmp").write_bytes(b"partial")
    (run / "checkpoints" / ".00000000000000000014.invalid").mkdir()
    report = verify_run(run)
    assert report.verdict == "PASS", failing(report)
    detail = next(s.detail for s in report.steps if s.step_id == "layout.unexpected")
    assert ".COMMITTED.x1y2.tmp" in detail and ".00000000000000000014.invalid" in detail


# --- 2. manifest --------------------------------------------------------------------------------


def test_edited_manifest_yaml_fails_manifest(run: Path) -> None:
    path = run / "manifest.yaml"
    path.write_text(path.read_text().replace("lr: 0.01", "lr: 0.02"))
    report = verify_run(run)
    assert_only_fails(report, "manifest.source")
    assert "$.optimizer" in failing(report)["manifest.source"][1]
    assert exit_code(report) == 12


def test_reformatted_manifest_yaml_verifies(run: Path) -> None:
    path = run / "manifest.yaml"
    path.write_text("# reformatted by hand\n" + path.read_text().replace("seed: 1", "seed:   1"))
    assert verify_run(run).verdict == "PASS"


def test_non_normalized_manifest_cbor_fails_manifest(run: Path) -> None:
    path = run / "manifest.cbor"
    obj = decode(path.read_bytes())
    del obj["alpha"]  # a default the normalized form spells out
    path.write_bytes(encode(obj))
    report = verify_run(run)
    assert failing(report)["manifest.canonical"][0] == "manifest.cbor"
    assert "normalized" in failing(report)["manifest.canonical"][1]


# --- 3. environment -----------------------------------------------------------------------------


def test_environment_from_another_run_fails_environment(run: Path, runs: dict[str, Path]) -> None:
    shutil.copyfile(runs["b"] / "environment.cbor", run / "environment.cbor")
    report = verify_run(run)
    assert first_failure(report) == "environment.identity"
    artifact, detail = failing(report)["environment.identity"]
    assert artifact == "environment.cbor" and run.name in detail
    assert exit_code(report) == 13
    assert statuses(report)["certificate.signature"] == "SKIP"  # identity unknown: not bound


def test_renamed_directory_fails_environment(run: Path) -> None:
    renamed = run.with_name("0000000000000000")
    run.rename(renamed)
    assert set(failing(verify_run(renamed))) == {"environment.identity"}


# --- 4. certificate -----------------------------------------------------------------------------


def test_unknown_signer_fails_certificate(run: Path) -> None:
    empty = TrustStore(trust_roots=(), version="local-v1", issuer_policies_hash=bytes(32))
    report = verify_run(run, trust_store=empty)
    assert first_failure(report) == "certificate.signature"
    artifact, detail = failing(report)["certificate.signature"]
    assert artifact == "execution_certificate.cbor" and "[UNKNOWN_SIGNER]" in detail
    assert exit_code(report) == 14
    # Everything the certificate is needed for is skipped, everything else still checked.
    assert statuses(report)["trace.certificate"] == "SKIP"
    assert statuses(report)["bindings.data"] == "SKIP"
    assert statuses(report)["journal.trace"] == "PASS"


def test_default_trust_store_is_the_verifiers_not_the_runs(
    run: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("UMLOS_HOME", str(tmp_path / "no-keys-here"))
    report = verify_run(run)  # the run's own trust_store.cbor would trust its signer
    step = failed_step(report)
    assert step is not None and step.step_id == "certificate.signature"
    assert step.code_id == "CONTRACT_VIOLATION" and "[KEY_MISSING]" in step.detail


def test_tampered_certificate_signature_fails_certificate(run: Path) -> None:
    path = run / "execution_certificate.cbor"
    cert = ExecutionCertificate.from_obj(decode(path.read_bytes()))
    sig = bytes([cert.signature[0] ^ 1]) + cert.signature[1:]
    path.write_bytes(encode_certificate(dataclasses.replace(cert, signature=sig)))
    report = verify_run(run)
    assert "[BAD_SIGNATURE]" in failing(report)["certificate.signature"][1]
    assert first_failure(report) == "certificate.signature"


def test_certificate_from_another_run_fails_certificate(run: Path, runs: dict[str, Path]) -> None:
    shutil.copyfile(runs["b"] / "execution_certificate.cbor", run / "execution_certificate.cbor")
    report = verify_run(run)
    step = failed_step(report)
    assert step is not None and step.step_id == "certificate.signature"
    assert "[EVIDENCE_MISMATCH]" in step.detail and step.code_id == "SIGNATURE_MISMATCH"
    assert statuses(report)["wal.finalize"] == "FAIL"  # the WAL names the run's own certificate


def test_edited_run_trust_store_fails_certificate(run: Path) -> None:
    path = run / "trust_store.cbor"
    store = TrustStore.from_obj(decode(path.read_bytes()))
    other = dataclasses.replace(store, trust_roots=(bytes(range(32)),))
    path.write_bytes(encode(other.to_obj()))
    report = verify_run(run)
    assert_only_fails(report, "certificate.trust_store")
    assert failing(report)["certificate.trust_store"][0] == "trust_store.cbor"


def test_edited_revocation_bundle_fails_certificate(run: Path) -> None:
    path = run / "revocation_bundle.cbor"
    obj = decode(path.read_bytes())
    obj["revoked_key_ids"] = ["ed25519:" + "00" * 32]
    path.write_bytes(encode(obj))
    report = verify_run(run)
    artifact, detail = failing(report)["certificate.signature"]
    assert artifact == "revocation_bundle.cbor" and "[REVOCATION_BUNDLE_MISMATCH]" in detail


# --- 5. trace -----------------------------------------------------------------------------------


def test_truncated_trace_fails_trace(run: Path) -> None:
    path = run / "trace" / "trace.cborlog"
    path.write_bytes(path.read_bytes()[:-5])
    report = verify_run(run)
    artifact, detail = failing(report)["trace.read"]
    assert artifact == "trace/trace.cborlog" and "[TRUNCATED_FRAME]" in detail
    assert first_failure(report) == "trace.read"
    assert exit_code(report) == 15
    assert statuses(report)["journal.trace"] == "SKIP"


def test_trace_cut_before_run_end_fails_trace(run: Path) -> None:
    path = run / "trace" / "trace.cborlog"
    frames = scan_frames(path.read_bytes()).frames
    path.write_bytes(b"".join(encode_frame(fr.payload) for fr in frames[:-1]))
    assert "[MISSING_RUN_END]" in failing(verify_run(run))["trace.read"][1]


# --- 6. journal ---------------------------------------------------------------------------------


def _rewrite_journal(run: Path, index: int, **event_changes: object) -> None:
    """Change one entry's event and re-frame it with a valid CRC (links left as they were)."""
    path = run / "journal" / "journal.cborlog"
    frames = scan_frames(path.read_bytes()).frames
    payloads = [fr.payload for fr in frames]
    entry = JournalEntry.from_obj(decode(payloads[index]))
    event = dataclasses.replace(entry.event, **event_changes)
    payloads[index] = encode(dataclasses.replace(entry, event=event).to_obj())
    path.write_bytes(b"".join(encode_frame(p) for p in payloads))


def test_edited_journal_fails_journal(run: Path) -> None:
    _rewrite_journal(run, 3, data_cursors_hash=bytes(32))
    report = verify_run(run)
    artifact, detail = failing(report)["journal.read"]
    assert artifact == "journal/journal.cborlog" and "[JOURNAL_LINK_BREAK]" in detail
    assert first_failure(report) == "journal.read"
    assert exit_code(report) == 16


def test_journal_linked_to_a_foreign_trace_fails_journal(run: Path) -> None:
    """Links recomputed so the journal itself reads clean: only the trace link can tell."""
    path = run / "journal" / "journal.cborlog"
    entries = [
        JournalEntry.from_obj(decode(fr.payload)) for fr in scan_frames(path.read_bytes()).frames
    ]
    prev = bytes(32)
    out = []
    for i, entry in enumerate(entries):
        event = entry.event
        if i == 5:
            event = dataclasses.replace(event, trace_chain_hash=bytes(range(32)))
        link = journal_link_hash(prev, event)
        out.append(
            encode_frame(
                encode(
                    JournalEntry(
                        journal_seq=i, prev_link_hash=prev, event=event, link_hash=link
                    ).to_obj()
                )
            )
        )
        prev = link
    path.write_bytes(b"".join(out))
    report = verify_run(run)
    assert statuses(report)["journal.read"] == "PASS"
    assert "[CHAIN_BREAK]" in failing(report)["journal.trace"][1]
    assert statuses(report)["checkpoints.journal"] == "FAIL"  # the links from 7 on moved


# --- 7. checkpoints -----------------------------------------------------------------------------


def test_deleted_checkpoint_shard_fails_checkpoints(run: Path) -> None:
    shard = f"{CKPT_14}/tensors/rank=0/shard=0.bin"
    (run / shard).unlink()
    report = verify_run(run)
    artifact, detail = failing(report)["checkpoints.verify"]
    assert artifact == shard and "[FILE_MISSING]" in detail
    assert first_failure(report) == "checkpoints.verify"
    assert exit_code(report) == 17


def test_checkpoint_from_another_run_fails_checkpoints(run: Path, runs: dict[str, Path]) -> None:
    shutil.rmtree(run / CKPT_14)
    shutil.copytree(runs["b"] / CKPT_14, run / CKPT_14)
    report = verify_run(run)
    step = failed_step(report)
    assert step is not None and step.step_id.startswith("checkpoints.")
    assert step.artifact.startswith(CKPT_14) and step.code_id == "CHECKPOINT_INVALID"


def test_checkpoint_pointer_naming_another_checkpoint_fails_checkpoints(
    run: Path, runs: dict[str, Path]
) -> None:
    pointer = f"{CKPT_14}.committed"
    other = decode((runs["b"] / pointer).read_bytes())
    mine = decode((run / pointer).read_bytes())
    (run / pointer).write_bytes(encode({**mine, "checkpoint_hash": other["checkpoint_hash"]}))
    report = verify_run(run)
    assert_only_fails(report, "checkpoints.pointers")
    assert failing(report)["checkpoints.pointers"][0] == pointer


def test_unpublished_checkpoint_is_accepted(run: Path) -> None:
    (run / f"{CKPT_7}.committed").unlink()
    report = verify_run(run)
    assert report.verdict == "PASS", failing(report)
    assert "unpublished" in next(
        s.detail for s in report.steps if s.step_id == "checkpoints.pointers"
    )


# --- 8. WAL -------------------------------------------------------------------------------------


def test_wal_record_removed_fails_wal(run: Path) -> None:
    path = run / "wal" / "run_commit.cborlog"
    frames = scan_frames(path.read_bytes()).frames
    path.write_bytes(encode_frame(frames[0].payload) + encode_frame(frames[2].payload))
    report = verify_run(run)
    artifact, detail = failing(report)["wal.records"]
    assert artifact == "wal/run_commit.cborlog" and "[SEQ_GAP]" in detail
    assert first_failure(report) == "wal.records"
    assert exit_code(report) == 18
    assert statuses(report)["wal.committed"] == "SKIP"


def test_uncommitted_wal_fails_wal(run: Path) -> None:
    path = run / "wal" / "run_commit.cborlog"
    frames = scan_frames(path.read_bytes()).frames
    path.write_bytes(b"".join(encode_frame(fr.payload) for fr in frames[:2]))
    assert "[POINTER_WITHOUT_FINALIZE]" in failing(verify_run(run))["wal.records"][1]


def test_committed_edited_fails_wal(run: Path) -> None:
    path = run / "COMMITTED"
    pointer = CommitPointer.from_obj(decode(path.read_bytes()))
    path.write_bytes(encode(dataclasses.replace(pointer, lineage_root_hash=bytes(32)).to_obj()))
    report = verify_run(run)
    assert_only_fails(report, "wal.committed")
    artifact, detail = failing(report)["wal.committed"]
    assert artifact == "COMMITTED" and "[POINTER_MISMATCH]" in detail


# --- 9. bindings --------------------------------------------------------------------------------


def test_manifest_hash_mismatch_fails_bindings(run: Path) -> None:
    resign(run, manifest_hash=bytes(32))
    report = verify_run(run)
    assert statuses(report)["certificate.signature"] == "PASS"  # a trusted key signed it
    artifact, detail = failing(report)["bindings.manifest"]
    assert artifact == "execution_certificate.cbor" and "manifest_hash" in detail
    # The other artifacts name the certificate the run really made.
    assert {"trace.certificate", "wal.finalize"} <= set(failing(report))


def test_foreign_registry_root_fails_bindings_naming_both(run: Path) -> None:
    from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH

    other = bytes(range(32))
    resign(run, operator_contracts_root_hash=other)
    detail = failing(verify_run(run))["bindings.registry"][1]
    assert other.hex() in detail and OPERATOR_REGISTRY_ROOT_HASH.hex() in detail


def test_wrong_step_range_fails_bindings(run: Path) -> None:
    resign(run, step_end=20)
    report = verify_run(run)
    assert "step_end" in failing(report)["bindings.steps"][1]
    # The trace's CERTIFICATE_INPUTS committed to the real range: the first failure is there.
    assert first_failure(report) == "trace.certificate"
    assert exit_code(report) == 15


def test_wrong_data_identity_fails_bindings(run: Path) -> None:
    resign(run, dataset_snapshot_id="00" * 32)
    assert "dataset_snapshot_id" in failing(verify_run(run))["bindings.data"][1]


# --- property: random byte flips anywhere are caught, and verify writes nothing -----------------

# run.json is a derived summary that verify never reads (docs/formats/run-directory.md).
NOT_EVIDENCE = {"run.json"}
MIN_FLIPS = 200


def _names(report: VerifyReport, rel: str) -> bool:
    return any(s.status == "FAIL" and (s.artifact == rel or rel in s.detail) for s in report.steps)


def test_random_byte_flips_fail_and_name_the_artifact(run: Path) -> None:
    files = sorted(
        p.relative_to(run).as_posix()
        for p in run.rglob("*")
        if p.is_file() and p.relative_to(run).as_posix() not in NOT_EVIDENCE
    )
    per_file = math.ceil(MIN_FLIPS / len(files)) + 1  # one spare: two flips may cancel
    rng = random.Random(20240611)
    listing = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    manifest_hash = loads_manifest((run / "manifest.yaml").read_text()).manifest_hash
    flips = 0
    for rel in files:
        path = run / rel
        original = path.read_bytes()
        for _ in range(per_file):
            data = bytearray(original)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= rng.randint(1, 255)
            flipped = bytes(data)
            if flipped == original:
                continue
            path.write_bytes(flipped)
            report = verify_run(run)
            flips += 1
            assert path.read_bytes() == flipped, rel
            assert all("internal error" not in s.detail for s in report.steps), failing(report)
            if rel == "manifest.yaml" and _inert(flipped, manifest_hash):
                # YAML comments and layout are not committed; the normalized manifest is.
                assert report.verdict == "PASS", failing(report)
                continue
            assert report.verdict == "FAIL", (rel, flipped)
            assert _names(report, rel), (rel, failing(report))
        path.write_bytes(original)
    assert flips >= MIN_FLIPS
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == listing


def _inert(data: bytes, manifest_hash: bytes) -> bool:
    try:
        return loads_manifest(data.decode("utf-8")).manifest_hash == manifest_hash
    except (Error, UnicodeDecodeError):
        return False
