"""The closed list of ``reason`` sub-codes that :mod:`umlos.numerics` raises.

All are carried by :class:`~umlos.errors.ContractViolationError` (``CONTRACT_VIOLATION``); counter
overflows raise :class:`~umlos.errors.CounterOverflowError` with ``counter_name`` and
``counter_value`` in its context instead. ``REASONS`` is the text for the error catalogue.
"""

from __future__ import annotations

from typing import Final

BAD_DTYPE: Final = "NUMERIC_BAD_DTYPE"
BAD_SHAPE: Final = "NUMERIC_BAD_SHAPE"
OUT_OF_RANGE: Final = "NUMERIC_OUT_OF_RANGE"
EMPTY: Final = "NUMERIC_EMPTY"
BAD_SEED: Final = "RNG_BAD_SEED"
BAD_STATE: Final = "RNG_BAD_STATE"

REASONS: Final = {
    BAD_DTYPE: "A numerics input has a dtype the function does not accept.",
    BAD_SHAPE: "A numerics input has the wrong shape, or shapes that do not match or broadcast.",
    OUT_OF_RANGE: "A count, bound, word or offset lies outside its documented range.",
    EMPTY: "A reduction that needs at least one element got none.",
    BAD_SEED: "An RNG seed is not 16 or 32 bytes.",
    BAD_STATE: "A saved rng_state is malformed or inconsistent with its offset.",
}

# Counter names used in CounterOverflowError.context["counter_name"].
RNG_OFFSET: Final = "rng_offset"
PHILOX_COUNTER: Final = "philox_counter"
