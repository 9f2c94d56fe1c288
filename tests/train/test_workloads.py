"""The real workloads of issue 3: the examples reach their accuracies on both backends.

These are the slowest tests of the suite (tens of seconds on the numpy backend) and they are the
point of it: a kernel that cannot learn digits is not a kernel.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from umlos.manifest import load_manifest, loads_manifest
from umlos.train import prepare, train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _with_backend(name: str, backend: str):  # type: ignore[no-untyped-def]
    path = EXAMPLES / name / "manifest.yaml"
    text = path.read_text().replace("backend: {name: numpy,", f"backend: {{name: {backend},")
    return loads_manifest(text, source=str(path), base_dir=path.parent)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("example", "floor"), [("digits_mlp", 0.95), ("digits_cnn", 0.97)])
def test_digits_reach_their_test_accuracy(example: str, floor: float, backend: str) -> None:
    result = train(prepare(_with_backend(example, backend)))
    (test,) = result.evals
    assert test.dataset_key == "test" and test.samples == 360
    assert test.accuracy is not None and test.accuracy >= floor, test


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_tiny_lm_beats_the_unigram_baseline(backend: str) -> None:
    run = prepare(_with_backend("tiny_lm", backend))
    train_labels = run.datasets["train"].labels.ravel()
    val_labels = run.datasets["val"].labels.ravel()
    counts = np.bincount(train_labels, minlength=256).astype(np.float64) + 1.0  # add-one
    unigram = float(-np.mean(np.log(counts[val_labels] / counts.sum())))
    result = train(run)
    (val,) = result.evals
    assert math.isfinite(val.loss) and val.loss < unigram - 0.3, (val.loss, unigram)


@pytest.mark.slow
def test_backends_agree_on_the_mlp_within_tolerance() -> None:
    """Same batches, same initial weights (ADR 0008 seed policy): E1 agreement across backends."""
    runs = {b: prepare(_with_backend("digits_mlp", b)) for b in ("numpy", "torch")}
    assert runs["numpy"].compute_seed == runs["torch"].compute_seed
    results = {b: train(r) for b, r in runs.items()}
    first = [results[b].steps[0].loss for b in runs]
    assert first[0] == pytest.approx(first[1], rel=1e-5)
    acc = [results[b].evals[0].accuracy for b in runs]
    assert acc[0] is not None and acc[1] is not None and abs(acc[0] - acc[1]) <= 0.02


def test_example_manifests_load() -> None:
    for path in sorted(EXAMPLES.glob("*/manifest.yaml")):
        assert load_manifest(path).manifest.tenant_id in ("examples", "hello")
