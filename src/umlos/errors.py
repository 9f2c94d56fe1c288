"""The UML_OS error tree.

One root, :class:`Error`; one base class per subsystem; one class per catalogue code
(``contracts/errors.yaml``), generated into :mod:`umlos._generated.errors`.

>>> from umlos.errors import ContractViolationError, Error
>>> issubclass(ContractViolationError, Error)
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from umlos._errorbase import ZERO_TOKEN, Error
from umlos._generated.errors import *  # noqa: F403

if TYPE_CHECKING:  # the records module is large; import it only when a record is built
    from umlos._generated.records import ErrorRecord
from umlos._generated.errors import __all__ as _generated_all

__all__ = ["Error", "error_record", *_generated_all]  # noqa: PLE0604 - generated names are strings


def error_record(
    exc: Error,
    *,
    t: int = 0,
    rank: int = 0,
    failure_operator: str = "",
    replay_token: bytes = ZERO_TOKEN,
) -> ErrorRecord:
    """The canonical failure record of ``exc`` (contracts/schemas/error_record.yaml).

    Catalogue values (numeric code, severity, subsystem, retryable, privacy class) come from the
    exception's class; ``diagnostics`` carries the reason, JSON path, byte offset and the
    scalar context values, so the record is self-contained. Outside a run the defaults apply
    (t = 0, rank = 0, a zero replay token; spec A29).

    >>> rec = error_record(ContractViolationError("bad", reason="CBOR_TRUNCATED", offset=3))
    >>> rec.numeric_code, rec.diagnostics["reason_code"], rec.diagnostics["offset"]
    (1801, 'CBOR_TRUNCATED', 3)
    """
    diagnostics: dict[str, bool | int | float | str | bytes] = {}
    for key, value in sorted(exc.context.items()):
        if (
            isinstance(value, (bool, str, bytes))
            or (isinstance(value, int) and -(2**63) <= value < 2**64)
            or (isinstance(value, float) and math.isfinite(value))
        ):
            diagnostics[key] = value
        elif value is not None:
            diagnostics[key] = repr(value)
    if exc.reason is not None:
        diagnostics["reason_code"] = exc.reason
    if exc.path is not None:
        diagnostics["field_path"] = exc.path
    if exc.offset is not None:
        diagnostics["offset"] = exc.offset
    if exc.artifact is not None:
        diagnostics["artifact"] = exc.artifact
    from umlos._generated.records import ErrorRecord

    operator = failure_operator or str(exc.context.get("failure_operator", ""))
    return ErrorRecord(
        code_id=exc.code_id,
        numeric_code=exc.numeric_code,
        severity=exc.severity,  # type: ignore[arg-type]
        subsystem=exc.subsystem,  # type: ignore[arg-type]
        t=t,
        rank=rank,
        failure_operator=operator[:128],
        replay_token=replay_token,
        message=str(exc)[:4096],
        retryable=exc.retryable,
        privacy_class=exc.privacy_class,  # type: ignore[arg-type]
        diagnostics=dict(list(diagnostics.items())[:64]) or None,
    )
