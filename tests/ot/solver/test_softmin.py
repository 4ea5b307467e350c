"""Soft-min operators: tensorized = online = the formula, gradient modes, the backend policy."""

from __future__ import annotations

import pytest
import torch

from lazygeom.ot.costs import ground_cost
from lazygeom.ot.solver.softmin import (
    MULTISCALE_MAX_DIM, MULTISCALE_MIN_POINTS, TENSORIZED_MAX_ENTRIES, OnlineSoftmin, TensorizedSoftmin, choose_backend,
)

from ot_helpers import cloud, dense_cost


def _reference(eps, rows, cols, h, p):
    """−ε log Σ_j exp(h_j − C(u_i, v_j)/ε) for one batch item, float64."""
    return -eps * torch.logsumexp(h[None, :] - dense_cost(rows, cols, p) / eps, dim=1)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("pair", ["xy", "yx", "xx", "yy"])
def test_softmins_match_the_formula(gen, p, pair):
    B, N, M, eps = 2, 7, 5, 0.05
    x, y = cloud(gen, B, N, 3), cloud(gen, B, M, 3)
    cols = {"x": x, "y": y}[pair[1]]
    rows = {"x": x, "y": y}[pair[0]]
    h = torch.randn(B, cols.shape[1], generator=gen, dtype=torch.float64)
    want = torch.stack([_reference(eps, rows[k], cols[k], h[k], p) for k in range(B)])
    C = ground_cost(p)
    for op in (TensorizedSoftmin(x, y, C), OnlineSoftmin(x, y, C)):
        got = op(eps, pair, h)
        assert got.shape == (B, rows.shape[1])
        torch.testing.assert_close(got, want)


def test_minus_infinity_log_weights_drop_out(gen):
    x, y = cloud(gen, 1, 4, 2), cloud(gen, 1, 6, 2)
    h = torch.randn(1, 6, generator=gen, dtype=torch.float64)
    h_masked = h.clone()
    h_masked[0, 2:] = -float("inf")
    C = ground_cost(2)
    for op in (TensorizedSoftmin(x, y, C), OnlineSoftmin(x, y, C)):
        want = op.__class__(x, y[:, :2], C)(0.1, "xy", h[:, :2])
        torch.testing.assert_close(op(0.1, "xy", h_masked), want)


@pytest.mark.parametrize("cls", [TensorizedSoftmin, OnlineSoftmin])
def test_gradient_modes(gen, cls):
    x = cloud(gen, 1, 5, 2).requires_grad_()
    y = cloud(gen, 1, 6, 2).requires_grad_()
    h = torch.randn(1, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    op = cls(x, y, ground_cost(2))
    assert not op(0.1, "xy", h.detach()).requires_grad  # "none": no graph at all
    out = op(0.1, "xy", h.detach(), grad="rows")
    gx, gy = torch.autograd.grad(out.sum(), [x, y], allow_unused=True)
    assert gx is not None and gy is None  # envelope step: only the row points
    gx_all, gy_all, gh = torch.autograd.grad(op(0.1, "xy", h, grad="all").sum(), [x, y, h])
    torch.testing.assert_close(gx_all, gx)
    # Σ_i ∂softmin_i/∂h_j = −ε Σ_i softmax_ij
    P = torch.softmax(h.detach()[0][None, :] - dense_cost(x[0].detach(), y[0].detach()) / 0.1, dim=1)
    torch.testing.assert_close(gh[0], -0.1 * P.sum(0))
    assert gy_all.abs().sum() > 0


def test_online_and_tensorized_gradients_agree(gen):
    x = cloud(gen, 1, 6, 3).requires_grad_()
    y = cloud(gen, 1, 8, 3).requires_grad_()
    h = torch.randn(1, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    grads = []
    for cls in (TensorizedSoftmin, OnlineSoftmin):
        out = cls(x, y, ground_cost(1))(0.2, "xy", h, grad="all")
        grads.append(torch.autograd.grad((out * torch.arange(6.0, dtype=out.dtype)).sum(), [x, y, h]))
    for g_t, g_o in zip(*grads):
        torch.testing.assert_close(g_t, g_o)


def test_errors(gen):
    op = TensorizedSoftmin(cloud(gen, 1, 3, 2), cloud(gen, 1, 3, 2), ground_cost(2))
    with pytest.raises(ValueError, match="pair"):
        op(0.1, "xz", torch.zeros(1, 3))
    with pytest.raises(ValueError, match="grad"):
        op(0.1, "xy", torch.zeros(1, 3), grad="yes")


def test_backend_policy():
    n = int(TENSORIZED_MAX_ENTRIES**0.5)
    assert choose_backend("auto", 1, n, n) == "tensorized"
    assert choose_backend("auto", 1, n + 1, n + 1) == "online"
    assert choose_backend("auto", 4, n, n) == "online"  # the batch counts
    assert choose_backend("online", 1, 2, 2) == "online"
    assert choose_backend("tensorized", 1, 10**4, 10**4) == "tensorized"
    with pytest.raises(ValueError, match="built-in costs"):
        choose_backend("multiscale", 1, 10, 10)  # without multiscale=True: not a multiscale problem
    assert choose_backend("multiscale", 1, 10, 10, D=3, multiscale=True) == "multiscale"
    big = MULTISCALE_MIN_POINTS
    assert choose_backend("auto", 1, big, big, D=3, multiscale=True) == "multiscale"
    assert choose_backend("auto", 1, big - 1, big, D=3, multiscale=True) == "online"
    assert choose_backend("auto", 1, big, big, D=MULTISCALE_MAX_DIM + 1, multiscale=True) == "online"
    assert choose_backend("auto", 1, big, big, D=3, multiscale=False) == "online"
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend("keops", 1, 10, 10)
