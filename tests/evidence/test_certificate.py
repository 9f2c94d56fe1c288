"""Execution certificates: exact bytes, the verification procedure, and a negative test per step."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any, get_args

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tests.conftest import ROOT
from umlos._generated.records import (
    AttestationBundle,
    CertificateInputs,
    CertificateUnsignedMetadata,
    ExecutionCertificate,
    ExecutionCertificatePayload,
    RevocationBundle,
    TrustStore,
)
from umlos.codec import commit_hash, decode, digest, encode
from umlos.errors import (
    ApiShapeMismatchError,
    AttestationFailureError,
    Error,
    SignatureMismatchError,
)
from umlos.evidence import certificate as cert_mod
from umlos.evidence.certificate import (
    build_payload,
    certificate_hash,
    certificate_report,
    certify,
    encode_certificate,
    local_revocation_bundle,
    local_trust_store,
    sign_certificate,
    verify_certificate,
    write_certificate,
)
from umlos.evidence.keys import key_id, public_key_bytes

# Fixed keys: Ed25519 signing is deterministic (RFC 8032), so a fixed key gives fixed bytes.
SIGNER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"umlos test signer").digest())
STRANGER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"umlos test stranger").digest())
STORE = local_trust_store([public_key_bytes(SIGNER)])
T0, T1 = "2026-03-01T12:00:00Z", "2027-03-01T12:00:00Z"
# Pinned: certificate_hash of the certificate make() builds. A change means the payload layout,
# the signed bytes or the hash preimage changed.
GOLDEN_CERTIFICATE_HASH = "cff0961d58254201851d85e06225d56f82d18d577cf79b191a7008bab030f150"


def _h(label: str) -> bytes:
    return digest(["tests.evidence.certificate", label])


def inputs(**overrides: Any) -> CertificateInputs:
    base: dict[str, Any] = {
        "tenant_id": "tests",
        "run_id": "0123456789abcdef",
        "replay_token": _h("replay_token"),
        "manifest_hash": _h("manifest"),
        "checkpoint_hash": _h("checkpoint"),
        "policy_bundle_hash": _h("policy_bundle"),
        "policy_gate_hash": _h("policy_gate"),
        "authz_decision_hash": _h("authz_decision"),
        "dependencies_lock_hash": _h("dependencies_lock"),
        "lockfile_hash": _h("lockfile"),
        "toolchain_hash": _h("toolchain"),
        "determinism_profile_hash": _h("determinism_profile"),
        "operator_contracts_root_hash": _h("operator_contracts_root"),
        "ir_hash": _h("ir"),
        "lineage_root_hash": _h("lineage_root"),
        "sampler_config_hash": _h("sampler_config"),
        "data_access_plan_hash": _h("data_access_plan"),
        "dataset_snapshot_id": _h("dataset_snapshot").hex(),
        "tmmu_plan_hash": _h("tmmu_plan"),
        "backend_binary_hash": _h("backend_binary"),
        "trust_mode": "SOFTWARE_ONLY",
        "trust_store_hash": cert_mod.trust_store_hash(STORE),
        "revocation_bundle_hash": cert_mod.revocation_bundle_hash(local_revocation_bundle()),
        "step_start": 1,
        "step_end": 6,
    }
    base.update(overrides)
    return CertificateInputs(**base)


def make(key: Ed25519PrivateKey = SIGNER, **overrides: Any) -> bytes:
    cert = certify(
        inputs(**overrides),
        key,
        trace_final_hash=_h("trace_final"),
        verification_time_utc=T0,
        valid_until_utc=T1,
    )
    return encode_certificate(cert)


def sign_raw(payload_obj: dict[str, Any], key: Ed25519PrivateKey = SIGNER) -> bytes:
    """Sign a payload without build_payload's checks (to reach the verifier's own)."""
    payload = ExecutionCertificatePayload.from_obj(payload_obj)
    return encode_certificate(sign_certificate(payload, key))


def payload_of(cert_bytes: bytes) -> dict[str, Any]:
    obj: Any = decode(cert_bytes)
    return dict(obj["signed_payload"])


def failure(cert_bytes: bytes, *args: Any, **kwargs: Any) -> Error:
    with pytest.raises(Error) as info:
        verify_certificate(cert_bytes, *args, **kwargs)
    return info.value


# --- the happy path and exact bytes ------------------------------------------------------------


def test_valid_certificate_gives_a_valid_report_in_procedure_order() -> None:
    data = make()
    report = verify_certificate(data, STORE, expected=inputs())
    assert report.verdict == "VALID"
    assert [(c.check_id, c.status) for c in report.checks] == [
        ("TRUST_CHAIN", "PASS"),
        ("SIGNATURE", "PASS"),
        ("REQUIRED_FIELDS", "PASS"),
        ("KEY_VALIDITY", "SKIP"),
        ("EXPIRY", "PASS"),
        ("REVOCATION", "PASS"),
        ("POLICY_DECOMPOSITION", "SKIP"),
        ("ATTESTATION", "SKIP"),
        ("CONFORMANCE_SUITE", "SKIP"),
    ]
    assert report.trust_roots_used == (public_key_bytes(SIGNER),)
    assert report.key_id == key_id(SIGNER.public_key())
    assert (report.revocation_mode, report.revocation_status) == (
        "PINNED_OFFLINE_BUNDLE",
        "NOT_REVOKED",
    )
    assert report.attestation_status == "NOT_REQUIRED"
    assert (report.policy_gate_linkage_status, report.authz_linkage_status) == ("LINKED", "LINKED")
    assert verify_certificate(data, STORE).policy_gate_linkage_status == "NOT_CHECKED"


def test_same_inputs_give_the_same_bytes_and_a_pinned_hash() -> None:
    a, b = make(), make()
    assert a == b
    cert = ExecutionCertificate.from_obj(decode(a))
    assert certificate_hash(cert).hex() == GOLDEN_CERTIFICATE_HASH
    assert verify_certificate(a, STORE).certificate_hash == certificate_hash(cert)


def test_certificate_hash_and_signature_exclude_unsigned_metadata() -> None:
    base = ExecutionCertificate.from_obj(decode(make()))
    noted = dataclasses.replace(
        base,
        unsigned_metadata=CertificateUnsignedMetadata(
            wall_time_start_utc=T0, notes=("ran on a laptop",)
        ),
    )
    assert certificate_hash(noted) == certificate_hash(base)
    assert certificate_hash(base) == digest(
        {"signed_payload": base.signed_payload.to_obj(), "signature": base.signature}
    )
    report = verify_certificate(encode_certificate(noted), STORE)
    assert report.verdict == "VALID" and report.certificate_hash == certificate_hash(base)


def test_inputs_hash_is_the_digest_of_the_inputs_record() -> None:
    assert cert_mod.certificate_inputs_hash(inputs()) == digest(inputs().to_obj())


def test_write_certificate_stores_certificate_and_captured_revocations(tmp_path: Path) -> None:
    cert = ExecutionCertificate.from_obj(decode(make()))
    digest_ = write_certificate(tmp_path, cert, revocations=local_revocation_bundle())
    assert digest_ == certificate_hash(cert)
    stored = (tmp_path / cert_mod.CERTIFICATE_FILE).read_bytes()
    revocations = RevocationBundle.from_obj(
        decode((tmp_path / cert_mod.REVOCATION_FILE).read_bytes())
    )
    assert verify_certificate(stored, STORE, revocations).verdict == "VALID"
    other = dataclasses.replace(
        local_revocation_bundle(), revoked_key_ids=(key_id(STRANGER.public_key()),)
    )
    with pytest.raises(ApiShapeMismatchError):
        write_certificate(tmp_path, cert, revocations=other)


# --- build-time refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"redaction_key_id": "k1"}, "$.redaction_key_id"),
        ({"trust_mode": "ATTESTED"}, "$.attestation_bundle_hash"),
        ({"attestation_quote_hash": _h("q")}, "$.attestation_bundle_hash"),
        ({"dp_epsilon": 1.0}, "$.dp_accountant_state_hash"),
        ({"step_start": 7}, "$.step_start"),
    ],
    ids=[
        "redaction-half",
        "attested-without-quote",
        "quote-in-software-only",
        "dp-without-accountant",
        "steps-reversed",
    ],
)
def test_build_refuses_a_broken_conditional_rule(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(ApiShapeMismatchError) as info:
        make(**overrides)
    assert (info.value.reason, info.value.path) == ("CONSTRAINT", path)


def test_build_refuses_expiry_before_verification_and_a_foreign_signing_key() -> None:
    with pytest.raises(ApiShapeMismatchError):
        build_payload(
            inputs(),
            trace_final_hash=_h("t"),
            key_id=key_id(SIGNER.public_key()),
            verification_time_utc=T1,
            valid_until_utc=T0,
        )
    payload = build_payload(
        inputs(),
        trace_final_hash=_h("t"),
        key_id=key_id(SIGNER.public_key()),
        verification_time_utc=T0,
        valid_until_utc=T1,
    )
    with pytest.raises(ApiShapeMismatchError) as info:
        sign_certificate(payload, STRANGER)
    assert info.value.path == "$.key_id"


# --- one negative test per verification step --------------------------------------------------


def test_malformed_bytes_are_cert_malformed() -> None:
    data = make()
    for bad in (
        data[:-3],
        b"",
        data + b"\x00",
        cbor2.dumps(dict(reversed(list(cbor2.loads(data).items())))),
    ):
        err = failure(bad, STORE)
        assert isinstance(err, SignatureMismatchError) and err.reason == "CERT_MALFORMED"
    with pytest.raises(SignatureMismatchError):  # the report form cannot report on no payload
        certificate_report(b"\xa0", STORE)


def test_unknown_signer_is_refused_before_the_signature() -> None:
    err = failure(make(STRANGER), STORE)
    assert isinstance(err, SignatureMismatchError) and err.reason == "UNKNOWN_SIGNER"
    assert err.context["key_id"] == key_id(STRANGER.public_key())
    assert {"t", "key_id", "certificate_hash"} <= set(err.context)


def test_wrong_key_signature_is_bad_signature() -> None:
    """Payload names the trusted key; the bytes were signed by another key."""
    obj: Any = decode(make())
    obj["signature"] = STRANGER.sign(encode(obj["signed_payload"]))
    assert failure(encode(obj), STORE).reason == "BAD_SIGNATURE"


def test_tampered_payload_is_bad_signature() -> None:
    obj: Any = decode(make())
    obj["signed_payload"]["step_end"] = 7
    assert failure(encode(obj), STORE).reason == "BAD_SIGNATURE"


def test_tampered_signature_is_bad_signature() -> None:
    obj: Any = decode(make())
    sig = bytearray(obj["signature"])
    sig[10] ^= 0x40
    obj["signature"] = bytes(sig)
    assert failure(encode(obj), STORE).reason == "BAD_SIGNATURE"


def test_certificate_swapped_in_from_another_run_is_evidence_mismatch() -> None:
    ours, theirs = inputs(), inputs(run_id="fedcba9876543210", checkpoint_hash=_h("other"))
    other_run = make(run_id="fedcba9876543210", checkpoint_hash=_h("other"))
    assert verify_certificate(other_run, STORE, expected=theirs).verdict == "VALID"
    err = failure(other_run, STORE, expected=ours)
    assert err.reason == "EVIDENCE_MISMATCH" and err.path == "$.signed_payload.checkpoint_hash"
    assert (
        failure(other_run, STORE, expected={"trace_final_hash": _h("other trace")}).reason
        == "EVIDENCE_MISMATCH"
    )
    # The other run's signature on our payload does not verify either.
    mixed: Any = decode(make())
    theirs_obj: Any = decode(other_run)
    assert mixed["signature"] != theirs_obj["signature"]
    mixed["signature"] = theirs_obj["signature"]
    assert failure(encode(mixed), STORE).reason == "BAD_SIGNATURE"


def test_signed_but_inconsistent_payload_is_cert_fields() -> None:
    obj = payload_of(make())
    obj["redaction_key_id"] = "key-1"
    assert failure(sign_raw(obj), STORE).reason == "CERT_FIELDS"
    obj = payload_of(make())
    obj["valid_until_utc"] = "2027-02-31T00:00:00Z"  # matches the pattern, is no date
    assert failure(sign_raw(obj), STORE).reason == "CERT_FIELDS"


def test_expired_certificate_is_expired() -> None:
    obj = payload_of(make())
    obj["verification_time_utc"], obj["valid_until_utc"] = T1, T0
    assert failure(sign_raw(obj), STORE).reason == "EXPIRED"
    data = make()
    assert verify_certificate(data, STORE, at=T1).verdict == "VALID"  # inclusive bound
    assert failure(data, STORE, at="2027-03-01T12:00:01Z").reason == "EXPIRED"


def test_revoked_signer_is_signer_revoked() -> None:
    revoked = dataclasses.replace(
        local_revocation_bundle(), revoked_key_ids=(key_id(SIGNER.public_key()),)
    )
    data = make(revocation_bundle_hash=cert_mod.revocation_bundle_hash(revoked))
    err = failure(data, STORE, revoked)
    assert err.reason == "SIGNER_REVOKED"
    report = certificate_report(data, STORE, revoked)
    assert (report.verdict, report.revocation_status) == ("INVALID", "REVOKED")


def test_revocation_bundle_other_than_the_captured_one_is_refused() -> None:
    revoked = dataclasses.replace(
        local_revocation_bundle(), revoked_key_ids=(key_id(SIGNER.public_key()),)
    )
    data = make(revocation_bundle_hash=cert_mod.revocation_bundle_hash(revoked))
    assert failure(data, STORE).reason == "REVOCATION_BUNDLE_MISMATCH"  # the empty local bundle


def test_policy_components_must_recommit_to_the_bundle() -> None:
    sec, authz, mon = _h("security"), _h("authz"), _h("monitor")
    bundle = commit_hash("policy_bundle_v1", [sec, authz, mon, None, None])
    good = make(
        policy_bundle_hash=bundle,
        security_policy_hash=sec,
        authz_policy_hash=authz,
        monitor_policy_hash=mon,
    )
    checks = {c.check_id: c.status for c in verify_certificate(good, STORE).checks}
    assert checks["POLICY_DECOMPOSITION"] == "PASS"
    bad = make(security_policy_hash=sec, authz_policy_hash=authz, monitor_policy_hash=mon)
    assert failure(bad, STORE).reason == "POLICY_DECOMPOSITION"
    partial = make(policy_bundle_hash=bundle, security_policy_hash=sec)
    assert failure(partial, STORE).reason == "POLICY_DECOMPOSITION"


def test_attested_certificate_needs_its_matching_attestation_bundle() -> None:
    attestation = AttestationBundle(
        tee_type="SEV_SNP",
        measurements_hash=_h("measurements"),
        quote_blob=b"quote bytes",
        verification_report_hash=_h("attestation report"),
        tcb_version="1.55",
    )
    data = make(
        trust_mode="ATTESTED",
        attestation_quote_hash=hashlib.sha256(attestation.quote_blob).digest(),
        attestation_bundle_hash=digest(attestation.to_obj()),
    )
    report = verify_certificate(data, STORE, attestation=attestation)
    assert (report.verdict, report.attestation_status) == ("VALID", "VERIFIED")
    err = failure(data, STORE)
    assert isinstance(err, AttestationFailureError) and err.reason == "ATTESTATION_MISSING"
    other = dataclasses.replace(attestation, quote_blob=b"another quote")
    err = failure(data, STORE, attestation=other)
    assert isinstance(err, AttestationFailureError) and err.reason == "ATTESTATION_MISMATCH"
    assert certificate_report(data, STORE).attestation_status == "FAILED"


def test_report_marks_the_failed_step_and_skips_the_rest() -> None:
    obj: Any = decode(make())
    obj["signed_payload"]["step_end"] = 7
    report = certificate_report(encode(obj), STORE)
    assert report.verdict == "INVALID"
    statuses = [(c.check_id, c.status, c.detail) for c in report.checks]
    assert statuses[:2] == [
        ("TRUST_CHAIN", "PASS", ""),
        ("SIGNATURE", "FAIL", "Ed25519 signature does not verify"),
    ]
    assert all(s == "SKIP" and d == "not reached" for _, s, d in statuses[2:])


def test_expected_must_name_payload_fields() -> None:
    with pytest.raises(ValueError, match="no_such_field"):
        verify_certificate(make(), STORE, expected={"no_such_field": 1})


# --- third-party verification ------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """Map keys sorted as canonical CBOR wants (shorter key first, then bytewise); cbor2's
    default encoder already writes definite lengths, shortest integers and 8-byte floats."""
    if isinstance(value, dict):
        ordered = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _canonical(value[k]) for k in ordered}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def third_party_verify(cert_bytes: bytes, trusted_public_keys: list[bytes]) -> bytes:
    """Verify with cbor2, cryptography and hashlib only, following docs/formats/certificate.md.

    Returns the certificate hash; raises on any failure. No umlos import is used here.
    """
    cert = cbor2.loads(cert_bytes)
    payload = cert["signed_payload"]
    signed = cbor2.dumps(_canonical(payload))
    keys = {"ed25519:" + hashlib.sha256(k).hexdigest(): k for k in trusted_public_keys}
    public = Ed25519PublicKey.from_public_bytes(keys[payload["key_id"]])
    public.verify(cert["signature"], signed)  # raises InvalidSignature
    if payload["verification_time_utc"] > payload["valid_until_utc"]:
        raise ValueError("expired")
    envelope = {"signed_payload": payload, "signature": cert["signature"]}
    return hashlib.sha256(cbor2.dumps(_canonical(envelope))).digest()


def test_a_third_party_verifies_with_cbor2_and_cryptography_only() -> None:
    data = make(dp_epsilon=2.5, dp_delta=1e-5, dp_accountant_state_hash=_h("accountant"))
    assert (
        third_party_verify(data, [public_key_bytes(SIGNER)])
        == verify_certificate(data, STORE).certificate_hash
    )
    obj: Any = decode(data)
    obj["signed_payload"]["dp_epsilon"] = 2.0
    with pytest.raises(InvalidSignature):
        third_party_verify(encode(obj), [public_key_bytes(SIGNER)])
    with pytest.raises(KeyError):
        third_party_verify(make(STRANGER), [public_key_bytes(SIGNER)])


def test_trust_store_with_several_roots_picks_the_named_one() -> None:
    store = local_trust_store([public_key_bytes(STRANGER), public_key_bytes(SIGNER)])
    assert isinstance(store, TrustStore) and list(store.trust_roots) == sorted(store.trust_roots)
    assert verify_certificate(make(STRANGER), store).trust_roots_used == (
        public_key_bytes(STRANGER),
    )


def test_the_documented_byte_layout_holds() -> None:
    data = make()
    payload = ExecutionCertificate.from_obj(decode(data)).signed_payload
    assert data[:13] == b"\xa2\x69signature\x58\x40"
    assert data[77:92] == b"\x6esigned_payload"
    assert data[92:] == cert_mod.signed_bytes(payload)
    assert hashlib.sha256(data).digest() == verify_certificate(data, STORE).certificate_hash
    doc = (ROOT / "docs" / "formats" / "certificate.md").read_text()
    listed = doc.split("field that may appear:", 1)[1].strip().split("\n\n", 1)[0]
    order = re.findall(r"`([a-z_0-9]+)`", listed)
    assert order == sorted(ExecutionCertificatePayload._fields, key=lambda k: (len(k), k))
    for reason in get_args(cert_mod.CertificateReason):
        assert f"`{reason}`" in doc or reason.startswith("ATTESTATION_"), reason


def test_reasons_are_declared_in_the_error_catalogue() -> None:
    reasons = set(get_args(cert_mod.CertificateReason))
    attestation = {r for r in reasons if r.startswith("ATTESTATION_")}
    assert reasons - attestation <= set(SignatureMismatchError.reasons)
    assert attestation <= set(AttestationFailureError.reasons)
