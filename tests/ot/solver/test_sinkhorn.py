"""The Sinkhorn loop: fixed points, the result object, agreement with independent solvers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lazygeom.ot import SinkhornResult, sinkhorn, sinkhorn_loop
from lazygeom.ot.costs import ground_cost
from lazygeom.ot.solver.loop import CONVERGED_RESIDUAL
from lazygeom.ot.solver.softmin import make_softmin

from ot_helpers import cloud, dense_cost, reference_sinkhorn, weights


def _solve(a, x, b, y, eps, solver="tensorized", rho=None, debias=True, extra=150):
    sm = make_softmin(solver, x[None], y[None], ground_cost(2))
    eps_list = [4.0, 1.0, 0.25] + [eps] * extra
    return sinkhorn_loop(sm, a.log()[None], b.log()[None], eps_list, rho=rho, debias=debias).map(lambda t: t[0])


def _softmin(eps, C, h):
    return -eps * torch.logsumexp(h[None, :] - C / eps, dim=1)


@pytest.mark.parametrize("rho", [None, 0.2])
def test_converged_potentials_solve_the_fixed_point_equations(gen, solver, rho):
    eps = 0.05
    a, x = weights(gen, 9), cloud(gen, 9, 2)
    b, y = weights(gen, 11, total=1.0 if rho is None else 1.7), cloud(gen, 11, 2)
    res = _solve(a, x, b, y, eps, solver, rho=rho)
    lam = 1.0 if rho is None else 1 / (1 + eps / rho)
    C = dense_cost(x, y)
    f, g = res.f.detach(), res.g.detach()
    torch.testing.assert_close(f, lam * _softmin(eps, C, b.log() + g / eps), atol=1e-8, rtol=0)
    torch.testing.assert_close(g, lam * _softmin(eps, C.T, a.log() + f / eps), atol=1e-8, rtol=0)
    f_aa = res.f_aa.detach()
    torch.testing.assert_close(f_aa, lam * _softmin(eps, dense_cost(x, x), a.log() + f_aa / eps), atol=1e-8, rtol=0)
    assert res.converged and res.residual < 1e-6


def test_entropic_ot_matches_an_independent_solver(gen, solver):
    """Dual value ⟨a, f⟩ + ⟨b, g⟩ of our loop = primal value of a plain Sinkhorn solve."""
    eps = 0.05
    a, x, b, y = weights(gen, 12), cloud(gen, 12, 3), weights(gen, 10), cloud(gen, 10, 3)
    res = _solve(a, x, b, y, eps, solver, debias=False, extra=400)
    f_ref, g_ref, primal = reference_sinkhorn(a, x, b, y, eps)
    dual = float((a * res.f).sum() + (b * res.g).sum())
    assert dual == pytest.approx(primal, rel=1e-7)
    # potentials agree up to the constant (f + c, g − c) of balanced OT
    c = float((res.f.detach() - f_ref).mean())
    torch.testing.assert_close(res.f.detach() - c, f_ref, atol=1e-7, rtol=0)
    torch.testing.assert_close(res.g.detach() + c, g_ref, atol=1e-7, rtol=0)


def test_plan_matches_pot(gen):
    ot = pytest.importorskip("ot")
    if not hasattr(ot, "sinkhorn"):  # without POT, `import ot` finds this tests/ot folder instead
        pytest.skip("POT is not installed")
    eps = 0.05
    a, x, b, y = weights(gen, 8), cloud(gen, 8, 2), weights(gen, 9), cloud(gen, 9, 2)
    res = _solve(a, x, b, y, eps, debias=False, extra=400)
    C = dense_cost(x, y)
    pi = a[:, None] * b[None, :] * torch.exp((res.f.detach()[:, None] + res.g.detach()[None, :] - C) / eps)
    # POT regularises with the entropy of π; with fixed marginals the minimiser is the same plan
    pi_pot = ot.sinkhorn(a.numpy(), b.numpy(), C.numpy(), reg=eps, method="sinkhorn_log",
                         numItermax=100_000, stopThr=1e-13)
    torch.testing.assert_close(pi, torch.from_numpy(pi_pot), atol=1e-9, rtol=1e-6)


def test_result_is_an_immutable_value(gen):
    a, x, b, y = weights(gen, 5), cloud(gen, 5, 2), weights(gen, 6), cloud(gen, 6, 2)
    res = sinkhorn(a, x, b, y, blur=0.1, scaling=0.5, diameter=1.6)
    assert isinstance(res, SinkhornResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.f = None
    assert res.n_iter == len(res.eps_history) == 5  # 1.6 -> 0.8 -> 0.4 -> 0.2 -> 0.1 (squared)
    assert res.eps_history[0] == pytest.approx(1.6**2) and res.eps == pytest.approx(0.01)
    assert res.f.shape == (5,) and res.g.shape == (6,) and res.f_aa.shape == (5,) and res.g_bb.shape == (6,)
    assert res.rho is None and res.debiased


def test_converged_flag(gen):
    a, x, b, y = weights(gen, 30), cloud(gen, 30, 2), weights(gen, 30), cloud(gen, 30, 2)
    assert not sinkhorn(a, x, b, y, blur=0.01, scaling=0.5).converged  # one iteration per scale
    # scaling 0.9 alone ends about at the threshold (residual 0.009-0.011 eps, depending on the
    # data); a few iterations at the final eps converge for any data
    res = sinkhorn(a, x, b, y, blur=0.5, scaling=0.9, diameter=20.0, extra_iterations=5)
    assert res.converged and res.residual <= CONVERGED_RESIDUAL


def test_one_value_schedule_runs_one_averaged_update(gen):
    """From zero potentials the initialisation double-counts the constants of f and g; without an
    averaged update, S(α, α + t) would be about 0 instead of |t|²/2 at large blur."""
    x = cloud(gen, 20, 2)
    t = torch.tensor([0.3, -0.1], dtype=torch.float64)
    res = sinkhorn(x, x + t, blur=50.0)
    assert res.eps_history == (2500.0, 2500.0)
    S = float((res.f - res.f_aa).mean() + (res.g - res.g_bb).mean())
    assert S == pytest.approx(0.05, rel=1e-6)


def test_loop_without_extrapolation_has_no_graph(gen):
    x = cloud(gen, 1, 5, 2).requires_grad_()
    y = cloud(gen, 1, 5, 2)
    sm = make_softmin("tensorized", x, y, ground_cost(2))
    a_log = torch.full((1, 5), 0.2, dtype=torch.float64).log()
    res = sinkhorn_loop(sm, a_log, a_log, [1.0, 0.1], extrapolate=False)
    assert not res.f.requires_grad and res.residual != res.residual  # NaN: not measured
    res = sinkhorn_loop(sm, a_log, a_log, [1.0, 0.1])
    assert res.f.requires_grad and not res.g.requires_grad  # g lives on y, which needs no gradient


@pytest.mark.parametrize("bad", [dict(eps_list=[]), dict(eps_list=[0.1, 0.0]), dict(rho=0.0)])
def test_loop_rejects_bad_arguments(gen, bad):
    x = cloud(gen, 1, 3, 2)
    sm = make_softmin("tensorized", x, x, ground_cost(2))
    kwargs = dict(eps_list=[0.1], rho=None) | bad
    with pytest.raises(ValueError):
        sinkhorn_loop(sm, torch.zeros(1, 3), torch.zeros(1, 3), **kwargs)
