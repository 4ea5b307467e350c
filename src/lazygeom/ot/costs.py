"""Ground costs C(x, y) between points, for the dense and the online (LazyTensor) solvers.

A cost is one Python callable ``cost(x_i, y_j)`` written with operations that both torch tensors
and :class:`lazygeom.LazyTensor` understand (``-``, ``**``, ``.sum(-1)``, ``.sqrt()``, ``.exp()``,
...). It is called

- by the online solvers with LazyTensors ``x_i`` of shape ``(B, N, 1, D)`` and ``y_j`` of shape
  ``(B, 1, M, D)``, and must return a scalar LazyTensor (a formula, never a string);
- by the tensorized solvers with dense tensors of the same shapes, and must return the
  ``(B, N, M)`` cost matrix (a trailing singleton dimension is dropped).

The built-in costs (GeomLoss conventions, docs/mathematics.md section 4) are
``C(x, y) = |x - y|^2 / 2`` for ``p = 2`` and ``C(x, y) = |x - y|`` for ``p = 1``; their dense
versions avoid the ``(B, N, M, D)`` temporary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..lazy.lazytensor import LazyTensor
from ._lazy import lazy_i, lazy_j

#: ``cost(x_i, y_j)``: LazyTensors (online) or broadcastable tensors (tensorized) -> cost
CostFn = Callable[[Any, Any], Any]

#: added under the square root of |x - y|: sqrt(0 + tiny) has the finite gradient 0 at x = y
#: (the self-interaction terms C(x_i, x_i) of the debiased divergence and the energy kernel),
#: where sqrt(d) would give 0 * inf = NaN. Per dtype: a normal number (denormals may be flushed
#: to zero) whose square root, the error it adds to |x - y|, is far below the dtype's precision.
#: (GeomLoss clamps |x - y|^2 at 1e-8 instead: its self-distances are 1e-4, which shifts p = 1
#: divergences by about 1e-4 relative.)
SQRT_GUARD = {torch.float32: 1e-20, torch.float64: 1e-100}


def sqrt_guard(dtype: torch.dtype) -> float:
    """The tiny number added under |x - y|'s square root for this dtype (see ``SQRT_GUARD``).

    Args:
        dtype: the points' dtype.

    Returns:
        The guard (1e-20 for a dtype without its own).
    """
    return SQRT_GUARD.get(dtype, 1e-20)


def half_squared_distance(x_i: Any, y_j: Any) -> Any:
    """``C(x, y) = |x - y|^2 / 2`` (p = 2).

    Args:
        x_i: the points x, a LazyTensor ``(B, N, 1, D)`` or a tensor broadcasting like one.
        y_j: the points y, ``(B, 1, M, D)``.

    Returns:
        The cost, a scalar LazyTensor or a ``(B, N, M)`` tensor.
    """
    return ((x_i - y_j) ** 2).sum(-1) / 2


def distance(x_i: Any, y_j: Any) -> Any:
    """``C(x, y) = |x - y|`` (p = 1), with a finite (zero) gradient at ``x = y``.

    Args:
        x_i: the points x, as :func:`half_squared_distance`.
        y_j: the points y.

    Returns:
        The cost (the guard ``sqrt_guard`` under the square root).
    """
    return (((x_i - y_j) ** 2).sum(-1) + sqrt_guard(x_i.dtype)).sqrt()


def dense_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|x_i - y_j|`` for x ``(B, N, D)``, y ``(B, M, D)``: ``(B, N, M)``.

    Args:
        x: ``(B, N, D)`` points.
        y: ``(B, M, D)`` points.

    Returns:
        ``(B, N, M)`` distances.
    """
    # cdist without the matrix-product expansion |x|^2 + |y|^2 - 2<x, y>, whose cancellation in
    # float32 would swamp C / eps at small blur; its backward returns 0 (not NaN) at x = y.
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def dense_sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|x_i - y_j|^2``: ``(B, N, M)``.

    Args:
        x: ``(B, N, D)`` points.
        y: ``(B, M, D)`` points.

    Returns:
        ``(B, N, M)`` squared distances (of :func:`dense_dist`, without cancellation).
    """
    d = dense_dist(x, y)
    return d * d


@dataclass(frozen=True)
class GroundCost:
    """A ground cost with its online formula and its dense evaluation.

    Attributes:
        name: for messages.
        lazy: ``(x_i, y_j) -> LazyTensor``, x_i ``(B, N, 1, D)``, y_j ``(B, 1, M, D)`` LazyTensors.
        dense: ``(x, y) -> (B, N, M)`` tensor, for x ``(B, N, D)`` and y ``(B, M, D)``.
        p: 1 or 2 for the built-in costs |x − y| and |x − y|²/2 (which compiled solvers may
            evaluate themselves, :mod:`lazygeom.ot.solver.marginals`), None for a custom cost.
    """

    name: str
    lazy: Callable[[LazyTensor, LazyTensor], LazyTensor]
    dense: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    p: Optional[int] = None

    def matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The dense ``(B, N, M)`` cost matrix.

        Args:
            x: ``(B, N, D)`` the row points.
            y: ``(B, M, D)`` the column points.

        Returns:
            ``(B, N, M)`` costs C(x_i, y_j).
        """
        return self.dense(x, y)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> LazyTensor:
        """The symbolic ``(B, N, M)`` cost: x ``(B, N, D)`` as i-variables, y ``(B, M, D)`` as j.

        Args:
            x: ``(B, N, D)`` (or ``(N, D)``) the row points.
            y: ``(B, M, D)`` (or ``(M, D)``) the column points.

        Returns:
            The scalar LazyTensor C(x_i, y_j).

        Raises:
            ValueError: a custom cost that does not give a scalar LazyTensor.
        """
        C = self.lazy(lazy_i(x), lazy_j(y))
        if not isinstance(C, LazyTensor) or C.dim != 1:
            raise ValueError(
                f"cost {self.name}: expected a scalar LazyTensor from cost(x_i, y_j), got "
                f"{type(C).__name__}{' of vector dimension ' + str(C.dim) if isinstance(C, LazyTensor) else ''}"
            )
        return C


def _custom_dense(fn: CostFn, name: str):
    def dense(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        C = fn(x[:, :, None, :], y[:, None, :, :])
        if not isinstance(C, torch.Tensor):
            raise ValueError(f"cost {name}: expected a tensor from cost(x_i, y_j), got {type(C).__name__}")
        if C.ndim == 4 and C.shape[-1] == 1:
            C = C[..., 0]
        want = (x.shape[0], x.shape[1], y.shape[1])
        if tuple(C.shape) != want:
            raise ValueError(
                f"cost {name}: for x_i {tuple(x[:, :, None, :].shape)} and y_j {tuple(y[:, None, :, :].shape)} "
                f"the cost has shape {tuple(C.shape)}; expected {want}"
            )
        return C

    return dense


def ground_cost(p: int = 2, cost: CostFn | None = None) -> GroundCost:
    """The ground cost of ``SamplesLoss``: a custom callable, else ``|x-y|^2/2`` (p=2) or ``|x-y|`` (p=1).

    Args:
        p: the exponent (1 or 2) of the built-in cost; ignored by a custom ``cost``.
        cost: a callable ``cost(x_i, y_j)`` working on LazyTensors and on tensors (module docstring).

    Returns:
        The :class:`GroundCost` (its ``p`` is 1 or 2 for the built-in costs, None for a custom one).

    Raises:
        ValueError: p is not 1 or 2 and no cost is given.
    """
    if cost is not None:
        if isinstance(cost, str):
            raise TypeError(
                "cost: formula strings are not supported; pass a callable cost(x_i, y_j) that builds the "
                "cost from LazyTensors, e.g. lambda x_i, y_j: ((x_i - y_j) ** 2).sum(-1) / 2"
            )
        if not callable(cost):
            raise TypeError(f"cost must be a callable cost(x_i, y_j), got {type(cost).__name__}")
        name = getattr(cost, "__name__", type(cost).__name__)
        return GroundCost(name, cost, _custom_dense(cost, name))
    if p == 2:
        return GroundCost("|x-y|^2/2", half_squared_distance, lambda x, y: dense_sqdist(x, y) / 2, p=2)
    if p == 1:
        return GroundCost("|x-y|", distance, dense_dist, p=1)
    raise ValueError(f"p must be 1 or 2 for the built-in costs, got p={p!r} (or pass cost=...)")


__all__ = [
    "CostFn", "GroundCost", "SQRT_GUARD", "sqrt_guard", "dense_dist", "dense_sqdist", "distance", "ground_cost",
    "half_squared_distance",
]
