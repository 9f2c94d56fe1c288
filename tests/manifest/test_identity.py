"""Replay token, run id, compute seed and policy bundle hash, recomputed independently.

The independent recomputation uses cbor2's canonical mode and hashlib: for arrays of text, byte
strings and unsigned integers (no maps, no floats) its bytes are the canonical profile's.
"""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest

from tests.manifest.manifest_helpers import base, dump, with_change
from umlos._generated import tags
from umlos._generated.registry import OPERATOR_REGISTRY_ROOT_HASH
from umlos.codec import digest
from umlos.errors import ApiShapeMismatchError
from umlos.manifest import (
    ZERO_HASH,
    capture_run_environment,
    compute_seed,
    loads_manifest,
    manifest_hash,
    policy_bundle_hash,
    replay_token,
    run_id,
    run_identity,
)


def _sha(obj: Any) -> bytes:
    return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()


INPUTS: dict[str, Any] = {
    "spec_version": "UML_OS.Config.Manifest_v1",
    "policy_bundle_hash": bytes(range(32)),
    "env_manifest_hash": bytes([1]) * 32,
    "determinism_profile_hash": bytes([2]) * 32,
    "driver_runtime_fingerprint_hash": bytes([3]) * 32,
    "seed": 2**64 - 1,
}


def _expected_token(inputs: dict[str, Any], registry: bytes = OPERATOR_REGISTRY_ROOT_HASH) -> bytes:
    return _sha(
        [
            tags.REPLAY_TOKEN,
            [
                inputs["spec_version"],
                inputs["policy_bundle_hash"],
                inputs["env_manifest_hash"],
                registry,
                inputs["determinism_profile_hash"],
                inputs["driver_runtime_fingerprint_hash"],
                inputs["seed"],
            ],
        ]
    )


def test_replay_token_matches_the_spec_formula() -> None:
    assert replay_token(**INPUTS) == _expected_token(INPUTS)
    other = bytes([9]) * 32
    assert replay_token(**INPUTS, operator_registry_root_hash=other) == _expected_token(
        INPUTS, other
    )


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_replay_token_binds_every_input(name: str) -> None:
    changed = dict(INPUTS)
    value = changed[name]
    changed[name] = (
        value + "x"
        if isinstance(value, str)
        else value - 1
        if isinstance(value, int)
        else bytes(32)
    )
    assert replay_token(**changed) != replay_token(**INPUTS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("env_manifest_hash", bytes(31)),
        ("policy_bundle_hash", "00" * 32),
        ("seed", -1),
        ("seed", 2**64),
    ],
)
def test_replay_token_refuses_bad_inputs(name: str, value: Any) -> None:
    with pytest.raises(ApiShapeMismatchError):
        replay_token(**{**INPUTS, name: value})


def test_run_id_matches_the_spec_formula() -> None:
    token = replay_token(**INPUTS)
    expected = _sha(["acme", token])[:8].hex()
    assert run_id("acme", token) == expected
    assert len(expected) == 16 and expected == expected.lower()
    assert run_id("other", token) != expected


def test_policy_bundle_hash_is_zero_in_local_mode_without_a_bundle() -> None:
    m = loads_manifest(dump(base())).manifest
    assert m.policy_bundle is None
    assert policy_bundle_hash(m) == ZERO_HASH == bytes(32)


def test_compute_seed_formula_and_backend_independence() -> None:
    m = loads_manifest(dump(base())).manifest
    obj = m.to_obj()
    del obj["backend"]
    expected = _sha([tags.COMPUTE_SEED, [digest(obj), m.seed]])
    assert compute_seed(m) == expected

    torch_m = loads_manifest(dump(with_change("backend", {"name": "torch", "dtype": "float64"})))
    assert torch_m.manifest_hash != manifest_hash(m)
    assert compute_seed(torch_m.manifest) == compute_seed(m)

    for path, value in [("seed", 1), ("optimizer.lr", 0.5), ("global_batch_size", 8)]:
        assert compute_seed(
            loads_manifest(dump(with_change(path, value))).manifest
        ) != compute_seed(m)


def test_run_identity_composes_the_parts() -> None:
    m = loads_manifest(dump(base())).manifest
    cap = capture_run_environment(m.backend)
    ident = run_identity(m, cap)
    token = _expected_token(
        {
            "spec_version": m.spec_version,
            "policy_bundle_hash": bytes(32),
            "env_manifest_hash": cap.env_manifest_hash,
            "determinism_profile_hash": cap.determinism_profile_hash,
            "driver_runtime_fingerprint_hash": cap.driver_fingerprint_hash,
            "seed": m.seed,
        }
    )
    assert ident.replay_token == token
    assert ident.run_id == _sha([m.tenant_id, [token, ident.manifest_hash]])[:8].hex()
    assert ident.manifest_hash == manifest_hash(m)
    assert ident.compute_seed == compute_seed(m)
    assert ident.policy_bundle_hash == bytes(32)
