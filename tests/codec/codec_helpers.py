"""Helpers shared by the codec tests: vector loading and type-exact comparison."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
UPSTREAM = VECTORS / "upstream" / "canonical_cbor.json"
EXTRA = VECTORS / "canonical_cbor_extra.json"


def load(path: Path) -> dict[str, Any]:
    # json's own rule matches decision A11: tokens with '.', 'e' or 'E' become float.
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def from_json(node: Any, *, key: bool = False) -> Any:
    """Vector input -> Python value, following the conventions stated in the vector files."""
    if isinstance(node, dict):
        if set(node) == {"__bytes__"}:
            return bytes.fromhex(node["__bytes__"])
        if set(node) == {"__float__"}:
            return struct.unpack(">d", bytes.fromhex(node["__float__"]))[0]
        if set(node) == {"__map__"}:
            return {from_json(k, key=True): from_json(v) for k, v in node["__map__"]}
        return {k: from_json(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [from_json(v, key=key) for v in node]
        return tuple(items) if key else items
    return node


def same(a: object, b: object) -> bool:
    """Equality that also demands equal types, float bit patterns (±0, NaN) and key types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        if len(a) != len(b):
            return False
        # Keys are str/int/bytes/tuples of those, where == is already type-exact except bool.
        return all(k in b and same(k, _key_in(b, k)) and same(v, b[k]) for k, v in a.items())
    return a == b


def _key_in(d: dict[Any, Any], k: object) -> object:
    for other in d:
        if other == k:
            return other
    raise KeyError(k)
