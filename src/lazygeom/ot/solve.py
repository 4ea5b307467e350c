"""The functional facade: ``sinkhorn(x, y)`` / ``sinkhorn(a, x, b, y)`` -> :class:`SinkhornResult`.

It ties the pieces together: checked inputs (:mod:`._inputs`), the ε-schedule
(:mod:`.schedules`), a soft-min operator for the chosen backend (:mod:`.softmin`) and the loop
(:mod:`.sinkhorn`). :class:`lazygeom.ot.SamplesLoss` and :func:`lazygeom.ot.transport_plan` call
:func:`solve_measures`.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._inputs import Measures, parse_measures
from .costs import CostFn, ground_cost
from .schedules import epsilon_schedule, max_diameter
from .sinkhorn import SinkhornResult, sinkhorn_loop
from .softmin import choose_backend, make_softmin


def check_reach(reach: Optional[float]) -> None:
    if reach is not None and not (isinstance(reach, (int, float)) and reach > 0):
        raise ValueError(f"reach must be a positive number or None (balanced OT), got {reach!r}")


def solve_measures(
    m: Measures,
    p: int = 2,
    blur: float = 0.05,
    reach: Optional[float] = None,
    diameter: Optional[float] = None,
    scaling: float = 0.5,
    cost: Optional[CostFn] = None,
    debias: bool = True,
    backend: str = "auto",
    extra_iterations: int = 0,
) -> tuple[SinkhornResult, str]:
    """Solve entropic OT between checked, batched measures; returns the result and the backend used."""
    check_reach(reach)
    B, N, M = m.sizes
    resolved = choose_backend(backend, B, N, M)
    C = ground_cost(p, cost)
    if diameter is None:
        diameter = max_diameter(m.x, m.y)
    eps_list = epsilon_schedule(p, float(diameter), float(blur), float(scaling))
    if extra_iterations < 0:
        raise ValueError(f"extra_iterations must be >= 0, got {extra_iterations}")
    eps_list = eps_list + (eps_list[-1],) * int(extra_iterations)
    rho = None if reach is None else float(reach) ** p
    softmin = make_softmin(resolved, m.x, m.y, C)
    # log(0) = -inf: points of weight zero drop out of the soft-mins (the loop detaches these)
    with torch.no_grad():
        a_log, b_log = m.a.log(), m.b.log()
    res = sinkhorn_loop(softmin, a_log, b_log, eps_list, rho=rho, debias=debias)
    return res, resolved


def sinkhorn(
    *args: torch.Tensor,
    p: int = 2,
    blur: float = 0.05,
    reach: Optional[float] = None,
    diameter: Optional[float] = None,
    scaling: float = 0.5,
    cost: Optional[CostFn] = None,
    debias: bool = True,
    backend: str = "auto",
    extra_iterations: int = 0,
) -> SinkhornResult:
    """Annealed Sinkhorn potentials between two weighted point clouds.

    ``sinkhorn(x, y)`` (uniform weights) or ``sinkhorn(a, x, b, y)``; x ``(N, D)`` or
    ``(B, N, D)``, a ``(N,)`` or ``(B, N)`` (same for y, b). The entropic OT problem is

        OT_ε(α, β) = min_π ⟨π, C⟩ + ε KL(π | α ⊗ β) [+ ρ KL(π 1 | α) + ρ KL(πᵀ1 | β)],

    with ε = blur^p and ρ = reach^p; the dual potentials (f, g) satisfy
    f = λ softmin_ε(C, log b + g/ε), g = λ softmin_ε(Cᵀ, log a + f/ε), λ = 1 / (1 + ε/ρ).

    Args:
        p: the cost exponent: C = |x − y|²/2 (p = 2) or |x − y| (p = 1).
        blur: the target length scale; ε = blur^p.
        reach: None (balanced) or the length scale of the KL marginal penalties; ρ = reach^p.
        diameter: the largest distance, for the ε-schedule (default: the joint bounding box's
            diagonal, :func:`lazygeom.ot.schedules.max_diameter`).
        scaling: ratio of consecutive length scales of the schedule, in (0, 1).
        cost: a custom cost callable ``cost(x_i, y_j)`` (see :mod:`lazygeom.ot.costs`).
        debias: also compute the potentials f_aa, g_bb of OT(α, α) and OT(β, β).
        backend: "auto", "tensorized" or "online" ("multiscale" raises NotImplementedError).
        extra_iterations: more iterations at the final ε after the schedule. The annealed loop
            (GeomLoss's, and ``SamplesLoss``'s) runs one iteration per scale: its loss values
            are accurate (they are second-order in the potentials' error), but the plan's
            marginals can be off by a few percent; extra iterations converge geometrically
            (see ``SinkhornResult.residual``).

    Returns:
        A :class:`lazygeom.ot.SinkhornResult`, potentials shaped like the weights.

    Example:
        >>> res = sinkhorn(x, y, blur=0.01)
        >>> res.f.shape, res.n_iter, res.converged
    """
    m = parse_measures(args, "sinkhorn")
    res, _ = solve_measures(m, p, blur, reach, diameter, scaling, cost, debias, backend, extra_iterations)
    return res.map(m.unbatch)


__all__ = ["check_reach", "sinkhorn", "solve_measures"]
