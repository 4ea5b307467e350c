"""Gradients of reductions against dense torch autograd (float64): first order with respect to
i-variables, j-variables, parameters and weights; batch broadcasting; gradcheck; double backward;
Hamiltonian (LDDMM) shooting, which differentiates through a gradient."""

from __future__ import annotations

import pytest
import torch

import lazygeom
from lazygeom import LazyTensor, Pm, Vi, Vj
from lazy_helpers import (
    ALL_BATCHES,
    FORMULAS,
    assert_rel,
    dense_reduce,
    lazy_reduce,
    rand,
    randn,
    small_tiles,
)

N, M, D = 6, 9, 3
F64 = torch.float64

#: differentiable reductions; the index output of a pair is ignored
GRAD_KINDS = ["sum", "lse", "lse_w", "ssmw", "min", "max", "kmin", "min_argmin", "max_argmax", "kmin_argkmin"]


@pytest.fixture(autouse=True)
def _tiles(monkeypatch, backend, request):
    if request.node.get_closest_marker("default_tiles") is None:
        small_tiles(monkeypatch, backend)


def _inputs(batch, gen, E_w=None, over=1):
    bx, by = batch
    x = randn(*bx, N, 1, D, gen=gen, requires_grad=True)
    y = randn(*by, 1, M, D, gen=gen, requires_grad=True)
    p = rand(D, gen=gen, low=0.5, high=1.5, requires_grad=True)
    s = rand(*bx, 1, 1, 1, gen=gen, low=0.5, high=1.5, requires_grad=True)  # a batched parameter
    ins = {"x": x, "y": y, "p": p, "s": s}
    if E_w is not None:  # weights live on the reduced side
        side = by + ((1, M) if over == 1 else (N, 1))
        ins["w"] = rand(*side, E_w, gen=gen, low=0.2, high=2.0, requires_grad=True)
    return ins


def _run(kind, fname, over, ins, backend, lazy: bool):
    x, y, p, s = ins["x"], ins["y"], ins["p"], ins["s"]
    F = FORMULAS[fname](x, y, p, lazy) * (LazyTensor(s) if lazy else s)
    w = ins.get("w")
    base = {"lse_w": "lse"}.get(kind, kind)
    K = 2 if "kmin" in kind else 1
    if lazy:
        outs = lazy_reduce(base, F, over, backend, K=K, w=LazyTensor(w) if w is not None else None)
    else:
        outs = dense_reduce(base, F, over, K=K, w=w)
    return outs[0]


def _grads(out, ins, g, create_graph=False):
    names = list(ins)
    gs = torch.autograd.grad(out, [ins[k] for k in names], g, create_graph=create_graph, allow_unused=True)
    return {k: (torch.zeros_like(ins[k]) if v is None else v) for k, v in zip(names, gs)}


@pytest.mark.parametrize("batch", ALL_BATCHES)
@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("fname", list(FORMULAS))
@pytest.mark.parametrize("kind", GRAD_KINDS)
def test_gradients_match_dense(kind, fname, over, batch, backend, rng):
    E_w = {"lse_w": 1 if fname == "scalar" else D, "ssmw": 4 if fname == "scalar" else D}.get(kind)
    ins = _inputs(batch, rng, E_w, over)
    out = _run(kind, fname, over, ins, backend, lazy=True)
    ref = _run(kind, fname, over, ins, backend, lazy=False)
    assert out.requires_grad
    assert_rel(out.detach(), ref.detach())
    g = randn(*ref.shape, gen=rng)
    got, want = _grads(out, ins, g), _grads(ref, ins, g)
    for k in ins:
        assert got[k].shape == ins[k].shape, f"grad of {k}: shape {tuple(got[k].shape)}"
        assert_rel(got[k], want[k], factor=10.0)


@pytest.mark.parametrize("kind", ["argmin", "argmax", "argkmin"])
def test_arg_reductions_are_not_differentiable(kind, backend, rng):
    ins = _inputs(((), ()), rng)
    F = FORMULAS["scalar"](ins["x"], ins["y"], ins["p"], True)
    (idx,) = lazy_reduce(kind, F, 1, backend, K=2)
    assert idx.dtype == torch.int64 and not idx.requires_grad
    for kind2 in ("min_argmin", "max_argmax", "kmin_argkmin"):
        v, k = lazy_reduce(kind2, F, 0, backend, K=2)
        assert v.requires_grad and not k.requires_grad and k.dtype == torch.int64


def test_gradcheck_small(backend, rng):
    x = randn(3, 1, 2, gen=rng, requires_grad=True)
    y = randn(1, 4, 2, gen=rng, requires_grad=True)
    p = rand(2, gen=rng, low=0.5, high=1.5, requires_grad=True)
    w = rand(1, 4, 1, gen=rng, low=0.5, high=1.5, requires_grad=True)

    def f(x, y, p, w):
        F = -(LazyTensor(x) - LazyTensor(y)).square() | Pm(p)
        lse = F.logsumexp(dim=1, weight=LazyTensor(w), backend=backend)
        ker = F.exp().sum(dim=0, backend=backend)
        smw = F.sumsoftmaxweight(LazyTensor(y), dim=1, backend=backend)
        return lse, ker, smw

    assert torch.autograd.gradcheck(f, (x, y, p, w))
    assert torch.autograd.gradgradcheck(f, (x, y, p, w))


def test_gradcheck_selection(backend, rng):
    x = randn(3, 1, 2, gen=rng, requires_grad=True)
    y = randn(1, 5, 2, gen=rng, requires_grad=True)

    def f(x, y):
        F = (LazyTensor(x) - LazyTensor(y)).abs()  # vector formula: coordinatewise selections
        return F.Kmin(2, dim=1, backend=backend), F.max(dim=0, backend=backend)

    assert torch.autograd.gradcheck(f, (x, y))


# --- double backward -------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [pytest.param(((), ()), id="none"), pytest.param(((2,), (1,)), id="B_vs_1")])
@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("kind", ["sum", "lse", "lse_w", "ssmw", "kmin"])
def test_double_backward(kind, over, batch, backend, rng):
    """d/dz of |dL/dx|^2 + |dL/dy|^2, through the gradient reductions."""
    E_w = {"lse_w": 1, "ssmw": 2}.get(kind)
    ins = _inputs(batch, rng, E_w, over)
    results = []
    for lazy in (True, False):
        out = _run(kind, "scalar", over, ins, backend, lazy)
        g = torch.cos(torch.arange(out.numel(), dtype=F64)).reshape(out.shape)
        first = _grads(out, {k: ins[k] for k in ("x", "y")}, g, create_graph=True)
        loss = (first["x"] ** 2).sum() + (first["y"] ** 2).sum()
        results.append(_grads(loss, ins, None))
    got, want = results
    for k in ins:
        assert_rel(got[k], want[k], factor=100.0)


# --- LDDMM shooting --------------------------------------------------------------------------


def _hamiltonian(q, p, sigma, lazy, backend):
    if lazy:
        with lazygeom.config(backend=backend):
            Kq_p = (-Vi(q).sqdist(Vj(q)) / sigma**2).exp() @ p
    else:
        Kq_p = torch.exp(-((q[:, None] - q[None]) ** 2).sum(-1) / sigma**2) @ p
    return 0.5 * (p * Kq_p).sum()


def test_lddmm_shooting_gradient(backend, rng):
    """One explicit Euler step of Hamiltonian shooting, then a loss on q1 and its gradient."""
    q = randn(15, 2, gen=rng, requires_grad=True)
    p = randn(15, 2, gen=rng, requires_grad=True)
    target = randn(15, 2, gen=rng)
    sigma, dt = 0.7, 0.3
    res = []
    for lazy in (True, False):
        H = _hamiltonian(q, p, sigma, lazy, backend)
        dHdq, dHdp = torch.autograd.grad(H, (q, p), create_graph=True)
        q1, p1 = q + dt * dHdp, p - dt * dHdq
        loss = ((q1 - target) ** 2).sum() + 0.1 * (p1**2).sum()
        gq, gp = torch.autograd.grad(loss, (q, p))
        res.append((H.detach(), q1.detach(), p1.detach(), gq, gp))
    for a, b in zip(*res):
        assert_rel(a, b, factor=100.0)


def test_gradient_only_requested_inputs(backend, rng):
    """Inputs that do not require grad get none, and requesting one input works."""
    x = randn(5, 2, gen=rng, requires_grad=True)
    y = randn(7, 2, gen=rng)
    out = (-Vi(x).sqdist(Vj(y))).exp().sum(dim=1, backend=backend)
    (gx,) = torch.autograd.grad(out.sum(), x)
    ref = torch.autograd.grad(torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1)).sum(), x)[0]
    assert_rel(gx, ref)
    assert y.grad is None
