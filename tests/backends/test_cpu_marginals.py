"""The one-pass plan marginals (backends/cpu/marginals.cpp) against dense float64 sums."""

from __future__ import annotations

import math

import pytest
import torch

from lazygeom.backends.cpu import compiler
from lazygeom.backends.cpu.marginals import MAX_DIM, PairBlocks, plan_marginals

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _cuts(n: int, g: torch.Generator, most: int) -> torch.Tensor:
    """A random partition of range(n) into [start, end) pieces of 1 to ``most`` elements."""
    bounds, at = [0], 0
    while at < n:
        at = min(n, at + int(torch.randint(1, most + 1, (1,), generator=g)))
        bounds.append(at)
    b = torch.tensor(bounds)
    return torch.stack((b[:-1], b[1:]), dim=1)


def _blocks(rows, spans, keep, y) -> PairBlocks:
    """Blocks listing, for row cluster c, the column nodes J with keep[c, J]."""
    c, J = keep.nonzero(as_tuple=True)
    lo = torch.stack([y[s:e].min(0).values for s, e in spans.tolist()])
    hi = torch.stack([y[s:e].max(0).values for s, e in spans.tolist()])
    return PairBlocks(rows, torch.bincount(c, minlength=rows.shape[0]).cumsum(0), J, spans, lo, hi)


def _pair_mask(rows, spans, keep, n, m) -> torch.Tensor:
    mask = torch.zeros(n, m, dtype=torch.bool)
    for c, J in keep.nonzero().tolist():
        mask[rows[c, 0]:rows[c, 1], spans[J, 0]:spans[J, 1]] = True
    return mask


def _exponents(x, y, u, v, p, eps):
    d = (x.double()[:, None] - y.double()[None]).pow(2).sum(-1)
    C = d.sqrt() if p == 1 else d / 2
    return (u.double()[:, None] + v.double()[None] - C) / eps


def _cost_grad(x, y, p):
    """(n, m, D) ∇ₓC(x_i, y_j) in float64, 0 where x_i = y_j for p = 1."""
    diff = x.double()[:, None] - y.double()[None]
    if p == 2:
        return diff
    d = diff.norm(dim=-1, keepdim=True)
    return torch.where(d > 0, diff / d.clamp_min(1e-300), torch.zeros_like(diff))


def _problem(g, n, m, D, dtype, eps):
    x = torch.rand(n, D, generator=g).to(dtype)
    y = torch.rand(m, D, generator=g).to(dtype)
    u = (0.02 * torch.randn(n, generator=g)).to(dtype)
    v = (0.02 * torch.randn(m, generator=g)).to(dtype)
    A = torch.rand(n, generator=g).to(dtype) + 0.1
    B = torch.rand(m, generator=g).to(dtype) + 0.1
    return x, y, u, v, A, B


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("D", range(1, MAX_DIM + 1))
def test_row_and_column_sums_over_listed_blocks(dtype, p, D):
    g = torch.Generator().manual_seed(10 * D + p)
    n, m, eps = 230, 700, 0.1
    x, y, u, v, A, B = _problem(g, n, m, D, dtype, eps)
    rows = _cuts(n, g, 90)  # clusters over several row blocks of 64
    spans = _cuts(m, g, 300)  # nodes longer than one pass (256 float columns), tails of every length
    keep = torch.rand(rows.shape[0], spans.shape[0], generator=g) < 0.6
    keep[0] = False  # a cluster without pairs: its row sums are 0
    blocks = _blocks(rows, spans, keep, y)
    mask = _pair_mask(rows, spans, keep, n, m)
    E = _exponents(x, y, u, v, p, eps).exp() * mask
    want_R, want_S = E @ B.double(), A.double() @ E
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for mode in (0, 1):
        R, S = plan_marginals(blocks, x, u / eps, A, y, v / eps, B, p, eps, -math.inf, mode)
        assert torch.allclose(R, want_R, rtol=tol, atol=0), float(((R - want_R).abs() / want_R.clamp_min(1e-300)).max())
        assert bool((R[: rows[0, 1]] == 0).all())
        if mode == 0:
            assert S is None
        else:
            assert torch.allclose(S, want_S, rtol=tol, atol=1e-300)
    # the cost gradient's moments, each direction's own: ∇ₓC for the rows, ∇ᵧC = -∇ₓC for the columns
    i, j = mask.nonzero()[mask.sum() // 2].tolist()
    y[j] = x[i]  # a coincident listed pair: ∇|x - y| is 0 there, not NaN
    E = _exponents(x, y, u, v, p, eps).exp() * mask
    G = _cost_grad(x, y, p)
    want_R = torch.cat(((E @ B.double())[:, None], torch.einsum("ij,j,ijd->id", E, B.double(), G)), dim=1)
    want_S = torch.cat(((A.double() @ E)[:, None], -torch.einsum("ij,i,ijd->jd", E, A.double(), G)), dim=1)
    for mode, grad in ((0, "rows"), (1, "rows"), (1, "both")):
        R, S = plan_marginals(blocks, x, u / eps, A, y, v / eps, B, p, eps, -math.inf, mode, grad=grad)
        assert R.shape == (n, 1 + D)
        torch.testing.assert_close(R, want_R, rtol=tol, atol=tol * float(want_R.abs().max()))
        if mode == 1:
            want = want_S if grad == "both" else want_S[:, 0]
            torch.testing.assert_close(S, want, rtol=tol, atol=tol * float(want.abs().max()))


@pytest.mark.parametrize("p", [1, 2])
def test_symmetric_mode_sums_the_closure_once(p):
    """Mode 2: the blocks I <= J of a symmetric set; R + S is the row sum over the whole set."""
    g = torch.Generator().manual_seed(p)
    n, D, eps = 400, 3, 0.05
    x, _, u, _, A, _ = _problem(g, n, n, D, torch.float64, eps)
    nodes = _cuts(n, g, 70)
    k = nodes.shape[0]
    sym = torch.rand(k, k, generator=g) < 0.5
    sym = sym | sym.T
    sym.fill_diagonal_(True)
    upper = sym & (torch.arange(k)[:, None] <= torch.arange(k)[None])
    R, S = plan_marginals(_blocks(nodes, nodes, upper, x), x, u / eps, A, x, u / eps, A, p, eps, -math.inf, 2)
    E = _exponents(x, x, u, u, p, eps).exp() * _pair_mask(nodes, nodes, sym, n, n)
    want = E @ A.double()
    assert torch.allclose(R + S, want, rtol=1e-12, atol=0)
    R, S = plan_marginals(_blocks(nodes, nodes, upper, x), x, u / eps, A, x, u / eps, A, p, eps, -math.inf, 2,
                          grad="both")
    moments = torch.einsum("ij,j,ijd->id", E, A.double(), _cost_grad(x, x, p))
    torch.testing.assert_close(R + S, torch.cat((want[:, None], moments), dim=1), rtol=1e-12,
                               atol=1e-12 * float(moments.abs().max()))


def test_rows_skip_only_nodes_below_the_floor():
    """With floor_z, each row drops column nodes whose exponents all lie below it, and only those:
    R_all - (the terms below the floor) <= R <= R_all, with some rows strictly below R_all."""
    g = torch.Generator().manual_seed(3)
    n, m, D, eps, floor = 300, 600, 2, 0.002, -5.0
    x, y, u, v, A, B = _problem(g, n, m, D, torch.float64, eps)
    u, v = torch.zeros(n, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    # sorted along the first axis, so that nodes are slabs and most of them are far from a row
    x, y = x[x[:, 0].argsort()], y[y[:, 0].argsort()]
    rows, spans = _cuts(n, g, 40), _cuts(m, g, 40)
    keep = torch.ones(rows.shape[0], spans.shape[0], dtype=torch.bool)
    blocks = _blocks(rows, spans, keep, y)
    z = _exponents(x, y, u, v, 2, eps)
    terms = z.exp() * B.double()
    R_all = terms.sum(1)
    below = (terms * (z < floor)).sum(1)
    R, S = plan_marginals(blocks, x, u / eps, A, y, v / eps, B, 2, eps, floor, 1)
    assert bool((R <= R_all * (1 + 1e-12)).all()) and bool((R >= (R_all - below) * (1 - 1e-12)).all())
    assert bool((R < R_all * (1 - 1e-9)).any())  # something was skipped
    # the column sums skip the same pairs
    S_all = (z.exp() * A.double()[:, None]).sum(0)
    S_below = (z.exp() * A.double()[:, None] * (z < floor)).sum(0)
    assert bool((S <= S_all * (1 + 1e-12)).all()) and bool((S >= (S_all - S_below) * (1 - 1e-12)).all())


def test_bad_input_is_refused():
    x = torch.rand(10, MAX_DIM + 1)
    blocks = PairBlocks(*(torch.zeros(0, dtype=torch.int64) for _ in range(6)))
    with pytest.raises(ValueError, match="dimension"):
        plan_marginals(blocks, x, torch.zeros(10), torch.ones(10), x, torch.zeros(10), torch.ones(10), 2, 0.1,
                       -math.inf, 1)
    x = torch.rand(10, 2)
    for mode, grad in ((1, "cols"), (2, "rows")):
        with pytest.raises(ValueError, match="grad must be"):
            plan_marginals(blocks, x, torch.zeros(10), torch.ones(10), x, torch.zeros(10), torch.ones(10), 2, 0.1,
                           -math.inf, mode, grad=grad)
