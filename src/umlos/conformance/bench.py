"""Benchmark tiers: ``umlos bench`` (ADR 0016, spec productization §3).

A tier is a fixed set of workloads, each a manifest built here on built-in data. Every workload
runs three ways in one process, interleaved, ``repeat`` times after ``warmup`` discarded rounds:

* ``plain`` — the same model shape, rows and number of steps as a hand-written PyTorch loop
  (:mod:`umlos.conformance._baselines`);
* ``no_evidence`` — ``train(prepare(manifest))``: the UML_OS kernel, no evidence;
* ``evidence`` — ``execute(manifest)`` into a scratch directory: WAL, trace, journal, checkpoint,
  certificate signed with a throw-away key (the user's key store is never read), ``COMMITTED``.

Each timing covers manifest (or script) to result: data loading, set-up and training. The
analysis is a pure function of the frozen integer-nanosecond samples: nearest-rank medians,
ratios of medians and a regression verdict against a stored baseline. The evidence object is
committed as ``commit_hash(BENCHMARK_EVIDENCE, evidence)``; a tier baseline as
``commit_hash(PERF_BASELINE, baseline)``. No timestamp, host name or path enters either: the
samples are durations.

The verdict (ADR 0016): a workload is REGRESSED when its ``evidence_over_plain`` ratio exceeds
the baseline's by more than ``tolerance_pct`` percent (default 25: shared machines vary by
±20 % between runs; a ratio measured side by side carries over between machines, an absolute
time does not).

>>> from umlos.conformance.bench import workload_verdict
>>> workload_verdict(1.30, 1.10, tolerance_pct=25), workload_verdict(1.40, 1.10, tolerance_pct=25)
('PASS', 'REGRESSED')
>>> workload_verdict(1.40, None, tolerance_pct=25)
'NO_BASELINE'
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

import umlos
from umlos._generated.records import ManifestBackend, RegisterDatasetRequest, RowRange
from umlos._generated.tags import BENCHMARK_EVIDENCE, PERF_BASELINE
from umlos.codec import commit_hash, encode
from umlos.conformance._baselines import (
    CNN_CHANNELS,
    CNN_HIDDEN,
    DIGITS_CLASSES,
    DIGITS_FEATURES,
    LM_D_MODEL,
    LM_FFN,
    LM_HEADS,
    LM_LAYERS,
    LM_SEQ,
    LM_VOCAB,
    MLP_HIDDEN,
    DataKind,
    ModelKind,
    PlainJob,
    run_plain,
)
from umlos.errors import ContractViolationError

__all__ = [
    "CONTENDERS",
    "DEFAULT_REPEAT",
    "DEFAULT_TOLERANCE_PCT",
    "DEFAULT_WARMUP",
    "TIERS",
    "WORKLOADS",
    "BaselineWorkload",
    "BenchmarkEvidence",
    "Measurement",
    "SamplePolicy",
    "Thresholds",
    "TierBaseline",
    "Workload",
    "WorkloadResult",
    "build_evidence",
    "format_report",
    "load_baselines",
    "materialize",
    "measure",
    "nearest_rank_median",
    "overall_verdict",
    "run_bench",
    "save_baselines",
    "select_workloads",
    "tier_available",
    "tier_baseline",
    "workload_verdict",
    "write_evidence",
]

Tier = Literal["cpu_tier", "single_gpu_tier"]
Contender = Literal["plain", "no_evidence", "evidence"]
Verdict = Literal["PASS", "REGRESSED", "NO_BASELINE"]
TierStatus = Literal["MEASURED", "NOT_AVAILABLE"]
BaselineMatch = Literal["COMPARED", "NO_BASELINE", "NOT_IN_BASELINE", "MANIFEST_CHANGED"]
Clock = Callable[[], int]
Progress = Callable[[str], None]

TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
CONTENDERS: Final[tuple[Contender, ...]] = get_args(Contender)
RATIOS: Final = ("evidence_over_no_evidence", "evidence_over_plain", "no_evidence_over_plain")
GATED_METRIC: Final = "evidence_over_plain"
FORMAT_VERSION: Final = 1
DEFAULT_REPEAT: Final = 3
DEFAULT_WARMUP: Final = 1  # the first run in a process pays torch's and sklearn's lazy set-up
DEFAULT_TOLERANCE_PCT: Final = 25  # ADR 0016: above the ±20 % run-to-run noise of shared VMs
THREADS: Final = 1  # every tier runs the manifests' default thread count
BASELINE_KIND: Final = "umlos.perf_baseline"
CORPUS_BYTES: Final = 24_000  # 749 windows of 32 bytes: 46 batches of 16 per epoch


@dataclass(frozen=True, slots=True)
class Workload:
    """One fixed benchmark workload; its id names model, data and tier and never changes meaning.

    Changing anything here changes the workload's manifest hash, which makes old baselines
    incomparable (``MANIFEST_CHANGED``) rather than silently wrong.
    """

    workload_id: str
    tier: Tier
    model: ModelKind
    data: DataKind
    device: Literal["cpu", "cuda"]
    steps: int
    batch: int
    seed: int
    lr: float
    weight_decay: float


def _tier_workloads(tier: Tier, prefix: str, device: Literal["cpu", "cuda"]) -> list[Workload]:
    # Sized so that each run takes about a second on a 2-vCPU machine: long enough that process
    # noise is a few per cent, short enough that `--repeat 3` of the tier takes under a minute.
    # Hyper-parameters are those of examples/digits_cnn, examples/digits_mlp, examples/tiny_lm.
    return [
        Workload(
            f"{prefix}.cnn.digits", tier, "cnn", data="digits", device=device,
            steps=200, batch=64, seed=7, lr=1e-3, weight_decay=1e-4,
        ),
        Workload(
            f"{prefix}.mlp.digits", tier, "mlp", data="digits", device=device,
            steps=600, batch=64, seed=7, lr=1e-3, weight_decay=1e-4,
        ),
        Workload(
            f"{prefix}.transformer.text", tier, "transformer", data="text", device=device,
            steps=100, batch=16, seed=11, lr=3e-3, weight_decay=1e-2,
        ),
    ]  # fmt: skip


WORKLOADS: Final[tuple[Workload, ...]] = tuple(
    sorted(
        _tier_workloads("cpu_tier", "cpu", "cpu")
        + _tier_workloads("single_gpu_tier", "gpu", "cuda"),
        key=lambda w: (TIERS.index(w.tier), w.workload_id),
    )
)
"""Every workload of every tier, by tier then ascending id (the order they run in)."""


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The regression rule: the gated ratio, its tolerance in percent, the quantile method."""

    tolerance_pct: int = DEFAULT_TOLERANCE_PCT
    metric: str = GATED_METRIC
    quantile: str = "nearest_rank_p50"

    def to_obj(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "quantile": self.quantile,
            "tolerance_pct": self.tolerance_pct,
        }


@dataclass(frozen=True, slots=True)
class SamplePolicy:
    """How samples were taken: timed repetitions, discarded warm-up rounds, contender order."""

    repeat: int
    warmup: int
    order: str = "rotate"  # repetition i runs the contenders rotated left by i

    def to_obj(self) -> dict[str, Any]:
        return {"order": self.order, "repeat": self.repeat, "warmup_discard": self.warmup}


@dataclass(frozen=True, slots=True)
class Measurement:
    """The frozen raw samples of one workload: integer nanoseconds per contender, in run order."""

    workload_id: str
    manifest_hash: bytes
    steps: int
    samples_ns: Mapping[Contender, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class BaselineWorkload:
    """One workload's entry in a tier baseline."""

    workload_id: str
    manifest_hash: bytes
    steps: int
    medians_ns: Mapping[str, int]
    ratios: Mapping[str, float]

    def to_obj(self) -> dict[str, Any]:
        return {
            "manifest_hash": self.manifest_hash,
            "medians_ns": dict(self.medians_ns),
            "ratios": dict(self.ratios),
            "steps": self.steps,
            "workload_id": self.workload_id,
        }


@dataclass(frozen=True, slots=True)
class TierBaseline:
    """A stored performance baseline of one tier (hash: ``commit_hash(PERF_BASELINE, ...)``)."""

    platform_tier: str
    env_manifest_hash: bytes
    workloads: tuple[BaselineWorkload, ...]
    format_version: int = FORMAT_VERSION

    def to_obj(self) -> dict[str, Any]:
        return {
            "env_manifest_hash": self.env_manifest_hash,
            "format_version": self.format_version,
            "platform_tier": self.platform_tier,
            "workloads": [w.to_obj() for w in self.workloads],
        }

    @property
    def baseline_hash(self) -> bytes:
        return commit_hash(PERF_BASELINE, self.to_obj())

    def get(self, workload_id: str) -> BaselineWorkload | None:
        return next((w for w in self.workloads if w.workload_id == workload_id), None)


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """One workload's samples, medians, ratios and verdict against the baseline."""

    workload_id: str
    manifest_hash: bytes
    steps: int
    samples_ns: Mapping[Contender, tuple[int, ...]]
    medians_ns: Mapping[Contender, int]
    ratios: Mapping[str, float]
    baseline_ratio: float | None
    baseline_match: BaselineMatch
    verdict: Verdict

    def to_obj(self) -> dict[str, Any]:
        return {
            "baseline_match": self.baseline_match,
            "baseline_ratio": self.baseline_ratio,
            "manifest_hash": self.manifest_hash,
            "medians_ns": dict(self.medians_ns),
            "ratios": dict(self.ratios),
            "samples_ns": {k: list(v) for k, v in self.samples_ns.items()},
            "steps": self.steps,
            "verdict": self.verdict,
            "workload_id": self.workload_id,
        }


@dataclass(frozen=True, slots=True)
class BenchmarkEvidence:
    """The evidence of one tier (hash: ``commit_hash(BENCHMARK_EVIDENCE, to_obj())``)."""

    platform_tier: str
    tier_status: TierStatus
    unavailable_reason: str
    umlos_version: str
    env_manifest_hash: bytes | None
    workload_ids: tuple[str, ...]
    workloads: tuple[WorkloadResult, ...]
    sample_policy: SamplePolicy
    thresholds: Thresholds
    baseline_hash: bytes | None
    baseline_env_match: bool | None
    regression_verdict: Verdict
    format_version: int = field(default=FORMAT_VERSION)

    def to_obj(self) -> dict[str, Any]:
        """The committed object: hashes as bytes, times as integer nanoseconds."""
        return {
            "baseline_env_match": self.baseline_env_match,
            "baseline_hash": self.baseline_hash,
            "env_manifest_hash": self.env_manifest_hash,
            "format_version": self.format_version,
            "platform_tier": self.platform_tier,
            "regression_verdict": self.regression_verdict,
            "sample_policy": self.sample_policy.to_obj(),
            "thresholds": self.thresholds.to_obj(),
            "tier_status": self.tier_status,
            "umlos_version": self.umlos_version,
            "unavailable_reason": self.unavailable_reason,
            "workload_ids": list(self.workload_ids),
            "workloads": [w.to_obj() for w in self.workloads],
        }

    @property
    def benchmark_evidence_hash(self) -> bytes:
        return commit_hash(BENCHMARK_EVIDENCE, self.to_obj())

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the committed object with hashes in hex, plus its hash."""
        return {
            "benchmark_evidence": _hex(self.to_obj()),
            "benchmark_evidence_hash": self.benchmark_evidence_hash.hex(),
        }


def _hex(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, dict):
        return {k: _hex(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex(v) for v in obj]
    return obj


# --- analysis: pure functions of the frozen samples --------------------------------------------


def nearest_rank_median(samples: Sequence[int]) -> int:
    """p50 by nearest rank: the ``ceil(n / 2)``-th smallest sample (spec: ``k = ceil(p·n)``).

    >>> nearest_rank_median([30, 10, 20]), nearest_rank_median([40, 10, 30, 20])
    (20, 20)
    """
    if not samples:
        raise ContractViolationError("no samples to take a median of", reason="NUMERIC_EMPTY")
    ordered = sorted(samples)
    return ordered[math.ceil(len(ordered) / 2) - 1]


def _ratio(num: int, den: int, name: str) -> float:
    if den <= 0 or num <= 0:
        raise ContractViolationError(
            f"median times must be positive to form {name}, got {num} / {den} ns",
            reason="NUMERIC_OUT_OF_RANGE",
            path=f"$.ratios.{name}",
        )
    return num / den


def workload_verdict(
    candidate_ratio: float, baseline_ratio: float | None, *, tolerance_pct: int
) -> Verdict:
    """REGRESSED when ``candidate > baseline · (1 + tolerance_pct / 100)``; the boundary passes."""
    if baseline_ratio is None:
        return "NO_BASELINE"
    limit = baseline_ratio * (100 + tolerance_pct) / 100
    return "REGRESSED" if candidate_ratio > limit else "PASS"


def _tier_verdict(results: Sequence[WorkloadResult]) -> Verdict:
    """REGRESSED if any workload is; NO_BASELINE if any was not compared (or none ran)."""
    verdicts = {r.verdict for r in results}
    if "REGRESSED" in verdicts:
        return "REGRESSED"
    if not results or "NO_BASELINE" in verdicts:
        return "NO_BASELINE"
    return "PASS"


def overall_verdict(evidence: Sequence[BenchmarkEvidence]) -> Verdict:
    """Across tiers: REGRESSED if any tier is; PASS if every measured tier passed.

    A tier that is not available on this machine neither passes nor fails the run.
    """
    measured = [e for e in evidence if e.tier_status == "MEASURED"]
    verdicts = {e.regression_verdict for e in measured}
    if "REGRESSED" in verdicts:
        return "REGRESSED"
    if not measured or "NO_BASELINE" in verdicts:
        return "NO_BASELINE"
    return "PASS"


def _compare(
    m: Measurement, ratios: Mapping[str, float], baseline: TierBaseline | None, rule: Thresholds
) -> tuple[float | None, BaselineMatch, Verdict]:
    if baseline is None:
        return None, "NO_BASELINE", "NO_BASELINE"
    entry = baseline.get(m.workload_id)
    if entry is None:
        return None, "NOT_IN_BASELINE", "NO_BASELINE"
    if entry.manifest_hash != m.manifest_hash or entry.steps != m.steps:
        return None, "MANIFEST_CHANGED", "NO_BASELINE"
    base = entry.ratios[rule.metric]
    verdict = workload_verdict(ratios[rule.metric], base, tolerance_pct=rule.tolerance_pct)
    return base, "COMPARED", verdict


def _check_inputs(
    tier: str,
    measurements: Sequence[Measurement],
    policy: SamplePolicy,
    thresholds: Thresholds,
    baseline: TierBaseline | None,
) -> None:
    if thresholds.metric not in RATIOS or thresholds.tolerance_pct < 0:
        raise ContractViolationError(
            f"cannot gate on {thresholds.metric!r} with tolerance {thresholds.tolerance_pct} %; "
            f"the metric is one of {', '.join(RATIOS)} and the tolerance >= 0",
            path="$.thresholds",
        )
    if baseline is not None and baseline.platform_tier != tier:
        raise ContractViolationError(
            f"a {baseline.platform_tier} baseline cannot judge {tier}", path="$.baseline_hash"
        )
    seen: set[str] = set()
    for i, m in enumerate(measurements):
        if m.workload_id in seen:
            raise ContractViolationError(
                f"workload {m.workload_id} measured twice", path=f"$.workloads[{i}]"
            )
        seen.add(m.workload_id)
        for c in CONTENDERS:
            if len(m.samples_ns.get(c, ())) != policy.repeat:
                raise ContractViolationError(
                    f"{m.workload_id} has {len(m.samples_ns.get(c, ()))} {c} samples, "
                    f"the sample policy {policy.repeat}",
                    path=f"$.workloads[{i}].samples_ns.{c}",
                )


def build_evidence(
    tier: str,
    measurements: Sequence[Measurement],
    *,
    env_manifest_hash: bytes,
    sample_policy: SamplePolicy,
    thresholds: Thresholds = Thresholds(),
    baseline: TierBaseline | None = None,
) -> BenchmarkEvidence:
    """Aggregate frozen samples into the tier's evidence (pure: same inputs, same hash)."""
    _check_inputs(tier, measurements, sample_policy, thresholds, baseline)
    results: list[WorkloadResult] = []
    for m in sorted(measurements, key=lambda m: m.workload_id):
        med: dict[Contender, int] = {c: nearest_rank_median(m.samples_ns[c]) for c in CONTENDERS}
        ratios = {
            "evidence_over_no_evidence": _ratio(
                med["evidence"], med["no_evidence"], "evidence_over_no_evidence"
            ),
            "evidence_over_plain": _ratio(med["evidence"], med["plain"], "evidence_over_plain"),
            "no_evidence_over_plain": _ratio(
                med["no_evidence"], med["plain"], "no_evidence_over_plain"
            ),
        }
        base, match, verdict = _compare(m, ratios, baseline, thresholds)
        results.append(
            WorkloadResult(
                workload_id=m.workload_id,
                manifest_hash=m.manifest_hash,
                steps=m.steps,
                samples_ns={c: tuple(m.samples_ns[c]) for c in CONTENDERS},
                medians_ns=med,
                ratios=ratios,
                baseline_ratio=base,
                baseline_match=match,
                verdict=verdict,
            )
        )
    return BenchmarkEvidence(
        platform_tier=tier,
        tier_status="MEASURED",
        unavailable_reason="",
        umlos_version=umlos.__version__,
        env_manifest_hash=env_manifest_hash,
        workload_ids=tuple(r.workload_id for r in results),
        workloads=tuple(results),
        sample_policy=sample_policy,
        thresholds=thresholds,
        baseline_hash=baseline.baseline_hash if baseline is not None else None,
        baseline_env_match=(
            baseline.env_manifest_hash == env_manifest_hash if baseline is not None else None
        ),
        regression_verdict=_tier_verdict(results),
    )


def _unavailable(
    tier: str, reason: str, sample_policy: SamplePolicy, thresholds: Thresholds
) -> BenchmarkEvidence:
    return BenchmarkEvidence(
        platform_tier=tier,
        tier_status="NOT_AVAILABLE",
        unavailable_reason=reason,
        umlos_version=umlos.__version__,
        env_manifest_hash=None,
        workload_ids=(),
        workloads=(),
        sample_policy=sample_policy,
        thresholds=thresholds,
        baseline_hash=None,
        baseline_env_match=None,
        regression_verdict="NO_BASELINE",
    )


# --- workloads as manifests ---------------------------------------------------------------------

_WORDS: Final = [
    "the",
    "run",
    "trace",
    "hash",
    "step",
    "model",
    "data",
    "signed",
    "replay",
    "verify",
    "checkpoint",
    "journal",
    "batch",
    "seed",
    "loss",
    "evidence",
    "manifest",
    "commit",
    "certificate",
    "window",
    "token",
    "gradient",
    "optimizer",
    "stage",
    "epoch",
]


def bench_corpus(n_bytes: int = CORPUS_BYTES) -> bytes:
    """A deterministic ASCII word stream (64-bit LCG over a fixed word list), ``n_bytes`` long.

    >>> bench_corpus(40)
    b'epoch manifest model step stage batch st'
    """
    state, words, size = 0x5EED, [], 0
    while size < n_bytes:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        word = _WORDS[(state >> 33) % len(_WORDS)]
        words.append(word)
        size += len(word) + 1
    return " ".join(words).encode("ascii")[:n_bytes]


def _dataset_entry(w: Workload, base_dir: Path) -> dict[str, Any]:
    from umlos.data import register_dataset

    if w.data == "digits":
        entry: dict[str, Any] = {
            "id": "digits",
            "version": "sklearn",
            "format": "builtin",
            "builtin": "digits",
            "rows": {"start": 0, "stop": 1797, "modulus": 5, "remainders": [1, 2, 3, 4]},
        }
        request = RegisterDatasetRequest(
            dataset_key="train",
            id="digits",
            version="sklearn",
            format="builtin",
            builtin="digits",
            rows=RowRange(start=0, stop=1797, modulus=5, remainders=(1, 2, 3, 4)),
            feature_key="x",
            label_key="y",
        )
    else:
        entry = {
            "id": "umlos-bench-corpus",
            "version": "1",
            "format": "text",
            "path": "corpus.txt",
            "window": LM_SEQ,
        }
        request = RegisterDatasetRequest(
            dataset_key="train",
            id="umlos-bench-corpus",
            version="1",
            format="text",
            path="corpus.txt",
            window=LM_SEQ,
            feature_key="x",
            label_key="y",
        )
    record = register_dataset(request, base_dir=base_dir)
    return {**entry, "hash": record.content_hash.hex(), "cardinality": record.cardinality}


def _model_entry(w: Workload) -> dict[str, Any]:
    if w.model == "mlp":
        params: dict[str, Any] = {
            "in_features": DIGITS_FEATURES,
            "hidden_sizes": [MLP_HIDDEN],
            "out_features": DIGITS_CLASSES,
        }
        return {"preset": "mlp", "preset_params": params}
    if w.model == "cnn":
        params = {
            "in_channels": 1,
            "height": 8,
            "width": 8,
            "conv_channels": list(CNN_CHANNELS),
            "hidden_size": CNN_HIDDEN,
            "out_features": DIGITS_CLASSES,
        }
        return {"preset": "basic_cnn", "preset_params": params}
    params = {
        "vocab_size": LM_VOCAB,
        "seq_len": LM_SEQ,
        "d_model": LM_D_MODEL,
        "heads": LM_HEADS,
        "layers": LM_LAYERS,
        "ffn_dim": LM_FFN,
        "causal": True,
        "out_features": LM_VOCAB,
    }
    return {"preset": "tiny_transformer", "preset_params": params}


def materialize(w: Workload, directory: Path) -> Path:
    """Write the workload's manifest (JSON, a subset of YAML) and data into ``directory``.

    The bytes do not depend on ``directory``: dataset paths are relative to the manifest.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if w.data == "text":
        (directory / "corpus.txt").write_bytes(bench_corpus())
    manifest = {
        "spec_version": "UML_OS.Config.Manifest_v1",
        "tenant_id": "bench",
        "seed": w.seed,
        "global_batch_size": w.batch,
        "task_type": "multiclass",
        "datasets": {"train": _dataset_entry(w, directory)},
        "pipeline_stages": [
            {
                "step_id": "fit",
                "type": "train",
                "dataset_key": "train",
                "limits": {"max_steps": w.steps},
            }
        ],
        "model": _model_entry(w),
        "optimizer": {"type": "adamw", "lr": w.lr, "weight_decay": w.weight_decay},
        "backend": {
            "name": "torch",
            "device": w.device,
            "dtype": "float32",
            "num_threads": THREADS,
        },
    }
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _plain_job(w: Workload, manifest_path: Path) -> PlainJob:
    return PlainJob(
        model=w.model,
        data=w.data,
        steps=w.steps,
        batch=w.batch,
        lr=w.lr,
        weight_decay=w.weight_decay,
        seed=w.seed,
        device=w.device,
        threads=THREADS,
        text_path=manifest_path.parent / "corpus.txt" if w.data == "text" else None,
    )


# --- measurement ----------------------------------------------------------------------------------


def tier_available(tier: str) -> tuple[bool, str]:
    """Whether ``tier`` can run here, and if not, why (a sentence for the report)."""
    if tier == "cpu_tier":
        return True, ""
    if tier == "single_gpu_tier":
        import torch

        if torch.cuda.is_available():
            return True, ""
        return False, "not available on this machine: torch.cuda.is_available() is False"
    return False, f"tier {tier} is not defined in this release"


def select_workloads(
    tiers: Sequence[str] = (), workload_ids: Sequence[str] = ()
) -> dict[str, tuple[Workload, ...]]:
    """The workloads to run per tier, tiers in release order.

    No tiers and no ids: every tier. Ids without tiers: the tiers those ids belong to.
    """
    known = {w.workload_id: w for w in WORKLOADS}
    for i, wid in enumerate(workload_ids):
        if wid not in known:
            raise ContractViolationError(
                f"unknown workload {wid!r}; known: {', '.join(known)}", path=f"$.workload[{i}]"
            )
    for i, tier in enumerate(tiers):
        if tier not in TIERS:
            raise ContractViolationError(
                f"unknown tier {tier!r}; known: {', '.join(TIERS)}", path=f"$.tier[{i}]"
            )
    chosen = set(tiers) or (
        {known[wid].tier for wid in workload_ids} if workload_ids else set(TIERS)
    )
    for i, wid in enumerate(workload_ids):
        if known[wid].tier not in chosen:
            raise ContractViolationError(
                f"workload {wid} belongs to {known[wid].tier}, which was not selected",
                path=f"$.workload[{i}]",
            )
    wanted = set(workload_ids)
    for i, tier in enumerate(tiers):
        if wanted and not any(known[wid].tier == tier for wid in wanted):
            raise ContractViolationError(
                f"tier {tier} is selected but none of the given workloads belongs to it",
                path=f"$.tier[{i}]",
            )
    return {
        tier: tuple(
            w for w in WORKLOADS if w.tier == tier and (not wanted or w.workload_id in wanted)
        )
        for tier in TIERS
        if tier in chosen
    }


def _env_manifest_hash(device: Literal["cpu", "cuda"]) -> bytes:
    """The environment the workloads' runs record (live torch backend, the tier's device)."""
    from umlos.manifest import capture_run_environment
    from umlos.model.backends import get_backend

    cfg = ManifestBackend(name="torch", device=device, dtype="float32", num_threads=THREADS)
    engine = get_backend("torch", device=device, num_threads=THREADS)
    return capture_run_environment(cfg, fingerprint=engine.fingerprint()).env_manifest_hash


def measure(
    w: Workload,
    manifest_path: Path,
    scratch: Path,
    *,
    repeat: int = DEFAULT_REPEAT,
    warmup: int = DEFAULT_WARMUP,
    clock: Clock = time.perf_counter_ns,
    progress: Progress | None = None,
) -> Measurement:
    """Run the three contenders ``warmup + repeat`` times, rotating their order each round.

    Every evidence run gets a fresh runs directory (a committed run is never re-executed) and
    the same throw-away signing key. Each run is checked to have made ``w.steps`` steps.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from umlos.manifest import load_manifest
    from umlos.runner import execute
    from umlos.train import prepare, train

    if repeat < 1 or warmup < 0:
        raise ContractViolationError(
            f"repeat must be >= 1 and warmup >= 0, got {repeat} and {warmup}",
            reason="NUMERIC_OUT_OF_RANGE",
            path="$.repeat",
        )
    key = Ed25519PrivateKey.generate()
    job = _plain_job(w, manifest_path)
    manifest_hash = load_manifest(manifest_path).manifest_hash
    counter = [0]

    def plain() -> int:
        return run_plain(job).steps

    def no_evidence() -> int:
        return len(train(prepare(load_manifest(manifest_path))).steps)

    def evidence() -> int:
        counter[0] += 1
        summary = execute(manifest_path, runs_root=scratch / f"runs{counter[0]}", signing_key=key)
        if summary.status != "COMMITTED":
            raise ContractViolationError(
                f"the evidence run of {w.workload_id} ended {summary.status}, not COMMITTED",
                artifact=summary.run_dir,
            )
        return summary.steps

    jobs: dict[Contender, Callable[[], int]] = {
        "plain": plain,
        "no_evidence": no_evidence,
        "evidence": evidence,
    }
    samples: dict[Contender, list[int]] = {c: [] for c in CONTENDERS}
    for round_no in range(warmup + repeat):
        shift = round_no % len(CONTENDERS)
        for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
            start = clock()
            steps = jobs[name]()
            elapsed = clock() - start
            if steps != w.steps:
                raise ContractViolationError(
                    f"{name} run of {w.workload_id} made {steps} steps, the workload has {w.steps}",
                    path=f"$.workloads.{w.workload_id}.steps",
                )
            if round_no >= warmup:
                samples[name].append(elapsed)
        if progress is not None:
            label = "warm-up" if round_no < warmup else f"{round_no - warmup + 1}/{repeat}"
            progress(f"{w.workload_id}: round {label} done")
    return Measurement(
        workload_id=w.workload_id,
        manifest_hash=manifest_hash,
        steps=w.steps,
        samples_ns={c: tuple(samples[c]) for c in CONTENDERS},
    )


def run_bench(
    *,
    tiers: Sequence[str] = (),
    workload_ids: Sequence[str] = (),
    repeat: int = DEFAULT_REPEAT,
    warmup: int = DEFAULT_WARMUP,
    baselines: Mapping[str, TierBaseline] | None = None,
    thresholds: Thresholds = Thresholds(),
    clock: Clock = time.perf_counter_ns,
    progress: Progress | None = None,
) -> tuple[BenchmarkEvidence, ...]:
    """Measure the selected tiers; one evidence object per tier, unavailable tiers included.

    >>> from umlos.conformance.bench import run_bench
    >>> [e.tier_status for e in run_bench(workload_ids=["cpu.mlp.digits"])]  # doctest: +SKIP
    ['MEASURED']
    """
    policy = SamplePolicy(repeat=repeat, warmup=warmup)
    out: list[BenchmarkEvidence] = []
    for tier, chosen in select_workloads(tiers, workload_ids).items():
        ok, why = tier_available(tier)
        if not ok:
            if progress is not None:
                progress(f"{tier}: {why}")
            out.append(_unavailable(tier, why, policy, thresholds))
            continue
        device = chosen[0].device
        # Before any contender touches the device: the backend sets up CUDA determinism first.
        env_hash = _env_manifest_hash(device)
        measurements: list[Measurement] = []
        with tempfile.TemporaryDirectory(prefix="umlos-bench-") as tmp:
            for w in chosen:
                path = materialize(w, Path(tmp) / w.workload_id)
                measurements.append(
                    measure(
                        w,
                        path,
                        Path(tmp) / w.workload_id,
                        repeat=repeat,
                        warmup=warmup,
                        clock=clock,
                        progress=progress,
                    )
                )
        baseline = (baselines or {}).get(tier)
        out.append(
            build_evidence(
                tier,
                measurements,
                env_manifest_hash=env_hash,
                sample_policy=policy,
                thresholds=thresholds,
                baseline=baseline,
            )
        )
    return tuple(out)


# --- files ----------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_evidence(evidence: Sequence[BenchmarkEvidence], out_dir: Path) -> list[Path]:
    """Write ``<tier>.cbor`` (the canonical committed object) and ``<tier>.json`` per tier."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for e in evidence:
        cbor_path = out_dir / f"{e.platform_tier}.cbor"
        json_path = out_dir / f"{e.platform_tier}.json"
        _atomic_write(cbor_path, encode(e.to_obj()))
        text = json.dumps(e.to_json(), indent=2, sort_keys=True) + "\n"
        _atomic_write(json_path, text.encode("utf-8"))
        written += [cbor_path, json_path]
    return written


def tier_baseline(evidence: BenchmarkEvidence) -> TierBaseline:
    """The baseline a measured tier's evidence yields (medians and ratios, no raw samples)."""
    if evidence.tier_status != "MEASURED" or evidence.env_manifest_hash is None:
        raise ContractViolationError(
            f"{evidence.platform_tier} was not measured; it cannot become a baseline",
            path="$.tier_status",
        )
    return TierBaseline(
        platform_tier=evidence.platform_tier,
        env_manifest_hash=evidence.env_manifest_hash,
        workloads=tuple(
            BaselineWorkload(
                workload_id=r.workload_id,
                manifest_hash=r.manifest_hash,
                steps=r.steps,
                medians_ns={str(k): v for k, v in r.medians_ns.items()},
                ratios=dict(r.ratios),
            )
            for r in evidence.workloads
        ),
    )


def save_baselines(path: Path, evidence: Sequence[BenchmarkEvidence]) -> list[TierBaseline]:
    """Store the measured tiers of ``evidence`` as a baseline file (JSON, reviewable in a diff).

    Tiers that were not measured are left out. Returns the stored baselines.
    """
    baselines = [tier_baseline(e) for e in evidence if e.tier_status == "MEASURED"]
    doc = {
        "kind": BASELINE_KIND,
        "format_version": FORMAT_VERSION,
        "tiers": [
            {"baseline": _hex(b.to_obj()), "baseline_hash": b.baseline_hash.hex()}
            for b in baselines
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return baselines


# --- baseline file reader: closed failure list, every failure says where -------------------------


def _bad(path: Path, where: str, message: str) -> ContractViolationError:
    return ContractViolationError(message, reason="DATA_MALFORMED", artifact=str(path), path=where)


def _field(path: Path, obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise _bad(path, f"{where}.{key}", f"missing field {key!r}")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise _bad(path, f"{where}.{key}", f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _hash_field(path: Path, obj: Mapping[str, Any], key: str, where: str) -> bytes:
    text = _field(path, obj, key, str, where)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise _bad(path, f"{where}.{key}", "expected 64 hexadecimal digits (a SHA-256)")
    return value


def _number_map(
    path: Path, obj: Mapping[str, Any], key: str, *, names: Sequence[str], kind: type, where: str
) -> dict[str, Any]:
    sub = _field(path, obj, key, dict, where)
    out: dict[str, Any] = {}
    for name in names:
        value = _field(path, sub, name, kind, f"{where}.{key}")
        if kind is float:
            value = float(value)
            if not math.isfinite(value) or value <= 0:
                raise _bad(path, f"{where}.{key}.{name}", "expected a positive finite number")
        out[name] = value
    return out


def _parse_baseline(path: Path, obj: Mapping[str, Any], where: str) -> TierBaseline:
    version = _field(path, obj, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise _bad(path, f"{where}.format_version", f"unsupported format_version {version}")
    items = _field(path, obj, "workloads", list, where)
    workloads: list[BaselineWorkload] = []
    for i, item in enumerate(items):
        at = f"{where}.workloads[{i}]"
        if not isinstance(item, dict):
            raise _bad(path, at, f"expected an object, got {type(item).__name__}")
        workloads.append(
            BaselineWorkload(
                workload_id=_field(path, item, "workload_id", str, at),
                manifest_hash=_hash_field(path, item, "manifest_hash", at),
                steps=_field(path, item, "steps", int, at),
                medians_ns=_number_map(
                    path, item, "medians_ns", names=CONTENDERS, kind=int, where=at
                ),
                ratios=_number_map(path, item, "ratios", names=RATIOS, kind=float, where=at),
            )
        )
    return TierBaseline(
        platform_tier=_field(path, obj, "platform_tier", str, where),
        env_manifest_hash=_hash_field(path, obj, "env_manifest_hash", where),
        workloads=tuple(workloads),
        format_version=version,
    )


def load_baselines(path: Path) -> dict[str, TierBaseline]:
    """Read a baseline file written by :func:`save_baselines`; each tier's hash is re-checked.

    Failures (``CONTRACT_VIOLATION``, reason ``DATA_MALFORMED``, with the JSON path): not JSON,
    wrong kind or version, a missing or mistyped field, a tier listed twice, a stored
    ``baseline_hash`` that does not match the content.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, "$", f"cannot read the baseline file: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != BASELINE_KIND:
        raise _bad(path, "$.kind", f"not a baseline file (expected kind {BASELINE_KIND!r})")
    if _field(path, doc, "format_version", int, "$") != FORMAT_VERSION:
        raise _bad(path, "$.format_version", f"unsupported format_version {doc['format_version']}")
    out: dict[str, TierBaseline] = {}
    for i, entry in enumerate(_field(path, doc, "tiers", list, "$")):
        at = f"$.tiers[{i}]"
        if not isinstance(entry, dict):
            raise _bad(path, at, f"expected an object, got {type(entry).__name__}")
        baseline = _parse_baseline(
            path, _field(path, entry, "baseline", dict, at), f"{at}.baseline"
        )
        stored = _hash_field(path, entry, "baseline_hash", at)
        if stored != baseline.baseline_hash:
            raise _bad(
                path,
                f"{at}.baseline_hash",
                f"baseline_hash {stored.hex()} does not match the content "
                f"({baseline.baseline_hash.hex()}): the file was edited or damaged",
            )
        if baseline.platform_tier in out:
            raise _bad(path, f"{at}.baseline.platform_tier", "tier listed twice")
        out[baseline.platform_tier] = baseline
    return out


# --- report ---------------------------------------------------------------------------------------


def format_report(evidence: Sequence[BenchmarkEvidence]) -> str:
    """A plain-text table per tier: medians in seconds, ratios, verdicts."""
    lines: list[str] = []
    for e in evidence:
        if e.tier_status != "MEASURED":
            lines.append(f"{e.platform_tier}: {e.unavailable_reason}")
            continue
        assert e.env_manifest_hash is not None
        base = e.baseline_hash.hex()[:16] if e.baseline_hash is not None else "none"
        lines.append(
            f"{e.platform_tier}  env {e.env_manifest_hash.hex()[:16]}  baseline {base}  "
            f"(medians of {e.sample_policy.repeat}, tolerance {e.thresholds.tolerance_pct} %)"
        )
        lines.append(
            f"  {'workload':<22} {'plain':>8} {'no-ev':>8} {'evidence':>8} "
            f"{'ev/plain':>8} {'ev/no-ev':>8} {'baseline':>8}  verdict"
        )
        for r in e.workloads:
            m = r.medians_ns
            base_ratio = f"{r.baseline_ratio:.3f}" if r.baseline_ratio is not None else "-"
            lines.append(
                f"  {r.workload_id:<22} {m['plain'] / 1e9:7.3f}s {m['no_evidence'] / 1e9:7.3f}s "
                f"{m['evidence'] / 1e9:7.3f}s {r.ratios['evidence_over_plain']:8.3f} "
                f"{r.ratios['evidence_over_no_evidence']:8.3f} {base_ratio:>8}  {r.verdict}"
                + (
                    f" ({r.baseline_match})"
                    if r.baseline_match not in {"COMPARED", "NO_BASELINE"}
                    else ""
                )
            )
        lines.append(f"  {e.platform_tier} verdict {e.regression_verdict}")
        lines.append(f"  benchmark_evidence_hash {e.benchmark_evidence_hash.hex()}")
    return "\n".join(lines)
