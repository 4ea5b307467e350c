"""Wrapping user arrays as formula leaves: categories, layouts and compatibility checks.

Layout conventions (as pykeops): a tensor shaped ``(..., N, 1, D)`` is an i-variable,
``(..., 1, M, D)`` a j-variable and ``(..., 1, 1, D)`` a parameter; the leading dims are batch
dims. Inside lazygeom a leaf keeps its data in the backend layout: ``(*b, N, D)``, ``(*b, M, D)``
or ``(*b, D)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..formula import CAT_I, CAT_J, CAT_P
from ..formula.registry import broadcast_shapes

_UIDS = itertools.count()

Value = Union[torch.Tensor, float]


def new_uid() -> int:
    """A fresh identifier for a leaf placeholder in a formula under construction."""
    return next(_UIDS)


@dataclass(frozen=True)
class Leaf:
    """One wrapped array. ``value`` is a tensor in backend layout, or a Python float (a parameter
    whose dtype and device are fixed at reduction time)."""

    value: Value
    cat: int
    dim: int

    @property
    def batch(self) -> tuple[int, ...]:
        if isinstance(self.value, float):
            return ()
        drop = 1 if self.cat == CAT_P else 2
        return tuple(self.value.shape[:-drop])

    @property
    def rows(self) -> Optional[int]:
        if self.cat == CAT_P or isinstance(self.value, float):
            return None
        return int(self.value.shape[-2])


def _shape_str(x) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def as_tensor(x, numpy: bool) -> torch.Tensor:
    """A torch view of an input array (NumPy arrays are shared, not copied)."""
    if isinstance(x, torch.Tensor):
        return x
    if numpy:
        import numpy as np

        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"expected a {'NumPy array' if numpy else 'torch.Tensor'}, a Python number or a LazyTensor, "
        f"got {type(x).__name__}"
    )


def make_leaf(x, axis: Optional[int], numpy: bool) -> Leaf:
    """Classify an array as an i-variable, a j-variable or a parameter (pykeops rules)."""
    if isinstance(x, bool):
        raise TypeError("LazyTensor: booleans are not numbers here")
    if isinstance(x, (int, float)):
        return Leaf(float(x), CAT_P, 1)
    t = as_tensor(x, numpy)
    if not t.is_floating_point():
        raise TypeError(f"LazyTensor: expected a floating-point array, got dtype {t.dtype}")
    if axis is not None:
        if t.ndim not in (1, 2):
            raise ValueError(
                f"LazyTensor(x, axis={axis}): x must have shape (N, D) or (N,), got {_shape_str(t)}"
            )
        t2 = t if t.ndim == 2 else t.unsqueeze(-1)
        if axis == 0:
            return Leaf(t2, CAT_I, t2.shape[-1])
        if axis == 1:
            return Leaf(t2, CAT_J, t2.shape[-1])
        if axis == 2:
            return Leaf(t2.reshape(-1), CAT_P, t2.numel())
        raise ValueError(f"LazyTensor: axis must be 0 (i), 1 (j) or 2 (parameter), got {axis}")
    if t.ndim == 0:
        return Leaf(t.reshape(1), CAT_P, 1)
    if t.ndim == 1:
        return Leaf(t, CAT_P, t.shape[0])
    if t.ndim == 2:
        raise ValueError(
            f"LazyTensor: cannot tell whether a 2D array of shape {_shape_str(t)} is indexed by i or j; "
            f"use Vi(x) / Vj(x), LazyTensor(x, axis=0|1), or reshape to (N, 1, D) / (1, M, D)"
        )
    a, b, d = t.shape[-3:]
    if a != 1 and b == 1:
        return Leaf(t.squeeze(-2), CAT_I, d)
    if a == 1 and b != 1:
        return Leaf(t.squeeze(-3), CAT_J, d)
    if a == 1 and b == 1:
        return Leaf(t.squeeze(-2).squeeze(-2), CAT_P, d)
    raise ValueError(
        f"LazyTensor: an array of shape {_shape_str(t)} is neither (..., N, 1, D) nor (..., 1, M, D) "
        f"nor (..., 1, 1, D)"
    )


def broadcast_batch(a: tuple[int, ...], b: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Right-aligned broadcast of batch shapes, with an error naming both."""
    try:
        return broadcast_shapes(a, b)
    except ValueError:
        raise ValueError(f"incompatible batch dimensions {a} and {b} {what}") from None
