"""Multiscale Sinkhorn: agreement with the online solver, closed forms, batches, degenerate clusters."""

from __future__ import annotations

import pytest
import torch

from lazygeom.cluster import dense_mask, from_matrix, from_pairs, grid_cluster
from lazygeom.ot import SamplesLoss, sinkhorn
from lazygeom.ot.costs import ground_cost
from lazygeom.ot.losses.divergence import sinkhorn_cost
from lazygeom.ot.multiscale.hierarchy import build_trees
from lazygeom.ot.solver.engine import engine_for
from lazygeom.ot.solver.softmin import MULTISCALE_MAX_DIM, MULTISCALE_MIN_POINTS
from lazygeom.ot.multiscale.truncation import NodeMaps, candidates, select_pairs


def blob_clouds(gen, n, dtype=torch.float32, B=None):
    """x uniform in the unit cube, y a Gaussian blob (std 0.15) at its centre: the benchmark's pair."""
    shape = (n, 3) if B is None else (B, n, 3)
    x = torch.rand(*shape, generator=gen, dtype=dtype)
    y = torch.randn(*shape, generator=gen, dtype=dtype) * 0.15 + 0.5
    return x, y


def loss_and_grad(x, y, **kw):
    """The debiased divergence and its gradient in x (functional solver, uniform weights)."""
    xs = x.clone().requires_grad_()
    res = sinkhorn(xs, y, **kw)
    a = torch.full(x.shape[:-1], 1.0 / x.shape[-2], dtype=x.dtype)
    b = torch.full(y.shape[:-1], 1.0 / y.shape[-2], dtype=y.dtype)
    if x.ndim == 2:
        res, a, b = res.map(lambda t: t[None]), a[None], b[None]
    S = sinkhorn_cost(a, b, res)
    (g,) = torch.autograd.grad(S.sum(), xs)
    return S.detach(), g, res


def rel(u, v):
    return float((u - v).norm() / v.norm())


# --- the solver against the online one -----------------------------------------------------------

#: converged enough that the two solvers' different paths (coarse levels vs points) no longer show
CONVERGED = dict(blur=0.1, scaling=0.7, extra_iterations=40)


def test_agrees_with_online_on_1e4_points(gen):
    """truncate=5 on 10^4 points: loss and gradient within 1e-3 (measured: 1e-6 and 1e-4)."""
    x, y = blob_clouds(gen, 10_000, torch.float64)
    S1, g1, r1 = loss_and_grad(x, y, backend="online", **CONVERGED)
    S0, g0, r0 = loss_and_grad(x, y, backend="multiscale", truncate=5, **CONVERGED)
    assert r0.residual < 1e-2 and r1.residual < 1e-2
    assert float(abs(S0 - S1) / S1) < 1e-4
    assert rel(g0, g1) < 1e-3


@pytest.mark.parametrize("p, reach", [(2, 0.3), (1, None)])
def test_agrees_with_online_unbalanced_and_p1(gen, p, reach):
    x, y = blob_clouds(gen, 3000, torch.float64)
    kw = dict(p=p, reach=reach, blur=0.1 if p == 2 else 0.03, scaling=0.7, extra_iterations=60, cluster_scale=0.15)
    S1, g1, _ = loss_and_grad(x, y, backend="online", **kw)
    S0, g0, _ = loss_and_grad(x, y, backend="multiscale", **kw)
    assert float(abs(S0 - S1) / S1) < 1e-4
    assert rel(g0, g1) < 1e-3


def test_default_schedule_within_its_own_error(gen):
    """At scaling 0.5 (one step per scale) both solvers are off the converged value by a few
    percent (their paths differ); multiscale is no further from it than online."""
    x, y = blob_clouds(gen, 5000)
    ref, _, _ = loss_and_grad(x, y, backend="online", blur=0.05, scaling=0.9, extra_iterations=10)
    S1, _, _ = loss_and_grad(x, y, backend="online", blur=0.05)
    S0, _, _ = loss_and_grad(x, y, backend="multiscale", blur=0.05)
    assert float(abs(S0 - ref) / ref) < max(2 * float(abs(S1 - ref) / ref), 0.02)


def test_potentials_in_the_callers_order(gen):
    """Potentials come back unsorted: the same as the online ones, up to the constant (gauge) shift."""
    x, y = blob_clouds(gen, 2000, torch.float64)
    kw = dict(cluster_scale=0.15, **CONVERGED)
    on, ms = sinkhorn(x, y, backend="online", **kw), sinkhorn(x, y, backend="multiscale", **kw)
    c = float((ms.f - on.f).mean())
    eps = 0.1**2  # a misplaced potential would be off by about the squared diameter, 100 eps
    torch.testing.assert_close(ms.f - c, on.f, atol=0.01 * eps, rtol=0)
    torch.testing.assert_close(ms.g + c, on.g, atol=0.01 * eps, rtol=0)
    torch.testing.assert_close(ms.f_aa, on.f_aa, atol=0.01 * eps, rtol=0)


def test_raw_ot_and_potentials_output(gen):
    """debias=False (entropic OT, no self-interactions) and potentials=True through SamplesLoss."""
    x, y = blob_clouds(gen, 2000, torch.float64)
    kw = dict(blur=0.1, scaling=0.7, debias=False)
    on = SamplesLoss(backend="online", **kw)(x, y)
    ms = SamplesLoss(backend="multiscale", cluster_scale=0.15, **kw)(x, y)
    assert float(ms) == pytest.approx(float(on), rel=1e-2)
    F, G = SamplesLoss(backend="multiscale", cluster_scale=0.15, potentials=True, blur=0.1)(x, y)
    F1, G1 = SamplesLoss(backend="online", potentials=True, blur=0.1)(x, y)
    assert F.shape == (2000,) and G.shape == (2000,)
    c = float((F - F1).mean())
    assert float((F - c - F1).abs().max()) < 0.05 and float((G + c - G1).abs().max()) < 0.05


def test_translation_closed_form(gen):
    """S(α, α + t) = ½|t|² and ∂S/∂x_i = −a_i t (p = 2, mass 1)."""
    x = torch.rand(4000, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    S, g, _ = loss_and_grad(x, x + t, backend="multiscale", blur=0.05, scaling=0.8, extra_iterations=10,
                            cluster_scale=0.05)
    assert float(S) == pytest.approx(0.5 * float(t @ t), rel=1e-4)
    torch.testing.assert_close(g * 4000, -t.expand(4000, 3), atol=2e-3 * float(t.norm()), rtol=0)


def test_batch_equals_loop(gen):
    x, y = blob_clouds(gen, 1000, torch.float64, B=3)
    y[1] = y[1] * 0.5 + 0.2  # make the items differ
    kw = dict(backend="multiscale", cluster_scale=0.15, diameter=2.0, **CONVERGED)
    S, g, _ = loss_and_grad(x, y, **kw)
    for k in range(3):
        Sk, gk, _ = loss_and_grad(x[k], y[k], **kw)
        assert float(S[k]) == pytest.approx(float(Sk[0]), rel=1e-5)
        assert rel(g[k], gk) < 1e-4


@pytest.mark.parametrize("scale", [1e-4, 10.0])
def test_degenerate_clusters(gen, scale):
    """One point per cell (tiny cells) and all points in one cell (huge ones) still agree."""
    x, y = blob_clouds(gen, 600, torch.float64)
    kw = dict(blur=0.1, scaling=0.7, extra_iterations=60)
    S1, g1, _ = loss_and_grad(x, y, backend="online", **kw)
    S0, g0, _ = loss_and_grad(x, y, backend="multiscale", cluster_scale=scale, **kw)
    assert float(abs(S0 - S1) / S1) < 1e-4
    assert rel(g0, g1) < 1e-3


def test_identical_points_and_zero_weights(gen):
    """Many copies of one point, and points of weight zero, do not break the clusters."""
    x = torch.rand(600, 2, generator=gen, dtype=torch.float64)
    x[:300] = 0.25
    y = torch.rand(500, 2, generator=gen, dtype=torch.float64)
    a = torch.rand(600, generator=gen, dtype=torch.float64)
    a[300:400] = 0
    a, b = a / a.sum(), torch.full((500,), 1 / 500, dtype=torch.float64)
    kw = dict(blur=0.1, scaling=0.7, extra_iterations=200)  # identical points converge slowly
    on = SamplesLoss(backend="online", blur=0.1, scaling=0.7)(a, x, b, y)
    ms = SamplesLoss(backend="multiscale", blur=0.1, scaling=0.7, cluster_scale=0.03)(a, x, b, y)
    assert torch.isfinite(ms)
    S1 = sinkhorn_cost(a[None], b[None], sinkhorn(a, x, b, y, backend="online", **kw).map(lambda t: t[None]))
    S0 = sinkhorn_cost(a[None], b[None], sinkhorn(a, x, b, y, backend="multiscale", cluster_scale=0.03, **kw)
                       .map(lambda t: t[None]))
    assert float(S0) == pytest.approx(float(S1), rel=1e-4)
    assert float(ms) == pytest.approx(float(on), rel=0.05)


def test_user_labels(gen):
    x, y = blob_clouds(gen, 2000, torch.float64)
    labels = (grid_cluster(x, 0.1), grid_cluster(y, 0.1))
    S1, g1, _ = loss_and_grad(x, y, backend="online", **CONVERGED)
    S0, g0, _ = loss_and_grad(x, y, backend="multiscale", labels=labels, **CONVERGED)
    assert float(abs(S0 - S1) / S1) < 1e-4
    assert rel(g0, g1) < 1e-3
    with pytest.raises(ValueError, match="shape"):
        sinkhorn(x, y, backend="multiscale", labels=(labels[0][:10], labels[1]))
    with pytest.raises(ValueError, match="multiscale"):
        sinkhorn(x, y, backend="online", labels=labels)


def test_verbose_report(gen, capsys):
    """The multiscale solver's verbose printing: its levels, truncations and kept fractions."""
    x, y = blob_clouds(gen, 3000)
    loss = SamplesLoss(backend="multiscale", blur=0.05, cluster_scale=0.05, verbose=True)
    loss(x, y)
    out = capsys.readouterr().out
    assert "levels (coarse to fine)" in out and "point pairs within each update's bound" in out and "xy " in out
    assert "truncation at level" in out and "eps" in out
    assert loss.last_run.solver == "multiscale"


def test_auto_picks_multiscale_for_large_low_dimensional_clouds(gen):
    """From MULTISCALE_MIN_POINTS points per cloud in D <= MULTISCALE_MAX_DIM; online above."""
    n = MULTISCALE_MIN_POINTS
    x, y = blob_clouds(gen, n)
    loss = SamplesLoss()
    loss(x, y)
    assert loss.last_run.solver == "multiscale" and loss.last_run.engine == engine_for(None, x, y)
    assert MULTISCALE_MAX_DIM == 3
    loss(x[:, None, 0].expand(n, 4).contiguous(), y[:, None, 0].expand(n, 4).contiguous())
    assert loss.last_run.solver == "online"
    assert sinkhorn(x[:100], y[:100], backend="multiscale").solver == "multiscale"  # requested: recorded


# --- the pieces -----------------------------------------------------------------------------------


def test_trees_sort_every_level_by_parent(gen):
    x, y = blob_clouds(gen, 2000, torch.float64, B=2)
    a = torch.full((2, 2000), 1 / 2000, dtype=torch.float64)
    tx, _ = build_trees(x, a, y, a, 0.03)
    assert len(tx.levels) >= 3
    lev_fine = tx.levels[-1]
    # the fine level holds the points, sorted: order is a permutation of the flattened input
    torch.testing.assert_close(lev_fine.points, x.reshape(-1, 3)[tx.order])
    assert sorted(tx.order.tolist()) == list(range(4000))
    for k in range(len(tx.levels) - 1):
        parent, child = tx.levels[k], tx.levels[k + 1]
        ch = parent.children
        assert int(ch[0, 0]) == 0 and int(ch[-1, 1]) == child.size
        assert bool((ch[1:, 0] == ch[:-1, 1]).all())  # contiguous, in order
        idx = torch.repeat_interleave(torch.arange(parent.size), ch[:, 1] - ch[:, 0])
        # masses add up, centroids are the children's barycentres, radii bound the children
        mass = torch.zeros(parent.size, dtype=torch.float64).index_add_(0, idx, child.weights)
        torch.testing.assert_close(mass, parent.weights)
        bary = torch.zeros(parent.size, 3, dtype=torch.float64).index_add_(
            0, idx, child.points.detach() * child.weights[:, None])
        torch.testing.assert_close(bary / mass[:, None], parent.points)
        offset = child.points.detach() - parent.points[idx]
        assert bool((offset.norm(dim=1) <= parent.radius[idx] + 1e-12).all())
        assert bool((offset.abs() <= parent.extent[idx] + 1e-12).all())
    # the two batch items never share a cluster
    r = tx.root_children
    assert r.shape == (2, 2) and int(r[0, 1]) == int(r[1, 0])


def test_candidates_enumerate_the_children_pairs(gen):
    rows = torch.tensor([[0, 2], [2, 5], [5, 5]])
    cols = torch.tensor([[0, 3], [3, 4]])
    pairs = (torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 1, 0]))
    want = {(i, j) for I, J in zip(*pairs) for i in range(*rows[I].tolist()) for j in range(*cols[J].tolist())}
    for chunk in (1, 3, 1000):
        got = [(int(i), int(j)) for ci, cj in candidates(pairs, rows, cols, chunk) for i, j in zip(ci, cj)]
        assert len(got) == len(want) and set(got) == want


def test_from_pairs_merges_touching_ranges(gen):
    ri = torch.tensor([[0, 3], [3, 7], [7, 9]])
    rj = torch.tensor([[0, 2], [2, 5], [5, 6], [6, 10]])
    keep = torch.rand(3, 4, generator=gen) < 0.6
    rows, cols = keep.nonzero(as_tuple=True)
    plain = from_pairs(ri, rj, rows, cols)
    for a, b in zip(plain, from_matrix(ri, rj, keep)):
        assert torch.equal(a, b)
    merged = from_pairs(ri, rj, rows, cols, merge=True)
    assert torch.equal(dense_mask(merged, 9, 10), dense_mask(plain, 9, 10))
    assert merged[2].shape[0] <= plain[2].shape[0]
    with pytest.raises(ValueError, match="cols"):
        from_pairs(ri, rj, rows, cols + 10)


@pytest.mark.parametrize("p", [1, 2])
def test_truncation_drops_only_negligible_pairs(gen, p):
    """The bound is rigorous: every child pair of a dropped node pair has e < −τε, where e uses the
    next update's potentials f̂, ĝ (soft-mins over the nodes) at the children themselves."""
    eps, lam, tau = 0.01, 1.0, 5.0
    lab_x, lab_y = [torch.arange(n) // 8 for n in (400, 320)]
    xc = torch.rand(50, 2, generator=gen, dtype=torch.float64)
    yc = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 0.5 + 0.3
    x = xc[lab_x] + 0.03 * torch.randn(400, 2, generator=gen, dtype=torch.float64)  # children
    y = yc[lab_y] + 0.03 * torch.randn(320, 2, generator=gen, dtype=torch.float64)
    X = torch.zeros(50, 2, dtype=torch.float64).index_add_(0, lab_x, x) / 8  # nodes: the centroids
    Y = torch.zeros(40, 2, dtype=torch.float64).index_add_(0, lab_y, y) / 8
    rX = torch.zeros(50, dtype=torch.float64).scatter_reduce_(0, lab_x, (x - X[lab_x]).norm(dim=1), "amax")
    rY = torch.zeros(40, dtype=torch.float64).scatter_reduce_(0, lab_y, (y - Y[lab_y]).norm(dim=1), "amax")
    hX = torch.zeros(50, 2, dtype=torch.float64).scatter_reduce_(
        0, lab_x[:, None].expand(400, 2), (x - X[lab_x]).abs(), "amax")
    hY = torch.zeros(40, 2, dtype=torch.float64).scatter_reduce_(
        0, lab_y[:, None].expand(320, 2), (y - Y[lab_y]).abs(), "amax")
    u = torch.randn(50, generator=gen, dtype=torch.float64) * 0.02  # arbitrary node potentials
    v = torch.randn(40, generator=gen, dtype=torch.float64) * 0.02
    cost = (lambda s, t: ((s - t) ** 2).sum(-1) / 2) if p == 2 else (lambda s, t: (s - t).norm(dim=-1))

    def fhat(pts, nodes, pot, n_other):  # λ softmin over the nodes of the other side (weights 1/n)
        F = -torch.log(torch.tensor(float(n_other))) + (pot[None, :] - cost(pts[:, None], nodes[None])) / eps
        w = F.softmax(1)
        return -lam * eps * F.logsumexp(1), w @ nodes, F.argmax(1)

    fX, TX, bX = fhat(X, Y, v, 40)
    gY, TY, bY = fhat(Y, X, u, 50)
    P, Q = NodeMaps(X, rX, hX, fX, TX, bX), NodeMaps(Y, rY, hY, gY, TY, bY)
    root = (torch.tensor([0]), torch.tensor([0]))  # one parent pair whose children are all the nodes
    for backend in ("reference", "cpu"):
        rows, cols, n = select_pairs(P, Q, root, torch.tensor([[0, 50]]), torch.tensor([[0, 40]]), eps, lam, tau,
                                     p, ground_cost(p), backend)
        if backend == "reference":
            want = (rows, cols)
    assert torch.equal(rows, want[0]) and torch.equal(cols, want[1])
    assert n == 2000 and 0 < rows.numel() < 2000
    kept = torch.zeros(50, 40, dtype=torch.bool)
    kept[rows, cols] = True
    assert bool(kept[torch.arange(50), bX].all()) and bool(kept[bY, torch.arange(40)].all())
    fx, gy = fhat(x, Y, v, 40)[0], fhat(y, X, u, 50)[0]
    e = fx[:, None] + gy[None, :] - cost(x[:, None], y[None])
    dropped = ~kept[lab_x][:, lab_y]
    assert dropped.any()
    assert float(e[dropped].max()) < -tau * eps


def test_each_update_visits_the_pairs_its_own_bound_keeps(gen, monkeypatch):
    """After the final re-truncation the f-update ("xy", rows x) and the g-update ("yx", rows y)
    reduce over their own pair sets (the row side's and the column side's bounds): every point pair
    outside the f-update's ranges has f̂(x_i) + g_j − C < −τε (f̂ the next f-update, over all
    points), and every pair outside the g-update's ranges has f_i + ĝ(y_j) − C < −τε."""
    from lazygeom.ot.multiscale import solver as multiscale

    seen = []
    retruncate = multiscale.Multiscale._retruncate

    def spy(self, pots, eps, lam):
        retruncate(self, pots, eps, lam)
        seen.append((self, [t.clone() for t in pots[:2]], eps, self.softmin().ranges))

    monkeypatch.setattr(multiscale.Multiscale, "_retruncate", spy)
    tau = 5.0
    x, y = blob_clouds(gen, 3000, torch.float64)
    sinkhorn(x, y, backend="multiscale", truncate=tau, blur=0.05, debias=False)
    ms, (f, g), eps, ranges = seen[-1]
    X, Y = ms.tx.levels[-1], ms.ty.levels[-1]
    assert ms.level == len(ms.scales) - 1  # the points
    N, M = X.size, Y.size
    visit_f = dense_mask(ranges["xy"], N, M)
    visit_g = dense_mask(ranges["yx"], M, N).T
    assert not torch.equal(visit_f, visit_g)  # two pair sets
    C = ((X.points[:, None] - Y.points[None]) ** 2).sum(-1) / 2
    fhat = -eps * (Y.weights.log()[None] + (g[0][None] - C) / eps).logsumexp(1)
    ghat = -eps * (X.weights.log()[:, None] + (f[0][:, None] - C) / eps).logsumexp(0)
    for visited, e in ((visit_f, fhat[:, None] + g[0][None] - C), (visit_g, f[0][:, None] + ghat[None] - C)):
        assert (~visited).any()
        assert float(e[~visited].max()) < -tau * eps
