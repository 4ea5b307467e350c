"""NumPy in, NumPy out: the decorator that lets the clustering helpers take NumPy arrays."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, TypeVar, Union, cast

import numpy as np
import torch

#: an array of either front end: the clustering helpers take both
Array = Union[torch.Tensor, np.ndarray]
#: pykeops' block-sparse ``ranges``: ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``
Ranges = Sequence[Array]
#: the 6-tuple that the helpers return (int64 tensors, or ndarrays for NumPy inputs)
RangesTuple = tuple[Array, Array, Array, Array, Array, Array]

_F = TypeVar("_F", bound=Callable[..., Any])


def to_numpy(out: Any) -> Any:
    """Tensors (also inside tuples/lists) as NumPy arrays; anything else unchanged."""
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy()
    if isinstance(out, (tuple, list)):
        return type(out)(to_numpy(o) for o in out)
    return out


def numpy_io(fn: _F) -> _F:
    """Lets ``fn`` take NumPy arrays (also inside tuples/lists).

    They are shared with torch, and the outputs go back to NumPy when any input was NumPy.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        found = False

        def conv(a: Any) -> Any:
            nonlocal found
            if isinstance(a, np.ndarray):
                found = True
                return torch.from_numpy(np.ascontiguousarray(a))
            if isinstance(a, (tuple, list)) and any(isinstance(b, np.ndarray) for b in a):
                return type(a)(conv(b) for b in a)
            return a

        out = fn(*(conv(a) for a in args), **{k: conv(v) for k, v in kwargs.items()})
        return to_numpy(out) if found else out

    return cast(_F, wrapper)


def int_array(r: Any, name: str, pairs: bool) -> torch.Tensor:
    """``r`` as an int64 tensor, checked to be integer and, if ``pairs``, shaped (C, 2)."""
    r = torch.from_numpy(np.ascontiguousarray(r)) if isinstance(r, np.ndarray) else r
    if not isinstance(r, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or np.ndarray, got {type(r).__name__}")
    if r.dtype.is_floating_point or r.dtype.is_complex or r.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype (int32 or int64), got {r.dtype}")
    if pairs and (r.ndim != 2 or r.shape[1] != 2):
        raise ValueError(f"{name} must have shape (C, 2) ([start, end) pairs), got {tuple(r.shape)}")
    return r.to(torch.int64).contiguous()
