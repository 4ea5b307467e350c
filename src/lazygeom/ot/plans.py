"""Entropic transport plans (as LazyTensors) and the barycentric map they induce.

With the raw (not debiased) Sinkhorn potentials f, g of OT_ε(α, β) (docs/mathematics.md section 4):

    π_ij = a_i b_j exp((f_i + g_j − C(x_i, y_j)) / ε),
    T(x_i) = Σ_j π_ij y_j / a_i.

The plan is returned as a symbolic N x M LazyTensor: reduce it (``plan.sum(dim=1)`` gives the
first marginal ≈ a, ``(plan * y_j).sum(dim=1)`` moves mass) without ever storing it; ``dense=True``
materialises it for small problems. The potentials are treated as constants here (no implicit
differentiation through the Sinkhorn fixed point): gradients of a plan or a map flow through the
cost and the points only.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..lazy.lazytensor import LazyTensor
from ._inputs import Measures, parse_measures
from ._lazy import lazy_i, lazy_j
from .costs import CostFn
from .solve import solve_measures
from .solver.loop import SinkhornResult
from .solver.options import SinkhornOptions


class _Solved:
    """The raw potentials of OT_ε(α, β) in the plan's terms: f_i/ε on x, log b_j + g_j/ε on y."""

    def __init__(self, what: str, args: tuple, options: SinkhornOptions):
        self.m = parse_measures(args, what)
        self.res: SinkhornResult = solve_measures(self.m, options)
        self.eps, self.cost = self.res.eps, options.ground_cost()
        with torch.no_grad():
            self.fi = self.res.f / self.eps  # (B, N)
            self.hj = self.m.b.log() + self.res.g / self.eps  # (B, M): log b_j + g_j / ε

    def dense(self, hi: torch.Tensor) -> torch.Tensor:
        """The ``(B, N, M)`` matrix hi_i + hj_j − C_ij / ε."""
        return hi[:, :, None] + self.hj[:, None, :] - self.cost.matrix(self.m.x, self.m.y) / self.eps

    def lazy(self, hi: torch.Tensor) -> LazyTensor:
        """The LazyTensor hi_i + hj_j − C_ij / ε, e.g. log π_ij (points keep their gradients).

        Without the batch dimension when the inputs had none.
        """
        m: Measures = self.m
        x, y, hj = (m.x, m.y, self.hj) if m.batched else (m.x[0], m.y[0], self.hj[0])
        hi = hi if m.batched else hi[0]
        return lazy_i(hi[..., None]) + lazy_j(hj[..., None]) - self.cost.formula(x, y) * (1.0 / self.eps)


def transport_plan(*args: torch.Tensor, p: int = 2, blur: float = 0.05, reach: Optional[float] = None,
                   diameter: Optional[float] = None, scaling: float = 0.5, cost: Optional[CostFn] = None,
                   backend: str = "auto", extra_iterations: int = 0,
                   dense: bool = False) -> Union[LazyTensor, torch.Tensor]:
    """The entropic transport plan π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε) between two measures.

    Arguments as :func:`lazygeom.ot.sinkhorn` (``transport_plan(x, y)`` or
    ``transport_plan(a, x, b, y)``); ``backend`` solves for the potentials. The marginals of
    the plan match a and b once the potentials have converged: the annealed loop alone leaves
    errors of a few percent at small blurs, which ``extra_iterations`` (e.g. 100) removes.

    Args:
        *args: ``(x, y)`` or ``(a, x, b, y)``, as :func:`lazygeom.ot.sinkhorn`.
        p: the cost exponent (1 or 2); ε = blur^p.
        blur: the target length scale.
        reach: None (balanced) or the reach of unbalanced OT.
        diameter: the largest distance (default: from the data).
        scaling: the ratio of the ε-schedule's consecutive length scales, in (0, 1).
        cost: a custom cost callable.
        backend: the solver: "auto", "tensorized", "online" or "multiscale".
        extra_iterations: more iterations at the final ε.
        dense: return a dense ``(N, M)`` (or ``(B, N, M)``) tensor instead of a LazyTensor.

    Returns:
        A LazyTensor of shape ``(N, M, 1)`` (or ``(B, N, M, 1)``), or the dense matrix.

    Example:
        >>> pi = transport_plan(x, y, blur=0.01)
        >>> pi.sum(dim=1)                  # ≈ a, shape (N, 1)
        >>> (pi * Vj(y)).sum(dim=1)        # mass-weighted targets
    """
    options = SinkhornOptions(p=p, blur=blur, reach=reach, diameter=diameter, scaling=scaling, cost=cost,
                              debias=False, backend=backend, extra_iterations=extra_iterations)
    s = _Solved("transport_plan", args, options)
    hi = s.m.a.detach().log() + s.fi
    return s.m.unbatch(s.dense(hi).exp()) if dense else s.lazy(hi).exp()


def barycentric_map(*args: torch.Tensor, p: int = 2, blur: float = 0.05, reach: Optional[float] = None,
                    diameter: Optional[float] = None, scaling: float = 0.5, cost: Optional[CostFn] = None,
                    backend: str = "auto", extra_iterations: int = 0, normalize: bool = False) -> torch.Tensor:
    """The barycentric map T(x_i) = Σ_j π_ij y_j / a_i of the entropic plan (GeomLoss #18, #80).

    Arguments as :func:`transport_plan`. Computed as ``exp(r_i) · S_i`` with the row mass
    ``r_i = log Σ_j π_ij − log a_i`` (a LogSumExp) and the soft-max average ``S_i`` of the y_j
    (a SumSoftMaxWeight reduction), so nothing overflows.

    Args:
        *args: ``(x, y)`` or ``(a, x, b, y)``: the map sends the points x.
        p: as :func:`transport_plan`.
        blur: as :func:`transport_plan`.
        reach: as :func:`transport_plan`.
        diameter: as :func:`transport_plan`.
        scaling: as :func:`transport_plan`.
        cost: as :func:`transport_plan`.
        backend: as :func:`transport_plan`; the tensorized solver's map is computed densely, the
            others' by LazyTensor reductions.
        extra_iterations: as :func:`transport_plan`.
        normalize: divide by the plan's row mass Σ_j π_ij instead of a_i (the two agree at the
            balanced fixed point; with ``reach`` the plan's marginal differs from a, and the
            normalised map is the barycentric projection).

    Returns:
        ``(N, D)`` (or ``(B, N, D)``) images of the points x.
    """
    options = SinkhornOptions(p=p, blur=blur, reach=reach, diameter=diameter, scaling=scaling, cost=cost,
                              debias=False, backend=backend, extra_iterations=extra_iterations)
    s = _Solved("barycentric_map", args, options)
    m = s.m
    # log(π_ij / a_i): without log a_i, so that points of weight zero get a map too
    if s.res.solver == "tensorized":
        L = s.dense(s.fi)  # (B, N, M)
        S = torch.softmax(L, dim=2) @ m.y
        return m.unbatch(S if normalize else torch.exp(L.logsumexp(2, keepdim=True)) * S)
    L_ij = s.lazy(s.fi)
    S = L_ij.sumsoftmaxweight(lazy_j(m.y if m.batched else m.y[0]), dim=-2)
    return S if normalize else torch.exp(L_ij.logsumexp(dim=-2)) * S


__all__ = ["barycentric_map", "transport_plan"]
