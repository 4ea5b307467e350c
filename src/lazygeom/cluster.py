"""The ``pykeops.torch.cluster`` / ``pykeops.numpy.cluster`` API under its pykeops name.

``from lazygeom.cluster import grid_cluster, from_matrix, ...`` replaces
``from pykeops.torch.cluster import ...``; the functions live in :mod:`lazygeom.sparse`.
"""

from .sparse import (check_ranges, cluster_centroids, cluster_ranges, cluster_ranges_centroids, dense_mask,
                     from_matrix, from_pairs, grid_cluster, pair_slices, sort_clusters, swap_axes)

__all__ = [
    "check_ranges", "cluster_centroids", "cluster_ranges", "cluster_ranges_centroids", "dense_mask",
    "from_matrix", "from_pairs", "grid_cluster", "pair_slices", "sort_clusters", "swap_axes",
]
