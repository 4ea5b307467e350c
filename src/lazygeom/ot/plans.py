"""Entropic transport plans (as LazyTensors) and the barycentric map they induce.

With the raw (not debiased) Sinkhorn potentials f, g of OT_ε(α, β) (ALGORITHMS.md section 3):

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
from .costs import CostFn, ground_cost
from .solve import solve_measures


def _solve(what, args, p, blur, reach, diameter, scaling, cost, backend, extra_iterations):
    m = parse_measures(args, what)
    res, used = solve_measures(m, p, blur, reach, diameter, scaling, cost, debias=False, backend=backend,
                               extra_iterations=extra_iterations)
    with torch.no_grad():
        fi = res.f / res.eps  # (B, N)
        hj = m.b.log() + res.g / res.eps  # (B, M): log b_j + g_j / ε
    return m, res.eps, fi, hj, used


def _log_plan(m: Measures, eps: float, hi: torch.Tensor, hj: torch.Tensor, cost: Optional[CostFn], p: int):
    """The LazyTensor hi_i + hj_j − C_ij / ε, e.g. log π_ij (points keep their gradients)."""
    bt = m.batched
    x, y = (m.x, m.y) if bt else (m.x[0], m.y[0])
    hi, hj = (hi, hj) if bt else (hi[0], hj[0])
    C_ij = ground_cost(p, cost).formula(x, y)
    return lazy_i(hi[..., None]) + lazy_j(hj[..., None]) - C_ij * (1.0 / eps)


def transport_plan(
    *args: torch.Tensor,
    p: int = 2,
    blur: float = 0.05,
    reach: Optional[float] = None,
    diameter: Optional[float] = None,
    scaling: float = 0.5,
    cost: Optional[CostFn] = None,
    backend: str = "auto",
    extra_iterations: int = 0,
    dense: bool = False,
) -> Union[LazyTensor, torch.Tensor]:
    """The entropic transport plan π_ij = a_i b_j exp((f_i + g_j − C_ij)/ε) between two measures.

    Arguments as :func:`lazygeom.ot.sinkhorn` (``transport_plan(x, y)`` or
    ``transport_plan(a, x, b, y)``); ``backend`` solves for the potentials. The marginals of
    the plan match a and b once the potentials have converged: the annealed loop alone leaves
    errors of a few percent at small blurs, which ``extra_iterations`` (e.g. 100) removes.

    Args:
        dense: return a dense ``(N, M)`` (or ``(B, N, M)``) tensor instead of a LazyTensor.

    Returns:
        A LazyTensor of shape ``(N, M, 1)`` (or ``(B, N, M, 1)``), or the dense matrix.

    Example:
        >>> pi = transport_plan(x, y, blur=0.01)
        >>> pi.sum(dim=1)                  # ≈ a, shape (N, 1)
        >>> (pi * Vj(y)).sum(dim=1)        # mass-weighted targets
    """
    m, eps, fi, hj, _ = _solve("transport_plan", args, p, blur, reach, diameter, scaling, cost, backend,
                               extra_iterations)
    hi = m.a.detach().log() + fi
    if dense:
        C = ground_cost(p, cost).matrix(m.x, m.y)
        return m.unbatch((hi[:, :, None] + hj[:, None, :] - C / eps).exp())
    return _log_plan(m, eps, hi, hj, cost, p).exp()


def barycentric_map(
    *args: torch.Tensor,
    p: int = 2,
    blur: float = 0.05,
    reach: Optional[float] = None,
    diameter: Optional[float] = None,
    scaling: float = 0.5,
    cost: Optional[CostFn] = None,
    backend: str = "auto",
    extra_iterations: int = 0,
    normalize: bool = False,
) -> torch.Tensor:
    """The barycentric map T(x_i) = Σ_j π_ij y_j / a_i of the entropic plan (GeomLoss #18, #80).

    Arguments as :func:`transport_plan`. Computed as ``exp(r_i) · S_i`` with the row mass
    ``r_i = log Σ_j π_ij − log a_i`` (a LogSumExp) and the soft-max average ``S_i`` of the y_j
    (a SumSoftMaxWeight reduction), so nothing overflows.

    Args:
        normalize: divide by the plan's row mass Σ_j π_ij instead of a_i (the two agree at the
            balanced fixed point; with ``reach`` the plan's marginal differs from a, and the
            normalised map is the barycentric projection).

    Returns:
        ``(N, D)`` (or ``(B, N, D)``) images of the points x.
    """
    m, eps, fi, hj, used = _solve("barycentric_map", args, p, blur, reach, diameter, scaling, cost, backend,
                                  extra_iterations)
    # log(π_ij / a_i): without log a_i, so that points of weight zero get a map too
    if used == "tensorized":
        L = fi[:, :, None] + hj[:, None, :] - ground_cost(p, cost).matrix(m.x, m.y) / eps  # (B, N, M)
        S = torch.softmax(L, dim=2) @ m.y
        return m.unbatch(S if normalize else torch.exp(L.logsumexp(2, keepdim=True)) * S)
    L_ij = _log_plan(m, eps, fi, hj, cost, p)
    S = L_ij.sumsoftmaxweight(lazy_j(m.y if m.batched else m.y[0]), dim=-2)
    return S if normalize else torch.exp(L_ij.logsumexp(dim=-2)) * S


__all__ = ["barycentric_map", "transport_plan"]
