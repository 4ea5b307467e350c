"""Batched i- and j-variables whose category does not depend on their sizes.

pykeops' layout rule reads ``(B, N, 1, D)`` as an i-variable and ``(B, 1, M, D)`` as a
j-variable, so a cloud of *one* point, ``(B, 1, 1, D)``, would become a parameter; and ``Vi`` /
``Vj`` (``axis=``) accept no batch dimension. The OT code states the category explicitly instead.
"""

from __future__ import annotations

import torch

from ..formula import CAT_I, CAT_J, var
from ..lazy.lazytensor import LazyTensor
from ..lazy.leaves import Leaf, new_uid


def _variable(t: torch.Tensor, cat: int) -> LazyTensor:
    if t.ndim < 2 or not t.is_floating_point():
        raise ValueError(f"expected a floating-point (..., N, D) tensor, got {tuple(t.shape)} {t.dtype}")
    uid = new_uid()
    leaf = Leaf(t, cat, int(t.shape[-1]))
    rows = int(t.shape[-2])
    return LazyTensor._new(var(uid, cat, leaf.dim), {uid: leaf}, leaf.batch,
                           rows if cat == CAT_I else None, rows if cat == CAT_J else None, t.dtype, t.device)


def lazy_i(t: torch.Tensor) -> LazyTensor:
    """``t`` of shape ``(*batch, N, D)`` as an i-variable (N may be 1).

    Args:
        t: a floating-point tensor ``(*batch, N, D)``.

    Returns:
        The LazyTensor variable indexed by i.
    """
    return _variable(t, CAT_I)


def lazy_j(t: torch.Tensor) -> LazyTensor:
    """``t`` of shape ``(*batch, M, D)`` as a j-variable (M may be 1): the columns' :func:`lazy_i`.

    Args:
        t: the columns' floating-point values ``(*batch, M, D)``; one column, ``(*batch, 1, D)``,
            is still a j-variable (pykeops' layout rule would make ``(B, 1, 1, D)`` a parameter).

    Returns:
        A LazyTensor whose reductions over j sum over the M rows of ``t``.
    """
    return _variable(t, CAT_J)


__all__ = ["lazy_i", "lazy_j"]
