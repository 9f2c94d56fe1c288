"""State and functional fingerprints (kernel decision D8).

``state_fp`` chains, step after step, a quantized digest of the parameters and optimizer state
with the data cursors, the RNG state and the reported loss. Quantizing to 2^-24 makes the digest
insensitive to the last bits of float32 noise *within* an equivalence class' tolerance only in
the common case: a value sitting on a rounding edge still flips it, so cross-backend equality of
``state_fp`` is not promised (E1 comparisons use the values, not this hash).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umlos._generated import tags
from umlos._generated.records import DataCursor, RngStreamState
from umlos.codec import commit_hash, digest

ZERO_FP = bytes(32)
_Q = float(2**24)


def _q24_items(arrays: Mapping[str, NDArray[Any]]) -> list[list[Any]]:
    items = []
    for name, array in arrays.items():
        q = np.rint(np.asarray(array, dtype=np.float64) * _Q) / _Q
        items.append([name, list(array.shape), str(array.dtype), q.astype("<f8").tobytes()])
    return items


def theta_digest(params: Mapping[str, NDArray[Any]]) -> bytes:
    """``Commit(THETA_Q24, [[name, shape, dtype, q_bytes], ...])`` in registration order."""
    return commit_hash(tags.THETA_Q24, _q24_items(params))


def optimizer_digest(slots: Mapping[str, NDArray[Any]]) -> bytes:
    """Digest of the quantized optimizer slots, same item form as :func:`theta_digest`."""
    return digest(_q24_items(slots))


def cursors_digest(cursors: Mapping[str, DataCursor]) -> bytes:
    return digest({key: cursor.to_obj() for key, cursor in cursors.items()})


def rng_digest(streams: tuple[RngStreamState, ...]) -> bytes:
    return digest([s.to_obj() for s in streams])


def state_fp(
    prev: bytes,
    t: int,
    *,
    params: Mapping[str, NDArray[Any]],
    slots: Mapping[str, NDArray[Any]],
    cursors: Mapping[str, DataCursor],
    streams: tuple[RngStreamState, ...],
    loss_total: float,
) -> bytes:
    """``Commit(STATE_FP, [prev, t, theta_digest, H(opt), H(cursors), H(rng), loss_total])``.

    >>> import numpy as np
    >>> fp = state_fp(ZERO_FP, 0, params={"w": np.zeros(2)}, slots={}, cursors={}, streams=(),
    ...               loss_total=0.0)
    >>> len(fp)
    32
    """
    return commit_hash(
        tags.STATE_FP,
        [
            prev,
            t,
            theta_digest(params),
            optimizer_digest(slots),
            cursors_digest(cursors),
            rng_digest(streams),
            float(loss_total),
        ],
    )


def functional_fp(probe_loss: float, outputs: Mapping[str, NDArray[Any]]) -> bytes:
    """``Commit(FUNCTIONAL_FP, [probe_loss, H(outputs as little-endian binary64)])``."""
    blob = b"".join(np.asarray(v, dtype="<f8").tobytes() for v in outputs.values())
    return commit_hash(tags.FUNCTIONAL_FP, [float(probe_loss), digest(blob)])
