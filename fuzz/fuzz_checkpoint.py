"""Fuzz ``verify_checkpoint`` through ``checkpoint_header.cbor`` (and the other record files).

First byte: bits 0-2 pick the file (header, manifest, training state, trace link, TMMU plan);
bit 3 asks for a header that still validates to get its ``checkpoint_header_hash`` recomputed,
so that edits reach the manifest, root, commitment and binding checks. An accepted checkpoint
must be the original."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import _harness

from umlos._generated.records import CheckpointHeader
from umlos.codec import decode, encode
from umlos.evidence.checkpoint import header_hash, verify_checkpoint

FILES = (
    "checkpoint_header.cbor",
    "checkpoint_manifest.cbor",
    "state/training_state.cbor",
    "trace/link.cbor",
    "tmmu/plan.cbor",
)
COPY = Path()
ORIGINALS: dict[str, bytes] = {}


def _rehashed(data: bytes) -> bytes:
    try:
        header = CheckpointHeader.from_obj(decode(data))
    except _harness.Error:
        return data
    return encode({**header.to_obj(), "checkpoint_header_hash": header_hash(header)})


def one_input(data: bytes) -> None:
    if not data:
        return
    rel = FILES[(data[0] & 7) % len(FILES)]
    body = data[1:]
    if rel == FILES[0] and data[0] & 8:
        body = _rehashed(body)
    (COPY / rel).write_bytes(body)
    try:
        verify_checkpoint(COPY)
        if body != ORIGINALS[rel]:
            raise AssertionError(f"verify_checkpoint accepted a changed {rel}")
    finally:
        (COPY / rel).write_bytes(ORIGINALS[rel])


if __name__ == "__main__":
    run = _harness.committed_run()
    final = sorted(p for p in (run / "checkpoints").iterdir() if p.is_dir())[-1]
    COPY = Path(tempfile.mkdtemp(prefix="umlos-fuzz-ckpt-")) / final.name
    shutil.copytree(final, COPY)
    ORIGINALS = {rel: (final / rel).read_bytes() for rel in FILES}
    seeds = [bytes([i]) + ORIGINALS[rel] for i, rel in enumerate(FILES)]
    _harness.main("checkpoint", one_input, [*seeds, b"\x08" + ORIGINALS[FILES[0]]])
