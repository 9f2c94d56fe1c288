"""Environment manifest capture (foundations spec §6.1, env_manifest.yaml).

The manifest has exactly twelve keys. Everything else we know about the host that can change a
result (numpy, BLAS and torch builds, thread counts, CPU features, determinism flags) lives in the
driver fingerprint's ``runtime_flags``, whose digest is one of the twelve (ADR 0009).

Capture reads the OS identity, the interpreter version, the native toolchain (``--version`` of
cc, c++, ld and cmake, run with ``LC_ALL=C``), ten environment variables and the backend's
installed file list. It never reads the time, the host name or a process id. Any failure is
CONTRACT_VIOLATION, as the spec asks.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from umlos._errorbase import Error
from umlos._generated.records import (
    DeterminismProfile,
    DriverRuntimeFingerprint,
    EnvironmentManifest,
    ManifestBackend,
    ToolchainIdentity,
)
from umlos.codec import digest
from umlos.errors import ContractViolationError
from umlos.manifest._driver import (
    backend_version,
    determinism_profile,
    determinism_profile_hash,
    driver_fingerprint,
    driver_fingerprint_hash,
)

SCHEMA_VERSION: Final = "UML_OS.Environment.Manifest_v1"

ENV_VARS: Final = (
    "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "TF_DETERMINISTIC_OPS",
)
"""The ten variables of env_vars_fingerprint_hash (spec §6.1; extending the list is MAJOR)."""

MAX_ENV_VALUE_BYTES: Final = 1 << 20
"""Spec §6.1: a variable value over 1 MiB aborts the capture."""

TOOL_TIMEOUT_S: Final = 10.0
"""A ``--version`` call that takes longer is treated as a broken tool (our limit, not the spec's)."""

# (environment variable, default path) of each toolchain role, spec §6.1.
_TOOLS: Final = {
    "c_compiler": ("CC", "/usr/bin/cc"),
    "cxx_compiler": ("CXX", "/usr/bin/c++"),
    "linker": ("LD", "/usr/bin/ld"),
    "build_system": ("CMAKE_COMMAND", "/usr/bin/cmake"),
}

_V3 = r"([0-9]+\.[0-9]+\.[0-9]+)"
_V2 = r"([0-9]+\.[0-9]+)"
_GENERIC: Final = (
    (re.compile(r"^([A-Za-z0-9_+.-]+).*?" + _V3), False),
    (re.compile(r"^([A-Za-z0-9_+.-]+).*?" + _V2), True),
)
_COMPILER_RULES: Final = (
    (re.compile(r"^clang version " + _V3), "clang", False),
    (re.compile(r"^Apple clang version ([0-9]+\.[0-9]+(?:\.[0-9]+)?)"), "apple-clang", True),
)
_LINKER_RULES: Final = (
    (re.compile(r"^(?:LLD|lld) " + _V3), "lld", False),
    (re.compile(r"^GNU ld .*?([0-9]+\.[0-9]+(?:\.[0-9]+)?)"), "gnu-ld", False),
)
_CMAKE_RULES: Final = (
    (re.compile(r"^cmake version " + _V3), "cmake", False),
    (re.compile(r"^cmake version " + _V2), "cmake", True),
)
_PYTHON_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")


def _fail(message: str, artifact: str | None = None) -> ContractViolationError:
    return ContractViolationError(
        message, artifact=artifact, context={"failure_operator": "capture_environment"}
    )


@dataclass(frozen=True, slots=True)
class EnvironmentCapture:
    """Everything captured for one backend configuration, with the hashes a run binds."""

    env_manifest: EnvironmentManifest
    env_manifest_hash: bytes
    driver_fingerprint: DriverRuntimeFingerprint
    driver_fingerprint_hash: bytes
    determinism_profile: DeterminismProfile
    determinism_profile_hash: bytes
    toolchain: ToolchainIdentity
    env_vars: dict[str, str | None]


# --------------------------------------------------------------------------- toolchain


def _pad3(version: str) -> str:
    parts = version.split(".")
    return ".".join([*parts, *["0"] * (3 - len(parts))])


def parse_tool_version(role: str, text: str) -> tuple[str, str] | None:
    """(id, version) from a tool's ``--version`` output by the rules of spec §6.1, or None when
    none of the first five lines matches a rule of ``role``."""
    if role == "build_system":
        special: tuple[tuple[re.Pattern[str], str, bool], ...] = _CMAKE_RULES
        generic: tuple[tuple[re.Pattern[str], bool], ...] = ()
    else:
        special = _LINKER_RULES if role == "linker" else _COMPILER_RULES
        generic = _GENERIC
    for line in text.splitlines()[:5]:
        for pattern, name, pad in special:
            if m := pattern.search(line):
                version = m.group(1)
                return name, (_pad3(version) if pad else version)
        for pattern, two_part in generic:
            if m := pattern.search(line):
                tool_id = m.group(1).lower()
                version = m.group(2) + (".0" if two_part else "")
                if "gcc" in tool_id or "g++" in tool_id:
                    tool_id = "gcc"
                elif "clang" in tool_id:
                    tool_id = "clang"
                return tool_id, version
    return None


def _tool_path(role: str) -> str | None:
    var, default = _TOOLS[role]
    value = os.environ.get(var)
    if value is not None:
        if not os.path.isabs(value) or not _executable(value):
            raise _fail(f"${var} must be an absolute path to an executable, got {value!r}")
        return value
    return default if _executable(default) else None


def _executable(path: str) -> bool:
    real = os.path.realpath(path)
    return os.path.isfile(real) and os.access(real, os.X_OK)


@functools.lru_cache(maxsize=16)
def _run_version(path: str) -> str:
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        proc = subprocess.run(
            [path, "--version"],
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _fail(f"cannot run {path} --version: {exc}", artifact=path) from exc
    if proc.returncode != 0:
        raise _fail(f"{path} --version exited with {proc.returncode}", artifact=path)
    return (proc.stdout or proc.stderr).decode("utf-8", errors="replace")


def capture_toolchain() -> ToolchainIdentity:
    """The native toolchain identity (eight keys; null id and version for a missing tool).

    >>> from umlos.manifest import capture_toolchain
    >>> sorted(capture_toolchain().to_obj())[:2]
    ['build_system_id', 'build_system_version']
    """
    obj: dict[str, str | None] = {}
    for role in _TOOLS:
        path = _tool_path(role)
        found = None
        if path is not None:
            found = parse_tool_version(role, _run_version(path))
            if found is None:
                raise _fail(f"cannot parse the version of {path}", artifact=path)
        obj[f"{role}_id"], obj[f"{role}_version"] = found or (None, None)
    return ToolchainIdentity.from_obj(obj, "$.toolchain")


# --------------------------------------------------------------------------- env vars, OS


def capture_env_vars() -> dict[str, str | None]:
    """The ten determinism-relevant variables, each its value or None when unset.

    >>> from umlos.manifest import capture_env_vars
    >>> len(capture_env_vars())
    10
    """
    out: dict[str, str | None] = {}
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value is not None:
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise _fail(f"${name} is not valid UTF-8") from exc
            if size > MAX_ENV_VALUE_BYTES:
                raise _fail(f"${name} is {size} bytes, above {MAX_ENV_VALUE_BYTES}")
        out[name] = value
    return out


def _os_version() -> str:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    for line in text.splitlines():
        if line.startswith("VERSION_ID="):
            value = line.split("=", 1)[1].strip().strip("\"'")
            if value:
                return value
            break
    fallback = platform.version().strip()
    if not fallback:
        raise _fail("cannot determine the OS version")
    return fallback


def _python_version() -> str:
    m = _PYTHON_VERSION.match(platform.python_version())
    if m is None:
        raise _fail(f"cannot parse the Python version {platform.python_version()!r}")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"


# --------------------------------------------------------------------------- backend artifacts


_DISTRIBUTIONS: Final = {"numpy": "numpy", "torch": "torch"}


@functools.lru_cache(maxsize=4)
def backend_binary_hash(backend_name: str) -> bytes:
    """Identity of the backend library's installed file set.

    The canonical artifact set is the files listed, with their SHA-256, in the distribution's
    ``RECORD`` (the wheel's own manifest, written at install): ``Digest([[relative_path,
    sha256], …])`` sorted by path. Files without a recorded hash (``.pyc`` compiled at install,
    ``RECORD`` itself) are left out, so installers that compile or not give the same value. The
    recorded hashes are trusted, not re-computed: hashing a GPU torch install would take longer
    than a short run (ADR 0009).

    >>> from umlos.manifest import backend_binary_hash
    >>> len(backend_binary_hash("numpy"))
    32
    """
    dist_name = _DISTRIBUTIONS.get(backend_name)
    if dist_name is None:
        raise _fail(f"unknown backend {backend_name!r}")
    try:
        record = importlib.metadata.distribution(dist_name).read_text("RECORD")
    except importlib.metadata.PackageNotFoundError as exc:
        raise _fail(f"backend {backend_name} is not installed") from exc
    pairs: list[list[str | bytes]] = []
    for line in (record or "").splitlines():
        path, _, rest = line.partition(",")
        algo, _, b64 = rest.partition(",")[0].partition("=")
        if algo != "sha256" or not b64:
            continue
        raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        if len(raw) != 32:
            raise _fail(f"malformed RECORD hash for {path!r}", artifact=f"{dist_name} RECORD")
        pairs.append([path, raw])
    if not pairs:
        raise _fail(
            f"the {dist_name} installation lists no hashed files (no RECORD)",
            artifact=f"{dist_name} RECORD",
        )
    pairs.sort(key=lambda p: str(p[0]).encode("utf-8"))
    return digest(pairs)


# --------------------------------------------------------------------------- manifest


def capture_environment(
    backend_name: str = "numpy",
    *,
    fingerprint: DriverRuntimeFingerprint | None = None,
    profile: DeterminismProfile | None = None,
) -> EnvironmentManifest:
    """The twelve-key environment manifest of this host for ``backend_name``.

    ``fingerprint`` defaults to :func:`driver_fingerprint` of the backend with its defaults
    (cpu, float32, one thread, deterministic); ``profile`` to the BITWISE profile built from it.

    >>> from umlos.manifest import capture_environment
    >>> env = capture_environment("numpy")
    >>> len(env.to_obj()), env.schema_version
    (12, 'UML_OS.Environment.Manifest_v1')
    """
    fp = fingerprint if fingerprint is not None else driver_fingerprint(backend_name)
    prof = (
        profile
        if profile is not None
        else determinism_profile(fp, backend_binary_hash(backend_name))
    )
    return _build(backend_name, fp, prof, capture_toolchain(), capture_env_vars())


def _build(
    backend_name: str,
    fp: DriverRuntimeFingerprint,
    profile: DeterminismProfile,
    toolchain: ToolchainIdentity,
    env_vars: dict[str, str | None],
) -> EnvironmentManifest:
    uname = platform.uname()
    obj = {
        "schema_version": SCHEMA_VERSION,
        "os_name": uname.system.strip().lower(),
        "os_version": _os_version(),
        "kernel_version": uname.release.strip(),
        "hardware_arch": uname.machine.strip().lower(),
        "python_version": _python_version(),
        "backend_adapter_version": backend_version(backend_name),
        "backend_binary_hash": backend_binary_hash(backend_name),
        "driver_runtime_fingerprint_hash": driver_fingerprint_hash(fp),
        "determinism_profile_hash": determinism_profile_hash(profile),
        "toolchain_hash": digest(toolchain.to_obj()),
        "env_vars_fingerprint_hash": digest(env_vars),
    }
    try:
        return EnvironmentManifest.from_obj(obj, "$.env_manifest")
    except Error as exc:
        raise _fail(f"the captured environment does not fit its schema: {exc}") from exc


def env_manifest_hash(env: EnvironmentManifest) -> bytes:
    """``env_manifest_hash = Digest(EnvironmentManifest)``.

    >>> from umlos.manifest import capture_environment, env_manifest_hash
    >>> len(env_manifest_hash(capture_environment("numpy")))
    32
    """
    return digest(env.to_obj())


def capture_run_environment(
    backend: ManifestBackend | None = None,
    *,
    fingerprint: DriverRuntimeFingerprint | None = None,
) -> EnvironmentCapture:
    """Fingerprint, BITWISE profile and environment manifest for a manifest's backend block.

    ``fingerprint`` is the live backend's own report (``Backend.fingerprint()``, ADR 0008);
    without one, this layer builds it from the backend block alone.

    >>> from umlos.manifest import capture_run_environment
    >>> cap = capture_run_environment()
    >>> cap.driver_fingerprint.runtime_flags["backend"], len(cap.env_vars)
    ('numpy', 10)
    """
    b = backend if backend is not None else ManifestBackend()
    name, device = b.name or "numpy", b.device or "cpu"
    if (b.determinism_profile_id or "BITWISE") != "BITWISE":
        raise _fail(f"determinism profile {b.determinism_profile_id} is not supported yet")
    fp = fingerprint or driver_fingerprint(
        name, device, b.dtype or "float32", b.num_threads or 1, deterministic=True
    )
    profile = determinism_profile(fp, backend_binary_hash(name))
    toolchain, env_vars = capture_toolchain(), capture_env_vars()
    env = _build(name, fp, profile, toolchain, env_vars)
    return EnvironmentCapture(
        env_manifest=env,
        env_manifest_hash=env_manifest_hash(env),
        driver_fingerprint=fp,
        driver_fingerprint_hash=driver_fingerprint_hash(fp),
        determinism_profile=profile,
        determinism_profile_hash=determinism_profile_hash(profile),
        toolchain=toolchain,
        env_vars=env_vars,
    )
