"""Loading a manifest: valid files, every validation error with its code and JSON path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.manifest.manifest_helpers import BASE_YAML, DELETE, HASH_A, base, dump, with_change
from umlos._generated.tags import POLICY_BUNDLE
from umlos.codec import commit_hash
from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    ContractViolationError,
    Error,
    InvalidDatasetKeyError,
    InvalidDpConfigError,
)
from umlos.manifest import load_manifest, loads_manifest


def _policy(**extra: str) -> dict[str, str]:
    parts = [bytes.fromhex(h) for h in ("11" * 32, "22" * 32, "33" * 32)]
    bundle = {
        "security_policy_hash": "11" * 32,
        "authz_policy_hash": "22" * 32,
        "monitor_policy_hash": "33" * 32,
    }
    bundle["policy_bundle_hash"] = commit_hash(POLICY_BUNDLE, [*parts, None, None]).hex()
    bundle.update(extra)
    return bundle


def test_base_manifest_loads() -> None:
    loaded = loads_manifest(BASE_YAML, source="base.yaml")
    m = loaded.manifest
    assert loaded.source == "base.yaml"
    assert m.tenant_id == "acme"
    assert [s.step_id for s in m.pipeline_stages] == ["fit", "check"]
    assert m.datasets["train"].hash == bytes.fromhex(HASH_A)
    assert len(loaded.manifest_hash) == 32


def test_load_manifest_from_file_uses_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "m.yaml"
    path.parent.mkdir()
    path.write_text(BASE_YAML, encoding="utf-8")
    loaded = load_manifest(path)
    assert loaded.base_dir == path.parent.resolve()
    assert loaded.source == str(path)
    assert loaded.manifest_hash == loads_manifest(BASE_YAML).manifest_hash


def test_missing_manifest_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ContractViolationError) as info:
        load_manifest(tmp_path / "absent.yaml")
    assert info.value.artifact == str(tmp_path / "absent.yaml")


def test_duplicate_yaml_key_is_refused() -> None:
    text = BASE_YAML + "seed: 5\n"
    with pytest.raises(ApiShapeMismatchError) as info:
        loads_manifest(text, source="dup.yaml")
    assert "duplicate key 'seed'" in info.value.message
    assert info.value.artifact == "dup.yaml"


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_document_must_be_a_map(text: str) -> None:
    with pytest.raises(ApiTypeMismatchError) as info:
        loads_manifest(text, source="x.yaml")
    assert info.value.path == "$"
    assert info.value.artifact == "x.yaml"


# (change, error class, JSON path, reason): one row per rule.
SCHEMA_ERRORS: list[tuple[str, Any, type[Error], str, str | None]] = [
    ("extra", 1, ApiShapeMismatchError, "$.extra", "UNKNOWN_FIELD"),
    ("optimizer.momentum", 0.9, ApiShapeMismatchError, "$.optimizer.momentum", "UNKNOWN_FIELD"),
    ("tenant_id", DELETE, ApiShapeMismatchError, "$", "MISSING_FIELD"),
    ("optimizer.lr", "fast", ApiTypeMismatchError, "$.optimizer.lr", None),
    ("optimizer.lr", 1, ApiTypeMismatchError, "$.optimizer.lr", None),
    ("optimizer.lr", -0.1, ApiShapeMismatchError, "$.optimizer.lr", "CONSTRAINT"),
    ("seed", -1, ApiShapeMismatchError, "$.seed", "CONSTRAINT"),
    ("seed", True, ApiTypeMismatchError, "$.seed", None),
    ("global_batch_size", 0, ApiShapeMismatchError, "$.global_batch_size", "CONSTRAINT"),
    ("spec_version", "v2", ApiShapeMismatchError, "$.spec_version", "CONSTRAINT"),
    ("task_type", "ranking", ApiShapeMismatchError, "$.task_type", "CONSTRAINT"),
    (
        "datasets.train.hash",
        "AB" * 32,
        ApiShapeMismatchError,
        "$.datasets.train.hash",
        "CONSTRAINT",
    ),
    (
        "datasets.train.hash",
        "ab" * 31,
        ApiShapeMismatchError,
        "$.datasets.train.hash",
        "CONSTRAINT",
    ),
    (
        "datasets.train.format",
        "parquet",
        ApiShapeMismatchError,
        "$.datasets.train.format",
        "CONSTRAINT",
    ),
    ("model.preset", "resnet", ApiShapeMismatchError, "$.model.preset", "UNION_KIND"),
    (
        "pipeline_stages.0.type",
        "augment",
        ApiShapeMismatchError,
        "$.pipeline_stages[0].type",
        "CONSTRAINT",
    ),
    ("backend.name", "jax", ApiShapeMismatchError, "$.backend.name", "CONSTRAINT"),
]


@pytest.mark.parametrize(("change", "value", "cls", "path", "reason"), SCHEMA_ERRORS)
def test_schema_errors_name_their_path(
    change: str, value: Any, cls: type[Error], path: str, reason: str | None
) -> None:
    with pytest.raises(cls) as info:
        loads_manifest(dump(with_change(change, value)), source="m.yaml")
    err = info.value
    assert type(err) is cls
    assert (err.path, err.reason, err.artifact) == (path, reason, "m.yaml")


def _mutate(fn: Any) -> dict[str, Any]:
    obj = base()
    fn(obj)
    return obj


CROSS_FIELD_ERRORS: list[tuple[str, dict[str, Any], type[Error], str, str | None]] = [
    (
        "duplicate_step_id",
        _mutate(lambda o: o["pipeline_stages"][1].update(step_id="fit", depends_on=[])),
        ApiShapeMismatchError,
        "$.pipeline_stages[1].step_id",
        "CONSTRAINT",
    ),
    (
        "depends_on_later_stage",
        _mutate(lambda o: o["pipeline_stages"][0].update(depends_on=["check"])),
        ApiShapeMismatchError,
        "$.pipeline_stages[0].depends_on[0]",
        "CONSTRAINT",
    ),
    (
        "depends_on_unknown_stage",
        _mutate(lambda o: o["pipeline_stages"][1].update(depends_on=["fit", "nope"])),
        ApiShapeMismatchError,
        "$.pipeline_stages[1].depends_on[1]",
        "CONSTRAINT",
    ),
    (
        "depends_on_itself",
        _mutate(lambda o: o["pipeline_stages"][1].update(depends_on=["check"])),
        ApiShapeMismatchError,
        "$.pipeline_stages[1].depends_on[0]",
        "CONSTRAINT",
    ),
    (
        "stage_dataset_undeclared",
        with_change("pipeline_stages.1.dataset_key", "test"),
        InvalidDatasetKeyError,
        "$.pipeline_stages[1].dataset_key",
        None,
    ),
    (
        "train_stage_without_limits",
        with_change("pipeline_stages.0.limits", DELETE),
        ApiShapeMismatchError,
        "$.pipeline_stages[0]",
        "MISSING_FIELD",
    ),
    (
        "train_stage_with_empty_limits",
        with_change("pipeline_stages.0.limits", {}),
        ApiShapeMismatchError,
        "$.pipeline_stages[0].limits",
        "MISSING_FIELD",
    ),
    (
        "builtin_dataset_with_path",
        _mutate(lambda o: o["datasets"]["train"].update(format="builtin", builtin="digits")),
        ApiShapeMismatchError,
        "$.datasets.train.path",
        "CONSTRAINT",
    ),
    (
        "builtin_dataset_without_name",
        _mutate(
            lambda o: (
                o["datasets"]["train"].update(format="builtin"),
                o["datasets"]["train"].pop("path"),
            )
        ),
        ApiShapeMismatchError,
        "$.datasets.train",
        "MISSING_FIELD",
    ),
    (
        "file_dataset_without_path",
        with_change("datasets.val.path", DELETE),
        ApiShapeMismatchError,
        "$.datasets.val",
        "MISSING_FIELD",
    ),
    (
        "builtin_name_on_file_dataset",
        with_change("datasets.val.builtin", "digits"),
        ApiShapeMismatchError,
        "$.datasets.val.builtin",
        "CONSTRAINT",
    ),
    (
        "probe_dataset_undeclared",
        with_change("evaluation.probe_dataset_key", "test"),
        InvalidDatasetKeyError,
        "$.evaluation.probe_dataset_key",
        None,
    ),
    (
        "metric_for_other_task",
        with_change("evaluation.metrics", ["loss", "mse"]),
        ApiShapeMismatchError,
        "$.evaluation.metrics[1]",
        "CONSTRAINT",
    ),
    (
        "multiclass_with_one_output",
        with_change("model.preset_params.out_features", 1),
        ApiShapeMismatchError,
        "$.model.preset_params.out_features",
        "CONSTRAINT",
    ),
    (
        "binary_with_ten_outputs",
        _mutate(lambda o: o.update(task_type="binary", evaluation={"metrics": ["loss"]})),
        ApiShapeMismatchError,
        "$.model.preset_params.out_features",
        "CONSTRAINT",
    ),
    (
        "transformer_heads_do_not_divide",
        with_change(
            "model",
            {
                "preset": "tiny_transformer",
                "preset_params": {"vocab_size": 100, "seq_len": 8, "out_features": 10, "heads": 3},
            },
        ),
        ApiShapeMismatchError,
        "$.model.preset_params.heads",
        "CONSTRAINT",
    ),
    (
        "nesterov_without_momentum",
        with_change("optimizer", {"type": "sgd", "lr": 0.1, "nesterov": True}),
        ApiShapeMismatchError,
        "$.optimizer.nesterov",
        "CONSTRAINT",
    ),
    (
        "cuda_with_numpy",
        with_change("backend", {"name": "numpy", "device": "cuda"}),
        ApiShapeMismatchError,
        "$.backend.device",
        "CONSTRAINT",
    ),
    (
        "fixed_rate_without_k",
        with_change("trace", {"sample_policy": "FIXED_RATE"}),
        ApiShapeMismatchError,
        "$.trace",
        "MISSING_FIELD",
    ),
    (
        "fixed_rate_k_without_fixed_rate",
        with_change("trace", {"fixed_rate_k": 3}),
        ApiShapeMismatchError,
        "$.trace.fixed_rate_k",
        "CONSTRAINT",
    ),
    (
        "hash_gate_k_above_m",
        with_change("trace", {"hash_gate_m": 10, "hash_gate_k": 11}),
        ApiShapeMismatchError,
        "$.trace.hash_gate_k",
        "CONSTRAINT",
    ),
    (
        "managed_without_policy",
        with_change("execution_mode", "managed"),
        ApiShapeMismatchError,
        "$",
        "MISSING_FIELD",
    ),
    (
        "policy_hash_mismatch",
        with_change("policy_bundle", _policy(policy_bundle_hash="44" * 32)),
        ContractViolationError,
        "$.policy_bundle.policy_bundle_hash",
        None,
    ),
    (
        "regulated_without_dp",
        _mutate(lambda o: o.update(execution_mode="regulated", policy_bundle=_policy())),
        InvalidDpConfigError,
        "$.security",
        None,
    ),
    (
        "dp_without_drop_last",
        with_change(
            "security",
            {"differential_privacy": {"clipping": {"norm": 1.0}, "target_epsilon": 3.0}},
        ),
        InvalidDpConfigError,
        "$.data.drop_last",
        None,
    ),
    (
        "dp_with_subsampling_none",
        _mutate(
            lambda o: o.update(
                data={"drop_last": True},
                security={
                    "differential_privacy": {
                        "clipping": {"norm": 1.0},
                        "target_epsilon": 3.0,
                        "subsampling": "NONE",
                    }
                },
            )
        ),
        InvalidDpConfigError,
        "$.security.differential_privacy.subsampling",
        None,
    ),
    (
        "dp_alpha_grid_not_ascending",
        _mutate(
            lambda o: o.update(
                data={"drop_last": True},
                security={
                    "differential_privacy": {
                        "clipping": {"norm": 1.0},
                        "target_epsilon": 3.0,
                        "alpha_grid": [2.0, 1.5],
                    }
                },
            )
        ),
        InvalidDpConfigError,
        "$.security.differential_privacy.alpha_grid[1]",
        None,
    ),
]


@pytest.mark.parametrize(
    ("obj", "cls", "path", "reason"),
    [row[1:] for row in CROSS_FIELD_ERRORS],
    ids=[row[0] for row in CROSS_FIELD_ERRORS],
)
def test_cross_field_errors_name_their_path(
    obj: dict[str, Any], cls: type[Error], path: str, reason: str | None
) -> None:
    with pytest.raises(cls) as info:
        loads_manifest(dump(obj), source="m.yaml")
    err = info.value
    assert type(err) is cls
    assert (err.path, err.reason, err.artifact) == (path, reason, "m.yaml")
    assert err.code_id == cls.code_id


def test_invalid_dataset_key_error_names_the_key() -> None:
    with pytest.raises(InvalidDatasetKeyError) as info:
        loads_manifest(dump(with_change("pipeline_stages.1.dataset_key", "test")))
    assert info.value.context["dataset_key"] == "test"
    assert "'test'" in str(info.value)


def test_policy_bundle_satisfies_managed_mode() -> None:
    obj = base()
    obj.update(execution_mode="managed", policy_bundle=_policy())
    m = loads_manifest(dump(obj)).manifest
    assert m.policy_bundle is not None
    assert m.policy_bundle.policy_bundle_hash.hex() == _policy()["policy_bundle_hash"]


def test_a_valid_dp_manifest_loads() -> None:
    obj = base()
    obj.update(
        data={"drop_last": True},
        security={"differential_privacy": {"clipping": {"norm": 1.0}, "target_epsilon": 3.0}},
    )
    dp = loads_manifest(dump(obj)).manifest.security.differential_privacy  # type: ignore[union-attr]
    assert dp is not None
    assert dp.noise_multiplier == 1.0 and dp.target_delta == 1.0e-5
    assert dp.clipping.strategy == "per_sample"
    assert dp.alpha_grid is not None and dp.alpha_grid[0] == 1.25


def test_json_is_accepted_too() -> None:
    import json

    assert (
        loads_manifest(json.dumps(base())).manifest_hash == loads_manifest(BASE_YAML).manifest_hash
    )


def test_zero_hash_text_must_be_quoted() -> None:
    # Unquoted, YAML reads 64 zeros as the integer 0: the error says so at the field.
    text = BASE_YAML.replace(f'"{HASH_A}"', "0" * 64)
    with pytest.raises(ApiTypeMismatchError) as info:
        loads_manifest(text)
    assert info.value.path == "$.datasets.train.hash"
