"""Every parser of untrusted input either returns a valid typed value or raises a
:class:`umlos.errors.Error` — never another exception, never a hang — and never accepts
damaged evidence.

Parsers: manifest YAML (``loads_manifest``), model IR (``parse_ir`` + ``validate_ir``),
canonical CBOR (``decode``), trace (``read_trace``), journal (``read_journal``), WAL
(``read_wal``, ``recover``), checkpoint (``verify_checkpoint``), certificate
(``verify_certificate``) and the contract set (``contracts.check``).

Inputs are bounded and come in three families per parser: random bytes or text; random
mutations of the real artifacts of one committed run (tests/proof/conftest.py); and
structure-aware mutations that get past the outer checks — records decoded, a field replaced,
re-encoded and re-framed with a valid CRC; a checkpoint header re-hashed; a certificate payload
re-signed with the run's own key; manifest and IR documents with one node replaced.

Oracles beyond "typed error": a decoded CBOR value re-encodes to the input; an accepted trace is
the original trace; an accepted journal or WAL is a prefix of the original (neither has an end
marker); an accepted checkpoint is the original checkpoint; an accepted certificate that was not
re-signed is the original, and a re-signed one still names this run.

Budget: ``UMLOS_FUZZ_EXAMPLES`` multiplies every test's example count (default 1: about 15 s in
all on a 2-core machine). Hypothesis is derandomized, so a given multiplier always tests the
same inputs. A hang shows as :class:`Hang` after ``HANG_SECONDS`` (a watchdog for endless
loops, not a performance assertion: no bounded input comes near it).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CONTRACTS
from tests.proof.conftest import CommittedRun
from umlos._generated.records import (
    CheckpointHeader,
    ExecutionCertificate,
    JournalEntry,
    Manifest,
    TrustReport,
    WalRecord,
    WalRecoveryReport,
    wal_record_from_obj,
)
from umlos.codec import decode, encode
from umlos.contracts import CheckResult, check
from umlos.errors import Error
from umlos.evidence._frames import encode_frame, scan_frames
from umlos.evidence.certificate import verify_certificate
from umlos.evidence.checkpoint import header_hash, verify_checkpoint
from umlos.evidence.journal import read_journal
from umlos.evidence.keys import load_signing_key
from umlos.evidence.trace import read_trace
from umlos.evidence.wal import read_wal, recover, wal_path
from umlos.manifest import EXAMPLE_MANIFEST, LoadedManifest, loads_manifest
from umlos.model.ir import ValidatedIR, parse_ir, validate_ir
from umlos.train.run import model_ir

MULTIPLIER: Final = max(1, int(os.environ.get("UMLOS_FUZZ_EXAMPLES", "1")))
HANG_SECONDS: Final = 60


def fuzz(examples: int) -> settings:
    """``examples`` × UMLOS_FUZZ_EXAMPLES derandomized examples, no deadline, no database."""
    return settings(
        max_examples=examples * MULTIPLIER,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


class Hang(BaseException):  # not an Exception: no `except Exception` may swallow it
    """A parser ran for HANG_SECONDS on a bounded input."""


@contextlib.contextmanager
def watchdog() -> Iterator[None]:
    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"no result after {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


T = TypeVar("T")


def attempt(parse: Callable[[], T]) -> T | None:
    """The parser's value, or None when it raised a umlos Error; anything else propagates."""
    with watchdog():
        try:
            return parse()
        except Error:
            return None


# --- generic strategies ---------------------------------------------------------------------

_INTS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_INTERESTING_BYTES: Final = (
    0x00,
    0x01,
    0x17,
    0x18,
    0x1B,
    0x1F,
    0x3F,
    0x5F,
    0x7F,
    0x9F,
    0xBF,
    0xF4,
    0xF7,
    0xFB,
    0xFF,
)


@st.composite
def byte_mutation(draw: st.DrawFn, seeds: list[bytes], max_edits: int = 4) -> bytes:
    """One of ``seeds`` with 1..max_edits edits: bit flip, byte set, insert, delete,
    duplicate a slice, truncate."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from(_INTERESTING_BYTES) | st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _encoded(obj: Any, fallback: bytes) -> bytes:
    """``encode(obj)``, or ``fallback`` when the edit made it unencodable (an int above 2^64-1):
    strategies must never raise, or Hypothesis cannot replay them."""
    try:
        return encode(obj)
    except Error:
        return fallback


def _decoded(data: bytes) -> Any:
    try:
        return decode(data)
    except Error:
        return None


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k in sorted(value, key=repr):
            out += _paths(value[k], (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def value_mutation(draw: st.DrawFn, original: Any, max_edits: int = 2) -> Any:
    """A deep copy of ``original`` (decoded CBOR / parsed YAML) with 1..max_edits node edits:
    replace by a random value, flip a bit of a byte string (a hash that still has the right
    type), nudge an integer, delete a map key, add one, or drop a list item."""
    doc = decode(encode(original)) if not isinstance(original, str) else original
    for _ in range(draw(st.integers(1, max_edits))):
        path = draw(st.sampled_from(_paths(doc)))
        node = _get(doc, path)
        op = draw(st.sampled_from(["replace", "bits", "nudge", "delete", "add"]))
        if op == "bits" and isinstance(node, bytes) and node:
            i = draw(st.integers(0, len(node) * 8 - 1))
            new: Any = bytes(b ^ (1 << (i % 8)) if j == i // 8 else b for j, b in enumerate(node))
        elif op == "nudge" and isinstance(node, int) and not isinstance(node, bool):
            new = node + draw(st.sampled_from([-1, 1, 2**32, -(2**32)]))
        elif op == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
            continue
        elif op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=12))] = copy.deepcopy(draw(VALUES))
            continue
        else:
            new = copy.deepcopy(draw(VALUES))  # later edits must not touch drawn objects
        if not path:
            doc = new
        else:
            _get(doc, path[:-1])[path[-1]] = new
    return doc


@st.composite
def reframed(draw: st.DrawFn, payloads: list[bytes]) -> bytes:
    """A framed log whose frames all carry valid CRCs, so the damage reaches the record
    checks: records edited (structurally or byte-wise), dropped, duplicated, swapped or added."""
    frames = list(payloads)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["edit", "edit", "bytes", "drop", "dup", "swap", "add"]))
        i = draw(st.integers(0, max(len(frames) - 1, 0)))
        if op == "edit" and frames and (record := _decoded(frames[i])) is not None:
            frames[i] = _encoded(draw(value_mutation(record)), frames[i])
        elif op == "bytes" and frames:
            frames[i] = draw(byte_mutation([frames[i]]))
        elif op == "drop" and frames:
            del frames[i]
        elif op == "dup" and frames:
            frames.insert(draw(st.integers(0, len(frames))), frames[i])
        elif op == "swap" and len(frames) > 1:
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == "add":
            frames.insert(i, _encoded(draw(VALUES), b"\xa0"))
    return b"".join(encode_frame(p) for p in frames)


# --- the corpus: one committed run -----------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    run: CommittedRun
    trace: bytes
    journal: bytes
    wal: bytes
    certificate: bytes
    checkpoint: Path  # the final checkpoint directory of the pristine run
    cbor_files: tuple[bytes, ...]  # every canonical CBOR file and record payload of the run
    manifest_yaml: str


def _payloads(log: bytes) -> list[bytes]:
    return [f.payload for f in scan_frames(log).frames]


@pytest.fixture(scope="module")
def corpus(committed_run: CommittedRun) -> Corpus:
    root = committed_run.root
    trace = (root / "trace/trace.cborlog").read_bytes()
    journal = (root / "journal/journal.cborlog").read_bytes()
    wal = wal_path(root).read_bytes()
    cbor = [p.read_bytes() for p in sorted(root.rglob("*.cbor"))]
    cbor += [(root / "COMMITTED").read_bytes(), *_payloads(trace), *_payloads(journal)]
    cbor += _payloads(wal)
    steps = sorted(p for p in (root / "checkpoints").iterdir() if p.is_dir())
    return Corpus(
        run=committed_run,
        trace=trace,
        journal=journal,
        wal=wal,
        certificate=(root / "execution_certificate.cbor").read_bytes(),
        checkpoint=steps[-1],
        cbor_files=tuple(cbor),
        manifest_yaml=(root / "manifest.yaml").read_text(),
    )


# --- canonical CBOR ---------------------------------------------------------------------------


@st.composite
def cbor_tokens(draw: st.DrawFn) -> bytes:
    """A random stream of CBOR heads (every major type and argument width, indefinite markers,
    break, huge declared lengths) with short random contents: grammar-shaped garbage."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 24))):
        major = draw(st.integers(0, 7))
        info = draw(st.sampled_from([*range(24), 24, 25, 26, 27, 28, 31]))
        out.append(major << 5 | info)
        if 24 <= info <= 27:
            width = 1 << (info - 24)
            out += draw(st.integers(0, 256**width - 1) | st.just(256**width - 1)).to_bytes(
                width, "big"
            )
        if major in (2, 3) and draw(st.booleans()):
            out += draw(st.binary(max_size=8))
    return bytes(out)


def _check_cbor(data: bytes) -> None:
    value = attempt(lambda: decode(data))
    if value is not None:
        assert encode(value) == data, data.hex()  # accepted ⇒ canonical: re-encodes to itself


@fuzz(300)
@given(data=st.data())
def test_cbor_decode(corpus: Corpus, data: st.DataObject) -> None:
    family = data.draw(st.sampled_from(["bytes", "tokens", "mutated", "edited"]))
    if family == "bytes":
        source = data.draw(st.binary(max_size=256))
    elif family == "tokens":
        source = data.draw(cbor_tokens())
    elif family == "mutated":
        source = data.draw(byte_mutation(list(corpus.cbor_files)))
    else:
        seed = data.draw(st.sampled_from(corpus.cbor_files))
        source = _encoded(data.draw(value_mutation(decode(seed))), seed)
    _check_cbor(source)


# --- trace, journal, WAL ----------------------------------------------------------------------


def _draw_log(data: st.DataObject, original: bytes) -> bytes:
    """Random bytes, byte-level damage (mostly stopped by the CRCs), or re-framed edits."""
    family = data.draw(st.sampled_from(["bytes", "mutated", "reframed"]))
    if family == "bytes":
        return data.draw(st.binary(max_size=512))
    if family == "mutated":
        return data.draw(byte_mutation([original]))
    return data.draw(reframed(_payloads(original)))


@fuzz(200)
@given(data=st.data())
def test_trace_reader(corpus: Corpus, data: st.DataObject) -> None:
    source = _draw_log(data, corpus.trace)
    result = attempt(lambda: read_trace(source))
    if result is not None:
        assert source == corpus.trace  # the chain binds every record: nothing else passes


@fuzz(200)
@given(data=st.data())
def test_journal_reader(corpus: Corpus, data: st.DataObject) -> None:
    source = _draw_log(data, corpus.journal)
    result = attempt(lambda: read_journal(source))
    if result is not None:
        original = [JournalEntry.from_obj(decode(p)) for p in _payloads(corpus.journal)]
        assert list(result.entries) == original[: len(result.entries)]


def _wal_records(data: bytes) -> list[WalRecord]:
    return [wal_record_from_obj(decode(p)) for p in _payloads(data)]


@fuzz(200)
@given(data=st.data())
def test_wal_reader(corpus: Corpus, data: st.DataObject) -> None:
    source = _draw_log(data, corpus.wal)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run_commit.cborlog"
        path.write_bytes(source)
        records = attempt(lambda: read_wal(path))
    if records is not None:
        assert list(records) == _wal_records(corpus.wal)[: len(records)]


@fuzz(60)
@given(data=st.data())
def test_wal_recover(corpus: Corpus, data: st.DataObject) -> None:
    source = _draw_log(data, corpus.wal)
    with_pointer = data.draw(st.booleans())
    run = corpus.run
    final = _wal_records(corpus.wal)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / run.run_id
        wal_path(run_dir).parent.mkdir(parents=True)
        wal_path(run_dir).write_bytes(source)
        if with_pointer:
            shutil.copyfile(run.root / "COMMITTED", run_dir / "COMMITTED")
        report = attempt(
            lambda: recover(
                run_dir,
                tenant_id=run.tenant_id,
                run_id=run.run_id,
                artifact_hash=lambda name: getattr(final, name),
                remove_tmp=lambda _name, _hash: None,
            )
        )
        if report is None:
            assert wal_path(run_dir).read_bytes() == source  # an abort changes nothing
            return
        assert isinstance(report, WalRecoveryReport)
        # Recovery leaves a log that reads strictly and ends where the report says.
        records = read_wal(wal_path(run_dir), tenant_id=run.tenant_id, run_id=run.run_id)
    if report.commit_status == "EMPTY":
        assert records == ()
    else:
        assert records[-1].record_type == (
            "FINALIZE" if report.commit_status == "COMMITTED" else "ROLLBACK"
        )
        assert records[-1].record_hash == report.terminal_record_hash


# --- checkpoint -------------------------------------------------------------------------------

_CHECKPOINT_RECORDS: Final = (
    "checkpoint_header.cbor",
    "checkpoint_manifest.cbor",
    "state/training_state.cbor",
    "trace/link.cbor",
    "tmmu/plan.cbor",
)


@pytest.fixture(scope="module")
def checkpoint_copy(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fuzz-checkpoint") / corpus.checkpoint.name
    shutil.copytree(corpus.checkpoint, dest)
    return dest


@st.composite
def rehashed_header(draw: st.DrawFn, original: bytes) -> bytes:
    """A header with fields edited and checkpoint_header_hash recomputed when it still
    validates, so the damage reaches the manifest, root, commitment and binding checks."""
    obj = draw(value_mutation(decode(original)))
    try:
        header = CheckpointHeader.from_obj(obj)
    except Error:
        return _encoded(obj, original)
    return encode({**header.to_obj(), "checkpoint_header_hash": header_hash(header)})


@fuzz(150)
@given(data=st.data())
def test_checkpoint_verifier(corpus: Corpus, checkpoint_copy: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(_CHECKPOINT_RECORDS))
    original = (corpus.checkpoint / rel).read_bytes()
    families = (
        ["bytes", "edited", "rehashed"] if rel == "checkpoint_header.cbor" else ["bytes", "edited"]
    )
    family = data.draw(st.sampled_from(families))
    if family == "bytes":
        damaged = data.draw(byte_mutation([original]))
    elif family == "edited":
        damaged = _encoded(data.draw(value_mutation(decode(original))), original)
    else:
        damaged = data.draw(rehashed_header(original))
    target = checkpoint_copy / rel
    target.write_bytes(damaged)
    try:
        verified = attempt(lambda: verify_checkpoint(checkpoint_copy))
    finally:
        target.write_bytes(original)
    if verified is not None:
        assert damaged == original, rel


# --- certificate ------------------------------------------------------------------------------


@st.composite
def resigned(draw: st.DrawFn, original: bytes) -> bytes:
    """A certificate whose payload was edited and signed again with the run's own key (the
    verifier trusts it), so the damage reaches the field, expiry, revocation and policy steps."""
    cert = decode(original)
    assert isinstance(cert, dict)
    payload = _encoded(draw(value_mutation(cert["signed_payload"])), b"")
    signature = load_signing_key().sign(payload)
    return b"\xa2" + encode("signature") + encode(signature) + encode("signed_payload") + payload


@fuzz(150)
@given(data=st.data())
def test_certificate_verifier(corpus: Corpus, data: st.DataObject) -> None:
    run = corpus.run
    original = ExecutionCertificate.from_obj(decode(corpus.certificate)).signed_payload
    expected = {
        "tenant_id": original.tenant_id,
        "run_id": original.run_id,
        "replay_token": original.replay_token,
    }
    signed_again = data.draw(st.booleans())
    if signed_again:
        source = data.draw(resigned(corpus.certificate))
    elif data.draw(st.booleans()):
        source = data.draw(st.binary(max_size=256))
    else:
        source = data.draw(byte_mutation([corpus.certificate]))
    report = attempt(
        lambda: verify_certificate(source, run.trust_store, run.revocations, expected=expected)
    )
    if report is None:
        return
    assert isinstance(report, TrustReport) and report.verdict == "VALID"
    if not signed_again:
        assert source == corpus.certificate
    payload = ExecutionCertificate.from_obj(decode(source)).signed_payload
    assert (payload.tenant_id, payload.run_id, payload.replay_token) == tuple(expected.values())


# --- manifest YAML ----------------------------------------------------------------------------

_YAML_CHARS: Final = ":{}[],&*!|>-#'\"\n \t?%@`0123456789.eE+xyzabc"


@st.composite
def text_mutation(draw: st.DrawFn, seeds: list[str], max_edits: int = 4) -> str:
    text = draw(st.sampled_from(seeds))
    alphabet = st.sampled_from(_YAML_CHARS) | st.characters()
    for _ in range(draw(st.integers(1, max_edits))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup"]))
        if op == "insert":
            text = text[:pos] + draw(st.text(alphabet, min_size=1, max_size=8)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 16)) :]
        elif op == "replace":
            text = text[:pos] + draw(alphabet) + text[pos + 1 :]
        else:
            text = text[:pos] + text[pos : pos + draw(st.integers(1, 64))] + text[pos:]
    return text


def _check_manifest(text: str) -> None:
    loaded = attempt(lambda: loads_manifest(text, source="fuzz.yaml", base_dir="."))
    if loaded is not None:
        assert isinstance(loaded, LoadedManifest)
        Manifest.from_obj(loaded.manifest.to_obj())  # the normalized manifest is itself valid
        assert loaded.manifest_hash == hashlib.sha256(encode(loaded.manifest.to_obj())).digest()


@fuzz(150)
@given(data=st.data())
def test_manifest_yaml_text(corpus: Corpus, data: st.DataObject) -> None:
    seeds = [EXAMPLE_MANIFEST, corpus.manifest_yaml]
    if data.draw(st.booleans()):
        _check_manifest(data.draw(st.text(max_size=300)))
    else:
        _check_manifest(data.draw(text_mutation(seeds)))


@fuzz(150)
@given(data=st.data())
def test_manifest_yaml_structure(corpus: Corpus, data: st.DataObject) -> None:
    doc = yaml.safe_load(data.draw(st.sampled_from([EXAMPLE_MANIFEST, corpus.manifest_yaml])))
    mutated = data.draw(value_mutation(doc, max_edits=3))
    try:
        text = yaml.safe_dump(mutated, sort_keys=False)
    except (yaml.YAMLError, ValueError):  # a value PyYAML cannot write: not an input
        return
    _check_manifest(text)


# --- model IR ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ir_seeds(corpus: Corpus) -> list[dict[str, Any]]:
    manifest = Manifest.from_obj(decode((corpus.run.root / "manifest.cbor").read_bytes()))
    seeds = [model_ir(manifest, "float32").to_obj()]
    for preset, params in (
        ("basic_cnn", "{in_channels: 1, height: 8, width: 8, out_features: 10}"),
        (
            "tiny_transformer",
            "{vocab_size: 256, seq_len: 8, d_model: 8, heads: 2, layers: 1, ffn_dim: 16, "
            "causal: true, out_features: 256}",
        ),
    ):
        text = EXAMPLE_MANIFEST.replace(
            "  preset: mlp\n  preset_params: {in_features: 4, hidden_sizes: [16], out_features: 3}",
            f"  preset: {preset}\n  preset_params: {params}",
        )
        seeds.append(model_ir(loads_manifest(text).manifest, "float32").to_obj())
    return seeds


def _check_ir(obj: Any, *, json: bool) -> None:
    def parse() -> ValidatedIR:
        return validate_ir(parse_ir(obj, json=json))

    validated = attempt(parse)
    if validated is not None:
        assert isinstance(validated, ValidatedIR)


@fuzz(200)
@given(data=st.data())
def test_model_ir(ir_seeds: list[dict[str, Any]], data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        obj = data.draw(value_mutation(data.draw(st.sampled_from(ir_seeds)), max_edits=3))
    else:
        obj = data.draw(VALUES)
    _check_ir(obj, json=data.draw(st.booleans()))


# --- contract set -----------------------------------------------------------------------------

CONTRACT_FILES: Final = sorted(
    p.relative_to(CONTRACTS).as_posix() for p in CONTRACTS.rglob("*.yaml")
)


@pytest.fixture(scope="module")
def contracts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-contracts") / "contracts"
    shutil.copytree(CONTRACTS, root)
    return root


@fuzz(15)
@given(data=st.data())
def test_contract_set(contracts_root: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(CONTRACT_FILES))
    original = (CONTRACTS / rel).read_bytes()
    damaged = data.draw(byte_mutation([original]))
    (contracts_root / rel).write_bytes(damaged)
    try:
        result = attempt(lambda: check(contracts_root))
    finally:
        (contracts_root / rel).write_bytes(original)
    if result is not None:
        assert isinstance(result, CheckResult)
        assert result.ok or result.issues


# --- regressions found while fuzzing (fixed in umlos._yaml.loads_yaml) ---------------------------

_DEEP_FLOW_MAP: Final = "a: " + "{b: " * 1000 + "1" + "}" * 1000
_HUGE_INT: Final = "seed: " + "1" * 4301  # CPython refuses int("…") above 4300 digits


def test_regression_manifest_with_deeply_nested_mappings_is_a_typed_error() -> None:
    with pytest.raises(Error):
        loads_manifest(_DEEP_FLOW_MAP)


def test_regression_manifest_with_a_huge_integer_literal_is_a_typed_error() -> None:
    with pytest.raises(Error):
        loads_manifest(_HUGE_INT)


def test_regression_manifest_text_with_a_lone_surrogate_is_a_typed_error() -> None:
    with pytest.raises(Error):
        loads_manifest("tenant_id: \ud800\n")


@pytest.mark.parametrize("tail", [_DEEP_FLOW_MAP, _HUGE_INT], ids=["deep", "huge-int"])
def test_regression_contract_file_that_yaml_cannot_construct_is_an_issue(
    contracts_root: Path, tail: str
) -> None:
    rel = "schemas/wal.yaml"
    original = (CONTRACTS / rel).read_text()
    (contracts_root / rel).write_text(original + "\nx-fuzz-" + tail + "\n")
    try:
        result = check(contracts_root)
    finally:
        (contracts_root / rel).write_text(original)
    assert not result.ok and result.issues
