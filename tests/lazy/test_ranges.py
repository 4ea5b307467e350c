"""Block-sparse ranges (pykeops 6-tuple) against dense masked references, on every backend."""

from __future__ import annotations

import pytest
import torch

from lazygeom import LazyTensor, Vi, Vj
from lazygeom.cluster import cluster_ranges_centroids, dense_mask, from_matrix, grid_cluster, sort_clusters


def _clustered(rng, n, m, dtype):
    x = torch.rand(n, 2, generator=rng, dtype=dtype)
    y = torch.rand(m, 2, generator=rng, dtype=dtype)
    x, _ = sort_clusters(x, grid_cluster(x, 0.25))
    y, _ = sort_clusters(y, grid_cluster(y, 0.25))
    rx, cx, _ = cluster_ranges_centroids(x, grid_cluster(x, 0.25))
    ry, cy, _ = cluster_ranges_centroids(y, grid_cluster(y, 0.25))
    keep = ((cx[:, None] - cy[None]) ** 2).sum(-1) < 0.3**2
    keep[0] = False  # an i-cluster with no neighbour: its rows reduce over nothing
    return x, y, from_matrix(rx, ry, keep)


def _masked(mask, D, fill):
    return torch.where(mask, D, torch.full_like(D, fill))


@pytest.mark.parametrize("over", [0, 1])
def test_sum_lse_min_kmin_with_ranges(backend, rng, over, dtype=torch.float64):
    x, y, ranges = _clustered(rng, 120, 90, dtype)
    N, M = len(x), len(y)
    mask = dense_mask(ranges, N, M)
    b = torch.randn(M if over == 1 else N, 2, generator=rng, dtype=dtype)
    D = ((x[:, None] - y[None]) ** 2).sum(-1)
    ax = 1 if over == 1 else 0
    Dm = D if over == 1 else D.T
    maskm = mask if over == 1 else mask.T
    K = (-Vi(x).sqdist(Vj(y)) * 4).exp()
    v = Vj(b) if over == 1 else Vi(b)
    out = (K * v).sum(dim=ax, ranges=ranges, backend=backend)
    ref = (torch.exp(-4 * Dm) * maskm) @ b
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-12)

    lse = (-Vi(x).sqdist(Vj(y))).logsumexp(dim=ax, ranges=ranges, backend=backend)[:, 0]
    lref = torch.logsumexp(_masked(maskm, -Dm, -float("inf")), 1)
    assert torch.equal(torch.isinf(lse), torch.isinf(lref))
    assert over == 0 or torch.isinf(lref).any()  # i-cluster 0 has no neighbour
    fin = torch.isfinite(lref)
    assert torch.allclose(lse[fin], lref[fin], rtol=1e-10)

    vals, idx = Vi(x).sqdist(Vj(y)).Kmin_argKmin(3, dim=ax, ranges=ranges, backend=backend)
    full = maskm.sum(1) >= 3
    t = _masked(maskm, Dm, float("inf")).topk(3, largest=False)
    assert full.any()
    assert torch.allclose(vals[full], t.values[full], rtol=1e-12)
    assert torch.equal(idx[full], t.indices[full])


def test_gradients_with_ranges(backend, rng, dtype=torch.float64):
    x, y, ranges = _clustered(rng, 80, 70, dtype)
    mask = dense_mask(ranges, len(x), len(y))
    x.requires_grad_(True)
    y.requires_grad_(True)
    b = torch.randn(len(y), 1, generator=rng, dtype=dtype)
    out = ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(dim=1, ranges=ranges, backend=backend)
    lse = (-Vi(x).sqdist(Vj(y))).logsumexp(dim=1, ranges=ranges, backend=backend)
    loss = (out**2).sum() + lse[torch.isfinite(lse)].sum()
    gx, gy = torch.autograd.grad(loss, [x, y])
    D = ((x[:, None] - y[None]) ** 2).sum(-1)
    dense = (torch.exp(-D) * mask) @ b
    dl = torch.logsumexp(_masked(mask, -D, -float("inf")), 1, keepdim=True)
    rloss = (dense**2).sum() + dl[torch.isfinite(dl)].sum()
    rx, ry = torch.autograd.grad(rloss, [x, y])
    assert torch.allclose(gx, rx, rtol=1e-9, atol=1e-12)
    assert torch.allclose(gy, ry, rtol=1e-9, atol=1e-12)


def test_bad_ranges_are_reported(backend, rng):
    x, y, ranges = _clustered(rng, 50, 40, torch.float64)
    with pytest.raises(ValueError, match="6-tuple"):
        Vi(x).sqdist(Vj(y)).sum(dim=1, ranges=ranges[:3], backend=backend)
    bad = list(ranges)
    bad[2] = bad[2] + 1000
    with pytest.raises(ValueError, match="redranges_j"):
        Vi(x).sqdist(Vj(y)).sum(dim=1, ranges=tuple(bad), backend=backend)
    with pytest.raises(NotImplementedError, match="batch"):
        LazyTensor(x[None, :, None]).sqdist(LazyTensor(y[None, None])).sum(dim=2, ranges=ranges, backend=backend)
