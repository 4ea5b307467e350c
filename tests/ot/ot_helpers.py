"""Helpers shared by the optimal-transport tests."""

from __future__ import annotations

import torch

from lazygeom.ot.costs import ground_cost
from lazygeom.ot.losses.divergence import sinkhorn_cost
from lazygeom.ot.solver.schedules import epsilon_schedule
from lazygeom.ot.solver.loop import sinkhorn_loop
from lazygeom.ot.solver.softmin import make_softmin

SOLVERS = ("tensorized", "online")


def cloud(gen, *shape, dtype=torch.float64, scale=1.0, shift=0.0):
    return torch.rand(*shape, generator=gen, dtype=dtype) * scale + shift


def weights(gen, *shape, dtype=torch.float64, total=1.0):
    w = torch.rand(*shape, generator=gen, dtype=dtype) + 0.2
    return total * w / w.sum(-1, keepdim=True)


def converged_divergence(a, x, b, y, *, blur=0.3, reach=None, debias=True, p=2, solver="tensorized",
                         extra=200, diameter=3.0):
    """The Sinkhorn loss at (numerically) converged potentials: the schedule, then ``extra`` more
    iterations at the final ε. Unbatched inputs."""
    eps_list = epsilon_schedule(p, diameter, blur, 0.5)
    eps_list = eps_list + (eps_list[-1],) * extra
    sm = make_softmin(solver, x[None], y[None], ground_cost(p))
    res = sinkhorn_loop(sm, a.log()[None], b.log()[None], eps_list,
                        rho=None if reach is None else reach**p, debias=debias)
    return sinkhorn_cost(a[None], b[None], res)[0]


def reference_sinkhorn(a, x, b, y, eps, p=2, iters=2000):
    """Independent float64 reference: plain alternating log-domain Sinkhorn on dense matrices.

    Returns ``(f, g, primal)`` with the primal value ⟨π, C⟩ + ε KL(π | a⊗b) of the plan
    π = a_i b_j exp((f_i + g_j − C_ij)/ε), which equals the dual value at convergence.
    """
    a, x, b, y = (t.double() for t in (a, x, b, y))
    d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    C = d**2 / 2 if p == 2 else d
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(iters):
        f = -eps * torch.logsumexp(b.log()[None, :] + (g[None, :] - C) / eps, dim=1)
        g = -eps * torch.logsumexp(a.log()[:, None] + (f[:, None] - C) / eps, dim=0)
    logpi = a.log()[:, None] + b.log()[None, :] + (f[:, None] + g[None, :] - C) / eps
    pi = logpi.exp()
    kl = (pi * (logpi - a.log()[:, None] - b.log()[None, :]) - pi).sum() + (a.sum() * b.sum())
    return f, g, float((pi * C).sum() + eps * kl)


def dense_cost(x, y, p=2):
    d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return d**2 / 2 if p == 2 else d
