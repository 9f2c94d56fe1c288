"""Fuzz ``loads_manifest`` (YAML text, decoded from the input as UTF-8 with replacement)."""

from __future__ import annotations

import hashlib

import _harness

from umlos.codec import encode
from umlos.manifest import EXAMPLE_MANIFEST, loads_manifest


def one_input(data: bytes) -> None:
    loaded = loads_manifest(data.decode("utf-8", errors="replace"), source="fuzz.yaml")
    if loaded.manifest_hash != hashlib.sha256(encode(loaded.manifest.to_obj())).digest():
        raise AssertionError("manifest_hash is not the digest of the normalized manifest")


if __name__ == "__main__":
    run = _harness.committed_run()
    seeds = [EXAMPLE_MANIFEST.encode(), (run / "manifest.yaml").read_bytes()]
    _harness.main("manifest", one_input, seeds)
