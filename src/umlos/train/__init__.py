"""Training: explicit state, one step at a time, and the stage loop.

>>> from umlos.manifest import loads_manifest, EXAMPLE_MANIFEST  # doctest: +SKIP
>>> run = prepare(loads_manifest(EXAMPLE_MANIFEST))  # doctest: +SKIP
>>> state = init(run)  # doctest: +SKIP
>>> state, metrics = step(state, next_batch(state))  # doctest: +SKIP
"""

from umlos.train.loop import EvalResult, RunResult, evaluate, train
from umlos.train.run import Batch, Run, prepare
from umlos.train.state import (
    State,
    StepMetrics,
    fingerprint,
    functional_fingerprint,
    init,
    next_batch,
    restore,
    serialize,
    step,
)

__all__ = [
    "Batch",
    "EvalResult",
    "Run",
    "RunResult",
    "State",
    "StepMetrics",
    "evaluate",
    "fingerprint",
    "functional_fingerprint",
    "init",
    "next_batch",
    "prepare",
    "restore",
    "serialize",
    "step",
    "train",
]
