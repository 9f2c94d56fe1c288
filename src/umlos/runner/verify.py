"""``umlos verify RUN_DIR``: check a committed run directory offline, as a numbered procedure.

:func:`verify_run` reads the run directory (docs/formats/run-directory.md) and nothing else but
the verifier's trust store; it never writes, deletes or renames anything there (files are opened
read-only), never reads the clock and never touches the network. Every step below runs and is
reported, in this order, as a :class:`~umlos._generated.records.VerifyStepResult`:

* **PASS** — everything the step checks holds.
* **FAIL** — something it checks is wrong; ``code_id`` is the error catalogue code, ``artifact``
  the file at fault (relative to the run directory), ``detail`` what differs.
* **SKIP** — it found nothing wrong but could not finish, because an earlier step that
  establishes one of its references (the manifest, the recomputed identity, the verified
  certificate, the parsed trace …) failed. Steps that do not depend on a failed one still run, so
  one report shows every problem.

====  ========================  ==========================================  ====================  ====
 no   step_id                   checks                                      artifact              exit
====  ========================  ==========================================  ====================  ====
  1   layout.required           every file of a committed run is present    (the directory)        11
  2   layout.unexpected         nothing else is there (see "Layout")        (the directory)        11
  3   manifest.canonical        strict CBOR, Manifest schema, normalized    manifest.cbor          12
  4   manifest.source           manifest.yaml normalizes to manifest.cbor   manifest.yaml          12
  5   environment.schema        strict CBOR, EnvironmentManifest schema     environment.cbor       13
  6   environment.identity      replay_token, run_id = directory name       environment.cbor       13
  7   certificate.signature     verify_certificate, verifier's trust store  execution_certificate  14
  8   certificate.trust_store   trust_store.cbor is the one signed for      trust_store.cbor       14
  9   trace.read                read_trace, manifest's sampling policy      trace/trace.cborlog    15
 10   trace.header              RUN_HEADER binds identity, env, policy      trace/trace.cborlog    15
 11   trace.certificate         final hash, CERTIFICATE_INPUTS = cert's     trace/trace.cborlog    15
 12   journal.read              read_journal                                journal/…cborlog       16
 13   journal.trace             entries link into the trace, t = 1..T       journal/…cborlog       16
 14   checkpoints.verify        verify_checkpoint each; t, prev-hash chain  checkpoints/           17
 15   checkpoints.pointers      each ``.committed`` names its checkpoint    checkpoints/           17
 16   checkpoints.trace         CHECKPOINT_COMMIT records, one per dir      checkpoints/           17
 17   checkpoints.journal       trace links' journal counts and hashes      checkpoints/           17
 18   checkpoints.final         last checkpoint = certificate's, at T       checkpoints/           17
 19   wal.records               read_wal: PREPARE, CERT_SIGNED, FINALIZE    wal/run_commit.cborlog 18
 20   wal.finalize              record hashes = cert, trace, ckpt, manifest wal/run_commit.cborlog 18
 21   wal.committed             COMMITTED = pointer_for(FINALIZE), bytes    COMMITTED              18
 22   bindings.manifest         manifest_hash, policy_bundle_hash           execution_certificate  19
 23   bindings.model            ir_hash, tmmu_plan_hash (recomputed)        execution_certificate  19
 24   bindings.data             snapshot, sampler, access plan, lineage     execution_certificate  19
 25   bindings.registry         operator_contracts_root_hash = this code's  execution_certificate  19
 26   bindings.environment      profile, backend, toolchain, deps lock      execution_certificate  19
 27   bindings.checkpoints      every header binds the certificate's values checkpoints/           19
 28   bindings.steps            step range = final t of trace/journal/ckpt  execution_certificate  19
====  ========================  ==========================================  ====================  ====

Exit codes (for the CLI; :func:`exit_code`): 0 when every step passes, else ``10 + group`` of the
first failing step, the group being the step's first id segment (layout 1, manifest 2,
environment 3, certificate 4, trace 5, journal 6, checkpoints 7, wal 8, bindings 9).

Layout (step 2). A committed run holds exactly the files :class:`~umlos.runner._layout.RunLayout`
names, the v1 checkpoint file set under ``checkpoints/<t:020d>/`` and ``<t:020d>.committed``
pointers; ``run.json`` is allowed (a derived summary: never read, never trusted). Anything else —
an extra file, a link, a directory where a file belongs — fails, with three exceptions that the
runner itself leaves behind after a crash and that no commitment covers: ``.COMMITTED.*.tmp``
(an interrupted pointer publish), ``checkpoints/.<t>.invalid/`` (a damaged checkpoint set aside
for audit) and ``checkpoints/.<t>.committed.tmp`` (an interrupted checkpoint-pointer publish).
They are named in the step's detail. A checkpoint directory without its pointer is accepted (a
crash between rename and publish, after which resume restores from it) when the trace commits it.

The certificate is verified against the *verifier's* trust store (``trust_store`` argument, else
:func:`umlos.evidence.keys.trust_store`), never the run's ``trust_store.cbor``: that file only
says whom the signer claims to be (step 8 checks it is the store the certificate names).

>>> import os, tempfile
>>> os.environ["UMLOS_HOME"] = tempfile.mkdtemp()
>>> report = verify_run(tempfile.mkdtemp())  # an empty directory is not a run
>>> report.verdict, report.steps[0].step_id, report.steps[0].status, exit_code(report)
('FAIL', 'layout.required', 'FAIL', 11)
>>> del os.environ["UMLOS_HOME"]
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from umlos._generated import tags
from umlos._generated.records import (
    CertificateInputs,
    CheckpointHeader,
    CheckpointManifest,
    CheckpointTraceLink,
    EnvironmentManifest,
    ExecutionCertificate,
    ExecutionCertificatePayload,
    Manifest,
    RevocationBundle,
    TraceCertificateInputs,
    TraceCheckpointCommit,
    TrustStore,
    VerifyReport,
    VerifyStepResult,
    WalCertSigned,
    WalFinalize,
    WalPrepare,
    WalRecord,
)
from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH
from umlos.codec import commit_hash, decode, digest, encode
from umlos.errors import (
    CheckpointInvalidError,
    ContractViolationError,
    Error,
    SignatureMismatchError,
    TraceSchemaInvalidError,
    WalCorruptionError,
)
from umlos.evidence import checkpoint as ckpt
from umlos.evidence.certificate import (
    MAX_CERTIFICATE_BYTES,
    certificate_hash,
    certificate_inputs_hash,
    verify_certificate,
)
from umlos.evidence.journal import GENESIS_LINK_HASH, JournalReadResult, read_journal
from umlos.evidence.keys import key_id
from umlos.evidence.keys import trust_store as user_trust_store
from umlos.evidence.trace import TraceReadResult, read_trace, sampling_policy
from umlos.evidence.wal import pointer_for, read_wal
from umlos.manifest import loads_manifest, normalize, policy_bundle_hash, replay_token, run_id
from umlos.model.ir import validate_ir
from umlos.model.tmmu import plan_memory
from umlos.runner._identities import data_identities
from umlos.runner._layout import RunLayout
from umlos.train.run import model_ir

__all__ = [
    "EXIT_OK",
    "STEPS",
    "StepInfo",
    "exit_code",
    "failed_step",
    "verify_run",
]

# --- limits: files read whole are refused above these sizes, unread -------------------------

# A manifest may embed a custom IR; the bound is the one checkpoint record files have.
MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024
# Twelve short fields (about 500 bytes); far larger is not an EnvironmentManifest.
MAX_ENVIRONMENT_BYTES: Final = 64 * 1024
# A local trust store is one 32-byte key; a revocation bundle of a pinned offline mode is tiny.
# 1 MiB leaves room for thousands of roots or captured CRL/OCSP blobs.
MAX_TRUST_FILE_BYTES: Final = 1024 * 1024
# A COMMITTED pointer is seven short fields (< 300 bytes), as in umlos.evidence.wal.
MAX_POINTER_BYTES: Final = 4096

EXIT_OK: Final = 0
"""Exit status when every step passes; a failure exits ``10 + group`` (:func:`exit_code`)."""

_GROUPS: Final = (
    "layout",
    "manifest",
    "environment",
    "certificate",
    "trace",
    "journal",
    "checkpoints",
    "wal",
    "bindings",
)
# Signed-payload fields that CertificateInputs does not carry (spec evidence §12.11).
_SIGNATURE_CONTEXT: Final = frozenset(
    {
        "trace_final_hash",
        "key_id",
        "signature_algorithm",
        "verification_time_utc",
        "valid_until_utc",
    }
)
# Checkpoint header fields that repeat a run-level value the certificate also signs.
_HEADER_BINDINGS: Final = (
    "tenant_id",
    "run_id",
    "replay_token",
    "manifest_hash",
    "ir_hash",
    "sampler_config_hash",
    "data_access_plan_hash",
    "tmmu_plan_hash",
    "backend_binary_hash",
    "policy_bundle_hash",
    "determinism_profile_hash",
    "lockfile_hash",
    "toolchain_hash",
    "dependencies_lock_hash",
    "operator_contracts_root_hash",
    "lineage_root_hash",
)
_IN: Final = RunLayout(Path())  # the run's files, relative to its directory
_REQUIRED: Final = tuple(
    p.as_posix()
    for p in (
        _IN.manifest_source,
        _IN.manifest_normalized,
        _IN.environment,
        _IN.certificate,
        _IN.revocations,
        _IN.trust_store,
        _IN.trace,
        _IN.journal,
        _IN.wal,
        _IN.committed,
    )
)
_OPTIONAL: Final = (_IN.summary.as_posix(),)  # run.json: derived, never read
_STEP_DIR: Final = re.compile(r"^[0-9]{20}$")
_POINTER_NAME: Final = re.compile(r"^[0-9]{20}\.committed$")
# Crash leftovers the runner can leave in a committed run (module docstring, "Layout").
_ROOT_LEFTOVER: Final = re.compile(r"^\.(COMMITTED\..+|run\.json)\.tmp$")
_CHECKPOINT_LEFTOVER_DIR: Final = re.compile(r"^\.[0-9]{20}\.invalid$")
_CHECKPOINT_LEFTOVER_FILE: Final = re.compile(r"^\.[0-9]{20}\.committed\.tmp$")
_CHECKPOINT_FILES: Final = frozenset(
    {
        ckpt.HEADER_FILE,
        ckpt.MANIFEST_FILE,
        ckpt.STATE_FILE,
        ckpt.PARAMS_FILE,
        ckpt.OPTIMIZER_FILE,
        ckpt.PLAN_FILE,
        ckpt.LINK_FILE,
        ckpt.ARTIFACT_INDEX_FILE,
    }
)
_CHECKPOINT_DIRS: Final = frozenset(
    p.as_posix() for f in _CHECKPOINT_FILES for p in Path(f).parents if p != Path(".")
)
_MAX_DETAIL: Final = 4096
_MAX_ARTIFACT: Final = 1024


# --- the procedure's table ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of the procedure: its number, stable id, title and the artifact it reads."""

    step_no: int
    step_id: str
    name: str
    artifact: str

    @property
    def group(self) -> int:
        """1-based position of the step's first id segment in the procedure's nine groups."""
        return _GROUPS.index(self.step_id.split(".")[0]) + 1

    @property
    def exit_code(self) -> int:
        """The CLI's exit status when this is the first failing step: ``10 + group``."""
        return 10 + self.group


_Check = Callable[["_Facts"], str]
_PROCEDURE: list[tuple[StepInfo, _Check]] = []


def _step(step_no: int, step_id: str, name: str, artifact: Path) -> Callable[[_Check], _Check]:
    """Label a check as step ``step_no`` of the procedure (steps are declared in order);
    ``artifact`` is what it reads (the directory itself for ``_IN.root``)."""

    def register(check: _Check) -> _Check:
        assert step_no == len(_PROCEDURE) + 1, f"step {step_id} declared out of order"
        rel = "" if artifact == _IN.root else artifact.as_posix()
        _PROCEDURE.append((StepInfo(step_no, step_id, name, rel), check))
        return check

    return register


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """The records of a verified checkpoint that later steps compare (not its tensor bytes:
    a run may hold many large checkpoints, and only one is in memory at a time)."""

    path: Path
    header: CheckpointHeader
    manifest: CheckpointManifest
    trace_link: CheckpointTraceLink


class _Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The step found nothing wrong but could not finish: a reference it needs is missing."""


@dataclass
class _Facts:
    """What the steps establish, for the steps after them. ``None``: not established (the step
    that establishes it failed or was skipped)."""

    root: Path
    trust_store: TrustStore | None
    manifest: Manifest | None = None
    manifest_bytes: bytes | None = None
    manifest_hash: bytes | None = None
    environment: EnvironmentManifest | None = None
    environment_hash: bytes | None = None
    replay_token: bytes | None = None
    run_id: str | None = None
    certificate: ExecutionCertificate | None = None  # verified (step 7 passed)
    certificate_hash: bytes | None = None
    readable_certificate_hash: bytes | None = None  # decodes, whether or not it verified
    trace: TraceReadResult | None = None
    final_t: int | None = None  # t of CERTIFICATE_INPUTS
    journal: JournalReadResult | None = None
    checkpoints: dict[int, _Checkpoint] | None = None  # every one verified
    wal: tuple[WalRecord, ...] | None = None

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @property
    def payload(self) -> ExecutionCertificatePayload | None:
        return self.certificate.signed_payload if self.certificate is not None else None

    @property
    def final_checkpoint(self) -> _Checkpoint | None:
        if not self.checkpoints:
            return None
        return self.checkpoints[max(self.checkpoints)]


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()[:16] + "…" if len(value) > 8 else value.hex()
    if value is None:
        return "absent"
    return repr(value)


class _Compare:
    """Equalities between a found value and a reference another step established.

    ``expected`` None means the reference is unknown (its step did not pass): the comparison is
    noted as not made, never assumed to hold. Mismatches raise ``error`` with every one listed.
    """

    def __init__(
        self,
        error: type[Error],
        artifact: str,
        reason: str | None = None,
    ) -> None:
        self.error = error
        self.artifact = artifact
        self.reason = reason
        self.mismatches: list[str] = []
        self.unknown: list[str] = []
        self.made = 0

    def eq(self, label: str, found: object, expected: object, source: str) -> None:
        if expected is None:
            self.unknown.append(f"{label} ({source} not established)")
            return
        self.made += 1
        if found != expected:
            self.mismatches.append(f"{label} is {_short(found)}, {source} says {_short(expected)}")

    def done(self, summary: str) -> str:
        if self.mismatches:
            raise self.error("; ".join(self.mismatches), reason=self.reason, artifact=self.artifact)
        if self.unknown:
            raise _Skip(f"{self.made} equalities hold; not compared: {', '.join(self.unknown)}")
        return f"{summary} ({self.made} equalities hold)"


def _need(**refs: object) -> None:
    """Skip the step unless every named reference was established."""
    missing = [name for name, value in refs.items() if value is None]
    if missing:
        raise _Skip(f"needs {', '.join(missing)}, which an earlier step did not establish")


def _read(f: _Facts, rel: str, limit: int) -> bytes:
    """The bytes of a regular file of the run (no link followed), at most ``limit`` of them."""
    path = f.root / rel
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ContractViolationError(f"{rel} is missing", artifact=rel) from None
    except OSError as exc:  # a link (ELOOP), a permission problem
        raise ContractViolationError(f"{rel} cannot be opened: {exc}", artifact=rel) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ContractViolationError(f"{rel} is not a regular file", artifact=rel)
        if info.st_size > limit:
            raise ContractViolationError(
                f"{rel} has {info.st_size} bytes, more than the {limit} it may have", artifact=rel
            )
        return fh.read(limit + 1)


def _step_dirs(f: _Facts) -> list[tuple[int, Path]]:
    root = f.root / _IN.checkpoints
    if not root.is_dir():
        return []
    names = sorted(e for e in os.listdir(root) if _STEP_DIR.match(e))
    return [(int(n), root / n) for n in names]


# --- 1. layout ------------------------------------------------------------------------------


@_step(1, "layout.required", "Required files present", _IN.root)
def _layout_required(f: _Facts) -> str:
    """1. Every file a committed run must hold is present and a regular file."""
    if not f.root.is_dir():
        raise ContractViolationError(f"{f.root} is not a directory", artifact="")
    missing: list[tuple[str, str]] = []  # (artifact, what is wrong)
    for rel in _REQUIRED:
        try:
            mode = os.lstat(f.root / rel).st_mode
        except FileNotFoundError:
            missing.append((rel, rel))
            continue
        if not stat.S_ISREG(mode):
            missing.append((rel, f"{rel} (not a regular file)"))
    steps = _step_dirs(f)
    if not steps:
        checkpoints = _IN.checkpoints.as_posix()
        missing.append((checkpoints, f"{checkpoints}/<t:020d>/ (no checkpoint)"))
    if missing:
        raise ContractViolationError(
            f"missing: {', '.join(text for _, text in missing)}", artifact=missing[0][0]
        )
    return f"{len(_REQUIRED)} files and {len(steps)} checkpoint directories present"


def _shown(rel: str) -> str:
    """A path as the report may carry it: printable UTF-8, else its ``ascii()`` form."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogate escapes)
        return ascii(rel)
    return rel if rel.isprintable() else ascii(rel)


def _entries(directory: Path) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every entry, sorted by UTF-8 bytes (links are not followed)."""
    names = sorted(os.listdir(directory), key=lambda n: n.encode("utf-8", "surrogateescape"))
    return [(n, os.lstat(directory / n)) for n in names]


@_step(2, "layout.unexpected", "No unexpected files", _IN.root)
def _layout_unexpected(f: _Facts) -> str:
    """2. Nothing else: no extra file, link or directory in the run or its evidence folders."""
    if not f.root.is_dir():
        raise _Skip("no run directory")
    expected_files = {*_REQUIRED, *_OPTIONAL}
    checkpoints = _IN.checkpoints.as_posix()
    evidence_dirs = {Path(rel).parent.as_posix() for rel in expected_files} - {"."}
    unexpected: list[str] = []
    leftovers: list[str] = []

    def walk_checkpoint(base: Path, inner: str) -> None:
        """One checkpoint directory: exactly the v1 files and their folders."""
        for name, info in _entries(base / inner):
            rel = f"{inner}{name}"
            if stat.S_ISDIR(info.st_mode) and rel in _CHECKPOINT_DIRS:
                walk_checkpoint(base, f"{rel}/")
            elif not (stat.S_ISREG(info.st_mode) and rel in _CHECKPOINT_FILES):
                unexpected.append(f"{f.rel(base)}/{rel}")

    for name, info in _entries(f.root):
        is_dir, is_file = stat.S_ISDIR(info.st_mode), stat.S_ISREG(info.st_mode)
        if is_file and name in expected_files:
            continue
        if is_file and _ROOT_LEFTOVER.match(name):
            leftovers.append(name)
        elif is_dir and name == checkpoints:
            for sub, sub_info in _entries(f.root / name):
                rel = f"{name}/{sub}"
                sub_dir, sub_file = stat.S_ISDIR(sub_info.st_mode), stat.S_ISREG(sub_info.st_mode)
                if sub_dir and _STEP_DIR.match(sub):
                    walk_checkpoint(f.root / rel, "")
                elif sub_file and _POINTER_NAME.match(sub):
                    continue
                elif (sub_dir and _CHECKPOINT_LEFTOVER_DIR.match(sub)) or (
                    sub_file and _CHECKPOINT_LEFTOVER_FILE.match(sub)
                ):
                    leftovers.append(rel)
                else:
                    unexpected.append(rel)
        elif is_dir and name in evidence_dirs:
            for sub, sub_info in _entries(f.root / name):
                rel = f"{name}/{sub}"
                if not (stat.S_ISREG(sub_info.st_mode) and rel in expected_files):
                    unexpected.append(rel)
        else:
            unexpected.append(name)
    if unexpected:
        names = [_shown(u) for u in unexpected]
        shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
        raise ContractViolationError(f"{len(names)} unexpected entries: {shown}", artifact=names[0])
    if leftovers:
        return (
            f"no unexpected entry; crash leftovers ignored (not evidence): {', '.join(leftovers)}"
        )
    return "no unexpected entry"


# --- 2. manifest ----------------------------------------------------------------------------


@_step(
    3, "manifest.canonical", "manifest.cbor canonical, valid, normalized", _IN.manifest_normalized
)
def _manifest_canonical(f: _Facts) -> str:
    """3. manifest.cbor: strict canonical CBOR, a valid Manifest, already normalized."""
    rel = _IN.manifest_normalized.as_posix()
    data = _read(f, rel, MAX_MANIFEST_BYTES)
    manifest = normalize(Manifest.from_obj(decode(data)))
    if encode(manifest.to_obj()) != data:
        raise ContractViolationError(
            "manifest.cbor is not the normalized form of the manifest it holds", artifact=rel
        )
    f.manifest, f.manifest_bytes = manifest, data
    f.manifest_hash = hashlib.sha256(data).digest()  # = Digest(manifest): the decode was strict
    return f"manifest_hash {f.manifest_hash.hex()}"


@_step(4, "manifest.source", "manifest.yaml normalizes to manifest.cbor", _IN.manifest_source)
def _manifest_source(f: _Facts) -> str:
    """4. manifest.yaml (the user's file) normalizes to exactly manifest.cbor."""
    rel = _IN.manifest_source.as_posix()
    data = _read(f, rel, MAX_MANIFEST_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolationError(
            f"manifest.yaml is not UTF-8: {exc.reason}", artifact=rel, offset=exc.start
        ) from exc
    loaded = loads_manifest(text, source=rel, base_dir=f.root)
    _need(manifest_cbor=f.manifest_bytes)
    ours = loaded.manifest.to_obj()
    if encode(ours) != f.manifest_bytes:
        assert f.manifest is not None
        theirs = f.manifest.to_obj()
        keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        raise ContractViolationError(
            f"manifest.yaml normalizes to another manifest than manifest.cbor "
            f"(differs at {', '.join('$.' + k for k in keys)})",
            artifact=rel,
            path=f"$.{keys[0]}" if keys else None,
        )
    return "normalizes to manifest.cbor"


# --- 3. environment -------------------------------------------------------------------------


@_step(5, "environment.schema", "environment.cbor canonical and valid", _IN.environment)
def _environment_schema(f: _Facts) -> str:
    """5. environment.cbor: strict canonical CBOR, a valid EnvironmentManifest."""
    data = _read(f, _IN.environment.as_posix(), MAX_ENVIRONMENT_BYTES)
    f.environment = EnvironmentManifest.from_obj(decode(data))
    f.environment_hash = hashlib.sha256(data).digest()
    return f"env_manifest_hash {f.environment_hash.hex()}"


@_step(6, "environment.identity", "Replay token and run id recomputed", _IN.environment)
def _environment_identity(f: _Facts) -> str:
    """6. replay_token, recomputed from manifest, environment and this code's operator registry
    root; run_id from tenant, replay token and manifest hash; the run id is the directory's
    name."""
    m, env, env_hash = f.manifest, f.environment, f.environment_hash
    _need(manifest=m, environment=env)
    assert m is not None and env is not None and env_hash is not None
    assert f.manifest_hash is not None
    token = replay_token(
        spec_version=m.spec_version,
        policy_bundle_hash=policy_bundle_hash(m),
        env_manifest_hash=env_hash,
        determinism_profile_hash=env.determinism_profile_hash,
        driver_runtime_fingerprint_hash=env.driver_runtime_fingerprint_hash,
        seed=m.seed,
        operator_registry_root_hash=OPERATOR_REGISTRY_ROOT_HASH,
    )
    rid = run_id(m.tenant_id, token, manifest_hash=f.manifest_hash)
    if rid != f.root.name:
        raise ContractViolationError(
            f"run_id recomputed from manifest.cbor, environment.cbor and this code's operator "
            f"registry root {_short(OPERATOR_REGISTRY_ROOT_HASH)} is {rid}, but the directory is "
            f"named {f.root.name!r}",
            artifact=_IN.environment.as_posix(),
        )
    f.replay_token, f.run_id = token, rid
    return f"run_id {rid}, replay_token {token.hex()}"


# --- 4. certificate -------------------------------------------------------------------------


@_step(
    7,
    "certificate.signature",
    "Certificate verifies under the verifier's trust store",
    _IN.certificate,
)
def _certificate_signature(f: _Facts) -> str:
    """7. The certificate verifies (trust chain, signature, fields, expiry, captured revocation
    bundle, policy decomposition) under the verifier's trust store, for this run's identity."""
    cert_rel, rev_rel = _IN.certificate.as_posix(), _IN.revocations.as_posix()
    cert_bytes = _read(f, cert_rel, MAX_CERTIFICATE_BYTES)
    cert: ExecutionCertificate | None
    try:
        cert = ExecutionCertificate.from_obj(decode(cert_bytes))
    except Error:
        cert = None  # verify_certificate names the problem (CERT_MALFORMED)
    if cert is not None:
        f.readable_certificate_hash = certificate_hash(cert)
    rev_bytes = _read(f, rev_rel, MAX_TRUST_FILE_BYTES)
    try:
        revocations = RevocationBundle.from_obj(decode(rev_bytes))
    except Error as exc:
        exc.located(artifact=rev_rel)
        raise
    store = f.trust_store if f.trust_store is not None else user_trust_store()
    expected: dict[str, object] = {}
    if f.manifest is not None:
        expected["tenant_id"] = f.manifest.tenant_id
    if f.run_id is not None and f.replay_token is not None:
        expected.update(run_id=f.run_id, replay_token=f.replay_token)
    try:
        report = verify_certificate(cert_bytes, store, revocations, expected=expected)
    except SignatureMismatchError as exc:
        if exc.reason == "REVOCATION_BUNDLE_MISMATCH":
            exc.artifact = rev_rel
        raise
    assert cert is not None  # it verified, so it decoded
    f.certificate, f.certificate_hash = cert, report.certificate_hash
    checks = ", ".join(f"{c.check_id} {c.status}" for c in report.checks)
    not_bound = sorted({"tenant_id", "run_id", "replay_token"} - set(expected))
    if not_bound:
        raise _Skip(
            f"signature and checks pass ({checks}), but {', '.join(not_bound)} could not be "
            "compared: the identity was not recomputed"
        )
    return f"signed by {report.key_id}; {checks}"


@_step(
    8,
    "certificate.trust_store",
    "trust_store.cbor is the one the certificate names",
    _IN.trust_store,
)
def _certificate_trust_store(f: _Facts) -> str:
    """8. trust_store.cbor is the store the certificate names (trust_store_hash) and holds the
    signer's key. It says whom the signer claims to be; it is never used to verify."""
    rel = _IN.trust_store.as_posix()
    data = _read(f, rel, MAX_TRUST_FILE_BYTES)
    store = TrustStore.from_obj(decode(data))
    p = f.payload
    _need(verified_certificate=p)
    assert p is not None
    if p.key_id not in {key_id(root) for root in store.trust_roots}:
        raise SignatureMismatchError(
            f"trust_store.cbor does not hold the signer {p.key_id}",
            reason="EVIDENCE_MISMATCH",
            artifact=rel,
        )
    c = _Compare(SignatureMismatchError, rel, "EVIDENCE_MISMATCH")
    c.eq(
        "digest of trust_store.cbor",
        hashlib.sha256(data).digest(),
        p.trust_store_hash,
        "the certificate's trust_store_hash",
    )
    return c.done(f"{len(store.trust_roots)} trust root(s), version {store.version}")


# --- 5. trace -------------------------------------------------------------------------------


@_step(9, "trace.read", "Trace reads strictly", _IN.trace)
def _trace_read(f: _Facts) -> str:
    """9. read_trace, strict, under the sampling policy the manifest declares; the run completed
    and its certificate inputs were bound before RUN_END."""
    rel = _IN.trace.as_posix()
    policy = sampling_policy(f.manifest.trace) if f.manifest is not None else None
    trace = read_trace(f.root / rel, policy=policy, artifact=rel)
    records = trace.records
    if trace.end.status != "COMPLETED":
        raise TraceSchemaInvalidError(
            f"RUN_END status is {trace.end.status}, not COMPLETED",
            reason="SCHEMA",
            artifact=rel,
            path=f"$[{len(records) - 1}].status",
        )
    bound = [i for i, r in enumerate(records) if isinstance(r, TraceCertificateInputs)]
    if bound != [len(records) - 2]:
        raise TraceSchemaInvalidError(
            "a committed trace has exactly one CERTIFICATE_INPUTS record, right before RUN_END",
            reason="OUT_OF_ORDER",
            artifact=rel,
        )
    inputs = records[bound[0]]
    assert isinstance(inputs, TraceCertificateInputs)
    f.trace, f.final_t = trace, inputs.t
    summary = (
        f"{len(records)} records, final t {inputs.t}, trace_final_hash {trace.final_hash.hex()}"
    )
    if policy is None:
        raise _Skip(f"{summary}; the sampling policy was not checked (no verified manifest)")
    return summary


@_step(10, "trace.header", "RUN_HEADER binds the run", _IN.trace)
def _trace_header(f: _Facts) -> str:
    """10. RUN_HEADER binds the recomputed identity, the environment's fingerprints, the
    manifest's policy bundle and this code's operator registry root."""
    trace, m, env = f.trace, f.manifest, f.environment
    _need(trace=trace)
    assert trace is not None
    h = trace.header
    c = _Compare(ContractViolationError, _IN.trace.as_posix())
    c.eq("replay_token", h.replay_token, f.replay_token, "the recomputed identity")
    c.eq("run_id", h.run_id, f.run_id, "the recomputed identity")
    c.eq("tenant_id", h.tenant_id, m and m.tenant_id, "manifest.cbor")
    c.eq("task_type", h.task_type, m and m.task_type, "manifest.cbor")
    c.eq("policy_bundle_hash", h.policy_bundle_hash, m and policy_bundle_hash(m), "manifest.cbor")
    c.eq(
        "backend_binary_hash",
        h.backend_binary_hash,
        env and env.backend_binary_hash,
        "environment.cbor",
    )
    c.eq(
        "driver_runtime_fingerprint_hash",
        h.driver_runtime_fingerprint_hash,
        env and env.driver_runtime_fingerprint_hash,
        "environment.cbor",
    )
    c.eq(
        "operator_contracts_root_hash",
        h.operator_contracts_root_hash,
        OPERATOR_REGISTRY_ROOT_HASH,
        "this code's operator registry",
    )
    c.eq("world_size", h.world_size, 1, "a single-rank run directory")
    return c.done("RUN_HEADER bindings hold")


def _certificate_inputs(payload: ExecutionCertificatePayload) -> CertificateInputs:
    """The inputs bundle the payload repeats: every field but the signature context (§12.11)."""
    obj = {k: v for k, v in payload.to_obj().items() if k not in _SIGNATURE_CONTEXT}
    return CertificateInputs.from_obj(obj)


@_step(11, "trace.certificate", "Trace ends in the certified state", _IN.trace)
def _trace_certificate(f: _Facts) -> str:
    """11. trace_final_hash is the certificate's, and CERTIFICATE_INPUTS commits to exactly the
    inputs the certificate signs."""
    trace, p = f.trace, f.payload
    _need(trace=trace, verified_certificate=p)
    assert trace is not None and p is not None
    bound = trace.records[-2]
    assert isinstance(bound, TraceCertificateInputs)
    c = _Compare(SignatureMismatchError, _IN.trace.as_posix(), "EVIDENCE_MISMATCH")
    c.eq("trace_final_hash", trace.final_hash, p.trace_final_hash, "the certificate")
    c.eq(
        "CERTIFICATE_INPUTS certificate_inputs_hash",
        bound.certificate_inputs_hash,
        certificate_inputs_hash(_certificate_inputs(p)),
        "the digest of the certificate's inputs",
    )
    c.eq("CERTIFICATE_INPUTS t", bound.t, p.step_end, "the certificate's step_end")
    return c.done("the trace ends in the certified state")


# --- 6. journal -----------------------------------------------------------------------------


@_step(12, "journal.read", "Journal reads strictly", _IN.journal)
def _journal_read(f: _Facts) -> str:
    """12. read_journal, strict: frames, schema, journal_seq, strictly increasing t, links."""
    rel = _IN.journal.as_posix()
    journal = read_journal(f.root / rel, artifact=rel)
    f.journal = journal
    return f"{len(journal.entries)} entries, head link {journal.head_link_hash.hex()}"


@_step(13, "journal.trace", "Journal entries link into the trace", _IN.journal)
def _journal_trace(f: _Facts) -> str:
    """13. Every entry's trace_chain_hash is a chain value of the trace, in trace order, and
    there is one entry per step: t = 1, 2, …, final t."""
    journal, trace = f.journal, f.trace
    _need(journal=journal, trace=trace)
    assert journal is not None and trace is not None
    rel = _IN.journal.as_posix()
    position = {h: i for i, h in enumerate(trace.chain)}
    last = 0
    for seq, entry in enumerate(journal.entries):
        at = position.get(entry.event.trace_chain_hash)
        if at is None or at < last:
            where = "is no chain value of the trace" if at is None else "goes back in the trace"
            raise TraceSchemaInvalidError(
                f"entry {seq} (t={entry.event.t}): trace_chain_hash {where}",
                reason="CHAIN_BREAK",
                artifact=rel,
                offset=journal.offsets[seq],
                path=f"$[{seq}].event.trace_chain_hash",
            )
        last = at
    steps = [e.event.t for e in journal.entries]
    if f.final_t is not None and steps != list(range(1, f.final_t + 1)):
        gap = next((i for i, t in enumerate(steps) if t != i + 1), len(steps))
        raise TraceSchemaInvalidError(
            f"one entry per step 1..{f.final_t} expected; entry {gap} breaks it "
            f"({len(steps)} entries, last t {steps[-1] if steps else None})",
            reason="JOURNAL_SEQ_GAP",
            artifact=rel,
            offset=journal.offsets[gap] if gap < len(steps) else journal.byte_length,
        )
    return f"{len(steps)} entries link into the trace"


# --- 7. checkpoints -------------------------------------------------------------------------


def _checkpoint_error(f: _Facts, base: Path, exc: CheckpointInvalidError) -> CheckpointInvalidError:
    """The reader names files relative to the checkpoint; the report names them in the run."""
    inner = exc.artifact or ""
    if not Path(inner).is_absolute():
        exc.artifact = f.rel(base / inner) if inner else f.rel(base)
    return exc


@_step(14, "checkpoints.verify", "Every checkpoint verifies", _IN.checkpoints)
def _checkpoints_verify(f: _Facts) -> str:
    """14. verify_checkpoint on every checkpoint directory (files, roots, header, commitment);
    its header's t is the directory's name; checkpoint_hash_prev chains them in step order."""
    dirs = _step_dirs(f)
    if not dirs:
        raise CheckpointInvalidError(
            "no checkpoint directory", reason="FILE_MISSING", artifact=_IN.checkpoints.as_posix()
        )
    verified: dict[int, _Checkpoint] = {}
    failures: list[CheckpointInvalidError] = []
    prev: bytes | None = None  # the first checkpoint has no predecessor
    chained = True  # False right after a checkpoint that failed: its hash is not known
    for t, base in dirs:
        try:
            v = ckpt.verify_checkpoint(base)
        except CheckpointInvalidError as exc:
            failures.append(_checkpoint_error(f, base, exc))
            chained = False
            continue
        header_rel = f.rel(base / ckpt.HEADER_FILE)
        if v.header.t != t:
            failures.append(
                CheckpointInvalidError(
                    f"the header says t={v.header.t}, the directory is step {t}",
                    reason="HEADER_BINDING",
                    artifact=header_rel,
                    path="$.t",
                )
            )
        elif chained and v.header.checkpoint_hash_prev != prev:
            failures.append(
                CheckpointInvalidError(
                    f"checkpoint_hash_prev is {_short(v.header.checkpoint_hash_prev)}, the "
                    f"previous checkpoint's hash is {_short(prev)}",
                    reason="HEADER_BINDING",
                    artifact=header_rel,
                    path="$.checkpoint_hash_prev",
                )
            )
        else:
            verified[t] = _Checkpoint(base, v.header, v.manifest, v.trace_link)
        prev, chained = v.header.checkpoint_hash, True
    if failures:
        first = failures[0]
        others = "".join(f"; also {e.artifact}: [{e.reason}] {e.message}" for e in failures[1:])
        first.message += others
        raise first
    f.checkpoints = verified
    return f"{len(verified)} checkpoints verify (t = {', '.join(str(t) for t in verified)})"


@_step(15, "checkpoints.pointers", "Checkpoint pointers name their checkpoints", _IN.checkpoints)
def _checkpoints_pointers(f: _Facts) -> str:
    """15. Every ``<t>.committed`` pointer decodes and names its checkpoint (tenant, run, t,
    checkpoint_hash, path); a pointer without its directory fails."""
    root = f.root / _IN.checkpoints
    names = sorted(e for e in os.listdir(root) if _POINTER_NAME.match(e)) if root.is_dir() else []
    dirs = dict(_step_dirs(f))
    if not names and not dirs:
        raise _Skip("no checkpoint and no pointer (step 1 and 14 report it)")
    unchecked: list[str] = []
    for name in names:
        path = root / name
        rel = f.rel(path)
        try:
            pointer = ckpt.read_pointer(path)
        except CheckpointInvalidError as exc:
            exc.artifact = rel
            raise
        if pointer.t not in dirs:
            raise CheckpointInvalidError(
                f"pointer for step {pointer.t} without its checkpoint directory",
                reason="POINTER",
                artifact=rel,
            )
        if f.checkpoints is None:
            unchecked.append(rel)  # step 14 failed and says why
            continue
        header = f.checkpoints[pointer.t].header
        named = (pointer.tenant_id, pointer.run_id, pointer.checkpoint_hash)
        if named != (header.tenant_id, header.run_id, header.checkpoint_hash):
            raise CheckpointInvalidError(
                f"pointer names checkpoint {_short(pointer.checkpoint_hash)} of run "
                f"{pointer.run_id}, the directory holds {_short(header.checkpoint_hash)} of run "
                f"{header.run_id}",
                reason="POINTER",
                artifact=rel,
            )
    if unchecked:
        raise _Skip(
            f"pointers decode; not compared (checkpoint did not verify): {', '.join(unchecked)}"
        )
    published = {int(n[:20]) for n in names}
    unpublished = [f"{t}" for t in dirs if t not in published]
    note = (
        f"; unpublished (no pointer, accepted): step {', '.join(unpublished)}"
        if unpublished
        else ""
    )
    return f"{len(names)} pointers name their checkpoints{note}"


@_step(
    16, "checkpoints.trace", "Checkpoints match their CHECKPOINT_COMMIT records", _IN.checkpoints
)
def _checkpoints_trace(f: _Facts) -> str:
    """16. The trace's CHECKPOINT_COMMIT records and the checkpoint directories correspond one
    to one: same t, checkpoint_hash, header hash, Merkle root and trace snapshot; each
    checkpoint's trace link points at its commit record."""
    trace, checkpoints = f.trace, f.checkpoints
    _need(trace=trace, checkpoints=checkpoints)
    assert trace is not None and checkpoints is not None
    commits: dict[int, tuple[int, TraceCheckpointCommit]] = {}
    for i, r in enumerate(trace.records):
        if isinstance(r, TraceCheckpointCommit):
            if r.t in commits:
                raise TraceSchemaInvalidError(
                    f"step {r.t} is committed twice (records {commits[r.t][0]} and {i})",
                    reason="OUT_OF_ORDER",
                    artifact=_IN.trace.as_posix(),
                    offset=trace.offsets[i],
                )
            commits[r.t] = (i, r)
    for t, v in checkpoints.items():
        header_rel = f.rel(v.path / ckpt.HEADER_FILE)
        if t not in commits:
            raise CheckpointInvalidError(
                f"checkpoint at step {t} has no CHECKPOINT_COMMIT record in the trace",
                reason="CHECKPOINT_HASH",
                artifact=header_rel,
            )
        index, rec = commits[t]
        h, link = v.header, v.trace_link
        c = _Compare(CheckpointInvalidError, header_rel, "CHECKPOINT_HASH")
        c.eq("checkpoint_hash", h.checkpoint_hash, rec.checkpoint_hash, f"trace record {index}")
        c.eq(
            "checkpoint_header_hash",
            h.checkpoint_header_hash,
            rec.checkpoint_header_hash,
            f"trace record {index}",
        )
        c.eq(
            "checkpoint_merkle_root",
            h.checkpoint_merkle_root,
            rec.checkpoint_merkle_root,
            f"trace record {index}",
        )
        c.eq(
            "trace_snapshot_hash",
            h.trace_snapshot_hash,
            rec.trace_snapshot_hash,
            f"trace record {index}",
        )
        c.eq(
            "trace link trace_record_count",
            link.trace_record_count,
            index,
            "the commit record's position",
        )
        c.done("")
    extra = sorted(set(commits) - set(checkpoints))
    if extra:
        raise CheckpointInvalidError(
            f"the trace commits checkpoints with no directory: step {', '.join(map(str, extra))}",
            reason="FILE_MISSING",
            artifact=f.rel(f.root / _IN.checkpoints / ckpt.step_name(extra[0])),
        )
    return f"{len(commits)} CHECKPOINT_COMMIT records match their checkpoints"


@_step(17, "checkpoints.journal", "Checkpoints match the journal", _IN.checkpoints)
def _checkpoints_journal(f: _Facts) -> str:
    """17. Each checkpoint's trace link names the journal as it stood at its step: the entry
    count (the last counted entry is step t) and that entry's link hash."""
    journal, checkpoints = f.journal, f.checkpoints
    _need(journal=journal, checkpoints=checkpoints)
    assert journal is not None and checkpoints is not None
    entries = journal.entries
    for t, v in checkpoints.items():
        link = v.trace_link
        rel = f.rel(v.path / ckpt.LINK_FILE)
        count = link.journal_entry_count
        if count is None or count > len(entries):
            raise CheckpointInvalidError(
                f"journal_entry_count {count} is not a prefix of the journal ({len(entries)} entries)",
                reason="HEADER_BINDING",
                artifact=rel,
                path="$.journal_entry_count",
            )
        last = entries[count - 1] if count else None
        c = _Compare(CheckpointInvalidError, rel, "HEADER_BINDING")
        c.eq(
            "journal_link_hash",
            link.journal_link_hash,
            last.link_hash if last is not None else GENESIS_LINK_HASH,
            f"journal entry {count - 1}",
        )
        c.eq(
            "t of the last counted journal entry",
            last.event.t if last is not None else 0,
            t,
            "the checkpoint",
        )
        c.done("")
    return f"{len(checkpoints)} trace links match the journal"


@_step(18, "checkpoints.final", "Final checkpoint is the certified one", _IN.checkpoints)
def _checkpoints_final(f: _Facts) -> str:
    """18. The last checkpoint is the certificate's checkpoint_hash, taken at its step_end."""
    final, p = f.final_checkpoint, f.payload
    _need(checkpoints=final, verified_certificate=p)
    assert final is not None and p is not None
    c = _Compare(SignatureMismatchError, f.rel(final.path / ckpt.HEADER_FILE), "EVIDENCE_MISMATCH")
    c.eq(
        "final checkpoint_hash", final.header.checkpoint_hash, p.checkpoint_hash, "the certificate"
    )
    c.eq("final checkpoint t", final.header.t, p.step_end, "the certificate's step_end")
    return c.done(f"final checkpoint t={final.header.t}")


# --- 8. WAL ---------------------------------------------------------------------------------


@_step(19, "wal.records", "WAL reads strictly and is committed", _IN.wal)
def _wal_records(f: _Facts) -> str:
    """19. read_wal, strict: framing, canonical records, schema, identity, sequence, chain and
    order; a committed run's log is exactly PREPARE, CERT_SIGNED, FINALIZE."""
    rel = _IN.wal.as_posix()
    tenant = f.manifest.tenant_id if f.manifest is not None else None
    try:
        records = read_wal(f.root / rel, tenant_id=tenant, run_id=f.run_id)
    except FileNotFoundError:
        raise ContractViolationError(f"{rel} is missing", artifact=rel) from None
    kinds = [r.record_type for r in records]
    if kinds != ["PREPARE", "CERT_SIGNED", "FINALIZE"]:
        raise WalCorruptionError(
            f"the log holds {' '.join(kinds) or 'no record'}: the run is not committed",
            reason="POINTER_WITHOUT_FINALIZE",
            artifact=rel,
        )
    f.wal = records
    return f"PREPARE, CERT_SIGNED, FINALIZE; terminal record {records[-1].record_hash.hex()}"


@_step(20, "wal.finalize", "WAL records name this run's artifacts", _IN.wal)
def _wal_finalize(f: _Facts) -> str:
    """20. The WAL's records name this run's artifacts: FINALIZE's hashes equal the
    certificate's, the trace's, the final checkpoint's and the manifest's; PREPARE and
    CERT_SIGNED agree with them."""
    records = f.wal
    _need(wal=records)
    assert records is not None
    prepare, signed, fin = records
    assert isinstance(prepare, WalPrepare)
    assert isinstance(signed, WalCertSigned)
    assert isinstance(fin, WalFinalize)
    p, final = f.payload, f.final_checkpoint
    trace_hash = f.trace.final_hash if f.trace is not None else None
    final_hash = final.header.checkpoint_hash if final is not None else None
    m, env = f.manifest, f.environment
    policy = policy_bundle_hash(m) if m is not None else None
    profile = env.determinism_profile_hash if env is not None else None
    # The certificate file's hash, verified or not: which file the log committed is a fact.
    cert_hash = f.readable_certificate_hash
    c = _Compare(WalCorruptionError, _IN.wal.as_posix(), "ARTIFACT_MISMATCH")
    c.eq("FINALIZE certificate_hash", fin.certificate_hash, cert_hash, "the certificate file")
    c.eq("FINALIZE trace_final_hash", fin.trace_final_hash, trace_hash, "the trace")
    c.eq(
        "FINALIZE trace_final_hash",
        fin.trace_final_hash,
        p and p.trace_final_hash,
        "the certificate",
    )
    c.eq("FINALIZE checkpoint_hash", fin.checkpoint_hash, final_hash, "the final checkpoint")
    c.eq(
        "FINALIZE checkpoint_hash", fin.checkpoint_hash, p and p.checkpoint_hash, "the certificate"
    )
    c.eq(
        "FINALIZE lineage_root_hash",
        fin.lineage_root_hash,
        p and p.lineage_root_hash,
        "the certificate",
    )
    c.eq(
        "CERT_SIGNED certificate_tmp_hash",
        signed.certificate_tmp_hash,
        cert_hash,
        "execution_certificate.cbor",
    )
    c.eq("CERT_SIGNED trace_tmp_hash", signed.trace_tmp_hash, trace_hash, "the trace")
    c.eq(
        "CERT_SIGNED checkpoint_tmp_hash",
        signed.checkpoint_tmp_hash,
        final_hash,
        "the final checkpoint",
    )
    for rec in (prepare, signed, fin):
        c.eq(
            f"{rec.record_type} policy_bundle_hash", rec.policy_bundle_hash, policy, "manifest.cbor"
        )
        c.eq(
            f"{rec.record_type} determinism_profile_hash",
            rec.determinism_profile_hash,
            profile,
            "environment.cbor",
        )
    for rec2 in (prepare, fin):
        c.eq(
            f"{rec2.record_type} manifest_hash",
            rec2.manifest_hash,
            f.manifest_hash,
            "manifest.cbor",
        )
        c.eq(
            f"{rec2.record_type} operator_registry_hash",
            rec2.operator_registry_hash,
            OPERATOR_REGISTRY_ROOT_HASH,
            "this code's operator registry",
        )
    return c.done("the log commits this run's artifacts")


@_step(21, "wal.committed", "COMMITTED is the pointer FINALIZE implies", _IN.committed)
def _wal_committed(f: _Facts) -> str:
    """21. COMMITTED is, byte for byte, the pointer the FINALIZE record implies."""
    rel = _IN.committed.as_posix()
    data = _read(f, rel, MAX_POINTER_BYTES)
    _need(wal=f.wal)
    assert f.wal is not None
    fin = f.wal[-1]
    assert isinstance(fin, WalFinalize)
    if data != encode(pointer_for(fin).to_obj()):
        raise WalCorruptionError(
            "COMMITTED differs from the pointer the FINALIZE record implies",
            reason="POINTER_MISMATCH",
            artifact=rel,
        )
    return f"commit_pointer_hash {digest(pointer_for(fin).to_obj()).hex()}"


# --- 9. bindings: every certificate input recomputed from the directory ----------------------


def _bindings(f: _Facts, **refs: object) -> tuple[ExecutionCertificatePayload, _Compare]:
    p = f.payload
    _need(verified_certificate=p, **refs)
    assert p is not None
    return p, _Compare(SignatureMismatchError, _IN.certificate.as_posix(), "EVIDENCE_MISMATCH")


@_step(22, "bindings.manifest", "Certificate binds the manifest", _IN.certificate)
def _bindings_manifest(f: _Facts) -> str:
    """22. manifest_hash and policy_bundle_hash are manifest.cbor's."""
    p, c = _bindings(f, manifest=f.manifest)
    assert f.manifest is not None
    c.eq("manifest_hash", p.manifest_hash, f.manifest_hash, "manifest.cbor")
    c.eq(
        "policy_bundle_hash", p.policy_bundle_hash, policy_bundle_hash(f.manifest), "manifest.cbor"
    )
    return c.done("the certificate signs this manifest")


@_step(23, "bindings.model", "Certificate binds the model IR and memory plan", _IN.certificate)
def _bindings_model(f: _Facts) -> str:
    """23. ir_hash and tmmu_plan_hash, recomputed: the manifest's model expanded to IR and
    validated, then its train-schedule memory plan (pure functions, no data, no backend)."""
    p, c = _bindings(f, manifest=f.manifest)
    m = f.manifest
    assert m is not None and m.backend is not None and m.backend.dtype is not None
    ir = validate_ir(model_ir(m, m.backend.dtype))
    plan = plan_memory(ir, schedule="train", batch_size=m.global_batch_size, dtype=m.backend.dtype)
    c.eq("ir_hash", p.ir_hash, ir.ir_hash, "the manifest's model")
    c.eq("tmmu_plan_hash", p.tmmu_plan_hash, plan.tmmu_plan_hash, "the recomputed memory plan")
    return c.done(
        f"ir_hash {ir.ir_hash.hex()[:16]}…, tmmu_plan_hash {plan.tmmu_plan_hash.hex()[:16]}…"
    )


@_step(24, "bindings.data", "Certificate binds the datasets and sampler", _IN.certificate)
def _bindings_data(f: _Facts) -> str:
    """24. dataset_snapshot_id, sampler_config_hash, data_access_plan_hash and
    lineage_root_hash, recomputed from the manifest's dataset entries."""
    p, c = _bindings(f, manifest=f.manifest, manifest_hash=f.manifest_hash)
    assert f.manifest is not None and f.manifest_hash is not None
    ours = data_identities(f.manifest, f.manifest_hash)
    for name in (
        "dataset_snapshot_id",
        "sampler_config_hash",
        "data_access_plan_hash",
        "lineage_root_hash",
    ):
        c.eq(name, getattr(p, name), getattr(ours, name), "the manifest's datasets")
    return c.done(f"{len(f.manifest.datasets)} datasets")


@_step(25, "bindings.registry", "Certificate binds this code's operator registry", _IN.certificate)
def _bindings_registry(f: _Facts) -> str:
    """25. operator_contracts_root_hash is the operator registry root this code ships."""
    p, c = _bindings(f)
    if p.operator_contracts_root_hash != OPERATOR_REGISTRY_ROOT_HASH:
        raise SignatureMismatchError(
            f"the run was made under operator registry root "
            f"{p.operator_contracts_root_hash.hex()}, this code ships "
            f"{OPERATOR_REGISTRY_ROOT_HASH.hex()}",
            reason="EVIDENCE_MISMATCH",
            artifact=c.artifact,
            path="$.signed_payload.operator_contracts_root_hash",
        )
    return f"operator registry root {OPERATOR_REGISTRY_ROOT_HASH.hex()}"


@_step(26, "bindings.environment", "Certificate binds the environment", _IN.certificate)
def _bindings_environment(f: _Facts) -> str:
    """26. determinism_profile_hash, backend_binary_hash and toolchain_hash are
    environment.cbor's; dependencies_lock_hash = Commit(DEPENDENCIES_LOCK, [lockfile_hash,
    toolchain_hash, env_manifest_hash])."""
    p, c = _bindings(f, environment=f.environment)
    env, env_hash = f.environment, f.environment_hash
    assert env is not None and env_hash is not None
    c.eq(
        "determinism_profile_hash",
        p.determinism_profile_hash,
        env.determinism_profile_hash,
        "environment.cbor",
    )
    c.eq("backend_binary_hash", p.backend_binary_hash, env.backend_binary_hash, "environment.cbor")
    c.eq("toolchain_hash", p.toolchain_hash, env.toolchain_hash, "environment.cbor")
    lock = commit_hash(tags.DEPENDENCIES_LOCK, [p.lockfile_hash, env.toolchain_hash, env_hash])
    c.eq("dependencies_lock_hash", p.dependencies_lock_hash, lock, "the recomputed lock commitment")
    return c.done("the certificate signs this environment")


@_step(27, "bindings.checkpoints", "Checkpoint headers bind the certified values", _IN.checkpoints)
def _bindings_checkpoints(f: _Facts) -> str:
    """27. Every checkpoint header binds the run-level values the certificate signs, the
    environment's hash and the manifest's dataset snapshot."""
    p, _ = _bindings(f, checkpoints=f.checkpoints)
    assert f.checkpoints is not None
    signed = p.to_obj()
    for t, v in f.checkpoints.items():
        c = _Compare(SignatureMismatchError, f.rel(v.path / ckpt.HEADER_FILE), "EVIDENCE_MISMATCH")
        header = v.header.to_obj()
        for name in _HEADER_BINDINGS:
            c.eq(f"step {t} {name}", header.get(name), signed.get(name), "the certificate")
        c.eq(
            f"step {t} runtime_env_hash",
            v.header.runtime_env_hash,
            f.environment_hash,
            "environment.cbor",
        )
        c.eq(
            f"step {t} spec_version",
            v.header.spec_version,
            f.manifest and f.manifest.spec_version,
            "manifest.cbor",
        )
        c.eq(
            f"step {t} dataset_snapshot_id",
            v.manifest.dataset_snapshot_id,
            p.dataset_snapshot_id,
            "the certificate",
        )
        c.done("")
    return f"{len(f.checkpoints)} checkpoint headers bind the certified values"


@_step(28, "bindings.steps", "Certificate's step range is the run's", _IN.certificate)
def _bindings_steps(f: _Facts) -> str:
    """28. step_start..step_end is the run's step range: step_end is the final t of the trace,
    the journal and the last checkpoint; step_start is 1 (0 for a run of no steps)."""
    p, c = _bindings(f)
    final = f.final_checkpoint
    last_entry = f.journal.entries[-1].event.t if f.journal and f.journal.entries else None
    c.eq("step_end", p.step_end, f.final_t, "the trace's CERTIFICATE_INPUTS")
    c.eq("step_end", p.step_end, last_entry, "the journal's last entry")
    c.eq("step_end", p.step_end, final and final.header.t, "the final checkpoint")
    c.eq("step_start", p.step_start, 1 if p.step_end else 0, "the step range rule")
    return c.done(f"steps {p.step_start}..{p.step_end}")


# --- the procedure --------------------------------------------------------------------------

STEPS: Final[tuple[StepInfo, ...]] = tuple(info for info, _ in _PROCEDURE)
"""The procedure, in order (the table in the module docstring)."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure(f: _Facts, info: StepInfo, exc: Error) -> VerifyStepResult:
    """A FAIL result: the artifact relative to the run, the detail free of absolute paths."""
    artifact = info.artifact
    outside = ""
    if exc.artifact is not None:
        path = Path(exc.artifact)
        if not path.is_absolute():
            artifact = exc.artifact
        elif path.is_relative_to(f.root):
            artifact = f.rel(path)
        else:
            outside = f" (in {exc.artifact})"
    where = [x for x in (exc.path, f"byte {exc.offset}" if exc.offset is not None else None) if x]
    detail = f"[{exc.reason}] {exc.message}" if exc.reason else exc.message
    detail += outside + (f" — at {', '.join(where)}" if where else "")
    return VerifyStepResult(
        step_no=info.step_no,
        step_id=info.step_id,
        name=info.name,
        status="FAIL",
        artifact=_clip(artifact, _MAX_ARTIFACT),
        detail=_clip(detail, _MAX_DETAIL),
        code_id=exc.code_id,
    )


def _run_step(f: _Facts, info: StepInfo, check: _Check) -> VerifyStepResult:
    status: Literal["PASS", "SKIP"]
    try:
        detail = check(f)
        status = "PASS"
    except _Skip as skip:
        detail, status = str(skip), "SKIP"
    except Error as exc:
        return _failure(f, info, exc)
    except OSError as exc:  # a missing, unreadable or vanished entry
        name = Path(os.fsdecode(exc.filename)) if exc.filename is not None else f.root
        rel = f.rel(name) if name.is_relative_to(f.root) else str(name)
        what = (
            "is missing"
            if isinstance(exc, FileNotFoundError)
            else f"cannot be read ({exc.strerror})"
        )
        return _failure(f, info, ContractViolationError(f"{_shown(rel)} {what}", artifact=rel))
    except Exception as exc:  # hostile input must never crash the verifier; say so plainly
        err = ContractViolationError(f"internal error {type(exc).__name__}: {exc}")
        return _failure(f, info, err)
    return VerifyStepResult(
        step_no=info.step_no,
        step_id=info.step_id,
        name=info.name,
        status=status,
        artifact=info.artifact,
        detail=_clip(detail, _MAX_DETAIL),
    )


def verify_run(
    run_dir: str | os.PathLike[str], *, trust_store: TrustStore | None = None
) -> VerifyReport:
    """Run the whole procedure (module docstring) on ``run_dir``; return the full report.

    ``trust_store`` is the verifier's set of trusted signing keys; by default the local key
    store's (:func:`umlos.evidence.keys.trust_store`). Never raises for anything found in the
    directory: every problem is a FAIL step. Reads only; writes nothing anywhere.
    """
    root = Path(run_dir).absolute()
    facts = _Facts(root=root, trust_store=trust_store)
    steps = tuple(_run_step(facts, info, check) for info, check in _PROCEDURE)
    failed = next((s.step_no for s in steps if s.status == "FAIL"), None)
    return VerifyReport(
        verdict="FAIL" if failed is not None else "PASS",
        tenant_id=facts.manifest.tenant_id if facts.manifest is not None else None,
        run_id=facts.run_id,
        certificate_hash=facts.readable_certificate_hash,
        first_failed_step=failed,
        steps=steps,
    )


def failed_step(report: VerifyReport) -> VerifyStepResult | None:
    """The first failing step of ``report``, or None when it passed."""
    return next((s for s in report.steps if s.status == "FAIL"), None)


def exit_code(report: VerifyReport) -> int:
    """``umlos verify``'s exit status: 0 on PASS, else ``10 + group`` of the first failing step
    (11 layout, 12 manifest, 13 environment, 14 certificate, 15 trace, 16 journal,
    17 checkpoints, 18 WAL, 19 bindings)."""
    step = failed_step(report)
    if step is None:
        return EXIT_OK
    return STEPS[step.step_no - 1].exit_code
