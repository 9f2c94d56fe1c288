"""Collected contract problems: every check reports all of them, each with file and JSON path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def json_path(parts: Iterable[str | int]) -> str:
    """``["a", 0, "b"]`` → ``$.a[0].b``."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


@dataclass(frozen=True, order=True)
class Issue:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


@dataclass
class Issues:
    items: list[Issue] = field(default_factory=list)

    def add(self, file: str, path: str, message: str) -> None:
        self.items.append(Issue(file, path, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def sorted(self) -> list[Issue]:
        return sorted(set(self.items))
