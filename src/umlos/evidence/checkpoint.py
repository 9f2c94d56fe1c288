"""Checkpoints: a content-addressed directory per step, written atomically, verified in full.

Format: ``docs/formats/checkpoint.md``; schema: ``contracts/schemas/checkpoint.yaml``. A run's
checkpoints live under ``<run_dir>/checkpoints/``; step ``t`` is written to the directory
``<t:020d>/`` and published by the pointer file ``<t:020d>.committed``::

    checkpoint_header.cbor        CheckpointHeader (every identity the checkpoint binds)
    checkpoint_manifest.cbor      CheckpointManifest (the shard list, sorted by path)
    state/training_state.cbor     TrainingStateHeader (counters, cursors, RNG, DP accountant,
                                  tensor descriptors), canonical CBOR
    tensors/rank=0/shard=0.bin    parameter bytes        } the training state's tensor blob,
    optimizer/rank=0/state.bin    optimizer-slot bytes   } split at the first slot's offset
    tmmu/plan.cbor                TmmuPlan in force
    trace/link.cbor               CheckpointTraceLink (trace length and chain value at t)
    artifacts/artifact_index.cbor the run's artifact index, when the caller supplies one

Every file is a pure function of the state and the bindings: no time, host or PID enters, so
the same state always gives the same bytes and the same ``checkpoint_hash``.

**Write** (:func:`write_checkpoint`): every file into ``.<t:020d>.tmp/`` (``O_EXCL``, fsync),
fsync each directory bottom-up, ``rename`` to ``<t:020d>/``, fsync ``checkpoints/``, then
publish the pointer create-if-absent (hard link of a fsynced temp file, so it is never seen
half written). A crash before the rename leaves only a dot-directory that readers ignore and
the next write removes; a crash after it leaves a complete checkpoint without a pointer.

**Read** (:func:`verify_checkpoint`, :func:`load_checkpoint`), in this order, before any
restored value is used:

1. Header: canonical CBOR, schema; ``checkpoint_header_hash`` recomputed.
2. Manifest: canonical CBOR, schema; its digest equals ``checkpoint_manifest_hash``.
3. Layout: shard paths sorted, unique, exactly the v1 file set; no unlisted file, no link.
4. Files: every shard's size and SHA-256.
5. Roots: Merkle root (manifest and header), ``tensors_root_hash``, ``optimizer_state_root_hash``.
6. ``checkpoint_hash = Commit(CHECKPOINT_COMMIT, [header_hash, manifest_hash, merkle_root])``.
7. Records: training state, trace link, TMMU plan decode; every value the header repeats
   (state, cursor, RNG, descriptor, DP, plan and trace hashes, t, run) equals its source.
8. Tensor layout: the descriptors tile the two tensor files exactly.
9. (load) Run bindings: tenant, run id, replay token, manifest and IR hash, DP enablement, and
   every field of ``expected`` bindings; then ``umlos.train.state.restore`` (per-tensor SHA-256).

Failures raise :class:`~umlos.errors.CheckpointInvalidError` with one reason of
:data:`CHECKPOINT_REASONS` (plus the training state's own ``STATE_*`` / ``TENSOR_*``).
File-system errors while writing propagate as ``OSError``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, get_args

from umlos import _faults
from umlos._generated import tags
from umlos._generated.records import (
    CheckpointHeader,
    CheckpointManifest,
    CheckpointPointer,
    CheckpointShard,
    CheckpointTraceLink,
    DpAccountantState,
    TensorDescriptor,
    TmmuPlan,
    TrainingStateHeader,
)
from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH
from umlos.codec import CborError, commit_hash, decode, digest, encode, merkle_root
from umlos.errors import CheckpointInvalidError, Error
from umlos.evidence._frames import fsync_dir
from umlos.numerics.policy import RNG_STATE_TAG
from umlos.train import state as state_mod
from umlos.train.run import Run
from umlos.train.state import State

CheckpointReason = Literal[
    "FILE_MISSING",
    "FILE_UNLISTED",
    "FILE_SIZE",
    "FILE_HASH",
    "RECORD_INVALID",
    "LAYOUT",
    "MERKLE_ROOT",
    "SHARD_ROOT",
    "MANIFEST_HASH",
    "HEADER_HASH",
    "CHECKPOINT_HASH",
    "HEADER_BINDING",
    "POINTER",
    "CHECKPOINT_CONFLICT",
    "STATE_MISMATCH",
]
CHECKPOINT_REASONS: Final = frozenset(get_args(CheckpointReason))
"""Reasons this module raises; restoring adds the training state's STATE_* and TENSOR_*."""

CHECKPOINTS_DIR: Final = "checkpoints"
HEADER_FILE: Final = "checkpoint_header.cbor"
MANIFEST_FILE: Final = "checkpoint_manifest.cbor"
STATE_FILE: Final = "state/training_state.cbor"
PARAMS_FILE: Final = "tensors/rank=0/shard=0.bin"
OPTIMIZER_FILE: Final = "optimizer/rank=0/state.bin"
PLAN_FILE: Final = "tmmu/plan.cbor"
LINK_FILE: Final = "trace/link.cbor"
ARTIFACT_INDEX_FILE: Final = "artifacts/artifact_index.cbor"
POINTER_SUFFIX: Final = ".committed"
_REQUIRED_SHARDS: Final = frozenset({STATE_FILE, PARAMS_FILE, OPTIMIZER_FILE, PLAN_FILE, LINK_FILE})
_OPTIONAL_SHARDS: Final = frozenset({ARTIFACT_INDEX_FILE})

# Record files (header, manifest, training-state header, plan, link, pointer) are read whole
# before decoding. The largest is the training-state header: at most 12,288 tensor descriptors
# (training_state.yaml) of ~200 bytes, about 2.5 MB; a TMMU plan of a very large IR stays well
# below this bound too. A larger file is corrupt or hostile, so it is refused unread.
MAX_RECORD_BYTES: Final = 64 * 1024 * 1024
# The v1 layout has at most six shards; a longer shard list is not one this version wrote.
MAX_SHARDS: Final = 64
_STEP_DIR: Final = re.compile(r"^[0-9]{20}$")
_U64_MAX: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointBindings:
    """The run-level identities a checkpoint header binds that the state does not carry.

    Tenant, run id, spec version, replay token, manifest hash and IR hash come from
    ``state.run``; ``tmmu_plan_hash`` from the plan passed to :func:`write_checkpoint`.
    :meth:`from_run` fills what the run already knows.
    """

    sampler_config_hash: bytes
    backend_binary_hash: bytes
    policy_bundle_hash: bytes
    determinism_profile_hash: bytes
    lockfile_hash: bytes
    toolchain_hash: bytes
    dependencies_lock_hash: bytes
    operator_contracts_root_hash: bytes
    runtime_env_hash: bytes
    code_commit_hash: bytes
    lineage_root_hash: bytes
    data_access_plan_hash: bytes | None = None
    dataset_snapshot_id: str | None = None
    artifact_index_hash: bytes | None = None

    @classmethod
    def from_run(
        cls,
        run: Run,
        *,
        sampler_config_hash: bytes,
        lockfile_hash: bytes,
        code_commit_hash: bytes,
        lineage_root_hash: bytes,
        data_access_plan_hash: bytes | None = None,
        dataset_snapshot_id: str | None = None,
        artifact_index_hash: bytes | None = None,
    ) -> CheckpointBindings:
        """Bindings with the environment, policy and registry identities taken from ``run``;
        ``dependencies_lock_hash = Commit(DEPENDENCIES_LOCK, [lockfile, toolchain, env])``."""
        env = run.environment.env_manifest
        return cls(
            sampler_config_hash=sampler_config_hash,
            backend_binary_hash=env.backend_binary_hash,
            policy_bundle_hash=run.identity.policy_bundle_hash,
            determinism_profile_hash=run.environment.determinism_profile_hash,
            lockfile_hash=lockfile_hash,
            toolchain_hash=env.toolchain_hash,
            dependencies_lock_hash=commit_hash(
                tags.DEPENDENCIES_LOCK,
                [lockfile_hash, env.toolchain_hash, run.environment.env_manifest_hash],
            ),
            operator_contracts_root_hash=OPERATOR_REGISTRY_ROOT_HASH,
            runtime_env_hash=run.environment.env_manifest_hash,
            code_commit_hash=code_commit_hash,
            lineage_root_hash=lineage_root_hash,
            data_access_plan_hash=data_access_plan_hash,
            dataset_snapshot_id=dataset_snapshot_id,
            artifact_index_hash=artifact_index_hash,
        )


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint directory whose every file, root and hash verified (steps 1-8)."""

    path: Path
    header: CheckpointHeader
    manifest: CheckpointManifest
    state_header: TrainingStateHeader
    trace_link: CheckpointTraceLink
    tmmu_plan: TmmuPlan
    _state_bytes: bytes
    _blob: bytes


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    """A verified checkpoint restored for a run: the state plus what resume needs beside it."""

    state: State
    header: CheckpointHeader
    trace_link: CheckpointTraceLink
    tmmu_plan: TmmuPlan
    dp_accountant: DpAccountantState | None


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    """Where the latest valid checkpoint is; ``published`` is False for a complete checkpoint
    whose pointer is missing or torn (a crash between the rename and the pointer)."""

    path: Path
    t: int
    checkpoint_hash: bytes
    published: bool


def step_name(t: int) -> str:
    """Directory name of step ``t``: decimal, zero-padded to 20 digits (lexical = numeric).

    >>> step_name(6)
    '00000000000000000006'
    """
    if type(t) is not int or not 0 <= t <= _U64_MAX:
        raise ValueError(f"step {t!r} is not a uint64")
    return f"{t:020d}"


def shard_leaf(shard: CheckpointShard) -> bytes:
    """``Commit(CKPT_SHARD_LEAF, [path, sha256, size_bytes])``."""
    return commit_hash(tags.CKPT_SHARD_LEAF, [shard.path, shard.sha256, shard.size_bytes])


def shard_roots(shards: Sequence[CheckpointShard]) -> tuple[bytes, bytes, bytes]:
    """``(checkpoint_merkle_root, tensors_root_hash, optimizer_state_root_hash)`` of shards
    already sorted by path (the Merkle tree is :func:`umlos.codec.merkle_root`)."""
    leaves = [(s.path, shard_leaf(s)) for s in shards]
    root = merkle_root(
        [leaf for _, leaf in leaves],
        node_tag=tags.CKPT_MERKLE_NODE,
        empty_tag=tags.CKPT_MERKLE_EMPTY_ROOT,
    )
    tensors = commit_hash(tags.TENSORS_ROOT, [x for p, x in leaves if p.startswith("tensors/")])
    optimizer = commit_hash(
        tags.OPTIMIZER_ROOT, [x for p, x in leaves if p.startswith("optimizer/")]
    )
    return root, tensors, optimizer


def header_hash(header: CheckpointHeader) -> bytes:
    """``Digest(header without checkpoint_header_hash and checkpoint_hash)``."""
    obj = header.to_obj()
    del obj["checkpoint_header_hash"], obj["checkpoint_hash"]
    return digest(obj)


def checkpoint_commitment(header_digest: bytes, manifest_digest: bytes, merkle: bytes) -> bytes:
    """``Commit(CHECKPOINT_COMMIT, [header_hash, manifest_hash, merkle_root])`` (A22)."""
    return commit_hash(tags.CHECKPOINT_COMMIT, [header_digest, manifest_digest, merkle])


def rng_state_hash(head: TrainingStateHeader) -> bytes:
    """Digest of the per-stream ``Digest([RNG_STATE_TAG, k0, k1, c0..c3])`` in stream-name order."""
    streams = sorted(head.rng_streams, key=lambda s: s.stream.encode())
    return digest([digest([RNG_STATE_TAG, *s.key, *s.counter]) for s in streams])


def _state_hashes(head: TrainingStateHeader) -> dict[str, Any]:
    """The header fields that summarize the training state (step 7 recomputes them)."""
    out: dict[str, Any] = {
        "t": head.t,
        "rng_state_hash": rng_state_hash(head),
        "data_cursors_hash": digest({k: c.to_obj() for k, c in head.data_cursors.items()}),
        "weights_manifest_hash": digest([d.to_obj() for d in head.parameters]),
        "optimizer_manifest_hash": digest([d.to_obj() for d in head.optimizer_slots]),
        "training_state_hash": digest(head.to_obj()),
        "dp_enabled": head.dp_accountant is not None,
        "manifest_hash": head.manifest_hash,
        "ir_hash": head.ir_hash,
        "replay_token": head.replay_token,
    }
    if head.dp_accountant is not None:
        out["dp_accountant_state_hash"] = digest(head.dp_accountant.to_obj())
    return out


def _dp_enabled(run: Run) -> bool:
    security = run.manifest.security
    return security is not None and security.differential_privacy is not None


# --- write ------------------------------------------------------------------------------------


def write_checkpoint(
    run_dir: Path,
    state: State,
    *,
    trace_link: CheckpointTraceLink,
    bindings: CheckpointBindings,
    tmmu_plan: TmmuPlan,
    dp_accountant: DpAccountantState | None = None,
    checkpoint_hash_prev: bytes | None = None,
    artifact_index: bytes | None = None,
) -> CheckpointHeader:
    """Write and publish the checkpoint of ``state`` under ``run_dir/checkpoints/``.

    ``trace_link`` says where the checkpoint sits in the trace (its ``t`` must be the state's);
    ``dp_accountant`` is required iff the manifest enables differential privacy;
    ``artifact_index`` is the canonical CBOR of the run's artifact index, stored as a shard.
    Writing the same state again is a no-op that returns the same header; a *different* valid
    checkpoint already at step ``t`` is ``CHECKPOINT_CONFLICT``. One writer per run directory.
    """
    run = state.run
    if trace_link.t != state.t or (trace_link.tenant_id, trace_link.run_id) != (
        run.manifest.tenant_id,
        run.identity.run_id,
    ):
        raise CheckpointInvalidError(
            f"trace link (t={trace_link.t}, run {trace_link.run_id}) does not describe this state "
            f"(t={state.t}, run {run.identity.run_id})",
            reason="HEADER_BINDING",
            artifact=LINK_FILE,
        )
    if (dp_accountant is not None) != _dp_enabled(run):
        raise CheckpointInvalidError(
            "a DP accountant state is required iff the manifest enables differential privacy",
            reason="STATE_MISMATCH",
            artifact=STATE_FILE,
            path="$.dp_accountant",
        )
    if tmmu_plan.ir_hash != run.ir_hash:
        raise CheckpointInvalidError(
            "the TMMU plan was made for another IR",
            reason="STATE_MISMATCH",
            artifact=PLAN_FILE,
            path="$.ir_hash",
        )
    if (artifact_index is None) != (bindings.artifact_index_hash is None):
        raise CheckpointInvalidError(
            "artifact_index and bindings.artifact_index_hash go together",
            reason="HEADER_BINDING",
            artifact=ARTIFACT_INDEX_FILE,
        )
    program = run.program
    head, blob = state_mod.header(
        state, program.to_host(state.params), program.to_host(state.opt_state)
    )
    head = replace(head, tmmu_plan_hash=tmmu_plan.tmmu_plan_hash, dp_accountant=dp_accountant)
    split = head.optimizer_slots[0].byte_offset if head.optimizer_slots else len(blob)
    files: dict[str, bytes] = {
        STATE_FILE: encode(head.to_obj()),
        PARAMS_FILE: blob[:split],
        OPTIMIZER_FILE: blob[split:],
        PLAN_FILE: encode(tmmu_plan.to_obj()),
        LINK_FILE: encode(trace_link.to_obj()),
    }
    if artifact_index is not None:
        files[ARTIFACT_INDEX_FILE] = artifact_index
    shards = tuple(
        CheckpointShard(path=p, sha256=hashlib.sha256(files[p]).digest(), size_bytes=len(files[p]))
        for p in sorted(files, key=str.encode)
    )
    merkle, tensors_root, optimizer_root = shard_roots(shards)
    summary = _state_hashes(head)
    manifest = CheckpointManifest(
        checkpoint_merkle_root=merkle,
        shards=shards,
        weights_manifest_hash=summary["weights_manifest_hash"],
        optimizer_manifest_hash=summary["optimizer_manifest_hash"],
        dataset_snapshot_id=bindings.dataset_snapshot_id,
        artifact_index_hash=bindings.artifact_index_hash,
    )
    manifest_bytes = encode(manifest.to_obj())
    manifest_digest = hashlib.sha256(manifest_bytes).digest()
    placeholder = CheckpointHeader(
        tenant_id=run.manifest.tenant_id,
        run_id=run.identity.run_id,
        spec_version=run.manifest.spec_version,
        trace_snapshot_hash=trace_link.trace_snapshot_hash,
        sampler_config_hash=bindings.sampler_config_hash,
        data_access_plan_hash=bindings.data_access_plan_hash,
        tmmu_plan_hash=tmmu_plan.tmmu_plan_hash,
        backend_binary_hash=bindings.backend_binary_hash,
        checkpoint_merkle_root=merkle,
        policy_bundle_hash=bindings.policy_bundle_hash,
        determinism_profile_hash=bindings.determinism_profile_hash,
        lockfile_hash=bindings.lockfile_hash,
        toolchain_hash=bindings.toolchain_hash,
        dependencies_lock_hash=bindings.dependencies_lock_hash,
        operator_contracts_root_hash=bindings.operator_contracts_root_hash,
        runtime_env_hash=bindings.runtime_env_hash,
        code_commit_hash=bindings.code_commit_hash,
        lineage_root_hash=bindings.lineage_root_hash,
        tensors_root_hash=tensors_root,
        optimizer_state_root_hash=optimizer_root,
        checkpoint_hash_prev=checkpoint_hash_prev,
        checkpoint_manifest_hash=manifest_digest,
        checkpoint_header_hash=bytes(32),
        checkpoint_hash=bytes(32),
        **summary,
    )
    # Validate through the schema once: a binding of the wrong length fails here, not on read.
    placeholder = CheckpointHeader.from_obj(placeholder.to_obj())
    h_digest = header_hash(placeholder)
    header = replace(
        placeholder,
        checkpoint_header_hash=h_digest,
        checkpoint_hash=checkpoint_commitment(h_digest, manifest_digest, merkle),
    )
    files[HEADER_FILE] = encode(header.to_obj())
    files[MANIFEST_FILE] = manifest_bytes
    _install(Path(run_dir), header, files)
    return header


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write all of ``data``, fsync, close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(run_dir: Path, header: CheckpointHeader, files: Mapping[str, bytes]) -> None:
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(header.t)
    final = root / name
    pointer_path = root / f"{name}{POINTER_SUFFIX}"
    pointer = _pointer(header)
    pointer_bytes = encode(pointer.to_obj())
    # A step published for another checkpoint is refused before anything is written.
    try:
        published = read_pointer(pointer_path) == pointer
    except FileNotFoundError:
        published = False
    except CheckpointInvalidError:
        pointer_path.unlink()  # torn or damaged: this write republishes the step
        published = False
    else:
        if not published:
            raise CheckpointInvalidError(
                f"step {header.t} is already published for another checkpoint",
                reason="CHECKPOINT_CONFLICT",
                artifact=str(pointer_path),
                context=_context(header),
            )
    if final.exists():
        try:
            existing = verify_checkpoint(final).header
        except CheckpointInvalidError:
            # A damaged directory (disk fault, hand edit) at this step: keep it aside for the
            # audit trail rather than delete it, and write the checkpoint afresh.
            aside = root / f".{name}.invalid"
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(final, aside)
        else:
            if existing.checkpoint_hash != header.checkpoint_hash:
                raise CheckpointInvalidError(
                    f"step {header.t} already has a different valid checkpoint",
                    reason="CHECKPOINT_CONFLICT",
                    artifact=str(final),
                    context=_context(header),
                )
    if not final.exists():
        tmp = root / f".{name}.tmp"
        if tmp.exists():  # left by a crashed write: never renamed, never published
            shutil.rmtree(tmp)
        tmp.mkdir()
        dirs = {tmp}
        for rel in sorted(files, key=str.encode):
            target = tmp / rel
            for parent in reversed(target.relative_to(tmp).parents[:-1]):
                (tmp / parent).mkdir(exist_ok=True)
                dirs.add(tmp / parent)
            _write_file(target, files[rel])
            _faults.point("checkpoint-file")  # crash tests: mid-checkpoint, between files
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        _faults.point("checkpoint-rename")
        os.rename(tmp, final)
        fsync_dir(root)
    if not published:
        _faults.point("checkpoint-pointer")
        _publish_pointer(pointer_path, pointer_bytes)


def _pointer(header: CheckpointHeader) -> CheckpointPointer:
    name = step_name(header.t)
    return CheckpointPointer(
        tenant_id=header.tenant_id,
        run_id=header.run_id,
        t=header.t,
        checkpoint_hash=header.checkpoint_hash,
        path=f"{CHECKPOINTS_DIR}/{name}",
    )


def publish_checkpoint(run_dir: Path, header: CheckpointHeader) -> None:
    """(Re)publish the pointer of a checkpoint that verified: a damaged or missing pointer is
    replaced; a correct one is left alone. Resume calls it after restoring that checkpoint."""
    pointer = _pointer(header)
    path = Path(run_dir) / CHECKPOINTS_DIR / f"{step_name(header.t)}{POINTER_SUFFIX}"
    try:
        if read_pointer(path) == pointer:
            return
    except (FileNotFoundError, CheckpointInvalidError):
        pass
    path.unlink(missing_ok=True)
    _publish_pointer(path, encode(pointer.to_obj()))


def _publish_pointer(path: Path, data: bytes) -> None:
    """Create-if-absent: a fsynced temp file hard-linked into place, so a reader never sees a
    half-written pointer and an existing one is never replaced."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_file(tmp, data)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def _context(header: CheckpointHeader) -> dict[str, Any]:
    return {"t": header.t, "run_id": header.run_id, "checkpoint_hash": header.checkpoint_hash}


# --- read -------------------------------------------------------------------------------------


def _fail(
    message: str, *, reason: CheckpointReason, artifact: str, path: str | None = None, **ctx: Any
) -> CheckpointInvalidError:
    return CheckpointInvalidError(message, reason=reason, artifact=artifact, path=path, context=ctx)


def _read_record(base: Path, rel: str) -> bytes:
    try:
        fd = os.open(base / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise _fail(f"{rel} is missing", reason="FILE_MISSING", artifact=rel) from None
    except OSError as exc:  # a symlink (ELOOP) or an unreadable entry
        raise _fail(f"{rel} cannot be opened: {exc}", reason="LAYOUT", artifact=rel) from exc
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_RECORD_BYTES:
            raise _fail(
                f"{rel} has {size} bytes, more than the {MAX_RECORD_BYTES} a record may have",
                reason="FILE_SIZE",
                artifact=rel,
            )
        return f.read()


def _decode_record(data: bytes, cls: Any, artifact: str) -> Any:
    """Strict decode then schema validation; any failure is ``RECORD_INVALID``."""
    try:
        return cls.from_obj(decode(data))
    except CborError as exc:
        raise CheckpointInvalidError(
            f"{artifact} is not canonical CBOR: {exc.message}",
            reason="RECORD_INVALID",
            artifact=artifact,
            offset=exc.offset,
        ) from exc
    except Error as exc:  # generated validators: API_TYPE_MISMATCH / API_SHAPE_MISMATCH
        raise CheckpointInvalidError(
            f"{artifact} does not validate: {exc.message}",
            reason="RECORD_INVALID",
            artifact=artifact,
            path=exc.path,
        ) from exc


def _listed_files(base: Path) -> Iterator[str]:
    """Every entry under ``base`` as a POSIX relative path; links and specials are ``LAYOUT``."""
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base)
        for name in [*dirnames, *filenames]:
            rel = (rel_dir / name).as_posix()
            mode = os.lstat(Path(dirpath) / name).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise _fail(
                    f"{rel} is not a plain file or directory", reason="LAYOUT", artifact=rel
                )
            if stat.S_ISREG(mode):
                yield rel


def verify_checkpoint(path: Path) -> VerifiedCheckpoint:
    """Run steps 1-8 of the module procedure on the checkpoint directory ``path``.

    Needs no run: it proves the directory is exactly what its header commits to.
    """
    base = Path(path)
    if not base.is_dir():
        raise _fail(
            f"{base} is not a checkpoint directory", reason="FILE_MISSING", artifact=str(base)
        )

    # 1. Header and its hash.
    header: CheckpointHeader = _decode_record(
        _read_record(base, HEADER_FILE), CheckpointHeader, HEADER_FILE
    )
    ctx = _context(header)
    h_digest = header_hash(header)
    if h_digest != header.checkpoint_header_hash:
        raise _fail(
            "checkpoint_header_hash does not match the header",
            reason="HEADER_HASH",
            artifact=HEADER_FILE,
            **ctx,
        )

    # 2. Manifest and its hash.
    manifest_bytes = _read_record(base, MANIFEST_FILE)
    manifest: CheckpointManifest = _decode_record(manifest_bytes, CheckpointManifest, MANIFEST_FILE)
    m_digest = hashlib.sha256(manifest_bytes).digest()  # = Digest(manifest): decode was strict
    if m_digest != header.checkpoint_manifest_hash:
        raise _fail(
            "the manifest does not match checkpoint_manifest_hash",
            reason="MANIFEST_HASH",
            artifact=MANIFEST_FILE,
            **ctx,
        )

    # 3. Layout.
    paths = [s.path for s in manifest.shards]
    if len(paths) > MAX_SHARDS:
        raise _fail(
            f"{len(paths)} shards, more than {MAX_SHARDS}",
            reason="LAYOUT",
            artifact=MANIFEST_FILE,
            **ctx,
        )
    if paths != sorted(set(paths), key=str.encode):
        raise _fail(
            "shards are not sorted by path and unique",
            reason="LAYOUT",
            artifact=MANIFEST_FILE,
            path="$.shards",
            **ctx,
        )
    listed = set(paths)
    if not _REQUIRED_SHARDS <= listed <= _REQUIRED_SHARDS | _OPTIONAL_SHARDS:
        raise _fail(
            f"shard list {sorted(listed)} is not the v1 layout",
            reason="LAYOUT",
            artifact=MANIFEST_FILE,
            path="$.shards",
            **ctx,
        )
    if (ARTIFACT_INDEX_FILE in listed) != (manifest.artifact_index_hash is not None):
        raise _fail(
            "artifact index shard and artifact_index_hash go together",
            reason="LAYOUT",
            artifact=MANIFEST_FILE,
            **ctx,
        )
    present = set(_listed_files(base))
    unlisted = sorted(present - listed - {HEADER_FILE, MANIFEST_FILE})
    if unlisted:
        raise _fail(
            f"{unlisted[0]} is not listed in the manifest",
            reason="FILE_UNLISTED",
            artifact=unlisted[0],
            **ctx,
        )

    # 4. Files.
    contents: dict[str, bytes] = {}
    for index, shard in enumerate(manifest.shards):
        where = f"$.shards[{index}]"
        if shard.path not in present:
            raise _fail(
                f"{shard.path} is missing",
                reason="FILE_MISSING",
                artifact=shard.path,
                path=where,
                **ctx,
            )
        with open(base / shard.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != shard.size_bytes:
                raise _fail(
                    f"{shard.path} has {size} bytes, the manifest says {shard.size_bytes}",
                    reason="FILE_SIZE",
                    artifact=shard.path,
                    path=where,
                    **ctx,
                )
            data = f.read()
        if hashlib.sha256(data).digest() != shard.sha256:
            raise _fail(
                f"{shard.path} does not match its sha256",
                reason="FILE_HASH",
                artifact=shard.path,
                path=where,
                **ctx,
            )
        contents[shard.path] = data

    # 5. Roots.
    merkle, tensors_root, optimizer_root = shard_roots(manifest.shards)
    if not merkle == manifest.checkpoint_merkle_root == header.checkpoint_merkle_root:
        raise _fail(
            "checkpoint_merkle_root does not match the shards",
            reason="MERKLE_ROOT",
            artifact=MANIFEST_FILE,
            **ctx,
        )
    if (
        tensors_root != header.tensors_root_hash
        or optimizer_root != header.optimizer_state_root_hash
    ):
        raise _fail(
            "tensors_root_hash or optimizer_state_root_hash does not match the shards",
            reason="SHARD_ROOT",
            artifact=HEADER_FILE,
            **ctx,
        )

    # 6. The commitment.
    if checkpoint_commitment(h_digest, m_digest, merkle) != header.checkpoint_hash:
        raise _fail(
            "checkpoint_hash does not match its preimage",
            reason="CHECKPOINT_HASH",
            artifact=HEADER_FILE,
            **ctx,
        )

    # 7. Records and every value the header repeats.
    state_bytes = contents[STATE_FILE]
    head: TrainingStateHeader = _decode_record(state_bytes, TrainingStateHeader, STATE_FILE)
    link: CheckpointTraceLink = _decode_record(contents[LINK_FILE], CheckpointTraceLink, LINK_FILE)
    plan: TmmuPlan = _decode_record(contents[PLAN_FILE], TmmuPlan, PLAN_FILE)
    summary = _state_hashes(head)
    checks: list[tuple[str, object, object]] = [
        (f"$.{k}", getattr(header, k), v) for k, v in summary.items()
    ]
    checks += [
        (
            "$.dp_accountant_state_hash",
            header.dp_accountant_state_hash,
            summary.get("dp_accountant_state_hash"),
        ),
        ("$.weights_manifest_hash", manifest.weights_manifest_hash, header.weights_manifest_hash),
        (
            "$.optimizer_manifest_hash",
            manifest.optimizer_manifest_hash,
            header.optimizer_manifest_hash,
        ),
        ("$.tmmu_plan_hash", plan.tmmu_plan_hash, header.tmmu_plan_hash),
        ("$.tmmu_plan_hash", head.tmmu_plan_hash, header.tmmu_plan_hash),
        ("$.ir_hash", plan.ir_hash, header.ir_hash),
        ("$.t", link.t, header.t),
        ("$.tenant_id", link.tenant_id, header.tenant_id),
        ("$.run_id", link.run_id, header.run_id),
        ("$.trace_snapshot_hash", link.trace_snapshot_hash, header.trace_snapshot_hash),
    ]
    for where, ours, theirs in checks:
        if ours != theirs:
            raise _fail(
                f"header value {where} differs from the record it summarizes",
                reason="HEADER_BINDING",
                artifact=HEADER_FILE,
                path=where,
                **ctx,
            )

    # 8. The tensor descriptors tile the two tensor files.
    params, slots = contents[PARAMS_FILE], contents[OPTIMIZER_FILE]
    split_ok = (
        head.optimizer_slots[0].byte_offset == len(params) if head.optimizer_slots else not slots
    )
    last = _end(head.optimizer_slots) if head.optimizer_slots else _end(head.parameters)
    if not split_ok or _end(head.parameters) > len(params) or last != len(params) + len(slots):
        raise _fail(
            "tensor descriptors do not match the tensor files",
            reason="LAYOUT",
            artifact=STATE_FILE,
            path="$.parameters",
            **ctx,
        )
    return VerifiedCheckpoint(base, header, manifest, head, link, plan, state_bytes, params + slots)


def _end(descriptors: Sequence[TensorDescriptor]) -> int:
    return max((d.byte_offset + d.byte_length for d in descriptors), default=0)


def load_checkpoint(
    path: Path,
    run: Run,
    *,
    expected: CheckpointBindings | None = None,
    checkpoint_hash: bytes | None = None,
) -> LoadedCheckpoint:
    """Verify the checkpoint at ``path`` (steps 1-8), bind it to ``run`` (step 9), restore it.

    ``expected`` adds every binding field to the comparison (restore precondition: the run's
    sampler, plan, backend, policy and profile identities); ``checkpoint_hash`` is the value a
    pointer or the trace names.
    """
    v = verify_checkpoint(path)
    header = v.header
    ctx = _context(header)
    if checkpoint_hash is not None and checkpoint_hash != header.checkpoint_hash:
        raise _fail(
            "checkpoint_hash differs from the expected one",
            reason="CHECKPOINT_HASH",
            artifact=HEADER_FILE,
            **ctx,
        )
    # 9. Run bindings.
    ours: list[tuple[str, object, object]] = [
        ("tenant_id", run.manifest.tenant_id, header.tenant_id),
        ("run_id", run.identity.run_id, header.run_id),
        ("replay_token", run.replay_token, header.replay_token),
        ("manifest_hash", run.manifest_hash, header.manifest_hash),
        ("ir_hash", run.ir_hash, header.ir_hash),
        ("spec_version", run.manifest.spec_version, header.spec_version),
        ("dp_enabled", _dp_enabled(run), header.dp_enabled),
    ]
    if expected is not None:
        ours += [
            (f.name, getattr(expected, f.name), _bound(header, v.manifest, f.name))
            for f in fields(expected)
        ]
    for name, mine, theirs in ours:
        if mine != theirs:
            raise _fail(
                f"checkpoint belongs to another run or configuration ({name} differs)",
                reason="STATE_MISMATCH",
                artifact=HEADER_FILE,
                path=f"$.{name}",
                **ctx,
            )
    data = state_mod._HEAD.pack(state_mod.MAGIC, len(v._state_bytes)) + v._state_bytes + v._blob
    state = state_mod.restore(run, data, artifact=str(Path(path) / STATE_FILE))
    return LoadedCheckpoint(state, header, v.trace_link, v.tmmu_plan, v.state_header.dp_accountant)


def _bound(header: CheckpointHeader, manifest: CheckpointManifest, name: str) -> object:
    if name in ("dataset_snapshot_id", "artifact_index_hash"):
        return getattr(manifest, name)
    return getattr(header, name)


def read_checkpoint(path: Path, run: Run, *, expected: CheckpointBindings | None = None) -> State:
    """The restored :class:`~umlos.train.state.State` of the checkpoint at ``path``; every hash
    is checked first (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, run, expected=expected).state


# --- pointers ---------------------------------------------------------------------------------


def read_pointer(path: Path) -> CheckpointPointer:
    """Decode one ``<t>.committed`` pointer; raises ``FileNotFoundError`` when absent and
    ``POINTER`` when torn, oversized or inconsistent with its own file name."""
    p = Path(path)
    with open(p, "rb") as f:
        data = f.read(4097)
    if len(data) > 4096:  # a pointer is ~150 bytes
        raise _fail("pointer is oversized", reason="POINTER", artifact=str(p))
    try:
        pointer = CheckpointPointer.from_obj(decode(data))
    except Error as exc:
        raise _fail(
            f"pointer does not decode: {exc.message}", reason="POINTER", artifact=str(p)
        ) from exc
    if f"{step_name(pointer.t)}{POINTER_SUFFIX}" != p.name or pointer.path != (
        f"{CHECKPOINTS_DIR}/{step_name(pointer.t)}"
    ):
        raise _fail(
            "pointer names another step than its file",
            reason="POINTER",
            artifact=str(p),
            t=pointer.t,
        )
    return pointer


def latest_checkpoint(run_dir: Path, *, published_only: bool = False) -> CheckpointRef | None:
    """The highest step whose checkpoint directory verifies (steps 1-8), or None.

    ``published`` tells whether the step's pointer decodes and names exactly that checkpoint.
    A directory whose pointer is missing, torn or names something else (a crash between the
    rename and the pointer, or a damaged pointer) still counts, unpublished, unless
    ``published_only``; the directory's own hashes are what make it trustworthy, the pointer
    only publishes it. A directory that fails verification never counts.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    steps: set[int] = set()
    for entry in os.listdir(root):
        if _STEP_DIR.match(entry):
            steps.add(int(entry))
    for t in sorted(steps, reverse=True):
        name = step_name(t)
        try:
            header = verify_checkpoint(root / name).header
        except CheckpointInvalidError:
            continue
        if header.t != t:
            continue
        try:
            pointer = read_pointer(root / f"{name}{POINTER_SUFFIX}")
        except (FileNotFoundError, CheckpointInvalidError):
            published = False
        else:
            published = (pointer.tenant_id, pointer.run_id, pointer.checkpoint_hash) == (
                header.tenant_id,
                header.run_id,
                header.checkpoint_hash,
            )
        if published or not published_only:
            return CheckpointRef(root / name, t, header.checkpoint_hash, published)
    return None
