"""``umlos run``: execute a manifest end to end and leave a verifiable run directory.

The order of evidence (ADR 0015, docs/formats/run-directory.md):

1. WAL ``PREPARE`` (durable) — the run exists.
2. Trace ``RUN_HEADER``; then per step: the optimizer step, an ``ITER`` record, a journal entry;
   every ``checkpoint_frequency`` steps (and at the end): sync trace and journal, write the
   checkpoint (its trace link records both lengths), then a ``CHECKPOINT_COMMIT`` record.
3. ``CERTIFICATE_INPUTS`` and ``RUN_END`` close the trace; the certificate is signed and written.
4. WAL ``CERT_SIGNED``, WAL ``FINALIZE``, then the ``COMMITTED`` pointer (the visibility barrier).

Resume (``--resume``) keeps the WAL (only a torn last append is cut), restores the latest
checkpoint that verifies, truncates trace and journal to the lengths that checkpoint recorded,
and runs on. Everything after the checkpoint is a deterministic function of it, so the resumed
run ends with the same certificate hash as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import umlos
from umlos import _faults
from umlos._generated.records import (
    CertificateInputs,
    CheckpointHeader,
    CheckpointTraceLink,
    JournalEvent,
    TraceCertificateInputs,
    TraceCheckpointCommit,
    TraceIter,
    TraceRunHeader,
    WalCertSignedBody,
    WalFinalize,
    WalFinalizeBody,
    WalPrepareBody,
    WalRollback,
)
from umlos._generated.registry import CONTRACT_SET_HASH, OPERATOR_REGISTRY_ROOT_HASH
from umlos.codec import digest, encode
from umlos.errors import ContractViolationError
from umlos.evidence._frames import atomic_write
from umlos.evidence.certificate import (
    certificate_inputs_hash,
    certify,
    local_revocation_bundle,
    local_trust_store,
    revocation_bundle_hash,
    trust_store_hash,
    write_certificate,
)
from umlos.evidence.checkpoint import (
    CheckpointBindings,
    latest_checkpoint,
    load_checkpoint,
    publish_checkpoint,
    write_checkpoint,
)
from umlos.evidence.journal import JournalWriter
from umlos.evidence.keys import generate_key, load_signing_key, public_key_bytes
from umlos.evidence.trace import TraceWriter, sampling_policy
from umlos.evidence.wal import RunCommitWal, pointer_for, publish_committed, resume
from umlos.manifest import load_manifest
from umlos.model.tmmu import plan_memory
from umlos.numerics import PhiloxStream
from umlos.runner._identities import data_identities
from umlos.runner._layout import RunLayout
from umlos.runner.pins import Pins
from umlos.train import EvalResult, Run, State, StepMetrics, evaluate, init, prepare
from umlos.train.state import advance_stage, fingerprint, next_batch, stage_finished, step

ZERO: Final = bytes(32)
# Certificate times are declared inputs, never read from the clock (certificate.yaml): by default
# the epoch and the end of year 9999, so the same manifest always yields the same certificate.
DEFAULT_AS_OF: Final = "1970-01-01T00:00:00Z"
DEFAULT_VALID_UNTIL: Final = "9999-12-31T23:59:59Z"
STEP_OPERATOR: Final = "UML_OS.Optimizer.Update_v1"
EVAL_OPERATOR: Final = "UML_OS.Evaluation.Run_v1"


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: ``t`` of ``total`` (estimated), the last loss, samples per second."""

    t: int
    total: int
    stage_id: str
    loss: float | None
    samples_per_s: float


@dataclass
class RunSummary:
    """What ``umlos run --json`` prints."""

    run_id: str
    run_dir: str
    status: str
    manifest_hash: str
    trace_final_hash: str
    checkpoint_hash: str
    certificate_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    resumed_from_t: int | None = None
    source_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "status": self.status,
            "manifest_hash": self.manifest_hash,
            "trace_final_hash": self.trace_final_hash,
            "checkpoint_hash": self.checkpoint_hash,
            "certificate_hash": self.certificate_hash,
            "metrics": self.metrics,
            "steps": self.steps,
            "resumed_from_t": self.resumed_from_t,
            "source_dir": self.source_dir,
        }


class RunExistsError(ContractViolationError):
    """An interrupted run with this identity exists and ``resume`` was not asked for."""


# --- run-level identities ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _installed_lock() -> bytes:
    """Digest of every installed distribution (name, version), sorted: the environment's lock.

    Read from the ``<name>-<version>.dist-info`` directory names on ``sys.path`` (what pip
    records), not from each package's METADATA file: the same facts at a fraction of the cost.
    """
    pairs: set[tuple[str, str]] = set()
    for entry in sys.path:
        base = Path(entry)
        if not base.is_dir():
            continue
        for info in base.glob("*.dist-info"):
            name, _, version = info.name[: -len(".dist-info")].partition("-")
            pairs.add((name.lower().replace("_", "-"), version))
    return digest([[n, v] for n, v in sorted(pairs)])


def _code_commit() -> bytes:
    """The code identity a run binds: the umlos release and its compiled contract set.

    Not a hash of the source tree: that would make every committed golden value move with
    each edit. The contract set hash changes with any change to a wire or on-disk format.
    """
    return digest(["umlos", umlos.__version__, CONTRACT_SET_HASH])


@dataclass(frozen=True, slots=True)
class _Identities:
    sampler_config_hash: bytes
    data_access_plan_hash: bytes
    dataset_snapshot_id: str
    lineage_root_hash: bytes
    lockfile_hash: bytes
    code_commit_hash: bytes
    tmmu_plan_hash: bytes

    @classmethod
    def of(cls, run: Run, tmmu_plan_hash: bytes, lockfile_hash: bytes | None) -> _Identities:
        data = data_identities(run.manifest, run.manifest_hash)
        return cls(
            sampler_config_hash=data.sampler_config_hash,
            data_access_plan_hash=data.data_access_plan_hash,
            dataset_snapshot_id=data.dataset_snapshot_id,
            lineage_root_hash=data.lineage_root_hash,
            lockfile_hash=lockfile_hash if lockfile_hash is not None else _installed_lock(),
            code_commit_hash=_code_commit(),
            tmmu_plan_hash=tmmu_plan_hash,
        )


# --- the run ----------------------------------------------------------------------------------


class _Session:
    """One execution (fresh or resumed) of a run directory."""

    def __init__(
        self,
        run: Run,
        layout: RunLayout,
        *,
        key_id: str | None,
        signing_key: Ed25519PrivateKey | None,
        as_of: str,
        valid_until: str,
        progress: Callable[[Progress], None] | None,
        lockfile_hash: bytes | None,
    ) -> None:
        self.run = run
        self.layout = layout
        self.as_of = as_of
        self.valid_until = valid_until
        self.progress = progress
        self.key = signing_key or _signing_key(key_id)
        manifest = run.manifest
        batch = manifest.global_batch_size
        self.plan = plan_memory(run.ir, schedule="train", batch_size=batch, dtype=run.dtype)
        self.ids = _Identities.of(run, self.plan.tmmu_plan_hash, lockfile_hash)
        self.bindings = CheckpointBindings.from_run(
            run,
            sampler_config_hash=self.ids.sampler_config_hash,
            lockfile_hash=self.ids.lockfile_hash,
            code_commit_hash=self.ids.code_commit_hash,
            lineage_root_hash=self.ids.lineage_root_hash,
            data_access_plan_hash=self.ids.data_access_plan_hash,
            dataset_snapshot_id=self.ids.dataset_snapshot_id,
        )
        self.policy = sampling_policy(manifest.trace)
        self.evals: list[EvalResult] = []
        self.last: StepMetrics | None = None
        self.last_checkpoint: CheckpointHeader | None = None
        self.steps = 0
        self.wal: RunCommitWal  # opened by execute() once resume() has cut a torn tail
        self.trace: TraceWriter
        self.journal: JournalWriter
        self._rng_key: PhiloxStream | None = None
        self._rng_hash = ZERO

    # identities shared by several records
    @property
    def tenant(self) -> str:
        return self.run.manifest.tenant_id

    @property
    def run_id(self) -> str:
        return self.run.identity.run_id

    def prepare_body(self) -> WalPrepareBody:
        return WalPrepareBody(
            manifest_hash=self.run.manifest_hash,
            policy_bundle_hash=self.run.identity.policy_bundle_hash,
            operator_registry_hash=OPERATOR_REGISTRY_ROOT_HASH,
            determinism_profile_hash=self.run.environment.determinism_profile_hash,
        )

    def run_header(self) -> TraceRunHeader:
        run = self.run
        env = run.environment
        return TraceRunHeader(
            replay_token=run.replay_token,
            run_id=self.run_id,
            tenant_id=self.tenant,
            task_type=run.manifest.task_type,
            world_size=run.world_size,
            backend_binary_hash=env.env_manifest.backend_binary_hash,
            driver_runtime_fingerprint_hash=env.driver_fingerprint_hash,
            policy_bundle_hash=run.identity.policy_bundle_hash,
            monitor_policy_hash=ZERO,
            operator_contracts_root_hash=OPERATOR_REGISTRY_ROOT_HASH,
            redaction_mode="NONE",
            hash_gate_m=self.policy.hash_gate_m,
            hash_gate_k=self.policy.hash_gate_k,
            sample_policy=self.policy.sample_policy,
            trace_policy_hash=digest(self.policy.to_obj()),
        )

    # --- per step ------------------------------------------------------------------------
    def record_step(self, state: State, metrics: StepMetrics) -> None:
        run = self.run
        self.trace.append(
            TraceIter(
                t=metrics.t,
                stage_id=metrics.stage_id,
                operator_id=STEP_OPERATOR,
                operator_seq=0,
                rank=run.rank,
                status="ok" if not metrics.clipped else "clipped",
                replay_token=run.replay_token,
                loss_total=metrics.loss,
                grad_norm=metrics.grad_norm,
                sampler_config_hash=self.ids.sampler_config_hash,
                tmmu_plan_hash=self.ids.tmmu_plan_hash,
                trace_extensions={"epoch": metrics.epoch, "batch_size": metrics.batch_size},
            )
        )
        self.journal_entry(state, metrics.stage_id)

    def record_eval(self, state: State, result: EvalResult) -> None:
        extensions: dict[str, bool | int | float | str | bytes] = {"samples": result.samples}
        for name in ("loss", "accuracy", "mse", "mae"):
            value = getattr(result, name)
            if value is not None and math.isfinite(value):
                extensions[f"eval_{name}"] = value
        self.trace.append(
            TraceIter(
                t=state.t,
                stage_id=result.stage_id,
                operator_id=EVAL_OPERATOR,
                operator_seq=0,
                rank=self.run.rank,
                status="ok",
                replay_token=self.run.replay_token,
                trace_extensions=extensions,
            )
        )
        self.journal_entry(state, result.stage_id)

    def journal_entry(self, state: State, stage_id: str) -> None:
        cursors = digest(
            {
                k: {"epoch": c.epoch, "global_position": c.global_position}
                for k, c in state.cursors.items()
            }
        )
        stream = state.dropout
        if self._rng_key != stream:  # the dropout stream moves only when dropout draws
            self._rng_key = stream
            self._rng_hash = digest([list(stream.rng_state()), stream.offset])
        self.journal.append(
            JournalEvent(
                t=state.t,
                rank=self.run.rank,
                stage_id=stage_id,
                data_cursors_hash=cursors,
                rng_offsets_hash=self._rng_hash,
                resource_ledger_hash=ZERO,
                trace_chain_hash=self.trace.chain_hash,
            )
        )

    def checkpoint(self, state: State) -> CheckpointHeader:
        self.trace.sync()
        self.journal.sync()
        _faults.point("checkpoint-before")
        link = CheckpointTraceLink(
            tenant_id=self.tenant,
            run_id=self.run_id,
            t=state.t,
            trace_snapshot_hash=self.trace.chain_hash,
            trace_record_count=self.trace.record_count,
            journal_entry_count=self.journal.entry_count,
            journal_link_hash=self.journal.head_link_hash,
        )
        header = write_checkpoint(
            self.layout.root,
            state,
            trace_link=link,
            bindings=self.bindings,
            tmmu_plan=self.plan,
            checkpoint_hash_prev=(
                self.last_checkpoint.checkpoint_hash if self.last_checkpoint else None
            ),
        )
        _faults.point("checkpoint-after")
        self.commit_record(header, link)
        return header

    def commit_record(self, header: CheckpointHeader, link: CheckpointTraceLink) -> None:
        self.trace.append(
            TraceCheckpointCommit(
                t=header.t,
                checkpoint_hash=header.checkpoint_hash,
                checkpoint_header_hash=header.checkpoint_header_hash,
                checkpoint_merkle_root=header.checkpoint_merkle_root,
                trace_snapshot_hash=link.trace_snapshot_hash,
            )
        )
        self.last_checkpoint = header

    # --- the loop ------------------------------------------------------------------------
    def loop(self, state: State) -> State:
        run = self.run
        frequency = run.manifest.checkpoint_frequency or 0
        total = _estimated_steps(run)
        started = time.perf_counter()
        samples = 0
        while not state.done:
            stage = state.stage
            assert stage is not None
            if stage.type == "train":
                while not stage_finished(state):
                    batch = next_batch(state)
                    state, metrics = step(state, batch)
                    self.steps += 1
                    samples += metrics.batch_size
                    self.last = metrics
                    self.record_step(state, metrics)
                    _faults.point("step")
                    if frequency and state.t % frequency == 0:
                        self.checkpoint(state)
                    if self.progress is not None:
                        elapsed = max(time.perf_counter() - started, 1e-9)
                        self.progress(
                            Progress(state.t, total, stage.step_id, metrics.loss, samples / elapsed)
                        )
                state = advance_stage(state)
            else:
                state = advance_stage(state, t_increment=1)
                result = evaluate(state, stage.dataset_key, stage_id=stage.step_id)
                self.evals.append(result)
                self.record_eval(state, result)
                if frequency and state.t % frequency == 0:
                    self.checkpoint(state)
        return state

    def finish(self, state: State) -> RunSummary:
        run = self.run
        if self.last_checkpoint is None or self.last_checkpoint.t != state.t:
            self.checkpoint(state)
        assert self.last_checkpoint is not None
        final = self.last_checkpoint
        store = local_trust_store([public_key_bytes(self.key)])
        revocations = local_revocation_bundle()
        inputs = CertificateInputs(
            tenant_id=self.tenant,
            run_id=self.run_id,
            replay_token=run.replay_token,
            manifest_hash=run.manifest_hash,
            checkpoint_hash=final.checkpoint_hash,
            policy_bundle_hash=run.identity.policy_bundle_hash,
            policy_gate_hash=ZERO,
            authz_decision_hash=ZERO,
            dependencies_lock_hash=self.bindings.dependencies_lock_hash,
            lockfile_hash=self.ids.lockfile_hash,
            toolchain_hash=self.bindings.toolchain_hash,
            determinism_profile_hash=run.environment.determinism_profile_hash,
            operator_contracts_root_hash=OPERATOR_REGISTRY_ROOT_HASH,
            ir_hash=run.ir_hash,
            lineage_root_hash=self.ids.lineage_root_hash,
            sampler_config_hash=self.ids.sampler_config_hash,
            data_access_plan_hash=self.ids.data_access_plan_hash,
            dataset_snapshot_id=self.ids.dataset_snapshot_id,
            tmmu_plan_hash=self.ids.tmmu_plan_hash,
            backend_binary_hash=self.bindings.backend_binary_hash,
            trust_mode="SOFTWARE_ONLY",
            trust_store_hash=trust_store_hash(store),
            revocation_bundle_hash=revocation_bundle_hash(revocations),
            step_start=1 if state.t else 0,
            step_end=state.t,
        )
        self.trace.append(
            TraceCertificateInputs(
                t=state.t, certificate_inputs_hash=certificate_inputs_hash(inputs)
            )
        )
        end = self.trace.end(status="COMPLETED", final_state_fp=fingerprint(state))
        self.journal.sync()
        _faults.point("trace-ended")
        cert = certify(
            inputs,
            self.key,
            trace_final_hash=end.trace_final_hash,
            verification_time_utc=self.as_of,
            valid_until_utc=self.valid_until,
        )
        atomic_write(self.layout.trust_store, encode(store.to_obj()))
        cert_hash = write_certificate(self.layout.root, cert, revocations=revocations)
        _faults.point("certificate-written")
        records = self.wal.records
        if not any(r.record_type == "CERT_SIGNED" for r in records):
            self.wal.append(
                WalCertSignedBody(
                    certificate_tmp_hash=cert_hash,
                    policy_bundle_hash=run.identity.policy_bundle_hash,
                    determinism_profile_hash=run.environment.determinism_profile_hash,
                    trace_tmp_hash=end.trace_final_hash,
                    checkpoint_tmp_hash=final.checkpoint_hash,
                )
            )
        elif (
            next(r for r in records if r.record_type == "CERT_SIGNED").certificate_tmp_hash
            != cert_hash
        ):
            raise ContractViolationError(
                "the resumed run produced a different certificate than the one the WAL recorded",
                reason="WAL_RECORD_ORDER",
                artifact=str(self.layout.wal),
            )
        _faults.point("wal-cert-signed")
        fin = self.wal.append(
            WalFinalizeBody(
                trace_final_hash=end.trace_final_hash,
                checkpoint_hash=final.checkpoint_hash,
                lineage_root_hash=self.ids.lineage_root_hash,
                certificate_hash=cert_hash,
                manifest_hash=run.manifest_hash,
                policy_bundle_hash=run.identity.policy_bundle_hash,
                operator_registry_hash=OPERATOR_REGISTRY_ROOT_HASH,
                determinism_profile_hash=run.environment.determinism_profile_hash,
            )
        )
        _faults.point("wal-finalized")
        assert isinstance(fin, WalFinalize)
        publish_committed(self.layout.root, pointer_for(fin))
        self.trace.close()
        self.journal.close()
        summary = RunSummary(
            run_id=self.run_id,
            run_dir=str(self.layout.root),
            status="COMMITTED",
            manifest_hash=run.manifest_hash.hex(),
            trace_final_hash=end.trace_final_hash.hex(),
            checkpoint_hash=final.checkpoint_hash.hex(),
            certificate_hash=cert_hash.hex(),
            metrics=self.metrics(),
            steps=state.t,
        )
        return summary

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.last is not None:
            out["train_loss"] = self.last.loss
            out["grad_norm"] = self.last.grad_norm
        for result in self.evals:
            prefix = f"{result.stage_id}."
            for name in ("loss", "accuracy", "mse", "mae"):
                value = getattr(result, name)
                if value is not None:
                    out[prefix + name] = value
        return out


def _estimated_steps(run: Run) -> int:
    total = 0
    for stage in run.manifest.pipeline_stages:
        if stage.type != "train":
            total += 1
            continue
        limits = stage.limits
        n = run.dataset(stage.dataset_key).cardinality
        per_epoch = max(1, math.ceil(n / run.manifest.global_batch_size))
        candidates = []
        if limits is not None and limits.max_steps is not None:
            candidates.append(limits.max_steps)
        if limits is not None and limits.max_epochs is not None:
            candidates.append(limits.max_epochs * per_epoch)
        total += min(candidates) if candidates else per_epoch
    return total


def _signing_key(key_id: str | None) -> Any:
    """The signing key; on first use (no key at all) a local key is created and trusted."""
    from umlos.evidence.keys import list_keys

    if key_id is None and not list_keys():
        generate_key(make_default=True)
    return load_signing_key(key_id)


def _write_inputs(layout: RunLayout, run: Run, source: Path) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    status = {
        "status": "RUNNING",
        "run_id": run.identity.run_id,
        "source_manifest": str(source.resolve()),
        "source_dir": str(source.resolve().parent),
    }
    atomic_write(layout.summary, (json.dumps(status, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(layout.manifest_source, source.read_bytes())
    atomic_write(layout.manifest_normalized, encode(run.manifest.to_obj()))
    atomic_write(layout.environment, encode(run.environment.env_manifest.to_obj()))


def _manifest_of_run_dir(run_dir: Path) -> Path:
    """The manifest a run directory was started from (run.json), else its own copy."""
    layout = RunLayout(run_dir)
    if not layout.manifest_source.exists():
        raise ContractViolationError(
            f"{run_dir} is not a run directory (it has no manifest.yaml)", artifact=str(run_dir)
        )
    if layout.summary.exists():
        original = Path(json.loads(layout.summary.read_text()).get("source_manifest", ""))
        if original.is_file():
            return original
    return layout.manifest_source


def run_directory(runs_root: Path, run: Run) -> RunLayout:
    return RunLayout(Path(runs_root) / run.identity.run_id)


def execute(
    manifest_path: Path | str,
    *,
    runs_root: Path | str = "runs",
    resume_run: bool = False,
    key_id: str | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    as_of: str = DEFAULT_AS_OF,
    valid_until: str = DEFAULT_VALID_UNTIL,
    progress: Callable[[Progress], None] | None = None,
    pins: Pins | None = None,
    base_dir: Path | None = None,
) -> RunSummary:
    """Run ``manifest_path`` with full evidence under ``runs_root/<run_id>/``.

    A committed run with the same identity is not run again: its summary is returned. An
    interrupted one needs ``resume_run=True``. The certificate is signed with ``signing_key``
    when given (replay uses a throw-away key), else with the key store's key ``key_id`` (the
    default key; one is created on first use). ``pins`` replaces the machine's environment and
    package lock with fixed values (golden runs, :mod:`umlos.runner.pins`). ``base_dir``
    resolves relative dataset paths somewhere other than the manifest's directory (replay).
    """
    source = Path(manifest_path)
    if source.is_dir():
        # `umlos run RUN_DIR --resume`: the manifest the run was started from, in its place.
        runs_root = source.resolve().parent
        source = _manifest_of_run_dir(source)
    manifest = load_manifest(source)
    if base_dir is not None:
        manifest = dataclasses.replace(manifest, base_dir=Path(base_dir))
    run = prepare(manifest, environment=pins.environment if pins else None)
    layout = run_directory(Path(runs_root), run)
    if layout.committed.exists():
        return summary_of(layout)
    if layout.root.exists() and not resume_run:
        raise RunExistsError(
            f"an interrupted run exists at {layout.root}; resume it with --resume",
            artifact=str(layout.root),
        )
    session = _Session(
        run,
        layout,
        key_id=key_id,
        signing_key=signing_key,
        as_of=as_of,
        valid_until=valid_until,
        progress=progress,
        lockfile_hash=pins.lockfile_hash if pins else None,
    )
    resumed_from: int | None = None
    records = (
        resume(layout.root, tenant_id=run.manifest.tenant_id, run_id=run.identity.run_id)
        if layout.root.exists()
        else ()
    )
    if records and isinstance(records[-1], WalFinalize):
        # Crashed between a durable FINALIZE and the pointer: roll forward.
        publish_committed(layout.root, pointer_for(records[-1]))
        return summary_of(layout)
    if records and isinstance(records[-1], WalRollback):
        raise RunExistsError(
            f"the run at {layout.root} was rolled back and cannot be resumed; move it away",
            artifact=str(layout.root),
        )
    if not records:
        # Nothing durable yet (or a fresh run): start from a clean directory.
        if layout.root.exists():
            shutil.rmtree(layout.root)
        _write_inputs(layout, run, source)
        session.wal = RunCommitWal(
            layout.root, tenant_id=run.manifest.tenant_id, run_id=run.identity.run_id
        )
        session.wal.append(session.prepare_body())
        _faults.point("wal-prepared")
        layout.trace.parent.mkdir(parents=True, exist_ok=True)
        layout.journal.parent.mkdir(parents=True, exist_ok=True)
        session.trace = TraceWriter.create(layout.trace, session.policy)
        session.journal = JournalWriter.create(layout.journal)
        session.trace.append(session.run_header())
        state = init(run)
    else:
        session.wal = RunCommitWal(
            layout.root, tenant_id=run.manifest.tenant_id, run_id=run.identity.run_id
        )
        ref = latest_checkpoint(layout.root)
        if ref is None:
            # No checkpoint yet: keep only the RUN_HEADER (if it was written) and start over.
            layout.trace.parent.mkdir(parents=True, exist_ok=True)
            layout.journal.parent.mkdir(parents=True, exist_ok=True)
            if layout.trace.exists() and layout.trace.stat().st_size:
                session.trace = TraceWriter.open_existing(
                    layout.trace, session.policy, up_to_records=1
                )
            else:
                layout.trace.unlink(missing_ok=True)
                session.trace = TraceWriter.create(layout.trace, session.policy)
                session.trace.append(session.run_header())
            if layout.journal.exists():
                session.journal = JournalWriter.open_existing(layout.journal, up_to_entries=0)
            else:
                session.journal = JournalWriter.create(layout.journal)
            state = init(run)
        else:
            loaded = load_checkpoint(ref.path, run, expected=session.bindings)
            if not ref.published:  # a crash or damage took its pointer: publish it again
                publish_checkpoint(layout.root, loaded.header)
            link = loaded.trace_link
            session.trace = TraceWriter.open_existing(
                layout.trace,
                session.policy,
                up_to_records=link.trace_record_count,
                expected_chain_hash=link.trace_snapshot_hash,
            )
            session.journal = JournalWriter.open_existing(
                layout.journal,
                up_to_entries=link.journal_entry_count or 0,
                expected_link_hash=link.journal_link_hash,
            )
            session.commit_record(loaded.header, link)
            state = loaded.state
            resumed_from = state.t
    state = session.loop(state)
    summary = session.finish(state)
    summary.resumed_from_t = resumed_from
    summary.source_dir = str(source.resolve().parent)
    atomic_write(
        layout.summary, (json.dumps(summary.as_dict(), indent=2, sort_keys=True) + "\n").encode()
    )
    return summary


def summary_of(layout: RunLayout) -> RunSummary:
    """The summary of a committed run, read back from its evidence."""
    from umlos.evidence.wal import read_wal

    records = read_wal(layout.wal)
    fin = records[-1]
    assert isinstance(fin, WalFinalize)
    metrics: dict[str, Any] = {}
    source_dir: str | None = None
    if layout.summary.exists():
        saved = json.loads(layout.summary.read_text())
        metrics = dict(saved.get("metrics", {}))
        source_dir = saved.get("source_dir")
    from umlos.evidence.checkpoint import verify_checkpoint

    ref = latest_checkpoint(layout.root)
    steps = verify_checkpoint(ref.path).header.t if ref is not None else 0
    return RunSummary(
        run_id=fin.run_id,
        run_dir=str(layout.root),
        status="COMMITTED",
        manifest_hash=fin.manifest_hash.hex(),
        trace_final_hash=fin.trace_final_hash.hex(),
        checkpoint_hash=fin.checkpoint_hash.hex(),
        certificate_hash=fin.certificate_hash.hex(),
        metrics=metrics,
        steps=steps,
        source_dir=source_dir,
    )
