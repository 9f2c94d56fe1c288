"""The backend protocol (ADR 0008): what every executor of a validated IR provides.

A :class:`Backend` compiles a :class:`~umlos.model.ir.ValidatedIR` once per run into a
:class:`Program`. Parameters, gradients and optimizer slots live on the backend ("device")
between steps as opaque values; they cross to the host only through :meth:`Program.to_host`
(checkpoints, fingerprints, tests). Batches are always host arrays.

Conventions shared by every backend (the train layer relies on them):

* **Names and order.** Parameter and gradient mappings are keyed by parameter name and iterate in
  registration order (``ModelIR.parameters``). Optimizer slots are keyed ``<parameter>/<slot>``
  in parameter order, then slot name order (:func:`slot_names`).
* **Batches.** ``batch`` maps IR input names to host arrays ``[B, *input shape]``. Float inputs
  are cast to the compute dtype, integer inputs to int64. The labels input may be left out of
  :meth:`Program.forward` (loss heads are then skipped), never out of
  :meth:`Program.loss_and_grads`.
* **Losses.** A loss head yields per-sample losses. Backpropagation seeds ``dL/dloss_i = 1/B``
  (the gradient of the batch mean, D24) in the compute dtype; the *reported* loss is
  ``fixed_mean(per_sample_loss)`` in binary64 on the host (:attr:`StepResult.loss`). Checking it
  for finiteness is the caller's job (``InvalidObjectiveError``), as is the gradient norm.
* **Consumed inputs.** :meth:`Program.apply_update` and :meth:`Program.scale_` may reuse the
  buffers they are given: callers treat the passed-in mappings as consumed and keep only the
  returned ones.
* **Randomness.** Only DROPOUT draws, and only in ``train`` mode: each DROPOUT node with
  ``p > 0``, in execution order, takes ``B · numel(shape)`` words from the given
  :class:`~umlos.numerics.PhiloxStream` (:func:`umlos.numerics.words`, C order over
  ``[B, *shape]``); the advanced stream comes back as ``rng_next``.

>>> get_backend("numpy").name
'numpy'
>>> slot_names(OptimizerStep(kind="adamw", lr=1e-3, opt_step=1), ["w", "b"])
['w/exp_avg', 'w/exp_avg_sq', 'b/exp_avg', 'b/exp_avg_sq']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from umlos._generated.records import (
    AdamwOptimizerConfig,
    DriverRuntimeFingerprint,
    OptimizerConfig,
    SgdOptimizerConfig,
)
from umlos.errors import BackendContractViolationError, ContractViolationError, ShapeMismatchError
from umlos.numerics import PhiloxStream, fixed_mean

if TYPE_CHECKING:
    from umlos.model.ir import ValidatedIR

__all__ = [
    "BACKENDS",
    "Backend",
    "ComputeDtype",
    "ExecMode",
    "ForwardResult",
    "OptimizerStep",
    "Program",
    "StepResult",
    "check_batch",
    "get_backend",
    "slot_names",
    "zero_slots",
]

ComputeDtype = Literal["float32", "float64"]
"""The compute dtype of a run: parameters, activations, gradients and optimizer slots."""

ExecMode = Literal["train", "eval", "infer"]
"""Execution mode (ops_model.yaml): ``train`` enables DROPOUT; ``eval``/``infer`` run it as identity."""

BACKENDS: Final[Mapping[str, tuple[str, str]]] = {
    "numpy": ("umlos.model.backends.numpy_backend", "NumpyBackend"),
    "torch": ("umlos.model.backends.torch_backend", "TorchBackend"),
}
"""Backend name → (module, class). Modules are imported on first use, so torch stays optional."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """One batch's training pass: per-sample losses (host) and gradients (device).

    ``per_sample_loss`` is ``[B]`` binary64 on the host, each sample's loss-head value.
    ``grads`` maps parameter names to device gradients of the *batch-mean* loss in registration
    order and compute dtype (for :meth:`Program.per_sample_grads`: ``[B, *shape]`` gradients of
    each sample's own loss, not divided by ``B``). ``rng_next`` is the advanced dropout stream,
    or ``None`` when none was given.
    """

    per_sample_loss: NDArray[np.float64]
    grads: Mapping[str, Any]
    rng_next: PhiloxStream | None = None

    @property
    def loss(self) -> float:
        """The reported loss: ``fixed_mean(per_sample_loss)`` in binary64."""
        return fixed_mean(self.per_sample_loss)


@dataclass(frozen=True, slots=True)
class ForwardResult:
    """One batch's forward pass without gradients.

    ``outputs`` maps the IR's outputs (in ``ModelIR.outputs`` order) to host arrays
    ``[B, *shape_out]`` in the compute dtype. ``per_sample_loss`` is ``[B]`` binary64, or
    ``None`` when no labels were fed or the IR has no loss. ``nodes_executed`` counts the nodes
    run (loss-only nodes are skipped without labels).
    """

    outputs: Mapping[str, NDArray[Any]]
    per_sample_loss: NDArray[np.float64] | None
    nodes_executed: int
    rng_next: PhiloxStream | None = None

    @property
    def loss(self) -> float | None:
        """The reported loss ``fixed_mean(per_sample_loss)``, or ``None`` without labels."""
        return None if self.per_sample_loss is None else fixed_mean(self.per_sample_loss)


@dataclass(frozen=True, slots=True)
class OptimizerStep:
    """The hyper-parameters of one optimizer update, defaults filled (ADR 0008 operation order).

    ``opt_step`` is ``k``, the update's 1-based number (after the increment). ``beta1``,
    ``beta2`` and ``eps`` are used by AdamW only; ``momentum`` and ``nesterov`` by SGD only.

    >>> from umlos._generated.records import SgdOptimizerConfig
    >>> OptimizerStep.from_config(SgdOptimizerConfig(lr=0.1, momentum=0.9), opt_step=3).momentum
    0.9
    """

    kind: Literal["sgd", "adamw"]
    lr: float
    opt_step: int
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if type(self.opt_step) is not int or self.opt_step < 1:
            raise ContractViolationError(
                f"opt_step must be a 1-based int, got {self.opt_step!r}", path="$.opt_step"
            )

    @classmethod
    def from_config(cls, config: OptimizerConfig, *, opt_step: int) -> OptimizerStep:
        """Fill the manifest optimizer's defaults (from its schema) for update number ``opt_step``."""
        if isinstance(config, SgdOptimizerConfig):
            d = SgdOptimizerConfig.defaults
            return cls(
                kind="sgd",
                lr=config.lr,
                opt_step=opt_step,
                weight_decay=_or(config.weight_decay, d["weight_decay"]),
                momentum=_or(config.momentum, d["momentum"]),
                nesterov=bool(_or(config.nesterov, d["nesterov"])),
            )
        if isinstance(config, AdamwOptimizerConfig):
            d = AdamwOptimizerConfig.defaults
            betas = config.betas if config.betas is not None else tuple(d["betas"])
            return cls(
                kind="adamw",
                lr=config.lr,
                opt_step=opt_step,
                weight_decay=_or(config.weight_decay, d["weight_decay"]),
                beta1=float(betas[0]),
                beta2=float(betas[1]),
                eps=_or(config.eps, d["eps"]),
            )
        raise ContractViolationError(  # pragma: no cover - the union is closed
            f"unknown optimizer config {type(config).__qualname__}", path="$.optimizer"
        )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def slot_names(step: OptimizerStep, parameter_names: Sequence[str]) -> list[str]:
    """Optimizer slot names ``<parameter>/<slot>`` in parameter order, then slot name order.

    SGD keeps ``momentum_buffer`` only when ``momentum > 0``; AdamW keeps ``exp_avg`` and
    ``exp_avg_sq`` (training_state.yaml).

    >>> slot_names(OptimizerStep(kind="sgd", lr=0.1, opt_step=1), ["w"])
    []
    """
    if step.kind == "adamw":
        slots: tuple[str, ...] = ("exp_avg", "exp_avg_sq")
    elif step.momentum > 0.0:
        slots = ("momentum_buffer",)
    else:
        slots = ()
    return [f"{name}/{slot}" for name in parameter_names for slot in slots]


def zero_slots(
    step: OptimizerStep, parameters: Mapping[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    """Zero host arrays for every slot of :func:`slot_names`, shaped and typed like the parameter.

    >>> import numpy as np
    >>> s = zero_slots(OptimizerStep(kind="adamw", lr=1e-3, opt_step=1), {"w": np.ones(2)})
    >>> sorted(s), s["w/exp_avg"].tolist()
    (['w/exp_avg', 'w/exp_avg_sq'], [0.0, 0.0])
    """
    out: dict[str, NDArray[Any]] = {}
    for name in slot_names(step, list(parameters)):
        p = parameters[name.rsplit("/", 1)[0]]
        out[name] = np.zeros(p.shape, p.dtype)
    return out


def check_batch(
    ir: ValidatedIR,
    batch: Mapping[str, Any],
    *,
    float_dtype: np.dtype[Any],
    labels_required: bool,
) -> tuple[dict[str, NDArray[Any]], int]:
    """Check a host batch against the IR's inputs and cast it: integer inputs to int64, float
    inputs to ``float_dtype``. Returns the arrays (in input order) and the batch size.

    Every backend calls this first, so a bad batch fails the same way everywhere: an unknown or
    missing input or an integer input of another kind is ``ContractViolationError``, a shape
    that does not fit ``[B, *input shape]`` (or disagrees on ``B``) is ``ShapeMismatchError``.
    """
    inputs = ir.ir.inputs
    known = {i.name for i in inputs}
    for key in batch:
        if key not in known:
            raise ContractViolationError(
                f"{key!r} is not an input of the IR", path=f"$.batch.{key}"
            )
    feeds: dict[str, NDArray[Any]] = {}
    bsz: int | None = None
    for inp in inputs:
        path = f"$.batch.{inp.name}"
        if inp.name not in batch:
            if inp.role == "labels" and not labels_required:
                continue
            raise ContractViolationError(f"input {inp.name!r} is missing", path=path)
        arr = np.asarray(batch[inp.name])
        if arr.ndim == 0 or arr.shape[1:] != inp.shape or (bsz is not None and arr.shape[0] != bsz):
            expected = ["B" if bsz is None else bsz, *inp.shape]
            raise ShapeMismatchError(
                f"input {inp.name!r} has shape {list(arr.shape)}, expected {expected}",
                path=path,
                context={
                    "node_id": inp.name,
                    "shape_in": str(list(arr.shape)),
                    "shape_expected": str(expected),
                },
            )
        bsz = arr.shape[0]
        if ir.values[inp.name].elem == "int":
            if not np.issubdtype(arr.dtype, np.integer):
                raise ContractViolationError(
                    f"input {inp.name!r} must hold integers, got {arr.dtype}", path=path
                )
            feeds[inp.name] = arr.astype(np.int64, copy=False)
        else:
            feeds[inp.name] = arr.astype(float_dtype, copy=False)
    if not bsz:
        raise ContractViolationError("the batch is empty", path="$.batch")
    return feeds, bsz


class Program(Protocol):
    """A validated IR compiled for one backend and compute dtype (once per run).

    ``params``, ``grads``, ``opt_state`` and the tensors of :meth:`sum_of_squares` and
    :meth:`scale_` are device values as returned by :meth:`to_device` (or by another method).
    """

    @property
    def ir(self) -> ValidatedIR:
        """The IR this program runs."""
        ...

    @property
    def dtype(self) -> ComputeDtype:
        """The compute dtype."""
        ...

    def to_device(self, arrays: Mapping[str, NDArray[Any]]) -> dict[str, Any]:
        """Copy host arrays to the device, cast to the compute dtype; keys and order kept."""
        ...

    def to_host(self, arrays: Mapping[str, Any]) -> dict[str, NDArray[Any]]:
        """Copy device values to new host arrays (compute dtype); keys and order kept."""
        ...

    def loss_and_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, NDArray[Any]],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Forward (train mode) and backward over one batch; labels required."""
        ...

    def per_sample_grads(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, NDArray[Any]],
        *,
        rng: PhiloxStream | None = None,
    ) -> StepResult:
        """Like :meth:`loss_and_grads`, but each sample's own gradient ``[B, *shape]`` (DP-SGD)."""
        ...

    def forward(
        self,
        params: Mapping[str, Any],
        batch: Mapping[str, NDArray[Any]],
        *,
        mode: ExecMode = "eval",
        rng: PhiloxStream | None = None,
    ) -> ForwardResult:
        """Forward only; per-sample losses when labels are fed and the IR has a loss."""
        ...

    def apply_update(
        self,
        params: Mapping[str, Any],
        grads: Mapping[str, Any],
        opt_state: Mapping[str, Any],
        hyper: OptimizerStep,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One SGD or AdamW update in ADR 0008's operation order: ``(params, opt_state)``."""
        ...

    def sum_of_squares(self, tensors: Mapping[str, Any]) -> list[float]:
        """Per tensor, in mapping order: the sum of squares in binary64.

        The numpy backend uses ``fixed_sum_of_squares``; the torch backend uses torch's own
        float64 reduction order (ADR 0012), deterministic within its equivalence class. The
        global norm combines these per-tensor values with ``fixed_sum`` on the host.
        """
        ...

    def scale_(self, tensors: Mapping[str, Any], factor: float) -> dict[str, Any]:
        """Multiply every tensor by ``factor`` cast to the compute dtype (clipping); may be in place."""
        ...


@runtime_checkable
class Backend(Protocol):
    """An executor family: ``numpy`` (reference) or ``torch``."""

    name: str

    def fingerprint(self) -> DriverRuntimeFingerprint:
        """The driver/runtime fingerprint bound into the replay token."""
        ...

    def compile(self, ir: ValidatedIR, dtype: ComputeDtype) -> Program:
        """Compile a validated IR for ``dtype``; raises ``PrimitiveUnsupportedError`` for a gap."""
        ...


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend ``name`` (see :data:`BACKENDS`), importing its module lazily.

    ``options`` go to the backend's constructor. An unknown name is a ``ContractViolationError``
    (the manifest schema already restricts it); a backend whose module cannot be imported (torch
    not installed) is a ``BackendContractViolationError`` with reason ``BACKEND_UNAVAILABLE``.

    >>> try:
    ...     get_backend("tensorflow")
    ... except ContractViolationError as exc:
    ...     print(exc.message)
    unknown backend 'tensorflow' (known: numpy, torch)
    """
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        known = ", ".join(BACKENDS)
        raise ContractViolationError(
            f"unknown backend {name!r} (known: {known})", path="$.backend.name"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendContractViolationError(
            f"backend {name!r} is not available: {exc}",
            reason="BACKEND_UNAVAILABLE",
            path="$.backend.name",
        ) from exc
    backend: Backend = getattr(module, class_name)(**options)
    return backend
