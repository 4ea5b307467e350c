"""Block-sparse structure: clustering (grids, kd-trees) and pykeops' ``ranges`` 6-tuples.

Shared by the engine (``ranges=`` on every reduction), :mod:`lazygeom.ot` (multiscale Sinkhorn) and
the next domains. ``lazygeom.cluster`` is the same API under pykeops' name.

A block-sparse reduction visits only some pairs of clusters. The recipe (docs/mathematics.md, section 3):

1. label the points, e.g. ``lab_x = grid_cluster(x, size)``;
2. sort them so that each cluster is contiguous: ``x, lab_x = sort_clusters(x, lab_x)``;
3. get the clusters' ranges and centroids: ``ranges_x, c_x, w_x = cluster_ranges_centroids(x, lab_x)``;
4. choose the cluster pairs that interact, e.g. ``keep = ((c_x[:, None] - c_y[None]) ** 2).sum(-1) < r ** 2``;
5. ``ranges = from_matrix(ranges_x, ranges_y, keep)`` and pass ``ranges=ranges`` to a reduction.

``ranges`` is the 6-tuple ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``:

- ``ranges_i`` (Ci, 2): ``[start, end)`` of the rows of each i-cluster;
- ``slices_i`` (Ci,): *cumulative ends*: the j-ranges of i-cluster ``k`` are
  ``redranges_j[slices_i[k-1]:slices_i[k]]`` (with ``slices_i[-1]`` read as 0 for ``k = 0``), so
  ``slices_i[-1] == len(redranges_j)``;
- ``redranges_j`` (K, 2): ``[start, end)`` column ranges, listed i-cluster after i-cluster;
- ``ranges_j``, ``slices_j``, ``redranges_i``: the same for the transposed problem (reductions over
  i, ``dim=0``), see :func:`swap_axes`.

A reduction over j (``dim=1``) computes, for each i-cluster ``k`` and row ``i`` in it,
``sum_{j in U_k} F(x_i, y_j)`` where ``U_k`` is the union of its j-ranges; rows outside every
i-range get the empty reduction's value.

Every function accepts NumPy arrays too and then returns NumPy arrays (like ``pykeops.numpy.cluster``).
Integer outputs are int64.
"""

from .check import RANGES_NAMES, check_ranges, dense_mask
from .clustering import cluster_centroids, cluster_ranges, cluster_ranges_centroids, grid_cluster, sort_clusters
from .kdtree import bounding_boxes, kd_paths, leaf_depth
from .ranges import from_matrix, from_pairs, pair_slices, swap_axes, unique_pairs

__all__ = [
    "RANGES_NAMES", "bounding_boxes", "check_ranges", "cluster_centroids", "cluster_ranges",
    "cluster_ranges_centroids", "dense_mask", "from_matrix", "from_pairs", "grid_cluster", "kd_paths",
    "leaf_depth", "pair_slices", "sort_clusters", "swap_axes", "unique_pairs",
]
