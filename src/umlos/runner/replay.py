"""``umlos replay``: re-execute a committed run and compare its evidence with the recorded one.

Format of the result: ``docs/formats/replay-report.md``; schema:
``contracts/schemas/replay_report.yaml`` (``ReplayReport``). The run directory is only ever
read. The procedure (:func:`replay_outcome`), each step labelled in the code:

1. **Run**: the directory holds a committed run (``COMMITTED``, certificate, a trace that
   verifies end to end).
2. **Start** (``from_checkpoint=T`` only): ``T`` names a checkpoint of the run
   (:class:`UnknownCheckpointError` lists the ones there are) and that checkpoint verifies.
3. **Scratch**: a run directory is prepared outside the recorded one: empty for a full replay;
   for ``T`` it holds the recorded inputs, the WAL's PREPARE record alone, the checkpoints up
   to ``T`` and the trace and journal (which resume cuts back to ``T``'s recorded lengths).
4. **Execute**: :func:`~umlos.runner.execute` re-runs the recorded manifest bytes there (resuming
   at ``T``), signing with a throw-away Ed25519 key so that no key store is touched, and with the
   recorded certificate's declared times.
5. **Rebind**: the signer's trust store is the one input of the trace that the throw-away key
   changes (through ``CERTIFICATE_INPUTS``, then ``RUN_END``). The replay's certificate inputs
   are re-hashed with the recorded ``trust_store_hash`` after checking that they hash to what its
   trace recorded, and ``RUN_END``'s chain value is recomputed: evidence is compared, not
   signatures.
6. **Compare** (:func:`compare_traces`): both traces are walked record by record, fields in
   raw UTF-8 key order, depth first.
7. **Report**: verdict, counts, every mismatch in canonical order (the first 1000) and the first
   divergence; :meth:`ReplayOutcome.lines` adds what the report cannot hold (final checkpoints,
   the certificate payload, timing).

Verdicts: ``E0`` when every record is byte-identical, ``E1`` when the only differences are float
values within their declared tolerance (``profile="E1"``), ``DIVERGED`` otherwise.

>>> report = compare_traces((), (), profile="E0")
>>> report.verdict, report.records_compared
('E0', 0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from umlos._generated.records import (
    CertificateInputs,
    ExecutionCertificate,
    ExecutionCertificatePayload,
    ReplayMismatch,
    ReplayReport,
    ToleranceRule,
    TraceCertificateInputs,
    TraceRecord,
    TraceRunEnd,
    TraceRunHeader,
)
from umlos.codec import decode, encode
from umlos.errors import (
    ApiShapeMismatchError,
    CheckpointInvalidError,
    ContractViolationError,
    Error,
    ReplayDivergenceError,
)
from umlos.evidence._frames import FRAME_OVERHEAD, scan_frames
from umlos.evidence.certificate import (
    MAX_CERTIFICATE_BYTES,
    certificate_hash,
    certificate_inputs_hash,
)
from umlos.evidence.checkpoint import CHECKPOINTS_DIR, POINTER_SUFFIX, step_name, verify_checkpoint
from umlos.evidence.trace import read_trace, trace_final_hash
from umlos.runner._layout import RunLayout
from umlos.runner.execute import execute

__all__ = [
    "COMMITMENT_FIELDS",
    "DEFAULT_E1_TOLERANCES",
    "EPS_EQ",
    "MAX_REPORTED_MISMATCHES",
    "Profile",
    "ReplayOutcome",
    "ToleranceLike",
    "UnknownCheckpointError",
    "check_report",
    "compare_traces",
    "escape_segment",
    "join_path",
    "replay_outcome",
    "replay_run",
    "split_path",
    "within_tolerance",
]

Profile = Literal["E0", "E1"]
ToleranceLike = ToleranceRule | Mapping[str, object]
ReasonCode = Literal[
    "E0_MISMATCH",
    "E1_OUT_OF_BAND",
    "MISSING_FIELD",
    "SHAPE_MISMATCH",
    "NAN_FORBIDDEN",
    "TYPE_MISMATCH",
    "PROFILE_RULE_VIOLATION",
    "RECORD_MISSING",
    "RNG_CONSUMPTION_VIOLATION",
]
RecordKind = Literal[
    "RUN_HEADER",
    "ITER",
    "POLICY_GATE_VERDICT",
    "CHECKPOINT_COMMIT",
    "CERTIFICATE_INPUTS",
    "RUN_END",
    "ERROR",
]
_RECORD_KINDS: Final = frozenset(get_args(RecordKind))

# Spec EPS_EQ (foundations §6.2): CompareTrace's default band is abs_tol = EPS_EQ, rel_tol = 0.
EPS_EQ: Final = 1e-10
_DEFAULT_RULE: Final = ToleranceRule(abs_tol=EPS_EQ, rel_tol=0.0, nan_policy="FORBID")
DEFAULT_E1_TOLERANCES: Final[Mapping[str, ToleranceRule]] = {
    path: _DEFAULT_RULE
    for path in (
        "grad_norm",
        "loss_total",
        "metric_value",
        "trace_extensions.eval_accuracy",
        "trace_extensions.eval_loss",
        "trace_extensions.eval_mae",
        "trace_extensions.eval_mse",
    )
}
"""The bands ``profile="E1"`` applies when no map is given: every float leaf the run engine
writes (paths relative to the record), ``abs_tol = EPS_EQ``, ``rel_tol = 0``, NaN forbidden."""

# Hashes that commit to earlier trace records or to the training state. Under E1, once a float
# has differed within its band, these differ as a consequence and are NON_COMPARABLE; before
# that (and always under E0) they are compared byte for byte like every other value.
COMMITMENT_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "ITER": frozenset({"state_fp"}),
    "CHECKPOINT_COMMIT": frozenset(
        {
            "checkpoint_hash",
            "checkpoint_header_hash",
            "checkpoint_merkle_root",
            "trace_snapshot_hash",
        }
    ),
    "CERTIFICATE_INPUTS": frozenset({"certificate_inputs_hash"}),
    "RUN_END": frozenset({"final_state_fp", "trace_final_hash"}),
}

# replay_report.yaml: ReplayReport.mismatches has maxItems 1000; the counts stay complete.
MAX_REPORTED_MISMATCHES: Final = 1000
# Fields of the signed payload that are the signature's context, not evidence of the run.
_SIGNATURE_CONTEXT: Final = (
    "key_id",
    "signature_algorithm",
    "trace_final_hash",
    "valid_until_utc",
    "verification_time_utc",
)
_MODES: Final[
    Mapping[Profile, tuple[Literal["STRICT_E0", "TOLERANT_E1"], Literal["BITWISE", "TOLERANCE"]]]
] = {
    "E0": ("STRICT_E0", "BITWISE"),
    "E1": ("TOLERANT_E1", "TOLERANCE"),
}


class UnknownCheckpointError(CheckpointInvalidError):
    """``from_checkpoint`` names no checkpoint of the run; ``available`` lists the steps there are."""

    def __init__(self, t: int, available: Sequence[int], *, run_dir: Path, run_id: str) -> None:
        steps = ", ".join(str(s) for s in available) or "none"
        super().__init__(
            f"run {run_id} has no checkpoint at step {t}; available: {steps}",
            reason="FILE_MISSING",
            artifact=str(run_dir / CHECKPOINTS_DIR / step_name(t)),
            context={"t": t, "run_id": run_id, "available": list(available)},
        )
        self.available = tuple(available)


# --- paths (foundations §6.2: dot-joined, `\` -> `\\`, `.` -> `\.`) ---------------------------


def escape_segment(segment: str) -> str:
    r"""One path segment, escaped.

    >>> escape_segment("a.b\\c")
    'a\\.b\\\\c'
    """
    return segment.replace("\\", "\\\\").replace(".", "\\.")


def join_path(segments: Sequence[str | int]) -> str:
    """Segments joined with ``.``; array indices are decimal; ``""`` is the root.

    >>> join_path(["trace_extensions", "eval.loss"]), join_path([])
    ('trace_extensions.eval\\\\.loss', '')
    """
    return ".".join(escape_segment(str(s)) for s in segments)


def split_path(path: str) -> tuple[str, ...]:
    r"""Inverse of :func:`join_path`; any other escape, or a trailing ``\``, is a contract violation.

    >>> split_path(join_path(["a.b", "c\\"]))
    ('a.b', 'c\\')
    """
    if path == "":
        return ()
    segments: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\":
            nxt = path[i + 1] if i + 1 < len(path) else ""
            if nxt not in ("\\", "."):
                raise ContractViolationError(
                    f"invalid escape {'trailing backslash' if not nxt else repr(ch + nxt)} "
                    f"at offset {i} of path {path!r}",
                    path=path,
                    offset=i,
                )
            current.append(nxt)
            i += 2
            continue
        if ch == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    segments.append("".join(current))
    return tuple(segments)


# --- float comparison (foundations §6.2, TOLERANCE) -------------------------------------------


def within_tolerance(expected: float, actual: float, rule: ToleranceRule) -> bool:
    """Whether two binary64 values match under ``rule``.

    Equal infinities match; NaN follows ``nan_policy``; ``+0 == -0``; otherwise
    ``|a - b| <= max(abs_tol, rel_tol * max(|a|, |b|))``.

    >>> rule = ToleranceRule(abs_tol=0.0, rel_tol=1e-9, nan_policy="FORBID")
    >>> within_tolerance(1.0, 1.0 + 1e-12, rule), within_tolerance(0.0, -0.0, rule)
    (True, True)
    >>> within_tolerance(float("nan"), float("nan"), rule)
    False
    """
    a, b = expected, actual
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b) and rule.nan_policy == "EQUAL_IF_BOTH_NAN"
    if math.isinf(a) or math.isinf(b):
        return a == b
    if a == b:
        return True
    bound = max(rule.abs_tol, rule.rel_tol * max(abs(a), abs(b)))
    return abs(a - b) <= bound


def _errors(a: float, b: float) -> tuple[float, float]:
    """``(|a - b|, |a - b| / max(|a|, |b|))``; infinite where a NaN or infinity makes them differ."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0, 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf, math.inf
    diff = abs(a - b)
    return diff, diff / max(abs(a), abs(b))


def _rules(
    profile: Profile, tolerances: Mapping[str, ToleranceLike] | None
) -> Mapping[str, ToleranceRule]:
    if profile not in _MODES:
        raise ApiShapeMismatchError(
            f"profile must be E0 or E1, not {profile!r}", reason="CONSTRAINT", path="$.profile"
        )
    if profile == "E0":
        if tolerances:
            raise ApiShapeMismatchError(
                "tolerances apply only to the E1 profile; E0 compares every value bitwise",
                reason="CONSTRAINT",
                path="$.tolerances",
            )
        return {}
    if tolerances is None:
        return DEFAULT_E1_TOLERANCES
    rules: dict[str, ToleranceRule] = {}
    for key, value in tolerances.items():
        split_path(key)  # the key must be a well-formed escaped path
        where = f"$.tolerances[{key!r}]"
        obj = value.to_obj() if isinstance(value, ToleranceRule) else dict(value)
        obj.setdefault("nan_policy", "FORBID")
        for name in ("abs_tol", "rel_tol"):  # 0 and 1 are fine spellings of 0.0 and 1.0
            number = obj.get(name)
            if type(number) is int:
                obj[name] = float(number)
        rules[key] = ToleranceRule.from_obj(obj, where)
    return rules


# --- the comparator ---------------------------------------------------------------------------


@dataclass
class _Tally:
    rules: Mapping[str, ToleranceRule]
    mismatches: list[ReplayMismatch] = field(default_factory=list)
    divergences: int = 0
    fields: int = 0
    e0: int = 0
    within: int = 0
    out_of_band: int = 0
    non_comparable: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    # A float differed within its band: commitments from here on may legitimately differ.
    drifted: bool = False


@dataclass
class _Where:
    """Which record a mismatch is in (ReplayMismatch's locating fields)."""

    index: int
    kind: RecordKind
    t: int
    rank: int | None
    operator_seq: int | None
    operator_id: str | None

    @classmethod
    def of(cls, index: int, record: TraceRecord) -> _Where:
        obj: dict[str, Any] = record.to_obj()
        kind = obj["kind"]
        assert kind in _RECORD_KINDS
        return cls(
            index=index,
            kind=kind,
            t=obj.get("t", 0),
            rank=obj.get("rank") if kind in ("ITER", "ERROR") else None,
            operator_seq=obj.get("operator_seq") if kind == "ITER" else None,
            operator_id=obj.get("operator_id") if kind == "ITER" else None,
        )


def _leaves(value: object) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_leaves(v) for v in value)
    return 1


def _utf8(key: str) -> bytes:
    return key.encode()


class _Walk:
    """One record pair's field walk; appends its mismatches, sorted by path, to the tally."""

    def __init__(self, tally: _Tally, where: _Where) -> None:
        self.tally = tally
        self.where = where
        self.found: list[ReplayMismatch] = []
        self.commitments = COMMITMENT_FIELDS.get(where.kind, frozenset())

    def mismatch(
        self,
        path: str,
        reason: ReasonCode,
        expected: object = None,
        actual: object = None,
        *,
        has_expected: bool = True,
        has_actual: bool = True,
        errors: tuple[float, float] | None = None,
    ) -> None:
        w = self.where
        self.found.append(
            ReplayMismatch(
                record_index=w.index,
                record_kind=w.kind,
                t=w.t,
                rank=w.rank,
                operator_seq=w.operator_seq,
                operator_id=w.operator_id,
                field_path=path,
                reason_code=reason,
                expected_cbor=encode(expected) if has_expected else None,
                actual_cbor=encode(actual) if has_actual else None,
                abs_error=errors[0] if errors else None,
                rel_error=errors[1] if errors else None,
            )
        )
        if reason == "E0_MISMATCH":
            self.tally.e0 += 1
        elif reason in ("E1_OUT_OF_BAND", "NAN_FORBIDDEN"):
            self.tally.out_of_band += 1

    def value(self, a: object, b: object, segments: tuple[str, ...]) -> None:
        path = join_path(segments)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys(), key=_utf8):
                child = (*segments, key)
                if key not in b:
                    self.tally.fields += 1
                    self.mismatch(join_path(child), "MISSING_FIELD", a[key], has_actual=False)
                elif key not in a:
                    self.tally.fields += 1
                    self.mismatch(
                        join_path(child), "MISSING_FIELD", None, b[key], has_expected=False
                    )
                else:
                    self.value(a[key], b[key], child)
            return
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                self.tally.fields += 1
                self.mismatch(path, "SHAPE_MISMATCH", list(a), list(b))
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self.value(x, y, (*segments, str(i)))
            return
        self.tally.fields += 1
        if type(a) is not type(b):
            self.mismatch(path, "TYPE_MISMATCH", a, b)
        elif isinstance(a, float) and isinstance(b, float):
            self.float_leaf(a, b, path)
        elif encode(a) != encode(b):
            if self.tally.drifted and len(segments) == 1 and segments[0] in self.commitments:
                self.tally.non_comparable += 1
            else:
                self.mismatch(path, "E0_MISMATCH", a, b)

    def float_leaf(self, a: float, b: float, path: str) -> None:
        tally = self.tally
        errors = _errors(a, b)
        tally.max_abs = max(tally.max_abs, errors[0])
        tally.max_rel = max(tally.max_rel, errors[1])
        identical = encode(a) == encode(b)
        rule = tally.rules.get(path)
        if rule is None:
            if not identical:
                self.mismatch(path, "E0_MISMATCH", a, b, errors=errors)
        elif within_tolerance(a, b, rule):
            if not identical:
                tally.within += 1
                tally.drifted = True
        elif (math.isnan(a) or math.isnan(b)) and rule.nan_policy == "FORBID":
            self.mismatch(path, "NAN_FORBIDDEN", a, b, errors=errors)
        else:
            self.mismatch(path, "E1_OUT_OF_BAND", a, b, errors=errors)


def _compare_record(tally: _Tally, index: int, a: TraceRecord, b: TraceRecord) -> None:
    obj_a, obj_b = a.to_obj(), b.to_obj()
    # Identical bytes settle a record, except under bands: a NaN the rule forbids is a mismatch
    # even on both sides.
    if not tally.rules and encode(obj_a) == encode(obj_b):
        tally.fields += _leaves(obj_a)
        return
    walk = _Walk(tally, _Where.of(index, a))
    if obj_a["kind"] != obj_b["kind"]:
        tally.fields += 1
        walk.mismatch("", "SHAPE_MISMATCH", obj_a, obj_b)
    else:
        walk.value(obj_a, obj_b, ())
    _keep(tally, walk.found)


def _keep(tally: _Tally, found: list[ReplayMismatch]) -> None:
    found.sort(key=lambda m: (m.field_path, m.reason_code))
    tally.divergences += len(found)
    room = MAX_REPORTED_MISMATCHES - len(tally.mismatches)
    tally.mismatches.extend(found[: max(room, 0)])


@dataclass(frozen=True, slots=True)
class _Comparison:
    tally: _Tally
    records_compared: int

    @property
    def verdict(self) -> Literal["E0", "E1", "DIVERGED"]:
        t = self.tally
        if t.divergences:
            return "DIVERGED"
        return "E1" if t.within or t.non_comparable else "E0"


def _compare(
    recorded: Sequence[TraceRecord],
    replayed: Sequence[TraceRecord],
    rules: Mapping[str, ToleranceRule],
) -> _Comparison:
    tally = _Tally(rules)
    common = min(len(recorded), len(replayed))
    for i in range(common):
        _compare_record(tally, i, recorded[i], replayed[i])
    for i in range(common, max(len(recorded), len(replayed))):
        # Different lengths are a divergence (evidence §5.3 step 2): one RECORD_MISSING each.
        present = recorded[i] if i < len(recorded) else replayed[i]
        walk = _Walk(tally, _Where.of(i, present))
        obj = present.to_obj()
        if i < len(recorded):
            walk.mismatch("", "RECORD_MISSING", obj, has_actual=False)
        else:
            walk.mismatch("", "RECORD_MISSING", None, obj, has_expected=False)
        _keep(tally, walk.found)
    return _Comparison(tally, common)


def _build_report(
    comparison: _Comparison,
    *,
    profile: Profile,
    tenant_id: str,
    run_id: str,
    determinism_profile_hash: bytes,
    replay_token: bytes,
    manifest_hash: bytes,
    recorded_trace_final_hash: bytes,
    replayed_trace_final_hash: bytes,
    recorded_certificate_hash: bytes | None = None,
    replayed_certificate_hash: bytes | None = None,
) -> ReplayReport:
    t = comparison.tally
    verdict = comparison.verdict
    mode, profile_id = _MODES[profile]
    return ReplayReport(
        tenant_id=tenant_id,
        run_id=run_id,
        verdict=verdict,
        replay_mode=mode,
        comparison_profile="same_world_size_same_rankmap",
        determinism_profile_id=profile_id,
        determinism_profile_hash=determinism_profile_hash,
        replay_token=replay_token,
        manifest_hash=manifest_hash,
        recorded_trace_final_hash=recorded_trace_final_hash,
        replayed_trace_final_hash=replayed_trace_final_hash,
        recorded_certificate_hash=recorded_certificate_hash,
        replayed_certificate_hash=replayed_certificate_hash,
        records_compared=comparison.records_compared,
        fields_compared=t.fields,
        e0_mismatch_count=t.e0,
        e1_within_band_count=t.within,
        e1_out_of_band_count=t.out_of_band,
        non_comparable_count=t.non_comparable,
        rng_violation_count=0,
        divergence_count=t.divergences,
        max_abs_error=t.max_abs,
        max_rel_error=t.max_rel,
        first_divergence=t.mismatches[0] if verdict == "DIVERGED" else None,
        mismatches=tuple(t.mismatches),
        mismatches_truncated=t.divergences > len(t.mismatches),
    )


def compare_traces(
    recorded: Sequence[TraceRecord],
    replayed: Sequence[TraceRecord],
    *,
    profile: Profile = "E0",
    tolerances: Mapping[str, ToleranceLike] | None = None,
) -> ReplayReport:
    """Compare two decoded traces (recorded first) and report as :func:`replay_run` does.

    The run-level fields come from the recorded trace: ``tenant_id``, ``run_id`` and
    ``replay_token`` from its RUN_HEADER, both trace_final_hash values from the RUN_END records;
    ``manifest_hash`` and ``determinism_profile_hash``, which a trace does not carry, are zero
    (:func:`replay_run` fills them from the certificate).
    """
    rules = _rules(profile, tolerances)
    comparison = _compare(recorded, replayed, rules)
    header = recorded[0] if recorded and isinstance(recorded[0], TraceRunHeader) else None
    return _build_report(
        comparison,
        profile=profile,
        tenant_id=header.tenant_id if header else "unknown",
        run_id=header.run_id if header else "0" * 16,
        determinism_profile_hash=bytes(32),
        replay_token=header.replay_token if header else bytes(32),
        manifest_hash=bytes(32),
        recorded_trace_final_hash=_final_hash(recorded),
        replayed_trace_final_hash=_final_hash(replayed),
    )


def _final_hash(records: Sequence[TraceRecord]) -> bytes:
    last = records[-1] if records else None
    return last.trace_final_hash if isinstance(last, TraceRunEnd) else bytes(32)


def check_report(report: ReplayReport) -> None:
    """Raise ``REPLAY_DIVERGENCE`` for a DIVERGED report, naming its first divergence.

    :func:`replay_run` always returns the full report; callers that want STRICT_E0's
    raise-on-first-mismatch behaviour (the CLI's exit code) call this on it.
    """
    first = report.first_divergence
    if report.verdict != "DIVERGED" or first is None:
        return
    raise ReplayDivergenceError(
        f"replay of run {report.run_id} diverged at record {first.record_index} "
        f"({first.record_kind}, t={first.t}) field {first.field_path or '<record>'}: "
        f"{first.reason_code}; {report.divergence_count} mismatch(es) in all",
        path=first.field_path,
        context={
            "t": first.t,
            "field_path": first.field_path,
            "replay_token": report.replay_token,
            "record_index": first.record_index,
            "reason_code": first.reason_code,
        },
    )


# --- re-execution ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """A replay's report plus what the report's schema does not carry.

    ``seconds`` is wall time and never enters the report: evidence stays timeless. The run
    engine records no wall time for the original run, so no ratio is given here;
    ``bench/bench_replay.py`` measures both.
    """

    report: ReplayReport
    from_checkpoint: int | None
    resumed_from_t: int | None
    recorded_checkpoint_hash: bytes
    replayed_checkpoint_hash: bytes
    replayed_trace_final_hash_as_signed: bytes
    signer_rebound: bool
    certificate_payload_equal: bool
    seconds: float

    def lines(self) -> list[str]:
        """A human summary: verdict, first divergence, final hashes, certificate, timing."""
        r = self.report
        out = [
            f"verdict {r.verdict} ({r.replay_mode}, {r.determinism_profile_id}): "
            f"{r.records_compared} record pairs, {r.fields_compared} values compared, "
            f"{r.divergence_count} mismatch(es), {r.e1_within_band_count} within band, "
            f"{r.non_comparable_count} non-comparable"
        ]
        first = r.first_divergence
        if first is not None:
            expected = _show(first.expected_cbor)
            actual = _show(first.actual_cbor)
            errors = ""
            if first.abs_error is not None:
                errors = f", abs {first.abs_error:.3g}, rel {first.rel_error:.3g}"
            out.append(
                f"first divergence: record {first.record_index} {first.record_kind} "
                f"t={first.t} {first.field_path or '<record>'}: expected {expected}, "
                f"got {actual} ({first.reason_code}{errors})"
            )
        out.append(
            _pair("trace_final_hash", r.recorded_trace_final_hash, r.replayed_trace_final_hash)
            + (" (replay rebound to the recorded trust store)" if self.signer_rebound else "")
        )
        out.append(
            _pair("final checkpoint", self.recorded_checkpoint_hash, self.replayed_checkpoint_hash)
        )
        out.append(
            "certificate payload (key_id and trust_store_hash aside): "
            + ("equal" if self.certificate_payload_equal else "DIFFERS")
        )
        start = (
            f"resumed at checkpoint t={self.resumed_from_t}"
            if self.resumed_from_t is not None
            else "full re-execution"
        )
        out.append(f"{start}; replay took {self.seconds:.2f} s")
        return out


def _show(data: bytes | None) -> str:
    if data is None:
        return "<absent>"
    value = decode(data)
    if isinstance(value, bytes):
        return value.hex()[:16] + "…"
    return repr(value)


def _pair(name: str, recorded: bytes, replayed: bytes) -> str:
    same = "equal" if recorded == replayed else "DIFFER"
    return f"{name}: recorded {recorded.hex()[:16]}… replayed {replayed.hex()[:16]}… {same}"


def _read_certificate(path: Path) -> ExecutionCertificate:
    if not path.is_file():
        raise ContractViolationError(
            "the run has no execution certificate; only a committed run can be replayed",
            artifact=str(path),
        )
    data = path.read_bytes()
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ContractViolationError(
            f"certificate has {len(data)} bytes, more than {MAX_CERTIFICATE_BYTES}",
            artifact=str(path),
        )
    try:
        return ExecutionCertificate.from_obj(decode(data))
    except Error as exc:
        exc.located(artifact=str(path))
        raise


def _inputs_of(payload: ExecutionCertificatePayload) -> CertificateInputs:
    obj = payload.to_obj()
    for name in _SIGNATURE_CONTEXT:
        obj.pop(name, None)
    return CertificateInputs.from_obj(obj)


def _rebind_signer(
    records: tuple[TraceRecord, ...], payload: ExecutionCertificatePayload, trust_store_hash: bytes
) -> tuple[tuple[TraceRecord, ...], bool]:
    """The replayed trace as if its certificate inputs named ``trust_store_hash`` (step 5).

    Only done when the replay's certificate inputs hash to what its own trace recorded; else the
    trace is returned as it is and the comparison shows the difference.
    """
    inputs = _inputs_of(payload)
    position = next(
        (i for i, r in enumerate(records) if isinstance(r, TraceCertificateInputs)), None
    )
    if position is None or not isinstance(records[-1], TraceRunEnd):
        return records, False
    bound = records[position]
    assert isinstance(bound, TraceCertificateInputs)
    if bound.certificate_inputs_hash != certificate_inputs_hash(inputs):
        return records, False
    rebound = dataclasses.replace(inputs, trust_store_hash=trust_store_hash)
    out = list(records)
    out[position] = dataclasses.replace(
        bound, certificate_inputs_hash=certificate_inputs_hash(rebound)
    )
    end = records[-1]
    assert isinstance(end, TraceRunEnd)
    out[-1] = dataclasses.replace(end, trace_final_hash=trace_final_hash(out))
    return tuple(out), True


def _checkpoint_steps(run_dir: Path) -> list[int]:
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(
        int(p.name) for p in root.iterdir() if p.is_dir() and len(p.name) == 20 and p.name.isdigit()
    )


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _seed_from_checkpoint(recorded: RunLayout, target: RunLayout, t: int) -> None:
    """Step 3 for ``from_checkpoint``: the run directory as it stood when checkpoint ``t`` was
    the latest, as far as resume reads it."""
    for path in (recorded.manifest_source, recorded.manifest_normalized, recorded.environment):
        _copy(path, target.root / path.name)
    # The WAL's PREPARE alone: the run is in flight, nothing of its end is durable yet.
    wal = recorded.wal.read_bytes()
    scan = scan_frames(wal)
    if not scan.frames:
        raise ContractViolationError(
            "the run's WAL holds no PREPARE record", artifact=str(recorded.wal)
        )
    first = scan.frames[0]
    target.wal.parent.mkdir(parents=True, exist_ok=True)
    target.wal.write_bytes(wal[: first.offset + FRAME_OVERHEAD + len(first.payload)])
    for step in _checkpoint_steps(recorded.root):
        if step > t:
            continue
        name = step_name(step)
        shutil.copytree(recorded.checkpoints / name, target.checkpoints / name)
        pointer = recorded.checkpoints / f"{name}{POINTER_SUFFIX}"
        if pointer.is_file():
            _copy(pointer, target.checkpoints / pointer.name)
    # Resume cuts both logs back to the lengths checkpoint t recorded (and checks the chain).
    _copy(recorded.trace, target.trace)
    _copy(recorded.journal, target.journal)


def _source_dir(layout: RunLayout) -> Path:
    """Where the run's manifest came from (run.json's ``source_dir``), else the run directory."""
    try:
        saved = json.loads(layout.summary.read_text())
    except (OSError, ValueError):
        return layout.root
    source = saved.get("source_dir") if isinstance(saved, dict) else None
    return Path(source) if isinstance(source, str) and Path(source).is_dir() else layout.root


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


@contextlib.contextmanager
def _scratch_dir(scratch: Path | None, run_dir: Path) -> Iterator[Path]:
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="umlos-replay-") as tmp:
            yield Path(tmp)
        return
    scratch = scratch.resolve()
    if _inside(scratch, run_dir) or _inside(run_dir, scratch):
        raise ContractViolationError(
            "the scratch directory must lie outside the run directory (replay never writes "
            "into a run)",
            artifact=str(scratch),
        )
    if scratch.exists() and any(scratch.iterdir()):
        raise ContractViolationError("the scratch directory is not empty", artifact=str(scratch))
    scratch.mkdir(parents=True, exist_ok=True)
    yield scratch


def replay_outcome(
    run_dir: Path | str,
    *,
    from_checkpoint: int | None = None,
    profile: Profile = "E0",
    tolerances: Mapping[str, ToleranceLike] | None = None,
    data_dir: Path | str | None = None,
    scratch: Path | str | None = None,
) -> ReplayOutcome:
    """:func:`replay_run`, returning the report with the facts it does not carry."""
    started = time.perf_counter()
    rules = _rules(profile, tolerances)
    recorded = RunLayout(Path(run_dir).resolve())

    # 1. Run: a committed run whose trace verifies.
    if not recorded.committed.is_file():
        raise ContractViolationError(
            f"{recorded.root} is not a committed run (no COMMITTED pointer); only a committed "
            "run can be replayed",
            artifact=str(recorded.root),
        )
    recorded_cert = _read_certificate(recorded.certificate)
    payload = recorded_cert.signed_payload
    recorded_trace = read_trace(recorded.trace).records

    # 2. Start: the checkpoint named exists and verifies.
    if from_checkpoint is not None:
        available = _checkpoint_steps(recorded.root)
        if from_checkpoint not in available:
            raise UnknownCheckpointError(
                from_checkpoint, available, run_dir=recorded.root, run_id=payload.run_id
            )
        verify_checkpoint(recorded.checkpoints / step_name(from_checkpoint))

    base_dir = Path(data_dir).resolve() if data_dir is not None else _source_dir(recorded)
    with _scratch_dir(
        Path(scratch) if scratch is not None else None, recorded.root
    ) as scratch_root:
        # 3. Scratch: the recorded manifest bytes, and the state at the checkpoint if asked.
        manifest = scratch_root / "manifest.yaml"
        _copy(recorded.manifest_source, manifest)
        runs_root = scratch_root / "runs"
        if from_checkpoint is not None:
            _seed_from_checkpoint(recorded, RunLayout(runs_root / payload.run_id), from_checkpoint)

        # 4. Execute under a throw-away key and the recorded certificate's declared times.
        summary = execute(
            manifest,
            runs_root=runs_root,
            resume_run=from_checkpoint is not None,
            signing_key=Ed25519PrivateKey.generate(),
            as_of=payload.verification_time_utc,
            valid_until=payload.valid_until_utc,
            base_dir=base_dir,
        )
        replayed = RunLayout(Path(summary.run_dir))
        replayed_cert = _read_certificate(replayed.certificate)
        replayed_trace = read_trace(replayed.trace).records

    # 5. Rebind the replay's certificate inputs to the recorded trust store.
    rebound_trace, rebound = _rebind_signer(
        replayed_trace, replayed_cert.signed_payload, payload.trust_store_hash
    )

    # 6. Compare.
    comparison = _compare(recorded_trace, rebound_trace, rules)

    # 7. Report.
    replayed_final = _final_hash(rebound_trace)
    report = _build_report(
        comparison,
        profile=profile,
        tenant_id=payload.tenant_id,
        run_id=payload.run_id,
        determinism_profile_hash=payload.determinism_profile_hash,
        replay_token=payload.replay_token,
        manifest_hash=payload.manifest_hash,
        recorded_trace_final_hash=payload.trace_final_hash,
        replayed_trace_final_hash=replayed_final,
        recorded_certificate_hash=certificate_hash(recorded_cert),
        replayed_certificate_hash=certificate_hash(replayed_cert),
    )
    return ReplayOutcome(
        report=report,
        from_checkpoint=from_checkpoint,
        resumed_from_t=summary.resumed_from_t,
        recorded_checkpoint_hash=payload.checkpoint_hash,
        replayed_checkpoint_hash=bytes.fromhex(summary.checkpoint_hash),
        replayed_trace_final_hash_as_signed=_final_hash(replayed_trace),
        signer_rebound=rebound,
        certificate_payload_equal=_same_payload(payload, replayed_cert.signed_payload)
        and replayed_final == payload.trace_final_hash,
        seconds=time.perf_counter() - started,
    )


def _same_payload(a: ExecutionCertificatePayload, b: ExecutionCertificatePayload) -> bool:
    """Equal apart from the signer (key_id, trust_store_hash) and trace_final_hash, which the
    caller compares after rebinding."""
    ignore = ("key_id", "trust_store_hash", "trace_final_hash")
    obj_a, obj_b = a.to_obj(), b.to_obj()
    for name in ignore:
        obj_a.pop(name, None)
        obj_b.pop(name, None)
    return encode(obj_a) == encode(obj_b)


def replay_run(
    run_dir: Path | str,
    *,
    from_checkpoint: int | None = None,
    profile: Profile = "E0",
    tolerances: Mapping[str, ToleranceLike] | None = None,
    data_dir: Path | str | None = None,
    scratch: Path | str | None = None,
) -> ReplayReport:
    """Re-execute the committed run in ``run_dir`` and compare its evidence with the recorded one.

    The run directory is only read. The replay runs in ``scratch`` (kept afterwards; it must be
    empty and outside the run) or in a temporary directory that is removed. ``from_checkpoint``
    restores that step's checkpoint and re-executes the rest; ``profile="E1"`` compares the
    float leaves named in ``tolerances`` (default :data:`DEFAULT_E1_TOLERANCES`) within their
    bands. ``data_dir`` replaces the recorded manifest's directory for relative dataset paths.

    Example (a run produced by :func:`~umlos.runner.execute`)::

        report = replay_run("runs/40c3d4ed6cf483fc", from_checkpoint=14)
        assert report.verdict == "E0"
    """
    return replay_outcome(
        run_dir,
        from_checkpoint=from_checkpoint,
        profile=profile,
        tolerances=tolerances,
        data_dir=data_dir,
        scratch=scratch,
    ).report
