"""Environment manifest, driver fingerprint and determinism profile capture."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import cbor2
import pytest
import yaml

from tests.conftest import CONTRACTS
from umlos._generated.records import ManifestBackend
from umlos.codec import digest
from umlos.errors import ContractViolationError
from umlos.manifest import (
    ENV_VARS,
    backend_binary_hash,
    capture_env_vars,
    capture_environment,
    capture_run_environment,
    capture_toolchain,
    determinism_profile,
    determinism_profile_hash,
    driver_fingerprint,
    driver_fingerprint_hash,
    env_manifest_hash,
)
from umlos.manifest._environment import parse_tool_version


def _schema_keys(file: str, record: str) -> set[str]:
    schema = yaml.safe_load((CONTRACTS / "schemas" / file).read_text(encoding="utf-8"))
    return set(schema["$defs"][record]["properties"])


def test_env_manifest_has_exactly_the_schema_keys() -> None:
    env = capture_environment("numpy")
    keys = set(env.to_obj())
    assert keys == _schema_keys("env_manifest.yaml", "EnvironmentManifest")
    assert len(keys) == 12


def test_capture_is_stable_across_calls() -> None:
    a, b = capture_run_environment(), capture_run_environment()
    assert a == b
    assert a.env_manifest_hash == env_manifest_hash(capture_environment("numpy"))


def test_capture_binds_its_parts() -> None:
    cap = capture_run_environment(ManifestBackend(dtype="float64", num_threads=2))
    env = cap.env_manifest
    assert env.driver_runtime_fingerprint_hash == driver_fingerprint_hash(cap.driver_fingerprint)
    assert env.determinism_profile_hash == determinism_profile_hash(cap.determinism_profile)
    assert env.toolchain_hash == digest(cap.toolchain.to_obj())
    assert env.env_vars_fingerprint_hash == digest(cap.env_vars)
    assert env.backend_binary_hash == backend_binary_hash("numpy")
    assert cap.driver_fingerprint.runtime_flags["num_threads"] == "2"
    assert cap.env_manifest_hash == hashlib_digest(env.to_obj())


def hashlib_digest(obj: object) -> bytes:
    # An env manifest holds only text and byte strings: cbor2's canonical bytes equal ours.
    import hashlib

    return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()


def test_driver_fingerprint_has_the_seventeen_keys_and_cpu_sentinels() -> None:
    fp = driver_fingerprint("numpy", "cpu", "float32", 1, True)
    obj = fp.to_obj()
    assert set(obj) == _schema_keys("driver_fingerprint.yaml", "DriverRuntimeFingerprint")
    assert len(obj) == 17
    assert (fp.gpu_model, fp.gpu_sm_count, fp.driver_version, fp.cuda_version) == (
        "none",
        0,
        "none",
        "none",
    )
    assert (fp.cudnn_version, fp.cublas_version, fp.nccl_version) == ("none", "none", "none")
    flags = fp.runtime_flags
    for key in ("numpy.version", "numpy.blas", "cpu.features", "num_threads", "compute_dtype"):
        assert flags[key]
    assert fp.deterministic_kernels_enabled and not fp.nondeterministic_atomics_used


def test_nothing_volatile_enters_the_captured_records() -> None:
    cap = capture_run_environment()
    text = repr((cap.env_manifest, cap.driver_fingerprint, cap.toolchain))
    host = socket.gethostname()
    if len(host) >= 4:
        assert host not in text
    assert str(Path.cwd()) not in text
    assert f"'{os.getpid()}'" not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dtype": "float64"},
        {"num_threads": 4},
        {"deterministic": False},
        {"primitives": ["MATMUL", "RELU"]},
    ],
)
def test_fingerprint_changes_with_its_settings(kwargs: dict[str, object]) -> None:
    base = driver_fingerprint_hash(driver_fingerprint())
    assert driver_fingerprint_hash(driver_fingerprint(**kwargs)) != base  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ("jax",),
        ("numpy", "tpu"),
        ("numpy", "cpu", "float16"),
        ("numpy", "cuda"),
        ("numpy", "cpu", "float32", 0),
    ],
)
def test_fingerprint_refuses_unknown_settings(args: tuple[object, ...]) -> None:
    with pytest.raises(ContractViolationError):
        driver_fingerprint(*args)  # type: ignore[arg-type]


def test_bitwise_profile_follows_the_fingerprint() -> None:
    fp = driver_fingerprint()
    binary = backend_binary_hash("numpy")
    profile = determinism_profile(fp, binary)
    rules = profile.profile_rules
    assert profile.determinism_profile_id == rules.profile_id == "BITWISE"
    assert rules.driver_runtime_equivalence_set == (driver_fingerprint_hash(fp),)
    assert rules.runtime_flags == fp.runtime_flags
    assert rules.accumulation_policy == fp.accumulation_policy
    assert rules.deterministic_primitive_allowlist_hash == fp.primitive_allowlist_used_hash
    assert rules.backend_binary_hash == binary
    # H(CBOR([profile_id, profile_rules])): the id is the first slot, not a domain tag.
    assert determinism_profile_hash(profile) == digest(["BITWISE", rules.to_obj()])


def test_bitwise_profile_needs_deterministic_kernels() -> None:
    with pytest.raises(ContractViolationError):
        determinism_profile(driver_fingerprint(deterministic=False), bytes(32))


def test_only_bitwise_profiles_are_built() -> None:
    with pytest.raises(ContractViolationError):
        capture_run_environment(ManifestBackend(determinism_profile_id="TOLERANCE"))


def test_env_vars_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    snap = capture_env_vars()
    assert list(snap) == list(ENV_VARS) and set(snap.values()) == {None}
    before = env_manifest_hash(capture_environment())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert capture_env_vars()["OMP_NUM_THREADS"] == "1"
    assert env_manifest_hash(capture_environment()) != before
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert env_manifest_hash(capture_environment()) == before


def test_oversized_env_var_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCCL_ALGO", "x" * ((1 << 20) + 1))
    with pytest.raises(ContractViolationError):
        capture_env_vars()


@pytest.mark.parametrize(
    ("role", "text", "expected"),
    [
        ("c_compiler", "clang version 17.0.6 (Fedora 17.0.6-2)", ("clang", "17.0.6")),
        ("c_compiler", "Apple clang version 15.0 (clang-1500.1.0.2.5)", ("apple-clang", "15.0.0")),
        ("c_compiler", "gcc (GCC) 13.2.1 20231205", ("gcc", "13.2.1")),
        ("c_compiler", "x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14) 12.2.0", ("gcc", "12.2.0")),
        ("c_compiler", "cc (Debian 12.2.0-14+deb12u1) 12.2.0", ("cc", "12.2.0")),
        ("cxx_compiler", "icpx 2024.1", ("icpx", "2024.1.0")),
        ("linker", "GNU ld (GNU Binutils for Debian) 2.40", ("gnu-ld", "2.40")),
        ("linker", "LLD 17.0.6 (compatible with GNU linkers)", ("lld", "17.0.6")),
        ("build_system", "cmake version 3.25.1\n\nCMake suite maintained", ("cmake", "3.25.1")),
        ("build_system", "cmake version 3.25", ("cmake", "3.25.0")),
        ("build_system", "something else 1.2.3", None),
        ("c_compiler", "no version here\n" * 3, None),
        ("c_compiler", "a\nb\nc\nd\ne\ngcc 1.2.3", None),  # only the first five lines count
    ],
)
def test_tool_version_rules(role: str, text: str, expected: tuple[str, str] | None) -> None:
    assert parse_tool_version(role, text) == expected


def _script(tmp_path: Path, name: str, output: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.skipif(os.name != "posix", reason="shell scripts as fake tools")
def test_toolchain_reads_cc_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", str(_script(tmp_path, "mycc", "mycc version 1.2.3")))
    tc = capture_toolchain()
    assert (tc.c_compiler_id, tc.c_compiler_version) == ("mycc", "1.2.3")


@pytest.mark.skipif(os.name != "posix", reason="shell scripts as fake tools")
def test_toolchain_failures_abort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "relative/cc")
    with pytest.raises(ContractViolationError):
        capture_toolchain()
    monkeypatch.setenv("CC", str(_script(tmp_path, "weird", "no digits at all")))
    with pytest.raises(ContractViolationError):
        capture_toolchain()


def test_backend_binary_hash() -> None:
    assert backend_binary_hash("numpy") == backend_binary_hash("numpy")
    assert len(backend_binary_hash("numpy")) == 32
    with pytest.raises(ContractViolationError):
        backend_binary_hash("jax")


def test_torch_fingerprint() -> None:
    pytest.importorskip("torch")
    fp = driver_fingerprint("torch", "cpu", "float32", 1, True)
    flags = fp.runtime_flags
    assert fp.backend_adapter_version.startswith("torch ")
    assert flags["torch.deterministic_algorithms"] == "true"
    assert flags["torch.float32_matmul_precision"] == "highest"
    assert fp.gpu_model == "none"
    cap = capture_run_environment(ManifestBackend(name="torch"))
    assert cap.env_manifest.backend_binary_hash == backend_binary_hash("torch")
    assert cap.env_manifest_hash != capture_run_environment().env_manifest_hash


def test_torch_cuda_without_a_device_is_a_capture_failure() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a CUDA device")
    with pytest.raises(ContractViolationError):
        driver_fingerprint("torch", "cuda")
