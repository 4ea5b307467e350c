"""The Hausdorff divergence: one pass of four soft-mins, no iterations.

Feydy & Trouvé 2018, "Global divergences between measures: from Hausdorff distance to Optimal
Transport". With the soft distance to a measure μ = Σ_k m_k δ_{z_k},

    s_μ(x) = −ε log Σ_k m_k exp(−C(x, z_k) / ε)        (ε = blur^p),

the divergence is

    H_ε(α, β) = ½⟨α − β, s_β − s_α⟩
              = ½[⟨a, s_β(x) − s_α(x)⟩ + ⟨b, s_α(y) − s_β(y)⟩] ≥ 0.

As ε → 0, s_α(x_i) → 0 and s_β(x) → min_j C(x, y_j): H tends to the symmetric Chamfer (ICP)
loss ½(Σ_i a_i min_j C(x_i, y_j) + Σ_j b_j min_i C(x_i, y_j)); as ε → ∞ it tends to the kernel
norm of k = −C (the energy distance for p = 1). Note the order s_β − s_α: the project's original
note wrote ⟨α − β, s_α − s_β⟩, the negative of this positive divergence (docs/mathematics.md,
sections 4.7 and 6).

Potentials: F = s_β(x) − s_α(x) and G = s_α(y) − s_β(y), so that H = ½⟨a, F⟩ + ½⟨b, G⟩.
Unlike the Sinkhorn potentials they are not the gradient with respect to the weights.
GeomLoss lists this loss but its implementation crashes (GeomLoss issue #70).
"""

from __future__ import annotations

import torch

from ..solver.softmin import SoftminOperator


def safe_log(w: torch.Tensor) -> torch.Tensor:
    """log(w), −inf where w = 0, with gradient 1/w where w > 0 and 0 (not NaN) where w = 0.

    At a zero weight the soft-mins give the log-weight no gradient anyway; plain ``log`` would
    turn that 0 into 0 / 0 = NaN. (The one-sided derivative in a zero weight is then reported as 0.)

    Args:
        w: non-negative weights.

    Returns:
        log(w), shaped like w.
    """
    pos = w > 0
    return torch.where(pos, torch.where(pos, w, torch.ones_like(w)).log(), torch.full_like(w, -float("inf")))


def hausdorff_potentials(softmin: SoftminOperator, eps: float, a: torch.Tensor,
                         b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F, G) = (s_β(x) − s_α(x), s_α(y) − s_β(y))``, shaped ``(B, N)`` and ``(B, M)``.

    Args:
        softmin: the soft-min operator holding x ``(B, N, D)`` and y ``(B, M, D)``.
        eps: the temperature ε = blur^p.
        a: the weights ``(B, N)`` of x (differentiable).
        b: the weights ``(B, M)`` of y.

    Returns:
        ``(F, G)``.
    """
    a_log, b_log = safe_log(a), safe_log(b)
    s_b_x = softmin(eps, "xy", b_log, grad="all")
    s_a_x = softmin(eps, "xx", a_log, grad="all")
    s_a_y = softmin(eps, "yx", a_log, grad="all")
    s_b_y = softmin(eps, "yy", b_log, grad="all")
    return s_b_x - s_a_x, s_a_y - s_b_y


def hausdorff_loss(softmin: SoftminOperator, eps: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``H_ε(α, β)`` per batch item, ``(B,)``, differentiable with respect to everything.

    Args:
        softmin: the soft-min operator holding x ``(B, N, D)`` and y ``(B, M, D)``.
        eps: the temperature ε = blur^p.
        a: the weights ``(B, N)`` of x.
        b: the weights ``(B, M)`` of y.

    Returns:
        ``(B,)`` values ½⟨a, F⟩ + ½⟨b, G⟩.
    """
    F, G = hausdorff_potentials(softmin, eps, a, b)
    return 0.5 * ((a * F).sum(-1) + (b * G).sum(-1))


__all__ = ["hausdorff_loss", "hausdorff_potentials", "safe_log"]
