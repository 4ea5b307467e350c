"""Loss values from Sinkhorn potentials, with exact first-order gradients (balanced and unbalanced).

Balanced OT (ρ = ∞), for measures of equal mass:

- entropic OT: OT_ε(α, β) = ⟨a, f⟩ + ⟨b, g⟩;
- Sinkhorn divergence: S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β)
  = ⟨a, f − f_aa⟩ + ⟨b, g − g_bb⟩.

Unbalanced OT with KL marginal penalties (Séjourné et al. 2019, "Sinkhorn divergences for
unbalanced optimal transport"): the dual objective at the fixed point, with plan mass
m(π) = ⟨a, e^{−f/ρ}⟩ = ⟨b, e^{−g/ρ}⟩, is

    OT_ε,ρ(α, β) = ρ(m(α) + m(β)) − (2ρ + ε) m(π) + ε m(α) m(β),

and the debiased divergence S = OT(α,β) − ½OT(α,α) − ½OT(β,β) + (ε/2)(m(α) − m(β))² is

    S = ⟨a, (ρ + ε/2)(e^{−f_aa/ρ} − e^{−f/ρ})⟩ + ⟨b, (ρ + ε/2)(e^{−g_bb/ρ} − e^{−g/ρ})⟩.

Its gradients (envelope theorem on the dual objective, using the fixed-point equations) carry
the factor ρ + ε, not ρ + ε/2:

    ∂S/∂a_i = (ρ + ε)(e^{−f_aa(x_i)/ρ} − e^{−f(x_i)/ρ}),
    ∂S/∂x_i = a_i (ρ + ε) ∇_x[e^{−f_aa(x)/ρ} − e^{−f(x)/ρ}](x_i),

where f(x) is the extrapolated potential (a soft-min of the cost at x). GeomLoss writes the
value with ρ + ε/2 and meant to rescale the gradient in a ``backward`` method of an
``nn.Module``, which autograd never calls: its unbalanced gradients are off by (ρ+ε/2)/(ρ+ε).
Here the value is written ``⟨a, (ρ+ε) E⟩ − (ε/2)⟨a, E⟩.detach()``: the detached term fixes the
value and leaves the gradient alone. The raw (not debiased) value follows GeomLoss,
⟨a, (ρ + ε/2)(1 − e^{−f/ρ})⟩ + ⟨b, ...⟩ = OT_ε,ρ + (ε/2)(m(α) + m(β)) − ε m(α)m(β), with the
gradient of that function: ∂/∂a_i = ρ + ε/2 − (ρ + ε) e^{−f_i/ρ}.
"""

from __future__ import annotations

import torch

from ..solver.loop import SinkhornResult


def _dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # potentials are finite (every measure has a positive mass), also where a weight is zero
    return (w * v).sum(-1)


def sinkhorn_cost(a: torch.Tensor, b: torch.Tensor, res: SinkhornResult) -> torch.Tensor:
    """The Sinkhorn divergence (debiased result) or entropic OT (raw result), per batch item.

    Args:
        a: ``(B, N)`` weights of x (differentiable).
        b: ``(B, M)`` weights of y.
        res: the potentials, from :func:`lazygeom.ot.solver.loop.sinkhorn_loop` (batched layout).

    Returns:
        ``(B,)`` values whose first-order gradients with respect to a, b, x and y are exact at
        the fixed point (module docstring).
    """
    eps, rho = res.eps, res.rho
    if rho is None:
        if res.debiased:
            return _dot(a, res.f - res.f_aa) + _dot(b, res.g - res.g_bb)
        return _dot(a, res.f) + _dot(b, res.g)

    if res.debiased:
        Ea = torch.exp(-res.f_aa / rho) - torch.exp(-res.f / rho)
        Eb = torch.exp(-res.g_bb / rho) - torch.exp(-res.g / rho)
        grad_part = (rho + eps) * (_dot(a, Ea) + _dot(b, Eb))
        return grad_part - (eps / 2) * (_dot(a, Ea) + _dot(b, Eb)).detach()
    Ea, Eb = torch.exp(-res.f / rho), torch.exp(-res.g / rho)
    value_shift = (eps / 2) * (_dot(a, Ea) + _dot(b, Eb)).detach()
    return (rho + eps / 2) * (_dot(a, torch.ones_like(Ea)) + _dot(b, torch.ones_like(Eb))) \
        - (rho + eps) * (_dot(a, Ea) + _dot(b, Eb)) + value_shift


__all__ = ["sinkhorn_cost"]
