"""Transport plans (LazyTensors) and barycentric maps."""

from __future__ import annotations

import pytest
import torch

from lazygeom import LazyTensor, Vj
from lazygeom.ot import barycentric_map, sinkhorn, transport_plan

from ot_helpers import cloud, dense_cost, weights

KW = dict(blur=0.1, scaling=0.9, diameter=2.0)


def test_plan_is_lazy_and_matches_its_formula(gen, solver):
    a, x, b, y = weights(gen, 9), cloud(gen, 9, 2), weights(gen, 12), cloud(gen, 12, 2)
    plan = transport_plan(a, x, b, y, backend=solver, **KW)
    assert isinstance(plan, LazyTensor) and plan.shape == (9, 12, 1)
    res = sinkhorn(a, x, b, y, debias=False, backend=solver, **KW)
    eps = res.eps
    want = a[:, None] * b[None, :] * torch.exp((res.f[:, None] + res.g[None, :] - dense_cost(x, y)) / eps)
    dense = transport_plan(a, x, b, y, backend=solver, dense=True, **KW)
    torch.testing.assert_close(dense, want.detach())
    torch.testing.assert_close(plan.sum(dim=1)[:, 0], want.sum(1).detach())
    torch.testing.assert_close(plan.sum(dim=0)[:, 0], want.sum(0).detach())
    torch.testing.assert_close((plan * Vj(y)).sum(dim=1), (want @ y).detach())


@pytest.mark.parametrize("reach", [None, 0.5])
def test_plan_marginals(gen, solver, reach):
    a, x, b, y = weights(gen, 20), cloud(gen, 20, 2), weights(gen, 25), cloud(gen, 25, 2)
    # one iteration per scale leaves the marginals a few % off: converge at the final ε
    plan = transport_plan(a, x, b, y, reach=reach, backend=solver, blur=0.3, diameter=2.0, extra_iterations=100)
    rows, cols = plan.sum(dim=1)[:, 0], plan.sum(dim=0)[:, 0]
    if reach is None:
        torch.testing.assert_close(rows, a, rtol=1e-7, atol=0)
        torch.testing.assert_close(cols, b, rtol=1e-7, atol=0)
    else:  # the KL penalty lets the marginals deviate; the plan's total mass is shared
        assert float(rows.sum()) == pytest.approx(float(cols.sum()), rel=1e-6)
        assert float(rows.sum()) < 1.0


def test_batched_plan(gen, solver):
    a, x, b, y = weights(gen, 2, 6), cloud(gen, 2, 6, 3), weights(gen, 2, 5), cloud(gen, 2, 5, 3)
    plan = transport_plan(a, x, b, y, backend=solver, **KW)
    assert plan.shape == (2, 6, 5, 1)
    dense = transport_plan(a, x, b, y, backend=solver, dense=True, **KW)
    assert dense.shape == (2, 6, 5)
    torch.testing.assert_close(plan.sum(dim=2)[..., 0], dense.sum(-1))
    torch.testing.assert_close(dense[1], transport_plan(a[1], x[1], b[1], y[1], dense=True, **KW))


@pytest.mark.parametrize("reach", [None, 0.5])
def test_barycentric_map_matches_the_dense_plan(gen, solver, reach):
    a, x, b, y = weights(gen, 10), cloud(gen, 10, 3), weights(gen, 8), cloud(gen, 8, 3)
    pi = transport_plan(a, x, b, y, reach=reach, backend=solver, dense=True, **KW)
    T = barycentric_map(a, x, b, y, reach=reach, backend=solver, **KW)
    assert T.shape == x.shape
    torch.testing.assert_close(T, (pi @ y) / a[:, None])
    Tn = barycentric_map(a, x, b, y, reach=reach, backend=solver, normalize=True, **KW)
    torch.testing.assert_close(Tn, (pi @ y) / pi.sum(1, keepdim=True))


def test_barycentric_map_of_a_translation(gen, solver):
    """At a blur well below the spacing of the points, the OT map between α and α + t is x ↦ x + t."""
    grid = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(5.0), indexing="ij"), -1).reshape(30, 2)
    x = (0.2 * grid + 0.05 * cloud(gen, 30, 2)).double()  # spacing >= 0.1
    t = torch.tensor([0.3, 0.2], dtype=torch.float64)
    T = barycentric_map(x, x + t, blur=0.01, scaling=0.9, backend=solver)
    torch.testing.assert_close(T, x + t, atol=1e-6, rtol=0)


def test_map_of_points_without_mass(gen, solver):
    a = torch.cat([weights(gen, 6), torch.zeros(1, dtype=torch.float64)])
    x, b, y = cloud(gen, 7, 2), weights(gen, 5), cloud(gen, 5, 2)
    T = barycentric_map(a, x, b, y, backend=solver, **KW)
    assert torch.isfinite(T).all()
    Tn = barycentric_map(a, x, b, y, backend=solver, normalize=True, **KW)
    assert torch.isfinite(Tn).all()
