"""Executors of a validated IR behind one protocol (ADR 0008): ``numpy`` (reference) and ``torch``.

>>> from umlos.model.backends import get_backend
>>> get_backend("numpy").name
'numpy'
"""

from umlos.model.backends.base import (
    BACKENDS,
    Backend,
    ComputeDtype,
    ExecMode,
    ForwardResult,
    OptimizerStep,
    Program,
    StepResult,
    get_backend,
    slot_names,
    zero_slots,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "ComputeDtype",
    "ExecMode",
    "ForwardResult",
    "OptimizerStep",
    "Program",
    "StepResult",
    "get_backend",
    "slot_names",
    "zero_slots",
]
