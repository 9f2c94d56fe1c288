"""Validation of the positions handed to a permutation's ``index_at``.

>>> as_positions([0, 3], 4).tolist()
[0, 3]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from umlos.errors import (
    ApiShapeMismatchError,
    ApiTypeMismatchError,
    GlobalPositionExceedsCardinalityError,
)

__all__ = ["as_positions"]


def as_positions(positions: ArrayLike, cardinality: int) -> NDArray[np.uint64]:
    """``positions`` as a fresh 1-D uint64 array, each checked to lie in ``[0, cardinality)``.

    Integers only (a float or object array would hide values numpy cannot hold exactly); a
    scalar becomes a one-element array.

    >>> as_positions(np.array([2], np.int8), 3).dtype.name
    'uint64'
    """
    raw = np.asarray(positions)
    if raw.ndim > 1:
        raise ApiShapeMismatchError(
            f"positions must be 1-D, got shape {raw.shape}", reason="CONSTRAINT", path="$.positions"
        )
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer):
        # An empty list arrives as float64: it holds no value, so it is accepted.
        if raw.size == 0:
            return np.zeros(0, np.uint64)
        raise ApiTypeMismatchError(
            f"positions must be integers, got {raw.dtype}", path="$.positions"
        )
    flat = raw.reshape(-1)
    if flat.size and np.issubdtype(flat.dtype, np.signedinteger) and int(flat.min()) < 0:
        raise ApiShapeMismatchError(
            f"position {int(flat.min())} is negative", reason="CONSTRAINT", path="$.positions"
        )
    # Python ints for the bound: comparing uint64 with a signed array would go through float64.
    if flat.size and int(flat.max()) >= cardinality:
        raise GlobalPositionExceedsCardinalityError(
            f"position {int(flat.max())} is past the end ({cardinality} rows)",
            path="$.positions",
            context={"global_position": int(flat.max()), "cardinality": cardinality},
        )
    return flat.astype(np.uint64)
