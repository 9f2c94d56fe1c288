"""NextBatch API: errors, hashes, metadata, scale, shuffle quality, docs and layering."""

from __future__ import annotations

import ast
import doctest
import hashlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from umlos._generated import tags
from umlos._generated.records import DataCursor, ManifestDataConfig, SamplingMetadata
from umlos.codec import commit_hash, digest
from umlos.data import sampler
from umlos.data.sampler import (
    MAX_PERMUTED_BLOCKS,
    MODE_BLOCK_AFFINE,
    MODE_FEISTEL,
    MODE_SEQUENTIAL,
    data_replay_token,
    epoch_permutation,
    epoch_seed,
    next_batch,
    sampler_config_hash,
    sampler_config_set_hash,
    sampling_metadata,
)
from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    BatchSizeInconsistentError,
    CounterOverflowError,
    GlobalPositionExceedsCardinalityError,
    InvalidStageTypeError,
)

SEED = bytes(range(32))
START = DataCursor(epoch=0, global_position=0)
DATA_DIR = Path(sampler.__file__).resolve().parent
SAMPLER_MODULES = [
    "umlos.data.sampler",
    *sorted(f"umlos.data.{p.stem}" for p in DATA_DIR.glob("_sampler*.py")),
]


def _config(sampler_kind: str = "feistel", bs: int = 1 << 20, drop_last: bool = False) -> Any:
    return ManifestDataConfig(sampler=sampler_kind, sampler_block_size=bs, drop_last=drop_last)  # type: ignore[arg-type]


def _call(**overrides: Any) -> tuple[np.ndarray, DataCursor]:
    kwargs: dict[str, Any] = {
        "config": _config(),
        "cursor": START,
        "cardinality": 100,
        "global_batch_size": 8,
        "world_size": 2,
        "rank": 0,
        "stage_type": "train",
        "compute_seed": SEED,
        "dataset_key": "train",
    }
    kwargs.update(overrides)
    return next_batch(kwargs.pop("config"), kwargs.pop("cursor"), **kwargs)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"global_batch_size": 9, "world_size": 2}, "$.global_batch_size"),
        ({"global_batch_size": 3, "world_size": 4}, "$.global_batch_size"),  # B < world size
        ({"config": _config(drop_last=True), "global_batch_size": 128}, "$.global_batch_size"),
        ({"config": _config(bs=0)}, "$.data.sampler_block_size"),
    ],
    ids=["not-divisible", "batch-below-world-size", "drop-last-batch-over-n", "zero-block-size"],
)
def test_batch_size_inconsistent(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(BatchSizeInconsistentError) as info:
        _call(**overrides)
    assert info.value.path == path
    assert info.value.code_id == "BATCH_SIZE_INCONSISTENT"


def test_drop_last_with_batch_over_n_is_fine_for_eval() -> None:
    # drop_last is a train setting; eval reads all N whatever B is.
    idx, cur = _call(config=_config(drop_last=True), global_batch_size=128, stage_type="eval")
    assert idx.tolist() == list(range(64))
    assert cur == DataCursor(epoch=1, global_position=0)


@pytest.mark.parametrize(
    ("overrides", "position"),
    [
        ({"cursor": DataCursor(epoch=0, global_position=100)}, 100),
        ({"cursor": DataCursor(epoch=0, global_position=2**64 - 1), "stage_type": "eval"}, None),
        # With drop_last the epoch ends at 96: a cursor at 96..99 could only give an empty
        # global batch (D22), so it is refused like one past N.
        (
            {"cursor": DataCursor(epoch=0, global_position=96), "config": _config(drop_last=True)},
            96,
        ),
    ],
    ids=["at-n", "far-past-n-eval", "past-drop-last-limit"],
)
def test_cursor_past_the_end(overrides: dict[str, Any], position: int | None) -> None:
    with pytest.raises(GlobalPositionExceedsCardinalityError) as info:
        _call(**overrides)
    assert info.value.path == "$.cursor.global_position"
    assert info.value.context["cardinality"] == 100
    if position is not None:
        assert info.value.context["global_position"] == position


@pytest.mark.parametrize("stage", ["augment", "TRAIN", "", None])
def test_unknown_stage_type(stage: object) -> None:
    with pytest.raises(InvalidStageTypeError) as info:
        _call(stage_type=stage)
    assert info.value.path == "$.stage_type"
    with pytest.raises(InvalidStageTypeError):
        sampler_config_hash(_config(), stage)  # type: ignore[arg-type]


def test_epoch_counter_never_wraps() -> None:
    last = DataCursor(epoch=2**64 - 1, global_position=96)
    with pytest.raises(CounterOverflowError) as info:
        _call(cursor=last)
    assert info.value.context["counter_name"] == "data_epoch"
    # The same epoch can still be read up to its last batch.
    _, cur = _call(cursor=DataCursor(epoch=2**64 - 1, global_position=0))
    assert cur == DataCursor(epoch=2**64 - 1, global_position=8)


@pytest.mark.parametrize(
    ("overrides", "error", "path"),
    [
        ({"rank": 2}, ApiShapeMismatchError, "$.rank"),
        ({"rank": -1}, ApiShapeMismatchError, "$.rank"),
        ({"world_size": 0}, ApiShapeMismatchError, "$.world_size"),
        ({"world_size": 2**32}, ApiShapeMismatchError, "$.world_size"),
        ({"cardinality": 0}, ApiShapeMismatchError, "$.cardinality"),
        ({"cardinality": 2**64}, ApiShapeMismatchError, "$.cardinality"),
        ({"cardinality": True}, ApiTypeMismatchError, "$.cardinality"),
        ({"cardinality": 100.0}, ApiTypeMismatchError, "$.cardinality"),
        ({"global_batch_size": 0}, ApiShapeMismatchError, "$.global_batch_size"),
        ({"compute_seed": bytes(16)}, ApiShapeMismatchError, "$.compute_seed"),
        ({"compute_seed": "00" * 32}, ApiShapeMismatchError, "$.compute_seed"),
        (
            {"compute_seed": bytes(16), "stage_type": "eval"},
            ApiShapeMismatchError,
            "$.compute_seed",
        ),
        ({"dataset_key": b"train"}, ApiTypeMismatchError, "$.dataset_key"),
        ({"cursor": {"epoch": 0, "global_position": 0}}, ApiTypeMismatchError, "$.cursor"),
        (
            {"cursor": DataCursor(epoch=-1, global_position=0)},
            ApiShapeMismatchError,
            "$.cursor.epoch",
        ),
        ({"config": {"sampler": "feistel"}}, ApiTypeMismatchError, "$.data"),
        ({"config": _config("shuffle")}, ApiShapeMismatchError, "$.data.sampler"),
        (
            {"config": ManifestDataConfig(drop_last=1)},  # type: ignore[arg-type]
            ApiTypeMismatchError,
            "$.data.drop_last",
        ),
    ],
)
def test_arguments_outside_their_schema(
    overrides: dict[str, Any], error: type[Exception], path: str
) -> None:
    with pytest.raises(error) as info:
        _call(**overrides)
    assert info.value.path == path  # type: ignore[attr-defined]


def test_too_many_blocks_for_the_spec_sampler() -> None:
    n = (MAX_PERMUTED_BLOCKS + 1) * 4
    with pytest.raises(ApiShapeMismatchError) as info:
        _call(config=_config("spec_block_affine", bs=4), cardinality=n)
    assert info.value.path == "$.data.sampler_block_size"
    # The Feistel sampler has no blocks, so the same N is fine.
    idx, _ = _call(cardinality=n)
    assert idx.size == 4


@pytest.mark.parametrize("sampler_kind", ["spec_block_affine", "feistel"])
def test_index_at_checks_its_positions(sampler_kind: str) -> None:
    perm = epoch_permutation(
        _config(sampler_kind, 16), cardinality=50, compute_seed=SEED, dataset_key="k", epoch=0
    )
    assert perm.index_at(7).shape == (1,)
    assert perm.index_at([]).shape == (0,)
    assert perm.index_at(np.array([49], np.int8)).dtype == np.uint64
    with pytest.raises(GlobalPositionExceedsCardinalityError):
        perm.index_at([0, 50])
    with pytest.raises(ApiShapeMismatchError):
        perm.index_at([-1])
    with pytest.raises(ApiShapeMismatchError):
        perm.index_at([[1, 2]])
    with pytest.raises(ApiTypeMismatchError):
        perm.index_at([1.0])
    with pytest.raises(ApiTypeMismatchError):
        perm.index_at(np.array([True]))


def test_epoch_seed_refuses_bad_input() -> None:
    with pytest.raises(ApiShapeMismatchError):
        epoch_seed(SEED, "train", 2**64)
    with pytest.raises(ApiShapeMismatchError):
        epoch_seed(bytes(31), "train", 0)


# ------------------------------------------------------------------------------------ seeds


def test_epoch_seed_is_the_compute_seed_commitment() -> None:
    # ADR 0008: compute_seed replaces the spec's [replay_token, manifest_hash] prefix.
    want = commit_hash(tags.NEXTBATCH_EPOCH_SEED, [SEED, "train", 7])[:16]
    assert epoch_seed(SEED, "train", 7) == want
    assert epoch_seed(SEED, "val", 7) != want


def test_order_depends_on_position_not_on_batching() -> None:
    # Same (compute_seed, epoch, position) -> same index, whatever B and world size (§3.6).
    a, _ = _call(global_batch_size=8, world_size=1, cursor=DataCursor(epoch=3, global_position=16))
    b, _ = _call(
        global_batch_size=48, world_size=3, rank=0, cursor=DataCursor(epoch=3, global_position=8)
    )
    assert a.tolist() == b[8:16].tolist()


# ------------------------------------------------------------------------------------ hashes


def test_sampler_config_hash_records_the_mode_and_settings() -> None:
    spec = _config("spec_block_affine", 64, False)
    feistel = _config("feistel", 64, False)
    hashes = {
        sampler_config_hash(spec),
        sampler_config_hash(feistel),
        sampler_config_hash(_config("spec_block_affine", 65, False)),
        sampler_config_hash(_config("spec_block_affine", 64, True)),
        sampler_config_hash(spec, "eval"),
    }
    assert len(hashes) == 5
    # Eval reads sequentially whatever the train sampler is.
    assert sampler_config_hash(spec, "eval") == sampler_config_hash(feistel, "infer")
    assert sampler_config_hash(feistel) == digest(
        [
            MODE_FEISTEL,
            [
                64,
                False,
                "epoch_seed_rule",
                "feistel_alternating_8r_splitmix64_cycle_walk",
                "rank_contiguous_shard",
            ],
        ]
    )


def test_defaults_are_the_manifest_defaults() -> None:
    assert sampler_config_hash(ManifestDataConfig()) == sampler_config_hash(
        _config("feistel", 1 << 20, False)
    )
    a, _ = _call(config=ManifestDataConfig())
    b, _ = _call(config=_config("feistel", 1 << 20, False))
    assert a.tolist() == b.tolist()


def test_sampler_config_set_hash_sorts_by_dataset_key() -> None:
    h1 = sampler_config_hash(_config("feistel"))
    h2 = sampler_config_hash(_config("spec_block_affine"))
    got = sampler_config_set_hash({"val": h2, "train": h1})
    assert got == commit_hash(tags.SAMPLER_CONFIG_SET, [["train", h1], ["val", h2]])
    assert got != sampler_config_set_hash({"val": h1, "train": h2})
    with pytest.raises(ApiShapeMismatchError):
        sampler_config_set_hash({"train": b"short"})


# ------------------------------------------------------------------------------------ metadata


def _meta(**overrides: Any) -> SamplingMetadata:
    kwargs: dict[str, Any] = {
        "config": _config(),
        "cursor": START,
        "cardinality": 100,
        "global_batch_size": 8,
        "world_size": 2,
        "rank": 0,
        "stage_type": "train",
        "compute_seed": SEED,
        "dataset_key": "train",
        "replay_token": bytes(32),
    }
    kwargs.update(overrides)
    meta = sampling_metadata(kwargs.pop("config"), kwargs.pop("cursor"), **kwargs)
    # The record validates against its schema.
    assert SamplingMetadata.from_obj(meta.to_obj()) == meta
    return meta


def test_metadata_of_a_train_batch() -> None:
    cursor = DataCursor(epoch=2, global_position=96)
    meta = _meta(cursor=cursor, rank=1)
    assert meta.sampling_mode == MODE_FEISTEL
    assert meta.subsampling_mode == "SHUFFLE_WITHOUT_REPLACEMENT"
    assert meta.is_shuffled
    assert (meta.epoch, meta.global_position) == (2, 96)
    assert (meta.micro_batch_size, meta.global_batch_size) == (4, 8)
    assert meta.effective_batch_size == 4  # the short last batch of the epoch
    assert meta.effective_q == 0.08
    assert meta.blocks_materialized == 0
    assert meta.sampler_config_hash == sampler_config_hash(_config())
    assert meta.epoch_seed_hash == hashlib.sha256(epoch_seed(SEED, "train", 2)).digest()
    assert meta.data_replay_t == commit_hash(
        tags.NEXTBATCH_REPLAY_TOKEN, [bytes(32), "train", 2, 96, 2, 1]
    )
    assert meta.data_replay_t == data_replay_token(bytes(32), "train", cursor, 2, 1)


def test_metadata_counts_the_blocks_a_rank_touches() -> None:
    cfg = _config("spec_block_affine", 16)
    assert _meta(config=cfg).blocks_materialized == 1  # positions 0..3
    cursor = DataCursor(epoch=0, global_position=14)
    assert _meta(config=cfg, cursor=cursor).blocks_materialized == 2  # positions 14..17
    wide = _meta(config=cfg, cursor=cursor, world_size=1, global_batch_size=40)
    assert wide.blocks_materialized == 4  # positions 14..53
    # The tail block (96..99) counts too.
    tail = DataCursor(epoch=0, global_position=88)
    assert (
        _meta(config=cfg, cursor=tail, world_size=1, global_batch_size=16).blocks_materialized == 2
    )
    # A rank with no positions touches no block.
    end = DataCursor(epoch=0, global_position=96)
    assert _meta(config=cfg, cursor=end, global_batch_size=16, rank=1).blocks_materialized == 0


def test_metadata_of_an_eval_batch() -> None:
    meta = _meta(stage_type="eval", config=_config("spec_block_affine"))
    assert meta.sampling_mode == MODE_SEQUENTIAL
    assert meta.subsampling_mode == "NONE"
    assert not meta.is_shuffled
    assert meta.blocks_materialized == 0


# ------------------------------------------------------------------------------------ scale


def test_a_billion_rows_with_the_default_block_size() -> None:
    # Kernel §3.6's scale vector: N >= 1e9, BS = 2^20 (954 blocks), nothing of size N built.
    n = 10**9 + 7
    cursor = DataCursor(epoch=1, global_position=n - 5)
    for kind in ("spec_block_affine", "feistel"):
        idx, cur = _call(config=_config(kind), cardinality=n, cursor=cursor, world_size=1)
        assert idx.size == 5
        assert int(idx.max()) < n
        assert cur == DataCursor(epoch=2, global_position=0)


@pytest.mark.parametrize("sampler_kind", ["spec_block_affine", "feistel"])
def test_a_million_row_epoch_is_vectorized(sampler_kind: str) -> None:
    # A whole epoch of 10^6 goes through numpy, not a Python loop per position.
    n = 10**6
    perm = epoch_permutation(
        _config(sampler_kind, 1024), cardinality=n, compute_seed=SEED, dataset_key="t", epoch=0
    )
    idx = perm.index_at(np.arange(n, dtype=np.uint64))
    assert np.array_equal(np.sort(idx), np.arange(n, dtype=np.uint64))


# ------------------------------------------------------------------------------------ quality

# Class sizes of scikit-learn's digits (N = 1797), stored sorted by class: the §12.3 case.
DIGITS_CLASS_SIZES = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
DIGITS_LABELS = np.repeat(np.arange(10), DIGITS_CLASS_SIZES)


def _label_order(kind: str, epoch: int) -> np.ndarray:
    perm = epoch_permutation(
        _config(kind), cardinality=1797, compute_seed=SEED, dataset_key="train", epoch=epoch
    )
    return DIGITS_LABELS[perm.index_at(np.arange(1797)).astype(np.intp)]


def _distinct_label_transitions(labels: np.ndarray) -> int:
    return len(set(zip(labels[:-1].tolist(), labels[1:].tolist(), strict=True)))


def _mean_batch_chi2(labels: np.ndarray, batch: int = 32) -> float:
    counts = np.stack(
        [
            np.bincount(labels[i : i + batch], minlength=10)
            for i in range(0, 1797 - batch + 1, batch)
        ]
    )
    expected = batch / 10
    return float(((counts - expected) ** 2 / expected).sum(axis=1).mean())


def test_spec_sampler_barely_shuffles_a_small_class_sorted_dataset() -> None:
    # §12.3: with N < BS the epoch is one affine map p -> a·p + c mod N, so consecutive
    # positions are always a apart and the label sequence is a rotation: each class is followed
    # by two or three others only (about 20 of the 100 possible transitions), epoch after epoch.
    # (Its batch label counts are either far too even or, for a small stride, far too clumped.)
    for epoch in range(8):
        perm = epoch_permutation(
            _config("spec_block_affine"),
            cardinality=1797,
            compute_seed=SEED,
            dataset_key="train",
            epoch=epoch,
        )
        idx = perm.index_at(np.arange(1797)).astype(np.int64)
        assert len(set(np.diff(idx) % 1797)) == 1, "one fixed stride"
        assert _distinct_label_transitions(_label_order("spec_block_affine", epoch)) <= 30


def test_feistel_sampler_shuffles_a_small_class_sorted_dataset() -> None:
    # Random order: every one of the 100 label transitions shows up in 1796 steps, and the
    # label counts of a 32-sample batch have a chi-square of about 9 (9 degrees of freedom,
    # times the finite-population factor 1 - 32/1797).
    for epoch in range(8):
        labels = _label_order("feistel", epoch)
        assert _distinct_label_transitions(labels) >= 95, epoch
    chi2 = [_mean_batch_chi2(_label_order("feistel", e)) for e in range(8)]
    assert 7.5 < np.mean(chi2) < 10.5


# ------------------------------------------------------------------------------------ docs


@pytest.mark.parametrize("name", SAMPLER_MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_public_name_is_documented_with_an_example() -> None:
    for name in sampler.__all__:
        obj = getattr(sampler, name)
        if callable(obj):
            assert obj.__doc__ and ">>>" in obj.__doc__, name


def test_mode_names_are_the_schema_enum() -> None:
    import typing

    from umlos._generated import records

    hints = typing.get_type_hints(records.SamplingMetadata)
    assert set(typing.get_args(hints["sampling_mode"])) == {
        MODE_BLOCK_AFFINE,
        MODE_FEISTEL,
        MODE_SEQUENTIAL,
    }


@pytest.mark.parametrize("name", SAMPLER_MODULES)
def test_sampler_imports_only_lower_layers(name: str) -> None:
    # ADR 0008: data/ sits above codec and numerics and below model/ and train/. The sampler
    # needs nothing from the manifest layer either: it gets plain values.
    path = Path(importlib.import_module(name).__file__ or "")
    allowed = (
        "umlos._generated",
        "umlos.codec",
        "umlos.numerics",
        "umlos.errors",
        "umlos.data._sampler",
    )
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("umlos"):
            assert node.module.startswith(allowed), (name, node.module)
