"""`umlos chaos`: every scenario against real runs, deterministic proof packs, checks that FAIL.

The scenarios run with one trial and ``exhaustive=False`` (sampled cut offsets and named crash
points); ``umlos chaos run --all`` does the full set (docs/reliability.md).
"""

from __future__ import annotations

import doctest
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from umlos._generated.records import WalRecord, WalRecoveryReport, wal_record_from_obj
from umlos.cli import main
from umlos.codec import decode
from umlos.conformance import _chaos_pack
from umlos.conformance import chaos as chaos_module
from umlos.conformance.chaos import (
    REAL_WAL,
    SCENARIOS,
    ChaosContext,
    Invariant,
    ProofPack,
    Transcript,
    WalApi,
    build_pack,
    chaos_context,
    run_scenario,
    scenario_index_hash,
)
from umlos.evidence import wal as wal_mod
from umlos.evidence._frames import scan_frames

SEED = 20260226
TRIALS = 1


@pytest.fixture(scope="module")
def chaos() -> Iterator[ChaosContext]:
    with chaos_context(seed=SEED, exhaustive=False) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def packs() -> dict[str, ProofPack]:
    return {}


def _pack(ctx: ChaosContext, cache: dict[str, ProofPack], scenario_id: str) -> ProofPack:
    if scenario_id not in cache:
        cache[scenario_id] = run_scenario(ctx, scenario_id, trials=TRIALS)
    return cache[scenario_id]


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario_id",
    list(SCENARIOS),
)
def test_scenario_passes(
    chaos: ChaosContext, packs: dict[str, ProofPack], scenario_id: str
) -> None:
    pack = _pack(chaos, packs, scenario_id)
    failing = {r.id: r.detail for r in pack.invariants if r.verdict != "PASS"}
    assert pack.final_verdict == "PASS", failing
    assert [r.id for r in pack.invariants] == [i.id for i in SCENARIOS[scenario_id].invariants]
    assert pack.transcript, "a scenario that ran no case cannot pass"
    assert "aborted" not in pack.informational


@pytest.mark.slow
def test_proof_pack_hashes_are_deterministic_for_a_seed(
    chaos: ChaosContext, packs: dict[str, ProofPack]
) -> None:
    # A second session: another key store, other paths, other process ids. Real kills, a timer
    # kill and byte-level damage must still give the same transcript and verdict hashes.
    ids = (
        "wal.torn_write",
        "checkpoint.corruption",
        "process.sigkill_random",
        "store.partial_failure",
    )
    with chaos_context(seed=SEED, exhaustive=False) as other:
        for sid in ids:
            first, again = _pack(chaos, packs, sid), run_scenario(other, sid, trials=TRIALS)
            assert again.recovery_transcript_hash == first.recovery_transcript_hash, sid
            assert again.final_verdict_hash == first.final_verdict_hash, sid
            assert again.proof_pack_hash == first.proof_pack_hash, sid
        other.seed = SEED + 1
        reseeded = run_scenario(other, "wal.torn_write", trials=TRIALS)
    assert reseeded.recovery_transcript_hash != packs["wal.torn_write"].recovery_transcript_hash


@pytest.mark.slow
def test_kill_before_the_last_atomic_rename_leaves_a_verifiable_run(chaos: ChaosContext) -> None:
    # `process.sigkill_random` kills before every atomic rename when run exhaustively; the last
    # one (run.json, after COMMITTED) is pinned here so the quick sample cannot miss it.
    ref = chaos.reference
    runs = chaos.scratch("last-rename") / "runs"
    killed = chaos.child(runs, plan={"root": str(runs), "kill_before_replace": ref.replaces})
    assert killed.killed and wal_mod.pointer_path(chaos.run_dir(runs)).exists()
    resumed = chaos.resume(runs)
    assert resumed.certificate_hash == ref.certificate_hash
    assert chaos.verify(chaos.run_dir(runs)) == "PASS"


def _lenient_resume(run_dir: Path, tenant_id: str, run_id: str) -> tuple[WalRecord, ...]:
    """A broken recovery: keeps every frame that decodes, whatever its CRC says."""
    data = (run_dir / wal_mod.WAL_FILE).read_bytes()
    frames = scan_frames(data).frames
    return tuple(wal_record_from_obj(decode(f.payload)) for f in frames if f.payload)


def _uncommitting_recover(run_dir: Path, tenant_id: str, run_id: str) -> WalRecoveryReport:
    """A broken recovery: "repairs" a damaged committed run by deleting its pointer."""
    wal_mod.pointer_path(run_dir).unlink(missing_ok=True)
    return REAL_WAL.recover(run_dir, tenant_id, run_id)


def test_a_broken_recovery_fails_the_invariants_it_breaks(chaos: ChaosContext) -> None:
    broken = WalApi(
        read_wal=REAL_WAL.read_wal,
        resume=_lenient_resume,
        recover=_uncommitting_recover,
    )
    pack = run_scenario(chaos.with_wal_api(broken), "wal.duplicate_records", trials=TRIALS)
    verdicts = {r.id: r.verdict for r in pack.invariants}
    assert pack.final_verdict == "FAIL"
    assert verdicts["corruption.refused"] == "FAIL"
    assert verdicts["committed.preserved"] == "FAIL"
    detail = next(r.detail for r in pack.invariants if r.id == "committed.preserved")
    assert "pointer changed" in detail


def test_an_invariant_no_case_exercised_fails() -> None:
    t = Transcript(
        "demo",
        seed=1,
        invariants=(Invariant("a.held", "A holds."), Invariant("b.never", "B is never checked.")),
    )
    t.case("c1", inject={"x": 1}, observed={"y": 2})
    t.check("a.held", "c1", True)
    pack = build_pack(t)
    assert [r.verdict for r in pack.invariants] == ["PASS", "FAIL"]
    assert pack.invariants[1].detail == "no case exercised this invariant"
    assert pack.final_verdict == "FAIL"


def test_one_failed_check_fails_the_invariant_and_changes_the_verdict_hash() -> None:
    def pack_with(ok: bool) -> ProofPack:
        t = Transcript("demo", seed=1, invariants=(Invariant("a.held", "A holds."),))
        t.case("c1", inject={}, observed={})
        t.check("a.held", "c1", True)
        t.check("a.held", "c2", ok, "boom")
        return build_pack(t)

    good, bad = pack_with(True), pack_with(False)
    assert (good.final_verdict, bad.final_verdict) == ("PASS", "FAIL")
    assert bad.invariants[0].detail == "violated in 1/2 cases — c2: boom"
    assert good.recovery_transcript_hash == bad.recovery_transcript_hash  # same observations
    assert good.final_verdict_hash != bad.final_verdict_hash


def test_chaos_list_names_every_scenario() -> None:
    result = CliRunner().invoke(main, ["chaos", "list", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [s["scenario_id"] for s in out["scenarios"]] == list(SCENARIOS)
    assert out["scenario_index_hash"] == scenario_index_hash().hex()


@pytest.mark.parametrize("args", [[], ["wal.nope"], ["wal.torn_write", "--all"]])
def test_chaos_run_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["chaos", "run", *args])
    assert result.exit_code == 2, result.output


@pytest.mark.slow
def test_chaos_run_cli_writes_proof_packs(tmp_path: Path) -> None:
    out = tmp_path / "packs"
    args = ["wal.reordered_records", "--quick", "--trials", "1", "--json", "--out", str(out)]
    result = CliRunner().invoke(main, ["chaos", "run", *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "PASS"
    (pack,) = report["packs"]
    saved = json.loads((out / "wal.reordered_records.json").read_text())
    assert saved["proof_pack_hash"] == pack["proof_pack_hash"]
    assert len(saved["transcript"]) == pack["cases"]
    index = json.loads((out / "index.json").read_text())
    assert index["packs"]["wal.reordered_records"]["final_verdict"] == "PASS"


@pytest.mark.parametrize("module", [chaos_module, _chaos_pack])
def test_doctests_pass(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
