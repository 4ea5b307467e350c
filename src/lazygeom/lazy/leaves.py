"""Wrapping user arrays as formula leaves: categories, layouts, and combining LazyTensors.

Layout conventions (as pykeops): a tensor shaped ``(..., N, 1, D)`` is an i-variable,
``(..., 1, M, D)`` a j-variable and ``(..., 1, 1, D)`` a parameter; the leading dims are batch
dims. Inside lazygeom a leaf keeps its data in the backend layout: ``(*b, N, D)``, ``(*b, M, D)``
or ``(*b, D)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import torch

from ..formula import CAT_I, CAT_J, CAT_P, Node, make
from ..formula.registry import broadcast_shapes

if TYPE_CHECKING:
    from ._types import L, Operand
    from .lazytensor import LazyTensor

_UIDS = itertools.count()

Value = Union[torch.Tensor, float]


def new_uid() -> int:
    """A fresh identifier for a leaf placeholder in a formula under construction."""
    return next(_UIDS)


@dataclass(frozen=True)
class Leaf:
    """One wrapped array.

    ``value`` is a tensor in backend layout, or a Python float (a parameter whose dtype and device
    are fixed at reduction time).
    """

    value: Value
    cat: int
    dim: int

    @property
    def batch(self) -> tuple[int, ...]:
        """The batch shape of the value (``()`` for a float)."""
        if isinstance(self.value, float):
            return ()
        drop = 1 if self.cat == CAT_P else 2
        return tuple(self.value.shape[:-drop])

    @property
    def rows(self) -> Optional[int]:
        """N or M for an i- or j-variable; None for a parameter."""
        if self.cat == CAT_P or isinstance(self.value, float):
            return None
        return int(self.value.shape[-2])


def _shape_str(x: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def as_tensor(x: Any, numpy: bool) -> torch.Tensor:
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


def make_leaf(x: Any, axis: Optional[int], numpy: bool) -> Leaf:
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


# --- combining LazyTensors -------------------------------------------------------------


def combine(F: L, op: str, others: Sequence[Operand], attrs: tuple = (),
            build: Optional[Callable[..., Node]] = None) -> L:
    """Apply ``op`` (or the node builder ``build``) to F and others, checking their compatibility.

    Batch dims broadcast; N, M, dtypes and devices must agree where they are known.
    """
    operands = [F] + [F._lift(o) for o in others]
    leaves: dict[int, Leaf] = {}
    batch: tuple[int, ...] = ()
    ni = nj = dtype = device = None
    for o in operands:
        leaves.update(o._leaves)
        batch = broadcast_batch(batch, o._batch, f"between operands of shapes {shapes(operands)}")
        ni = _same(ni, o._ni, "number of i-indices (N)", operands)
        nj = _same(nj, o._nj, "number of j-indices (M)", operands)
        dtype = _same(dtype, o._dtype, "dtypes", operands)
        device = _same(device, o._device, "devices", operands)
    nodes = [o._node for o in operands]
    try:
        node = build(*nodes) if build is not None else make(op, *nodes, attrs=attrs)
    except ValueError as err:
        raise ValueError(f"{op}: {err} (operand shapes {shapes(operands)})") from None
    return F._new(node, leaves, batch, ni, nj, dtype, device)


def shapes(operands: Sequence[LazyTensor]) -> str:
    """The operands' shapes, for error messages."""
    return " and ".join(str(o.shape) for o in operands)


def _same(a: Any, b: Any, what: str, operands: Sequence[LazyTensor]) -> Any:
    if a is None:
        return b
    if b is None or a == b:
        return a
    described = " and ".join(f"{o.shape} ({o._dtype}, {o._device})" for o in operands)
    raise ValueError(f"incompatible {what}: {a} vs {b}, between operands {described}")
