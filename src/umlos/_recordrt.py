"""Runtime checks used by the generated record types (``umlos._generated.records``).

Every check takes the value, its JSON path, and returns the value in its Python form or raises:
``ApiTypeMismatchError`` for a wrong type, ``ApiShapeMismatchError`` (with a reason) for a missing
or unknown field or a broken constraint. ``j`` selects the JSON form, where byte strings are
lower-case hex text instead of CBOR byte strings.

Semantics are stricter than JSON Schema (ADR 0002): integers never accept ``bool`` and floats
never accept ``int``, because canonical CBOR and every hash built on it tell them apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from umlos._generated.errors import ApiShapeMismatchError, ApiTypeMismatchError

T = TypeVar("T")
Check = Callable[[object, str, bool], T]

_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "bool",
        int: "integer",
        float: "float",
        str: "string",
        bytes: "bytes",
        list: "array",
        tuple: "array",
        dict: "map",
    }.get(type(value), type(value).__name__)


def type_error(expected: str, value: object, path: str) -> ApiTypeMismatchError:
    return ApiTypeMismatchError(
        f"expected {expected}, got {_type_name(value)}",
        path=path,
        context={"field_path": path},
    )


def shape_error(message: str, reason: str, path: str) -> ApiShapeMismatchError:
    return ApiShapeMismatchError(message, reason=reason, path=path)


def expect_map(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise type_error("map", value, path)
    return value


def check_fields(
    m: Mapping[str, object], known: frozenset[str], required: Sequence[str], path: str
) -> None:
    for key in m:
        if key not in known:
            raise shape_error(f"unknown field {key!r}", "UNKNOWN_FIELD", _join(path, key))
    for key in required:
        if key not in m:
            raise shape_error(f"missing required field {key!r}", "MISSING_FIELD", path)


def _join(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def int_(value: object, path: str, lo: int, hi: int, enum: tuple[int, ...] | None = None) -> int:
    if type(value) is not int:
        raise type_error("integer", value, path)
    if not lo <= value <= hi:
        raise shape_error(f"{value} is outside [{lo}, {hi}]", "CONSTRAINT", path)
    if enum is not None and value not in enum:
        raise shape_error(f"{value} is not one of {list(enum)}", "CONSTRAINT", path)
    return value


def float_(
    value: object,
    path: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    xlo: float | None = None,
    xhi: float | None = None,
    nonfinite: bool = False,
) -> float:
    if type(value) is not float:
        raise type_error("float", value, path)
    if not nonfinite and not math.isfinite(value):
        raise shape_error(f"{value} is not finite", "CONSTRAINT", path)
    if (
        (lo is not None and not value >= lo)
        or (hi is not None and not value <= hi)
        or (xlo is not None and not value > xlo)
        or (xhi is not None and not value < xhi)
    ):
        raise shape_error(f"{value} is outside its allowed range", "CONSTRAINT", path)
    return value


def str_(
    value: object,
    path: str,
    *,
    min_len: int | None = None,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
    enum: tuple[str, ...] | None = None,
) -> str:
    if type(value) is not str:
        raise type_error("string", value, path)
    if enum is not None and value not in enum:
        shown = list(enum) if len(enum) <= 12 else [*enum[:12], "..."]
        raise shape_error(f"{value!r} is not one of {shown}", "CONSTRAINT", path)
    if (min_len is not None and len(value) < min_len) or (
        max_len is not None and len(value) > max_len
    ):
        raise shape_error(
            f"length {len(value)} is outside [{min_len or 0}, {max_len}]", "CONSTRAINT", path
        )
    if pattern is not None and pattern.search(value) is None:
        raise shape_error(f"{value!r} does not match {pattern.pattern}", "CONSTRAINT", path)
    return value


def enum_(value: object, path: str, values: tuple[str, ...]) -> Any:
    """A string restricted to ``values``; typed ``Any`` so it fits a ``Literal`` field."""
    return str_(value, path, enum=values)


def bytes_(
    value: object, path: str, j: bool, min_len: int | None = None, max_len: int | None = None
) -> bytes:
    if j:
        if type(value) is not str:
            raise type_error("hex string", value, path)
        if _HEX.fullmatch(value) is None:
            raise shape_error("expected lower-case hex of whole bytes", "CONSTRAINT", path)
        data = bytes.fromhex(value)
    elif type(value) is bytes:
        data = value
    else:
        raise type_error("bytes", value, path)
    if (min_len is not None and len(data) < min_len) or (
        max_len is not None and len(data) > max_len
    ):
        expected = f"exactly {min_len}" if min_len == max_len else f"{min_len or 0}..{max_len}"
        raise shape_error(f"{len(data)} bytes, expected {expected}", "CONSTRAINT", path)
    return data


def bool_(value: object, path: str, const: bool | None = None) -> bool:
    if type(value) is not bool:
        raise type_error("bool", value, path)
    if const is not None and value is not const:
        raise shape_error(f"must be {const}", "CONSTRAINT", path)
    return value


def null(value: object, path: str) -> None:
    if value is not None:
        raise type_error("null", value, path)


def list_(
    value: object,
    path: str,
    j: bool,
    item: Check[T],
    *,
    min_items: int | None = None,
    max_items: int | None = None,
    unique: bool = False,
) -> tuple[T, ...]:
    if not isinstance(value, (list, tuple)):
        raise type_error("array", value, path)
    n = len(value)
    if (min_items is not None and n < min_items) or (max_items is not None and n > max_items):
        raise shape_error(f"{n} items, expected {min_items or 0}..{max_items}", "CONSTRAINT", path)
    out = tuple(item(v, f"{path}[{i}]", j) for i, v in enumerate(value))
    if unique:
        seen: set[str] = set()
        for i, v in enumerate(value):
            key = repr((type(v), v))
            if key in seen:
                raise shape_error("items must be unique", "CONSTRAINT", f"{path}[{i}]")
            seen.add(key)
    return out


def map_(
    value: object,
    path: str,
    j: bool,
    item: Check[T],
    *,
    key_pattern: re.Pattern[str] | None = None,
    min_props: int | None = None,
    max_props: int | None = None,
) -> dict[str, T]:
    m = expect_map(value, path)
    n = len(m)
    if (min_props is not None and n < min_props) or (max_props is not None and n > max_props):
        raise shape_error(
            f"{n} entries, expected {min_props or 0}..{max_props}", "CONSTRAINT", path
        )
    out: dict[str, T] = {}
    for k, v in m.items():
        if type(k) is not str:
            raise type_error("string key", k, path)
        if key_pattern is not None and key_pattern.search(k) is None:
            raise shape_error(f"key {k!r} does not match {key_pattern.pattern}", "CONSTRAINT", path)
        out[k] = item(v, _join(path, k), j)
    return out


def any_of(value: object, path: str, j: bool, options: Sequence[Check[Any]], expected: str) -> Any:
    for check in options:
        try:
            return check(value, path, j)
        except (ApiTypeMismatchError, ApiShapeMismatchError):
            continue
    raise type_error(expected, value, path)


def scalar_out(value: Any, j: bool) -> Any:
    """JSON form of a scalar-union value: bytes become hex."""
    if j and isinstance(value, bytes):
        return value.hex()
    return value


def union_kind(
    value: object, path: str, discriminator: str, kinds: Mapping[str, Check[T]], j: bool
) -> T:
    m = expect_map(value, path)
    kind = m.get(discriminator)
    check = kinds.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise shape_error(
            f"{discriminator} {kind!r} is not one of {sorted(kinds)}",
            "UNION_KIND",
            _join(path, discriminator),
        )
    return check(value, path, j)
