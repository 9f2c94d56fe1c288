"""Recovery proof packs: the transcript a scenario records, its invariant checks, their hashes.

A scenario records, case by case, what it injected and what the recovery did or returned
(:meth:`Transcript.case`), and one check per invariant a case exercises
(:meth:`Transcript.check`). :func:`build_pack` turns that into a :class:`ProofPack`:

* ``recovery_transcript_hash = commit_hash(RECOVERY_TRANSCRIPT, [scenario_id, seed, entries])``
  over the canonical transcript, entries in the order they were recorded;
* each invariant is PASS iff it was checked at least once and every check held (an invariant no
  case exercised is a FAIL: a scenario must not claim what it never tested);
* ``final_verdict`` is PASS iff every invariant is PASS (fail-dominant);
* ``final_verdict_hash = commit_hash(RECOVERY_VERDICT, [scenario_id, recovery_transcript_hash,
  [[invariant_id, verdict], ...], final_verdict])``, invariants in declared order;
* ``proof_pack_hash = commit_hash(RECOVERY_PROOF_PACK, pack)`` over the pack's hashed fields.

Only deterministic values enter a transcript or a detail: reason codes, counts, booleans,
offsets and content hashes, never a path, a PID or a time. Wall-clock facts (durations, where a
timer-driven kill landed) go to ``informational``, which no hash covers.

>>> t = Transcript("demo.scenario", seed=7, invariants=(Invariant("x.holds", "x holds."),))
>>> t.case("c1", inject={"flip": 3}, observed={"reason": "FRAME_CRC_MISMATCH"})
>>> t.check("x.holds", "c1", True)
>>> pack = build_pack(t)
>>> pack.final_verdict, pack.invariants[0].verdict, len(pack.final_verdict_hash)
('PASS', 'PASS', 32)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from umlos._generated import tags
from umlos.codec import commit_hash

Verdict = Literal["PASS", "FAIL"]

RECOVERY_TRANSCRIPT: Final = tags.RECOVERY_TRANSCRIPT
RECOVERY_VERDICT: Final = tags.RECOVERY_VERDICT
RECOVERY_PROOF_PACK: Final = tags.RECOVERY_PROOF_PACK

# A failing invariant names its first few failing cases; more would only repeat them.
_MAX_NAMED_FAILURES: Final = 3


@dataclass(frozen=True, slots=True)
class Invariant:
    """One invariant a scenario checks: a stable id and the statement it stands for."""

    id: str
    statement: str


@dataclass(frozen=True, slots=True)
class InvariantResult:
    """An invariant's verdict over every case that exercised it."""

    id: str
    statement: str
    verdict: Verdict
    detail: str

    def to_obj(self) -> dict[str, str]:
        return {
            "id": self.id,
            "statement": self.statement,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class _Check:
    case: str
    ok: bool
    note: str


class Transcript:
    """What one scenario run injected, what recovery returned, and the invariant checks."""

    def __init__(self, scenario_id: str, *, seed: int, invariants: tuple[Invariant, ...]) -> None:
        self.scenario_id = scenario_id
        self.seed = seed
        self.invariants = invariants
        self.entries: list[dict[str, Any]] = []
        self.informational: dict[str, Any] = {}
        self._checks: dict[str, list[_Check]] = {inv.id: [] for inv in invariants}

    def case(self, case_id: str, *, inject: Mapping[str, Any], observed: Mapping[str, Any]) -> None:
        """Record one case: the fault injected and what recovery did (deterministic values)."""
        self.entries.append({"case": case_id, "inject": dict(inject), "observed": dict(observed)})

    def check(self, invariant_id: str, case_id: str, ok: bool, note: str = "") -> None:
        """Record whether ``invariant_id`` held in ``case_id``; ``note`` says why not."""
        if invariant_id not in self._checks:
            raise KeyError(f"{self.scenario_id} declares no invariant {invariant_id!r}")
        self._checks[invariant_id].append(_Check(case_id, bool(ok), note))

    def note(self, key: str, value: Any) -> None:
        """An informational fact (durations, timer landings): shown, never hashed."""
        self.informational[key] = value

    def results(self) -> tuple[InvariantResult, ...]:
        out = []
        for inv in self.invariants:
            checks = self._checks[inv.id]
            failed = [c for c in checks if not c.ok]
            if not checks:
                verdict: Verdict = "FAIL"
                detail = "no case exercised this invariant"
            elif failed:
                verdict = "FAIL"
                named = "; ".join(
                    f"{c.case}: {c.note}" if c.note else c.case
                    for c in failed[:_MAX_NAMED_FAILURES]
                )
                detail = f"violated in {len(failed)}/{len(checks)} cases — {named}"
            else:
                verdict = "PASS"
                detail = f"held in {len(checks)}/{len(checks)} cases"
            out.append(InvariantResult(inv.id, inv.statement, verdict, detail))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ProofPack:
    """A scenario's recovery proof pack (spec productization §2.1, seed §I.I)."""

    scenario_id: str
    seed: int
    trials: int
    fault_injection: str
    invariants: tuple[InvariantResult, ...]
    recovery_transcript_hash: bytes
    final_verdict: Verdict
    final_verdict_hash: bytes
    proof_pack_hash: bytes
    transcript: tuple[dict[str, Any], ...] = field(repr=False)
    informational: dict[str, Any] = field(default_factory=dict, repr=False)

    def hashed_obj(self) -> dict[str, Any]:
        """The fields ``proof_pack_hash`` commits to (bytes as bytes)."""
        return {
            "scenario_id": self.scenario_id,
            "seed": self.seed,
            "trials": self.trials,
            "fault_injection": self.fault_injection,
            "invariants": [r.to_obj() for r in self.invariants],
            "recovery_transcript_hash": self.recovery_transcript_hash,
            "final_verdict": self.final_verdict,
            "final_verdict_hash": self.final_verdict_hash,
        }

    def to_json(self, *, with_transcript: bool = False) -> dict[str, Any]:
        """A JSON-friendly view: hashes in hex; the transcript only when asked for."""
        out: dict[str, Any] = {
            k: v.hex() if isinstance(v, bytes) else v for k, v in self.hashed_obj().items()
        }
        out["proof_pack_hash"] = self.proof_pack_hash.hex()
        out["cases"] = len(self.transcript)
        out["informational"] = self.informational
        if with_transcript:
            out["transcript"] = [_jsonable(e) for e in self.transcript]
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def transcript_hash(scenario_id: str, seed: int, entries: list[dict[str, Any]]) -> bytes:
    return commit_hash(RECOVERY_TRANSCRIPT, [scenario_id, seed, entries])


def verdict_hash(
    scenario_id: str,
    transcript_digest: bytes,
    results: tuple[InvariantResult, ...],
    final: Verdict,
) -> bytes:
    pairs = [[r.id, r.verdict] for r in results]
    return commit_hash(RECOVERY_VERDICT, [scenario_id, transcript_digest, pairs, final])


def build_pack(transcript: Transcript, *, trials: int = 0, fault_injection: str = "") -> ProofPack:
    """Fold a finished transcript into its proof pack (module docstring)."""
    results = transcript.results()
    final: Verdict = "PASS" if all(r.verdict == "PASS" for r in results) else "FAIL"
    t_hash = transcript_hash(transcript.scenario_id, transcript.seed, transcript.entries)
    v_hash = verdict_hash(transcript.scenario_id, t_hash, results, final)
    pack = ProofPack(
        scenario_id=transcript.scenario_id,
        seed=transcript.seed,
        trials=trials,
        fault_injection=fault_injection,
        invariants=results,
        recovery_transcript_hash=t_hash,
        final_verdict=final,
        final_verdict_hash=v_hash,
        proof_pack_hash=b"",
        transcript=tuple(transcript.entries),
        informational=dict(transcript.informational),
    )
    return _with_pack_hash(pack)


def _with_pack_hash(pack: ProofPack) -> ProofPack:
    return replace(pack, proof_pack_hash=commit_hash(RECOVERY_PROOF_PACK, pack.hashed_obj()))
