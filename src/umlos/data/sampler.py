"""NextBatch: which sample indices each rank reads next (kernel §3, ADR 0010).

Everything here is a pure function of its arguments; the only state is the caller's
:class:`~umlos._generated.records.DataCursor` ``{epoch, global_position}``, which
:func:`next_batch` returns advanced and never keeps. A train epoch is a bijection of ``[0, N)``
chosen by the epoch seed (``spec_block_affine``: the upstream block Fisher–Yates + affine map;
``feistel``: a keyed Feistel network with cycle-walking, the template default); eval and infer
read ``0 … N−1`` in order, once. Rank ``r`` of ``W`` takes the contiguous slice
``[r · B/W, (r+1) · B/W)`` of the global batch, so concatenating the shards in rank order gives
the global batch. The exact definitions are ``docs/formats/nextbatch.md``.

>>> from umlos._generated.records import DataCursor, ManifestDataConfig
>>> cfg = ManifestDataConfig(sampler="feistel")
>>> seed = bytes(32)  # a compute_seed (ADR 0008)
>>> idx, cur = next_batch(cfg, DataCursor(epoch=0, global_position=0), cardinality=10,
...     global_batch_size=4, world_size=2, rank=1, stage_type="train", compute_seed=seed,
...     dataset_key="train")
>>> idx.dtype.name, idx.size, cur
('uint64', 2, DataCursor(epoch=0, global_position=4))
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos._generated import tags
from umlos._generated.records import DataCursor, ManifestDataConfig, SamplingMetadata
from umlos.codec import commit_hash, digest
from umlos.data._sampler_feistel import FEISTEL_ROUNDS, FeistelPermutation
from umlos.data._sampler_spec import MAX_PERMUTED_BLOCKS, SpecBlockAffinePermutation
from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    BatchSizeInconsistentError,
    CounterOverflowError,
    GlobalPositionExceedsCardinalityError,
    InvalidStageTypeError,
)
from umlos.numerics.policy import UINT32_MAX, UINT64_MAX

__all__ = [
    "EPOCH_SEED_BYTES",
    "FEISTEL_ROUNDS",
    "MAX_PERMUTED_BLOCKS",
    "MODE_BLOCK_AFFINE",
    "MODE_FEISTEL",
    "MODE_SEQUENTIAL",
    "EpochPermutation",
    "FeistelPermutation",
    "SpecBlockAffinePermutation",
    "data_replay_token",
    "epoch_permutation",
    "epoch_seed",
    "next_batch",
    "sampler_config_hash",
    "sampler_config_set_hash",
    "sampling_metadata",
]

SamplingMode: TypeAlias = Literal[
    "SHUFFLE_WITHOUT_REPLACEMENT_BLOCK_AFFINE_V1",
    "SHUFFLE_WITHOUT_REPLACEMENT_FEISTEL_V1",
    "SEQUENTIAL_V1",
]
StageType: TypeAlias = Literal["train", "eval", "infer"]

# Values of contracts/schemas/ops_data.yaml#/$defs/sampling_mode (kernel §3.6).
MODE_BLOCK_AFFINE: Final[SamplingMode] = "SHUFFLE_WITHOUT_REPLACEMENT_BLOCK_AFFINE_V1"
"""Train sampling mode of ``sampler: spec_block_affine``."""
MODE_FEISTEL: Final[SamplingMode] = "SHUFFLE_WITHOUT_REPLACEMENT_FEISTEL_V1"
"""Train sampling mode of ``sampler: feistel``."""
MODE_SEQUENTIAL: Final[SamplingMode] = "SEQUENTIAL_V1"
"""Sampling mode of eval and infer stages."""

EPOCH_SEED_BYTES: Final = 16
"""An epoch seed is the first 16 bytes of its commitment: one Philox key + counter base (§1.3)."""
_COMPUTE_SEED_BYTES: Final = 32  # a commit_hash output (ADR 0008)

# Rule names after the mode string in sampler_config_hash (kernel §3.6). The block-affine list is
# the spec's, literally (D21); the Feistel list names our rules, versioned with the mode.
_SPEC_RULES: Final = ("epoch_seed_rule", "intra_block_affine_coprime", "rank_contiguous_shard")
_FEISTEL_RULES: Final = (
    "epoch_seed_rule",
    "feistel_alternating_8r_splitmix64_cycle_walk",
    "rank_contiguous_shard",
)
_STAGES: Final = ("train", "eval", "infer")
_SAMPLERS: Final = ("spec_block_affine", "feistel")


class EpochPermutation(Protocol):
    """One train epoch's bijection of ``[0, cardinality)``: position → sample index.

    >>> perm = epoch_permutation(ManifestDataConfig(), cardinality=5, compute_seed=bytes(32),
    ...     dataset_key="train", epoch=0)
    >>> sorted(perm.index_at(np.arange(5, dtype=np.uint64)).tolist())
    [0, 1, 2, 3, 4]
    """

    @property
    def cardinality(self) -> int:
        """N, the size of the permuted range."""

    def index_at(self, positions: ArrayLike) -> NDArray[np.uint64]:
        """Sample indices (uint64) at 1-D integer ``positions``, each ``< cardinality``."""


@dataclass(frozen=True, slots=True)
class _Settings:
    sampler: Literal["spec_block_affine", "feistel"]
    block_size: int
    drop_last: bool


def _settings(config: ManifestDataConfig) -> _Settings:
    """The config with the manifest defaults filled in, checked as the schema would."""
    if not isinstance(config, ManifestDataConfig):
        raise ApiTypeMismatchError(
            f"expected ManifestDataConfig, got {type(config).__name__}", path="$.data"
        )
    d = ManifestDataConfig.defaults
    sampler = d["sampler"] if config.sampler is None else config.sampler
    block_size = (
        d["sampler_block_size"] if config.sampler_block_size is None else config.sampler_block_size
    )
    drop_last = d["drop_last"] if config.drop_last is None else config.drop_last
    if sampler not in _SAMPLERS:
        raise ApiShapeMismatchError(
            f"sampler {sampler!r} is not one of {list(_SAMPLERS)}",
            reason="CONSTRAINT",
            path="$.data.sampler",
        )
    if type(block_size) is not int or not 0 <= block_size <= UINT64_MAX:
        raise ApiShapeMismatchError(
            f"sampler_block_size {block_size!r} is not a uint64",
            reason="CONSTRAINT",
            path="$.data.sampler_block_size",
        )
    if block_size == 0:
        # Kernel §3.1 files a zero block size under the batch-size code.
        raise BatchSizeInconsistentError(
            "sampler_block_size is 0", path="$.data.sampler_block_size"
        )
    if type(drop_last) is not bool:
        raise ApiTypeMismatchError(
            f"expected bool, got {type(drop_last).__name__}", path="$.data.drop_last"
        )
    return _Settings(sampler, block_size, drop_last)


def _uint(value: object, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ApiTypeMismatchError(f"expected integer, got {type(value).__name__}", path=path)
    if not lo <= int(value) <= hi:
        raise ApiShapeMismatchError(
            f"{value} is outside [{lo}, {hi}]", reason="CONSTRAINT", path=path
        )
    return int(value)


def _check_key(dataset_key: object) -> str:
    if not isinstance(dataset_key, str):
        raise ApiTypeMismatchError(
            f"expected string, got {type(dataset_key).__name__}", path="$.dataset_key"
        )
    return dataset_key


def _check_seed(compute_seed: object) -> bytes:
    if not isinstance(compute_seed, bytes) or len(compute_seed) != _COMPUTE_SEED_BYTES:
        got = (
            f"{len(compute_seed)} bytes"
            if isinstance(compute_seed, bytes)
            else type(compute_seed).__name__
        )
        raise ApiShapeMismatchError(
            f"compute_seed must be {_COMPUTE_SEED_BYTES} bytes, got {got}",
            reason="CONSTRAINT",
            path="$.compute_seed",
        )
    return compute_seed


def _check_stage(stage_type: object) -> StageType:
    if stage_type == "train":
        return "train"
    if stage_type == "eval":
        return "eval"
    if stage_type == "infer":
        return "infer"
    raise InvalidStageTypeError(
        f"stage type {stage_type!r} is not one of {list(_STAGES)}",
        path="$.stage_type",
        context={"stage_id": stage_type},
    )


def epoch_seed(compute_seed: bytes, dataset_key: str, epoch: int) -> bytes:
    """The 16-byte seed of one dataset's epoch (kernel §3.2 with ADR 0008's seed policy).

    ``commit_hash(NEXTBATCH_EPOCH_SEED, [compute_seed, dataset_key, epoch])[:16]``: the spec's
    ``[replay_token, manifest_hash, …]`` prefix is replaced by the one ``compute_seed``, so the
    data order does not change with the backend, environment or driver.

    >>> epoch_seed(bytes(32), "train", 0) != epoch_seed(bytes(32), "train", 1)
    True
    >>> len(epoch_seed(bytes(32), "train", 0))
    16
    """
    seed = _check_seed(compute_seed)
    key = _check_key(dataset_key)
    ep = _uint(epoch, "$.epoch", 0, UINT64_MAX)
    return commit_hash(tags.NEXTBATCH_EPOCH_SEED, [seed, key, ep])[:EPOCH_SEED_BYTES]


def _permutation(settings: _Settings, seed: bytes, cardinality: int) -> EpochPermutation:
    if settings.sampler == "feistel":
        return FeistelPermutation.from_seed(seed, cardinality)
    if cardinality // settings.block_size > MAX_PERMUTED_BLOCKS:
        raise ApiShapeMismatchError(
            f"{cardinality // settings.block_size} full blocks exceed the limit of "
            f"{MAX_PERMUTED_BLOCKS}; raise sampler_block_size or use the feistel sampler",
            reason="CONSTRAINT",
            path="$.data.sampler_block_size",
        )
    return SpecBlockAffinePermutation.from_seed(seed, cardinality, settings.block_size)


# An epoch of at most this many samples is mapped once and then sliced: evaluating the
# permutation per call costs ~0.3 ms, half of a small model's step. 2^22 uint64 = 32 MiB.
MATERIALIZE_MAX: Final = 1 << 22


@functools.lru_cache(maxsize=4)
def _epoch_indices(settings: _Settings, seed: bytes, cardinality: int) -> NDArray[np.uint64]:
    """The whole epoch's index sequence (read-only), for epochs up to :data:`MATERIALIZE_MAX`."""
    perm = _permutation(settings, seed, cardinality)
    out = perm.index_at(np.arange(cardinality, dtype=np.uint64))
    out.flags.writeable = False
    return out


def epoch_permutation(
    config: ManifestDataConfig,
    *,
    cardinality: int,
    compute_seed: bytes,
    dataset_key: str,
    epoch: int,
) -> EpochPermutation:
    """The train permutation of one epoch, for the config's sampler.

    Nothing of size N is built: ``index_at`` evaluates only the positions it is given (the
    block-affine sampler keeps its O(N / BS) block order).

    >>> cfg = ManifestDataConfig(sampler="spec_block_affine", sampler_block_size=4)
    >>> perm = epoch_permutation(cfg, cardinality=10, compute_seed=bytes(32),
    ...     dataset_key="train", epoch=3)
    >>> type(perm).__name__, sorted(perm.index_at(np.arange(10, dtype=np.uint64)).tolist())[-1]
    ('SpecBlockAffinePermutation', 9)
    """
    settings = _settings(config)
    n = _uint(cardinality, "$.cardinality", 1, UINT64_MAX)
    return _permutation(settings, epoch_seed(compute_seed, dataset_key, epoch), n)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One call's global arithmetic, shared by :func:`next_batch` and :func:`sampling_metadata`."""

    settings: _Settings
    stage: StageType
    cardinality: int
    batch: int
    micro: int
    limit: int
    first: int  # this rank's first position
    stop: int  # one past this rank's last position (== first for an empty shard)
    produced: int  # positions the whole global batch covers
    cursor_next: DataCursor


def _plan(
    config: ManifestDataConfig,
    cursor: DataCursor,
    *,
    cardinality: int,
    global_batch_size: int,
    world_size: int,
    rank: int,
    stage_type: str,
    compute_seed: bytes,
    dataset_key: str,
) -> _Plan:
    settings = _settings(config)
    stage = _check_stage(stage_type)
    key = _check_key(dataset_key)
    _check_seed(compute_seed)  # eval does not use it, but the call is the same for every stage
    if not isinstance(cursor, DataCursor):
        raise ApiTypeMismatchError(
            f"expected DataCursor, got {type(cursor).__name__}", path="$.cursor"
        )
    epoch = _uint(cursor.epoch, "$.cursor.epoch", 0, UINT64_MAX)
    g = _uint(cursor.global_position, "$.cursor.global_position", 0, UINT64_MAX)
    n = _uint(cardinality, "$.cardinality", 1, UINT64_MAX)
    b = _uint(global_batch_size, "$.global_batch_size", 1, UINT64_MAX)
    ws = _uint(world_size, "$.world_size", 1, UINT32_MAX)
    r = _uint(rank, "$.rank", 0, ws - 1)
    context = {"dataset_key": key, "global_batch_size": b, "world_size": ws}
    if b % ws:
        # Also covers ws > 1 with B < ws (kernel §3.1): then B % ws = B ≠ 0.
        raise BatchSizeInconsistentError(
            f"global batch size {b} is not divisible by world size {ws}",
            path="$.global_batch_size",
            context=context,
        )
    limit = n
    if stage == "train" and settings.drop_last:
        limit = (n // b) * b
        if limit == 0:
            # Every batch would be dropped: an epoch with no batch (kernel §3.1, D22).
            raise BatchSizeInconsistentError(
                f"drop_last with global batch size {b} > cardinality {n} leaves no batch",
                path="$.global_batch_size",
                context={**context, "cardinality": n},
            )
    if g >= limit:
        raise GlobalPositionExceedsCardinalityError(
            f"cursor {g} is past the end of {key} (epoch limit {limit}, {n} rows)",
            path="$.cursor.global_position",
            context={"dataset_key": key, "global_position": g, "cardinality": n, "limit": limit},
        )
    micro = b // ws
    end = min(g + b, limit)  # train epochs never wrap inside a batch; eval stops at N (D10)
    first = min(g + r * micro, end)
    stop = min(first + micro, end)
    produced = end - g
    if end >= limit:
        if epoch == UINT64_MAX:
            raise CounterOverflowError(
                f"epoch counter of {key} would pass uint64",
                path="$.cursor.epoch",
                context={"counter_name": "data_epoch", "counter_value": epoch},
            )
        cursor_next = DataCursor(epoch=epoch + 1, global_position=0)
    else:
        cursor_next = DataCursor(epoch=epoch, global_position=end)
    return _Plan(settings, stage, n, b, micro, limit, first, stop, produced, cursor_next)


def next_batch(
    config: ManifestDataConfig,
    cursor: DataCursor,
    *,
    cardinality: int,
    global_batch_size: int,
    world_size: int,
    rank: int,
    stage_type: str,
    compute_seed: bytes,
    dataset_key: str,
) -> tuple[NDArray[np.uint64], DataCursor]:
    """This rank's sample indices for the next global batch, and the cursor after the batch.

    With ``g = cursor.global_position``, ``B = global_batch_size`` and ``mb = B / world_size``,
    the global batch is positions ``[g, min(g + B, limit))`` and rank ``r`` takes
    ``[g + r·mb, g + (r+1)·mb)`` of it (contiguous shards; a short last batch leaves the high
    ranks fewer or no indices). Train: ``limit`` is N, or ``(N // B)·B`` with ``drop_last``, and
    positions map through the epoch's permutation. Eval/infer: ``limit`` is N, ``drop_last`` is
    ignored and index = position (no wrap, D10). The cursor moves by the whole global batch
    (every rank gets the same ``cursor_next``) and rolls to ``{epoch + 1, 0}`` at ``limit``, so
    no global batch is ever empty (D22).

    Raises :class:`~umlos.errors.BatchSizeInconsistentError` (``B % world_size != 0``, a zero
    block size, or ``drop_last`` with ``B > N``),
    :class:`~umlos.errors.GlobalPositionExceedsCardinalityError` (cursor at or past ``limit``),
    :class:`~umlos.errors.InvalidStageTypeError`, :class:`~umlos.errors.CounterOverflowError`
    (epoch past uint64), and ``ApiTypeMismatchError`` / ``ApiShapeMismatchError`` for
    arguments outside their schema types and ranges.

    >>> from umlos._generated.records import DataCursor, ManifestDataConfig
    >>> cfg = ManifestDataConfig(drop_last=False)
    >>> args = dict(cardinality=5, global_batch_size=4, world_size=1, rank=0,
    ...     compute_seed=bytes(32), dataset_key="val")
    >>> idx, cur = next_batch(cfg, DataCursor(epoch=0, global_position=0), stage_type="eval", **args)
    >>> idx.tolist(), cur
    ([0, 1, 2, 3], DataCursor(epoch=0, global_position=4))
    >>> idx, cur = next_batch(cfg, cur, stage_type="eval", **args)
    >>> idx.tolist(), cur
    ([4], DataCursor(epoch=1, global_position=0))
    """
    plan = _plan(
        config,
        cursor,
        cardinality=cardinality,
        global_batch_size=global_batch_size,
        world_size=world_size,
        rank=rank,
        stage_type=stage_type,
        compute_seed=compute_seed,
        dataset_key=dataset_key,
    )
    positions = np.arange(plan.first, plan.stop, dtype=np.uint64)
    if plan.stage != "train" or positions.size == 0:
        return positions, plan.cursor_next
    seed = epoch_seed(compute_seed, dataset_key, cursor.epoch)
    if plan.cardinality <= MATERIALIZE_MAX:  # same function, evaluated once per epoch
        epoch = _epoch_indices(plan.settings, seed, plan.cardinality)
        return epoch[plan.first : plan.stop].copy(), plan.cursor_next
    perm = _permutation(plan.settings, seed, plan.cardinality)
    return perm.index_at(positions), plan.cursor_next


def _mode(settings: _Settings, stage: StageType) -> SamplingMode:
    if stage != "train":
        return MODE_SEQUENTIAL
    return MODE_FEISTEL if settings.sampler == "feistel" else MODE_BLOCK_AFFINE


def sampler_config_hash(config: ManifestDataConfig, stage_type: str = "train") -> bytes:
    """``digest([sampling_mode, [BS, drop_last, "epoch_seed_rule", rule names…]])`` (§3.6).

    A plain digest: the mode string in the first slot is the domain separator (D21). The
    block-affine and sequential modes use the spec's rule list literally; the Feistel mode names
    its own rules. ``BS`` and ``drop_last`` are the config's values (defaults filled) even where
    the mode ignores them, so the hash is a function of the config alone. It does not depend on
    the dataset or its cardinality.

    >>> h = sampler_config_hash(ManifestDataConfig(sampler="spec_block_affine"))
    >>> h == digest([MODE_BLOCK_AFFINE, [1 << 20, False, "epoch_seed_rule",
    ...     "intra_block_affine_coprime", "rank_contiguous_shard"]])
    True
    >>> h != sampler_config_hash(ManifestDataConfig(sampler="feistel"))
    True
    """
    settings = _settings(config)
    mode = _mode(settings, _check_stage(stage_type))
    rules = _FEISTEL_RULES if mode == MODE_FEISTEL else _SPEC_RULES
    return digest([mode, [settings.block_size, settings.drop_last, *rules]])


def sampler_config_set_hash(hashes: Mapping[str, bytes]) -> bytes:
    """Run-level commitment ``commit_hash(SAMPLER_CONFIG_SET, [[key, hash], …] sorted by key)``.

    The value checkpoints and certificates hold for every dataset the run reads.

    >>> h = sampler_config_hash(ManifestDataConfig())
    >>> sampler_config_set_hash({"val": h, "train": h}) == sampler_config_set_hash(
    ...     {"train": h, "val": h})
    True
    """
    pairs = []
    for key in sorted(hashes):
        value = hashes[key]
        if not isinstance(value, bytes) or len(value) != 32:
            raise ApiShapeMismatchError(
                "a sampler_config_hash is 32 bytes", reason="CONSTRAINT", path=f"$.{key}"
            )
        pairs.append([_check_key(key), value])
    return commit_hash(tags.SAMPLER_CONFIG_SET, pairs)


def data_replay_token(
    replay_token: bytes, dataset_key: str, cursor: DataCursor, world_size: int, rank: int
) -> bytes:
    """The per-call trace token ``data_replay_t`` (kernel §3.2): traced, never a seed.

    ``commit_hash(NEXTBATCH_REPLAY_TOKEN, [replay_token, dataset_key, epoch, global_position,
    world_size, rank])``.

    >>> len(data_replay_token(bytes(32), "train", DataCursor(epoch=0, global_position=0), 1, 0))
    32
    """
    payload = [
        replay_token,
        _check_key(dataset_key),
        _uint(cursor.epoch, "$.cursor.epoch", 0, UINT64_MAX),
        _uint(cursor.global_position, "$.cursor.global_position", 0, UINT64_MAX),
        _uint(world_size, "$.world_size", 1, UINT32_MAX),
        _uint(rank, "$.rank", 0, UINT32_MAX),
    ]
    return commit_hash(tags.NEXTBATCH_REPLAY_TOKEN, payload)


def sampling_metadata(
    config: ManifestDataConfig,
    cursor: DataCursor,
    *,
    cardinality: int,
    global_batch_size: int,
    world_size: int,
    rank: int,
    stage_type: str,
    compute_seed: bytes,
    dataset_key: str,
    replay_token: bytes,
) -> SamplingMetadata:
    """The trace facts of the :func:`next_batch` call with the same arguments (kernel §3.6).

    ``blocks_materialized`` counts the sampler blocks this rank's positions fall in (block-affine
    mode only; 0 for Feistel and sequential reads, which have no blocks).

    >>> meta = sampling_metadata(ManifestDataConfig(), DataCursor(epoch=0, global_position=8),
    ...     cardinality=10, global_batch_size=4, world_size=2, rank=1, stage_type="train",
    ...     compute_seed=bytes(32), dataset_key="train", replay_token=bytes(32))
    >>> meta.sampling_mode, meta.effective_batch_size, meta.effective_q
    ('SHUFFLE_WITHOUT_REPLACEMENT_FEISTEL_V1', 2, 0.4)
    """
    plan = _plan(
        config,
        cursor,
        cardinality=cardinality,
        global_batch_size=global_batch_size,
        world_size=world_size,
        rank=rank,
        stage_type=stage_type,
        compute_seed=compute_seed,
        dataset_key=dataset_key,
    )
    mode = _mode(plan.settings, plan.stage)
    blocks = 0
    if mode == MODE_BLOCK_AFFINE and plan.stop > plan.first:
        bs = plan.settings.block_size
        blocks = (plan.stop - 1) // bs - plan.first // bs + 1
    seed = epoch_seed(compute_seed, dataset_key, cursor.epoch)
    return SamplingMetadata(
        sampling_mode=mode,
        subsampling_mode="SHUFFLE_WITHOUT_REPLACEMENT" if plan.stage == "train" else "NONE",
        is_shuffled=plan.stage == "train",
        epoch=cursor.epoch,
        global_position=cursor.global_position,
        micro_batch_size=plan.micro,
        global_batch_size=plan.batch,
        effective_batch_size=plan.produced,
        effective_q=float(plan.batch) / float(plan.cardinality),
        blocks_materialized=blocks,
        sampler_config_hash=sampler_config_hash(config, plan.stage),
        epoch_seed_hash=hashlib.sha256(seed).digest(),
        data_replay_t=data_replay_token(replay_token, dataset_key, cursor, world_size, rank),
    )
