"""The execution certificate: one Ed25519-signed evidence tuple per run.

Format: ``docs/formats/certificate.md``; schema: ``contracts/schemas/certificate.yaml``.

* **Build** (:func:`build_payload`): the :class:`CertificateInputs` bound into the trace before
  RUN_END, plus ``trace_final_hash`` and the signature context (``key_id``,
  ``signature_algorithm``, ``verification_time_utc``, ``valid_until_utc``). Times are declared
  inputs, never read from the clock here.
* **Sign** (:func:`sign_certificate`): Ed25519 (RFC 8032) over ``encode(signed_payload)``, the
  payload's canonical CBOR and nothing else — no domain tag, no ``unsigned_metadata``
  (CERTIFICATE_SIGNED_PAYLOAD_HASH). ``certificate_hash = Digest({signed_payload, signature})``.
* **Verify** (:func:`verify_certificate`), in this order; the first failure ends it:

  1. decode strictly (canonical CBOR, schema) — else ``CERT_MALFORMED``;
  2. TRUST_CHAIN: ``key_id`` names a trust root of the verifier's store — ``UNKNOWN_SIGNER``;
  3. SIGNATURE: Ed25519 over the payload's canonical bytes — ``BAD_SIGNATURE``;
  4. REQUIRED_FIELDS: conditional-field rules (``CERT_FIELDS``), and every ``expected`` value
     equals the payload's (``EVIDENCE_MISMATCH``: a certificate of another run);
  5. KEY_VALIDITY: skipped, a raw-key trust store declares no validity windows;
  6. EXPIRY: ``verification_time_utc`` (and the caller's declared ``at``, if any) is not after
     ``valid_until_utc`` — ``EXPIRED``; the verifier's clock is never read;
  7. REVOCATION: the captured bundle hashes to ``revocation_bundle_hash``
     (``REVOCATION_BUNDLE_MISMATCH``) and does not list ``key_id`` (``SIGNER_REVOKED``);
  8. POLICY_DECOMPOSITION: present component hashes recommit to ``policy_bundle_hash``
     (``POLICY_DECOMPOSITION``);
  9. ATTESTATION: in ATTESTED mode the supplied AttestationBundle matches both attestation
     hashes (``ATTESTATION_MISSING`` / ``ATTESTATION_MISMATCH``, code ATTESTATION_FAILURE);
  10. CONFORMANCE_SUITE: skipped, no suite registry exists yet.

  Every other failure raises :class:`~umlos.errors.SignatureMismatchError` with the reason
  named. :func:`certificate_report` returns the same :class:`TrustReport` without raising.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from umlos._generated import tags
from umlos._generated.records import (
    AttestationBundle,
    CertificateCheck,
    CertificateInputs,
    CertificateUnsignedMetadata,
    ExecutionCertificate,
    ExecutionCertificatePayload,
    RevocationBundle,
    TrustReport,
    TrustStore,
)
from umlos.codec import CborError, commit_hash, decode, digest, encode
from umlos.errors import (
    ApiShapeMismatchError,
    AttestationFailureError,
    Error,
    SignatureMismatchError,
)
from umlos.evidence._frames import atomic_write
from umlos.evidence.keys import key_id as _key_id

CERTIFICATE_FILE: Final = "execution_certificate.cbor"
REVOCATION_FILE: Final = "revocation_bundle.cbor"
SIGNATURE_ALGORITHM: Final = "ed25519"
# A certificate is a few kilobytes (40 fields, ≤ 64 notes of ≤ 4 KiB in unsigned metadata:
# about 300 KiB at most); refuse larger input before decoding it.
MAX_CERTIFICATE_BYTES: Final = 1024 * 1024
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"

CertificateReason = Literal[
    "CERT_MALFORMED",
    "UNKNOWN_SIGNER",
    "BAD_SIGNATURE",
    "CERT_FIELDS",
    "EVIDENCE_MISMATCH",
    "EXPIRED",
    "REVOCATION_BUNDLE_MISMATCH",
    "SIGNER_REVOKED",
    "POLICY_DECOMPOSITION",
    "ATTESTATION_MISSING",
    "ATTESTATION_MISMATCH",
]
CheckId = Literal[
    "SIGNATURE",
    "REQUIRED_FIELDS",
    "TRUST_CHAIN",
    "KEY_VALIDITY",
    "EXPIRY",
    "REVOCATION",
    "POLICY_DECOMPOSITION",
    "ATTESTATION",
    "CONFORMANCE_SUITE",
]
_ORDER: Final[tuple[CheckId, ...]] = (
    "TRUST_CHAIN",
    "SIGNATURE",
    "REQUIRED_FIELDS",
    "KEY_VALIDITY",
    "EXPIRY",
    "REVOCATION",
    "POLICY_DECOMPOSITION",
    "ATTESTATION",
    "CONFORMANCE_SUITE",
)


# --- trust objects ----------------------------------------------------------------------------


def local_trust_store(public_keys: list[bytes]) -> TrustStore:
    """A local-mode store (spec decision 40): ``local-v1``, no issuer policies (32 zero bytes).

    >>> store = local_trust_store([bytes([2]) * 32, bytes([1]) * 32])
    >>> store.version, [root[0] for root in store.trust_roots], len(trust_store_hash(store))
    ('local-v1', [1, 2], 32)
    """
    return TrustStore(
        trust_roots=tuple(sorted(set(public_keys))),
        version="local-v1",
        issuer_policies_hash=bytes(32),
    )


def local_revocation_bundle() -> RevocationBundle:
    """The local-mode bundle: PINNED_OFFLINE_BUNDLE, nothing revoked, nothing fetched
    (``fetch_metadata_hash = Digest([])``, the digest of an empty fetch log)."""
    return RevocationBundle(
        mode="PINNED_OFFLINE_BUNDLE",
        revoked_key_ids=(),
        fetch_metadata_hash=digest([]),
        source_timestamps=(),
    )


def trust_store_hash(store: TrustStore) -> bytes:
    """``Digest(TrustStore)``."""
    return digest(store.to_obj())


def revocation_bundle_hash(bundle: RevocationBundle) -> bytes:
    """``Digest(RevocationBundle)``."""
    return digest(bundle.to_obj())


def certificate_inputs_hash(inputs: CertificateInputs) -> bytes:
    """``Digest(CertificateInputs)``, bound into the trace by the CERTIFICATE_INPUTS record."""
    return digest(inputs.to_obj())


# --- build and sign ---------------------------------------------------------------------------


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, _TIME_FORMAT)
    except ValueError:  # the schema pattern admits 2025-02-31
        return None


def payload_problems(payload: ExecutionCertificatePayload) -> list[tuple[str, str]]:
    """The conditional rules the schema states in prose, as ``(json_path, message)`` pairs."""
    p = payload
    out: list[tuple[str, str]] = []
    for name in ("verification_time_utc", "valid_until_utc"):
        if _parse_time(getattr(p, name)) is None:
            out.append((f"$.{name}", "is not a calendar time"))
    if (p.redaction_policy_hash is None) != (p.redaction_key_id is None):
        out.append(("$.redaction_key_id", "redaction_policy_hash and redaction_key_id go together"))
    attested = (p.attestation_quote_hash, p.attestation_bundle_hash)
    if p.trust_mode == "ATTESTED" and None in attested:
        out.append(("$.attestation_bundle_hash", "ATTESTED needs both attestation hashes"))
    if p.trust_mode == "SOFTWARE_ONLY" and attested != (None, None):
        out.append(("$.attestation_bundle_hash", "SOFTWARE_ONLY carries no attestation hashes"))
    if (p.dp_epsilon is not None or p.dp_delta is not None) and p.dp_accountant_state_hash is None:
        out.append(("$.dp_accountant_state_hash", "DP results need the accountant state hash"))
    if p.step_start > p.step_end:
        out.append(("$.step_start", f"step_start {p.step_start} > step_end {p.step_end}"))
    return out


def build_payload(
    inputs: CertificateInputs,
    *,
    trace_final_hash: bytes,
    key_id: str,
    verification_time_utc: str,
    valid_until_utc: str,
) -> ExecutionCertificatePayload:
    """The signed payload: ``inputs`` plus the final trace hash and the signature context.

    Raises ``ApiShapeMismatchError`` (``CONSTRAINT``) for a broken conditional rule or a
    verification time after ``valid_until_utc``.
    """
    obj = {
        **inputs.to_obj(),
        "trace_final_hash": trace_final_hash,
        "key_id": key_id,
        "signature_algorithm": SIGNATURE_ALGORITHM,
        "verification_time_utc": verification_time_utc,
        "valid_until_utc": valid_until_utc,
    }
    payload = ExecutionCertificatePayload.from_obj(obj)
    problems = payload_problems(payload)
    if not problems and valid_until_utc < verification_time_utc:  # same format: text order
        problems.append(("$.valid_until_utc", "is before verification_time_utc"))
    if problems:
        path, message = problems[0]
        raise ApiShapeMismatchError(message, reason="CONSTRAINT", path=path)
    return payload


def signed_bytes(payload: ExecutionCertificatePayload) -> bytes:
    """The exact bytes the signature covers: the payload's canonical CBOR."""
    return encode(payload.to_obj())


def sign_certificate(
    payload: ExecutionCertificatePayload,
    key: Ed25519PrivateKey,
    *,
    unsigned_metadata: CertificateUnsignedMetadata | None = None,
) -> ExecutionCertificate:
    """Sign ``payload`` with ``key``, whose id must be the payload's ``key_id``."""
    if _key_id(key.public_key()) != payload.key_id:
        raise ApiShapeMismatchError(
            f"payload names {payload.key_id} but the signing key is another",
            reason="CONSTRAINT",
            path="$.key_id",
        )
    return ExecutionCertificate(
        signed_payload=payload,
        signature=key.sign(signed_bytes(payload)),
        unsigned_metadata=unsigned_metadata,
    )


def certify(
    inputs: CertificateInputs,
    key: Ed25519PrivateKey,
    *,
    trace_final_hash: bytes,
    verification_time_utc: str,
    valid_until_utc: str,
    unsigned_metadata: CertificateUnsignedMetadata | None = None,
) -> ExecutionCertificate:
    """:func:`build_payload` with the key's id, then :func:`sign_certificate`."""
    payload = build_payload(
        inputs,
        trace_final_hash=trace_final_hash,
        key_id=_key_id(key.public_key()),
        verification_time_utc=verification_time_utc,
        valid_until_utc=valid_until_utc,
    )
    return sign_certificate(payload, key, unsigned_metadata=unsigned_metadata)


def certificate_hash(cert: ExecutionCertificate) -> bytes:
    """``Digest({signed_payload, signature})``: unsigned_metadata never enters it (decision 26)."""
    return digest({"signed_payload": cert.signed_payload.to_obj(), "signature": cert.signature})


def encode_certificate(cert: ExecutionCertificate) -> bytes:
    """The stored form of ``execution_certificate.cbor`` (canonical CBOR of the whole record)."""
    return encode(cert.to_obj())


def write_certificate(
    run_dir: Path, cert: ExecutionCertificate, *, revocations: RevocationBundle
) -> bytes:
    """Write ``execution_certificate.cbor`` and the captured ``revocation_bundle.cbor`` into
    ``run_dir`` atomically; return the certificate hash. No key material is written."""
    if revocation_bundle_hash(revocations) != cert.signed_payload.revocation_bundle_hash:
        raise ApiShapeMismatchError(
            "the revocation bundle is not the one the certificate captured",
            reason="CONSTRAINT",
            path="$.signed_payload.revocation_bundle_hash",
        )
    run_dir = Path(run_dir)
    atomic_write(run_dir / REVOCATION_FILE, encode(revocations.to_obj()))
    atomic_write(run_dir / CERTIFICATE_FILE, encode_certificate(cert))
    return certificate_hash(cert)


# --- verify -----------------------------------------------------------------------------------


class _Checks:
    """Records checks in execution order; after the first failure the rest are not reached."""

    def __init__(self) -> None:
        self.done: list[CertificateCheck] = []
        self.error: Error | None = None

    def run(self, check_id: CheckId, step: Callable[[], Error | str | None]) -> None:
        if self.error is not None:
            self.done.append(
                CertificateCheck(check_id=check_id, status="SKIP", detail="not reached")
            )
            return
        outcome = step()
        if isinstance(outcome, Error):
            self.error = outcome
            detail = outcome.message[:1024]
            self.done.append(CertificateCheck(check_id=check_id, status="FAIL", detail=detail))
        elif isinstance(outcome, str):  # a reason to skip
            self.done.append(CertificateCheck(check_id=check_id, status="SKIP", detail=outcome))
        else:
            self.done.append(CertificateCheck(check_id=check_id, status="PASS", detail=""))


def _decode_certificate(cert_bytes: bytes) -> ExecutionCertificate:
    if len(cert_bytes) > MAX_CERTIFICATE_BYTES:
        raise SignatureMismatchError(
            f"certificate has {len(cert_bytes)} bytes, more than {MAX_CERTIFICATE_BYTES}",
            reason="CERT_MALFORMED",
            artifact=CERTIFICATE_FILE,
        )
    try:
        return ExecutionCertificate.from_obj(decode(cert_bytes))
    except CborError as exc:
        raise SignatureMismatchError(
            f"certificate is not canonical CBOR: {exc.message}",
            reason="CERT_MALFORMED",
            artifact=CERTIFICATE_FILE,
            offset=exc.offset,
        ) from exc
    except Error as exc:
        raise SignatureMismatchError(
            f"certificate does not validate: {exc.message}",
            reason="CERT_MALFORMED",
            artifact=CERTIFICATE_FILE,
            path=exc.path,
        ) from exc


def _verify(
    cert_bytes: bytes,
    store: TrustStore,
    *,
    revocations: RevocationBundle | None,
    expected: CertificateInputs | Mapping[str, object] | None,
    attestation: AttestationBundle | None,
    at: str | None,
) -> tuple[TrustReport, Error | None]:
    # 1. Decode strictly.
    cert = _decode_certificate(bytes(cert_bytes))
    p = cert.signed_payload
    c_hash = certificate_hash(cert)
    ctx: dict[str, Any] = {"t": p.step_end, "key_id": p.key_id, "certificate_hash": c_hash.hex()}
    bundle = revocations if revocations is not None else local_revocation_bundle()
    wanted = expected.to_obj() if isinstance(expected, CertificateInputs) else dict(expected or {})
    fields = ExecutionCertificatePayload._fields
    unknown = sorted(set(wanted) - fields)
    if unknown:
        raise ValueError(f"expected names fields the payload does not have: {unknown}")
    roots = {_key_id(r): r for r in store.trust_roots}
    used: list[bytes] = []

    def fail(message: str, *, reason: CertificateReason, path: str | None = None) -> Error:
        return SignatureMismatchError(
            message, reason=reason, path=path, artifact=CERTIFICATE_FILE, context=ctx
        )

    def trust_chain() -> Error | None:  # 2.
        root = roots.get(p.key_id)
        if root is None:
            return fail(
                f"{p.key_id} is not a root of the trust store",
                reason="UNKNOWN_SIGNER",
                path="$.signed_payload.key_id",
            )
        used.append(root)
        return None

    def signature() -> Error | None:  # 3.
        try:
            Ed25519PublicKey.from_public_bytes(used[0]).verify(cert.signature, signed_bytes(p))
        except (InvalidSignature, ValueError):
            return fail(
                "Ed25519 signature does not verify", reason="BAD_SIGNATURE", path="$.signature"
            )
        return None

    def required_fields() -> Error | None:  # 4.
        problems = payload_problems(p)
        if problems:
            path, message = problems[0]
            return fail(
                f"{path} {message}", reason="CERT_FIELDS", path=f"$.signed_payload{path[1:]}"
            )
        actual = p.to_obj()
        for name in sorted(wanted):
            if actual.get(name) != wanted[name]:
                return fail(
                    f"{name} differs from the expected evidence (a certificate of another run?)",
                    reason="EVIDENCE_MISMATCH",
                    path=f"$.signed_payload.{name}",
                )
        return None

    def expiry() -> Error | None:  # 6.
        for label, moment in (("verification_time_utc", p.verification_time_utc), ("at", at)):
            if moment is not None and moment > p.valid_until_utc:
                return fail(f"{label} {moment} is after valid_until_utc", reason="EXPIRED")
        return None

    def revocation() -> Error | None:  # 7.
        if revocation_bundle_hash(bundle) != p.revocation_bundle_hash:
            return fail(
                "the revocation bundle is not the one captured at signing",
                reason="REVOCATION_BUNDLE_MISMATCH",
                path="$.signed_payload.revocation_bundle_hash",
            )
        if p.key_id in bundle.revoked_key_ids:
            return fail(
                f"{p.key_id} is revoked", reason="SIGNER_REVOKED", path="$.signed_payload.key_id"
            )
        return None

    def policy() -> Error | str | None:  # 8.
        parts = (p.security_policy_hash, p.authz_policy_hash, p.monitor_policy_hash)
        if parts == (None, None, None) and p.dp_policy_hash is None:
            return "the payload carries no policy components"
        recommitted = (
            commit_hash(tags.POLICY_BUNDLE, [*parts, p.dp_policy_hash, p.redaction_policy_hash])
            if None not in parts
            else None
        )
        if recommitted != p.policy_bundle_hash:
            return fail(
                "policy component hashes do not recommit to policy_bundle_hash",
                reason="POLICY_DECOMPOSITION",
                path="$.signed_payload.policy_bundle_hash",
            )
        return None

    def attest() -> Error | str | None:  # 9.
        if p.trust_mode == "SOFTWARE_ONLY":
            return "SOFTWARE_ONLY run"
        quote_hash = (p.attestation_quote_hash or b"").hex()
        a_ctx = {**ctx, "quote_hash": quote_hash, "policy_bundle_hash": p.policy_bundle_hash.hex()}
        if attestation is None:
            return AttestationFailureError(
                "ATTESTED certificate verified without its attestation bundle",
                reason="ATTESTATION_MISSING",
                artifact=CERTIFICATE_FILE,
                context=a_ctx,
            )
        if (
            digest(attestation.to_obj()) != p.attestation_bundle_hash
            or hashlib.sha256(attestation.quote_blob).digest() != p.attestation_quote_hash
        ):
            return AttestationFailureError(
                "the attestation bundle does not match the certificate's attestation hashes",
                reason="ATTESTATION_MISMATCH",
                artifact=CERTIFICATE_FILE,
                context=a_ctx,
            )
        return None

    checks = _Checks()
    steps: dict[CheckId, Callable[[], Error | str | None]] = {
        "TRUST_CHAIN": trust_chain,
        "SIGNATURE": signature,
        "REQUIRED_FIELDS": required_fields,
        "KEY_VALIDITY": lambda: "a raw-key trust store declares no key validity windows",
        "EXPIRY": expiry,
        "REVOCATION": revocation,
        "POLICY_DECOMPOSITION": policy,
        "ATTESTATION": attest,
        "CONFORMANCE_SUITE": lambda: "no conformance suite registry to check against",
    }
    for check_id in _ORDER:
        checks.run(check_id, steps[check_id])
    attestation_status: Literal["NOT_REQUIRED", "VERIFIED", "FAILED"] = "NOT_REQUIRED"
    if p.trust_mode == "ATTESTED":
        passed = any(c.check_id == "ATTESTATION" and c.status == "PASS" for c in checks.done)
        attestation_status = "VERIFIED" if passed else "FAILED"

    def linkage(name: str) -> Literal["LINKED", "MISMATCH", "NOT_CHECKED"]:
        if name not in wanted:
            return "NOT_CHECKED"
        return "LINKED" if p.to_obj()[name] == wanted[name] else "MISMATCH"

    report = TrustReport(
        certificate_hash=c_hash,
        key_id=p.key_id,
        trust_roots_used=tuple(used),
        revocation_mode=bundle.mode,
        revocation_status="REVOKED" if p.key_id in bundle.revoked_key_ids else "NOT_REVOKED",
        attestation_status=attestation_status,
        policy_gate_linkage_status=linkage("policy_gate_hash"),
        authz_linkage_status=linkage("authz_decision_hash"),
        checks=tuple(checks.done),
        verdict="INVALID" if checks.error is not None else "VALID",
    )
    return report, checks.error


def verify_certificate(
    cert_bytes: bytes,
    trust_store: TrustStore,
    revocations: RevocationBundle | None = None,
    *,
    expected: CertificateInputs | Mapping[str, object] | None = None,
    attestation: AttestationBundle | None = None,
    at: str | None = None,
) -> TrustReport:
    """Verify a stored certificate (module procedure, steps 1-10); return its VALID report.

    ``revocations`` is the bundle captured at signing (default: the local empty bundle);
    ``expected`` holds evidence the payload must repeat (a run's CertificateInputs, or e.g.
    ``{"trace_final_hash": ...}``); ``at`` is a declared time (``YYYY-MM-DDTHH:MM:SSZ``) that
    must not be after ``valid_until_utc``. Raises ``SignatureMismatchError`` (or
    ``AttestationFailureError``) with the failing step's reason.
    """
    report, error = _verify(
        cert_bytes,
        trust_store,
        revocations=revocations,
        expected=expected,
        attestation=attestation,
        at=at,
    )
    if error is not None:
        raise error
    return report


def certificate_report(
    cert_bytes: bytes,
    trust_store: TrustStore,
    revocations: RevocationBundle | None = None,
    *,
    expected: CertificateInputs | Mapping[str, object] | None = None,
    attestation: AttestationBundle | None = None,
    at: str | None = None,
) -> TrustReport:
    """Like :func:`verify_certificate` but returns an INVALID report instead of raising (only
    undecodable input, ``CERT_MALFORMED``, still raises: it has no payload to report on)."""
    return _verify(
        cert_bytes,
        trust_store,
        revocations=revocations,
        expected=expected,
        attestation=attestation,
        at=at,
    )[0]
