"""The Hausdorff divergence (GeomLoss's crashes, #70): dense formula, limits, properties."""

from __future__ import annotations

import pytest
import torch

from lazygeom.ot import SamplesLoss

from ot_helpers import cloud, dense_cost, weights


def _soft_distance(eps, u, z, m, p):
    """s_μ(u) = −ε log Σ_k m_k exp(−C(u, z_k)/ε)."""
    d = torch.linalg.vector_norm(u[:, None, :] - z[None, :, :], dim=-1)  # subgradient 0 at 0
    C = d**2 / 2 if p == 2 else d
    return -eps * torch.logsumexp(m.log()[None, :] - C / eps, dim=1)


@pytest.mark.parametrize("p", [1, 2])
def test_hausdorff_matches_its_definition(gen, solver, p):
    a, x, b, y = weights(gen, 11), cloud(gen, 11, 2), weights(gen, 14), cloud(gen, 14, 2, shift=0.3)
    leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
    blur = 0.2
    H = SamplesLoss("hausdorff", p=p, blur=blur, backend=solver)(*leaves)
    eps = blur**p
    ref = [t.clone().requires_grad_() for t in (a, x, b, y)]
    ra, rx, rb, ry = ref
    want = 0.5 * ((ra * (_soft_distance(eps, rx, ry, rb, p) - _soft_distance(eps, rx, rx, ra, p))).sum()
                  + (rb * (_soft_distance(eps, ry, rx, ra, p) - _soft_distance(eps, ry, ry, rb, p))).sum())
    torch.testing.assert_close(H, want)
    assert H.item() > 0
    for g1, g2 in zip(torch.autograd.grad(H, leaves), torch.autograd.grad(want, ref)):
        torch.testing.assert_close(g1, g2)


def test_small_blur_limit_is_the_chamfer_loss(gen, solver):
    a, x, b, y = weights(gen, 20), cloud(gen, 20, 2), weights(gen, 15), cloud(gen, 15, 2, shift=0.5)
    C = dense_cost(x, y)
    chamfer = 0.5 * (float(a @ C.min(1).values) + float(b @ C.min(0).values))
    H = float(SamplesLoss("hausdorff", blur=1e-4, backend=solver)(a, x, b, y))
    assert H == pytest.approx(chamfer, rel=1e-4)


def test_hausdorff_properties(gen, solver):
    a, x, b, y = weights(gen, 9), cloud(gen, 9, 3), weights(gen, 7), cloud(gen, 7, 3)
    loss = SamplesLoss("hausdorff", blur=0.1, backend=solver)
    assert abs(float(loss(a, x, a, x))) < 1e-12
    assert float(loss(a, x, b, y)) == pytest.approx(float(loss(b, y, a, x)), rel=1e-12)
    F, G = SamplesLoss("hausdorff", blur=0.1, potentials=True, backend=solver)(a, x, b, y)
    assert F.shape == a.shape and G.shape == b.shape
    torch.testing.assert_close(0.5 * ((a * F).sum() + (b * G).sum()), loss(a, x, b, y))


def test_zero_weights_give_finite_gradients(gen, solver):
    a = torch.cat([weights(gen, 5), torch.zeros(2, dtype=torch.float64)]).requires_grad_()
    x, b, y = cloud(gen, 7, 2), weights(gen, 6), cloud(gen, 6, 2)
    H = SamplesLoss("hausdorff", blur=0.1, backend=solver)(a, x, b, y)
    (g,) = torch.autograd.grad(H, a)
    assert torch.isfinite(H) and torch.isfinite(g).all()
