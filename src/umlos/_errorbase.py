"""Root of the UML_OS error tree.

Every error the library raises derives from :class:`Error`. The concrete classes, one per code of
the error catalogue (``contracts/errors.yaml``), are generated into ``umlos._generated.errors`` and
re-exported by :mod:`umlos.errors`. This module holds only the behaviour they share, so that it can
sit below everything else (the codec imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

ZERO_TOKEN = bytes(32)
"""Replay token used for error records raised outside a run (spec decision A29)."""


class Error(Exception):
    """Base class of every UML_OS error.

    Each subclass carries a stable catalogue code (``code_id`` / ``numeric_code``). Instances carry
    where the problem is: a JSON path into a document, a byte offset into a binary artifact, the
    artifact itself, and a sub-code (``reason``) from the closed list its raiser documents.

    >>> err = Error("expected uint64, got str", path="$.optimizer.lr")
    >>> str(err)
    'expected uint64, got str — at $.optimizer.lr'
    """

    code_id: ClassVar[str] = "CONTRACT_VIOLATION"
    numeric_code: ClassVar[int] = 1801
    severity: ClassVar[str] = "FATAL"
    subsystem: ClassVar[str] = "runtime"
    retryable: ClassVar[bool] = False
    privacy_class: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        path: str | None = None,
        offset: int | None = None,
        artifact: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.path = path
        self.offset = offset
        self.artifact = artifact
        self.context: dict[str, Any] = dict(context or {})

    def __str__(self) -> str:
        where = []
        if self.artifact is not None:
            where.append(self.artifact)
        if self.path is not None:
            where.append(self.path)
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        text = self.message
        if self.reason is not None:
            text = f"[{self.reason}] {text}"
        return f"{text} — at {', '.join(where)}" if where else text

    def located(
        self,
        *,
        artifact: str | None = None,
        path_prefix: str | None = None,
    ) -> Error:
        """Return this error with location details added; used when re-raising across layers."""
        if artifact is not None and self.artifact is None:
            self.artifact = artifact
        if path_prefix is not None:
            suffix = self.path[1:] if self.path and self.path.startswith("$") else (self.path or "")
            self.path = path_prefix + suffix
        return self

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly description, used by the CLI's ``--json`` output."""
        out: dict[str, Any] = {
            "code_id": self.code_id,
            "numeric_code": self.numeric_code,
            "severity": self.severity,
            "message": self.message,
        }
        for key in ("reason", "path", "offset", "artifact"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.context:
            out["context"] = {k: _jsonable(v) for k, v in sorted(self.context.items())}
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
