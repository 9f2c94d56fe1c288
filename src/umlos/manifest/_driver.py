"""Driver runtime fingerprint and determinism profile (foundations spec §6.2).

The fingerprint records what of the compute stack can change a result bit: library versions and
builds, the BLAS, CPU SIMD features, and the settings the backend is configured with. The
settings part (device, dtype, threads, deterministic mode, torch precision flags) is what the
backend is *told* to apply, not a reading of global library state, so the fingerprint does not
depend on whether a backend was already initialised in the process. Nothing volatile (time,
host name, PID, paths) enters it. ADR 0009 lists every key.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import platform
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np

import umlos
from umlos._generated.records import (
    BitwiseProfileRules,
    DeterminismProfile,
    DriverRuntimeFingerprint,
    IrNode,
)
from umlos.codec import digest
from umlos.errors import ContractViolationError

NONE: Final = "none"
"""Sentinel of the GPU fields on a run without a GPU (driver_fingerprint.yaml, decision A24)."""
UNKNOWN: Final = "unknown"
"""A fact that exists but that the backend library does not report."""

ACCUMULATION_POLICY: Final[str] = "FIXED_DTYPE_FIXED_ORDER"
"""Both backends accumulate in the compute dtype in a fixed order (ADR 0008)."""

# Rank and collective policies of every profile we build (kernel decision D23).
COLLECTIVE_ALGORITHM_ID: Final = "allgather_rank_order_kahan_v1"
COLLECTIVE_CHUNKING_POLICY: Final = "fixed_256"
RANK_ORDER_POLICY: Final = "ascending_rank"

ALL_INSTRUCTIONS: Final[tuple[str, ...]] = tuple(
    sorted(typing.get_args(typing.get_type_hints(IrNode)["instr"]))
)
"""The IR instruction set (model_ir.yaml ``ir_instruction``), sorted."""

_BACKENDS: Final = ("numpy", "torch")
_DEVICES: Final = ("cpu", "cuda")
_DTYPES: Final = ("float32", "float64")


def _fail(message: str) -> ContractViolationError:
    return ContractViolationError(message, context={"failure_operator": "driver_fingerprint"})


def backend_version(backend_name: str) -> str:
    """The backend adapter version, ``"<library> <version>"`` (e.g. ``numpy 2.4.6``)."""
    if backend_name == "numpy":
        return f"numpy {np.__version__}"
    if backend_name == "torch":
        return f"torch {_torch().__version__}"
    raise _fail(f"unknown backend {backend_name!r}; expected one of {list(_BACKENDS)}")


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise _fail("backend torch needs the torch package (pip install umlos[torch])") from exc


@functools.cache
def _numpy_facts() -> tuple[tuple[str, str], ...]:
    """numpy and BLAS facts; cached because they cannot change within a process."""
    config: Mapping[str, Any] = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    facts = {
        "numpy.version": np.__version__,
        "numpy.blas": f"{blas.get('name', UNKNOWN)} {blas.get('version', UNKNOWN)}",
        "numpy.blas.config": " ".join(str(blas.get("openblas configuration", NONE)).split()),
        "numpy.blas.architecture": _numpy_blas_architecture(),
        "cpu.arch": platform.machine().lower() or UNKNOWN,
        "cpu.features": _cpu_features(config),
    }
    return tuple(sorted(facts.items()))


def _numpy_compiler() -> str:
    config: Mapping[str, Any] = np.show_config(mode="dicts")
    c = config.get("Compilers", {}).get("c", {})
    if "name" in c and "version" in c:
        return f"{c['name']}-{c['version']}"
    return NONE


def _cpu_features(config: Mapping[str, Any]) -> str:
    """CPU SIMD features numpy detected (they pick numpy's and the BLAS's kernels)."""
    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")
        found = sorted(k for k, v in umath.__cpu_features__.items() if v)
    except (ImportError, AttributeError):  # private API: fall back to the dispatch summary
        found = sorted(config.get("SIMD Extensions", {}).get("found", []))
    return ",".join(found) or NONE


def _numpy_blas_architecture() -> str:
    """The BLAS core type chosen at run time (OpenBLAS DYNAMIC_ARCH picks it per CPU).

    Only libraries shipped inside numpy's wheel are considered, so that a BLAS loaded by another
    package (torch's MKL) never changes the numpy facts.
    """
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return UNKNOWN
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    own = (numpy_dir + os.sep, numpy_dir + ".libs" + os.sep)
    for lib in threadpoolctl.threadpool_info():
        path = str(lib.get("filepath", ""))
        if lib.get("user_api") == "blas" and path.startswith(own):
            return str(lib.get("architecture") or UNKNOWN)
    return UNKNOWN


def _torch_build(torch: Any) -> tuple[str, bytes]:
    """(compiler id, compiler flags hash) parsed from ``torch.__config__.show()``."""
    text = str(torch.__config__.show())
    m = re.search(r"^\s*-\s*(GCC|Clang|clang|MSVC|Apple clang)\s+([0-9][0-9.]*)", text, re.M)
    compiler = f"{m.group(1).lower().replace(' ', '-')}-{m.group(2)}" if m else NONE
    f = re.search(r"CXX_FLAGS=(.*?), [A-Z][A-Z0-9_]*=", text)
    tokens = sorted(set(f.group(1).split())) if f else []
    return compiler, digest(tokens)


def _torch_flags(torch: Any, device: str, deterministic: bool) -> dict[str, str]:
    text = str(torch.__config__.show())
    blas = re.search(r"BLAS_INFO=([^,\s]+)", text)
    flags = {
        "torch.version": str(torch.__version__),
        "torch.blas": blas.group(1) if blas else UNKNOWN,
        "torch.cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        # What the torch backend must apply (ADR 0009): these are requirements, not readings.
        "torch.deterministic_algorithms": _text(deterministic),
        "torch.float32_matmul_precision": "highest",
    }
    if device == "cuda":
        flags |= {
            "torch.cuda.matmul.allow_tf32": "false",
            "torch.cudnn.allow_tf32": "false",
            "torch.cudnn.benchmark": "false",
            "torch.cudnn.deterministic": _text(deterministic),
        }
    return flags


def _cuda_facts(torch: Any) -> dict[str, Any]:
    if not torch.cuda.is_available():
        raise _fail("device cuda requested but torch sees no CUDA device")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    try:
        nccl = ".".join(str(p) for p in torch.cuda.nccl.version())
    except (AttributeError, RuntimeError):
        nccl = NONE
    cudnn = torch.backends.cudnn.version()
    return {
        "gpu_model": str(props.name),
        "gpu_sm_count": int(props.multi_processor_count),
        "driver_version": _nvidia_driver_version(),
        "cuda_version": str(torch.version.cuda or UNKNOWN),
        "cudnn_version": str(cudnn) if cudnn is not None else NONE,
        "cublas_version": _dist_version(
            ("nvidia-cublas-cu12", "nvidia-cublas-cu13", "nvidia-cublas")
        ),
        "nccl_version": nccl,
    }


def _nvidia_driver_version() -> str:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            m = re.search(r"Kernel Module\s+([0-9][0-9.]*)", f.read())
    except OSError:
        return UNKNOWN
    return m.group(1) if m else UNKNOWN


def _dist_version(names: Iterable[str]) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return UNKNOWN


def _text(flag: bool) -> str:
    return "true" if flag else "false"


def driver_fingerprint(
    backend_name: str = "numpy",
    device: str = "cpu",
    dtype: str = "float32",
    num_threads: int = 1,
    deterministic: bool = True,
    *,
    primitives: Iterable[str] = ALL_INSTRUCTIONS,
) -> DriverRuntimeFingerprint:
    """The seventeen-key fingerprint of the backend as configured (driver_fingerprint.yaml).

    GPU fields hold the sentinels ``"none"``/``0`` on the CPU. ``primitives`` are the IR
    instructions the backend dispatches deterministically (default: the whole instruction set).
    Capture failures (unknown backend, torch missing, no CUDA device) are CONTRACT_VIOLATION.

    >>> from umlos.manifest import driver_fingerprint
    >>> fp = driver_fingerprint("numpy", "cpu", "float64", num_threads=1, deterministic=True)
    >>> fp.gpu_model, fp.gpu_sm_count, fp.runtime_flags["compute_dtype"]
    ('none', 0, 'float64')
    """
    if backend_name not in _BACKENDS:
        raise _fail(f"unknown backend {backend_name!r}; expected one of {list(_BACKENDS)}")
    if device not in _DEVICES:
        raise _fail(f"unknown device {device!r}; expected one of {list(_DEVICES)}")
    if dtype not in _DTYPES:
        raise _fail(f"unknown compute dtype {dtype!r}; expected one of {list(_DTYPES)}")
    if device == "cuda" and backend_name != "torch":
        raise _fail(f"device cuda needs backend torch, not {backend_name}")
    if type(num_threads) is not int or num_threads < 1:
        raise _fail(f"num_threads must be a positive integer, got {num_threads!r}")

    flags = dict(_numpy_facts())
    flags |= {
        "backend": backend_name,
        "device": device,
        "compute_dtype": dtype,
        "num_threads": str(num_threads),
        "umlos.version": umlos.__version__,
    }
    gpu: dict[str, Any] = {
        "gpu_model": NONE,
        "gpu_sm_count": 0,
        "driver_version": NONE,
        "cuda_version": NONE,
        "cudnn_version": NONE,
        "cublas_version": NONE,
        "nccl_version": NONE,
    }
    if backend_name == "torch":
        torch = _torch()
        compiler, flags_hash = _torch_build(torch)
        build_id = str(torch.version.git_version)
        flags |= _torch_flags(torch, device, deterministic)
        if device == "cuda":
            gpu = _cuda_facts(torch)
    else:
        compiler, flags_hash = _numpy_compiler(), digest([])
        build_id = flags["numpy.blas"]

    obj = {
        **gpu,
        "os_kernel_version": platform.release() or UNKNOWN,
        "compiler_id": compiler,
        "compiler_flags_hash": flags_hash,
        "backend_adapter_version": backend_version(backend_name),
        "backend_build_id": build_id,
        "primitive_allowlist_used_hash": digest(sorted(set(primitives))),
        "deterministic_kernels_enabled": deterministic,
        # CPU kernels never reduce through atomics; CUDA ones may unless deterministic mode is on.
        "nondeterministic_atomics_used": device == "cuda" and not deterministic,
        "runtime_flags": flags,
        "accumulation_policy": ACCUMULATION_POLICY,
    }
    # Building through the validator proves the result fits the schema (lengths, patterns).
    return DriverRuntimeFingerprint.from_obj(obj, "$.driver_runtime_fingerprint")


def driver_fingerprint_hash(fp: DriverRuntimeFingerprint) -> bytes:
    """``driver_runtime_fingerprint_hash = Digest(fingerprint)``.

    >>> from umlos.manifest import driver_fingerprint, driver_fingerprint_hash
    >>> len(driver_fingerprint_hash(driver_fingerprint()))
    32
    """
    return digest(fp.to_obj())


def determinism_profile(
    fingerprint: DriverRuntimeFingerprint, backend_binary_hash: bytes
) -> DeterminismProfile:
    """The BITWISE profile a run on this backend is held to.

    Its equivalence class is exactly this fingerprint, and its required runtime flags,
    accumulation policy and primitive allowlist are the fingerprint's, so a replay passes the
    profile check only on an identically configured stack. A fingerprint without deterministic
    kernels (or with atomics) cannot satisfy BITWISE and is CONTRACT_VIOLATION.

    >>> from umlos.manifest import determinism_profile, driver_fingerprint
    >>> profile = determinism_profile(driver_fingerprint(), bytes(32))
    >>> profile.determinism_profile_id, profile.profile_rules.rules_version
    ('BITWISE', 1)
    """
    if not fingerprint.deterministic_kernels_enabled or fingerprint.nondeterministic_atomics_used:
        raise _fail("the BITWISE profile needs deterministic kernels and no atomics")
    rules = BitwiseProfileRules(
        profile_id="BITWISE",
        rules_version=1,
        backend_binary_hash=backend_binary_hash,
        driver_runtime_equivalence_set=(driver_fingerprint_hash(fingerprint),),
        collective_algorithm_id=COLLECTIVE_ALGORITHM_ID,
        collective_chunking_policy=COLLECTIVE_CHUNKING_POLICY,
        rank_order_policy=RANK_ORDER_POLICY,
        deterministic_kernels_required=True,
        allow_nondeterministic_atomics=False,
        accumulation_policy=fingerprint.accumulation_policy,
        runtime_flags=dict(fingerprint.runtime_flags),
        deterministic_primitive_allowlist_hash=fingerprint.primitive_allowlist_used_hash,
    )
    obj = {"determinism_profile_id": "BITWISE", "profile_rules": rules.to_obj()}
    return DeterminismProfile.from_obj(obj, "$.determinism_profile")


def determinism_profile_hash(profile: DeterminismProfile) -> bytes:
    """``H(CBOR([determinism_profile_id, profile_rules]))`` (the id is data, not a domain tag).

    >>> from umlos.manifest import determinism_profile, determinism_profile_hash
    >>> from umlos.manifest import driver_fingerprint
    >>> len(determinism_profile_hash(determinism_profile(driver_fingerprint(), bytes(32))))
    32
    """
    return digest([profile.determinism_profile_id, profile.profile_rules.to_obj()])
