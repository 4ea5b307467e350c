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
from .solver.schedules import epsilon_schedule, max_diameter
from .solver.loop import SinkhornResult, sinkhorn_loop
from .multiscale.solver import Multiscale
from .solver.softmin import choose_backend, make_softmin


def multiscale_ok(p: int, cost: Optional[CostFn]) -> bool:
    """Whether the multiscale solver handles this cost: the built-in ones (its truncation bounds
    are proved for |x − y|²/2 and |x − y|)."""
    return cost is None and p in (1, 2)


def check_multiscale_options(truncate: Optional[float], cluster_scale: Optional[float]) -> None:
    """``truncate`` and ``cluster_scale``: positive numbers or None."""
    for name, v in (("truncate", truncate), ("cluster_scale", cluster_scale)):
        if v is not None and not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{name} must be a positive number or None, got {v!r}")


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
    truncate: Optional[float] = 5.0,
    cluster_scale: Optional[float] = None,
    labels: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    verbose: bool = False,
) -> tuple[SinkhornResult, str]:
    """Solve entropic OT between checked, batched measures; returns the result and the backend used."""
    check_reach(reach)
    B, N, M = m.sizes
    D = m.x.shape[-1]
    on_cpu = m.x.device.type == "cpu"
    if backend == "multiscale" and not on_cpu:
        # the trees and the truncation are written and tested for CPU tensors only so far
        raise NotImplementedError(f"backend='multiscale' runs on CPU tensors for now, got {m.x.device}; "
                                  "use backend='online'")
    resolved = choose_backend(backend, B, N, M, D, multiscale=multiscale_ok(p, cost) and on_cpu)
    C = ground_cost(p, cost)
    if diameter is None:
        diameter = max_diameter(m.x, m.y)
    eps_list = epsilon_schedule(p, float(diameter), float(blur), float(scaling))
    if extra_iterations < 0:
        raise ValueError(f"extra_iterations must be >= 0, got {extra_iterations}")
    eps_list = eps_list + (eps_list[-1],) * int(extra_iterations)
    rho = None if reach is None else float(reach) ** p
    check_multiscale_options(truncate, cluster_scale)
    # log(0) = -inf: points of weight zero drop out of the soft-mins (the loop detaches these)
    if resolved == "multiscale":
        ms = Multiscale(m.x, m.a, m.y, m.b, p, C, eps_list, rho, truncate, cluster_scale, labels, verbose, debias)
        softmin, a_log, b_log = ms.start()
        res = sinkhorn_loop(softmin, a_log, b_log, eps_list, rho=rho, debias=debias, refine=ms)
        return ms.result(res), resolved
    if labels is not None:
        raise ValueError(f"labels are cluster labels for backend='multiscale', not for {resolved!r}")
    softmin = make_softmin(resolved, m.x, m.y, C)
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
    truncate: Optional[float] = 5.0,
    cluster_scale: Optional[float] = None,
    labels: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    verbose: bool = False,
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
        backend: "auto", "tensorized" (dense torch), "online" (LazyTensor reductions) or
            "multiscale" (block-sparse reductions on a coarse-to-fine hierarchy of clusters,
            for the built-in costs: :mod:`lazygeom.ot.multiscale`). "auto" picks tensorized for
            small problems, multiscale for large ones in D <= 3, else online
            (:func:`lazygeom.ot.softmin.choose_backend`).
        extra_iterations: more iterations at the final ε after the schedule. The annealed loop
            (GeomLoss's, and ``SamplesLoss``'s) runs one iteration per scale: its loss values
            are accurate (they are second-order in the potentials' error), but the plan's
            marginals can be off by a few percent; extra iterations converge geometrically
            (see ``SinkhornResult.residual``).
        truncate: multiscale: drop the cluster pairs whose kernel values are all below
            exp(−truncate) times the largest (larger: more accurate and slower; None: keep all).
        cluster_scale: multiscale: the grid side of the finest cluster level; None (default):
            balanced kd-tree clusters of each cloud, at most 64 points per leaf, which follow
            the clouds' density (:mod:`lazygeom.ot.kdtree`).
        labels: multiscale: integer cluster labels ``(lab_x, lab_y)``, shaped like the weights,
            for the finest cluster level instead of the grid at ``cluster_scale``.
        verbose: multiscale: print the levels, ε and the kept fraction at each step.

    Returns:
        A :class:`lazygeom.ot.SinkhornResult`, potentials shaped like the weights.

    Example:
        >>> res = sinkhorn(x, y, blur=0.01)
        >>> res.f.shape, res.n_iter, res.converged
    """
    m = parse_measures(args, "sinkhorn")
    res, _ = solve_measures(m, p, blur, reach, diameter, scaling, cost, debias, backend, extra_iterations,
                            truncate, cluster_scale, labels, verbose)
    return res.map(m.unbatch)


__all__ = ["check_multiscale_options", "check_reach", "multiscale_ok", "sinkhorn", "solve_measures"]
