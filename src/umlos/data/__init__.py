"""Datasets: decode a source, hash its content, register it, load what a manifest declares.

>>> from umlos.data import load_datasets
>>> from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest
>>> datasets = load_datasets(loads_manifest(EXAMPLE_MANIFEST))
>>> {key: ds.cardinality for key, ds in datasets.items()}
{'train': 150}
"""

from __future__ import annotations

from umlos.data.datasets import (
    BUILTINS,
    TENSOR_DTYPES,
    Dataset,
    content_hash,
    load_dataset,
    load_datasets,
    register_dataset,
)

__all__ = [
    "BUILTINS",
    "TENSOR_DTYPES",
    "Dataset",
    "content_hash",
    "load_dataset",
    "load_datasets",
    "register_dataset",
]

# Public objects say where to import them from (and their doctests run with this module).
for _obj in (Dataset, content_hash, load_dataset, load_datasets, register_dataset):
    _obj.__module__ = __name__
del _obj
