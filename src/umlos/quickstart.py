"""Ready-to-run manifests: ``umlos quickstart {classification,regression,cnn,lm} [DIR]``.

Each template trains in well under a minute on a laptop CPU, uses only data that ships with a
package or is written next to the manifest, and pins the dataset hashes it computes here, so
``umlos run DIR/manifest.yaml`` works straight away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from umlos._generated.records import RegisterDatasetRequest, RowRange
from umlos.data import register_dataset
from umlos.errors import ContractViolationError


@dataclass(frozen=True)
class Template:
    name: str
    summary: str
    render: Callable[[Path], str]


def _ref(
    key: str,
    *,
    id: str,
    version: str,
    fmt: str,
    base_dir: Path,
    rows: tuple[int, int, int, tuple[int, ...]] | None = None,
    builtin: str | None = None,
    path: str | None = None,
    window: int | None = None,
) -> str:
    """A dataset entry with its hash and cardinality computed from the data itself."""
    row_range = (
        RowRange(start=rows[0], stop=rows[1], modulus=rows[2], remainders=rows[3])
        if rows is not None
        else None
    )
    record = register_dataset(
        RegisterDatasetRequest(
            dataset_key=key,
            id=id,
            version=version,
            format=fmt,  # type: ignore[arg-type]
            builtin=builtin,
            path=path,
            window=window,
            rows=row_range,
            feature_key="x",
            label_key="y",
        ),
        base_dir=base_dir,
    )
    lines = [f"    id: {id}", f'    version: "{version}"', f"    format: {fmt}"]
    if builtin is not None:
        lines.append(f"    builtin: {builtin}")
    if path is not None:
        lines.append(f"    path: {path}")
    if window is not None:
        lines.append(f"    window: {window}")
    if rows is not None:
        remainders = ", ".join(str(r) for r in rows[3])
        lines.append(
            f"    rows: {{start: {rows[0]}, stop: {rows[1]}, modulus: {rows[2]}, "
            f"remainders: [{remainders}]}}"
        )
    lines += [f'    hash: "{record.content_hash.hex()}"', f"    cardinality: {record.cardinality}"]
    return f"  {key}:\n" + "\n".join(lines)


def _split(builtin: str, base_dir: Path) -> str:
    """An interleaved 80/20 train/test split of a scikit-learn builtin."""
    n = {"iris": 150, "digits": 1797, "diabetes": 442, "wine": 178, "breast_cancer": 569}[builtin]
    train = _ref(
        "train",
        id=builtin,
        version="sklearn",
        fmt="builtin",
        builtin=builtin,
        base_dir=base_dir,
        rows=(0, n, 5, (1, 2, 3, 4)),
    )
    test = _ref(
        "test",
        id=builtin,
        version="sklearn",
        fmt="builtin",
        builtin=builtin,
        base_dir=base_dir,
        rows=(0, n, 5, (0,)),
    )
    return train + "\n" + test


_HEAD: Final = """spec_version: UML_OS.Config.Manifest_v1
tenant_id: quickstart
seed: {seed}
global_batch_size: {batch}
task_type: {task}
datasets:
{datasets}
pipeline_stages:
  - step_id: fit
    type: train
    dataset_key: train
    limits: {{max_epochs: {epochs}}}
  - step_id: evaluate
    type: eval
    dataset_key: {eval_key}
"""


def _builtin(
    base: Path,
    *,
    title: str,
    builtin: str,
    seed: int,
    batch: int,
    task: str,
    epochs: int,
    model: str,
    optimizer: str,
    metrics: str,
) -> str:
    """A template on a scikit-learn builtin with an interleaved 80/20 train/test split."""
    return (
        f"# Quickstart: {title}.\n"
        + _HEAD.format(
            seed=seed,
            batch=batch,
            task=task,
            datasets=_split(builtin, base),
            epochs=epochs,
            eval_key="test",
        )
        + f"model:\n{model}\noptimizer: {optimizer}\nbackend: {{name: numpy, dtype: float32}}\n"
        + f"evaluation: {{metrics: [{metrics}]}}\n"
    )


def _classification(base: Path) -> str:
    return _builtin(
        base,
        title="a small MLP classifies scikit-learn's iris dataset (4 features, 3 classes)",
        builtin="iris",
        seed=1,
        batch=16,
        task="multiclass",
        epochs=60,
        model="  preset: mlp\n  preset_params: {in_features: 4, hidden_sizes: [32], out_features: 3}",
        optimizer="{type: adamw, lr: 0.01}",
        metrics="loss, accuracy",
    )


def _regression(base: Path) -> str:
    return _builtin(
        base,
        title="an MLP regressor on scikit-learn's diabetes dataset (10 features)",
        builtin="diabetes",
        seed=2,
        batch=32,
        task="regression",
        epochs=40,
        model="  preset: mlp\n  preset_params: {in_features: 10, hidden_sizes: [16], out_features: 1}",
        optimizer="{type: adamw, lr: 0.05}",
        metrics="loss, mse, mae",
    )


def _cnn(base: Path) -> str:
    return _builtin(
        base,
        title="a small convolutional network on scikit-learn's 8x8 digits",
        builtin="digits",
        seed=3,
        batch=64,
        task="multiclass",
        epochs=8,
        model="  preset: basic_cnn\n  preset_params: {in_channels: 1, height: 8, width: 8, out_features: 10}",
        optimizer="{type: adamw, lr: 0.002}",
        metrics="loss, accuracy",
    )


_CORPUS: Final = (
    "UML_OS trains models deterministically. Every step leaves evidence: a hash-chained trace, "
    "a journal entry and, at intervals, a checkpoint. The run ends with a signed certificate "
    "that binds the manifest, the data, the environment and the results. Anyone holding the run "
    "directory can verify it offline and replay it to prove it. "
)


def _lm(base: Path) -> str:
    corpus = base / "corpus.txt"
    text = "".join(f"{i}. {_CORPUS}" for i in range(1, 41))
    corpus.write_text(text, encoding="utf-8")
    window = 32
    total = (len(text.encode()) - 1) // window
    split = total - max(1, total // 10)
    train = _ref(
        "train",
        id="quickstart-corpus",
        version="1",
        fmt="text",
        path="corpus.txt",
        window=window,
        base_dir=base,
        rows=(0, split, 1, (0,)),
    )
    val = _ref(
        "val",
        id="quickstart-corpus",
        version="1",
        fmt="text",
        path="corpus.txt",
        window=window,
        base_dir=base,
        rows=(split, total, 1, (0,)),
    )
    return (
        "# Quickstart: a tiny causal transformer language model on a generated corpus (bytes).\n"
        + _HEAD.format(
            seed=4,
            batch=16,
            task="multiclass",
            datasets=train + "\n" + val,
            epochs=4,
            eval_key="val",
        )
        + "model:\n  preset: tiny_transformer\n"
        + "  preset_params: {vocab_size: 256, seq_len: 32, d_model: 32, heads: 2, layers: 1, "
        + "ffn_dim: 64, causal: true, out_features: 256}\n"
        + "optimizer: {type: adamw, lr: 0.005}\nbackend: {name: numpy, dtype: float32}\n"
    )


TEMPLATES: Final = {
    "classification": Template("classification", "MLP on the iris dataset", _classification),
    "regression": Template("regression", "regression on the diabetes dataset", _regression),
    "cnn": Template("cnn", "convolutional network on 8x8 digits", _cnn),
    "lm": Template("lm", "tiny transformer language model on a text file", _lm),
}


def write_quickstart(name: str, directory: Path) -> Path:
    """Write ``manifest.yaml`` (and data where needed) for template ``name`` into ``directory``.

    Calling it again is harmless (the same bytes are already there); a *different* existing
    manifest is never overwritten.
    """
    template = TEMPLATES.get(name)
    if template is None:
        raise ContractViolationError(
            f"unknown quickstart {name!r} (known: {', '.join(TEMPLATES)})", path="$.template"
        )
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "manifest.yaml"
    text = template.render(directory)  # deterministic: the same bytes every time
    if target.exists():
        if target.read_text(encoding="utf-8") == text:
            return target  # already written by an earlier call: nothing to do
        raise ContractViolationError(
            f"{target} already exists and differs; choose another directory", artifact=str(target)
        )
    tmp = directory / ".manifest.yaml.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
