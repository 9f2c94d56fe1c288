"""Regenerate tests/vectors/philox_transforms.json from the scalar reference.

Run from the repository root: ``.venv/bin/python -m tests.numerics.regen_golden``. The values
come from ``scalar_reference.py``, never from ``umlos.numerics``, so the golden file pins the
documented definitions rather than whatever the library currently does. Changing the file is a
MAJOR change of the RNG transforms (ADR 0005).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import scalar_reference as ref

GOLDEN = Path(__file__).resolve().parents[1] / "vectors" / "philox_transforms.json"
# 32 bytes of pi's fraction (the Random123 KAT counter/key words): only the first 16 are used.
SEED = bytes.fromhex("243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89")
BOUNDS = [1, 2, 6, 10, 1000003, 2**31 + 1, 2**32 - 1, 2**32]
COUNT = 16


def _fresh() -> ref.ScalarStream:
    key, base = ref.seed_state(SEED)
    return ref.ScalarStream(key, base)


def build() -> dict[str, Any]:
    key, base = ref.seed_state(SEED)
    doc: dict[str, Any] = {
        "description": "Golden values of umlos.numerics transforms; see docs/numerics.md. "
        "Every entry starts from the seed's fresh stream (offset 0); offset_after counts the "
        "128-bit blocks the call consumed. Floats are float.hex() strings.",
        "seed_hex": SEED.hex(),
        "key": key,
        "counter_base": ref.counter_words(base),
        "blocks_hex": [
            [f"{w:08x}" for w in ref.philox(ref.counter_words(base + i), key)] for i in range(4)
        ],
    }
    s = _fresh()
    doc["uniform_f32"] = {
        "count": COUNT,
        "values_hex": [v.hex() for v in ref.uniform_f32(s, COUNT)],
        "offset_after": s.offset,
    }
    s = _fresh()
    doc["uniform_f64"] = {
        "count": COUNT,
        "values_hex": [v.hex() for v in ref.uniform_f64(s, COUNT)],
        "offset_after": s.offset,
    }
    doc["bounded_ints"] = []
    for bound in BOUNDS:
        s = _fresh()
        values = ref.bounded_ints(s, [bound] * COUNT)
        doc["bounded_ints"].append(
            {"bound": bound, "count": COUNT, "values": values, "offset_after": s.offset}
        )
    s = _fresh()
    doc["normal_f64"] = {
        "count": COUNT - 1,
        "values_hex": [v.hex() for v in ref.normals(s, COUNT - 1)],
        "offset_after": s.offset,
        "note": "log/cos/sin are libm-dependent: compare with a few ulps of tolerance",
    }
    s = _fresh()
    doc["permutation_10"] = {"values": ref.permutation(s, 10), "offset_after": s.offset}
    s = _fresh()
    perm = ref.permutation(s, 1000)
    doc["permutation_1000"] = {
        "sha256_u32le": hashlib.sha256(b"".join(v.to_bytes(4, "little") for v in perm)).hexdigest(),
        "offset_after": s.offset,
    }
    return doc


def _dump(value: Any, indent: str = "") -> str:
    """JSON with one line per dict entry and flat lists on one line, for reviewable diffs."""
    if isinstance(value, dict):
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _dump(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


def main() -> None:
    GOLDEN.write_text(_dump(build()) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
