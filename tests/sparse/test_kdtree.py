"""Balanced kd-tree clusters (the default multiscale levels): balance, median splits, batches, trees."""

from __future__ import annotations

import torch

from lazygeom.ot.multiscale.hierarchy import COARSEST, build_trees
from lazygeom.sparse.kdtree import kd_paths, leaf_depth


def test_leaf_depth():
    assert leaf_depth(10, 32) == 0 and leaf_depth(32, 32) == 0 and leaf_depth(33, 32) == 1
    assert leaf_depth(50_000, 32) == 11  # 2048 leaves of 24 or 25 points


def test_nodes_of_a_depth_hold_the_same_number_of_points(rng):
    pts = torch.randn(1000, 3, generator=rng) * torch.tensor([1.0, 0.1, 5.0])
    batch = torch.zeros(1000, dtype=torch.int64)
    paths = kd_paths(pts, batch, 6)
    for d in range(7):
        counts = torch.bincount(paths >> (6 - d))
        assert counts.numel() == 2**d and int(counts.max()) - int(counts.min()) <= 1


def test_each_split_is_a_median_split_of_the_widest_axis(rng):
    pts = torch.rand(401, 2, generator=rng) * torch.tensor([3.0, 1.0])
    paths = kd_paths(pts, torch.zeros(401, dtype=torch.int64), 3)
    for d in range(3):
        node = paths >> (3 - d)
        side = (paths >> (2 - d)) & 1
        for c in node.unique():
            inside = node == c
            p = pts[inside]
            axis = int((p.max(0).values - p.min(0).values).argmax())
            left, right = p[side[inside] == 0, axis], p[side[inside] == 1, axis]
            assert left.numel() == (p.shape[0] + 1) // 2 and right.numel() == p.shape[0] // 2
            assert float(left.max()) <= float(right.min())
    # the first split cuts the long axis (x, of length 3)
    first = (paths >> 2) & 1
    assert float(pts[first == 0, 0].max()) <= float(pts[first == 1, 0].min())


def test_identical_points_and_batches(rng):
    pts = torch.cat((torch.zeros(50, 2), torch.rand(50, 2, generator=rng)))
    batch = torch.arange(2).repeat_interleave(50)
    paths = kd_paths(pts, batch, 4)
    for b in range(2):
        counts = torch.bincount(paths[batch == b], minlength=16)
        assert int(counts.min()) >= 3 and int(counts.max()) <= 4  # 50 points: 3 or 4 per leaf


def test_kd_trees_adapt_to_the_density(rng):
    """Default trees: the same number of levels for x and y, every level sorted by parent, masses
    adding up, the coarsest level within COARSEST, and smaller clusters where a cloud is dense."""
    x = torch.rand(2, 20000, 3, generator=rng, dtype=torch.float64)
    y = torch.randn(2, 2000, 3, generator=rng, dtype=torch.float64) * 0.02 + 0.5
    a = torch.full((2, 20000), 1 / 20000, dtype=torch.float64)
    b = torch.full((2, 2000), 1 / 2000, dtype=torch.float64)
    tx, ty = build_trees(x, a, y, b, None, leaf_size=16)
    assert len(tx.levels) == len(ty.levels) >= 3
    assert tx.levels[0].size <= 2 * COARSEST and ty.levels[0].size <= 2 * COARSEST
    scales = [lev.scale for lev in tx.levels]
    assert scales == sorted(scales, reverse=True) and scales[-1] == 0
    for tree, n in ((tx, 20000), (ty, 2000)):
        assert sorted(tree.order.tolist()) == list(range(2 * n))
        leaves = tree.levels[-2]
        sizes = leaves.children[:, 1] - leaves.children[:, 0]
        assert int(sizes.max()) <= 16 and int(sizes.min()) >= 8
        for k in range(len(tree.levels) - 1):
            parent, child = tree.levels[k], tree.levels[k + 1]
            ch = parent.children
            assert int(ch[0, 0]) == 0 and int(ch[-1, 1]) == child.size and bool((ch[1:, 0] == ch[:-1, 1]).all())
            idx = torch.repeat_interleave(torch.arange(parent.size), ch[:, 1] - ch[:, 0])
            mass = torch.zeros(parent.size, dtype=torch.float64).index_add_(0, idx, child.weights)
            torch.testing.assert_close(mass, parent.weights)
            offset = child.points.detach() - parent.points[idx]
            assert bool((offset.abs() <= parent.extent[idx] + 1e-12).all())
    # the dense blob's leaves are much smaller than the uniform cloud's
    assert float(ty.levels[-2].extent.max(1).values.median()) < 0.5 * float(tx.levels[-2].extent.max(1).values.median())
    # the two batch items never share a cluster: the fine level lists item 0's points first
    for tree, n in ((tx, 20000), (ty, 2000)):
        assert tree.root_children.tolist()[0][1] == tree.root_children.tolist()[1][0]
        assert bool((tree.order[:n] < n).all()) and bool((tree.order[n:] >= n).all())
