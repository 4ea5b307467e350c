"""Tests of lazygeom.cluster against brute-force references (per-point and per-label loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lazygeom.cluster import (
    check_ranges, cluster_centroids, cluster_ranges, cluster_ranges_centroids, dense_mask, from_matrix,
    grid_cluster, sort_clusters, swap_axes,
)


def ref_grid_labels(x: torch.Tensor, size) -> list[int]:
    """Voxel coordinates floor(x / size) per point, numbered in lexicographic order."""
    q = [tuple(int(v) for v in row) for row in torch.floor(x / torch.as_tensor(size, dtype=x.dtype)).tolist()]
    number = {v: k for k, v in enumerate(sorted(set(q)))}
    return [number[v] for v in q]


def random_partition(n: int, C: int, rng: torch.Generator) -> torch.Tensor:
    """(C, 2) ranges of C consecutive clusters (some possibly empty) covering [0, n)."""
    cuts = torch.sort(torch.randint(0, n + 1, (C - 1,), generator=rng)).values
    bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([n])])
    return torch.stack([bounds[:-1], bounds[1:]], 1)


def block_mask(ranges_i, ranges_j, keep, N, M) -> torch.Tensor:
    """keep expanded to points, by a loop over every pair of points."""
    ci, cj = [-1] * N, [-1] * M
    for k, (a, b) in enumerate(ranges_i.tolist()):
        for i in range(a, b):
            ci[i] = k
    for k, (a, b) in enumerate(ranges_j.tolist()):
        for j in range(a, b):
            cj[j] = k
    mask = torch.zeros(N, M, dtype=torch.bool)
    for i in range(N):
        for j in range(M):
            if ci[i] >= 0 and cj[j] >= 0:
                mask[i, j] = bool(keep[ci[i], cj[j]])
    return mask


# ------------------------------------------------------------------------------------- grid_cluster
@pytest.mark.parametrize("D", [1, 2, 3, 5])
@pytest.mark.parametrize("per_dim", [False, True])
def test_grid_cluster_matches_floor_grouping(D, per_dim, rng):
    x = 3 * torch.randn(500, D, generator=rng, dtype=torch.float64)
    size = 0.3 + torch.rand(D, generator=rng, dtype=torch.float64) if per_dim else 0.7
    lab = grid_cluster(x, size)
    assert lab.dtype == torch.int64 and lab.shape == (500,)
    assert lab.tolist() == ref_grid_labels(x, size)
    assert sorted(set(lab.tolist())) == list(range(int(lab.max()) + 1))  # contiguous numbering


def test_grid_cluster_example_and_many_cells(rng):
    x = torch.tensor([[0.0], [0.1], [0.9], [0.05], [0.5], [-0.1]])
    assert grid_cluster(x, 0.2).tolist() == [1, 1, 3, 1, 2, 0]  # voxel -1 first
    # far more than 1024 cells per axis (pykeops' packing overflows there)
    x = torch.rand(300, 2, generator=rng, dtype=torch.float64) * 1e5
    lab = grid_cluster(x, 1.0)
    assert lab.tolist() == ref_grid_labels(x, 1.0)
    assert grid_cluster(torch.zeros(0, 3), 1.0).shape == (0,)


def test_grid_cluster_float32_and_errors(rng):
    x = torch.randn(200, 3, generator=rng)
    assert grid_cluster(x, 0.5).tolist() == ref_grid_labels(x, 0.5)
    with pytest.raises(ValueError, match="positive"):
        grid_cluster(x, 0.0)
    with pytest.raises(ValueError, match=r"\(3,\) vector"):
        grid_cluster(x, torch.ones(2))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        grid_cluster(x[:, 0], 1.0)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        grid_cluster(x, 1.0)


# ------------------------------------------------------------------------------------ sort_clusters
def test_sort_clusters_stable_and_containers(rng):
    lab = torch.randint(0, 7, (300,), generator=rng, dtype=torch.int32)
    x = torch.randn(300, 3, generator=rng)
    w = torch.rand(300, generator=rng)
    order = sorted(range(300), key=lambda i: int(lab[i]))  # Python's sort is stable
    xs, ls = sort_clusters(x, lab)
    assert torch.equal(xs, x[order]) and ls.tolist() == sorted(lab.tolist()) and ls.dtype == lab.dtype
    (xs2, ws), _ = sort_clusters((x, w), lab)
    assert torch.equal(xs2, x[order]) and torch.equal(ws, w[order])
    out, _ = sort_clusters([x, w], lab)
    assert isinstance(out, list) and torch.equal(out[1], w[order])
    with pytest.raises(ValueError, match="labels"):
        sort_clusters(x[:10], lab)


# ------------------------------------------------------------------------- ranges and centroids
def test_cluster_ranges_matches_per_label_positions(rng):
    lab = torch.randint(0, 9, (400,), generator=rng)
    lab[lab == 4] = 5  # an empty cluster in the middle
    _, ls = sort_clusters(torch.arange(400), lab)
    r = cluster_ranges(ls)
    assert r.dtype == torch.int64 and r.shape == (int(lab.max()) + 1, 2)
    for k, (a, b) in enumerate(r.tolist()):
        where = (ls == k).nonzero().flatten().tolist()
        assert list(range(a, b)) == where
    padded = cluster_ranges(ls, Nlab=torch.cat([torch.bincount(ls), torch.zeros(2, dtype=torch.int64)]).float())
    assert torch.equal(padded[: len(r)], r) and padded[len(r):].tolist() == [[400, 400]] * 2


@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_centroids_matches_loop(weighted, rng):
    x = torch.randn(250, 3, generator=rng, dtype=torch.float64)
    lab = torch.randint(0, 6, (250,), generator=rng)
    w = torch.rand(250, generator=rng, dtype=torch.float64) + 0.1 if weighted else torch.ones(250, dtype=torch.float64)
    c = cluster_centroids(x, lab, weights=w if weighted else None)
    ref = torch.stack([(w[lab == k, None] * x[lab == k]).sum(0) / w[lab == k].sum() for k in range(6)])
    torch.testing.assert_close(c, ref)
    # precomputed counts / total weights give the same
    if weighted:
        wc = torch.stack([w[lab == k].sum() for k in range(6)])
        torch.testing.assert_close(cluster_centroids(x, lab, weights=w, weights_c=wc[:, None]), ref)
    else:
        torch.testing.assert_close(cluster_centroids(x, lab, Nlab=torch.bincount(lab).float()), ref)


def test_cluster_centroids_gradient_and_empty(rng):
    x = torch.randn(20, 2, generator=rng, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(20, generator=rng, dtype=torch.float64) + 0.5).requires_grad_()
    lab = torch.randint(0, 4, (20,), generator=rng)
    lab[:4] = torch.arange(4)
    assert torch.autograd.gradcheck(lambda x, w: cluster_centroids(x, lab, weights=w), (x, w))
    c = cluster_centroids(x.detach(), torch.tensor([0, 0, 2] + [0] * 17))
    assert torch.isnan(c[1]).all() and not torch.isnan(c[[0, 2]]).any()
    with pytest.raises(ValueError, match="labels"):
        cluster_centroids(x[:5], lab)


@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_ranges_centroids_matches_loop(weighted, rng):
    x, lab = torch.randn(300, 2, generator=rng, dtype=torch.float64), torch.randint(0, 8, (300,), generator=rng)
    x, lab = sort_clusters(x, lab)
    w = torch.rand(300, generator=rng, dtype=torch.float64)
    if weighted:
        w[::7] = 0.0
        w[1::11] = -1.0
    r, c, wc = cluster_ranges_centroids(x, lab, weights=w if weighted else None, min_weight=1e-3)
    assert r.shape == (8, 2) and c.shape == (8, 2) and wc.shape == (8,) and wc.dtype == x.dtype
    for k, (a, b) in enumerate(r.tolist()):
        assert bool((lab[a:b] == k).all()) and int((lab == k).sum()) == b - a
        wk = w[a:b].clamp(min=1e-3) if weighted else torch.ones(b - a, dtype=x.dtype)
        torch.testing.assert_close(wc[k], wk.sum())
        torch.testing.assert_close(c[k], (wk[:, None] * x[a:b]).sum(0) / wk.sum())


# ------------------------------------------------------------------------- from_matrix and friends
def test_from_matrix_docs_example():
    r_i, r_j = torch.tensor([[2, 5], [7, 12]]), torch.tensor([[1, 4], [4, 9], [20, 30]])
    keep = torch.tensor([[1, 1, 0], [0, 1, 0]], dtype=torch.uint8)
    ri, si, rrj, rj, sj, rri = from_matrix(r_i, r_j, keep)
    assert torch.equal(ri, r_i) and torch.equal(rj, r_j)
    assert si.tolist() == [2, 3] and rrj.tolist() == [[1, 4], [4, 9], [4, 9]]
    assert sj.tolist() == [1, 3, 3] and rri.tolist() == [[2, 5], [2, 5], [7, 12]]
    assert all(t.dtype == torch.int64 for t in (ri, si, rrj, rj, sj, rri))


@pytest.mark.parametrize("shuffle", [False, True])
def test_from_matrix_dense_mask_equals_block_mask(shuffle, rng):
    N, M, Ci, Cj = 60, 45, 7, 5
    r_i, r_j = random_partition(N, Ci, rng), random_partition(M, Cj, rng)
    if shuffle:  # clusters need not be listed in memory order, nor cover every point
        r_i = r_i[torch.randperm(Ci, generator=rng)][1:]
        r_j = r_j[torch.randperm(Cj, generator=rng)]
    keep = torch.rand(len(r_i), len(r_j), generator=rng) < 0.4
    keep[0, 0] = True
    ranges = from_matrix(r_i, r_j, keep)
    si, sj = ranges[1], ranges[4]
    assert int(si[-1]) == len(ranges[2]) == int(keep.sum()) == int(sj[-1]) == len(ranges[5])
    assert si.tolist() == torch.cumsum(keep.sum(1), 0).tolist()
    check_ranges(ranges, N, M)
    mask = block_mask(r_i, r_j, keep, N, M)
    assert mask.any() and not mask.all()
    assert torch.equal(dense_mask(ranges, N, M), mask)
    swapped = swap_axes(ranges)
    assert torch.equal(dense_mask(swapped, M, N), mask.T)
    assert all(a is b for a, b in zip(swap_axes(swapped), ranges))
    assert swap_axes(None) is None


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_from_matrix_property(data):
    Ci, Cj = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    sizes_i = data.draw(st.lists(st.integers(0, 3), min_size=Ci, max_size=Ci))
    sizes_j = data.draw(st.lists(st.integers(0, 3), min_size=Cj, max_size=Cj))
    r_i = cluster_ranges(torch.zeros(0, dtype=torch.int64), Nlab=torch.tensor(sizes_i, dtype=torch.int64))
    r_j = cluster_ranges(torch.zeros(0, dtype=torch.int64), Nlab=torch.tensor(sizes_j, dtype=torch.int64))
    bits = data.draw(st.lists(st.booleans(), min_size=Ci * Cj, max_size=Ci * Cj))
    keep = torch.tensor(bits, dtype=torch.bool).reshape(Ci, Cj)
    N, M = sum(sizes_i), sum(sizes_j)
    ranges = from_matrix(r_i, r_j, keep)
    assert torch.equal(dense_mask(ranges, N, M), block_mask(r_i, r_j, keep, N, M))
    assert torch.equal(dense_mask(swap_axes(ranges), M, N), block_mask(r_i, r_j, keep, N, M).T)


def test_from_matrix_bad_shapes():
    r = torch.tensor([[0, 2], [2, 3]])
    with pytest.raises(ValueError, match=r"\(2, 2\) boolean"):
        from_matrix(r, r, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"ranges_j must have shape \(C, 2\)"):
        from_matrix(r, r[:, 0], torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="6-tuple"):
        swap_axes((r, r))


# ------------------------------------------------------------------------------------- NumPy inputs
def test_numpy_inputs_give_numpy_outputs(rng):
    x = torch.randn(200, 2, generator=rng, dtype=torch.float64)
    w = torch.rand(200, generator=rng, dtype=torch.float64)
    lab = grid_cluster(x, 0.8)
    lab_np = grid_cluster(x.numpy(), 0.8)
    assert isinstance(lab_np, np.ndarray) and lab_np.dtype == np.int64 and (lab_np == lab.numpy()).all()
    (xs, ws), ls = sort_clusters((x, w), lab)
    (xs_np, ws_np), ls_np = sort_clusters((x.numpy(), w.numpy()), lab_np)
    assert isinstance(xs_np, np.ndarray) and np.array_equal(xs_np, xs.numpy()) and np.array_equal(ls_np, ls.numpy())
    out, out_np = cluster_ranges_centroids(xs, ls, weights=ws), cluster_ranges_centroids(xs_np, ls_np, weights=ws_np)
    for a, b in zip(out, out_np):
        assert isinstance(b, np.ndarray) and np.allclose(a.numpy(), b)
    assert isinstance(cluster_ranges(ls_np), np.ndarray)
    assert isinstance(cluster_centroids(xs_np, ls_np), np.ndarray)
    keep = (torch.cdist(out[1], out[1]) < 1.5).numpy()
    ranges_np = from_matrix(out_np[0], out_np[0], keep)
    assert all(isinstance(r, np.ndarray) and r.dtype == np.int64 for r in ranges_np)
    for a, b in zip(from_matrix(out[0], out[0], torch.from_numpy(keep)), ranges_np):
        assert np.array_equal(a.numpy(), b)
    m = dense_mask(ranges_np, 200, 200)
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.any() and not m.all()
    assert all(isinstance(r, torch.Tensor) for r in check_ranges(ranges_np, 200, 200))


# --------------------------------------------------------------------------------------- check_ranges
def _valid():
    r_i, r_j = torch.tensor([[0, 3], [3, 5]]), torch.tensor([[0, 2], [2, 4], [4, 6]])
    return list(from_matrix(r_i, r_j, torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)))


def test_check_ranges_accepts_valid_and_normalises():
    r = _valid()
    r32 = [t.to(torch.int32) for t in r]
    out = check_ranges(tuple(r32), 5, 6)
    assert len(out) == 6 and all(t.dtype == torch.int64 and t.is_contiguous() for t in out)
    assert all(torch.equal(a, b) for a, b in zip(out, r))


@pytest.mark.parametrize("mutate, pattern", [
    (lambda r: r[:5], "6-tuple"),
    (lambda r: [r[0].float(), *r[1:]], "ranges_i must have an integer dtype"),
    (lambda r: [r[0], r[1], r[2].tolist(), *r[3:]], "redranges_j must be a torch.Tensor"),
    (lambda r: [r[0][:, :1], *r[1:]], r"ranges_i must have shape \(C, 2\)"),
    (lambda r: [torch.tensor([[0, 3], [5, 3]]), *r[1:]], r"ranges_i\[1\] = \[5, 3\].*start <= end"),
    (lambda r: [torch.tensor([[0, 3], [3, 9]]), *r[1:]], r"ranges_i\[1\] = \[3, 9\] is out of \[0, N\] = \[0, 5\]"),
    (lambda r: [*r[:2], r[2] + 3, *r[3:]], r"redranges_j\[\d\] = .* out of \[0, M\] = \[0, 6\]"),
    (lambda r: [*r[:3], torch.tensor([[-1, 2], [2, 4], [4, 6]]), *r[4:]], r"ranges_j\[0\].*out of \[0, M\]"),
    (lambda r: [*r[:5], r[5] + 4], r"redranges_i\[\d\].*out of \[0, N\]"),
    (lambda r: [r[0], torch.tensor([2]), *r[2:]], r"slices_i must have shape \(2,\)"),
    (lambda r: [r[0], torch.tensor([4, 2]), *r[2:]],
     r"slices_i must be non-decreasing.*slices_i\[1\] = 2 < slices_i\[0\] = 4"),
    (lambda r: [r[0], torch.tensor([0, 2]), *r[2:]], r"slices_i\[-1\] = 2 but redranges_j has 4 rows.*start offsets"),
    (lambda r: [*r[:4], torch.tensor([2, 3, 5]), r[5]], r"slices_j\[-1\] = 5 but redranges_i has 4 rows"),
    (lambda r: [*r[:4], torch.tensor([-1, 3, 4]), r[5]], r"slices_j\[0\] = -1"),
])
def test_check_ranges_errors(mutate, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_ranges(mutate(_valid()), 5, 6)


def test_pipeline_centroids_lie_in_their_voxels(rng):
    x = torch.rand(400, 3, generator=rng, dtype=torch.float64) * 4 - 2
    size = torch.tensor([0.5, 0.7, 1.1], dtype=torch.float64)
    x, lab = sort_clusters(x, grid_cluster(x, size))
    r, c, wc = cluster_ranges_centroids(x, lab)
    assert int(r[-1, 1]) == 400 and torch.equal(r[1:, 0], r[:-1, 1]) and bool((r[:, 1] > r[:, 0]).all())
    assert torch.equal(wc, (r[:, 1] - r[:, 0]).to(wc.dtype))
    for k, (a, b) in enumerate(r.tolist()):
        q = torch.floor(x[a:b] / size)
        assert bool((q == q[0]).all())  # a cluster is one voxel...
        assert bool((c[k] >= q[0] * size).all() and (c[k] < (q[0] + 1) * size).all())  # ...containing its centroid
    qs = [tuple(torch.floor(x[a] / size).tolist()) for a, _ in r.tolist()]
    assert len(set(qs)) == len(qs)  # ...and distinct clusters are distinct voxels


def test_bad_labels():
    with pytest.raises(ValueError, match="labels in"):
        cluster_ranges(torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="integer labels"):
        cluster_centroids(torch.ones(3, 2), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="length 2 but lab holds the label 2"):
        cluster_centroids(torch.ones(3, 2), torch.tensor([0, 1, 2]), Nlab=torch.tensor([1, 1]))
