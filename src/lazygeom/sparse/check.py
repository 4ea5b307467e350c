"""Validation of block-sparse ``ranges`` 6-tuples, and their dense mask (for tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._io import Array, Ranges, int_array

__all__ = ["RANGES_NAMES", "check_ranges", "dense_mask"]

#: the names of the six arrays of a ``ranges`` tuple, in order
RANGES_NAMES = ("ranges_i", "slices_i", "redranges_j", "ranges_j", "slices_j", "redranges_i")


def check_six(ranges: Any) -> None:
    """ValueError unless ``ranges`` is a tuple or list of six items."""
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        length = f" of length {len(ranges)}" if isinstance(ranges, (tuple, list)) else ""
        raise ValueError(f"ranges must be a 6-tuple {RANGES_NAMES}, got {type(ranges).__name__}{length}")


def _check_intervals(r: torch.Tensor, name: str, bound: int, bound_name: str) -> None:
    bad = (r[:, 0] > r[:, 1]).nonzero()
    if bad.numel():
        k = int(bad[0])
        raise ValueError(f"{name}[{k}] = {r[k].tolist()}: ranges are [start, end) pairs with start <= end")
    bad = ((r[:, 0] < 0) | (r[:, 1] > bound)).nonzero()
    if bad.numel():
        k = int(bad[0])
        raise ValueError(f"{name}[{k}] = {r[k].tolist()} is out of [0, {bound_name}] = [0, {bound}]")


def _check_slices(s: torch.Tensor, name: str, n_groups: int, red: torch.Tensor, red_name: str) -> None:
    if s.ndim != 1 or s.shape[0] != n_groups:
        raise ValueError(f"{name} must have shape ({n_groups},) (one entry per cluster), got {tuple(s.shape)}")
    if n_groups == 0:
        if red.shape[0]:
            raise ValueError(f"{name} is empty (no clusters) but {red_name} has {red.shape[0]} rows")
        return
    if int(s[0]) < 0:
        raise ValueError(f"{name}[0] = {int(s[0])} must be >= 0")
    bad = (s[1:] < s[:-1]).nonzero()
    if bad.numel():
        k = int(bad[0]) + 1
        raise ValueError(f"{name} must be non-decreasing (cumulative ends into {red_name}), but "
                         f"{name}[{k}] = {int(s[k])} < {name}[{k - 1}] = {int(s[k - 1])}")
    if int(s[-1]) != red.shape[0]:
        hint = " (did you pass start offsets instead of cumulative ends?)" if int(s[0]) == 0 else ""
        raise ValueError(f"{name}[-1] = {int(s[-1])} but {red_name} has {red.shape[0]} rows: {name} holds the "
                         f"cumulative end of each cluster's list in {red_name}, so {name}[-1] must equal "
                         f"len({red_name}){hint}")


def check_ranges(ranges: Ranges, N: int, M: int) -> tuple[torch.Tensor, ...]:
    """Validates a block-sparse ``ranges`` 6-tuple for an N-by-M reduction.

    Checks: six integer arrays (torch or NumPy) on one device; ``ranges_i`` (Ci, 2) and
    ``redranges_i`` (Kj, 2) within ``[0, N]``; ``ranges_j`` (Cj, 2) and ``redranges_j`` (Ki, 2)
    within ``[0, M]``; every range has ``start <= end``; ``slices_i`` (Ci,) and ``slices_j`` (Cj,)
    are non-negative, non-decreasing cumulative ends with ``slices_i[-1] == Ki`` and
    ``slices_j[-1] == Kj``. With batch dimensions, N and M are the sizes the indices refer to.
    It does not check that the two halves describe the same pairs, nor that ranges are disjoint.

    Args:
        ranges: ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``.
        N: number of rows (i indices).
        M: number of columns (j indices).

    Returns:
        The six arrays as contiguous int64 torch tensors (NumPy arrays are converted).

    Raises:
        ValueError: naming the faulty array and what was expected.
    """
    check_six(ranges)
    if int(N) < 0 or int(M) < 0:
        raise ValueError(f"N and M must be non-negative, got N={N}, M={M}")
    out = [int_array(r, name, "ranges" in name) for name, r in zip(RANGES_NAMES, ranges)]
    devices = {r.device for r in out}
    if len(devices) > 1:
        raise ValueError(f"the arrays of ranges must be on one device, got {[str(r.device) for r in out]}")
    ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i = out
    _check_intervals(ranges_i, "ranges_i", N, "N")
    _check_intervals(redranges_j, "redranges_j", M, "M")
    _check_intervals(ranges_j, "ranges_j", M, "M")
    _check_intervals(redranges_i, "redranges_i", N, "N")
    _check_slices(slices_i, "slices_i", ranges_i.shape[0], redranges_j, "redranges_j")
    _check_slices(slices_j, "slices_j", ranges_j.shape[0], redranges_i, "redranges_i")
    return tuple(out)


def dense_mask(ranges: Ranges, N: int, M: int) -> Array:
    """The (N, M) boolean mask of the pairs (i, j) that a reduction over j visits.

    Warning:
        Dense: O(N * M) memory and a Python loop over the ranges. For tests and debugging only.
        It reads the first half ``(ranges_i, slices_i, redranges_j)``; the mask of a reduction
        over i is ``dense_mask(swap_axes(ranges), M, N).T``.

    Args:
        ranges: a ``ranges`` 6-tuple (validated with :func:`check_ranges`).
        N: number of rows.
        M: number of columns.

    Returns:
        (N, M) bool tensor (an ndarray if ``ranges_i`` is one): ``mask[i, j]`` is True iff row ``i``
        is in some i-cluster ``k`` and column ``j`` in one of the j-ranges listed for ``k``.
    """
    ranges_i, slices_i, redranges_j = (r.tolist() for r in check_ranges(ranges, N, M)[:3])
    mask = torch.zeros(N, M, dtype=torch.bool)
    start = 0
    for (a, b), end in zip(ranges_i, slices_i):
        for c, d in redranges_j[start:end]:
            mask[a:b, c:d] = True
        start = end
    return mask.numpy() if isinstance(ranges[0], np.ndarray) else mask.to(ranges[0].device)
