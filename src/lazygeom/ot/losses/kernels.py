"""Kernel norms (maximum mean discrepancies) between measures, dense and online.

For a kernel k and measures α = Σ a_i δ_{x_i}, β = Σ b_j δ_{y_j} (docs/mathematics.md section 4):

    L(α, β) = ½⟨α − β, k ⋆ (α − β)⟩ = ½⟨a, K_xx a⟩ + ½⟨b, K_yy b⟩ − ⟨a, K_xy b⟩,

with σ = blur and

- ``"energy"``:    k(x, y) = −|x − y|   (conditionally positive: L ≥ 0 when the masses agree),
- ``"gaussian"``:  k(x, y) = exp(−|x − y|² / 2σ²),
- ``"laplacian"``: k(x, y) = exp(−|x − y| / σ).

The potentials (the gradient of L with respect to the weights) are F = K_xx a − K_xy b on x and
G = K_yy b − K_yx a on y, so that L = ½⟨a, F⟩ + ½⟨b, G⟩. Gradients come from autograd through
the reductions (the gradient of a LazyTensor reduction is another reduction).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .._lazy import lazy_j
from ..costs import CostFn, GroundCost, dense_dist, dense_sqdist, ground_cost, sqrt_guard

KERNELS = ("energy", "gaussian", "laplacian")


def kernel_function(name: str, blur: float, kernel: Optional[CostFn] = None) -> GroundCost:
    """The kernel k of a kernel norm, as a pairwise function (dense and LazyTensor versions).

    Args:
        name: "energy", "gaussian" or "laplacian" (ignored when ``kernel`` is given).
        blur: σ, the length scale of the gaussian and laplacian kernels.
        kernel: a custom callable ``k(x_i, y_j)`` working on LazyTensors and on tensors (same
            convention as the costs, :mod:`lazygeom.ot.costs`).

    Returns:
        The kernel as a :class:`lazygeom.ot.costs.GroundCost` (its dense and symbolic forms).

    Raises:
        ValueError: an unknown name, or blur <= 0 for the gaussian and laplacian kernels.
    """
    if kernel is not None:
        return ground_cost(cost=kernel)
    s = float(blur)
    if name == "energy":
        return GroundCost(
            "-|x-y|",
            lambda x_i, y_j: -((((x_i - y_j) ** 2).sum(-1) + sqrt_guard(x_i.dtype)).sqrt()),
            lambda x, y: -dense_dist(x, y),
        )
    if not s > 0:
        raise ValueError(f"the {name} kernel needs blur > 0, got {blur!r}")
    if name == "gaussian":
        c = -1.0 / (2 * s * s)
        return GroundCost(
            "exp(-|x-y|^2/2s^2)",
            lambda x_i, y_j: (((x_i - y_j) ** 2).sum(-1) * c).exp(),
            lambda x, y: (dense_sqdist(x, y) * c).exp(),
        )
    if name == "laplacian":
        c = -1.0 / s
        return GroundCost(
            "exp(-|x-y|/s)",
            lambda x_i, y_j: ((((x_i - y_j) ** 2).sum(-1) + sqrt_guard(x_i.dtype)).sqrt() * c).exp(),
            lambda x, y: (dense_dist(x, y) * c).exp(),
        )
    raise ValueError(f"unknown kernel {name!r}; expected one of {KERNELS} or kernel=callable")


def _kernel_product(k: GroundCost, backend: str, u: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                    engine_backend: Optional[str]) -> torch.Tensor:
    """``(K_uv w)_i = Σ_j k(u_i, v_j) w_j``: u ``(B, N, D)``, v ``(B, M, D)``, w ``(B, M)`` -> ``(B, N)``."""
    if backend == "tensorized":
        return (k.matrix(u, v) @ w[..., None])[..., 0]
    K_ij = k.formula(u, v)
    return (K_ij * lazy_j(w[..., None])).sum(dim=-2, backend=engine_backend)[..., 0]


def kernel_loss(k: GroundCost, backend: str, a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
                potentials: bool = False,
                engine_backend: Optional[str] = None) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The kernel norm ``L`` per batch item, or the potentials ``(F, G)``.

    Args:
        k: the kernel (:func:`kernel_function`).
        backend: "tensorized" (dense ``(B, N, M)`` matrices) or "online" (LazyTensor sums).
        a: ``(B, N)`` weights of x.
        x: ``(B, N, D)`` points.
        b: ``(B, M)`` weights of y.
        y: ``(B, M, D)`` points.
        potentials: return ``(F, G)``, shaped ``(B, N)`` and ``(B, M)``, instead of L.
        engine_backend: the online sums' reduction backend (None: the configured one).

    Returns:
        ``(B,)`` values, or the pair of potentials.
    """
    a_x = _kernel_product(k, backend, x, x, a, engine_backend)
    b_x = _kernel_product(k, backend, x, y, b, engine_backend)
    b_y = _kernel_product(k, backend, y, y, b, engine_backend)
    if potentials:
        a_y = _kernel_product(k, backend, y, x, a, engine_backend)
        return a_x - b_x, b_y - a_y
    # ⟨a, K_xy b⟩ = ⟨b, K_yx a⟩: three reductions suffice for the value and its gradients
    return 0.5 * (a * a_x).sum(-1) + 0.5 * (b * b_y).sum(-1) - (a * b_x).sum(-1)


__all__ = ["KERNELS", "kernel_function", "kernel_loss"]
