"""Normalization: defaults filled everywhere, a pinned golden hash, and what the hash ignores."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.manifest.manifest_helpers import BASE_YAML, base, dump, with_change
from umlos._generated.records import (
    Manifest,
    ModelPresetBasicCnn,
    ModelPresetTinyTransformer,
    SgdOptimizerConfig,
)
from umlos.codec import digest
from umlos.manifest import loads_manifest, manifest_hash, normalize

# The base manifest after normalization, written out by hand from the schema's defaults.
GOLDEN_NORMALIZED = """\
spec_version: UML_OS.Config.Manifest_v1
tenant_id: acme
seed: 1234
global_batch_size: 32
execution_mode: local
task_type: multiclass
alpha: 1.0
datasets:
  train: {id: digits, version: v1, hash: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          cardinality: 1500, format: npz, path: data/train.npz, feature_key: x, label_key: y}
  val: {id: digits, version: v1, hash: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        cardinality: 297, format: npz, path: data/val.npz, feature_key: x, label_key: y}
pipeline_stages:
  - {step_id: fit, type: train, dataset_key: train, depends_on: [], limits: {max_steps: 100},
     checkpoint_on_exit: false}
  - {step_id: check, type: eval, dataset_key: val, depends_on: [fit], checkpoint_on_exit: false}
model:
  preset: mlp
  preset_params: {in_features: 64, hidden_sizes: [32], out_features: 10, activation: relu}
backend: {name: numpy, device: cpu, dtype: float32, determinism_profile_id: BITWISE, num_threads: 1}
optimizer: {type: adamw, lr: 0.001, betas: [0.9, 0.999], eps: 1.0e-8, weight_decay: 0.01}
data: {sampler: feistel, sampler_block_size: 1048576, drop_last: false}
checkpoint_frequency: 0
fingerprint_frequency: 0
security: {attestation_required: false, functional_commitment: false}
trace: {sample_policy: HASH_GATED, hash_gate_m: 100, hash_gate_k: 1, max_bytes_per_step: 1048576,
        max_record_bytes: 1048576}
evaluation: {metrics: [loss, accuracy], probe_dataset_key: val, probe_size: 1024}
"""

# Pinned: Digest(canonical CBOR of GOLDEN_NORMALIZED). Changing it means every existing run's
# manifest_hash changes; only a deliberate schema or normalization change may do that.
GOLDEN_MANIFEST_HASH = "4eecc1c973693ec8a7f0800b9cf9d26ab0d6cc16711ae11cf4bc15633d7340d3"


def test_normalized_base_equals_the_golden_manifest() -> None:
    loaded = loads_manifest(BASE_YAML)
    assert loaded.manifest.to_obj(json=True) == yaml.safe_load(GOLDEN_NORMALIZED)


def test_manifest_hash_is_pinned() -> None:
    loaded = loads_manifest(BASE_YAML)
    assert loaded.manifest_hash.hex() == GOLDEN_MANIFEST_HASH
    golden = Manifest.from_obj(yaml.safe_load(GOLDEN_NORMALIZED), json=True)
    assert digest(golden.to_obj()).hex() == GOLDEN_MANIFEST_HASH


def test_golden_form_is_a_fixed_point() -> None:
    # Spelling out every default changes nothing, and normalizing twice changes nothing.
    assert loads_manifest(GOLDEN_NORMALIZED).manifest_hash.hex() == GOLDEN_MANIFEST_HASH
    m = normalize(base())
    assert normalize(m.to_obj(json=True)) == m
    assert normalize(m) == m


def test_unnormalized_record_hashes_like_its_normalized_form() -> None:
    raw = Manifest.from_obj(base(), json=True)
    assert raw.backend is None
    assert manifest_hash(raw).hex() == GOLDEN_MANIFEST_HASH


REFORMATTED = """\
# the same manifest, keys reordered, flow style, comments, and a default spelled out
optimizer: {lr: 0.001, type: adamw}   # betas default
model: {preset_params: {out_features: 10, hidden_sizes: [32], in_features: 64}, preset: mlp}
evaluation:
  metrics:
    - loss
    - accuracy
pipeline_stages:
  - {limits: {max_steps: 100}, dataset_key: train, type: train, step_id: fit}
  - dataset_key: val
    depends_on:
      - fit
    type: eval
    step_id: check
    checkpoint_on_exit: false
datasets:
  val: {path: data/val.npz, format: npz, cardinality: 297,
        hash: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", version: v1, id: digits}
  train: {format: npz, path: data/train.npz, id: digits, version: v1, cardinality: 1500,
          hash: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
task_type: multiclass
global_batch_size: 32
seed: 1234
tenant_id: 'acme'
spec_version: "UML_OS.Config.Manifest_v1"
alpha: 1.0
"""


def test_hash_ignores_key_order_formatting_and_spelled_out_defaults() -> None:
    assert loads_manifest(REFORMATTED).manifest_hash.hex() == GOLDEN_MANIFEST_HASH


SEMANTIC_CHANGES: list[tuple[str, Any]] = [
    ("seed", 1235),
    ("tenant_id", "acme2"),
    ("global_batch_size", 64),
    ("optimizer.lr", 0.002),
    ("optimizer.weight_decay", 0.0),
    ("alpha", 2.0),
    ("datasets.train.hash", "c" * 64),
    ("datasets.train.cardinality", 1501),
    ("datasets.train.path", "data/other.npz"),
    ("pipeline_stages.0.limits", {"max_steps": 101}),
    ("pipeline_stages.0.checkpoint_on_exit", True),
    ("model.preset_params.activation", "gelu"),
    ("backend", {"name": "torch"}),
    ("backend", {"dtype": "float64"}),
    ("data", {"sampler": "spec_block_affine"}),
    ("evaluation", {"metrics": ["loss"]}),
    ("evaluation.probe_dataset_key", "train"),
]


def test_every_semantic_change_changes_the_hash() -> None:
    hashes = {GOLDEN_MANIFEST_HASH}
    for path, value in SEMANTIC_CHANGES:
        h = loads_manifest(dump(with_change(path, value))).manifest_hash.hex()
        assert h not in hashes, path
        hashes.add(h)


def test_defaults_inside_union_alternatives() -> None:
    obj = with_change("optimizer", {"type": "sgd", "lr": 0.1})
    obj["model"] = {
        "preset": "tiny_transformer",
        "preset_params": {"vocab_size": 50, "seq_len": 16, "out_features": 10},
    }
    m = normalize(obj)
    assert isinstance(m.optimizer, SgdOptimizerConfig)
    assert (m.optimizer.momentum, m.optimizer.nesterov, m.optimizer.weight_decay) == (
        0.0,
        False,
        0.0,
    )
    assert isinstance(m.model, ModelPresetTinyTransformer)
    p = m.model.preset_params
    assert (p.d_model, p.heads, p.layers, p.ffn_dim, p.causal) == (64, 4, 2, 256, False)

    obj = with_change(
        "model",
        {
            "preset": "basic_cnn",
            "preset_params": {"in_channels": 1, "height": 8, "width": 8, "out_features": 10},
        },
    )
    cnn = normalize(obj).model
    assert isinstance(cnn, ModelPresetBasicCnn)
    q = cnn.preset_params
    assert (q.conv_channels, q.kernel_size, q.hidden_size, q.activation) == (
        (16, 32),
        3,
        128,
        "relu",
    )


def test_defaults_inside_nested_optional_records() -> None:
    obj = base()
    obj["data"] = {"drop_last": True}
    obj["security"] = {"differential_privacy": {"clipping": {"norm": 0.5}, "target_epsilon": 8.0}}
    m = normalize(obj)
    assert m.data is not None and m.data.sampler == "feistel"
    assert m.security is not None and m.security.attestation_required is False
    dp = m.security.differential_privacy
    assert dp is not None
    assert (dp.mechanism, dp.accountant, dp.subsampling) == (
        "gaussian",
        "rdp",
        "SHUFFLE_WITHOUT_REPLACEMENT",
    )
    assert dp.safety_budget_reserve == 0.08 and dp.clipping.strategy == "per_sample"


@pytest.mark.parametrize(
    ("datasets", "stages", "expected"),
    [
        (["train", "val"], [("a", "eval", "train"), ("b", "train", "train")], "val"),
        (["train", "holdout"], [("a", "eval", "holdout"), ("b", "train", "train")], "train"),
        (["train", "holdout"], [("a", "eval", "holdout"), ("b", "infer", "train")], "holdout"),
    ],
    ids=["val_if_declared", "first_train_stage", "first_stage_when_no_train"],
)
def test_probe_dataset_key_default(
    datasets: list[str], stages: list[tuple[str, str, str]], expected: str
) -> None:
    obj = base()
    ref = obj["datasets"]["train"]
    obj["datasets"] = {k: dict(ref) for k in datasets}
    obj["pipeline_stages"] = [
        {"step_id": s, "type": t, "dataset_key": d, "limits": {"max_epochs": 1}}
        for s, t, d in stages
    ]
    obj.pop("evaluation")
    m = normalize(obj)
    assert m.evaluation is not None and m.evaluation.probe_dataset_key == expected


def test_explicit_probe_key_is_kept() -> None:
    m = normalize(with_change("evaluation.probe_dataset_key", "train"))
    assert m.evaluation is not None and m.evaluation.probe_dataset_key == "train"
