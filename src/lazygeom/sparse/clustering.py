"""Clustering helpers: grid labels, sorting by cluster, cluster ranges and centroids."""

from __future__ import annotations

from typing import Optional, Sequence, TypeVar, Union

import torch

from ._io import Array, numpy_io

#: what :func:`sort_clusters` sorts: one array or a tuple/list of arrays (the same container comes back)
Sortable = TypeVar("Sortable", bound=Union[Array, Sequence[Array]])

__all__ = ["cluster_centroids", "cluster_ranges", "cluster_ranges_centroids", "grid_cluster", "sort_clusters"]


def _labels(lab: Array, name: str = "lab") -> torch.Tensor:
    """Flattens an integer label vector to int64 and checks that it is non-negative."""
    if not isinstance(lab, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or np.ndarray of integers, got {type(lab).__name__}")
    if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer labels, got dtype {lab.dtype}")
    lab = lab.reshape(-1).to(torch.int64)
    if lab.numel() and int(lab.min()) < 0:
        raise ValueError(f"{name} must hold labels in [0, C), found {int(lab.min())}")
    return lab


def _n_clusters(lab: torch.Tensor, *counts: Optional[torch.Tensor]) -> int:
    """The number C of clusters: the length of the first given per-cluster vector, else max(lab) + 1."""
    top = int(lab.max()) + 1 if lab.numel() else 0
    for c in counts:
        if c is not None:
            C = c.reshape(-1).shape[0]
            if C < top:
                raise ValueError(f"a per-cluster vector has length {C} but lab holds the label {top - 1}")
            return C
    return top


@numpy_io
def grid_cluster(x: Array, size: Union[float, Array]) -> Array:
    r"""Labels the points by the cubic cell ("voxel") of a regular grid that contains them.

    The grid is anchored at the origin: point :math:`x_i` lies in the voxel of integer coordinates
    :math:`q_i = \lfloor x_i / s \rfloor \in \mathbb{Z}^D` (componentwise), i.e. the cell
    :math:`\prod_d [q_{i,d} s_d, (q_{i,d}+1) s_d)`. Labels number the C non-empty voxels
    :math:`0, \dots, C-1` in the lexicographic order of :math:`q` (first coordinate most
    significant). Unlike ``pykeops``, which anchors the grid at ``x.min(0)`` and supports
    D <= 3 with at most 1024 cells per axis, the partition does not depend on the cloud's extent
    (two clouds clustered with the same ``size`` share voxels) and any D works.

    Args:
        x: (N, D) points, floating point.
        size: voxel side: a positive number, or a (D,) tensor of positive sides per axis.

    Returns:
        (N,) int64 labels in ``[0, C)``; ``lab[i] == lab[j]`` iff ``x[i]`` and ``x[j]`` share a voxel.

    Raises:
        ValueError: if ``x`` is not a finite (N, D) array, or ``size`` is not positive and finite
            with shape () or (D,).

    Example:
        >>> grid_cluster(torch.tensor([[0.], [.1], [.9], [.05], [.5]]), .2)
        tensor([0, 0, 2, 0, 1])
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.dtype.is_floating_point:
        raise ValueError(f"grid_cluster: x must be a floating (N, D) array, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}")
    with torch.no_grad():
        s = torch.as_tensor(size, dtype=x.dtype, device=x.device)
        if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != x.shape[1]):
            raise ValueError(f"grid_cluster: size must be a number or a ({x.shape[1]},) vector, "
                             f"got shape {tuple(s.shape)}")
        if not bool(torch.all(torch.isfinite(s) & (s > 0))):
            raise ValueError(f"grid_cluster: size must be positive and finite, got {s.tolist()}")
        if x.shape[0] == 0 or x.shape[1] == 0:  # no points, or one voxel (R^0)
            return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        q = torch.floor(x / s)
        if not bool(torch.isfinite(q).all()) or float(q.abs().max()) >= 2.0 ** 62:
            raise ValueError("grid_cluster: x / size must be finite and below 2**62 in magnitude")
        _, lab = torch.unique(q.to(torch.int64), dim=0, sorted=True, return_inverse=True)
    return lab.reshape(-1).to(torch.int64)


@numpy_io
def sort_clusters(x: Sortable, lab: Array) -> tuple[Sortable, Array]:
    r"""Sorts points (or several arrays) by label, so that each cluster is contiguous in memory.

    The sort is stable: within a cluster, points keep their original order.

    Args:
        x: (N, ...) tensor, or a tuple/list of (N, ...) tensors sorted with the same permutation.
        lab: (N,) integer labels.

    Returns:
        ``(x_sorted, lab_sorted)``: ``x`` permuted (same container type) and the sorted labels
        (same dtype as ``lab``).

    Raises:
        ValueError: if an array of ``x`` does not have N rows.
    """
    flat = lab.reshape(-1)
    lab_sorted, perm = torch.sort(flat, stable=True)
    for a in x if isinstance(x, (tuple, list)) else (x,):
        if a.shape[0] != flat.shape[0]:
            raise ValueError(f"sort_clusters: got {flat.shape[0]} labels but an array of shape {tuple(a.shape)}")
    if isinstance(x, (tuple, list)):
        return type(x)(a[perm] for a in x), lab_sorted
    return x[perm], lab_sorted


@numpy_io
def cluster_ranges(lab: Array, Nlab: Optional[Array] = None) -> Array:
    r"""The ``[start, end)`` ranges of the clusters in a point cloud sorted by :func:`sort_clusters`.

    With :math:`n_k = \#\{i : \ell_i = k\}`, cluster ``k`` is rows
    :math:`[\sum_{k'<k} n_{k'}, \sum_{k' \le k} n_{k'})` of the sorted cloud.

    Args:
        lab: (N,) non-negative integer labels (sorted or not: only their counts matter).
        Nlab: (C,) number of points per cluster, if already known (then C may exceed ``max(lab)+1``).

    Returns:
        (C, 2) int64 ranges, ``C = len(Nlab)`` or ``max(lab) + 1``; empty clusters give ``start == end``.
    """
    lab = _labels(lab)
    counts = torch.bincount(lab) if Nlab is None else Nlab.reshape(-1).to(lab.device)
    counts = (counts.round() if counts.dtype.is_floating_point else counts).to(torch.int64)
    ends = torch.cumsum(counts, 0)
    return torch.stack((ends - counts, ends), dim=1)


@numpy_io
def cluster_centroids(x: Array, lab: Array, Nlab: Optional[Array] = None, weights: Optional[Array] = None,
                      weights_c: Optional[Array] = None) -> Array:
    r"""The (weighted) barycenters of the clusters.

    .. math:: c_k = \frac{\sum_{i : \ell_i = k} w_i x_i}{\sum_{i : \ell_i = k} w_i}, \quad w_i = 1 \text{ by default.}

    Differentiable with respect to ``x`` and ``weights``. Clusters of zero total weight (e.g. empty
    ones) get NaN centroids, whose distances compare False with any threshold.

    Args:
        x: (N, ...) points (usually (N, D)).
        lab: (N,) non-negative integer labels.
        Nlab: (C,) points per cluster (used when ``weights`` is None); recomputed if None.
        weights: (N,) positive weights :math:`w_i`.
        weights_c: (C,) or (C, 1) total weight per cluster (used with ``weights``); recomputed if None.

    Returns:
        (C, ...) centroids.
    """
    lab = _labels(lab)
    if x.shape[0] != lab.shape[0]:
        raise ValueError(f"cluster_centroids: x has shape {tuple(x.shape)} but lab has {lab.shape[0]} labels")
    C = _n_clusters(lab, Nlab if weights is None else weights_c, Nlab)
    if weights is None:
        src = x
        den = torch.bincount(lab, minlength=C) if Nlab is None else Nlab.reshape(-1)
    else:
        w = weights.reshape(-1)
        if w.shape[0] != lab.shape[0]:
            raise ValueError(f"cluster_centroids: weights has {w.shape[0]} entries for {lab.shape[0]} labels")
        src = x * w.reshape((-1,) + (1,) * (x.ndim - 1))
        den = (weights_c.reshape(-1) if weights_c is not None
               else torch.zeros(C, dtype=w.dtype, device=w.device).index_add(0, lab, w))
    num = torch.zeros((C, *x.shape[1:]), dtype=src.dtype, device=x.device).index_add(0, lab, src)
    return num / den.to(device=x.device, dtype=src.dtype).reshape((C,) + (1,) * (x.ndim - 1))


@numpy_io
def cluster_ranges_centroids(x: Array, lab: Array, weights: Optional[Array] = None,
                             min_weight: float = 1e-9) -> tuple[Array, Array, Array]:
    r"""Ranges, centroids and total weights of the clusters of a (weighted) labelled cloud.

    Weights are first clamped to ``>= min_weight``, so that every non-empty cluster has a positive
    weight (:math:`w_i \leftarrow \max(w_i, w_{\min})`). Then
    :math:`W_k = \sum_{i:\ell_i=k} w_i` and :math:`c_k = \sum_{i:\ell_i=k} w_i x_i / W_k`.

    Args:
        x: (N, D) points.
        lab: (N,) non-negative integer labels.
        weights: (N,) weights :math:`w_i`; all ones if None.
        min_weight: lower bound applied to the weights.

    Returns:
        ``(ranges, centroids, weights_c)``: (C, 2) int64 ranges as :func:`cluster_ranges` (valid for
        the cloud sorted by :func:`sort_clusters`), (C, D) centroids and (C,) total weights (the
        point counts, in ``x``'s dtype, when ``weights`` is None).
    """
    lab = _labels(lab)
    counts = torch.bincount(lab)
    ranges = cluster_ranges(lab, counts)
    if weights is None:
        return ranges, cluster_centroids(x, lab, counts), counts.to(x.dtype)
    w = weights.reshape(-1).clamp(min=min_weight)
    w_c = torch.zeros(counts.shape[0], dtype=w.dtype, device=w.device).index_add(0, lab, w)
    return ranges, cluster_centroids(x, lab, counts, weights=w, weights_c=w_c), w_c
