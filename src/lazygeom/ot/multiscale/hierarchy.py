"""Coarse-to-fine encodings of two point clouds for the multiscale Sinkhorn solver.

Each cloud (all batch items at once) becomes a tree of levels:

- the *fine* level: the points themselves, sorted so that every cluster is contiguous;
- cluster levels above it, coarse to fine, each holding the weighted centroids of the clusters
  of the level below;
- a root: one node per batch item, so that clusters never mix batch items and a batch of B
  problems is one block-diagonal problem.

The clusters are, by default (``cluster_scale=None``), the nodes of a balanced kd-tree of each
cloud (:mod:`lazygeom.sparse.kdtree`): leaves of at most ``LEAF_SIZE`` points, then every third depth
(8 children per node). They follow the density of each cloud, and both clouds get the same number
of levels (the solver pairs their levels one to one); a level's ``scale`` is the larger of the two
clouds' typical cluster sides. With a ``cluster_scale``, the clusters are the cells of grids
anchored at the origin, whose sides x and y share: they double from ``cluster_scale`` upwards; a
doubling that would not at least roughly halve the number of clusters is merged into the next one;
the first cluster level can also come from user labels. Either way the coarsest level has at
most ``COARSEST`` clusters per batch item (its solve visits every pair of its batch item).

Within a level the nodes are ordered by parent, parents in their own level's order: the children
of node ``k`` are the contiguous rows ``children[k]`` of the next finer level, ready for
block-sparse ranges. ``radius[k]`` bounds the distance of those children to node ``k`` and
``extent[k]`` their offsets along each axis: the margins of the kernel truncation
(:mod:`lazygeom.ot.multiscale.truncation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ...sparse.kdtree import bounding_boxes, kd_paths, leaf_depth

#: the coarsest level has at most this many clusters per batch item (and per cloud)
COARSEST = 1000
#: the default largest leaf of the kd-tree levels (measured: benchmarks/ot.py --multiscale)
LEAF_SIZE = 64
#: a new level must have at most this fraction of the clusters of the level below it
MIN_REDUCTION = 0.6


@dataclass(frozen=True)
class Level:
    """One level of a cloud's tree, nodes sorted by parent.

    Attributes:
        points: ``(n, D)`` node positions (detached, except on the fine level).
        weights: ``(n,)`` total weight of the points under each node (detached).
        children: ``(n, 2)`` ``[start, end)`` of each node's children in the next finer level
            (empty ranges on the fine level).
        radius: ``(n,)`` the largest distance from a node to its children (0 on the fine level).
        extent: ``(n, D)`` per axis, the largest |child − node| coordinate offset (0 on the fine level).
        scale: the grid side of the level (0 for the fine level).
    """

    points: torch.Tensor
    weights: torch.Tensor
    children: torch.Tensor
    radius: torch.Tensor
    extent: torch.Tensor
    scale: float

    @property
    def size(self) -> int:
        """The number of nodes."""
        return self.points.shape[0]


@dataclass(frozen=True)
class Tree:
    """The levels of one cloud: ``root`` (one node per batch item), then ``levels`` coarse to fine.

    Attributes:
        root_children: ``(B, 2)`` ranges of each batch item's nodes in ``levels[0]``.
        levels: coarse to fine; ``levels[-1]`` is the fine level (the sorted points).
        order: ``(B·N,)`` the fine level's row ``k`` is the flattened input point ``order[k]``.
    """

    root_children: torch.Tensor
    levels: tuple[Level, ...]
    order: torch.Tensor

    def unsort(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """A ``(1, B·N)`` fine-level vector back in the caller's ``(B, N)`` order (differentiable).

        Args:
            t: ``(1, B·N)`` values on the sorted points of the fine level.
            batch: B.

        Returns:
            ``(B, N)`` values, in the order of the input points.
        """
        inverse = torch.empty_like(self.order)
        inverse[self.order] = torch.arange(self.order.numel(), device=self.order.device)
        return t[0, inverse].reshape(batch, -1)


@dataclass
class _Nodes:
    """A level under construction, in label order: positions, weights, batch ids, parent labels."""

    points: torch.Tensor
    weights: torch.Tensor
    batch: torch.Tensor
    parent: Optional[torch.Tensor] = None


def _cells(nodes: _Nodes, scale: float) -> torch.Tensor:
    """Labels of the grid cells (of side ``scale``) and batch items that hold the nodes."""
    q = torch.floor(nodes.points / scale)
    if not bool(torch.isfinite(q).all()) or float(q.abs().max()) >= 2.0**62:
        raise ValueError(f"multiscale: the points / cluster_scale ({scale:.3g}) must be finite and below 2**62")
    key = torch.cat((nodes.batch[:, None], q.to(torch.int64)), dim=1)
    return torch.unique(key, dim=0, return_inverse=True)[1].reshape(-1)


def _user_labels(labels: torch.Tensor, nodes: _Nodes, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of cluster labels, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if tuple(labels.shape) != shape and not (shape[0] == 1 and tuple(labels.shape) == shape[1:]):
        want = f"{shape[1:]} (or {shape})" if shape[0] == 1 else f"{shape}"
        raise ValueError(f"{name} must have the shape {want} of the points without D, got {tuple(labels.shape)}")
    key = torch.stack((nodes.batch, labels.reshape(-1).to(torch.int64).to(nodes.batch.device)), dim=1)
    return torch.unique(key, dim=0, return_inverse=True)[1].reshape(-1)


def _coarsen(nodes: _Nodes, lab: torch.Tensor) -> _Nodes:
    """The weighted centroids of the clusters ``lab`` (a plain mean where the weights sum to 0)."""
    n = int(lab.max()) + 1
    D = nodes.points.shape[1]
    w = nodes.weights
    count = torch.zeros(n, dtype=w.dtype).index_add_(0, lab, torch.ones_like(w))
    mass = torch.zeros(n, dtype=w.dtype).index_add_(0, lab, w)
    wsum = torch.zeros(n, D, dtype=w.dtype).index_add_(0, lab, nodes.points * w[:, None])
    plain = torch.zeros(n, D, dtype=w.dtype).index_add_(0, lab, nodes.points)
    centroids = torch.where(mass[:, None] > 0, wsum / mass.clamp(min=torch.finfo(w.dtype).tiny)[:, None],
                            plain / count[:, None])
    batch = torch.zeros(n, dtype=torch.int64).scatter_reduce_(0, lab, nodes.batch, "amax", include_self=False)
    nodes.parent = lab
    return _Nodes(centroids, mass, batch)


def _per_batch(batch: torch.Tensor, B: int) -> int:
    return int(torch.bincount(batch, minlength=B).max())


def _label_levels(x: _Nodes, y: _Nodes, B: int, scale: float, labels) -> tuple[list[_Nodes], list[_Nodes], list[float]]:
    """Bottom-up: the nodes of every level (fine first) and the grid side of each cluster level."""
    xs, ys, scales = [x], [y], []
    first = True
    while True:
        if first and labels is not None:
            lx = _user_labels(labels[0], x, "labels[0] (of x)", labels[2])
            ly = _user_labels(labels[1], y, "labels[1] (of y)", labels[3])
        else:
            lx, ly = _cells(x, scale), _cells(y, scale)
        nx, ny = int(lx.max()) + 1, int(ly.max()) + 1
        if not first and nx + ny > MIN_REDUCTION * (x.points.shape[0] + y.points.shape[0]):
            scale *= 2  # too few merges to be worth a level: try a coarser grid
            continue
        x, y = _coarsen(x, lx), _coarsen(y, ly)
        if first and labels is not None:
            # the side of a grid whose cells would have the clusters' largest radius
            r = max(float(_radius(xs[-1], x).max()), float(_radius(ys[-1], y).max()))
            scale = 2 * r / math.sqrt(x.points.shape[1]) if r > 0 else scale
        xs.append(x), ys.append(y), scales.append(scale)
        first = False
        if max(_per_batch(x.batch, B), _per_batch(y.batch, B)) <= COARSEST:
            return xs, ys, scales
        scale *= 2


def _kd_depths(n: int, leaf_size: int) -> list[int]:
    """The depths of a cloud's cluster levels, fine to coarse.

    The leaves, then every third depth (8 children per node) up to the first with at most
    ``COARSEST`` nodes per batch item.
    """
    d = leaf_depth(n, leaf_size)
    depths = [d]
    while 2 ** depths[-1] > COARSEST:
        depths.append(max(depths[-1] - 3, 0))
    return depths


def _node_side(points: torch.Tensor, weights: torch.Tensor, lab: torch.Tensor) -> float:
    """The mass-weighted mean over clusters of the longest side of their bounding boxes."""
    n = int(lab.max()) + 1
    lo, hi = bounding_boxes(points, lab, n)
    side = (hi - lo).amax(dim=1)
    mass = torch.zeros(n, dtype=weights.dtype).index_add_(0, lab, weights)
    if not float(mass.sum()) > 0:
        mass = torch.ones_like(mass)
    return float((side * mass).sum() / mass.sum())


def _kd_label_levels(x: _Nodes, y: _Nodes, B: int, leaf_size: int) -> tuple[list[_Nodes], list[_Nodes], list[float]]:
    """Bottom-up kd-tree levels of both clouds (:mod:`lazygeom.sparse.kdtree`), as many for x as for y.

    A level's scale is the larger of the two clouds' typical cluster sides (:func:`_node_side`):
    the solver uses a level while that is below a few blurs.
    """
    per_item = (x.points.shape[0] // B, y.points.shape[0] // B)
    depths = [_kd_depths(n, leaf_size) for n in per_item]
    L = max(len(d) for d in depths)
    depths = [d + [d[-1]] * (L - len(d)) for d in depths]  # the shallower tree repeats its top level
    out, sides = [], []
    for cloud, ds in zip((x, y), depths):
        paths = kd_paths(cloud.points, cloud.batch, ds[0])
        labels = [torch.unique(cloud.batch * (1 << d) + (paths >> (ds[0] - d)), return_inverse=True)[1] for d in ds]
        sides.append([_node_side(cloud.points, cloud.weights, lab) for lab in labels])
        levels, nodes = [cloud], cloud
        for k, lab in enumerate(labels):
            # the clusters of level k are labelled by their points; their parents, by any of them
            node_lab = lab if k == 0 else torch.zeros(nodes.points.shape[0], dtype=torch.int64).scatter_(
                0, labels[k - 1], lab)
            nodes = _coarsen(nodes, node_lab)
            levels.append(nodes)
        out.append(levels)
    scales = [max(sx, sy) for sx, sy in zip(*sides)]
    return out[0], out[1], scales


def _radius(children: _Nodes, parents: _Nodes) -> torch.Tensor:
    d = (children.points - parents.points[children.parent]).norm(dim=1)
    return torch.zeros(parents.points.shape[0], dtype=d.dtype).scatter_reduce_(0, children.parent, d, "amax")


def _extent(children: _Nodes, parents: _Nodes) -> torch.Tensor:
    d = (children.points - parents.points[children.parent]).abs()
    index = children.parent[:, None].expand_as(d)
    return torch.zeros_like(parents.points).scatter_reduce_(0, index, d, "amax")


def _sorted_tree(nodes: list[_Nodes], scales: list[float], B: int, fine_points: torch.Tensor) -> Tree:
    """Orders every level by parent, top-down, and collects children ranges and radii."""
    nodes, scales = nodes[::-1], scales[::-1] + [0.0]  # coarse to fine
    parent_pos = torch.arange(B)
    parent_key = nodes[0].batch
    levels, root_children, order = [], None, None
    for k, lev in enumerate(nodes):
        key = parent_pos[parent_key]
        order = torch.sort(key, stable=True)[1]
        pos = torch.empty_like(order)
        pos[order] = torch.arange(order.numel())
        counts = torch.bincount(key, minlength=parent_pos.numel())
        ends = counts.cumsum(0)
        ranges = torch.stack((ends - counts, ends), dim=1)
        if k == 0:
            root_children = ranges
        else:
            prev = levels[-1]
            levels[-1] = Level(prev.points, prev.weights, ranges, prev.radius, prev.extent, prev.scale)
        fine = k == len(nodes) - 1
        pts = fine_points[order] if fine else lev.points[order]
        radius = torch.zeros(order.numel(), dtype=lev.points.dtype)
        extent = torch.zeros(order.numel(), lev.points.shape[1], dtype=lev.points.dtype)
        if not fine:
            radius = _radius(nodes[k + 1], lev)[order]
            extent = _extent(nodes[k + 1], lev)[order]
            parent_key = nodes[k + 1].parent
        empty = torch.zeros(order.numel(), 2, dtype=torch.int64)
        levels.append(Level(pts, lev.weights[order], empty, radius, extent, scales[k]))
        parent_pos = pos
    return Tree(root_children, tuple(levels), order)


def build_trees(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor, cluster_scale: Optional[float],
                labels: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                leaf_size: int = LEAF_SIZE) -> tuple[Tree, Tree]:
    """The multiscale trees of two batched clouds: kd-tree levels, or grids of shared sides.

    Args:
        x: ``(B, N, D)`` points (the fine level keeps their autograd graph).
        a: ``(B, N)`` weights of x.
        y: ``(B, M, D)`` points.
        b: ``(B, M)`` weights of y.
        cluster_scale: the side of the finest grid, > 0 (ignored for the first level when
            ``labels`` are given); None: balanced kd-tree levels (:mod:`lazygeom.sparse.kdtree`)
            whose leaves hold at most ``leaf_size`` points.
        labels: optional integer cluster labels ``(lab_x, lab_y)`` shaped like a and b: the
            first cluster level (the ones above it are grids).
        leaf_size: the kd-tree's largest leaf (the leaves hold between half of it and it).

    Returns:
        ``(tree_x, tree_y)``, with the same number of levels.
    """
    kd = cluster_scale is None and labels is None
    if cluster_scale is not None and not (isinstance(cluster_scale, (int, float)) and math.isfinite(cluster_scale)
                                          and cluster_scale > 0):
        raise ValueError(f"cluster_scale must be a positive number, got {cluster_scale!r}")
    B, N, D = x.shape
    M = y.shape[1]
    with torch.no_grad():
        bx = torch.arange(B).repeat_interleave(N)
        by = torch.arange(B).repeat_interleave(M)
        nx = _Nodes(x.detach().reshape(-1, D), a.detach().reshape(-1), bx)
        ny = _Nodes(y.detach().reshape(-1, D), b.detach().reshape(-1), by)
        if kd:
            if not (isinstance(leaf_size, int) and leaf_size >= 1):
                raise ValueError(f"leaf_size must be a positive integer, got {leaf_size!r}")
            for name, pts in (("x", nx.points), ("y", ny.points)):
                if not bool(torch.isfinite(pts).all()):
                    raise ValueError(f"multiscale: the points {name} must be finite")
            xs, ys, scales = _kd_label_levels(nx, ny, B, leaf_size)
        else:
            lab = None if labels is None else (labels[0], labels[1], tuple(a.shape), tuple(b.shape))
            scale = 1.0 if cluster_scale is None else float(cluster_scale)  # labels: replaced by their radius
            xs, ys, scales = _label_levels(nx, ny, B, scale, lab)
    tree_x = _sorted_tree(xs, scales, B, x.reshape(-1, D))
    tree_y = _sorted_tree(ys, scales, B, y.reshape(-1, D))
    return tree_x, tree_y


__all__ = ["COARSEST", "LEAF_SIZE", "Level", "Tree", "build_trees"]
