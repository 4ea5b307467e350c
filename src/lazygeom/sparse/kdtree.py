"""Balanced kd-tree clusters: the default levels of the multiscale hierarchy.

A grid of one side suits a uniform cloud only. Real clouds have dense and sparse parts (a blob, a
surface sampled in 3D): cells sized for the sparse part hold hundreds of points where the cloud
is dense, and a block pair of such cells is visited whole although only a corner of it carries
transport mass. A kd-tree adapts to the density: every node splits its points into two halves at
the median of its bounding box's widest axis, so that all nodes of one depth hold the same number
of points (within one) and are compact where the cloud is dense.

The split is vectorised over all nodes of a depth: two stable sorts of the points per depth, no
Python loop over nodes.
"""

from __future__ import annotations

import math

import torch


def leaf_depth(n_points: int, leaf_size: int) -> int:
    """The number of halvings that brings ``n_points`` down to at most ``leaf_size`` per node.

    Args:
        n_points: the number of points.
        leaf_size: the largest number of points of a leaf.

    Returns:
        ``ceil(log2(n_points / leaf_size))``, or 0 when ``n_points <= leaf_size``.
    """
    if n_points <= leaf_size:
        return 0
    return math.ceil(math.log2(n_points / leaf_size))


def bounding_boxes(points: torch.Tensor, node: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)``, each ``(n_nodes, D)``: the per-axis extremes of the points of every node.

    Args:
        points: ``(n, D)`` points.
        node: ``(n,)`` int64 node of each point, in ``[0, n_nodes)``.
        n_nodes: the number of nodes (a node without points gets ``lo = inf``, ``hi = -inf``).
    """
    index = node[:, None].expand_as(points)
    shape = (n_nodes, points.shape[1])
    lo = torch.full(shape, math.inf, dtype=points.dtype, device=points.device).scatter_reduce(0, index, points, "amin")
    hi = torch.full(shape, -math.inf, dtype=points.dtype, device=points.device).scatter_reduce(0, index, points, "amax")
    return lo, hi


def kd_paths(points: torch.Tensor, batch: torch.Tensor, depth: int) -> torch.Tensor:
    """Each point's node after ``depth`` median splits, as a path integer in ``[0, 2^depth)``.

    The node of a point at depth ``d <= depth`` is ``path >> (depth - d)``: the paths of one depth
    are the nodes of that level, and sorting points by ``(batch, path)`` lists the nodes left to
    right (halves of one node next to each other: a spatially coherent order). A node of one point
    does not split (its point goes left).

    Args:
        points: ``(n, D)``, finite.
        batch: ``(n,)`` int64 batch item of each point, sorted (nodes never mix batch items).
        depth: the number of splits.

    Returns:
        ``(n,)`` int64 paths.
    """
    n = points.shape[0]
    order = torch.arange(n, device=points.device)
    path = torch.zeros(n, dtype=torch.int64, device=points.device)
    for _ in range(depth):
        pts, b = points[order], batch[order]
        # nodes are runs of equal (batch, path) in the current order
        key = b * (1 << depth) + path
        _, inv, counts = torch.unique_consecutive(key, return_inverse=True, return_counts=True)
        lo, hi = bounding_boxes(pts, inv, counts.numel())
        axis = (hi - lo).argmax(dim=1)
        value = pts.gather(1, axis[inv][:, None])[:, 0]
        # sort by (node, coordinate along the node's axis); stable, so ties keep the input order
        by_value = torch.argsort(value, stable=True)
        perm = by_value[torch.argsort(inv[by_value], stable=True)]
        order, inv, path = order[perm], inv[perm], path[perm]
        starts = counts.cumsum(0) - counts
        rank = torch.arange(n, device=points.device) - starts[inv]
        right = rank >= (counts[inv] + 1) // 2
        path = 2 * path + right.to(torch.int64)
    out = torch.empty_like(path)
    out[order] = path
    return out


__all__ = ["bounding_boxes", "kd_paths", "leaf_depth"]
