"""Clustering helpers for block-sparse reductions (the ``pykeops.torch.cluster`` API).

A block-sparse reduction visits only some pairs of clusters. The recipe (ALGORITHMS.md, section 2):

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

from __future__ import annotations

import functools

import numpy as np
import torch

from .backends.cpu import pairs as native

__all__ = [
    "check_ranges", "cluster_centroids", "cluster_ranges", "cluster_ranges_centroids", "dense_mask",
    "from_matrix", "from_pairs", "grid_cluster", "sort_clusters", "swap_axes",
]

RANGES_NAMES = ("ranges_i", "slices_i", "redranges_j", "ranges_j", "slices_j", "redranges_i")


def _to_numpy(out):
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy()
    if isinstance(out, (tuple, list)):
        return type(out)(_to_numpy(o) for o in out)
    return out


def _numpy_io(fn):
    """Lets ``fn`` take NumPy arrays (also inside tuples/lists): they are shared with torch, and the
    outputs go back to NumPy when any input was NumPy."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        found = False

        def conv(a):
            nonlocal found
            if isinstance(a, np.ndarray):
                found = True
                return torch.from_numpy(np.ascontiguousarray(a))
            if isinstance(a, (tuple, list)) and any(isinstance(b, np.ndarray) for b in a):
                return type(a)(conv(b) for b in a)
            return a

        out = fn(*(conv(a) for a in args), **{k: conv(v) for k, v in kwargs.items()})
        return _to_numpy(out) if found else out

    return wrapper


def _labels(lab, name: str = "lab") -> torch.Tensor:
    """Flattens an integer label vector to int64 and checks that it is non-negative."""
    if not isinstance(lab, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or np.ndarray of integers, got {type(lab).__name__}")
    if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer labels, got dtype {lab.dtype}")
    lab = lab.reshape(-1).to(torch.int64)
    if lab.numel() and int(lab.min()) < 0:
        raise ValueError(f"{name} must hold labels in [0, C), found {int(lab.min())}")
    return lab


def _n_clusters(lab: torch.Tensor, *counts) -> int:
    """The number C of clusters: the length of the first given per-cluster vector, else max(lab) + 1."""
    top = int(lab.max()) + 1 if lab.numel() else 0
    for c in counts:
        if c is not None:
            C = c.reshape(-1).shape[0]
            if C < top:
                raise ValueError(f"a per-cluster vector has length {C} but lab holds the label {top - 1}")
            return C
    return top


@_numpy_io
def grid_cluster(x, size) -> torch.Tensor:
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
            raise ValueError(f"grid_cluster: size must be a number or a ({x.shape[1]},) vector, got shape {tuple(s.shape)}")
        if not bool(torch.all(torch.isfinite(s) & (s > 0))):
            raise ValueError(f"grid_cluster: size must be positive and finite, got {s.tolist()}")
        if x.shape[0] == 0 or x.shape[1] == 0:  # no points, or one voxel (R^0)
            return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        q = torch.floor(x / s)
        if not bool(torch.isfinite(q).all()) or float(q.abs().max()) >= 2.0 ** 62:
            raise ValueError("grid_cluster: x / size must be finite and below 2**62 in magnitude")
        _, lab = torch.unique(q.to(torch.int64), dim=0, sorted=True, return_inverse=True)
    return lab.reshape(-1).to(torch.int64)


@_numpy_io
def sort_clusters(x, lab):
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


@_numpy_io
def cluster_ranges(lab, Nlab=None) -> torch.Tensor:
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


@_numpy_io
def cluster_centroids(x, lab, Nlab=None, weights=None, weights_c=None) -> torch.Tensor:
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
        den = weights_c.reshape(-1) if weights_c is not None else torch.zeros(C, dtype=w.dtype, device=w.device).index_add(0, lab, w)
    num = torch.zeros((C, *x.shape[1:]), dtype=src.dtype, device=x.device).index_add(0, lab, src)
    return num / den.to(device=x.device, dtype=src.dtype).reshape((C,) + (1,) * (x.ndim - 1))


@_numpy_io
def cluster_ranges_centroids(x, lab, weights=None, min_weight=1e-9):
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


def _int_array(r, name: str, pairs: bool) -> torch.Tensor:
    """``r`` as an int64 tensor, checked to be integer and, if ``pairs``, shaped (C, 2)."""
    r = torch.from_numpy(np.ascontiguousarray(r)) if isinstance(r, np.ndarray) else r
    if not isinstance(r, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or np.ndarray, got {type(r).__name__}")
    if r.dtype.is_floating_point or r.dtype.is_complex or r.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype (int32 or int64), got {r.dtype}")
    if pairs and (r.ndim != 2 or r.shape[1] != 2):
        raise ValueError(f"{name} must have shape (C, 2) ([start, end) pairs), got {tuple(r.shape)}")
    return r.to(torch.int64).contiguous()


@_numpy_io
def from_matrix(ranges_i, ranges_j, keep):
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
    ranges_i, ranges_j = _int_array(ranges_i, "ranges_i", True), _int_array(ranges_j, "ranges_j", True)
    if not isinstance(keep, torch.Tensor) or tuple(keep.shape) != (ranges_i.shape[0], ranges_j.shape[0]):
        raise ValueError(f"keep must be a ({ranges_i.shape[0]}, {ranges_j.shape[0]}) boolean array "
                         f"(i-clusters x j-clusters), got shape {tuple(getattr(keep, 'shape', ()))}")
    rows, cols = keep.to(device=ranges_i.device, dtype=torch.bool).nonzero(as_tuple=True)
    return from_pairs(ranges_i, ranges_j, rows, cols)


def pair_slices(ranges_rows: torch.Tensor, ranges_cols: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                merge: bool = False, presorted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(slices, redranges)``: one half of :func:`from_pairs` (the reduction over columns).

    Args:
        ranges_rows, ranges_cols: (C, 2) int64 ranges of the row and column clusters.
        rows, cols: int64 cluster indices of the pairs, each pair once.
        merge: fuse touching column ranges (see :func:`from_pairs`).
        presorted: the pairs are already sorted by row, then column (skips a sort).
    """
    done = native.pair_slices(ranges_rows, ranges_cols, rows, cols, merge, presorted)
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


@_numpy_io
def from_pairs(ranges_i, ranges_j, rows, cols, merge: bool = False):
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
    ranges_i, ranges_j = _int_array(ranges_i, "ranges_i", True), _int_array(ranges_j, "ranges_j", True)
    rows, cols = _int_array(rows, "rows", False).reshape(-1), _int_array(cols, "cols", False).reshape(-1)
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


def _check_six(ranges) -> None:
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        length = f" of length {len(ranges)}" if isinstance(ranges, (tuple, list)) else ""
        raise ValueError(f"ranges must be a 6-tuple {RANGES_NAMES}, got {type(ranges).__name__}{length}")


def swap_axes(ranges):
    """The ``ranges`` of the transposed problem (i <-> j): ``(*ranges[3:6], *ranges[0:3])``.

    Args:
        ranges: a ``ranges`` 6-tuple, or None.

    Returns:
        None if ``ranges`` is None, else the 6-tuple ``(ranges_j, slices_j, redranges_i, ranges_i,
        slices_i, redranges_j)`` (the same arrays, not copies).
    """
    if ranges is None:
        return None
    _check_six(ranges)
    return (*ranges[3:6], *ranges[0:3])


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


def check_ranges(ranges, N: int, M: int) -> tuple[torch.Tensor, ...]:
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
    _check_six(ranges)
    if int(N) < 0 or int(M) < 0:
        raise ValueError(f"N and M must be non-negative, got N={N}, M={M}")
    out = [_int_array(r, name, "ranges" in name) for name, r in zip(RANGES_NAMES, ranges)]
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


def dense_mask(ranges, N: int, M: int):
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
