"""Pinned identities for golden runs (``examples/hello``).

A certificate binds the machine: environment manifest, driver fingerprint, installed packages.
That is the point of it, and it also means a golden certificate hash computed here would not be
reproduced on a machine with another numpy build. :func:`golden_pins` replaces those machine
facts with fixed, obviously synthetic values ("golden"), so a golden run's hashes depend only on
the manifest, the code and the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from umlos._generated.records import (
    DriverRuntimeFingerprint,
    EnvironmentManifest,
    ManifestBackend,
    ToolchainIdentity,
)
from umlos.codec import digest
from umlos.manifest import (
    ENV_VARS,
    EnvironmentCapture,
    determinism_profile,
    determinism_profile_hash,
    driver_fingerprint_hash,
    env_manifest_hash,
)

GOLDEN = "golden"


@dataclass(frozen=True, slots=True)
class Pins:
    """Fixed identities that replace what a run would capture from the machine."""

    environment: EnvironmentCapture
    lockfile_hash: bytes


def golden_pins(backend: ManifestBackend) -> Pins:
    """Synthetic, machine-independent environment and lock for ``backend``."""
    fp = DriverRuntimeFingerprint(
        gpu_model="none",
        gpu_sm_count=0,
        driver_version="none",
        cuda_version="none",
        cudnn_version="none",
        cublas_version="none",
        nccl_version="none",
        os_kernel_version=GOLDEN,
        compiler_id=GOLDEN,
        compiler_flags_hash=digest([]),
        backend_adapter_version=GOLDEN,
        backend_build_id=GOLDEN,
        primitive_allowlist_used_hash=digest([]),
        deterministic_kernels_enabled=True,
        nondeterministic_atomics_used=False,
        runtime_flags={
            "backend": backend.name or "numpy",
            "dtype": backend.dtype or "float32",
            "threads": str(backend.num_threads or 1),
        },
        accumulation_policy="FIXED_DTYPE_FIXED_ORDER",
    )
    binary = digest([GOLDEN, backend.name or "numpy"])
    profile = determinism_profile(fp, binary)
    toolchain = ToolchainIdentity(
        c_compiler_id=None,
        c_compiler_version=None,
        cxx_compiler_id=None,
        cxx_compiler_version=None,
        linker_id=None,
        linker_version=None,
        build_system_id=None,
        build_system_version=None,
    )
    env_vars: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    manifest = EnvironmentManifest(
        os_name="linux",
        os_version=GOLDEN,
        kernel_version=GOLDEN,
        hardware_arch="x86_64",
        python_version="3.11.0",
        backend_adapter_version=GOLDEN,
        backend_binary_hash=binary,
        driver_runtime_fingerprint_hash=driver_fingerprint_hash(fp),
        determinism_profile_hash=determinism_profile_hash(profile),
        toolchain_hash=digest(toolchain.to_obj()),
        env_vars_fingerprint_hash=digest(env_vars),
    )
    capture = EnvironmentCapture(
        env_manifest=manifest,
        env_manifest_hash=env_manifest_hash(manifest),
        driver_fingerprint=fp,
        driver_fingerprint_hash=driver_fingerprint_hash(fp),
        determinism_profile=profile,
        determinism_profile_hash=determinism_profile_hash(profile),
        toolchain=toolchain,
        env_vars=env_vars,
    )
    return Pins(environment=capture, lockfile_hash=digest([GOLDEN]))
