"""Manifests written as YAML text, and a way to change one field of them."""

from __future__ import annotations

import copy
from typing import Any

import yaml

HASH_A = "a" * 64
HASH_B = "b" * 64

# A manifest exercising most sections; every test starts from it.
BASE_YAML = f"""\
spec_version: UML_OS.Config.Manifest_v1
tenant_id: acme
seed: 1234
global_batch_size: 32
task_type: multiclass
datasets:
  train:
    id: digits
    version: v1
    hash: "{HASH_A}"
    cardinality: 1500
    format: npz
    path: data/train.npz
  val:
    id: digits
    version: v1
    hash: "{HASH_B}"
    cardinality: 297
    format: npz
    path: data/val.npz
pipeline_stages:
  - step_id: fit
    type: train
    dataset_key: train
    limits:
      max_steps: 100
  - step_id: check
    type: eval
    dataset_key: val
    depends_on: [fit]
model:
  preset: mlp
  preset_params:
    in_features: 64
    hidden_sizes: [32]
    out_features: 10
optimizer:
  type: adamw
  lr: 0.001
evaluation:
  metrics: [loss, accuracy]
"""


def base() -> dict[str, Any]:
    """The base manifest as its JSON form (a fresh copy)."""
    return copy.deepcopy(yaml.safe_load(BASE_YAML))


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The base manifest with the value at a dotted path (list indices as numbers) replaced;
    the sentinel ``DELETE`` removes the key."""
    obj = base()
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return obj


DELETE = object()
