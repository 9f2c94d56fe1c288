"""Fuzz ``verify_certificate``. First byte 0: the input is a certificate (accepted ⇒ the
original); 1: the input is a signed payload, signed again with the run's own key so that edits
reach the field, expiry, revocation and policy steps (accepted ⇒ it still names this run)."""

from __future__ import annotations

from pathlib import Path

import _harness

from umlos._generated.records import ExecutionCertificate, RevocationBundle
from umlos.codec import decode, encode
from umlos.evidence.certificate import verify_certificate
from umlos.evidence.keys import load_signing_key, trust_store

STATE: dict[str, object] = {}


def one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        signature = STATE["key"].sign(body)  # type: ignore[attr-defined]
        body = b"\xa2" + encode("signature") + encode(signature) + encode("signed_payload") + body
    expected: dict[str, object] = STATE["expected"]  # type: ignore[assignment]
    verify_certificate(body, STATE["store"], STATE["revocations"], expected=expected)  # type: ignore[arg-type]
    if not data[0] & 1 and body != STATE["original"]:
        raise AssertionError("verify_certificate accepted a changed certificate")
    p = ExecutionCertificate.from_obj(decode(body)).signed_payload
    if {"tenant_id": p.tenant_id, "run_id": p.run_id, "replay_token": p.replay_token} != expected:
        raise AssertionError("verify_certificate accepted a certificate of another run")


if __name__ == "__main__":
    run: Path = _harness.committed_run()
    original = (run / "execution_certificate.cbor").read_bytes()
    cert = ExecutionCertificate.from_obj(decode(original))
    p = cert.signed_payload
    STATE.update(
        original=original,
        key=load_signing_key(),
        store=trust_store(),
        revocations=RevocationBundle.from_obj(
            decode((run / "revocation_bundle.cbor").read_bytes())
        ),
        expected={"tenant_id": p.tenant_id, "run_id": p.run_id, "replay_token": p.replay_token},
    )
    seeds = [b"\x00" + original, b"\x01" + encode(p.to_obj())]
    _harness.main("certificate", one_input, seeds)
