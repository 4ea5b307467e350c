"""Compiled bookkeeping of cluster-pair lists (``pairs.cpp``): sorting, range merging, decoding.

:mod:`lazygeom.cluster` and :mod:`lazygeom.ot.truncation` call these on CPU int64 tensors when a
C++ compiler is present; each function returns None otherwise (or for other devices), and the
caller runs its torch version, which gives the same arrays (tested).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

import torch

from ...settings import get_config
from . import compiler

_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES = {
    "lg_pairs_in_order": ([_I, _P, _P, ctypes.c_int], ctypes.c_int),
    "lg_sort_pairs": ([_I, _P, _P, _I, ctypes.c_int, _P, _P], _I),
    "lg_unique_pairs_bitmap": ([_I, _P, _P, _I, _I, _P, _P], _I),
    "lg_pair_slices": ([_I, _P, _P, _P, _I, _I, ctypes.c_int, _P, _P], _I),
    "lg_kept_results": ([_I, _P, _P, _P, _P, _P, _P, _P], _I),
}


def _lib(*tensors: torch.Tensor):
    """The compiled library, or None (no compiler, or a tensor that is not on the CPU)."""
    if any(t.device.type != "cpu" for t in tensors) or compiler.find_compiler() is None:
        return None
    cfg = get_config()
    return compiler.load_source(Path(__file__).with_name("pairs.cpp"), "float", cfg.cache_dir, cfg.verbose,
                                _SIGNATURES)


def _i64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int64).contiguous()


#: ``unique`` sorts of pairs in an n_rows x n_cols grid of at most this many cells mark a bitmap
#: (4 MiB) instead of sorting: at 2048 x 2048 nodes (multiscale, leaves of 32 points), the sorts
#: took 0.36 s of a 3.4 s solve
BITMAP_CELLS = 1 << 25


def sort_pairs(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, unique: bool,
               n_cols: Optional[int] = None) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The pairs sorted by row then column (repeats dropped if ``unique``).

    Pairs already in order come back as they are.

    Args:
        rows: ``(n,)`` the pairs' rows.
        cols: ``(n,)`` their columns.
        n_rows: a bound on the rows.
        unique: drop repeated pairs.
        n_cols: a bound on the columns, when known: a unique sort of a small grid then goes
            through a bitmap.

    Returns:
        ``(rows, cols)`` sorted, or None where the compiled library does not apply.

    Raises:
        ValueError: pairs to sort whose rows (or columns, given ``n_cols``) are out of range.
    """
    lib = _lib(rows, cols)
    if lib is None:
        return None
    rows, cols = _i64(rows), _i64(cols)
    n = rows.numel()
    if lib.lg_pairs_in_order(n, rows.data_ptr(), cols.data_ptr(), int(unique)):
        return rows, cols
    out_r, out_c = torch.empty(n, dtype=torch.int64), torch.empty(n, dtype=torch.int64)
    if unique and n_cols is not None and max(n_rows, 1) * max(n_cols, 1) <= BITMAP_CELLS:
        m = lib.lg_unique_pairs_bitmap(n, rows.data_ptr(), cols.data_ptr(), max(n_rows, 1), max(n_cols, 1),
                                       out_r.data_ptr(), out_c.data_ptr())
        if m < 0:
            raise ValueError(f"sort_pairs: the pairs must hold indices in [0, {n_rows}) x [0, {n_cols})")
        return out_r[:m], out_c[:m]
    m = lib.lg_sort_pairs(n, rows.data_ptr(), cols.data_ptr(), max(n_rows, 1), int(unique),
                          out_r.data_ptr(), out_c.data_ptr())
    if m < 0:
        raise ValueError(f"sort_pairs: the rows must hold cluster indices in [0, {n_rows})")
    return out_r[:m], out_c[:m]


def pair_slices(ranges_rows: torch.Tensor, ranges_cols: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                merge: bool, presorted: bool) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The block-sparse lists of the pairs (see :func:`lazygeom.cluster.pair_slices`).

    Args:
        ranges_rows: ``(C, 2)`` the rows of each row cluster.
        ranges_cols: ``(C', 2)`` the columns of each column cluster.
        rows: ``(n,)`` the pairs' row clusters.
        cols: ``(n,)`` their column clusters.
        merge: merge adjacent column ranges.
        presorted: the pairs are sorted already (else they are sorted first).

    Returns:
        ``(slices, redranges)``, or None where the compiled library does not apply.
    """
    lib = _lib(ranges_rows, ranges_cols, rows, cols)
    if lib is None:
        return None
    if not presorted:
        rows, cols = sort_pairs(rows, cols, ranges_rows.shape[0], unique=False)
    rows, cols, ranges_cols = _i64(rows), _i64(cols), _i64(ranges_cols)
    n, C = rows.numel(), ranges_rows.shape[0]
    slices = torch.empty(C, dtype=torch.int64)
    red = torch.empty(n, 2, dtype=torch.int64)
    m = lib.lg_pair_slices(n, rows.data_ptr(), cols.data_ptr(), ranges_cols.data_ptr(), C, ranges_cols.shape[0],
                           int(merge), slices.data_ptr(), red.data_ptr())
    if m < 0:
        raise ValueError(f"pair_slices: the pairs must hold cluster indices in [0, {C}) x [0, {ranges_cols.shape[0]})")
    return slices, red[:m]


def kept_results(start: torch.Tensor, counts: torch.Tensor, offsets: torch.Tensor, J: torch.Tensor,
                 keep: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The kept results of a per-range reduction (see :func:`lazygeom.ot.truncation.block_pairs`).

    Row r's results sit at ``offsets[r] + t`` and name the column nodes ``J[start[r] + t]``, for
    t < ``counts[r]``.

    Args:
        start: per row, where its column nodes start in ``J``.
        counts: per row, its number of results.
        offsets: per row, where its results start.
        J: the column nodes.
        keep: per result, whether it is kept.

    Returns:
        ``(row, J)`` of each kept result, or None where the compiled library does not apply.
    """
    lib = _lib(start, counts, offsets, J, keep)
    if lib is None:
        return None
    start, counts, offsets, J = _i64(start), _i64(counts), _i64(offsets), _i64(J)
    keep = keep.to(torch.uint8).contiguous()
    n = int(keep.sum())
    out_r, out_c = torch.empty(n, dtype=torch.int64), torch.empty(n, dtype=torch.int64)
    m = lib.lg_kept_results(start.numel(), start.data_ptr(), counts.data_ptr(), offsets.data_ptr(), J.data_ptr(),
                            keep.data_ptr(), out_r.data_ptr(), out_c.data_ptr())
    return out_r[:m], out_c[:m]


__all__ = ["kept_results", "pair_slices", "sort_pairs"]
