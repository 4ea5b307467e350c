"""Checking and normalising the ``(x, y)`` / ``(a, x, b, y)`` arguments of the OT functions.

Everything downstream works on batched tensors: weights ``(B, N)``, points ``(B, N, D)``; the
``batched`` flag says whether to drop B from the outputs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Measures:
    """Two discrete measures α = Σ_i a_i δ_{x_i} and β = Σ_j b_j δ_{y_j} (batched layout).

    Attributes:
        a: ``(B, N)`` non-negative weights of x.
        x: ``(B, N, D)`` points.
        b: ``(B, M)`` non-negative weights of y.
        y: ``(B, M, D)`` points.
        batched: whether the user gave a batch dimension.
    """

    a: torch.Tensor
    x: torch.Tensor
    b: torch.Tensor
    y: torch.Tensor
    batched: bool

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(B, N, M)``."""
        return self.x.shape[0], self.x.shape[1], self.y.shape[1]

    def unbatch(self, t: torch.Tensor) -> torch.Tensor:
        """Drop the batch dimension of an output if the inputs had none.

        Args:
            t: an output shaped ``(B, ...)``.

        Returns:
            ``t``, or ``t[0]`` when the user's inputs had no batch dimension.
        """
        return t if self.batched else t[0]


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _points(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of points, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must hold floating-point coordinates, got dtype {t.dtype}")
    if t.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (N, D) or (B, N, D), got {_shape(t)}")
    if t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {_shape(t)}")
    return t


def _weights(name: str, w, pts: torch.Tensor, pts_name: str) -> torch.Tensor:
    if w is None:
        n = pts.shape[-2]
        return torch.full(pts.shape[:-1], 1.0 / n, dtype=pts.dtype, device=pts.device)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of weights, got {type(w).__name__}")
    if w.ndim == pts.ndim and w.shape[-1] == 1:  # GeomLoss also accepts (N, 1) / (B, N, 1)
        w = w[..., 0]
    if tuple(w.shape) != tuple(pts.shape[:-1]):
        raise ValueError(
            f"the weights {name} of shape {_shape(w)} do not match the points {pts_name} of shape "
            f"{_shape(pts)}: expected {tuple(pts.shape[:-1])}"
        )
    if w.dtype != pts.dtype or w.device != pts.device:
        raise TypeError(
            f"the weights {name} ({w.dtype}, {w.device}) and the points {pts_name} ({pts.dtype}, "
            f"{pts.device}) must have the same dtype and device"
        )
    return w


def parse_measures(args: tuple, what: str = "SamplesLoss") -> Measures:
    """``(x, y)`` (uniform weights 1/N, 1/M) or ``(a, x, b, y)``, checked, in batched layout.

    Args:
        args: the user's tensors: points ``(N, D)`` / ``(B, N, D)``, weights ``(N,)`` / ``(B, N)``
            (or ``(..., N, 1)``).
        what: the caller's name, for the messages.

    Returns:
        The :class:`Measures`, batched.

    Raises:
        TypeError: wrong number or types of arguments, dtype or device mismatches.
        ValueError: incompatible shapes (the message names both), negative weights, or a
            measure of total mass zero.
    """
    if len(args) == 2:
        a, (x, y), b = None, args, None
    elif len(args) == 4:
        a, x, b, y = args
    else:
        raise TypeError(f"{what} takes (x, y) or (a, x, b, y), got {len(args)} arguments")
    x, y = _points("x", x), _points("y", y)
    if x.ndim != y.ndim:
        raise ValueError(
            f"x and y must both be batched (B, N, D) or both not (N, D); got x {_shape(x)} and y {_shape(y)}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x {_shape(x)} and y {_shape(y)} must have the same point dimension D")
    if x.ndim == 3 and x.shape[0] != y.shape[0]:
        raise ValueError(f"x {_shape(x)} and y {_shape(y)} must have the same batch size B")
    if x.dtype != y.dtype or x.device != y.device:
        raise TypeError(f"x ({x.dtype}, {x.device}) and y ({y.dtype}, {y.device}) must have the same dtype and device")
    a, b = _weights("a", a, x, "x"), _weights("b", b, y, "y")
    batched = x.ndim == 3
    if not batched:
        a, x, b, y = a[None], x[None], b[None], y[None]
    for name, w in (("a", a), ("b", b)):
        wd = w.detach()
        if bool((wd < 0).any()):
            raise ValueError(f"the weights {name} must be non-negative (min {float(wd.min()):.3g})")
        if bool((wd.sum(-1) <= 0).any()):
            raise ValueError(f"the weights {name} must have a positive total mass (in every batch item)")
    return Measures(a, x, b, y, batched)


__all__ = ["Measures", "parse_measures"]
