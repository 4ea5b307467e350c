"""The NumPy front end: symbolic matrices over NumPy arrays (as ``pykeops.numpy``).

``lazygeom.numpy.LazyTensor`` has the API of :class:`lazygeom.LazyTensor`, takes NumPy arrays
(float32 or float64) and returns NumPy arrays of the same dtype. Inside, the arrays are shared with
PyTorch (``torch.from_numpy``, no copy) and the same backends run the reductions; gradients are not
available on this front end (use the torch one).

Example:
    >>> import numpy as np
    >>> from lazygeom.numpy import Vi, Vj
    >>> x, y, b = np.random.rand(1000, 3), np.random.rand(2000, 3), np.random.rand(2000, 2)
    >>> K_ij = (-Vi(x).sqdist(Vj(y))).exp()
    >>> a = K_ij @ b                  # np.ndarray (1000, 2): sum_j exp(-|x_i - y_j|^2) b_j

Mixing the two front ends in one formula raises a ``TypeError``.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from . import lazytensor as _torch_front
from .functions import ifelse, maximum, minimum


class LazyTensor(_torch_front.LazyTensor):
    """A symbolic N-by-M (by D) array over NumPy arrays (``pykeops.numpy.LazyTensor``).

    Args:
        x: an ndarray shaped ``(..., N, 1, D)``, ``(..., 1, M, D)`` or ``(..., 1, 1, D)``; a 1D
            ndarray (a parameter vector); a Python number; or, with ``axis``, a 2D ndarray ``(N, D)``.
        axis: 0 to make ``x`` an i-variable, 1 a j-variable, 2 a parameter.

    Reductions (``sum``, ``logsumexp``, ``min``, ``argKmin``, ``K @ v``, ``solve``...) return
    ``np.ndarray`` with the dtype of the inputs (indices as int64).

    Raises:
        TypeError: if ``x`` is a torch LazyTensor, or if a torch LazyTensor meets a NumPy one.
    """

    _numpy = True

    def __init__(self, x: Union[_torch_front.LazyTensor, np.ndarray, np.generic, int, float],
                 axis: Optional[int] = None) -> None:
        if isinstance(x, _torch_front.LazyTensor) and not x._numpy:
            raise TypeError(
                "cannot make a lazygeom.numpy.LazyTensor from a lazygeom.LazyTensor (torch): "
                "build it from NumPy arrays"
            )
        if isinstance(x, np.generic):  # NumPy scalars (np.float32(2.0)) act as Python numbers
            x = x.item()
        super().__init__(x, axis)

    def _to_user(self, t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()


def Vi(x: np.ndarray) -> LazyTensor:
    """An i-variable from an ``(N, D)`` or ``(N,)`` ndarray (``pykeops.numpy.Vi``).

    Args:
        x: the array, indexed by i along its first dimension.
    """
    return LazyTensor(x, axis=0)


def Vj(x: np.ndarray) -> LazyTensor:
    """A j-variable from an ``(M, D)`` or ``(M,)`` ndarray (``pykeops.numpy.Vj``).

    Args:
        x: the array, indexed by j along its first dimension.
    """
    return LazyTensor(x, axis=1)


def Pm(x: Union[np.ndarray, int, float]) -> LazyTensor:
    """A parameter from a number or a 1D ndarray (``pykeops.numpy.Pm``).

    Args:
        x: the number (a parameter of dimension 1: changing it does not recompile) or vector.
    """
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return LazyTensor(float(x))
    return LazyTensor(x, axis=2)


__all__ = ["LazyTensor", "Pm", "Vi", "Vj", "ifelse", "maximum", "minimum"]
