"""Block-sparse ranges from cluster pairs: ``from_matrix``, ``from_pairs``, ``swap_axes``.

See :mod:`lazygeom.sparse` for the layout of pykeops' ``ranges`` 6-tuple.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..backends import policy
from ._io import Array, Ranges, RangesTuple, int_array, numpy_io
from .check import check_six

__all__ = ["from_matrix", "from_pairs", "pair_slices", "swap_axes", "unique_pairs"]


@numpy_io
def from_matrix(ranges_i: Array, ranges_j: Array, keep: Array) -> RangesTuple:
    r"""Turns cluster ranges and a boolean cluster-pair mask into a block-sparse ``ranges`` 6-tuple.

    Pair :math:`(i, j)` is visited iff ``keep[k, l]`` where ``i`` is in i-cluster ``k`` and ``j``
    in j-cluster ``l``. For each i-cluster ``k`` the j-ranges are ``ranges_j[l]`` for the ``l``
    with ``keep[k, l]``, in increasing ``l``; symmetrically for the transposed problem.

    Args:
        ranges_i: (Ci, 2) ``[start, end)`` of the i-clusters.
        ranges_j: (Cj, 2) ``[start, end)`` of the j-clusters.
        keep: (Ci, Cj) boolean (or 0/1) mask of the interacting cluster pairs.

    Returns:
        ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``, int64:
        ``slices_i = cumsum(keep.sum(1))`` (Ci,), ``redranges_j`` (K, 2), ``slices_j =
        cumsum(keep.sum(0))`` (Cj,), ``redranges_i`` (K, 2), with ``K = keep.sum()``.

    Example:
        >>> r_i = torch.tensor([[2, 5], [7, 12]]); r_j = torch.tensor([[1, 4], [4, 9], [20, 30]])
        >>> keep = torch.tensor([[True, True, False], [False, True, False]])
        >>> ri, si, rj_red, rj, sj, ri_red = from_matrix(r_i, r_j, keep)
        >>> si.tolist(), rj_red.tolist()      # X0 meets Y0 and Y1, X1 meets Y1
        ([2, 3], [[1, 4], [4, 9], [4, 9]])
        >>> sj.tolist(), ri_red.tolist()      # Y0 meets X0, Y1 meets X0 and X1, Y2 nobody
        ([1, 3, 3], [[2, 5], [2, 5], [7, 12]])
    """
    ranges_i, ranges_j = int_array(ranges_i, "ranges_i", True), int_array(ranges_j, "ranges_j", True)
    if not isinstance(keep, torch.Tensor) or tuple(keep.shape) != (ranges_i.shape[0], ranges_j.shape[0]):
        raise ValueError(f"keep must be a ({ranges_i.shape[0]}, {ranges_j.shape[0]}) boolean array "
                         f"(i-clusters x j-clusters), got shape {tuple(getattr(keep, 'shape', ()))}")
    rows, cols = keep.to(device=ranges_i.device, dtype=torch.bool).nonzero(as_tuple=True)
    return from_pairs(ranges_i, ranges_j, rows, cols)


def pair_slices(ranges_rows: torch.Tensor, ranges_cols: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                merge: bool = False, presorted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(slices, redranges)``: one half of :func:`from_pairs` (the reduction over columns).

    Args:
        ranges_rows: (C, 2) int64 ranges of the row clusters.
        ranges_cols: (C', 2) int64 ranges of the column clusters.
        rows: int64 row cluster of each pair, each pair once.
        cols: int64 column cluster of each pair.
        merge: fuse touching column ranges (see :func:`from_pairs`).
        presorted: the pairs are already sorted by row, then column (skips a sort).
    """
    native = policy.capability("pair_sorting", ranges_rows, ranges_cols, rows, cols)
    done = None if native is None else native.pair_slices(ranges_rows, ranges_cols, rows, cols, merge, presorted)
    if done is not None:
        return done
    if not presorted:
        keys = rows * max(ranges_cols.shape[0], 1) + cols  # by row cluster, then column
        if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):  # a sort costs more than the check
            order = torch.argsort(keys)
            rows, cols = rows[order], cols[order]
    red = ranges_cols[cols]
    if merge and red.shape[0] > 1:
        # a column range that starts where the previous one of the same row cluster ends extends it
        new = torch.ones(red.shape[0], dtype=torch.bool, device=red.device)
        new[1:] = (rows[1:] != rows[:-1]) | (red[1:, 0] != red[:-1, 1])
        first = new.nonzero()[:, 0]
        last = torch.cat((first[1:] - 1, first.new_tensor([red.shape[0] - 1])))
        rows, red = rows[first], torch.stack((red[first, 0], red[last, 1]), dim=1)
    slices = torch.bincount(rows, minlength=ranges_rows.shape[0]).cumsum(0)
    return slices, red


@numpy_io
def from_pairs(ranges_i: Array, ranges_j: Array, rows: Array, cols: Array, merge: bool = False) -> RangesTuple:
    r"""The block-sparse ``ranges`` 6-tuple of a list of interacting cluster pairs (sparse :func:`from_matrix`).

    Pair :math:`(i, j)` is visited iff ``(k, l)`` is listed, where ``i`` is in i-cluster ``k``
    and ``j`` in j-cluster ``l``. Nothing of size Ci x Cj is allocated, so that cluster counts in
    the hundreds of thousands are fine when few pairs interact.

    Args:
        ranges_i: (Ci, 2) ``[start, end)`` of the i-clusters.
        ranges_j: (Cj, 2) ``[start, end)`` of the j-clusters.
        rows: (K,) i-cluster of each pair, in ``[0, Ci)``; each pair listed once.
        cols: (K,) j-cluster of each pair, in ``[0, Cj)``.
        merge: fuse the ranges that touch (``end`` of one = ``start`` of the next, within one
            cluster's list) into one: fewer, longer ranges for the kernels, same pairs visited.

    Returns:
        ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``, int64. Without
        ``merge`` it equals ``from_matrix`` of the corresponding mask.
    """
    ranges_i, ranges_j = int_array(ranges_i, "ranges_i", True), int_array(ranges_j, "ranges_j", True)
    rows, cols = int_array(rows, "rows", False).reshape(-1), int_array(cols, "cols", False).reshape(-1)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same length, got {rows.shape[0]} and {cols.shape[0]}")
    for name, v, n in (("rows", rows, ranges_i.shape[0]), ("cols", cols, ranges_j.shape[0])):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= n):
            raise ValueError(f"{name} must hold cluster indices in [0, {n}), got values in "
                             f"[{int(v.min())}, {int(v.max())}]")
    ranges_j, rows, cols = ranges_j.to(ranges_i.device), rows.to(ranges_i.device), cols.to(ranges_i.device)
    slices_i, redranges_j = pair_slices(ranges_i, ranges_j, rows, cols, merge)
    slices_j, redranges_i = pair_slices(ranges_j, ranges_i, cols, rows, merge)
    return ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i


def swap_axes(ranges: Optional[Ranges]) -> Optional[RangesTuple]:
    """The ``ranges`` of the transposed problem (i <-> j): ``(*ranges[3:6], *ranges[0:3])``.

    Args:
        ranges: a ``ranges`` 6-tuple, or None.

    Returns:
        None if ``ranges`` is None, else the 6-tuple ``(ranges_j, slices_j, redranges_i, ranges_i,
        slices_i, redranges_j)`` (the same arrays, not copies).
    """
    if ranges is None:
        return None
    check_six(ranges)
    return (*ranges[3:6], *ranges[0:3])


def unique_pairs(rows: torch.Tensor, cols: torch.Tensor, n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct pairs, sorted by row then column.

    Args:
        rows: (K,) int64 row of each pair.
        cols: (K,) int64 column of each pair, in ``[0, n_cols)``.
        n_cols: the number of columns.

    Returns:
        ``(rows, cols)`` of the distinct pairs.
    """
    native = policy.capability("pair_sorting", rows, cols)
    n_rows = int(rows.max()) + 1 if rows.numel() else 1
    done = None if native is None else native.sort_pairs(rows, cols, n_rows, unique=True, n_cols=n_cols)
    if done is not None:
        return done
    keys = torch.unique(rows * max(n_cols, 1) + cols)
    return keys // max(n_cols, 1), keys % max(n_cols, 1)
