"""The local key store: where keys live, who may read them, and that they never leave it."""

from __future__ import annotations

import doctest
import hashlib
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from tests.evidence.test_certificate import inputs
from umlos.codec import decode
from umlos.errors import ContractViolationError
from umlos.evidence import certificate as cert_mod
from umlos.evidence import keys


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "umlos-home"
    monkeypatch.setenv("UMLOS_HOME", str(store))
    return store


def reason(fn: object) -> str | None:
    assert callable(fn)
    with pytest.raises(ContractViolationError) as info:
        fn()
    return info.value.reason


def test_generate_writes_a_private_0600_key_and_trusts_it(home: Path) -> None:
    info = keys.generate_key()
    assert info.path.parent == home / "keys" and info.is_default
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    assert info.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert re.fullmatch(r"ed25519:[0-9a-f]{64}", info.key_id)
    assert info.key_id == "ed25519:" + hashlib.sha256(info.public_key).hexdigest()
    assert (home / "keys" / "default").read_text().strip() == info.key_id
    store = keys.trust_store()
    assert store.trust_roots == (info.public_key,)
    assert (store.version, store.issuer_policies_hash) == ("local-v1", bytes(32))


def test_key_id_is_the_sha256_of_the_raw_public_key() -> None:
    info = keys.generate_key()
    key = keys.load_signing_key()
    assert keys.key_id(key.public_key()) == keys.key_id(info.public_key) == info.key_id
    assert keys.public_key_bytes(key) == info.public_key
    assert reason(lambda: keys.key_id(b"short")) == "KEY_MALFORMED"


def test_several_keys_default_and_listing() -> None:
    first = keys.generate_key()
    second = keys.generate_key(make_default=False)
    assert keys.show_key().key_id == first.key_id
    assert keys.show_key(second.key_id) == second
    assert keys.public_key_bytes(keys.load_signing_key(second.key_id)) == second.public_key
    assert [k.key_id for k in keys.list_keys()] == sorted([first.key_id, second.key_id])
    assert keys.trust_store().trust_roots == tuple(sorted([first.public_key, second.public_key]))


def test_home_follows_umlos_home_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert keys.home() == Path(os.environ["UMLOS_HOME"])
    monkeypatch.delenv("UMLOS_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert keys.home() == tmp_path / "xdg" / "umlos"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert keys.home() == tmp_path / "user" / ".config" / "umlos"


def test_a_key_readable_by_others_is_refused() -> None:
    info = keys.generate_key()
    info.path.chmod(0o644)
    assert reason(keys.load_signing_key) == "KEY_PERMISSIONS"


def test_missing_keys_and_store_are_key_missing() -> None:
    assert reason(keys.load_signing_key) == "KEY_MISSING"
    assert reason(keys.trust_store) == "KEY_MISSING"
    keys.generate_key()
    assert reason(lambda: keys.load_signing_key("ed25519:" + "0" * 64)) == "KEY_MISSING"


def test_malformed_key_files_are_key_malformed(home: Path) -> None:
    info = keys.generate_key()
    info.path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    assert reason(keys.load_signing_key) == "KEY_MALFORMED"
    other = Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info.path.write_bytes(other)
    assert reason(keys.load_signing_key) == "KEY_MALFORMED"
    # A valid Ed25519 key stored under another key's id.
    second = keys.generate_key(make_default=False)
    info.path.write_bytes(second.path.read_bytes())
    assert reason(keys.load_signing_key) == "KEY_MALFORMED"
    (home / keys.TRUST_STORE_FILE).write_bytes(b"\xff")
    assert reason(keys.trust_store) == "KEY_MALFORMED"


def test_add_trusted_key_keeps_roots_sorted_and_unique() -> None:
    own = keys.generate_key()
    peer = bytes.fromhex(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )  # RFC 8032
    store = keys.add_trusted_key(peer)
    assert store.trust_roots == tuple(sorted([own.public_key, peer]))
    assert keys.add_trusted_key(peer) == store
    assert reason(lambda: keys.add_trusted_key(b"\x01" * 31)) == "KEY_MALFORMED"


def test_the_private_key_never_reaches_the_run_directory_or_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    info = keys.generate_key()
    key = keys.load_signing_key()
    secret = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = info.path.read_bytes()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    store = keys.trust_store()
    cert = cert_mod.certify(
        inputs(trust_store_hash=cert_mod.trust_store_hash(store)),
        key,
        trace_final_hash=bytes(range(32)),
        verification_time_utc="2026-01-01T00:00:00Z",
        valid_until_utc="2026-12-31T00:00:00Z",
    )
    cert_mod.write_certificate(run_dir, cert, revocations=cert_mod.local_revocation_bundle())
    assert (
        cert_mod.verify_certificate(
            (run_dir / cert_mod.CERTIFICATE_FILE).read_bytes(), store
        ).verdict
        == "VALID"
    )
    for path in run_dir.rglob("*"):
        data = path.read_bytes()
        assert secret not in data and b"PRIVATE KEY" not in data and pem not in data
    assert decode((run_dir / cert_mod.CERTIFICATE_FILE).read_bytes())
    shown = repr(keys.show_key()) + repr(keys.list_keys()) + caplog.text
    assert secret.hex() not in shown and "PRIVATE KEY" not in shown
    info.path.write_bytes(pem.replace(b"A", b"B", 3))  # a damaged key file
    with pytest.raises(ContractViolationError) as failure:
        keys.load_signing_key()
    assert secret.hex() not in str(failure.value) and pem.decode() not in str(failure.value)


def test_module_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's scratch store
    result = doctest.testmod(keys)
    assert result.attempted >= 5 and result.failed == 0


def test_reasons_are_declared_in_the_error_catalogue() -> None:
    assert {"KEY_MISSING", "KEY_PERMISSIONS", "KEY_MALFORMED"} <= set(
        ContractViolationError.reasons
    )
