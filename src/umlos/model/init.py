"""Deterministic parameter initialisation (UML_OS.Model.InitParameters, spec decision D6).

Each parameter with a random rule draws from its own Philox stream, seeded with
``commit_hash(THETA_INIT_SEED, [compute_seed, name])[0:16]`` (ADR 0008 keys init from the
``compute_seed`` rather than the replay token, so both backends start from the same weights).
Values are produced in binary64, in C order over the parameter's shape, and cast once to its
dtype:

* ``uniform_fan_in``: ``b · (2u − 1)`` with ``b = 1 / sqrt(fan_in)`` and ``u`` from
  :func:`~umlos.numerics.uniform_f64` (one uniform, half a block, per element): ``U[−b, b)``.
* ``normal``: ``std · z`` with ``z`` from :func:`~umlos.numerics.normal_f64` (Box–Muller; bitwise
  only within one machine class, see its docstring).
* ``constant``: the value; no stream is drawn.

>>> from umlos._generated.records import IrInitUniformFanIn, IrParameter
>>> p = IrParameter(name="w", shape=(2, 2), dtype="float64", init=IrInitUniformFanIn(fan_in=4))
>>> theta = init_values(p, bytes(32))
>>> bool((abs(theta) < 0.5).all()), theta.shape
(True, (2, 2))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umlos._generated.records import (
    IrInitConstant,
    IrInitNormal,
    IrInitUniformFanIn,
    IrParameter,
    ModelIR,
)
from umlos._generated.tags import THETA_INIT_SEED
from umlos.codec import commit_hash
from umlos.model.ir import ValidatedIR
from umlos.numerics import PhiloxStream, normal_f64, uniform_f64

__all__ = ["init_blocks_drawn", "init_parameters", "init_values", "parameter_seed"]


def parameter_seed(compute_seed: bytes, name: str) -> bytes:
    """The 16-byte Philox seed of parameter ``name``: ``CH(THETA_INIT_SEED, [seed, name])[0:16]``.

    >>> parameter_seed(bytes(32), "fc1.weight").hex()
    '13ad2f3af82aef7edfa53c31a9596d50'
    """
    return commit_hash(THETA_INIT_SEED, [bytes(compute_seed), name])[:16]


def init_values(param: IrParameter, compute_seed: bytes) -> NDArray[Any]:
    """The initial tensor of one parameter, shaped and typed as declared."""
    n = math.prod(param.shape)
    init = param.init
    values: NDArray[np.float64]
    if isinstance(init, IrInitConstant):
        values = np.full(n, init.value, np.float64)
    else:
        stream = PhiloxStream.from_seed(parameter_seed(compute_seed, param.name))
        if isinstance(init, IrInitUniformFanIn):
            u, _ = uniform_f64(stream, n)
            values = (1.0 / math.sqrt(init.fan_in)) * (2.0 * u - 1.0)
        elif isinstance(init, IrInitNormal):
            z, _ = normal_f64(stream, n)
            values = init.std * z
        else:  # pragma: no cover - the union is closed
            raise TypeError(type(init).__qualname__)
    return values.reshape(param.shape).astype(param.dtype)


def init_parameters(ir: ModelIR | ValidatedIR, seed_bytes: bytes) -> dict[str, NDArray[Any]]:
    """Initial parameters in registration order, keyed by name (host arrays in their dtype).

    ``seed_bytes`` is the run's ``compute_seed`` (32 bytes; ADR 0008).
    """
    record = ir.ir if isinstance(ir, ValidatedIR) else ir
    return {p.name: init_values(p, seed_bytes) for p in record.parameters}


def init_blocks_drawn(ir: ModelIR | ValidatedIR) -> int:
    """Philox blocks drawn over all parameter streams (``rng_blocks_drawn`` of the response).

    Both random rules take ``ceil(n / 2)`` blocks for ``n`` elements; constants take none.
    """
    record = ir.ir if isinstance(ir, ValidatedIR) else ir
    return sum(
        -(-math.prod(p.shape) // 2)
        for p in record.parameters
        if not isinstance(p.init, IrInitConstant)
    )
