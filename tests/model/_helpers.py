"""Shared helpers for the model tests: hand-built nodes, kernel runners, finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from umlos.model.backends.numpy_backend import OPS, Bwd, Ctx
from umlos.model.ir import Attrs, Node, Op

Array = np.ndarray[Any, Any]


def make_node(
    op: Op,
    n_operands: int,
    shape_out: tuple[int, ...],
    attrs: Attrs | None = None,
    grad: Sequence[bool] | None = None,
) -> Node:
    """A resolved node built by hand (kernel tests do not go through the validator)."""
    return Node(
        index=0,
        node_id="n",
        op=op,
        inputs=tuple(f"in{j}" for j in range(n_operands)),
        attrs=attrs or Attrs(),
        shape_out=shape_out,
        needs_labels=False,
        grad_operands=tuple(grad) if grad is not None else (True,) * n_operands,
    )


def ctx(batch: int, dtype: str = "float64", masks: dict[str, Any] | None = None) -> Ctx:
    return Ctx(np.dtype(dtype), batch, masks or {})


def forward(node: Node, xs: list[Array], c: Ctx | None = None) -> tuple[Array, Any]:
    return OPS[node.op][0](c or ctx(xs[0].shape[0], str(xs[0].dtype)), node, xs)


def backward(node: Node, xs: list[Array], g: Array, c: Ctx | None = None) -> list[Array | None]:
    c = c or ctx(xs[0].shape[0], str(g.dtype))
    out, saved = OPS[node.op][0](c, node, xs)
    return OPS[node.op][1](c, node, Bwd(xs, out, saved, g, node.grad_operands))


def central_diff(f: Callable[[], float], x: Array, eps: float = 1e-6) -> Array:
    """d f / d x by central differences, element by element (x is perturbed in place)."""
    grad = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_grads(
    node: Node,
    xs: list[Array],
    *,
    rng: np.random.Generator,
    c: Ctx | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-7,
) -> None:
    """Gradient kernel vs central differences of ``<g, forward(xs)>`` for every float operand."""
    out, _ = forward(node, xs, c)
    g = rng.standard_normal(out.shape)
    grads = backward(node, xs, g, c)
    for j, x in enumerate(xs):
        if not node.grad_operands[j]:
            continue

        def f() -> float:
            return float(np.sum(g * forward(node, xs, c)[0]))

        numeric = central_diff(f, x)
        analytic = grads[j]
        assert analytic is not None, f"operand {j} has no gradient"
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=f"operand {j}")
