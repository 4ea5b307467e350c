"""SamplesLoss("sinkhorn"): closed forms, convergence to OT, backends, batches, degenerate inputs, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from lazygeom.ot import SamplesLoss, sinkhorn

from ot_helpers import cloud, dense_cost, weights


@pytest.mark.parametrize("blur", [0.01, 0.1, 0.5, 2.0, 10.0])
def test_translation_closed_form(gen, solver, blur):
    """S(α, α + t) = ½|t|² at every blur (p = 2, mass 1), and ∂S/∂x_i = −a_i t."""
    a, x = weights(gen, 25), cloud(gen, 25, 2)
    t = torch.tensor([0.4, -0.3], dtype=torch.float64)
    xs = x.clone().requires_grad_()
    # a diameter above the blur gives the loop a few scales to converge through
    diameter = max(2.0, 20 * blur)
    S = SamplesLoss(blur=blur, diameter=diameter, backend=solver)(a, x, a, x + t)  # scaling 0.5
    assert float(S) == pytest.approx(0.5 * float(t @ t), rel=1e-4)
    # the gradient is first-order in the potentials' error (the value second-order): converge more
    S = SamplesLoss(blur=blur, scaling=0.9, diameter=diameter, backend=solver)(a, xs, a, x + t)
    assert S.item() == pytest.approx(0.5 * float(t @ t), rel=1e-8)
    (g,) = torch.autograd.grad(S, xs)
    torch.testing.assert_close(g / a[:, None], -t.expand(25, 2), atol=1e-5 * float(t.norm()), rtol=0)


def test_translation_closed_form_float32(gen, solver):
    x = cloud(gen, 200, 3, dtype=torch.float32)
    t = torch.tensor([0.2, 0.1, -0.3])
    S = SamplesLoss(blur=0.05, backend=solver)(x, x + t)
    assert float(S) == pytest.approx(0.5 * float(t @ t), rel=1e-3)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reach", [None, 0.3])
def test_divergence_of_a_measure_to_itself_is_zero(gen, solver, p, reach):
    a, x = weights(gen, 30), cloud(gen, 30, 3)
    x_ = x.clone().requires_grad_()
    S = SamplesLoss(p=p, blur=0.05, reach=reach, backend=solver)(a, x_, a, x)
    assert abs(S.item()) < 1e-10
    (g,) = torch.autograd.grad(S, x_)
    assert float(g.abs().max()) < 1e-8


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reach", [None, 0.5])
def test_symmetry(gen, solver, p, reach):
    a, x = weights(gen, 15), cloud(gen, 15, 2)
    b, y = weights(gen, 20, total=1.0 if reach is None else 1.6), cloud(gen, 20, 2, shift=0.3)
    loss = SamplesLoss(p=p, blur=0.1, reach=reach, backend=solver)
    assert float(loss(a, x, b, y)) == pytest.approx(float(loss(b, y, a, x)), rel=1e-10)


@pytest.mark.parametrize("p", [1, 2])
def test_dirac_masses(solver, p):
    """Between two Diracs the only plan is the product: S = OT = C(x, y), at every blur."""
    x = torch.tensor([[0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.7, -0.6]], dtype=torch.float64)
    C = float(dense_cost(x.detach(), y, p))
    for blur in (0.01, 1.0):
        S = SamplesLoss(p=p, blur=blur, backend=solver)(x, y)
        assert S.item() == pytest.approx(C, rel=1e-10)
        (g,) = torch.autograd.grad(S, x)
        d = (x - y).detach()
        torch.testing.assert_close(g, d if p == 2 else d / d.norm())
        raw = SamplesLoss(p=p, blur=blur, debias=False, backend=solver)(x, y)
        assert raw.item() == pytest.approx(C, rel=1e-10)


@pytest.mark.parametrize("debias", [True, False])
def test_converges_to_the_optimal_assignment(gen, debias):
    """As blur → 0, S_ε → OT: within 2% of the exact assignment cost at blur 0.005, N = 300."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    N = 300
    x = cloud(gen, N, 2)
    y = torch.randn(N, 2, generator=gen, dtype=torch.float64) * 0.3 + 0.5
    C = dense_cost(x, y)
    rows, cols = scipy_optimize.linear_sum_assignment(C.numpy())
    exact = float(C[rows, cols].mean())
    # ε-scaling with 0.95: one iteration per scale needs small steps at a blur 10x below the spacing
    S = SamplesLoss(blur=0.005, scaling=0.95, debias=debias, backend="tensorized")(x, y)
    assert float(S) == pytest.approx(exact, rel=0.02)


def test_tensorized_equals_online(gen):
    for p, reach, debias in [(2, None, True), (1, None, False), (2, 0.2, True), (1, 0.5, False)]:
        a, x, b, y = weights(gen, 40), cloud(gen, 40, 3), weights(gen, 33), cloud(gen, 33, 3)
        vals, grads = [], []
        for solver in ("tensorized", "online"):
            leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
            S = SamplesLoss(p=p, blur=0.07, reach=reach, debias=debias, backend=solver)(*leaves)
            vals.append(S)
            grads.append(torch.autograd.grad(S, leaves))
        torch.testing.assert_close(vals[0], vals[1], rtol=1e-10, atol=1e-13)
        for g_t, g_o in zip(*grads):
            torch.testing.assert_close(g_t, g_o, rtol=1e-8, atol=1e-11)


def test_batch_equals_loop_over_items(gen, solver):
    B, N, M = 3, 12, 9
    a, x, b, y = weights(gen, B, N), cloud(gen, B, N, 2), weights(gen, B, M), cloud(gen, B, M, 2)
    loss = SamplesLoss(blur=0.05, reach=0.5, diameter=1.5, backend=solver)  # fixed schedule for all
    batched = loss(a, x, b, y)
    assert batched.shape == (B,)
    looped = torch.stack([loss(a[k], x[k], b[k], y[k]) for k in range(B)])
    torch.testing.assert_close(batched, looped)
    F, G = SamplesLoss(blur=0.05, diameter=1.5, potentials=True, backend=solver)(a, x, b, y)
    assert F.shape == (B, N) and G.shape == (B, M)
    F1, G1 = SamplesLoss(blur=0.05, diameter=1.5, potentials=True, backend=solver)(a[1], x[1], b[1], y[1])
    torch.testing.assert_close(F[1], F1)
    torch.testing.assert_close(G[1], G1)


def test_potentials(gen, solver):
    a, x, b, y = weights(gen, 10), cloud(gen, 10, 2), weights(gen, 14), cloud(gen, 14, 2)
    kw = dict(blur=0.1, diameter=2.0, backend=solver)
    F, G = SamplesLoss(potentials=True, **kw)(a, x, b, y)
    assert F.shape == a.shape and G.shape == b.shape
    res = sinkhorn(a, x, b, y, **kw)
    torch.testing.assert_close(F, res.f - res.f_aa)
    torch.testing.assert_close(G, res.g - res.g_bb)
    f, g = SamplesLoss(potentials=True, debias=False, **kw)(a, x, b, y)
    torch.testing.assert_close(f, res.f)
    # the potentials are the gradient with respect to the weights
    a_ = a.clone().requires_grad_()
    (ga,) = torch.autograd.grad(SamplesLoss(**kw)(a_, x, b, y), a_)
    torch.testing.assert_close(ga, F)
    S = SamplesLoss(**kw)(a, x, b, y)
    torch.testing.assert_close(S, (a * F).sum() + (b * G).sum())


def test_zero_weights_are_points_that_do_not_exist(gen, solver):
    a, x, b, y = weights(gen, 10), cloud(gen, 10, 2), weights(gen, 8), cloud(gen, 8, 2)
    a0 = torch.cat([a, torch.zeros(3, dtype=a.dtype)])
    x0 = torch.cat([x, cloud(gen, 3, 2)])
    loss = SamplesLoss(blur=0.05, diameter=2.0, backend=solver)
    a0_, x0_ = a0.clone().requires_grad_(), x0.clone().requires_grad_()
    S0 = loss(a0_, x0_, b, y)
    torch.testing.assert_close(S0, loss(a, x, b, y))
    ga, gx = torch.autograd.grad(S0, [a0_, x0_])
    assert torch.isfinite(ga).all() and torch.isfinite(gx).all()
    assert float(gx[10:].abs().max()) == 0.0  # points without mass do not move


def test_identical_clouds_and_single_points(solver):
    """Diameter 0 (GeomLoss crashes on it, #51): every point at the same place."""
    for p in (1, 2):
        for reach in (None, 1.0):
            x = torch.zeros(4, 3, requires_grad=True)
            S = SamplesLoss(p=p, reach=reach, backend=solver)(x, torch.zeros(6, 3))
            (g,) = torch.autograd.grad(S, x)
            # 0 up to the float32 rounding of the weights' sums (6 fl(1/6) = 1 + 3e-8)
            assert abs(S.item()) <= 1e-7 and torch.isfinite(g).all() and float(g.abs().max()) == 0.0
    x1 = torch.tensor([[0.0, 0.0]], requires_grad=True)
    S = SamplesLoss(backend=solver)(x1, torch.tensor([[3.0, 4.0]]))
    assert S.item() == pytest.approx(12.5)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reach", [None, 0.2])
def test_small_blur_stays_finite_in_float32(gen, solver, p, reach):
    x = cloud(gen, 60, 3, dtype=torch.float32).requires_grad_()
    y = cloud(gen, 50, 3, dtype=torch.float32)
    S = SamplesLoss(p=p, blur=1e-3, reach=reach, backend=solver)(x, y)
    (g,) = torch.autograd.grad(S, x)
    assert torch.isfinite(S) and S.item() > 0 and torch.isfinite(g).all()


def test_float32_and_float64_agree(gen, solver):
    x, y = cloud(gen, 80, 2), cloud(gen, 70, 2, shift=0.2)
    S64 = SamplesLoss(blur=0.02, backend=solver)(x, y)
    S32 = SamplesLoss(blur=0.02, backend=solver)(x.float(), y.float())
    assert float(S32) == pytest.approx(float(S64), rel=1e-4)


def test_matches_geomloss_values(gen):
    """Same semantics as GeomLoss (whose schedule repeats its first value: compare converged runs).
    Not p = 1: GeomLoss clamps squared distances at 1e-8, so its self-distances are 1e-4, not 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geomloss = pytest.importorskip("geomloss")
    a, x, b, y = weights(gen, 20), cloud(gen, 20, 2), weights(gen, 25), cloud(gen, 25, 2)
    for kw in (dict(p=2, blur=0.2), dict(p=2, blur=0.2, reach=0.5), dict(p=2, blur=0.3, debias=False)):
        ours = SamplesLoss("sinkhorn", scaling=0.95, **kw)(a, x, b, y)
        theirs = geomloss.SamplesLoss("sinkhorn", scaling=0.95, backend="tensorized", **kw)(a, x, b, y)
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5), kw


@pytest.mark.parametrize("args,match", [
    (lambda: (torch.rand(5, 2), torch.rand(5, 3)), "same point dimension"),
    (lambda: (torch.rand(2, 5, 2), torch.rand(3, 5, 2)), "batch size"),
    (lambda: (torch.rand(5, 2), torch.rand(1, 5, 2)), "both be batched"),
    (lambda: (torch.rand(4), torch.rand(5, 2), torch.rand(5), torch.rand(5, 2)), r"\(4,\).*\(5, 2\)"),
    (lambda: (torch.rand(5), torch.rand(5, 2), torch.rand(3, 5), torch.rand(5, 2)), r"\(3, 5\)"),
    (lambda: (torch.rand(5, 2, 2, 2), torch.rand(5, 2)), r"\(5, 2, 2, 2\)"),
    (lambda: (torch.rand(0, 2), torch.rand(5, 2)), "at least one point"),
    (lambda: (-torch.rand(5), torch.rand(5, 2), torch.rand(5), torch.rand(5, 2)), "non-negative"),
    (lambda: (torch.zeros(5), torch.rand(5, 2), torch.rand(5), torch.rand(5, 2)), "positive total mass"),
])
def test_incompatible_inputs_raise_clear_errors(args, match):
    with pytest.raises(ValueError, match=match):
        SamplesLoss()(*args())


def test_type_errors():
    with pytest.raises(TypeError, match="dtype"):
        SamplesLoss()(torch.rand(5, 2), torch.rand(5, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        SamplesLoss()(torch.rand(5, dtype=torch.float64), torch.rand(5, 2), torch.rand(5), torch.rand(5, 2))
    with pytest.raises(TypeError, match="3 arguments"):
        SamplesLoss()(torch.rand(5, 2), torch.rand(5, 2), torch.rand(5, 2))
    with pytest.raises(TypeError, match="floating-point"):
        SamplesLoss()(torch.ones(5, 2, dtype=torch.int64), torch.rand(5, 2))


def test_constructor_errors():
    for kwargs in (dict(loss="hausdorff"), dict(loss="gaussian"), dict(p=2, cost=lambda x, y: ((x - y) ** 2).sum(-1))):
        with pytest.raises(ValueError, match="multiscale"):
            SamplesLoss(backend="multiscale", **kwargs)
    for kwargs in (dict(truncate=0), dict(truncate="5"), dict(cluster_scale=-1.0)):
        with pytest.raises(ValueError):
            SamplesLoss(backend="multiscale", **kwargs)
    for kwargs, exc in [(dict(loss="wasserstein"), ValueError), (dict(backend="keops"), ValueError),
                        (dict(p=3), ValueError), (dict(blur=0), ValueError), (dict(scaling=1.5), ValueError),
                        (dict(reach=-1.0), ValueError), (dict(cost="SqDist(X,Y)"), TypeError)]:
        with pytest.raises(exc):
            SamplesLoss(**kwargs)


def test_arguments_a_loss_does_not_read_are_ignored(gen):
    """As in GeomLoss: a kernel norm ignores p, scaling and reach (even values Sinkhorn refuses),
    Hausdorff ignores scaling and reach; the arguments a loss reads are still checked."""
    x, y = cloud(gen, 20, 2), cloud(gen, 15, 2)
    for name in ("gaussian", "energy"):
        odd = SamplesLoss(name, blur=0.2, p=3, scaling=1.5, reach=-1.0)
        torch.testing.assert_close(odd(x, y), SamplesLoss(name, blur=0.2)(x, y))
    odd = SamplesLoss("hausdorff", blur=0.2, scaling=1.5, reach=-1.0)
    torch.testing.assert_close(odd(x, y), SamplesLoss("hausdorff", blur=0.2)(x, y))
    with pytest.raises(ValueError, match="blur"):
        SamplesLoss("gaussian", blur=0, p=3)
    with pytest.raises(ValueError, match="p"):
        SamplesLoss("hausdorff", p=3)


def test_custom_cost_matches_builtin(gen, solver):
    x, y = cloud(gen, 20, 2), cloud(gen, 15, 2)
    custom = SamplesLoss(cost=lambda x_i, y_j: ((x_i - y_j) ** 2).sum(-1) / 2, blur=0.1, backend=solver)
    torch.testing.assert_close(custom(x, y), SamplesLoss(blur=0.1, backend=solver)(x, y))


def test_verbose_and_repr(gen, capsys):
    """verbose=True prints what ran (the one test of the printing; the others read ``last_run``)."""
    loss = SamplesLoss(blur=0.1, reach=0.5, verbose=True)
    loss(cloud(gen, 5, 2), cloud(gen, 5, 2))
    out = capsys.readouterr().out
    assert "backend 'tensorized'" in out and "engine 'torch'" in out and "iterations" in out
    assert out.strip() == loss.last_run.describe()
    assert "reach=0.5" in repr(loss)


def test_runs_under_no_grad(gen, solver):
    x, y = cloud(gen, 20, 2).requires_grad_(), cloud(gen, 15, 2)
    with_grad = SamplesLoss(reach=0.5, backend=solver)(x, y)
    with torch.no_grad():
        S = SamplesLoss(reach=0.5, backend=solver)(x, y)
    assert not S.requires_grad
    torch.testing.assert_close(S, with_grad.detach())
