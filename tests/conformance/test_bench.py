"""`umlos bench`: evidence fields, hash determinism, baselines and the regression rule, the CLI.

The measured runs use the real workloads cut to a few steps (``tiny_workloads``) and a fake
clock where a test compares hashes, so nothing here depends on the machine's speed.
"""

from __future__ import annotations

import dataclasses
import doctest
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import umlos.conformance._baselines as baselines_mod
import umlos.conformance.bench as bench
from umlos._generated.records import ModelPresetBasicCnn, ModelPresetMlp, ModelPresetTinyTransformer
from umlos._generated.tags import BENCHMARK_EVIDENCE, PERF_BASELINE
from umlos.cli import main
from umlos.codec import commit_hash, decode
from umlos.conformance._baselines import Cnn, Mlp, PlainJob, TinyLm, run_plain
from umlos.errors import ContractViolationError
from umlos.manifest import load_manifest
from umlos.model import expand_preset

TINY_STEPS = 3

# The evidence object's fields: the shape ADR 0016 proposes for the contract.
EVIDENCE_FIELDS = {
    "baseline_env_match",
    "baseline_hash",
    "env_manifest_hash",
    "format_version",
    "platform_tier",
    "regression_verdict",
    "sample_policy",
    "thresholds",
    "tier_status",
    "umlos_version",
    "unavailable_reason",
    "workload_ids",
    "workloads",
}
WORKLOAD_FIELDS = {
    "baseline_match",
    "baseline_ratio",
    "manifest_hash",
    "medians_ns",
    "ratios",
    "samples_ns",
    "steps",
    "verdict",
    "workload_id",
}


@pytest.fixture(autouse=True)
def umlos_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A key store location that must stay untouched: the bench signs with throw-away keys."""
    home = tmp_path / "umlos-home"
    monkeypatch.setenv("UMLOS_HOME", str(home))
    yield home
    assert not home.exists(), "umlos bench touched the key store"


@pytest.fixture
def tiny_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every workload cut to a few steps (its manifest hash changes with it, as it should)."""
    monkeypatch.setattr(
        bench,
        "WORKLOADS",
        tuple(dataclasses.replace(w, steps=TINY_STEPS) for w in bench.WORKLOADS),
    )


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def fake_clock() -> bench.Clock:
    """Each reading 1 ms after the last: every timed run lasts exactly 1 ms."""
    ticks = itertools.count(start=1, step=1_000_000)
    return lambda: next(ticks)


def measurement(
    wid: str = "cpu.mlp.digits",
    *,
    plain: tuple[int, ...] = (100, 110, 90),
    no_evidence: tuple[int, ...] = (120, 130, 125),
    evidence: tuple[int, ...] = (150, 160, 140),
    manifest_hash: bytes = b"\x01" * 32,
    steps: int = 600,
) -> bench.Measurement:
    return bench.Measurement(
        workload_id=wid,
        manifest_hash=manifest_hash,
        steps=steps,
        samples_ns={"plain": plain, "no_evidence": no_evidence, "evidence": evidence},
    )


POLICY = bench.SamplePolicy(repeat=3, warmup=1)
ENV = b"\x0e" * 32


def evidence_of(*ms: bench.Measurement, **kw: object) -> bench.BenchmarkEvidence:
    return bench.build_evidence(
        "cpu_tier",
        ms,
        env_manifest_hash=ENV,
        sample_policy=POLICY,
        **kw,  # type: ignore[arg-type]
    )


# --- docs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [bench, baselines_mod], ids=["bench", "_baselines"])
def test_doctests_pass(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


# --- analysis: pure functions ----------------------------------------------------------------


def test_median_is_nearest_rank_and_never_interpolates() -> None:
    assert bench.nearest_rank_median([5]) == 5
    assert bench.nearest_rank_median([3, 1, 2]) == 2
    assert bench.nearest_rank_median([4, 1, 3, 2]) == 2  # k = ceil(0.5 * 4) = 2, not 2.5
    with pytest.raises(ContractViolationError) as info:
        bench.nearest_rank_median([])
    assert info.value.reason == "NUMERIC_EMPTY"


def test_verdict_boundary_passes_and_one_step_past_it_regresses() -> None:
    assert bench.workload_verdict(1.25, 1.0, tolerance_pct=25) == "PASS"
    assert bench.workload_verdict(math.nextafter(1.25, 2.0), 1.0, tolerance_pct=25) == "REGRESSED"
    assert bench.workload_verdict(0.5, 1.0, tolerance_pct=25) == "PASS"  # faster is never a failure
    assert bench.workload_verdict(1.1, 1.0, tolerance_pct=0) == "REGRESSED"
    assert bench.workload_verdict(9.9, None, tolerance_pct=25) == "NO_BASELINE"


def test_evidence_fields_medians_and_ratios() -> None:
    e = evidence_of(measurement())
    obj = e.to_obj()
    assert set(obj) == EVIDENCE_FIELDS
    (w,) = obj["workloads"]
    assert set(w) == WORKLOAD_FIELDS
    assert obj["platform_tier"] == "cpu_tier" and obj["tier_status"] == "MEASURED"
    assert obj["workload_ids"] == ["cpu.mlp.digits"]
    assert obj["env_manifest_hash"] == ENV
    assert obj["baseline_hash"] is None and obj["regression_verdict"] == "NO_BASELINE"
    assert obj["thresholds"] == {
        "metric": "evidence_over_plain",
        "quantile": "nearest_rank_p50",
        "tolerance_pct": 25,
    }
    assert obj["sample_policy"] == {"order": "rotate", "repeat": 3, "warmup_discard": 1}
    assert w["medians_ns"] == {"plain": 100, "no_evidence": 125, "evidence": 150}
    assert w["ratios"] == {
        "evidence_over_no_evidence": 150 / 125,
        "evidence_over_plain": 150 / 100,
        "no_evidence_over_plain": 125 / 100,
    }
    assert w["samples_ns"]["plain"] == [100, 110, 90]  # raw samples, in run order


def test_evidence_hash_is_the_tagged_commitment_and_deterministic() -> None:
    a = evidence_of(measurement("cpu.mlp.digits"), measurement("cpu.cnn.digits"))
    b = evidence_of(measurement("cpu.cnn.digits"), measurement("cpu.mlp.digits"))
    assert a.benchmark_evidence_hash == commit_hash(BENCHMARK_EVIDENCE, a.to_obj())
    assert a.benchmark_evidence_hash == b.benchmark_evidence_hash  # input order does not matter
    assert a.workload_ids == ("cpu.cnn.digits", "cpu.mlp.digits")  # ascending
    c = evidence_of(
        measurement("cpu.mlp.digits", plain=(100, 110, 91)), measurement("cpu.cnn.digits")
    )
    assert c.benchmark_evidence_hash != a.benchmark_evidence_hash  # a raw sample is bound


def test_inconsistent_inputs_are_refused() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"thresholds": bench.Thresholds(metric="speed")}, "$.thresholds"),
        ({"thresholds": bench.Thresholds(tolerance_pct=-1)}, "$.thresholds"),
        (
            {"baseline": dataclasses.replace(baseline_with(1.0), platform_tier="single_gpu_tier")},
            "$.baseline_hash",
        ),
    ]
    for kw, where in cases:
        with pytest.raises(ContractViolationError) as info:
            evidence_of(measurement(), **kw)
        assert info.value.path == where
    with pytest.raises(ContractViolationError) as info:
        evidence_of(measurement(), measurement())
    assert info.value.path == "$.workloads[1]"
    with pytest.raises(ContractViolationError) as info:
        evidence_of(measurement(evidence=(1, 2)))
    assert info.value.path == "$.workloads[0].samples_ns.evidence"


def test_another_gated_ratio_can_be_chosen() -> None:
    rule = bench.Thresholds(metric="evidence_over_no_evidence")
    b = baseline_with(99.0)  # evidence_over_plain is not looked at
    e = evidence_of(measurement(), baseline=b, thresholds=rule)
    assert e.workloads[0].baseline_ratio == 150 / 125 and e.regression_verdict == "PASS"


def test_zero_median_is_refused_not_divided() -> None:
    with pytest.raises(ContractViolationError) as info:
        evidence_of(measurement(plain=(0, 0, 0)))
    assert info.value.reason == "NUMERIC_OUT_OF_RANGE"


# --- baselines: synthetic numbers --------------------------------------------------------------


def baseline_with(ratio: float, **kw: object) -> bench.TierBaseline:
    e = evidence_of(measurement(**kw))  # type: ignore[arg-type]
    b = bench.tier_baseline(e)
    (w,) = b.workloads
    ratios = {**w.ratios, "evidence_over_plain": ratio}
    return dataclasses.replace(b, workloads=(dataclasses.replace(w, ratios=ratios),))


def test_regression_rule_against_a_baseline() -> None:
    m = measurement()  # evidence / plain = 1.5
    passed = evidence_of(m, baseline=baseline_with(1.2))  # limit 1.5: boundary passes
    assert passed.regression_verdict == "PASS"
    assert passed.workloads[0].baseline_match == "COMPARED"
    assert passed.workloads[0].baseline_ratio == 1.2
    assert passed.baseline_hash == baseline_with(1.2).baseline_hash
    assert passed.baseline_env_match is True
    regressed = evidence_of(m, baseline=baseline_with(1.19))
    assert regressed.regression_verdict == "REGRESSED"
    loose = evidence_of(
        m, baseline=baseline_with(1.19), thresholds=bench.Thresholds(tolerance_pct=50)
    )
    assert loose.regression_verdict == "PASS"


def test_incomparable_workloads_are_no_baseline_never_pass() -> None:
    m = measurement()
    other_manifest = evidence_of(m, baseline=baseline_with(9.0, manifest_hash=b"\x02" * 32))
    assert other_manifest.workloads[0].baseline_match == "MANIFEST_CHANGED"
    assert other_manifest.regression_verdict == "NO_BASELINE"
    other_steps = evidence_of(m, baseline=baseline_with(9.0, steps=601))
    assert other_steps.workloads[0].baseline_match == "MANIFEST_CHANGED"
    missing = evidence_of(m, measurement("cpu.cnn.digits"), baseline=baseline_with(9.0))
    assert [w.baseline_match for w in missing.workloads] == ["NOT_IN_BASELINE", "COMPARED"]
    assert missing.regression_verdict == "NO_BASELINE"
    # A REGRESSED workload wins over an uncompared one.
    both = evidence_of(m, measurement("cpu.cnn.digits"), baseline=baseline_with(1.0))
    assert both.regression_verdict == "REGRESSED"


def test_other_environment_is_recorded_not_gated() -> None:
    b = dataclasses.replace(baseline_with(1.5), env_manifest_hash=b"\x0f" * 32)
    e = evidence_of(measurement(), baseline=b)
    assert e.baseline_env_match is False and e.regression_verdict == "PASS"


def test_overall_verdict_ignores_unavailable_tiers() -> None:
    measured = evidence_of(measurement(), baseline=baseline_with(2.0))
    gone = bench._unavailable("single_gpu_tier", "no GPU", POLICY, bench.Thresholds())
    assert bench.overall_verdict([measured, gone]) == "PASS"
    assert bench.overall_verdict([gone]) == "NO_BASELINE"
    regressed = evidence_of(measurement(), baseline=baseline_with(1.0))
    assert bench.overall_verdict([measured, regressed, gone]) == "REGRESSED"
    assert bench.overall_verdict([measured, evidence_of(measurement())]) == "NO_BASELINE"
    with pytest.raises(ContractViolationError):
        bench.tier_baseline(gone)


def test_baseline_file_round_trip(tmp_path: Path) -> None:
    e = evidence_of(measurement(), measurement("cpu.cnn.digits", plain=(3, 1, 2)))
    gone = bench._unavailable("single_gpu_tier", "no GPU", POLICY, bench.Thresholds())
    path = tmp_path / "base" / "baseline.json"
    (saved,) = bench.save_baselines(path, [e, gone])  # the unavailable tier is left out
    loaded = bench.load_baselines(path)
    assert list(loaded) == ["cpu_tier"]
    assert loaded["cpu_tier"] == saved
    assert loaded["cpu_tier"].baseline_hash == commit_hash(PERF_BASELINE, saved.to_obj())
    doc = json.loads(path.read_text())
    assert doc["tiers"][0]["baseline_hash"] == saved.baseline_hash.hex()
    # Comparing a run with its own baseline passes, and binds the baseline's hash.
    again = evidence_of(
        measurement(), measurement("cpu.cnn.digits", plain=(3, 1, 2)), baseline=loaded["cpu_tier"]
    )
    assert again.regression_verdict == "PASS" and again.baseline_hash == saved.baseline_hash


def _edit(path: Path, change: object) -> None:
    doc = json.loads(path.read_text())
    change(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            lambda d: d["tiers"][0]["baseline"]["workloads"][0]["ratios"].update(
                evidence_over_plain=9.0
            ),
            "$.tiers[0].baseline_hash",
        ),
        (
            lambda d: d["tiers"][0]["baseline"]["workloads"][0].pop("steps"),
            "$.tiers[0].baseline.workloads[0].steps",
        ),
        (
            lambda d: d["tiers"][0]["baseline"]["workloads"][0].update(steps="600"),
            "$.tiers[0].baseline.workloads[0].steps",
        ),
        (
            lambda d: d["tiers"][0]["baseline"].update(env_manifest_hash="abc"),
            "$.tiers[0].baseline.env_manifest_hash",
        ),
        (
            lambda d: d["tiers"][0]["baseline"]["workloads"][0]["ratios"].update(
                evidence_over_plain=-1.0
            ),
            "$.tiers[0].baseline.workloads[0].ratios.evidence_over_plain",
        ),
        (lambda d: d.update(kind="something else"), "$.kind"),
        (lambda d: d.update(format_version=2), "$.format_version"),
        (lambda d: d["tiers"].append(d["tiers"][0]), "$.tiers[1].baseline.platform_tier"),
    ],
    ids=[
        "tampered-ratio",
        "missing-field",
        "mistyped-field",
        "bad-hash",
        "negative-ratio",
        "wrong-kind",
        "future-version",
        "duplicate-tier",
    ],
)
def test_damaged_baseline_file_fails_where_it_is_damaged(
    tmp_path: Path, change: object, where: str
) -> None:
    path = tmp_path / "baseline.json"
    bench.save_baselines(path, [evidence_of(measurement())])
    _edit(path, change)
    with pytest.raises(ContractViolationError) as info:
        bench.load_baselines(path)
    assert info.value.reason == "DATA_MALFORMED"
    assert info.value.path == where
    assert info.value.artifact == str(path)


def test_baseline_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(b"\xa1\x00")
    with pytest.raises(ContractViolationError) as info:
        bench.load_baselines(path)
    assert info.value.path == "$"


# --- workloads ----------------------------------------------------------------------------------


def test_workload_ids_are_fixed() -> None:
    assert [w.workload_id for w in bench.WORKLOADS] == [
        "cpu.cnn.digits",
        "cpu.mlp.digits",
        "cpu.transformer.text",
        "gpu.cnn.digits",
        "gpu.mlp.digits",
        "gpu.transformer.text",
    ]
    assert {w.tier for w in bench.WORKLOADS} == set(bench.TIERS)


def test_select_workloads() -> None:
    assert list(bench.select_workloads()) == ["cpu_tier", "single_gpu_tier"]
    only = bench.select_workloads(workload_ids=["cpu.mlp.digits"])
    assert {t: [w.workload_id for w in ws] for t, ws in only.items()} == {
        "cpu_tier": ["cpu.mlp.digits"]
    }
    assert len(bench.select_workloads(["cpu_tier"])["cpu_tier"]) == 3
    for tiers, ids, where in [
        ((), ("cpu.nope",), "$.workload[0]"),
        (("gpu_tier",), (), "$.tier[0]"),
        (("cpu_tier",), ("gpu.mlp.digits",), "$.workload[0]"),
        (("cpu_tier", "single_gpu_tier"), ("cpu.mlp.digits",), "$.tier[1]"),
    ]:
        with pytest.raises(ContractViolationError) as info:
            bench.select_workloads(tiers, ids)
        assert info.value.path == where


def test_manifests_do_not_depend_on_their_directory(tmp_path: Path) -> None:
    for w in bench.WORKLOADS[:3]:
        a = bench.materialize(w, tmp_path / "a" / w.workload_id)
        b = bench.materialize(w, tmp_path / "b")
        assert a.read_bytes() == b.read_bytes()
        assert load_manifest(a).manifest_hash == load_manifest(b).manifest_hash
        loaded = load_manifest(a).manifest
        assert loaded.pipeline_stages[0].limits.max_steps == w.steps  # type: ignore[union-attr]
        assert loaded.backend.name == "torch" and loaded.backend.device == w.device  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("plain", "spec_of"),
    [
        (Mlp, lambda w: "mlp"),
        (Cnn, lambda w: "cnn"),
        (TinyLm, lambda w: "transformer"),
    ],
    ids=["mlp", "cnn", "transformer"],
)
def test_plain_models_have_the_manifests_parameter_count(
    tmp_path: Path, plain: type, spec_of: object
) -> None:
    """Same model shape: the hand-written module holds as many weights as the expanded preset."""
    (w,) = [w for w in bench.WORKLOADS if w.tier == "cpu_tier" and w.model == spec_of(w)]  # type: ignore[operator]
    model = load_manifest(bench.materialize(w, tmp_path)).manifest.model
    assert isinstance(model, ModelPresetMlp | ModelPresetBasicCnn | ModelPresetTinyTransformer)
    ir = expand_preset(model, task_type="multiclass", dtype="float32")
    expected = sum(math.prod(p.shape) for p in ir.parameters)
    assert sum(p.numel() for p in plain().parameters()) == expected


def test_plain_text_job_needs_its_corpus() -> None:
    job = PlainJob(model="transformer", data="text", steps=1, batch=2, lr=1e-3, weight_decay=0.0)
    with pytest.raises(ContractViolationError, match="text_path"):
        run_plain(job)


# --- measured runs (a few steps each) ------------------------------------------------------------


def test_measure_runs_each_contender_and_checks_its_steps(
    tmp_path: Path, tiny_workloads: None
) -> None:
    w = next(w for w in bench.WORKLOADS if w.workload_id == "cpu.transformer.text")
    path = bench.materialize(w, tmp_path / "w")
    lines: list[str] = []
    m = bench.measure(w, path, tmp_path / "scratch", repeat=2, warmup=1, progress=lines.append)
    assert m.steps == TINY_STEPS and m.manifest_hash == load_manifest(path).manifest_hash
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in m.samples_ns.values())
    assert lines == [
        "cpu.transformer.text: round warm-up done",
        "cpu.transformer.text: round 1/2 done",
        "cpu.transformer.text: round 2/2 done",
    ]
    # Each evidence run committed in its own runs directory.
    assert len(list((tmp_path / "scratch").glob("runs*/*/COMMITTED"))) == 3
    with pytest.raises(ContractViolationError):
        bench.measure(w, path, tmp_path / "scratch", repeat=0)


def test_measure_refuses_a_manifest_that_runs_other_steps(
    tmp_path: Path, tiny_workloads: None
) -> None:
    w = next(w for w in bench.WORKLOADS if w.workload_id == "cpu.mlp.digits")
    path = bench.materialize(dataclasses.replace(w, steps=TINY_STEPS + 1), tmp_path / "w")
    with pytest.raises(ContractViolationError, match="made 4 steps"):
        bench.measure(w, path, tmp_path / "scratch", repeat=1, warmup=0)


def test_run_bench_with_a_fake_clock_gives_identical_evidence(
    tiny_workloads: None, no_gpu: None
) -> None:
    runs = [bench.run_bench(repeat=1, warmup=0, clock=fake_clock()) for _ in range(2)]
    assert [e.benchmark_evidence_hash for e in runs[0]] == [
        e.benchmark_evidence_hash for e in runs[1]
    ]
    cpu, gpu = runs[0]
    assert cpu.tier_status == "MEASURED"
    assert cpu.workload_ids == ("cpu.cnn.digits", "cpu.mlp.digits", "cpu.transformer.text")
    assert all(r.medians_ns == {c: 1_000_000 for c in bench.CONTENDERS} for r in cpu.workloads)
    assert all(r.steps == TINY_STEPS for r in cpu.workloads)
    assert gpu.tier_status == "NOT_AVAILABLE" and gpu.workloads == ()
    assert "torch.cuda.is_available() is False" in gpu.unavailable_reason
    assert gpu.env_manifest_hash is None and gpu.regression_verdict == "NO_BASELINE"


# --- the command --------------------------------------------------------------------------------


def test_cli_json_writes_evidence_and_baseline(
    tmp_path: Path, tiny_workloads: None, no_gpu: None
) -> None:
    out, base = tmp_path / "out", tmp_path / "baseline.json"
    args = ["bench", "--workload", "cpu.mlp.digits", "--repeat", "1", "--out", str(out), "--json"]
    result = CliRunner().invoke(main, [*args, "--save-baseline", str(base)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["regression_verdict"] == "NO_BASELINE"
    assert report["baseline_saved"] == str(base)
    (tier,) = report["tiers"]
    evidence = tier["benchmark_evidence"]
    assert set(evidence) == EVIDENCE_FIELDS
    assert evidence["workload_ids"] == ["cpu.mlp.digits"]
    assert sorted(report["files"]) == [str(out / "cpu_tier.cbor"), str(out / "cpu_tier.json")]
    # The CBOR file is the committed object; its tagged hash is the reported one.
    committed = decode((out / "cpu_tier.cbor").read_bytes())
    assert commit_hash(BENCHMARK_EVIDENCE, committed).hex() == tier["benchmark_evidence_hash"]
    assert json.loads((out / "cpu_tier.json").read_text()) == tier
    assert list(bench.load_baselines(base)) == ["cpu_tier"]


def _rebased(base: Path, ratio: float) -> None:
    """The stored baseline with its gated ratio replaced and its hash recomputed."""
    loaded = bench.load_baselines(base)["cpu_tier"]
    (w,) = loaded.workloads
    w = dataclasses.replace(w, ratios={**w.ratios, "evidence_over_plain": ratio})
    edited = dataclasses.replace(loaded, workloads=(w,))
    doc = {
        "kind": bench.BASELINE_KIND,
        "format_version": 1,
        "tiers": [
            {"baseline": bench._hex(edited.to_obj()), "baseline_hash": edited.baseline_hash.hex()}
        ],
    }
    base.write_text(json.dumps(doc))


def test_cli_exit_code_follows_the_verdict(
    tmp_path: Path, tiny_workloads: None, no_gpu: None
) -> None:
    base = tmp_path / "baseline.json"
    args = ["bench", "--tier", "cpu_tier", "--workload", "cpu.mlp.digits", "--repeat", "1"]
    args += ["--out", str(tmp_path / "out")]
    assert CliRunner().invoke(main, [*args, "--save-baseline", str(base), "--json"]).exit_code == 0
    _rebased(base, 1e6)  # any real ratio is far below
    ok = CliRunner().invoke(main, [*args, "--baseline", str(base)])
    assert ok.exit_code == 0, ok.output
    assert "regression verdict: PASS" in ok.output
    _rebased(base, 1e-6)  # any real ratio is far above
    bad = CliRunner().invoke(main, [*args, "--baseline", str(base), "--json"])
    assert bad.exit_code == 1, bad.output
    assert json.loads(bad.output)["regression_verdict"] == "REGRESSED"


def test_cli_reports_an_unavailable_tier(tmp_path: Path, no_gpu: None) -> None:
    result = CliRunner().invoke(
        main, ["bench", "--tier", "single_gpu_tier", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "single_gpu_tier: not available on this machine" in result.output
    committed = decode((tmp_path / "single_gpu_tier.cbor").read_bytes())
    assert isinstance(committed, dict) and committed["tier_status"] == "NOT_AVAILABLE"


def test_cli_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["bench", "--workload", "cpu.nope", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown workload" in unknown.output
    assert runner.invoke(main, ["bench", "--repeat", "0"]).exit_code == 2
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{}")
    bad = runner.invoke(
        main, ["bench", "--workload", "cpu.mlp.digits", "--baseline", str(damaged), "--json"]
    )
    assert bad.exit_code == 3
    assert json.loads(bad.output)["error"]["code_id"] == "CONTRACT_VIOLATION"
