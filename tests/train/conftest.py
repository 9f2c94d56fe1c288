"""Small manifests for the training tests: one per preset, fast on the numpy backend."""

from __future__ import annotations

from pathlib import Path

from umlos._generated.records import RegisterDatasetRequest, RowRange
from umlos.data import register_dataset
from umlos.manifest import LoadedManifest, loads_manifest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "tiny_lm" / "corpus.txt"


def _digits_ref(start: int, stop: int) -> str:
    rec = register_dataset(
        RegisterDatasetRequest(
            dataset_key="train",
            id="digits",
            version="v1",
            format="builtin",
            builtin="digits",
            feature_key="x",
            label_key="y",
            rows=RowRange(start=start, stop=stop),
        )
    )
    return (
        f"{{id: digits, version: v1, format: builtin, builtin: digits, "
        f"rows: {{start: {start}, stop: {stop}}}, hash: '{rec.content_hash.hex()}', "
        f"cardinality: {rec.cardinality}}}"
    )


def _text_ref(window: int, stop: int) -> str:
    rec = register_dataset(
        RegisterDatasetRequest(
            dataset_key="train",
            id="corpus",
            version="v1",
            format="text",
            path=str(CORPUS),
            window=window,
            feature_key="x",
            label_key="y",
            rows=RowRange(start=0, stop=stop),
        )
    )
    return (
        f"{{id: corpus, version: v1, format: text, path: '{CORPUS}', window: {window}, "
        f"rows: {{start: 0, stop: {stop}}}, hash: '{rec.content_hash.hex()}', "
        f"cardinality: {rec.cardinality}}}"
    )


MODELS = {
    "mlp": "{preset: mlp, preset_params: {in_features: 64, hidden_sizes: [32], out_features: 10}}",
    "basic_cnn": (
        "{preset: basic_cnn, preset_params: {in_channels: 1, height: 8, width: 8, "
        "conv_channels: [4, 8], hidden_size: 16, out_features: 10}}"
    ),
    "tiny_transformer": (
        "{preset: tiny_transformer, preset_params: {vocab_size: 256, seq_len: 8, d_model: 16, "
        "heads: 2, layers: 1, ffn_dim: 32, causal: true, out_features: 256}}"
    ),
}


def manifest(
    preset: str,
    *,
    backend: str = "numpy",
    dtype: str = "float64",
    steps: int = 6,
    optimizer: str = "{type: adamw, lr: 0.01}",
    extra: str = "",
) -> LoadedManifest:
    data = _text_ref(8, 64) if preset == "tiny_transformer" else _digits_ref(0, 96)
    text = f"""
spec_version: UML_OS.Config.Manifest_v1
tenant_id: tests
seed: 3
global_batch_size: 16
task_type: multiclass
datasets:
  train: {data}
pipeline_stages:
  - {{step_id: fit, type: train, dataset_key: train, limits: {{max_steps: {steps}}}}}
  - {{step_id: score, type: eval, dataset_key: train}}
model: {MODELS[preset]}
optimizer: {optimizer}
backend: {{name: {backend}, dtype: {dtype}}}
{extra}
"""
    return loads_manifest(text)
