"""One-pass Jacobi steps (ot/marginals.py): the same updates as the two soft-mins they replace."""

from __future__ import annotations

import pytest
import torch

import lazygeom
from lazygeom.backends.cpu import compiler
from lazygeom.ot import SamplesLoss
from lazygeom.ot.solver import marginals
from lazygeom.ot.costs import ground_cost
from lazygeom.ot.multiscale.solver import BlockSparseSoftmin
from lazygeom.ot.solver.softmin import OnlineSoftmin

from ot_helpers import cloud, weights

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _consistent(op, eps, a_log, b_log):
    """Potentials one soft-min away from zero ones (what a loop iteration starts from), perturbed."""
    f = op(eps, "xy", b_log)
    g = op(eps, "yx", a_log)
    return f + 0.3 * eps * torch.randn_like(f), g + 0.3 * eps * torch.randn_like(g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 2])
def test_online_step_equals_the_two_softmins(gen, dtype, p):
    B, N, M, eps = 2, 150, 290, 0.01
    x, y = cloud(gen, B, N, 3, dtype=dtype), cloud(gen, B, M, 3, dtype=dtype, shift=0.2)
    a_log, b_log = weights(gen, B, N, dtype=dtype).log(), weights(gen, B, M, dtype=dtype).log()
    op = OnlineSoftmin(x, y, ground_cost(p))
    f, g = _consistent(op, eps, a_log, b_log)
    ft, gt = op.step(eps, "xy", f, g, a_log, b_log)
    tol = dict(rtol=1e-5, atol=1e-5 * eps) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ft, op(eps, "xy", b_log + g / eps), **tol)
    torch.testing.assert_close(gt, op(eps, "yx", a_log + f / eps), **tol)
    for pair, w in (("xx", a_log), ("yy", b_log)):
        u = op(eps, pair, w)
        u = u + 0.3 * eps * torch.randn_like(u)
        new, none = op.step(eps, pair, u, u, w, w)
        assert none is None
        torch.testing.assert_close(new, op(eps, pair, w + u / eps), **tol)


def test_step_declines_out_of_range_sums_and_other_backends(gen):
    x, y = cloud(gen, 1, 50, 2), cloud(gen, 1, 60, 2)
    a_log, b_log = weights(gen, 1, 50).log(), weights(gen, 1, 60).log()
    op = OnlineSoftmin(x, y, ground_cost(2))
    eps = 0.01
    f, g = _consistent(op, eps, a_log, b_log)
    assert op.step(eps, "xy", f, g, a_log, b_log) is not None
    assert op.step(eps, "xy", f + 1e3, g, a_log, b_log) is None  # exp overflows: the LSE path runs
    assert op.step(eps, "xy", f - 1e3, g, a_log, b_log) is None  # every term underflows
    assert OnlineSoftmin(x, y, ground_cost(2), engine_backend="reference").step(eps, "xy", f, g, a_log, b_log) is None
    custom = ground_cost(cost=lambda x_i, y_j: ((x_i - y_j) ** 2).sum(-1) / 2)
    assert OnlineSoftmin(x, y, custom).step(eps, "xy", f, g, a_log, b_log) is None
    with lazygeom.config(backend="reference"):
        assert op.step(eps, "xy", f, g, a_log, b_log) is None


def _without_steps(monkeypatch):
    for cls in (OnlineSoftmin, BlockSparseSoftmin):
        monkeypatch.setattr(cls, "step", lambda self, *args: None)


@pytest.mark.parametrize("backend,p", [("online", 2), ("online", 1), ("multiscale", 2), ("multiscale", 1)])
def test_losses_and_gradients_equal_those_of_the_lse_loop(gen, monkeypatch, backend, p):
    """The loop with one-pass steps (the final step's envelope gradients included) gives the
    divergence and the gradients in x, y and the weights of the LogSumExp loop (the multiscale
    steps visit the union of both sides' blocks, each row skipping nodes below -truncate: equal
    to well below the solver's own error, measured 3e-7 (p=2) and 2e-6 (p=1) against its
    distance to the online value, 2e-2 and 3e-4 at these settings)."""
    x = cloud(gen, 3000, 3)
    y = torch.randn(2500, 3, generator=gen, dtype=torch.float64) * 0.15 + 0.5
    a, b = weights(gen, 1, 3000)[0], weights(gen, 1, 2500)[0]
    calls = []
    real = marginals._step
    monkeypatch.setattr(marginals, "_step", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))

    def run():
        loss = SamplesLoss("sinkhorn", p=p, blur=0.05, scaling=0.7, backend=backend)
        inputs = [t.clone().requires_grad_() for t in (a, x, b, y)]
        value = loss(*inputs)
        value.backward()
        return value.detach(), [t.grad for t in inputs]

    v1, g1 = run()
    assert "none" in calls and "both" in calls  # the steps ran, the final ones with the moments
    _without_steps(monkeypatch)
    v0, g0 = run()
    tol = 1e-10 if backend == "online" else 1e-5
    assert abs(float(v1 - v0)) <= tol * abs(float(v0))
    for new, old in zip(g1, g0):
        assert float((new - old).norm() / old.norm()) <= tol * 10


@pytest.mark.parametrize("backend", ["online", "multiscale"])
def test_second_order_gradients_equal_those_of_the_lse_loop(gen, monkeypatch, backend):
    """Under create_graph the final step's backward rebuilds the differentiable LogSumExp path:
    the Hessian-vector product is the LSE loop's (multiscale: up to the per-row skips, measured
    4e-7 on the gradient and 3e-6 on the product)."""
    n, m, D = (400, 300, 2) if backend == "online" else (2000, 1500, 3)
    x, y = cloud(gen, n, D), cloud(gen, m, D, shift=0.3)
    direction = torch.randn(n, D, generator=gen, dtype=torch.float64)

    def hvp():
        xg = x.clone().requires_grad_()
        value = SamplesLoss("sinkhorn", p=2, blur=0.1 if backend == "online" else 0.05, scaling=0.7,
                            backend=backend)(xg, y)
        (grad,) = torch.autograd.grad(value, xg, create_graph=True)
        (second,) = torch.autograd.grad((grad * direction).sum(), xg)
        return grad.detach(), second

    g1, h1 = hvp()
    _without_steps(monkeypatch)
    g0, h0 = hvp()
    assert float(h0.norm()) > 0
    if backend == "online":
        torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(h1, h0, rtol=1e-8, atol=1e-10 * float(h0.abs().max()))
    else:
        assert float((g1 - g0).norm() / g0.norm()) < 1e-5
        assert float((h1 - h0).norm() / h0.norm()) < 1e-4
