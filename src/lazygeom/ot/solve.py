"""The functional facade: ``sinkhorn(x, y)`` / ``sinkhorn(a, x, b, y)`` -> :class:`SinkhornResult`.

It ties the pieces together: checked inputs (:mod:`lazygeom.ot._inputs`), the options as one
checked value (:class:`lazygeom.ot.solver.options.SinkhornOptions`, which also gives the
ε-schedule), a soft-min operator for the chosen solver (:mod:`lazygeom.ot.solver.softmin`, or the
multiscale hierarchy, :mod:`lazygeom.ot.multiscale`) and the loop
(:mod:`lazygeom.ot.solver.loop`). :class:`lazygeom.ot.SamplesLoss`,
:func:`lazygeom.ot.transport_plan` and :func:`lazygeom.ot.barycentric_map` call
:func:`solve_measures` with their own options.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._inputs import Measures, parse_measures
from .costs import CostFn
from .multiscale.solver import Multiscale
from .solver.loop import SinkhornResult, sinkhorn_loop
from .solver.options import SinkhornOptions
from .solver.softmin import choose_backend, make_softmin


def solver_for(m: Measures, options: SinkhornOptions) -> str:
    """The solver that runs ``options.backend`` on these measures.

    Args:
        m: the checked, batched measures.
        options: the solve's options (their ``backend``: "auto" or a solver's name).

    Returns:
        "tensorized", "online" or "multiscale" (:func:`lazygeom.ot.solver.softmin.choose_backend`;
        "auto" considers multiscale for the built-in costs on CPU tensors).

    Raises:
        NotImplementedError: backend="multiscale" for tensors that are not on the CPU.
    """
    B, N, M = m.sizes
    on_cpu = m.x.device.type == "cpu"
    if options.backend == "multiscale" and not on_cpu:
        # the trees and the truncation are written and tested for CPU tensors only so far
        raise NotImplementedError(f"backend='multiscale' runs on CPU tensors for now, got {m.x.device}; "
                                  "use backend='online'")
    return choose_backend(options.backend, B, N, M, m.x.shape[-1], multiscale=options.multiscale_ok and on_cpu)


def solve_measures(m: Measures, options: SinkhornOptions) -> SinkhornResult:
    """Solve entropic OT between checked, batched measures.

    Args:
        m: the measures, weights ``(B, N)``, ``(B, M)`` and points ``(B, N, D)``, ``(B, M, D)``.
        options: how to solve (:class:`lazygeom.ot.solver.options.SinkhornOptions`).

    Returns:
        The batched :class:`SinkhornResult`, which records the solver and the engine that ran.

    Raises:
        ValueError: cluster ``labels`` for a problem that "auto" gives another solver than multiscale.
    """
    solver = solver_for(m, options)
    eps_list = options.schedule(m.x, m.y)
    rho, debias = options.rho, options.debias
    # log(0) = -inf: points of weight zero drop out of the soft-mins (the loop detaches these)
    if solver == "multiscale":
        ms = Multiscale(m, options, eps_list)
        softmin, a_log, b_log = ms.start()
        return ms.result(sinkhorn_loop(softmin, a_log, b_log, eps_list, rho=rho, debias=debias, refine=ms))
    if options.labels is not None:
        raise ValueError(f"labels are cluster labels for backend='multiscale', not for {solver!r}")
    softmin = make_softmin(solver, m.x, m.y, options.ground_cost(), options.engine_backend)
    with torch.no_grad():
        a_log, b_log = m.a.log(), m.b.log()
    return sinkhorn_loop(softmin, a_log, b_log, eps_list, rho=rho, debias=debias)


def sinkhorn(*args: torch.Tensor, p: int = 2, blur: float = 0.05, reach: Optional[float] = None,
             diameter: Optional[float] = None, scaling: float = 0.5, cost: Optional[CostFn] = None, debias: bool = True,
             backend: str = "auto", extra_iterations: int = 0, truncate: Optional[float] = 5.0,
             cluster_scale: Optional[float] = None, labels: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
             verbose: bool = False) -> SinkhornResult:
    """Annealed Sinkhorn potentials between two weighted point clouds.

    ``sinkhorn(x, y)`` (uniform weights) or ``sinkhorn(a, x, b, y)``; x ``(N, D)`` or
    ``(B, N, D)``, a ``(N,)`` or ``(B, N)`` (same for y, b). The entropic OT problem is

        OT_ε(α, β) = min_π ⟨π, C⟩ + ε KL(π | α ⊗ β) [+ ρ KL(π 1 | α) + ρ KL(πᵀ1 | β)],

    with ε = blur^p and ρ = reach^p; the dual potentials (f, g) satisfy
    f = λ softmin_ε(C, log b + g/ε), g = λ softmin_ε(Cᵀ, log a + f/ε), λ = 1 / (1 + ε/ρ).

    Args:
        *args: ``(x, y)`` or ``(a, x, b, y)``.
        p: the cost exponent: C = |x − y|²/2 (p = 2) or |x − y| (p = 1).
        blur: the target length scale; ε = blur^p.
        reach: None (balanced) or the length scale of the KL marginal penalties; ρ = reach^p.
        diameter: the largest distance, for the ε-schedule (default: the joint bounding box's
            diagonal, :func:`lazygeom.ot.solver.schedules.max_diameter`).
        scaling: ratio of consecutive length scales of the schedule, in (0, 1).
        cost: a custom cost callable ``cost(x_i, y_j)`` (see :mod:`lazygeom.ot.costs`).
        debias: also compute the potentials f_aa, g_bb of OT(α, α) and OT(β, β).
        backend: "auto", "tensorized" (dense torch), "online" (LazyTensor reductions) or
            "multiscale" (block-sparse reductions on a coarse-to-fine hierarchy of clusters,
            for the built-in costs: :mod:`lazygeom.ot.multiscale`). "auto" picks tensorized for
            small problems, multiscale for large ones in D <= 3, else online
            (:func:`lazygeom.ot.solver.softmin.choose_backend`).
        extra_iterations: more iterations at the final ε after the schedule. The annealed loop
            (GeomLoss's, and ``SamplesLoss``'s) runs one iteration per scale: its loss values
            are accurate (they are second-order in the potentials' error), but the plan's
            marginals can be off by a few percent; extra iterations converge geometrically
            (see ``SinkhornResult.residual``).
        truncate: multiscale: drop the cluster pairs whose kernel values are all below
            exp(−truncate) times the largest (larger: more accurate and slower; None: keep all).
        cluster_scale: multiscale: the grid side of the finest cluster level; None (default):
            balanced kd-tree clusters of each cloud, at most 64 points per leaf, which follow
            the clouds' density (:mod:`lazygeom.sparse.kdtree`).
        labels: multiscale: integer cluster labels ``(lab_x, lab_y)``, shaped like the weights,
            for the finest cluster level instead of the grid at ``cluster_scale``.
        verbose: multiscale: print the levels, ε and the kept fraction at each step.

    Returns:
        A :class:`lazygeom.ot.SinkhornResult`, potentials shaped like the weights; it records the
        solver that ran (``solver``), the ε-schedule (``eps_history``) and the engine backend of
        the reductions (``engine``).

    Raises:
        ValueError: an option out of its range, naming it (:class:`lazygeom.ot.solver.options.SinkhornOptions`).

    Example:
        >>> res = sinkhorn(x, y, blur=0.01)
        >>> res.f.shape, res.n_iter, res.converged
    """
    m = parse_measures(args, "sinkhorn")
    options = SinkhornOptions(p=p, blur=blur, reach=reach, diameter=diameter, scaling=scaling, cost=cost, debias=debias,
                              backend=backend, extra_iterations=extra_iterations, truncate=truncate,
                              cluster_scale=cluster_scale, labels=labels, verbose=verbose)
    return solve_measures(m, options).map(m.unbatch)


__all__ = ["sinkhorn", "solve_measures", "solver_for"]
