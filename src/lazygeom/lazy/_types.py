"""Type aliases of the front end's signatures (annotations only: nothing here runs a reduction)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, Union

import numpy as np  # already loaded by torch: importing it here costs nothing
import torch

if TYPE_CHECKING:
    from .lazytensor import LazyTensor

#: an array of a front end: a torch.Tensor (lazygeom.LazyTensor) or an np.ndarray (lazygeom.numpy)
Array = Union[torch.Tensor, np.ndarray]
#: what a LazyTensor combines with: another LazyTensor, a Python number, or an array (a parameter
#: vector, or a tensor in the pykeops layouts ``(..., N, 1, D)`` / ``(..., 1, M, D)``)
Operand = Union["LazyTensor", int, float, Array]
#: the LazyTensor class of ``self`` (torch or NumPy front end): formula-building methods return it
L = TypeVar("L", bound="LazyTensor")

__all__ = ["Array", "L", "Operand"]
