"""Ground costs: built-in and custom, dense and LazyTensor versions agree; safe gradients."""

from __future__ import annotations

import pytest
import torch

from lazygeom.ot.costs import ground_cost

from ot_helpers import cloud, dense_cost


def _lazy_matrix(C, x, y):
    """Materialise a LazyTensor cost through reductions: row sums and a one-hot probe per column."""
    F = C.formula(x, y)
    return F.sum(dim=-2)[..., 0]


@pytest.mark.parametrize("p", [1, 2])
def test_builtin_costs_match_definitions(gen, p):
    x, y = cloud(gen, 2, 7, 3), cloud(gen, 2, 5, 3)
    C = ground_cost(p)
    want = torch.stack([dense_cost(x[k], y[k], p) for k in range(2)])
    torch.testing.assert_close(C.matrix(x, y), want)
    torch.testing.assert_close(_lazy_matrix(C, x, y), want.sum(-1))


def test_custom_cost_runs_on_both_backends(gen):
    def cost(x_i, y_j):  # an L1 ("Manhattan") cost written with shared operations
        return (x_i - y_j).abs().sum(-1)

    x, y = cloud(gen, 1, 6, 2), cloud(gen, 1, 4, 2)
    C = ground_cost(cost=cost)
    want = (x[0, :, None, :] - y[0, None, :, :]).abs().sum(-1)
    torch.testing.assert_close(C.matrix(x, y)[0], want)
    torch.testing.assert_close(_lazy_matrix(C, x, y)[0], want.sum(-1))


def test_cost_errors():
    with pytest.raises(TypeError, match="formula strings"):
        ground_cost(cost="SqDist(X,Y)")
    with pytest.raises(TypeError, match="callable"):
        ground_cost(cost=3)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        ground_cost(p=3)
    bad = ground_cost(cost=lambda x_i, y_j: x_i - y_j)  # a vector, not a cost
    x = torch.rand(1, 3, 2)
    with pytest.raises(ValueError, match="scalar LazyTensor"):
        bad.formula(x, x)
    with pytest.raises(ValueError, match="expected \\(1, 3, 3\\)"):
        bad.matrix(x, x)


@pytest.mark.parametrize("p", [1, 2])
def test_gradient_at_coincident_points_is_finite(p):
    """C(x_i, x_i) appears in every debiased divergence: |x - y| must not give NaN gradients."""
    x = torch.tensor([[[0.3, 0.4], [0.3, 0.4], [1.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    C = ground_cost(p)
    (g_dense,) = torch.autograd.grad(C.matrix(x, x.detach()).sum(), x)
    (g_lazy,) = torch.autograd.grad(C.formula(x, x.detach()).sum(dim=-2).sum(), x)
    assert torch.isfinite(g_dense).all() and torch.isfinite(g_lazy).all()
    torch.testing.assert_close(g_dense, g_lazy)
