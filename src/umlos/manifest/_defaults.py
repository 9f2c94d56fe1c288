"""Default filling over the generated record tree.

Every generated record class exposes ``defaults`` (field -> data-model value, from the schema's
``default`` keywords). Filling walks the tree depth-first: a record's absent fields that have a
default get it (an object default such as ``{}`` becomes a record, whose own defaults are then
filled), and the walk descends into every record, tuple and map value, so union alternatives and
records inside lists (stages, IR nodes) are covered. The result is a fixed point: filling twice
changes nothing, which is what makes ``manifest_hash`` independent of how much a user spelled out.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Protocol, TypeVar, cast


class _Record(Protocol):
    defaults: Any

    def to_obj(self, *, json: bool = False) -> dict[str, Any]: ...


R = TypeVar("R")


def _is_record(value: object) -> bool:
    return dataclasses.is_dataclass(value) and hasattr(type(value), "defaults")


def fill_defaults(record: R) -> R:
    """``record`` with every schema default filled, recursively (a pure function)."""
    rec = cast(_Record, record)
    cls: Any = type(rec)
    missing = {
        key: copy.deepcopy(value)
        for key, value in cls.defaults.items()
        if getattr(rec, key) is None
    }
    if missing:
        # Rebuilding through from_obj converts each default exactly as user input would be
        # (lists to tuples, {} to a record), so a default and its spelled-out value are identical.
        obj = rec.to_obj()
        obj.update(missing)
        rec = cls.from_obj(obj)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(cast(Any, rec)):
        value = getattr(rec, field.name)
        filled = _fill_value(value)
        if filled is not value:
            changes[field.name] = filled
    if changes:
        rec = dataclasses.replace(cast(Any, rec), **changes)
    return cast(R, rec)


def _fill_value(value: Any) -> Any:
    if _is_record(value):
        return fill_defaults(value)
    if isinstance(value, tuple):
        items = tuple(_fill_value(v) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        entries = {k: _fill_value(v) for k, v in value.items()}
        return value if all(entries[k] is value[k] for k in value) else entries
    return value
