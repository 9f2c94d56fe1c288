"""The immutable context of one training run: manifest, data, model, backend and identities.

:func:`prepare` builds it once from a manifest. Nothing in it changes during the run; everything
that does lives in :class:`umlos.train.state.State`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from umlos._generated.records import (
    DataCursor,
    Manifest,
    ManifestDataConfig,
    ModelCustomIr,
    ModelIR,
)
from umlos.data import Dataset, load_datasets
from umlos.data.sampler import next_batch as sample_next_batch
from umlos.errors import InvalidDatasetKeyError
from umlos.manifest import (
    EnvironmentCapture,
    LoadedManifest,
    RunIdentity,
    capture_run_environment,
    load_manifest,
    run_identity,
)
from umlos.model.backends.base import Backend, ComputeDtype, OptimizerStep, Program, get_backend
from umlos.model.init import init_parameters
from umlos.model.ir import ValidatedIR, validate_ir
from umlos.model.presets import expand_preset


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch: sample indices, the IR input arrays, and the cursor before and after it."""

    dataset_key: str
    indices: NDArray[np.uint64]
    arrays: Mapping[str, NDArray[Any]]
    cursor: DataCursor
    cursor_next: DataCursor


@dataclass(frozen=True, slots=True)
class Run:
    """Everything fixed for the length of a run."""

    loaded: LoadedManifest
    datasets: Mapping[str, Dataset]
    ir: ValidatedIR
    backend: Backend
    program: Program
    dtype: ComputeDtype
    identity: RunIdentity
    environment: EnvironmentCapture
    optimizer: OptimizerStep
    world_size: int = 1
    rank: int = 0

    @property
    def manifest(self) -> Manifest:
        return self.loaded.manifest

    @property
    def manifest_hash(self) -> bytes:
        return self.loaded.manifest_hash

    @property
    def ir_hash(self) -> bytes:
        return self.ir.ir_hash

    @property
    def replay_token(self) -> bytes:
        return self.identity.replay_token

    @property
    def compute_seed(self) -> bytes:
        return self.identity.compute_seed

    @property
    def model_ir(self) -> ModelIR:
        return self.ir.ir

    @property
    def data_config(self) -> ManifestDataConfig:
        data = self.manifest.data
        assert data is not None  # normalization fills it
        return data

    def init_parameters(self) -> dict[str, NDArray[Any]]:
        return init_parameters(self.ir, self.compute_seed)

    def optimizer_step(self, opt_step: int) -> OptimizerStep:
        """Hyper-parameters of update number ``opt_step`` (defaults filled once, in prepare)."""
        b = self.optimizer
        return OptimizerStep(
            kind=b.kind,
            lr=b.lr,
            opt_step=opt_step,
            weight_decay=b.weight_decay,
            momentum=b.momentum,
            nesterov=b.nesterov,
            beta1=b.beta1,
            beta2=b.beta2,
            eps=b.eps,
        )

    def train_dataset_keys(self) -> list[str]:
        return sorted({s.dataset_key for s in self.manifest.pipeline_stages if s.type == "train"})

    def dataset(self, key: str) -> Dataset:
        try:
            return self.datasets[key]
        except KeyError:
            raise InvalidDatasetKeyError(
                f"dataset {key!r} is not declared", path="$.datasets", context={"dataset_key": key}
            ) from None

    def arrays(self, key: str, indices: NDArray[np.uint64]) -> dict[str, NDArray[Any]]:
        """The IR inputs for these sample indices: features, and labels when the IR has them."""
        data = self.dataset(key)
        idx = indices.astype(np.intp)
        features = data.features[idx]
        out = {self.ir.features: _fit(features, self.ir.shape(self.ir.features))}
        if self.ir.labels is not None:
            out[self.ir.labels] = _fit(data.labels[idx], self.ir.shape(self.ir.labels))
        return out

    def train_batch(self, key: str, cursor: DataCursor) -> Batch:
        """This rank's shard of the next global training batch of dataset ``key``."""
        indices, cursor_next = sample_next_batch(
            self.data_config,
            cursor,
            cardinality=self.dataset(key).cardinality,
            global_batch_size=self.manifest.global_batch_size,
            world_size=self.world_size,
            rank=self.rank,
            stage_type="train",
            compute_seed=self.compute_seed,
            dataset_key=key,
        )
        return Batch(key, indices, self.arrays(key, indices), cursor, cursor_next)

    def eval_batches(self, key: str) -> Iterator[Batch]:
        """One sequential pass over dataset ``key`` (D10: the last batch is truncated)."""
        cursor = DataCursor(epoch=0, global_position=0)
        n = self.dataset(key).cardinality
        while cursor.global_position < n and cursor.epoch == 0:
            indices, cursor_next = sample_next_batch(
                self.data_config,
                cursor,
                cardinality=n,
                global_batch_size=self.manifest.global_batch_size,
                world_size=self.world_size,
                rank=self.rank,
                stage_type="eval",
                compute_seed=self.compute_seed,
                dataset_key=key,
            )
            yield Batch(key, indices, self.arrays(key, indices), cursor, cursor_next)
            cursor = cursor_next


def _fit(array: NDArray[Any], shape: Any) -> NDArray[Any]:
    """Samples with the input's element count but another shape are reshaped in C order: flat
    digits (64) feed an image input [1, 8, 8], scalar regression targets feed [1]. A real
    mismatch is left for the backend to report."""
    target = tuple(int(d) for d in shape)
    if array.shape[1:] != target and array.size == len(array) * int(np.prod(target)):
        return array.reshape((len(array), *target))
    return array


def model_ir(manifest: Manifest, dtype: ComputeDtype) -> ModelIR:
    """The manifest's model as IR: a preset expanded, or the embedded custom IR."""
    if isinstance(manifest.model, ModelCustomIr):
        return manifest.model.ir
    return expand_preset(manifest.model, task_type=manifest.task_type, dtype=dtype)


def prepare(
    source: Path | str | LoadedManifest,
    *,
    world_size: int = 1,
    rank: int = 0,
    environment: EnvironmentCapture | None = None,
) -> Run:
    """Load, check and bind everything a run needs.

    To compare backends, use two manifests that differ only in ``backend``: their compute seed is
    the same (ADR 0008), so they see the same batches and the same initial parameters.
    """
    loaded = source if isinstance(source, LoadedManifest) else load_manifest(Path(source))
    manifest = loaded.manifest
    cfg = manifest.backend
    assert cfg is not None and cfg.dtype is not None  # normalization fills them
    name = cfg.name or "numpy"
    dtype: ComputeDtype = cfg.dtype
    # BLAS results depend on its thread count (a float32 step differs between 1 and 2 threads):
    # pin it for the whole process to what the manifest declares and the fingerprint records.
    threadpool_limits(limits=cfg.num_threads or 1, user_api="blas")
    options: dict[str, Any] = {}
    if name == "torch":
        options = {"device": cfg.device or "cpu", "num_threads": cfg.num_threads or 1}
    engine = get_backend(name, **options)
    ir = validate_ir(model_ir(manifest, dtype))
    # The live backend reports the runtime it actually loaded (BLAS build, torch/CUDA versions).
    # A pinned ``environment`` (golden runs) replaces the capture entirely.
    if environment is None:
        environment = capture_run_environment(cfg, fingerprint=engine.fingerprint())
    return Run(
        loaded=loaded,
        datasets=load_datasets(loaded),
        ir=ir,
        backend=engine,
        program=engine.compile(ir, dtype),
        dtype=dtype,
        identity=run_identity(manifest, environment),
        environment=environment,
        optimizer=OptimizerStep.from_config(manifest.optimizer, opt_step=1),
        world_size=world_size,
        rank=rank,
    )
