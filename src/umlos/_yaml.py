"""Safe YAML loading for contracts and manifests: duplicate keys are errors, not silent overwrites.

It sits below both ``umlos.contracts`` (the contract tooling) and ``umlos.manifest`` (the run
manifest), so neither has to import the other.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from umlos.errors import ApiShapeMismatchError, ContractViolationError

# A contract or manifest file larger than this is almost certainly not hand-written YAML.
MAX_YAML_BYTES = 8 * 1024 * 1024


# libyaml's parser when the wheel has it (it does on every platform PyPI builds), else pure Python.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that rejects duplicate mapping keys (YAML allows them; we never want them)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable mapping key", key_node.start_mark
            ) from exc
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def loads_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text strictly; errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except RecursionError as exc:  # PyYAML builds nested nodes recursively
        raise ApiShapeMismatchError(
            "invalid YAML: nesting is too deep", reason="CONSTRAINT", artifact=source
        ) from exc
    except UnicodeError as exc:  # a str with lone surrogates cannot be YAML text
        raise ApiShapeMismatchError(
            f"invalid YAML: text is not valid Unicode ({exc})",
            reason="CONSTRAINT",
            artifact=source,
        ) from exc
    except ValueError as exc:  # e.g. an integer longer than Python's int-conversion limit
        raise ApiShapeMismatchError(
            f"invalid YAML: {exc}", reason="CONSTRAINT", artifact=source
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ApiShapeMismatchError(
            f"invalid YAML: {problem}" + (f" ({where})" if where else ""),
            reason="CONSTRAINT",
            artifact=source,
        ) from exc


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, source: str) -> Any:
    return loads_yaml(text, source=source)


def load_yaml(path: Path) -> Any:
    """Read and parse a YAML file strictly.

    Parsed documents are cached by content, so callers must treat them as read-only.
    """
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ContractViolationError(
                f"file is {size} bytes, above the {MAX_YAML_BYTES}-byte limit",
                reason="CONTRACT_INVALID",
                artifact=str(path),
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolationError(
            "file is not valid UTF-8", reason="CONTRACT_INVALID", artifact=str(path)
        ) from exc
    except OSError as exc:
        raise ContractViolationError(
            f"cannot read file: {exc.strerror}", reason="CONTRACT_INVALID", artifact=str(path)
        ) from exc
    return copy.deepcopy(_parse_cached(text, str(path)))
