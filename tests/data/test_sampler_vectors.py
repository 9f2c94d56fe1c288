"""Golden vectors of NextBatch, and the scalar reference they come from.

The reference below is a one-value-at-a-time reading of ``docs/formats/nextbatch.md`` in plain
Python integers. It shares no code with ``umlos.data``: Philox words come from
``tests/numerics/scalar_reference.py`` and the commitment bytes from a hand-written CBOR encoder.
The pinned files are regenerated from it, never from the library:

    .venv/bin/python -m tests.data.test_sampler_vectors

Changing a pinned file changes which samples every run reads: a MAJOR change of the sampler
(ADR 0010).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.numerics import scalar_reference as philox_ref
from umlos._generated import tags
from umlos._generated.records import DataCursor, ManifestDataConfig
from umlos.data.sampler import (
    FeistelPermutation,
    SpecBlockAffinePermutation,
    epoch_permutation,
    epoch_seed,
    next_batch,
    sampler_config_hash,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FILES = {
    "spec_block_affine": VECTORS / "nextbatch_spec_block_affine.json",
    "feistel": VECTORS / "nextbatch_feistel.json",
    "sequential": VECTORS / "nextbatch_sequential.json",
}
COMPUTE_SEED = bytes.fromhex("243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89")
DATASET_KEY = "train"
EPOCHS = (0, 1, 2)
WORLD_SIZES = (1, 2, 3, 4, 8)
M32 = 0xFFFF_FFFF
M64 = 0xFFFF_FFFF_FFFF_FFFF
FEISTEL_ROUNDS = 8
DEFAULT_BS = 1 << 20


# --------------------------------------------------------------------------------------------
# Scalar reference
# --------------------------------------------------------------------------------------------


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(n)


def _cbor(obj: object) -> bytes:
    """The canonical CBOR of the few shapes a commitment here holds."""
    if isinstance(obj, bool):
        return b"\xf5" if obj else b"\xf4"
    if isinstance(obj, int):
        return _cbor_head(0, obj)
    if isinstance(obj, bytes):
        return _cbor_head(2, len(obj)) + obj
    if isinstance(obj, str):
        raw = obj.encode()
        return _cbor_head(3, len(raw)) + raw
    if isinstance(obj, list):
        return _cbor_head(4, len(obj)) + b"".join(_cbor(x) for x in obj)
    raise TypeError(obj)


def ref_epoch_seed(compute_seed: bytes, key: str, epoch: int) -> bytes:
    preimage = _cbor([tags.NEXTBATCH_EPOCH_SEED, [compute_seed, key, epoch]])
    return hashlib.sha256(preimage).digest()[:16]


def _stream(seed: bytes) -> philox_ref.ScalarStream:
    key, base = philox_ref.seed_state(seed)
    return philox_ref.ScalarStream(key, base)


def ref_block_affine(seed: bytes, n: int, bs: int) -> Callable[[int], int]:
    """Position -> index of one epoch of the block-affine sampler."""
    num_full = n // bs
    order = philox_ref.permutation(_stream(seed), num_full)
    key = [int.from_bytes(seed[0:4], "little"), int.from_bytes(seed[4:8], "little")]
    w2 = int.from_bytes(seed[8:12], "little")
    w3 = int.from_bytes(seed[12:16], "little")

    def index_at(p: int) -> int:
        blk = p // bs
        pb = num_full if blk == num_full else order[blk]
        start = pb * bs
        m = min(bs, n - start)
        if m == 1:
            return start
        x = philox_ref.philox([w2, w3, pb & M32, pb >> 32], key)
        k0 = x[0] | x[1] << 32
        k1 = x[2] | x[3] << 32
        a = 1 + k0 % (m - 1)
        for i in range(m - 1):
            cand = 1 + (a - 1 + i) % (m - 1)
            if math.gcd(cand, m) == 1:
                a = cand
                break
        return start + (a * (p % bs) + k1 % m) % m

    return index_at


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def ref_feistel(seed: bytes, n: int) -> Callable[[int], int]:
    """Position -> index of one epoch of the Feistel sampler."""
    it: Iterator[int] = _stream(seed).call()
    ws = [next(it) for _ in range(2 * FEISTEL_ROUNDS)]
    keys = [ws[2 * i] | ws[2 * i + 1] << 32 for i in range(FEISTEL_ROUNDS)]
    bits = (n - 1).bit_length()

    def encrypt(x: int) -> int:
        wl = bits // 2
        wr = bits - wl
        left, right = x >> wr, x & ((1 << wr) - 1)
        for k in keys:
            f = _mix64(right ^ k) >> (64 - wl) if wl else 0
            left, right = right, left ^ f
            wl, wr = wr, wl
        return left << wr | right

    def index_at(p: int) -> int:
        x = encrypt(p) if bits else 0
        while x >= n:  # cycle-walking
            x = encrypt(x)
        return x

    return index_at


def ref_index_fn(sampler: str, seed: bytes, n: int, bs: int) -> Callable[[int], int]:
    return ref_feistel(seed, n) if sampler == "feistel" else ref_block_affine(seed, n, bs)


def ref_permutation(sampler: str, seed: bytes, n: int, bs: int) -> list[int]:
    """The whole epoch, position by position."""
    index_at = ref_index_fn(sampler, seed, n, bs)
    return [index_at(p) for p in range(n)]


def ref_calls(
    sampler: str,
    stage: str,
    n: int,
    bs: int,
    drop_last: bool,
    batch: int,
    ws: int,
    calls: int,
) -> list[dict[str, Any]]:
    """``calls`` consecutive global batches from a fresh cursor: every rank's shard."""
    out = []
    epoch, g = 0, 0
    perms: dict[int, list[int]] = {}
    for _ in range(calls):
        limit = (n // batch) * batch if stage == "train" and drop_last else n
        mb = batch // ws
        if stage == "train" and epoch not in perms:
            perms[epoch] = ref_permutation(
                sampler, ref_epoch_seed(COMPUTE_SEED, DATASET_KEY, epoch), n, bs
            )
        shards = []
        for r in range(ws):
            shard = []
            for i in range(mb):
                p = g + r * mb + i
                if p >= limit or p >= g + batch:
                    break
                shard.append(perms[epoch][p] if stage == "train" else p)
            shards.append(shard)
        before = [epoch, g]
        g += min(batch, limit - g)
        if g >= limit:
            epoch, g = epoch + 1, 0
        out.append({"cursor": before, "shards": shards, "cursor_next": [epoch, g]})
    return out


# --------------------------------------------------------------------------------------------
# The pinned cases
# --------------------------------------------------------------------------------------------

# (N, BS) pairs of the permutation vectors; BS only matters for spec_block_affine.
PERM_CASES = {
    "spec_block_affine": [(10, DEFAULT_BS), (10, 3), (100, DEFAULT_BS), (100, 16), (1000, 64)],
    "feistel": [(10, DEFAULT_BS), (100, DEFAULT_BS), (1000, DEFAULT_BS)],
}
# (N, BS, B, drop_last, calls): N=100, B=24 has a short last batch or drops it; N=10, B=24 is a
# whole epoch in one short batch (and empty shards for the high ranks of 4 and 8).
BATCH_CASES = [
    (100, 16, 24, False, 11),
    (100, 16, 24, True, 9),
    (10, DEFAULT_BS, 24, False, 3),
]
INLINE_LIMIT = 100  # permutations up to this size are stored whole, larger ones as a digest


def _perm_entry(sampler: str, n: int, bs: int, epoch: int) -> dict[str, Any]:
    seed = ref_epoch_seed(COMPUTE_SEED, DATASET_KEY, epoch)
    perm = ref_permutation(sampler, seed, n, bs)
    entry: dict[str, Any] = {"cardinality": n, "epoch": epoch}
    if sampler == "spec_block_affine":
        entry["block_size"] = bs
    if n <= INLINE_LIMIT:
        entry["indices"] = perm
    else:
        entry["first_indices"] = perm[:16]
        entry["sha256_u64le"] = hashlib.sha256(
            b"".join(i.to_bytes(8, "little") for i in perm)
        ).hexdigest()
    return entry


def build(kind: str) -> dict[str, Any]:
    """The document of one pinned file."""
    doc: dict[str, Any] = {
        "description": (
            "Golden NextBatch vectors (docs/formats/nextbatch.md, ADR 0010), generated from the "
            "scalar reference in tests/data/test_sampler_vectors.py. Cursors are [epoch, "
            "global_position]; shards[r] is rank r's indices; sha256_u64le hashes the whole "
            "epoch's indices as little-endian uint64."
        ),
        "regenerate": ".venv/bin/python -m tests.data.test_sampler_vectors",
        "compute_seed_hex": COMPUTE_SEED.hex(),
        "dataset_key": DATASET_KEY,
        "epoch_seeds_hex": [ref_epoch_seed(COMPUTE_SEED, DATASET_KEY, e).hex() for e in EPOCHS],
    }
    stage = "eval" if kind == "sequential" else "train"
    sampler = "feistel" if kind == "sequential" else kind
    if kind != "sequential":
        doc["permutations"] = [
            _perm_entry(kind, n, bs, e) for n, bs in PERM_CASES[kind] for e in EPOCHS
        ]
    doc["batches"] = [
        {
            "stage_type": stage,
            "cardinality": n,
            "block_size": bs,
            "drop_last": drop_last,
            "global_batch_size": batch,
            "world_size": ws,
            "calls": ref_calls(sampler, stage, n, bs, drop_last, batch, ws, calls),
        }
        for n, bs, batch, drop_last, calls in BATCH_CASES
        for ws in WORLD_SIZES
        if stage == "train" or not drop_last  # eval ignores drop_last: one case suffices
    ]
    return doc


def _dump(obj: object, indent: str = "") -> str:
    """JSON with one line per list of scalars, so a shard or permutation reads as one row."""
    inner = indent + " "
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and any(isinstance(x, dict | list) for x in obj):
        if all(isinstance(x, list) and not any(isinstance(y, list) for y in x) for x in obj):
            return "[" + ", ".join(json.dumps(x, separators=(",", ":")) for x in obj) + "]"
        return "[\n" + ",\n".join(inner + _dump(x, inner) for x in obj) + "\n" + indent + "]"
    return json.dumps(obj, separators=(",", ":"))


def main() -> None:
    for kind, path in FILES.items():
        path.write_text(_dump(build(kind)) + "\n", encoding="utf-8")
        print(f"wrote {path}")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def _load(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FILES[kind].read_text(encoding="utf-8"))
    return doc


def _config(sampler: str, bs: int, drop_last: bool) -> ManifestDataConfig:
    return ManifestDataConfig(sampler=sampler, sampler_block_size=bs, drop_last=drop_last)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(FILES))
def test_epoch_seeds_match_the_pinned_values(kind: str) -> None:
    doc = _load(kind)
    assert bytes.fromhex(doc["compute_seed_hex"]) == COMPUTE_SEED
    got = [epoch_seed(COMPUTE_SEED, doc["dataset_key"], e).hex() for e in EPOCHS]
    assert got == doc["epoch_seeds_hex"]


@pytest.mark.parametrize("kind", ["spec_block_affine", "feistel"])
def test_whole_epoch_permutations_match_the_pinned_values(kind: str) -> None:
    entries = _load(kind)["permutations"]
    assert len(entries) == len(PERM_CASES[kind]) * len(EPOCHS)
    for entry in entries:
        n = entry["cardinality"]
        perm = epoch_permutation(
            _config(kind, entry.get("block_size", DEFAULT_BS), False),
            cardinality=n,
            compute_seed=COMPUTE_SEED,
            dataset_key=DATASET_KEY,
            epoch=entry["epoch"],
        )
        got = perm.index_at(np.arange(n, dtype=np.uint64))
        if "indices" in entry:
            assert got.tolist() == entry["indices"], entry
        else:
            assert got[:16].tolist() == entry["first_indices"], entry
            assert hashlib.sha256(got.astype("<u8").tobytes()).hexdigest() == entry["sha256_u64le"]


@pytest.mark.parametrize("kind", sorted(FILES))
def test_batch_sequences_match_the_pinned_values(kind: str) -> None:
    cases = _load(kind)["batches"]
    assert {c["world_size"] for c in cases} == set(WORLD_SIZES)
    sampler = "feistel" if kind == "sequential" else kind
    for case in cases:
        cfg = _config(sampler, case["block_size"], case["drop_last"])
        for call in case["calls"]:
            cursor = DataCursor(epoch=call["cursor"][0], global_position=call["cursor"][1])
            for rank, want in enumerate(call["shards"]):
                idx, nxt = next_batch(
                    cfg,
                    cursor,
                    cardinality=case["cardinality"],
                    global_batch_size=case["global_batch_size"],
                    world_size=case["world_size"],
                    rank=rank,
                    stage_type=case["stage_type"],
                    compute_seed=COMPUTE_SEED,
                    dataset_key=DATASET_KEY,
                )
                assert idx.tolist() == want, (case["world_size"], call["cursor"], rank)
                assert [nxt.epoch, nxt.global_position] == call["cursor_next"]


def test_pinned_files_are_what_the_reference_writes() -> None:
    # Guards the files against hand edits and the reference against silent drift.
    for kind in FILES:
        assert _load(kind) == build(kind), kind


def test_sampler_config_hashes_are_the_spec_preimages() -> None:
    # The spec mode's rule list is the upstream one, literally (kernel §3.6, D21).
    cfg = _config("spec_block_affine", 64, True)
    preimage = [
        "SHUFFLE_WITHOUT_REPLACEMENT_BLOCK_AFFINE_V1",
        [64, True, "epoch_seed_rule", "intra_block_affine_coprime", "rank_contiguous_shard"],
    ]
    assert sampler_config_hash(cfg) == hashlib.sha256(_cbor(preimage)).digest()
    seq = ["SEQUENTIAL_V1", preimage[1]]
    assert sampler_config_hash(cfg, "eval") == hashlib.sha256(_cbor(seq)).digest()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.binary(min_size=16, max_size=16),
    n=st.integers(1, 300),
    bs=st.integers(1, 40) | st.just(DEFAULT_BS),
    sampler=st.sampled_from(["spec_block_affine", "feistel"]),
)
def test_library_agrees_with_the_scalar_reference(
    seed: bytes, n: int, bs: int, sampler: str
) -> None:
    perm = (
        FeistelPermutation.from_seed(seed, n)
        if sampler == "feistel"
        else SpecBlockAffinePermutation.from_seed(seed, n, bs)
    )
    got = perm.index_at(np.arange(n, dtype=np.uint64)).tolist()
    assert got == ref_permutation(sampler, seed, n, bs)


@pytest.mark.parametrize(
    ("n", "bs", "positions"),
    [
        # One full block of 2^63 and a tail of 2^63 - 1: 128-bit products, all 64 Feistel bits.
        (2**64 - 1, 2**63, [0, 1, 2**63 - 1, 2**63, 2**64 - 3, 2**64 - 2]),
        # 128 full blocks of 2^33 (over 2^32) and a tail of 3.
        (2**40 + 3, 2**33, [0, 2**33 - 1, 2**33, 2**39, 2**40, 2**40 + 2]),
        # 8192 full blocks of 2^20 (the spec's default) and a tail of 1.
        (2**33 + 1, 2**20, [0, 2**20, 5 * 2**20 + 7, 2**33 - 1, 2**33]),
    ],
    ids=["near-2^64", "blocks-over-2^32", "many-blocks"],
)
@pytest.mark.parametrize("sampler", ["spec_block_affine", "feistel"])
def test_huge_domains_agree_with_the_reference_without_building_them(
    n: int, bs: int, positions: list[int], sampler: str
) -> None:
    seed = bytes(range(16))
    perm = (
        FeistelPermutation.from_seed(seed, n)
        if sampler == "feistel"
        else SpecBlockAffinePermutation.from_seed(seed, n, bs)
    )
    got = perm.index_at(np.array(positions, np.uint64)).tolist()
    ref = ref_index_fn(sampler, seed, n, bs)
    assert got == [ref(p) for p in positions]
    assert len(set(got)) == len(got)
    assert max(got) < n


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
