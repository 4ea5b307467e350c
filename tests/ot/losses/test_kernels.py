"""Kernel norms (energy, gaussian, laplacian, custom) against dense formulas written out here."""

from __future__ import annotations

import pytest
import torch

from lazygeom.ot import SamplesLoss

from ot_helpers import cloud, weights


def _dense_kernel(name, u, v, s):
    # torch's norm has the subgradient 0 at 0 (a plain sqrt would give NaN on the diagonal)
    d = torch.linalg.vector_norm(u[:, None, :] - v[None, :, :], dim=-1)
    return {"energy": -d, "gaussian": torch.exp(-(d**2) / (2 * s * s)), "laplacian": torch.exp(-d / s)}[name]


def _dense_loss(name, a, x, b, y, s):
    """½⟨a, K_xx a⟩ + ½⟨b, K_yy b⟩ − ⟨a, K_xy b⟩."""
    K = lambda u, v: _dense_kernel(name, u, v, s)  # noqa: E731
    return 0.5 * a @ K(x, x) @ a + 0.5 * b @ K(y, y) @ b - a @ K(x, y) @ b


@pytest.mark.parametrize("name", ["energy", "gaussian", "laplacian"])
def test_kernel_losses_match_dense_formulas(gen, solver, name):
    a, x, b, y = weights(gen, 13), cloud(gen, 13, 3), weights(gen, 17), cloud(gen, 17, 3, shift=0.2)
    leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
    got = SamplesLoss(name, blur=0.3, backend=solver)(*leaves)
    got_grads = torch.autograd.grad(got, leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
    want = _dense_loss(name, *ref_leaves, 0.3)
    torch.testing.assert_close(got, want)
    for g1, g2 in zip(got_grads, torch.autograd.grad(want, ref_leaves)):
        torch.testing.assert_close(g1, g2)
    assert got.item() > 0


@pytest.mark.parametrize("name", ["energy", "gaussian", "laplacian"])
def test_kernel_potentials(gen, solver, name):
    a, x, b, y = weights(gen, 8), cloud(gen, 8, 2), weights(gen, 6), cloud(gen, 6, 2)
    F, G = SamplesLoss(name, blur=0.4, potentials=True, backend=solver)(a, x, b, y)
    K = lambda u, v: _dense_kernel(name, u, v, 0.4)  # noqa: E731
    torch.testing.assert_close(F, K(x, x) @ a - K(x, y) @ b)
    torch.testing.assert_close(G, K(y, y) @ b - K(y, x) @ a)


def test_custom_kernel_and_batches(gen, solver):
    B = 3
    a, x, b, y = weights(gen, B, 9), cloud(gen, B, 9, 2), weights(gen, B, 7), cloud(gen, B, 7, 2)
    cauchy = lambda x_i, y_j: 1 / (1 + ((x_i - y_j) ** 2).sum(-1))  # noqa: E731
    got = SamplesLoss("gaussian", kernel=cauchy, backend=solver)(a, x, b, y)
    assert got.shape == (B,)
    for k in range(B):
        K = lambda u, v: 1 / (1 + ((u[:, None] - v[None]) ** 2).sum(-1))  # noqa: E731
        want = 0.5 * a[k] @ K(x[k], x[k]) @ a[k] + 0.5 * b[k] @ K(y[k], y[k]) @ b[k] - a[k] @ K(x[k], y[k]) @ b[k]
        torch.testing.assert_close(got[k], want)


def test_energy_distance_is_the_large_blur_limit_of_sinkhorn(gen):
    """S_ε → energy distance as ε → ∞ for p = 1 (Feydy et al. 2019)."""
    a, x, b, y = weights(gen, 10), cloud(gen, 10, 2), weights(gen, 12), cloud(gen, 12, 2, shift=0.5)
    energy = float(SamplesLoss("energy")(a, x, b, y))
    S = float(SamplesLoss("sinkhorn", p=1, blur=1e4, diameter=1e5, scaling=0.5)(a, x, b, y))
    assert S == pytest.approx(energy, rel=1e-3)
