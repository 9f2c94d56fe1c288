"""Chaos scenarios and recovery proof packs: ``umlos chaos run SCENARIO|--all`` (ADR 0017).

Each scenario injects real faults into real runs of one small manifest (the quickstart
classification template, 20 steps, a checkpoint every 5), in a scratch directory with a
throw-away key store, and checks a stated list of invariants. The result is a recovery proof
pack (spec productization §2.1, seed §I.I): ``scenario_id``, every invariant with its
statement, verdict and detail, ``recovery_transcript_hash`` (the canonical transcript of what
was injected and what recovery did), ``final_verdict`` and ``final_verdict_hash``
(:mod:`umlos.conformance._chaos_pack` defines the hashes).

==============================  ===========================================================
scenario_id                     fault
==============================  ===========================================================
wal.truncated_tail              the log cut at every byte offset of each record as the last
wal.checksum_mismatch           one bit flipped in the CRC or body of the last / a middle record
wal.torn_write                  a partial or zero-filled frame at EOF; the same damage mid-log
wal.duplicate_records           every record duplicated at every position (and re-chained)
wal.reordered_records           every wrong record order (and re-chained)
checkpoint.corruption           one bit flipped in each file of the latest checkpoint
process.sigkill_random          SIGKILL of a real ``umlos run``: named, seeded and timed points
disk.full_during_checkpoint     ENOSPC on the n-th checkpoint write; a real full tmpfs (root)
store.partial_failure           seeded EIO and timeouts on file operations, across resumes
==============================  ===========================================================

The same ``seed`` gives the same transcript, so the same hashes, on any machine where the
scenarios pass: only deterministic facts enter them (reason codes, offsets, counts, booleans
such as "same certificate as the reference"), never a path, a time or a hash that depends on the
throw-away signing key. Where a timer-driven kill lands goes to ``informational``.

>>> [s.id for s in SCENARIOS.values()][:2]
['wal.truncated_tail', 'wal.checksum_mismatch']
>>> len(scenario_index_hash())
32
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from umlos._generated import tags
from umlos.codec import commit_hash
from umlos.conformance import _chaos_runs, _chaos_wal
from umlos.conformance._chaos_harness import (
    REAL_WAL,
    ChaosContext,
    WalApi,
    chaos_context,
    error_name,
)
from umlos.conformance._chaos_pack import (
    Invariant,
    InvariantResult,
    ProofPack,
    Transcript,
    Verdict,
    build_pack,
)

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_TRIALS",
    "REAL_WAL",
    "SCENARIOS",
    "ChaosContext",
    "Invariant",
    "InvariantResult",
    "ProofPack",
    "Scenario",
    "Transcript",
    "Verdict",
    "WalApi",
    "build_pack",
    "chaos_context",
    "format_report",
    "overall_verdict",
    "run_chaos",
    "run_scenario",
    "run_scenarios",
    "scenario_index_hash",
    "scenario_table",
    "write_packs",
]

DEFAULT_SEED: Final = 1
DEFAULT_TRIALS: Final = 4
"""Trials per scenario for ``umlos chaos run``; what a trial is depends on the scenario."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A mandatory chaos scenario: its id, fault, invariants and how a trial scales it."""

    id: str
    title: str
    fault_injection: str
    trials_mean: str
    invariants: tuple[Invariant, ...]
    upstream_id: str | None
    run: Callable[[ChaosContext, Transcript, int], None]
    crash_states: tuple[str, ...] = ()
    """Crash states (``UMLOS_CRASH_AT`` values) it starts from, made up front in parallel."""


_WAL_LEVEL: Final = (
    "bytes of the real committed reference log and of a real in-flight log (SIGKILL at "
    "wal-append:3), rewritten in scratch copies"
)
_SCENARIO_LIST: Final = (
    Scenario(
        "wal.truncated_tail",
        "WAL cut inside its last record",
        _WAL_LEVEL,
        "seeded cut offsets per record also taken through engine resume and verify_run",
        _chaos_wal.TRUNCATED_TAIL_INVARIANTS,
        "wal_corruption_truncated_tail",
        _chaos_wal.truncated_tail,
        (_chaos_wal.INFLIGHT_CRASH,),
    ),
    Scenario(
        "wal.checksum_mismatch",
        "CRC mismatch in the last and in a middle record",
        _WAL_LEVEL,
        "seeded bit flips per (state, record, CRC or body)",
        _chaos_wal.CHECKSUM_INVARIANTS,
        "wal_corruption_checksum_mismatch",
        _chaos_wal.checksum_mismatch,
        (_chaos_wal.INFLIGHT_CRASH,),
    ),
    Scenario(
        "wal.torn_write",
        "Partial frame or zero-filled tail at EOF",
        _WAL_LEVEL,
        "seeded partial-frame lengths, and cases taken through engine resume",
        _chaos_wal.TORN_WRITE_INVARIANTS,
        None,
        _chaos_wal.torn_write,
        (_chaos_wal.INFLIGHT_CRASH,),
    ),
    Scenario(
        "wal.duplicate_records",
        "Duplicated WAL records",
        _WAL_LEVEL,
        "cases taken through engine resume and verify_run",
        _chaos_wal.DUPLICATE_INVARIANTS,
        None,
        _chaos_wal.duplicate_records,
        (_chaos_wal.INFLIGHT_CRASH,),
    ),
    Scenario(
        "wal.reordered_records",
        "Reordered WAL records",
        _WAL_LEVEL,
        "cases taken through engine resume and verify_run",
        _chaos_wal.REORDER_INVARIANTS,
        None,
        _chaos_wal.reordered_records,
        (_chaos_wal.INFLIGHT_CRASH,),
    ),
    Scenario(
        "checkpoint.corruption",
        "Bit flips in each file of the latest checkpoint",
        "one bit flipped in place in a copy of a real run SIGKILLed after step 18",
        "seeded bit flips per file",
        _chaos_runs.CHECKPOINT_INVARIANTS,
        None,
        _chaos_runs.checkpoint_corruption,
        (_chaos_runs.CHECKPOINT_CRASH,),
    ),
    Scenario(
        "process.sigkill_random",
        "SIGKILL of a real `umlos run` process",
        "SIGKILL: UMLOS_CRASH_AT at every named crash point and at seeded ones, and a timer "
        "in the parent",
        "seeded crash points (and half as many seeded timer kills)",
        _chaos_runs.SIGKILL_INVARIANTS,
        None,
        _chaos_runs.sigkill_random,
    ),
    Scenario(
        "disk.full_during_checkpoint",
        "Disk full while a checkpoint is written",
        "a shim in the child raising OSError(ENOSPC) on the n-th write under checkpoints/; "
        "when root, a real tmpfs mounted on checkpoints/ that fills up",
        "seeded n-th checkpoint writes",
        _chaos_runs.DISK_INVARIANTS,
        None,
        _chaos_runs.disk_full,
    ),
    Scenario(
        "store.partial_failure",
        "Errors and timeouts on a fraction of file operations",
        "a shim in the child failing seeded file operations under the runs directory with "
        "EIO, or ETIMEDOUT after a delay",
        "seeded fault sequences, each over up to three attempts",
        _chaos_runs.STORE_INVARIANTS,
        "artifact_store_partial_unavailable",
        _chaos_runs.store_partial_failure,
    ),
)
SCENARIOS: Final = {s.id: s for s in _SCENARIO_LIST}
"""Every mandatory scenario by id, in run order."""


def scenario_index_hash() -> bytes:
    """``commit_hash(FAILURE_INDEX, rows)``: the scenario index (productization §2.2).

    One row per scenario, sorted by id: ``[scenario_id, [[invariant_id, statement], ...]]``.
    It changes when a scenario or an invariant statement does (a MAJOR change).
    """
    rows = [
        [s.id, [[i.id, i.statement] for i in s.invariants]]
        for s in sorted(SCENARIOS.values(), key=lambda s: s.id)
    ]
    return commit_hash(tags.FAILURE_INDEX, rows)


def run_scenario(ctx: ChaosContext, scenario_id: str, *, trials: int) -> ProofPack:
    """Run one scenario in ``ctx`` and return its proof pack.

    A scenario that stops on an unexpected exception fails every invariant, with the error's
    name (deterministic) as the detail; the pack is still produced.
    """
    scenario = SCENARIOS[scenario_id]
    transcript = Transcript(scenario.id, seed=ctx.seed, invariants=scenario.invariants)
    started = time.perf_counter()
    try:
        scenario.run(ctx, transcript, trials)
    except Exception as exc:
        name = error_name(exc)
        transcript.case("scenario-aborted", inject={}, observed={"error": name})
        for inv in scenario.invariants:
            transcript.check(inv.id, "scenario-aborted", False, f"scenario stopped: {name}")
        transcript.note("aborted", f"{type(exc).__name__}: {exc}")
    transcript.note("duration_s", round(time.perf_counter() - started, 2))
    return build_pack(transcript, trials=trials, fault_injection=scenario.fault_injection)


def run_scenarios(ctx: ChaosContext, ids: Iterable[str], *, trials: int) -> list[ProofPack]:
    """Run ``ids`` in order; the crash states they share are made once, up front."""
    ids = list(ids)
    states = sorted({c for sid in ids for c in SCENARIOS[sid].crash_states})
    # A state that cannot be made fails the scenarios that need it, each with its own pack.
    with contextlib.suppress(Exception):
        ctx.prefetch(states)
    return [run_scenario(ctx, sid, trials=trials) for sid in ids]


def overall_verdict(packs: Iterable[ProofPack]) -> Verdict:
    """PASS iff every pack passed (fail-dominant)."""
    return "PASS" if all(p.final_verdict == "PASS" for p in packs) else "FAIL"


def run_chaos(
    ids: Sequence[str],
    *,
    seed: int = DEFAULT_SEED,
    trials: int = DEFAULT_TRIALS,
    exhaustive: bool = True,
    workers: int | None = None,
) -> list[ProofPack]:
    """Run scenarios ``ids`` in a fresh scratch context (``umlos chaos run``).

    Raises ``KeyError`` for an unknown id before anything runs.
    """
    unknown = [sid for sid in ids if sid not in SCENARIOS]
    if unknown:
        raise KeyError(f"unknown chaos scenario(s): {', '.join(unknown)}")
    with chaos_context(seed=seed, workers=workers, exhaustive=exhaustive) as ctx:
        return run_scenarios(ctx, ids, trials=trials)


def scenario_table() -> list[dict[str, Any]]:
    """Every scenario with its invariants, for ``umlos chaos list``."""
    return [
        {
            "scenario_id": s.id,
            "title": s.title,
            "upstream_id": s.upstream_id,
            "fault_injection": s.fault_injection,
            "trial": s.trials_mean,
            "invariants": [{"id": i.id, "statement": i.statement} for i in s.invariants],
        }
        for s in SCENARIOS.values()
    ]


def format_report(packs: Sequence[ProofPack]) -> list[str]:
    """Human-readable lines: one per scenario, a line per failing invariant, the verdict."""
    lines = []
    for pack in packs:
        held = sum(r.verdict == "PASS" for r in pack.invariants)
        lines.append(
            f"{pack.final_verdict:<4}  {pack.scenario_id:<28} {len(pack.transcript):>5} cases  "
            f"{held}/{len(pack.invariants)} invariants  verdict {pack.final_verdict_hash.hex()[:16]}"
        )
        for r in pack.invariants:
            if r.verdict != "PASS":
                lines.append(f"        {r.id}: {r.detail}")
    lines.append(f"{overall_verdict(packs)}: {len(packs)} scenario(s)")
    return lines


def write_packs(packs: Sequence[ProofPack], out_dir: Path) -> list[Path]:
    """Write ``<scenario_id>.json`` (the pack with its transcript) and ``index.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for pack in packs:
        path = out_dir / f"{pack.scenario_id}.json"
        path.write_text(json.dumps(pack.to_json(with_transcript=True), indent=1, sort_keys=True))
        written.append(path)
    index = {
        "scenario_index_hash": scenario_index_hash().hex(),
        "verdict": overall_verdict(packs),
        "packs": {
            p.scenario_id: {
                "final_verdict": p.final_verdict,
                "final_verdict_hash": p.final_verdict_hash.hex(),
                "proof_pack_hash": p.proof_pack_hash.hex(),
                "recovery_transcript_hash": p.recovery_transcript_hash.hex(),
            }
            for p in packs
        },
    }
    path = out_dir / "index.json"
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    written.append(path)
    return written
