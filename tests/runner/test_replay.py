"""`umlos replay`: a fresh run replays bitwise, from any checkpoint, without touching the run;
injected divergences are found at their step; the E1 bands and the comparator's float rules."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from umlos._generated.records import (
    ReplayReport,
    ToleranceRule,
    TraceIter,
    TraceRecord,
    TraceRunHeader,
)
from umlos.codec import decode
from umlos.errors import (
    ApiShapeMismatchError,
    CheckpointInvalidError,
    ContractViolationError,
    Error,
    ReplayDivergenceError,
)
from umlos.evidence.trace import read_trace
from umlos.quickstart import write_quickstart
from umlos.runner import execute
from umlos.runner.replay import (
    MAX_REPORTED_MISMATCHES,
    UnknownCheckpointError,
    check_report,
    compare_traces,
    join_path,
    replay_outcome,
    replay_run,
    split_path,
    within_tolerance,
)

EXECUTE = importlib.import_module("umlos.runner.execute")  # the package re-exports the function
STEP_OPERATOR = "UML_OS.Optimizer.Update_v1"


# --- runs to replay ---------------------------------------------------------------------------


def _shortened(directory: Path, *, sampling_off: bool) -> Path:
    """The iris quickstart: 20 train steps, checkpoints at 7, 14, 21 (the evaluation step)."""
    path = write_quickstart("classification", directory)
    text = path.read_text().replace("limits: {max_epochs: 60}", "limits: {max_steps: 20}")
    text += "checkpoint_frequency: 7\n"
    if sampling_off:  # keep every ITER, so that a divergence shows at its own step
        text += 'trace: {sample_policy: "OFF"}\n'
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMLOS_HOME", str(tmp_path_factory.getbasetemp() / "umlos-home"))
        # Separate roots: the run id derives from seed, tenant and environment, not from the
        # rest of the manifest, so the two would share one.
        sampled = execute(_shortened(root / "s", sampling_off=False), runs_root=root / "s-runs")
        full = execute(_shortened(root / "f", sampling_off=True), runs_root=root / "f-runs")
    yield {"sampled": Path(sampled.run_dir), "full": Path(full.run_dir)}


def _snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        if p.is_file()
        else None
        for p in sorted(root.rglob("*"))
    }


def _recorded_iter(run_dir: Path, t: int) -> TraceIter:
    for record in read_trace(run_dir / "trace" / "trace.cborlog").records:
        if isinstance(record, TraceIter) and record.t == t and record.operator_id == STEP_OPERATOR:
            return record
    raise AssertionError(f"no ITER at t={t}")


def _wrap_step(
    monkeypatch: pytest.MonkeyPatch,
    *,
    before: Callable[[Any], Any] | None = None,
    after: Callable[[Any], Any] | None = None,
) -> None:
    """Replace the runner's training step: ``before`` edits the state going in, ``after`` the
    metrics coming out."""
    original = EXECUTE.step

    def step(state: Any, batch: Any) -> tuple[Any, Any]:
        if before is not None:
            state = before(state)
        new, metrics = original(state, batch)
        return new, (after(metrics) if after is not None else metrics)

    monkeypatch.setattr(EXECUTE, "step", step)


def _perturb_parameter_at(k: int, delta: float) -> Callable[[Any], Any]:
    """Add ``delta`` to one output bias just before step ``k`` computes its loss (an output
    bias, because a first-layer weight may feed a ReLU unit that is dead at step k)."""

    def before(state: Any) -> Any:
        if state.t + 1 != k:
            return state
        name = "head.bias"
        weights = np.array(state.params[name], copy=True)
        weights.flat[0] += delta
        return dataclasses.replace(state, params={**state.params, name: weights})

    return before


def _scale_loss_at(k: int, factor: float) -> Callable[[Any], Any]:
    """Report step ``k``'s loss times ``factor`` (the state is left alone)."""

    def after(metrics: Any) -> Any:
        return (
            dataclasses.replace(metrics, loss=metrics.loss * factor) if metrics.t == k else metrics
        )

    return after


# --- E0 on an unchanged replay ----------------------------------------------------------------


def test_a_fresh_run_replays_bitwise(runs: dict[str, Path]) -> None:
    outcome = replay_outcome(runs["sampled"])
    report = outcome.report
    assert report.verdict == "E0" and report.replay_mode == "STRICT_E0"
    assert report.divergence_count == 0 and report.first_divergence is None
    assert report.mismatches == () and not report.mismatches_truncated
    # RUN_HEADER, three CHECKPOINT_COMMITs, CERTIFICATE_INPUTS, RUN_END, and whichever ITERs the
    # hash gate keeps (the gate hashes the replay token, which binds this machine's environment).
    recorded = read_trace(Path(runs["sampled"]) / "trace" / "trace.cborlog").records
    assert report.records_compared == len(recorded) >= 6
    assert report.recorded_trace_final_hash == report.replayed_trace_final_hash
    assert outcome.signer_rebound and outcome.certificate_payload_equal
    assert outcome.recorded_checkpoint_hash == outcome.replayed_checkpoint_hash
    # The throw-away key changes the certificate, and only through the trust store.
    assert report.recorded_certificate_hash != report.replayed_certificate_hash
    assert outcome.replayed_trace_final_hash_as_signed != report.recorded_trace_final_hash
    assert outcome.resumed_from_t is None


def test_the_report_validates_against_its_schema(runs: dict[str, Path]) -> None:
    report = replay_run(runs["full"], profile="E1")
    assert report.verdict == "E0" and report.determinism_profile_id == "TOLERANCE"
    assert ReplayReport.from_obj(report.to_obj()) == report
    assert ReplayReport.from_obj(report.to_obj(json=True), json=True) == report


@pytest.mark.parametrize("t", [7, 14, 21])
def test_replay_from_a_checkpoint_resumes_there_and_matches(runs: dict[str, Path], t: int) -> None:
    outcome = replay_outcome(runs["full"], from_checkpoint=t)
    assert outcome.report.verdict == "E0", outcome.lines()
    assert outcome.resumed_from_t == t
    assert outcome.report.records_compared == 27  # header, 21 ITERs, 3 commits, inputs, end
    assert outcome.certificate_payload_equal
    assert f"resumed at checkpoint t={t}" in outcome.lines()[-1]


def test_replay_from_a_checkpoint_does_not_re_execute_the_steps_before_it(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _wrap_step(monkeypatch, before=_perturb_parameter_at(3, 0.5))
    assert replay_run(runs["full"], from_checkpoint=7).verdict == "E0"
    assert replay_run(runs["full"]).verdict == "DIVERGED"


def test_replay_leaves_the_run_directory_and_the_key_store_byte_identical(
    runs: dict[str, Path], tmp_path: Path, umlos_home: Path
) -> None:
    run = runs["full"]
    before, keys_before = _snapshot(run), _snapshot(umlos_home)
    replay_run(run)
    replay_run(run, from_checkpoint=7, scratch=tmp_path / "kept")
    assert _snapshot(run) == before
    assert _snapshot(umlos_home) == keys_before
    assert (tmp_path / "kept" / "runs" / run.name / "COMMITTED").is_file()


# --- negative cases of the procedure ----------------------------------------------------------


def test_start_an_unknown_checkpoint_is_a_typed_error_listing_the_available_ones(
    runs: dict[str, Path],
) -> None:
    with pytest.raises(UnknownCheckpointError) as caught:
        replay_run(runs["full"], from_checkpoint=5)
    assert isinstance(caught.value, CheckpointInvalidError)
    assert caught.value.available == (7, 14, 21)
    assert "available: 7, 14, 21" in str(caught.value)


def test_run_an_uncommitted_run_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / runs["full"].name
    shutil.copytree(runs["full"], copy)
    (copy / "COMMITTED").unlink()
    with pytest.raises(ContractViolationError, match="not a committed run"):
        replay_run(copy)


def test_scratch_inside_the_run_directory_is_refused(runs: dict[str, Path]) -> None:
    before = _snapshot(runs["full"])
    with pytest.raises(ContractViolationError, match="outside the run directory"):
        replay_run(runs["full"], scratch=runs["full"] / "scratch")
    assert _snapshot(runs["full"]) == before


def test_relative_dataset_paths_resolve_beside_the_original_manifest_or_data_dir(
    tmp_path: Path,
) -> None:
    source = tmp_path / "lm"
    manifest = write_quickstart("lm", source)
    manifest.write_text(
        manifest.read_text().replace("limits: {max_epochs: 4}", "limits: {max_steps: 2}")
    )
    run = Path(execute(manifest, runs_root=tmp_path / "runs").run_dir)
    assert replay_run(run).verdict == "E0"
    source.rename(tmp_path / "moved")
    with pytest.raises(Error):
        replay_run(run)
    assert replay_run(run, data_dir=tmp_path / "moved").verdict == "E0"


# --- injected divergences ---------------------------------------------------------------------


def test_a_perturbed_parameter_diverges_at_its_step(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    k = 10
    _wrap_step(monkeypatch, before=_perturb_parameter_at(k, 1e-3))
    report = replay_run(runs["full"])
    assert report.verdict == "DIVERGED"
    first = report.first_divergence
    assert first is not None and first == report.mismatches[0]
    assert (first.t, first.record_kind, first.operator_id) == (k, "ITER", STEP_OPERATOR)
    assert first.field_path in ("grad_norm", "loss_total")
    assert first.reason_code == "E0_MISMATCH"
    recorded = _recorded_iter(runs["full"], k)
    assert decode(first.expected_cbor or b"") == getattr(recorded, first.field_path)
    assert decode(first.actual_cbor or b"") != getattr(recorded, first.field_path)
    assert first.abs_error is not None and first.abs_error > 0
    paths_at_k = {m.field_path for m in report.mismatches if m.t == k and m.record_kind == "ITER"}
    assert paths_at_k == {"grad_norm", "loss_total"}
    assert all(m.record_index >= first.record_index for m in report.mismatches)
    assert report.recorded_trace_final_hash != report.replayed_trace_final_hash
    with pytest.raises(ReplayDivergenceError) as caught:
        check_report(report)
    assert caught.value.context["t"] == k


def test_a_tiny_float_difference_is_e1_within_its_band_and_diverged_under_e0(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    k = 10
    _wrap_step(monkeypatch, after=_scale_loss_at(k, 1 + 1e-12))
    generous = {"loss_total": {"abs_tol": 0.0, "rel_tol": 1e-9}}

    e1 = replay_run(runs["full"], profile="E1", tolerances=generous)
    assert e1.verdict == "E1", e1.mismatches[:3]
    assert e1.replay_mode == "TOLERANT_E1" and e1.divergence_count == 0
    assert e1.e1_within_band_count == 1 and e1.first_divergence is None
    assert 5e-13 < e1.max_rel_error < 2e-12
    # The chain and the checkpoints after step k commit to the changed loss.
    assert e1.non_comparable_count > 0
    check_report(e1)

    assert replay_run(runs["full"], profile="E1").verdict == "E1"  # default band: EPS_EQ

    e0 = replay_run(runs["full"])
    assert e0.verdict == "DIVERGED"
    assert e0.first_divergence is not None
    assert (e0.first_divergence.t, e0.first_divergence.field_path) == (k, "loss_total")
    assert e0.first_divergence.reason_code == "E0_MISMATCH"

    tight = replay_run(
        runs["full"], profile="E1", tolerances={"loss_total": {"abs_tol": 0, "rel_tol": 1e-15}}
    )
    assert tight.verdict == "DIVERGED" and tight.e1_out_of_band_count == 1
    assert tight.first_divergence is not None
    assert tight.first_divergence.reason_code == "E1_OUT_OF_BAND"


# --- the comparator on synthetic traces ---------------------------------------------------------


def _header() -> TraceRunHeader:
    return TraceRunHeader(
        replay_token=bytes(32),
        run_id="0123456789abcdef",
        tenant_id="t",
        task_type="multiclass",
        world_size=1,
        backend_binary_hash=bytes(32),
        driver_runtime_fingerprint_hash=bytes(32),
        policy_bundle_hash=bytes(32),
        monitor_policy_hash=bytes(32),
        operator_contracts_root_hash=bytes(32),
        redaction_mode="NONE",
        hash_gate_m=1,
        hash_gate_k=1,
        sample_policy="OFF",
        trace_policy_hash=bytes(32),
    )


def _iter(t: int, loss: float = 1.0, **extensions: bool | int | float | str | bytes) -> TraceIter:
    return TraceIter(
        t=t,
        stage_id="fit",
        operator_id=STEP_OPERATOR,
        operator_seq=0,
        rank=0,
        status="ok",
        replay_token=bytes(32),
        loss_total=loss,
        grad_norm=0.5,
        trace_extensions=dict(extensions) or None,
    )


def _pair(a: TraceRecord, b: TraceRecord, **kwargs: Any) -> ReplayReport:
    return compare_traces([_header(), a], [_header(), b], **kwargs)


INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    ("a", "b", "abs_tol", "rel_tol", "nan_policy", "match"),
    [
        (INF, INF, 0.0, 0.0, "FORBID", True),
        (-INF, -INF, 0.0, 0.0, "FORBID", True),
        (INF, -INF, 1e300, 1.0, "FORBID", False),
        (INF, 1e308, 1e300, 1.0, "FORBID", False),
        (NAN, NAN, 1.0, 1.0, "FORBID", False),
        (NAN, NAN, 0.0, 0.0, "EQUAL_IF_BOTH_NAN", True),
        (NAN, 1.0, 1.0, 1.0, "EQUAL_IF_BOTH_NAN", False),
        (0.0, -0.0, 0.0, 0.0, "FORBID", True),
        (1.0, 1.0 + 1e-10, 2e-10, 0.0, "FORBID", True),
        (1.0, 1.0 + 1e-9, 2e-10, 0.0, "FORBID", False),
        (100.0, 100.0 + 1e-7, 0.0, 2e-9, "FORBID", True),
        (100.0, 100.0 + 1e-6, 0.0, 2e-9, "FORBID", False),
        (1e308, -1e308, 0.0, 2.0, "FORBID", True),  # the band overflows to inf: any difference
    ],
)
def test_float_rules(
    a: float, b: float, abs_tol: float, rel_tol: float, nan_policy: Any, match: bool
) -> None:
    rule = ToleranceRule(abs_tol=abs_tol, rel_tol=rel_tol, nan_policy=nan_policy)
    assert within_tolerance(a, b, rule) is match
    assert within_tolerance(b, a, rule) is match


def test_signed_zero_differs_under_e0_and_matches_under_a_band() -> None:
    e0 = _pair(_iter(1, 0.0), _iter(1, -0.0))
    assert e0.verdict == "DIVERGED" and e0.mismatches[0].field_path == "loss_total"
    assert e0.mismatches[0].abs_error == 0.0
    e1 = _pair(_iter(1, 0.0), _iter(1, -0.0), profile="E1")
    assert e1.verdict == "E1" and e1.e1_within_band_count == 1


def test_nan_under_forbid_is_a_mismatch_even_on_both_sides() -> None:
    report = _pair(_iter(1, NAN), _iter(1, NAN), profile="E1")
    assert report.verdict == "DIVERGED"
    assert report.mismatches[0].reason_code == "NAN_FORBIDDEN"
    allowed = {"loss_total": {"abs_tol": 0.0, "rel_tol": 0.0, "nan_policy": "EQUAL_IF_BOTH_NAN"}}
    assert _pair(_iter(1, NAN), _iter(1, NAN), profile="E1", tolerances=allowed).verdict == "E0"
    assert _pair(_iter(1, NAN), _iter(1, NAN)).verdict == "E0"  # E0 compares bytes


def test_a_path_without_a_band_is_compared_exactly() -> None:
    report = _pair(
        _iter(1, 1.0, eval_loss=0.25),
        _iter(1, 1.0, eval_loss=0.25 + 1e-15),
        profile="E1",
        tolerances={"loss_total": {"abs_tol": 1.0, "rel_tol": 0.0}},
    )
    assert report.verdict == "DIVERGED"
    assert report.first_divergence is not None
    assert report.first_divergence.field_path == "trace_extensions.eval_loss"
    assert report.first_divergence.reason_code == "E0_MISMATCH"


def test_type_and_missing_field_mismatches_name_the_path() -> None:
    typed = _pair(_iter(1, epoch=1), _iter(1, epoch=1.0), profile="E1")
    assert [(m.field_path, m.reason_code) for m in typed.mismatches] == [
        ("trace_extensions.epoch", "TYPE_MISMATCH")
    ]
    missing = _pair(_iter(1, epoch=1, extra=2), _iter(1, epoch=1))
    only = missing.mismatches[0]
    assert (only.field_path, only.reason_code) == ("trace_extensions.extra", "MISSING_FIELD")
    assert decode(only.expected_cbor or b"") == 2 and only.actual_cbor is None


def test_a_shorter_replay_is_a_divergence_per_missing_record() -> None:
    report = compare_traces([_header(), _iter(1), _iter(2)], [_header()])
    assert report.verdict == "DIVERGED" and report.divergence_count == 2
    assert [(m.record_index, m.reason_code) for m in report.mismatches] == [
        (1, "RECORD_MISSING"),
        (2, "RECORD_MISSING"),
    ]
    assert report.mismatches[0].actual_cbor is None


def test_mismatches_are_capped_but_counted() -> None:
    n = MAX_REPORTED_MISMATCHES + 5
    recorded = [_header(), *(_iter(t, 1.0) for t in range(1, n + 1))]
    replayed = [_header(), *(_iter(t, 2.0) for t in range(1, n + 1))]
    report = compare_traces(recorded, replayed)
    assert report.divergence_count == report.e0_mismatch_count == n
    assert len(report.mismatches) == MAX_REPORTED_MISMATCHES and report.mismatches_truncated
    assert ReplayReport.from_obj(report.to_obj()) == report


def test_tolerance_arguments_are_validated() -> None:
    with pytest.raises(ApiShapeMismatchError, match="only to the E1 profile"):
        compare_traces([], [], tolerances={"loss_total": {"abs_tol": 1.0, "rel_tol": 0.0}})
    with pytest.raises(ApiShapeMismatchError):
        compare_traces([], [], profile="E1", tolerances={"x": {"abs_tol": -1.0, "rel_tol": 0.0}})
    with pytest.raises(ContractViolationError, match="invalid escape"):
        compare_traces([], [], profile="E1", tolerances={"a\\b": {"abs_tol": 0.0, "rel_tol": 0.0}})


@given(st.lists(st.text(alphabet="ab.\\", max_size=4), min_size=1, max_size=4))
def test_paths_round_trip(segments: list[str]) -> None:
    if segments == [""]:
        segments = ["a"]  # the root path "" has no segments
    assert split_path(join_path(segments)) == tuple(segments)


@pytest.mark.parametrize("bad", ["a\\b", "trailing\\", "\\x.y"])
def test_bad_path_escapes_are_contract_violations(bad: str) -> None:
    with pytest.raises(ContractViolationError):
        split_path(bad)


def test_module_examples_run() -> None:
    module = importlib.import_module("umlos.runner.replay")
    assert doctest.testmod(module).failed == 0
