"""The epsilon-scaling (annealing) schedule of the Sinkhorn loop, and the default diameter.

Sinkhorn iterations at a small temperature ε converge slowly from a cold start, but fast from the
potentials of a slightly larger ε. The loop therefore starts at ε₀ = diameter^p, where every
point "sees" every other one, and divides ε by ``scaling^-p`` at each iteration down to the target
blur^p (Kosowsky & Yuille 1994; Schmitzer 2019; Feydy's thesis, section 3.3.3):

    ε_k = diameter^p · scaling^(p·k),   k = 0, 1, ...   while ε_k > blur^p,   then ε_K = blur^p.

Unlike GeomLoss we do not repeat ε₀, and the last value is exactly blur^p. The number of values
is about ``1 + log(diameter / blur) / log(1 / scaling)``: 7 for the unit cube in 3D with blur 0.05
and scaling 0.5. A diameter at or below the blur (e.g. identical one-point clouds, diameter 0)
gives the one-value schedule ``(blur^p,)``.
"""

from __future__ import annotations

import math

import torch


def epsilon_schedule(p: float, diameter: float, blur: float, scaling: float) -> tuple[float, ...]:
    """The temperatures ε of the annealed Sinkhorn loop, from diameter^p down to blur^p.

    Args:
        p: the cost exponent (ε = blur^p: a temperature has the units of the cost).
        diameter: an upper bound on the distances between points (see :func:`max_diameter`).
        blur: the target length scale, > 0.
        scaling: the ratio between consecutive length scales, in (0, 1).

    Returns:
        ``(ε_0, ..., ε_K)``, decreasing, with ``ε_K = blur^p`` exactly.

    Raises:
        ValueError: blur <= 0, scaling outside (0, 1), or a non-finite diameter.
    """
    if not blur > 0 or not math.isfinite(blur):
        raise ValueError(f"blur must be a positive number, got {blur!r}")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling must be in (0, 1), got {scaling!r}")
    if not math.isfinite(diameter) or diameter < 0:
        raise ValueError(f"diameter must be a finite non-negative number, got {diameter!r}")
    target = blur**p
    if diameter <= blur:
        return (target,)
    # count the steps in log space: robust to rounding when diameter / blur is a power of 1/scaling
    n = math.ceil(math.log(diameter / blur) / math.log(1 / scaling) - 1e-9)
    values = [diameter**p * scaling ** (p * k) for k in range(n)]
    return tuple(v for v in values if v > target) + (target,)


def max_diameter(x: torch.Tensor, y: torch.Tensor) -> float:
    """The diagonal of the joint bounding box of x ``(..., N, D)`` and y ``(..., M, D)`` (all batches).

    It bounds every distance |x_i - y_j|, |x_i - x_k| and |y_j - y_l|, so that ε₀ = diameter^p is
    large enough for the first iterations to be nearly exact whatever the potentials.

    Args:
        x: ``(..., N, D)`` points.
        y: ``(..., M, D)`` points.

    Returns:
        The diagonal's length (0 when all the points coincide).
    """
    pts = torch.cat([x.detach().reshape(-1, x.shape[-1]), y.detach().reshape(-1, y.shape[-1])])
    lo, hi = pts.min(0).values, pts.max(0).values
    return float((hi - lo).double().norm())


__all__ = ["epsilon_schedule", "max_diameter"]
