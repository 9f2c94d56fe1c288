"""The run manifest and the identities a run derives from it and from its environment.

Load and normalize a manifest, hash it, capture the environment manifest, the driver runtime
fingerprint and the BITWISE determinism profile, and derive the replay token, run id and compute
seed (ADR 0008, ADR 0009).

>>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
>>> loaded = loads_manifest(EXAMPLE_MANIFEST)
>>> loaded.manifest.backend.name, loaded.manifest.optimizer.momentum
('numpy', 0.0)
>>> loaded.manifest.evaluation.probe_dataset_key
'train'
"""

from __future__ import annotations

from umlos.manifest._driver import (
    ALL_INSTRUCTIONS,
    determinism_profile,
    determinism_profile_hash,
    driver_fingerprint,
    driver_fingerprint_hash,
)
from umlos.manifest._environment import (
    ENV_VARS,
    EnvironmentCapture,
    backend_binary_hash,
    capture_env_vars,
    capture_environment,
    capture_run_environment,
    capture_toolchain,
    env_manifest_hash,
)
from umlos.manifest._example import EXAMPLE_MANIFEST
from umlos.manifest._identity import (
    ZERO_HASH,
    RunIdentity,
    compute_seed,
    policy_bundle_hash,
    replay_token,
    run_id,
    run_identity,
)
from umlos.manifest._load import (
    LoadedManifest,
    load_manifest,
    loads_manifest,
    manifest_hash,
    normalize,
)

__all__ = [
    "ALL_INSTRUCTIONS",
    "ENV_VARS",
    "EXAMPLE_MANIFEST",
    "ZERO_HASH",
    "EnvironmentCapture",
    "LoadedManifest",
    "RunIdentity",
    "backend_binary_hash",
    "capture_env_vars",
    "capture_environment",
    "capture_run_environment",
    "capture_toolchain",
    "compute_seed",
    "determinism_profile",
    "determinism_profile_hash",
    "driver_fingerprint",
    "driver_fingerprint_hash",
    "env_manifest_hash",
    "load_manifest",
    "loads_manifest",
    "manifest_hash",
    "normalize",
    "policy_bundle_hash",
    "replay_token",
    "run_id",
    "run_identity",
]

# Public objects say where to import them from (and their doctests run with this module).
for _obj in (
    EnvironmentCapture,
    backend_binary_hash,
    LoadedManifest,
    RunIdentity,
    capture_env_vars,
    capture_environment,
    capture_run_environment,
    capture_toolchain,
    compute_seed,
    determinism_profile,
    determinism_profile_hash,
    driver_fingerprint,
    driver_fingerprint_hash,
    env_manifest_hash,
    load_manifest,
    loads_manifest,
    manifest_hash,
    normalize,
    policy_bundle_hash,
    replay_token,
    run_id,
    run_identity,
):
    _obj.__module__ = __name__
del _obj
