"""The Sinkhorn loop, written once for every backend: it receives a soft-min operator.

Notation (docs/mathematics.md section 4, GeomLoss conventions): α = Σ a_i δ_{x_i}, β = Σ b_j δ_{y_j},
cost C, temperature ε = blur^p, marginal penalty ρ = reach^p (``None``: balanced OT), damping
λ = 1 / (1 + ε/ρ) (λ = 1 when balanced), and

    softmin_ε(C, h)_i = −ε log Σ_j exp(h_j − C_ij / ε).

The entropic OT potentials solve f = λ softmin_ε(C_xy, log b + g/ε), g = λ softmin_ε(C_yx, log a
+ f/ε); the debiased divergence also needs the symmetric potentials f_aa (of OT(α, α)) and g_bb.

Algorithm (Feydy et al., AISTATS 2019, "Interpolating between OT and MMD using Sinkhorn
divergences"; Feydy's thesis, algorithm 3.4):

1. at ε₀ (the first value of the schedule): g = λ softmin(C_yx, log a), f = λ softmin(C_xy, log b),
   and with debiasing f_aa = λ softmin(C_xx, log a), g_bb = λ softmin(C_yy, log b);
2. at each following ε (at ε₀ again if the schedule has one value): new potentials from the old
   ones (all four at once), then the average of old and new ("symmetric" updates, which do not
   oscillate). The new f and g are the row and column sums of one plan: an operator with a
   ``step`` method computes both in one pass (:mod:`lazygeom.ot.solver.marginals`);
3. the final extrapolation: one more non-averaged update at ε = blur^p in which the log-weights
   and the potentials inside the soft-min are *detached*, while the cost keeps its gradient with
   respect to its row points. By the envelope theorem (the dual objective is stationary in the
   potentials at the fixed point) the first-order gradients of the loss with respect to the
   points and the weights are then exact at the fixed point, and autograd never goes through
   the loop, whose memory would grow with the number of iterations.

Steps 1-2 run under ``torch.no_grad``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Protocol, Sequence

import torch

from .softmin import SoftminOperator

#: :attr:`SinkhornResult.converged` when the final update moved no potential by more than this
#: fraction of ε (the plan's marginals then agree with a and b to about 1%).
CONVERGED_RESIDUAL = 1e-2


@dataclass(frozen=True)
class SinkhornResult:
    """The dual potentials of an (annealed) Sinkhorn solve.

    The potentials are the *extrapolated* ones of the final step: differentiable with respect to
    the points on their side (``f`` and ``f_aa`` with respect to x, ``g`` and ``g_bb`` w.r.t. y).

    Attributes:
        f: ``(B, N)`` (or ``(N,)``) potential f_ba of OT_ε(α, β), on x.
        g: ``(B, M)`` potential g_ab, on y.
        f_aa: ``(B, N)`` potential of OT_ε(α, α) on x, or None without debiasing.
        g_bb: ``(B, M)`` potential of OT_ε(β, β) on y, or None.
        eps: the final temperature ε = blur^p.
        rho: the marginal penalty ρ = reach^p, None when balanced.
        eps_history: the ε of the initialisation and of every averaged update of the loop (the
            final extrapolation, at ``eps``, is not listed).
        residual: max over the potentials of |extrapolated − last loop value| / ε: how much the
            final (non-averaged) update moved them, in units of ε.
        solver: the solver that ran: "tensorized", "online" or "multiscale" (the soft-min
            operator's ``solver``; "custom" for an operator without one).
        engine: the engine backend that ran its reductions: "cpu", "reference", "triton", or
            "torch" for the tensorized solver's dense operations (:mod:`lazygeom.ot.solver.engine`).
        one_pass_steps: how many updates (one per pair "xy", "xx", "yy" and step, the final ones
            included) ran as one pass over the plan's pairs (:mod:`lazygeom.ot.solver.marginals`)
            instead of two LogSumExp reductions; 0 where the pass does not apply.
    """

    f: torch.Tensor
    g: torch.Tensor
    f_aa: Optional[torch.Tensor]
    g_bb: Optional[torch.Tensor]
    eps: float
    rho: Optional[float]
    eps_history: tuple[float, ...]
    residual: float
    solver: str = "custom"
    engine: str = "unknown"
    one_pass_steps: int = 0

    @property
    def n_iter(self) -> int:
        """Number of Sinkhorn steps in the loop (initialisation included, extrapolation not)."""
        return len(self.eps_history)

    @property
    def converged(self) -> bool:
        """Whether the final update moved the potentials by at most ``CONVERGED_RESIDUAL`` · ε."""
        return self.residual <= CONVERGED_RESIDUAL

    @property
    def debiased(self) -> bool:
        """Whether the symmetric potentials f_aa and g_bb were computed (the Sinkhorn divergence)."""
        return self.f_aa is not None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "SinkhornResult":
        """The same result with ``fn`` applied to every potential.

        Args:
            fn: a function of one potential, e.g. ``lambda t: t[0]`` to drop a batch dimension.

        Returns:
            A new :class:`SinkhornResult` (the other fields unchanged).
        """
        return replace(self, f=fn(self.f), g=fn(self.g), f_aa=None if self.f_aa is None else fn(self.f_aa),
                       g_bb=None if self.g_bb is None else fn(self.g_bb))


#: ``(f, g, f_aa, g_bb)``: the potentials of the loop (the last two None without debiasing)
Potentials = tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]


class Refiner(Protocol):
    """The multiscale hook of :func:`sinkhorn_loop` (see :mod:`lazygeom.ot.multiscale`).

    ``refine(eps, eps_prev, potentials, final)`` is called before the update at temperature
    ``eps`` (the potentials being those of the update at ``eps_prev``) and, with ``final=True``,
    before the final extrapolation. It returns None to stay on the current discretization, or
    ``(softmin, a_log, b_log, potentials)`` on a finer one: the new operator, log-weights and the
    potentials extrapolated to its points. ``final=True`` must reach the finest one.
    """

    def __call__(self, eps: float, eps_prev: float, potentials: Potentials,
                 final: bool) -> Optional[tuple[SoftminOperator, torch.Tensor, torch.Tensor, Potentials]]:
        """Move to a finer discretization before the update at ``eps``, or stay (None).

        Args:
            eps: the temperature of the next update.
            eps_prev: the temperature of the last update.
            potentials: ``(f, g, f_aa, g_bb)`` after the last update.
            final: whether the next update is the final extrapolation.

        Returns:
            None, or the finer operator, its log-weights and the extrapolated potentials.
        """
        ...


def damping(eps: float, rho: Optional[float]) -> float:
    """λ = 1 / (1 + ε/ρ): the KL marginal penalty shrinks the potentials (1 when balanced).

    Args:
        eps: the temperature ε.
        rho: the marginal penalty ρ, None for balanced OT.

    Returns:
        λ, in (0, 1].
    """
    return 1.0 if rho is None else 1.0 / (1.0 + eps / rho)


class _Updates:
    """The loop's Jacobi updates through one operator at a time, counting the one-pass ones."""

    def __init__(self) -> None:
        self.one_pass = 0

    def __call__(self, softmin: SoftminOperator, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor,
                 u_log: torch.Tensor, v_log: torch.Tensor,
                 grad: str = "none") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The (undamped) soft-min updates of both sides of ``pair`` from the old potentials.

        u (rows) and v (columns) give ``(softmin(pair, v_log + v/ε), softmin(reversed pair,
        u_log + u/ε))``, the second None for a self-interaction; ``grad="rows"``: the final
        step's (h detached, each side differentiable in its row points). Through the operator's
        one-pass ``step`` when it has one that applies (:mod:`lazygeom.ot.solver.marginals`), else two
        soft-mins.
        """
        step = getattr(softmin, "step", None)
        out = None if step is None else step(eps, pair, u, v, u_log, v_log, grad)
        if out is not None:
            self.one_pass += 1
            return out
        h_rows, h_cols = v_log + v / eps, u_log + u / eps
        if grad != "none":
            h_rows, h_cols = h_rows.detach(), h_cols.detach()
        rows = softmin(eps, pair, h_rows, grad=grad)
        return rows, (None if pair[0] == pair[1] else softmin(eps, pair[::-1], h_cols, grad=grad))


def _max_change(new: torch.Tensor, old: torch.Tensor) -> float:
    # a NaN or an infinity propagates: such a result must not look converged
    return float((new.detach() - old.detach()).abs().max())


def sinkhorn_loop(
    softmin: SoftminOperator,
    a_log: torch.Tensor,
    b_log: torch.Tensor,
    eps_list: Sequence[float],
    rho: Optional[float] = None,
    debias: bool = True,
    extrapolate: bool = True,
    refine: Optional[Refiner] = None,
) -> SinkhornResult:
    """Annealed, symmetric Sinkhorn iterations with a final differentiable extrapolation.

    Args:
        softmin: the soft-min operator (:mod:`lazygeom.ot.solver.softmin`), which holds x and y.
        a_log: ``(B, N)`` log-weights of x (−inf for weight 0); detached here.
        b_log: ``(B, M)`` log-weights of y.
        eps_list: the temperatures (:func:`lazygeom.ot.solver.schedules.epsilon_schedule`); the last one
            is the target ε. Repeating it runs more iterations at the target.
        rho: ρ = reach^p for unbalanced OT with KL penalties, None for balanced OT.
        debias: also compute f_aa and g_bb (for the Sinkhorn divergence).
        extrapolate: run the final differentiable step (else the potentials are the loop's,
            without graph).
        refine: the multiscale hook (:class:`Refiner`): called before every update and before
            the extrapolation, it may move the problem to a finer discretization.

    Returns:
        A :class:`SinkhornResult`.
    """
    eps_list = tuple(float(e) for e in eps_list)
    if not eps_list or not all(e > 0 for e in eps_list):
        raise ValueError(f"eps_list must be a non-empty sequence of positive numbers, got {eps_list}")
    if rho is not None and not rho > 0:
        raise ValueError(f"rho (reach^p) must be positive or None, got {rho!r}")
    a_log, b_log = a_log.detach(), b_log.detach()
    update = _Updates()
    f_aa = g_bb = None
    history = [eps_list[0]] + list(eps_list[1:] or eps_list)
    with torch.no_grad():
        eps = eps_list[0]
        lam = damping(eps, rho)
        f = lam * softmin(eps, "xy", b_log)
        g = lam * softmin(eps, "yx", a_log)
        if debias:
            f_aa = lam * softmin(eps, "xx", a_log)
            g_bb = lam * softmin(eps, "yy", b_log)
        # The initialisation computes f and g from zero potentials, which double-counts their
        # constant parts; one averaged update fixes that, so a one-value schedule gets one.
        for eps_prev, eps in zip(eps_list, eps_list[1:] or eps_list):
            if refine is not None:
                softmin, a_log, b_log, (f, g, f_aa, g_bb) = refine(eps, eps_prev, (f, g, f_aa, g_bb), False) \
                    or (softmin, a_log, b_log, (f, g, f_aa, g_bb))
            lam = damping(eps, rho)
            ft, gt = update(softmin, eps, "xy", f, g, a_log, b_log)
            f, g = 0.5 * (f + lam * ft), 0.5 * (g + lam * gt)
            if debias:
                ft_aa, _ = update(softmin, eps, "xx", f_aa, f_aa, a_log, a_log)
                gt_bb, _ = update(softmin, eps, "yy", g_bb, g_bb, b_log, b_log)
                f_aa, g_bb = 0.5 * (f_aa + lam * ft_aa), 0.5 * (g_bb + lam * gt_bb)

    eps = eps_list[-1]
    if refine is not None:
        with torch.no_grad():
            softmin, a_log, b_log, (f, g, f_aa, g_bb) = refine(eps, history[-1], (f, g, f_aa, g_bb), True) \
                or (softmin, a_log, b_log, (f, g, f_aa, g_bb))
    record = dict(solver=getattr(softmin, "solver", "custom"), engine=getattr(softmin, "engine", "unknown"))
    if not extrapolate:
        return SinkhornResult(f, g, f_aa, g_bb, eps, rho, tuple(history), float("nan"),
                              one_pass_steps=update.one_pass, **record)
    lam = damping(eps, rho)
    old = [f, g] + ([f_aa, g_bb] if debias else [])
    # Detached log-weights and potentials: only the cost carries gradients (envelope theorem).
    f_new, g_new = update(softmin, eps, "xy", f, g, a_log, b_log, grad="rows")
    f_new, g_new = lam * f_new, lam * g_new
    new = [f_new, g_new]
    if debias:
        f_aa = lam * update(softmin, eps, "xx", f_aa, f_aa, a_log, a_log, grad="rows")[0]
        g_bb = lam * update(softmin, eps, "yy", g_bb, g_bb, b_log, b_log, grad="rows")[0]
        new += [f_aa, g_bb]
    residual = max(_max_change(n, o) for n, o in zip(new, old)) / eps
    return SinkhornResult(f_new, g_new, f_aa, g_bb, eps, rho, tuple(history), residual,
                          one_pass_steps=update.one_pass, **record)


__all__ = ["CONVERGED_RESIDUAL", "Potentials", "Refiner", "SinkhornResult", "damping", "sinkhorn_loop"]
