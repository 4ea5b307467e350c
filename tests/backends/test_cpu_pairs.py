"""The compiled pair bookkeeping (backends/cpu/pairs.cpp) against the torch versions it replaces."""

from __future__ import annotations

import pytest
import torch

from lazygeom import cluster
from lazygeom.backends.cpu import compiler, pairs
from lazygeom.backends.base import row_range_lists
from lazygeom.ot.multiscale import truncation
from lazygeom.sparse import unique_pairs

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _no_native(monkeypatch):
    """Runs the torch paths: the library is reported missing."""
    monkeypatch.setattr(pairs, "_lib", lambda *t: None)


def _random_pairs(g, n, n_rows, n_cols, repeats):
    rows = torch.randint(0, n_rows, (n,), generator=g)
    cols = torch.randint(0, n_cols, (n,), generator=g)
    if not repeats:
        keys = torch.unique(rows * n_cols + cols)
        keys = keys[torch.randperm(keys.numel(), generator=g)]
        rows, cols = keys // n_cols, keys % n_cols
    return rows, cols


@pytest.mark.parametrize("n, n_rows, n_cols", [(0, 3, 4), (1, 1, 1), (500, 7, 9), (5000, 300, 40)])
def test_sort_pairs_matches_unique_and_argsort(n, n_rows, n_cols):
    g = torch.Generator().manual_seed(n)
    rows, cols = _random_pairs(g, n, n_rows, n_cols, repeats=True)
    r, c = pairs.sort_pairs(rows, cols, n_rows, unique=True)
    keys = torch.unique(rows * n_cols + cols)
    assert torch.equal(r, keys // n_cols) and torch.equal(c, keys % n_cols)
    r, c = pairs.sort_pairs(rows, cols, n_rows, unique=False)  # repeats kept, in order
    keys = torch.sort(rows * n_cols + cols).values
    assert torch.equal(r, keys // n_cols) and torch.equal(c, keys % n_cols)
    # already sorted input (the fast path), with and without repeats
    r2, c2 = pairs.sort_pairs(r, c, n_rows, unique=False)
    assert torch.equal(r2, r) and torch.equal(c2, c)
    r3, c3 = pairs.sort_pairs(r, c, n_rows, unique=True)
    keys = torch.unique(rows * n_cols + cols)
    assert torch.equal(r3, keys // n_cols) and torch.equal(c3, keys % n_cols)


@pytest.mark.parametrize("n, n_rows, n_cols", [(0, 3, 4), (1, 1, 1), (500, 7, 9), (5000, 300, 130)])
@pytest.mark.parametrize("bitmap", [True, False])
def test_unique_sort_through_the_bitmap_or_the_sort(n, n_rows, n_cols, bitmap, monkeypatch):
    """Given the column bound, a unique sort of a small grid marks a bitmap (columns past 64 and
    rows without pairs included); above ``BITMAP_CELLS`` it sorts: the same arrays either way."""
    monkeypatch.setattr(pairs, "BITMAP_CELLS", 1 << 25 if bitmap else 0)
    g = torch.Generator().manual_seed(n + 1)
    rows, cols = _random_pairs(g, n, n_rows, n_cols, repeats=True)
    r, c = pairs.sort_pairs(rows, cols, n_rows, unique=True, n_cols=n_cols)
    keys = torch.unique(rows * n_cols + cols)
    assert torch.equal(r, keys // n_cols) and torch.equal(c, keys % n_cols)


def test_bitmap_sort_rejects_columns_out_of_range():
    with pytest.raises(ValueError, match="pairs must hold"):
        pairs.sort_pairs(torch.tensor([1, 0]), torch.tensor([0, 4]), 2, unique=True, n_cols=4)


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_from_pairs_native_equals_torch(merge, seed, monkeypatch):
    g = torch.Generator().manual_seed(seed)
    n_i, n_j = 1 + seed * 13, 2 + seed * 7
    sizes_i = torch.randint(0, 4, (n_i,), generator=g)
    sizes_j = torch.randint(0, 4, (n_j,), generator=g)
    ends_i, ends_j = sizes_i.cumsum(0), sizes_j.cumsum(0)
    ranges_i = torch.stack((ends_i - sizes_i, ends_i), 1)
    ranges_j = torch.stack((ends_j - sizes_j, ends_j), 1)
    rows, cols = _random_pairs(g, 3 * n_i * n_j // 4, n_i, n_j, repeats=False)
    ours = cluster.from_pairs(ranges_i, ranges_j, rows, cols, merge=merge)
    with monkeypatch.context() as m:
        _no_native(m)
        ref = cluster.from_pairs(ranges_i, ranges_j, rows, cols, merge=merge)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_block_pairs_and_unique_pairs_native_equal_torch(monkeypatch):
    g = torch.Generator().manual_seed(5)
    n_groups, n_rows, n_cols = 6, 20, 30
    cuts = torch.sort(torch.randint(0, n_rows + 1, (n_groups - 1,), generator=g)).values
    bounds = torch.cat((torch.tensor([0]), cuts, torch.tensor([n_rows])))
    row_groups = torch.stack((bounds[:-1], bounds[1:]), 1)
    col_groups = torch.tensor([[0, 5], [5, 5], [5, 17], [17, 30]])
    P, Q = _random_pairs(g, 15, n_groups, 4, repeats=False)
    ranges, J = truncation.child_blocks((P, Q), row_groups, col_groups, truncation.unit_ranges(n_cols))
    start, counts = row_range_lists(ranges[0], ranges[1], n_rows)
    keep = torch.rand(int(counts.sum()), generator=g) < 0.4
    ours = truncation.block_pairs(ranges, J, n_rows, keep)
    rows, cols = _random_pairs(g, 400, n_rows, n_cols, repeats=True)
    ours_u = unique_pairs(rows, cols, n_cols)
    with monkeypatch.context() as m:
        _no_native(m)
        ref = truncation.block_pairs(ranges, J, n_rows, keep)
        ref_u = unique_pairs(rows, cols, n_cols)
    assert int(keep.sum()) > 0
    for a, b in zip((*ours, *ours_u), (*ref, *ref_u)):
        assert torch.equal(a, b)


def test_indices_out_of_range_raise_instead_of_writing_out_of_bounds():
    rows, cols = torch.tensor([5, 0]), torch.tensor([1, 0])  # out of order: the counting sort runs
    ranges = torch.tensor([[0, 2], [2, 3]])
    with pytest.raises(ValueError, match="rows must hold"):
        pairs.sort_pairs(rows, cols, 2, unique=True)
    with pytest.raises(ValueError, match="pairs must hold"):
        pairs.pair_slices(ranges, ranges, torch.tensor([0, 1]), torch.tensor([0, 2]), merge=False, presorted=True)
