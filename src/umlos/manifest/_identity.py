"""Run identities (ADR 0008): replay token, run id, compute seed, policy bundle hash."""

from __future__ import annotations

from dataclasses import dataclass

from umlos._generated.records import Manifest
from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH
from umlos._generated.tags import COMPUTE_SEED, REPLAY_TOKEN
from umlos.codec import commit_hash, digest
from umlos.errors import ApiShapeMismatchError, ContractViolationError
from umlos.manifest._environment import EnvironmentCapture
from umlos.manifest._load import _filled, manifest_hash

ZERO_HASH = bytes(32)
"""Stands for an absent policy bundle in local mode (spec decision D5)."""


def _bytes32(name: str, value: bytes) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        shown = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ApiShapeMismatchError(f"{name} must be 32 bytes, got {shown}", reason="CONSTRAINT")
    return value


def policy_bundle_hash(m: Manifest) -> bytes:
    """The manifest's ``policy_bundle.policy_bundle_hash``, or 32 zero bytes when a local-mode
    manifest declares no bundle.

    >>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest, policy_bundle_hash
    >>> policy_bundle_hash(loads_manifest(EXAMPLE_MANIFEST).manifest) == bytes(32)
    True
    """
    if m.policy_bundle is not None:
        return m.policy_bundle.policy_bundle_hash
    if m.execution_mode not in (None, "local"):
        raise ContractViolationError(
            f"{m.execution_mode} mode needs a policy bundle", path="$.policy_bundle"
        )
    return ZERO_HASH


def replay_token(
    *,
    spec_version: str,
    policy_bundle_hash: bytes,
    env_manifest_hash: bytes,
    determinism_profile_hash: bytes,
    driver_runtime_fingerprint_hash: bytes,
    seed: int,
    operator_registry_root_hash: bytes = OPERATOR_REGISTRY_ROOT_HASH,
) -> bytes:
    """``Commit(REPLAY_TOKEN, [spec_version, policy_bundle_hash, env_manifest_hash,
    operator_registry_root_hash, determinism_profile_hash, driver_runtime_fingerprint_hash,
    u64(seed)])`` (kernel spec §1.2); the operator registry root defaults to ours.

    >>> from umlos.manifest import replay_token
    >>> z = bytes(32)
    >>> token = replay_token(spec_version="UML_OS.Config.Manifest_v1", policy_bundle_hash=z,
    ...                      env_manifest_hash=z, determinism_profile_hash=z,
    ...                      driver_runtime_fingerprint_hash=z, seed=7)
    >>> len(token), token == replay_token(spec_version="UML_OS.Config.Manifest_v1",
    ...     policy_bundle_hash=z, env_manifest_hash=z, determinism_profile_hash=z,
    ...     driver_runtime_fingerprint_hash=z, seed=8)
    (32, False)
    """
    if type(seed) is not int or not 0 <= seed < 1 << 64:
        raise ApiShapeMismatchError(f"seed {seed!r} is not a uint64", reason="CONSTRAINT")
    return commit_hash(
        REPLAY_TOKEN,
        [
            spec_version,
            _bytes32("policy_bundle_hash", policy_bundle_hash),
            _bytes32("env_manifest_hash", env_manifest_hash),
            _bytes32("operator_registry_root_hash", operator_registry_root_hash),
            _bytes32("determinism_profile_hash", determinism_profile_hash),
            _bytes32("driver_runtime_fingerprint_hash", driver_runtime_fingerprint_hash),
            seed,
        ],
    )


def run_id(tenant_id: str, replay_token: bytes, *, manifest_hash: bytes | None = None) -> str:
    """Lower-case hex of the first 8 bytes of ``Digest([tenant_id, replay_token])`` (16 chars;
    the tenant id is data in the first slot, not a domain tag).

    The spec's replay token does not cover the manifest (only its seed and policies), so two
    different manifests with the same seed would share a run id. Runs therefore pass their
    ``manifest_hash``: ``Digest([tenant_id, [replay_token, manifest_hash]])`` (ADR 0015).

    >>> from umlos.manifest import run_id
    >>> len(run_id("acme", bytes(32))), run_id("acme", bytes(32), manifest_hash=bytes(32)) != run_id("acme", bytes(32))
    (16, True)
    """
    token = _bytes32("replay_token", replay_token)
    if manifest_hash is None:
        return digest([tenant_id, token])[:8].hex()
    return digest([tenant_id, [token, _bytes32("manifest_hash", manifest_hash)]])[:8].hex()


def manifest_hash_without_backend(m: Manifest) -> bytes:
    """Digest of the normalized manifest with its ``backend`` key removed."""
    obj = _filled(m).to_obj()
    obj.pop("backend", None)
    return digest(obj)


def compute_seed(m: Manifest) -> bytes:
    """``Commit(COMPUTE_SEED, [manifest_hash_without_backend, u64(seed)])``: the root of every
    data-order and parameter-initialisation stream (ADR 0008, seed policy). It ignores the
    backend block, so the numpy and torch backends draw the same batches and initial weights.

    >>> from umlos.manifest import EXAMPLE_MANIFEST, compute_seed, loads_manifest
    >>> len(compute_seed(loads_manifest(EXAMPLE_MANIFEST).manifest))
    32
    """
    return commit_hash(COMPUTE_SEED, [manifest_hash_without_backend(m), m.seed])


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """The identities one run binds, derived from its manifest and captured environment."""

    manifest_hash: bytes
    policy_bundle_hash: bytes
    replay_token: bytes
    run_id: str
    compute_seed: bytes


def run_identity(m: Manifest, capture: EnvironmentCapture) -> RunIdentity:
    """Every identity of a run: manifest hash, policy bundle hash, replay token (with the
    manifest's ``spec_version`` and ``seed``), run id and compute seed.

    >>> from umlos.manifest import EXAMPLE_MANIFEST, capture_run_environment, loads_manifest
    >>> from umlos.manifest import run_identity
    >>> m = loads_manifest(EXAMPLE_MANIFEST).manifest
    >>> ident = run_identity(m, capture_run_environment(m.backend))
    >>> len(ident.run_id), len(ident.replay_token)
    (16, 32)
    """
    pb = policy_bundle_hash(m)
    token = replay_token(
        spec_version=m.spec_version,
        policy_bundle_hash=pb,
        env_manifest_hash=capture.env_manifest_hash,
        determinism_profile_hash=capture.determinism_profile_hash,
        driver_runtime_fingerprint_hash=capture.driver_fingerprint_hash,
        seed=m.seed,
    )
    mh = manifest_hash(m)
    return RunIdentity(
        manifest_hash=mh,
        policy_bundle_hash=pb,
        replay_token=token,
        run_id=run_id(m.tenant_id, token, manifest_hash=mh),
        compute_seed=compute_seed(m),
    )
