"""A minimal valid manifest, used by the docstring examples and as a starting template."""

from typing import Final

EXAMPLE_MANIFEST: Final = """\
spec_version: UML_OS.Config.Manifest_v1
tenant_id: demo
seed: 42
global_batch_size: 16
task_type: multiclass
datasets:
  train:
    id: iris
    version: sklearn-1
    format: builtin
    builtin: iris
    hash: "4b9f951c9a0edd3dd9444ed2c2cdf42ac892ce47cd73d3278b4d14454f48ffc9"
    cardinality: 150
pipeline_stages:
  - step_id: fit
    type: train
    dataset_key: train
    limits: {max_epochs: 5}
model:
  preset: mlp
  preset_params: {in_features: 4, hidden_sizes: [16], out_features: 3}
optimizer: {type: sgd, lr: 0.1}
"""
