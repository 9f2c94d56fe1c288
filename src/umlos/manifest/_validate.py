"""Cross-field checks of a normalized manifest: the rules a per-field schema cannot express.

The checks run in the order of :data:`CHECKS` and the first broken rule raises; each error names
the JSON path of the field that breaks it. Type, range and unknown-key errors are raised earlier,
by the generated validator. The numbered list (also in ADR 0009):

1. ``policy_bundle`` is present unless ``execution_mode`` is ``local``, and its
   ``policy_bundle_hash`` equals the commitment over its component hashes.
2. Dataset sources: ``path`` unless the format is ``builtin``; ``builtin`` iff it is.
3. Stages: unique ``step_id``; ``depends_on`` names earlier stages only; ``dataset_key`` is
   declared; a train stage has ``limits`` with at least one limit (kernel decision D2).
4. ``evaluation.probe_dataset_key`` is declared; the metrics fit ``task_type``.
5. The model preset's ``out_features`` fits ``task_type``; a transformer's ``heads`` divide
   ``d_model``.
6. Optimizer: Nesterov needs momentum.
7. Backend: ``cuda`` only with ``torch``.
8. Trace: ``fixed_rate_k`` iff ``FIXED_RATE``; ``hash_gate_k <= hash_gate_m``.
9. Differential privacy: required in ``regulated`` mode; when on, ``data.drop_last`` is true,
   ``subsampling`` matches the (always shuffling) train sampler, and ``alpha_grid`` ascends.
"""

from __future__ import annotations

from collections.abc import Callable

from umlos._generated.records import (
    Manifest,
    ModelPresetBasicCnn,
    ModelPresetLinear,
    ModelPresetMlp,
    ModelPresetTinyTransformer,
    SgdOptimizerConfig,
)
from umlos._generated.tags import POLICY_BUNDLE
from umlos.codec import commit_hash
from umlos.errors import (
    ApiShapeMismatchError,
    ContractViolationError,
    InvalidDatasetKeyError,
    InvalidDpConfigError,
)

# Metrics that make sense for each task (manifest.yaml, eval_metric_name).
_TASK_METRICS = {
    "multiclass": frozenset({"loss", "accuracy"}),
    "binary": frozenset({"loss", "accuracy"}),
    "regression": frozenset({"loss", "mse", "mae"}),
}


def _constraint(message: str, path: str) -> ApiShapeMismatchError:
    return ApiShapeMismatchError(message, reason="CONSTRAINT", path=path)


def _missing(message: str, path: str) -> ApiShapeMismatchError:
    return ApiShapeMismatchError(message, reason="MISSING_FIELD", path=path)


def _undeclared(key: str, path: str) -> InvalidDatasetKeyError:
    return InvalidDatasetKeyError(
        f"dataset key {key!r} is not declared in datasets", path=path, context={"dataset_key": key}
    )


def check_policy(m: Manifest) -> None:
    pb = m.policy_bundle
    if pb is None:
        if m.execution_mode != "local":
            raise _missing(f"policy_bundle is required in {m.execution_mode} mode", "$")
        return
    expected = commit_hash(
        POLICY_BUNDLE,
        [
            pb.security_policy_hash,
            pb.authz_policy_hash,
            pb.monitor_policy_hash,
            pb.dp_policy_hash,
            pb.redaction_policy_hash,
        ],
    )
    if pb.policy_bundle_hash != expected:
        raise ContractViolationError(
            f"policy_bundle_hash is not the commitment of the listed policy hashes "
            f"(expected {expected.hex()})",
            path="$.policy_bundle.policy_bundle_hash",
        )


def check_datasets(m: Manifest) -> None:
    for key, ref in m.datasets.items():
        where = f"$.datasets.{key}"
        if ref.format == "builtin":
            if ref.builtin is None:
                raise _missing("format builtin needs a builtin name", where)
            if ref.path is not None:
                raise _constraint("a builtin dataset takes no path", f"{where}.path")
        else:
            if ref.path is None:
                raise _missing(f"format {ref.format} needs a path", where)
            if ref.builtin is not None:
                raise _constraint(
                    f"builtin is only allowed with format builtin, not {ref.format}",
                    f"{where}.builtin",
                )


def check_stages(m: Manifest) -> None:
    seen: set[str] = set()
    for i, stage in enumerate(m.pipeline_stages):
        where = f"$.pipeline_stages[{i}]"
        if stage.step_id in seen:
            raise _constraint(f"duplicate step_id {stage.step_id!r}", f"{where}.step_id")
        for j, dep in enumerate(stage.depends_on or ()):
            if dep not in seen:
                what = "itself" if dep == stage.step_id else "no earlier stage"
                raise _constraint(
                    f"depends_on {dep!r} names {what}; stages may depend on earlier stages only",
                    f"{where}.depends_on[{j}]",
                )
        seen.add(stage.step_id)
        if stage.dataset_key not in m.datasets:
            raise _undeclared(stage.dataset_key, f"{where}.dataset_key")
        if stage.type == "train":
            limits = stage.limits
            if limits is None:
                raise _missing("a train stage needs limits (max_steps or max_epochs)", where)
            if limits.max_steps is None and limits.max_epochs is None:
                raise _missing("limits needs max_steps or max_epochs", f"{where}.limits")


def check_evaluation(m: Manifest) -> None:
    ev = m.evaluation
    if ev is None:
        return
    if ev.probe_dataset_key is not None and ev.probe_dataset_key not in m.datasets:
        raise _undeclared(ev.probe_dataset_key, "$.evaluation.probe_dataset_key")
    allowed = _TASK_METRICS[m.task_type]
    for i, metric in enumerate(ev.metrics or ()):
        if metric not in allowed:
            raise _constraint(
                f"metric {metric!r} does not apply to task_type {m.task_type}",
                f"$.evaluation.metrics[{i}]",
            )


def check_model(m: Manifest) -> None:
    model = m.model
    if isinstance(model, ModelPresetTinyTransformer):
        p = model.preset_params
        if p.d_model is not None and p.heads is not None and p.d_model % p.heads != 0:
            raise _constraint(
                f"heads {p.heads} does not divide d_model {p.d_model}",
                "$.model.preset_params.heads",
            )
    if not isinstance(
        model,
        ModelPresetLinear | ModelPresetMlp | ModelPresetBasicCnn | ModelPresetTinyTransformer,
    ):
        return  # a custom IR's output width is checked when the IR is validated
    out = model.preset_params.out_features
    path = "$.model.preset_params.out_features"
    if m.task_type == "binary" and out != 1:
        raise _constraint(f"binary task needs out_features 1, got {out}", path)
    if m.task_type == "multiclass" and out < 2:
        raise _constraint(f"multiclass task needs out_features >= 2, got {out}", path)


def check_optimizer(m: Manifest) -> None:
    opt = m.optimizer
    if isinstance(opt, SgdOptimizerConfig) and opt.nesterov and not opt.momentum:
        raise _constraint("nesterov needs momentum > 0", "$.optimizer.nesterov")


def check_backend(m: Manifest) -> None:
    b = m.backend
    if b is not None and b.device == "cuda" and b.name != "torch":
        raise _constraint(f"device cuda needs backend torch, not {b.name}", "$.backend.device")


def check_trace(m: Manifest) -> None:
    tr = m.trace
    if tr is None:
        return
    if tr.sample_policy == "FIXED_RATE" and tr.fixed_rate_k is None:
        raise _missing("sample_policy FIXED_RATE needs fixed_rate_k", "$.trace")
    if tr.sample_policy != "FIXED_RATE" and tr.fixed_rate_k is not None:
        raise _constraint(
            "fixed_rate_k is only allowed with sample_policy FIXED_RATE", "$.trace.fixed_rate_k"
        )
    if (
        tr.hash_gate_k is not None
        and tr.hash_gate_m is not None
        and tr.hash_gate_k > tr.hash_gate_m
    ):
        raise _constraint(
            f"hash_gate_k {tr.hash_gate_k} exceeds hash_gate_m {tr.hash_gate_m}",
            "$.trace.hash_gate_k",
        )


def check_privacy(m: Manifest) -> None:
    dp = m.security.differential_privacy if m.security is not None else None
    if dp is None:
        if m.execution_mode == "regulated":
            raise InvalidDpConfigError(
                "regulated mode needs security.differential_privacy", path="$.security"
            )
        return
    where = "$.security.differential_privacy"
    if m.data is None or not m.data.drop_last:
        raise InvalidDpConfigError(
            "differential privacy needs data.drop_last: true (fixed batch size)",
            path="$.data.drop_last",
        )
    # Every train sampler of v1 shuffles without replacement.
    if dp.subsampling == "NONE":
        raise InvalidDpConfigError(
            "subsampling NONE does not match the shuffling train sampler",
            path=f"{where}.subsampling",
        )
    grid = dp.alpha_grid or ()
    for i in range(1, len(grid)):
        if not grid[i - 1] < grid[i]:
            raise InvalidDpConfigError(
                "alpha_grid must be strictly ascending", path=f"{where}.alpha_grid[{i}]"
            )


CHECKS: tuple[Callable[[Manifest], None], ...] = (
    check_policy,
    check_datasets,
    check_stages,
    check_evaluation,
    check_model,
    check_optimizer,
    check_backend,
    check_trace,
    check_privacy,
)


def validate(m: Manifest) -> None:
    """Run every cross-field check on a normalized manifest; the first failure raises."""
    for check in CHECKS:
        check(m)
