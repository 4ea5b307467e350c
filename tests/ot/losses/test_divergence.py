"""Loss values and their first-order gradients at the fixed point, against finite differences.

The envelope theorem makes the gradients of the final extrapolation step exact at convergence,
for the points and the weights, balanced and unbalanced. In the unbalanced case the gradient
factor is ρ + ε while the value's is ρ + ε/2: GeomLoss uses ρ + ε/2 for both.
"""

from __future__ import annotations

import pytest
import torch

from ot_helpers import cloud, converged_divergence, weights

H = 1e-5  # central differences in float64: truncation ~H² and round-off ~1e-16/H


def _directional_checks(gen, loss_fn, a, x, b, y, balanced: bool):
    """Compare autograd with central differences along a random direction for each of a, x, b, y."""
    leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
    value = loss_fn(*leaves)
    grads = torch.autograd.grad(value, leaves)
    for k, (name, base, grad) in enumerate(zip("axby", (a, x, b, y), grads)):
        d = torch.randn(base.shape, generator=gen, dtype=base.dtype)
        if balanced and name in "ab":  # balanced OT lives on measures of equal mass
            d = d - d.mean()
        plus = [t.clone() for t in (a, x, b, y)]
        minus = [t.clone() for t in (a, x, b, y)]
        plus[k] += H * d
        minus[k] -= H * d
        fd = (float(loss_fn(*plus)) - float(loss_fn(*minus))) / (2 * H)
        ad = float((grad * d).sum())
        assert ad == pytest.approx(fd, rel=1e-6, abs=1e-9), f"d/d{name}: autograd {ad} vs finite differences {fd}"


@pytest.mark.parametrize("debias", [True, False])
def test_balanced_gradients_are_exact(gen, debias):
    a, x, b, y = weights(gen, 7), cloud(gen, 7, 2), weights(gen, 9), cloud(gen, 9, 2)
    _directional_checks(gen, lambda *m: converged_divergence(*m, debias=debias), a, x, b, y, balanced=True)


@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("reach", [0.5, 0.1])
def test_unbalanced_gradients_are_exact(gen, debias, reach):
    # masses 1.3 and 0.8: the marginal penalties are active
    a, x, b, y = weights(gen, 7, total=1.3), cloud(gen, 7, 2), weights(gen, 9, total=0.8), cloud(gen, 9, 2)
    _directional_checks(gen, lambda *m: converged_divergence(*m, reach=reach, debias=debias), a, x, b, y,
                        balanced=False)


def test_online_gradients_are_exact(gen):
    a, x, b, y = weights(gen, 6, total=1.2), cloud(gen, 6, 3), weights(gen, 5), cloud(gen, 5, 3)
    def loss(*m):
        return converged_divergence(*m, blur=0.5, reach=0.4, solver="online", extra=40)

    _directional_checks(gen, loss, a, x, b, y, balanced=False)


def test_p1_gradients_are_exact(gen):
    a, x, b, y = weights(gen, 6), cloud(gen, 6, 2), weights(gen, 8), cloud(gen, 8, 2)
    _directional_checks(gen, lambda *m: converged_divergence(*m, p=1, blur=0.5), a, x, b, y, balanced=True)


def test_unbalanced_gradient_factor_is_rho_plus_eps(gen):
    """The weight gradient of the debiased unbalanced divergence is (ρ+ε)(e^{-f_aa/ρ} − e^{-f/ρ}),
    not (ρ + ε/2)(...): the ratio to the naive gradient is exactly (ρ + ε)/(ρ + ε/2)."""
    from lazygeom.ot.costs import ground_cost
    from lazygeom.ot.solver.loop import sinkhorn_loop
    from lazygeom.ot.solver.softmin import make_softmin

    a, x, b, y = weights(gen, 6, total=1.5), cloud(gen, 6, 2), weights(gen, 7), cloud(gen, 7, 2)
    blur, reach = 0.4, 0.3
    eps, rho = blur**2, reach**2
    a_ = a.clone().requires_grad_()
    (ga,) = torch.autograd.grad(converged_divergence(a_, x, b, y, blur=blur, reach=reach), a_)
    sm = make_softmin("tensorized", x[None], y[None], ground_cost(2))
    res = sinkhorn_loop(sm, a.log()[None], b.log()[None], [9.0, 1.0] + [eps] * 80, rho=rho)
    naive = (rho + eps / 2) * (torch.exp(-res.f_aa / rho) - torch.exp(-res.f / rho))[0].detach()
    torch.testing.assert_close(ga / naive, torch.full_like(ga, (rho + eps) / (rho + eps / 2)))
