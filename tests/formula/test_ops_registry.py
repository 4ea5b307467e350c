"""Registry-driven tests: every op of ``lazygeom.formula.all_ops()`` against dense torch.

For each op (the leaves "var" and "const" aside) a node ``op(v_0, v_1, ...)`` of canonical
variables is reduced with ``genred`` (sum over j, reference backend) and compared with a dense
(N, M, D) evaluation of the op's own torch implementation: forward values, first derivatives (ours
from the symbolic VJP rules, the reference from torch autograd) and second derivatives.
An op without an entry in :data:`CASES` fails :func:`test_every_op_has_cases`, so a new op cannot
go untested. The composite operations are checked the same way against hand-written torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch

from formula_testing import DT, NI, arg_shape, assert_close, dense_sum, draw, grads, lazy_sum, or_zeros
from lazygeom.formula import CAT_I, CAT_J, CAT_NAMES, CAT_P, all_ops, composites as C, node, var, vjp

LEAVES = ("var", "const")  # no arguments: exercised by every other test


@dataclass(frozen=True)
class Case:
    """One configuration of an op: argument dims, static attrs, optional per-argument samplers."""

    dims: tuple[int, ...]
    attrs: tuple = ()
    samplers: tuple = ()  # per argument: None (use the op's domain) or fn(shape, gen) -> tensor

    @property
    def label(self) -> str:
        s = "x".join(map(str, self.dims))
        return s + (f"-{self.attrs}" if self.attrs else "")


def _indices(n: int):
    """Sampler of integer-valued float indices in [0, n) (the argument of onehot)."""
    return lambda shape, gen: torch.randint(0, n, shape, generator=gen).to(DT)


UNARY = (
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "sign", "step", "round", "floor", "relu", "sin",
    "cos", "tanh", "asin", "acos", "atan", "square", "inv", "log1p", "xlogx", "sinxdivx",
)
# equal dims, then a dim-1 argument broadcast against a dim-D one, on either side
BINARY = ("add", "sub", "mul", "div", "atan2", "min2", "max2")
_BINARY_CASES = [Case((3, 3)), Case((1, 3)), Case((3, 1))]

CASES: dict[str, list[Case]] = {
    **{op: [Case((3,))] for op in UNARY},
    **{op: list(_BINARY_CASES) for op in BINARY},
    "pow": [Case((3,), (k,)) for k in (-2, -1, 0, 1, 2, 3)],
    "ifelse": [Case((3, 3, 3)), Case((1, 3, 3)), Case((3, 1, 3)), Case((3, 3, 1)), Case((1, 1, 1))],
    "sum": [Case((4,)), Case((1,))],
    "bcast": [Case((1,), (4,))],
    "dot": [Case((3, 3)), Case((1, 1))],
    "vmax": [Case((4,))],
    "vmin": [Case((4,))],
    "vargmax": [Case((4,))],
    "vargmin": [Case((4,))],
    "onehot": [Case((1,), (4,), samplers=(_indices(4),))],
    "extract": [Case((5,), (1, 3)), Case((5,), (4, 1)), Case((5,), (0, 5))],
    "pad": [Case((2,), (1, 5)), Case((3,), (0, 3))],
    "concat": [Case((2, 3)), Case((1, 1))],
    "matvecmult": [Case((6, 3)), Case((6, 2)), Case((3, 3))],  # (2x3).3, (3x2).2, (1x3).3
    "vecmatmult": [Case((2, 6)), Case((3, 3))],  # 2.(2x3), 3.(3x1)
    "tensorprod": [Case((2, 3)), Case((1, 4))],
}

#: argument categories tried for each arity (i- and j-variables, parameters, in several orders)
CATS = {
    1: [(CAT_I,), (CAT_J,)],
    2: [(CAT_I, CAT_J), (CAT_P, CAT_J)],
    3: [(CAT_I, CAT_J, CAT_P), (CAT_J, CAT_P, CAT_I)],
}


def _params(first_only: bool = False):
    ops = all_ops()
    out = []
    for op in sorted(ops):
        if op in LEAVES or op not in CASES:
            continue  # a missing entry fails test_every_op_has_cases
        for ci, case in enumerate(CASES[op]):
            for cats in CATS[len(case.dims)][: 1 if (first_only and ci) else None]:
                cid = f"{op}-{case.label}-{''.join(CAT_NAMES[c] for c in cats)}"
                out.append(pytest.param(op, case, cats, id=cid))
    return out


def _setup(op: str, case: Case, cats, gen, requires_grad: bool = False):
    spec = all_ops()[op]
    assert len(case.dims) == spec.arity, f"{op}: case {case} has the wrong arity"
    domains = spec.domains or ("any",) * spec.arity
    assert len(domains) == spec.arity, f"{op}: {len(domains)} domains for arity {spec.arity}"
    args = []
    for k, (c, d) in enumerate(zip(cats, case.dims)):
        sampler = case.samplers[k] if k < len(case.samplers) and case.samplers[k] else None
        shape = arg_shape(c, d)
        t = sampler(shape, gen) if sampler else draw(domains[k], shape, gen)
        args.append(t.requires_grad_(requires_grad))
    f = node(op, *(var(k, c, d) for k, (c, d) in enumerate(zip(cats, case.dims))), attrs=case.attrs)
    dense = lambda *xs: spec.impl(torch, *xs, case.attrs)  # noqa: E731
    return spec, f, args, dense


# --- coverage of the registry -------------------------------------------------------------------


def test_every_op_has_cases():
    ops = set(all_ops())
    assert set(LEAVES) <= ops, "the leaf ops moved: update LEAVES"
    missing = sorted(ops - set(LEAVES) - set(CASES))
    assert not missing, f"ops without a test configuration in CASES: {missing}"
    stale = sorted(set(CASES) - ops)
    assert not stale, f"CASES names ops that are not registered: {stale}"


@pytest.mark.parametrize("op", sorted(set(all_ops()) - set(LEAVES)))
def test_spec_is_complete(op):
    spec = all_ops()[op]
    assert spec.name == op
    assert spec.impl is not None, f"{op}: no torch reference implementation"
    assert spec.vjp is not None, f"{op}: no vector-Jacobian rule"
    assert spec.arity is not None and len(spec.domains) == spec.arity
    assert set(spec.domains) <= {"any", "pos", "unit", "nz"}
    assert spec.doc, f"{op}: no doc string"


# --- forward, first and second derivatives ------------------------------------------------------


@pytest.mark.parametrize("op,case,cats", _params())
def test_forward(op, case, cats, gen, backend):
    spec, f, args, dense = _setup(op, case, cats, gen)
    ours = lazy_sum(f, args, cats, backend)
    ref = dense_sum(dense, args, cats)
    assert ours.shape == (NI, f.dim), f"{op}: dim rule says {f.dim}, output is {tuple(ours.shape)}"
    assert ref.shape == ours.shape, f"{op}: impl gives dimension {ref.shape[-1]}, dim rule {f.dim}"
    assert_close(ours, ref, 1e-13, f"{op} forward")


@pytest.mark.parametrize("op,case,cats", _params())
def test_gradient(op, case, cats, gen, backend):
    spec, f, args, dense = _setup(op, case, cats, gen, requires_grad=True)
    ours = lazy_sum(f, args, cats, backend)
    w = torch.randn(ours.shape, generator=gen, dtype=DT)
    g_ours = grads((ours * w).sum(), args)
    if spec.flat:
        # piecewise constant: no gradient formula at all, and nothing but zeros comes out
        leaves = [var(k, c, d) for k, (c, d) in enumerate(zip(cats, case.dims))]
        assert vjp(f, leaves, var(9, CAT_I, f.dim)) == [None] * len(args)
        for g in g_ours:
            assert g is None or not g.any()
        return
    g_ref = grads((dense_sum(dense, args, cats) * w).sum(), args)
    assert any(g is not None for g in g_ref), "test defect: the dense reference has no gradient"
    for k, (a, go, gr) in enumerate(zip(args, g_ours, g_ref)):
        assert_close(or_zeros(go, a), or_zeros(gr, a), 1e-10, f"{op} d/d(arg {k})")


def _second_order(evaluate, args, w, v):
    """First gradients of <out, w>, and the gradient of <first gradients, v>."""
    out = evaluate(args)
    g1 = grads((out * w).sum(), args, create_graph=True)
    s = sum(((g * vk).sum() for g, vk in zip(g1, v) if g is not None), torch.zeros((), dtype=DT))
    g2 = grads(s, args)
    return [or_zeros(g, a) for g, a in zip(g1, args)], [or_zeros(g, a) for g, a in zip(g2, args)]


@pytest.mark.parametrize(
    "op,case,cats", [p for p in _params(first_only=True) if not all_ops()[p.values[0]].flat]
)
def test_double_backward(op, case, cats, gen):
    spec, f, args, dense = _setup(op, case, cats, gen, requires_grad=True)
    w = torch.randn(NI, f.dim, generator=gen, dtype=DT)
    v = [torch.randn(a.shape, generator=gen, dtype=DT) for a in args]
    o1, o2 = _second_order(lambda xs: lazy_sum(f, xs, cats), args, w, v)
    r1, r2 = _second_order(lambda xs: dense_sum(dense, xs, cats), args, w, v)
    for k in range(len(args)):
        assert_close(o1[k], r1[k], 1e-10, f"{op} d/d(arg {k})")
        assert_close(o2[k], r2[k], 1e-9, f"{op} second derivative, arg {k}")


# --- the reference implementations mean what their docs say --------------------------------------


def _onehot(k, D):
    return torch.nn.functional.one_hot(k.round().long().squeeze(-1), D).to(k.dtype)


#: independent torch (or math) formulations, on the (N, M, D) grid; attrs as in CASES' first entry
INDEPENDENT: dict[str, Callable] = {
    "rsqrt": lambda x: 1 / torch.sqrt(x),
    "step": lambda x: torch.heaviside(x, torch.ones((), dtype=x.dtype)),
    "relu": lambda x: x.clamp_min(0),
    "xlogx": lambda x: torch.special.xlogy(x, x),
    "sinxdivx": lambda x: torch.sinc(x / math.pi),
    "inv": lambda x: x.reciprocal(),
    "log1p": lambda x: torch.log(1 + x),
    "atan2": lambda y, x: torch.angle(torch.complex(*torch.broadcast_tensors(x, y))),
    "ifelse": lambda c, a, b: a * (c >= 0) + b * (c < 0),
    "sum": lambda x: torch.einsum("...d->...", x)[..., None],
    "bcast": lambda x: x.repeat_interleave(4, -1),
    "dot": lambda a, b: torch.einsum("...d,...d->...", *torch.broadcast_tensors(a, b))[..., None],
    "vargmax": lambda x: x.argmax(-1, keepdim=True).to(x.dtype),
    "vargmin": lambda x: x.argmin(-1, keepdim=True).to(x.dtype),
    "onehot": lambda k: _onehot(k, 4),
    "extract": lambda x: x[..., 1:4],
    "pad": lambda x: torch.cat([torch.zeros_like(x[..., :1]), x, torch.zeros_like(x[..., :2])], -1),
    "matvecmult": lambda a, x: torch.einsum("...ij,...j->...i", a.unflatten(-1, (2, 3)), x),
    "vecmatmult": lambda x, a: torch.einsum("...i,...ij->...j", x, a.unflatten(-1, (2, 3))),
    "tensorprod": lambda x, y: torch.einsum("...i,...j->...ij", x, y).flatten(-2),
}


@pytest.mark.parametrize("op", sorted(INDEPENDENT))
def test_impl_matches_independent_formulation(op, gen):
    case = CASES[op][0]
    cats = CATS[len(case.dims)][0]
    spec, f, args, dense = _setup(op, case, cats, gen)
    ref = dense_sum(INDEPENDENT[op], args, cats)
    assert_close(dense_sum(dense, args, cats), ref, 1e-13, f"{op} impl vs independent formulation")


# --- composites ----------------------------------------------------------------------------------

D = 3


@dataclass(frozen=True)
class Composite:
    build: Callable  # variable nodes -> formula
    ref: Callable  # dense tensors -> (..., E)
    dims: tuple[int, ...]
    domains: tuple[str, ...]
    cats: tuple[int, ...]


def _wsqnorm_full(s, x):
    """x^T S x with S the row-major (D, D) matrix stored in s."""
    S = s.unflatten(-1, (D, D))
    return (x[..., :, None] * S * x[..., None, :]).sum((-1, -2))[..., None]


def _clamp(x, a, b):
    # not torch.clamp: with tensor bounds broadcast against x, its backward fails in torch 2.13
    # ("output with shape [4, 1, 3] doesn't match the broadcast shape [4, 5, 3]")
    return torch.minimum(torch.maximum(x, a), b)


_ANY1, _ANY2, _ANY3 = ("any",), ("any", "any"), ("any", "any", "any")
COMPOSITES = {
    "sqnorm2": Composite(C.sqnorm2, lambda x: (x ** 2).sum(-1, keepdim=True), (D,), _ANY1, (CAT_J,)),
    "norm2": Composite(C.norm2, lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True), (D,), _ANY1, (CAT_J,)),
    "normalize": Composite(C.normalize, lambda x: torch.nn.functional.normalize(x, dim=-1), (D,), _ANY1, (CAT_J,)),
    "sqdist": Composite(C.sqdist, lambda x, y: ((x - y) ** 2).sum(-1, keepdim=True), (D, D), _ANY2, (CAT_I, CAT_J)),
    "weightedsqnorm-scalar": Composite(C.weightedsqnorm, lambda s, x: s * (x ** 2).sum(-1, keepdim=True),
                                       (1, D), ("pos", "any"), (CAT_P, CAT_J)),
    "weightedsqnorm-diag": Composite(C.weightedsqnorm, lambda s, x: (s * x ** 2).sum(-1, keepdim=True),
                                     (D, D), ("pos", "any"), (CAT_I, CAT_J)),
    "weightedsqnorm-full": Composite(C.weightedsqnorm, _wsqnorm_full, (D * D, D), _ANY2, (CAT_J, CAT_I)),
    "weightedsqdist-scalar": Composite(C.weightedsqdist, lambda s, x, y: s * ((x - y) ** 2).sum(-1, keepdim=True),
                                       (1, D, D), ("pos", "any", "any"), (CAT_J, CAT_I, CAT_J)),
    "weightedsqdist-diag": Composite(C.weightedsqdist, lambda s, x, y: (s * (x - y) ** 2).sum(-1, keepdim=True),
                                     (D, D, D), ("pos", "any", "any"), (CAT_P, CAT_I, CAT_J)),
    "weightedsqdist-full": Composite(C.weightedsqdist, lambda s, x, y: _wsqnorm_full(s, x - y),
                                     (D * D, D, D), _ANY3, (CAT_I, CAT_I, CAT_J)),
    "clamp": Composite(C.clamp, _clamp, (D, D, D), _ANY3, (CAT_I, CAT_J, CAT_P)),
    "clamp-scalar-bounds": Composite(C.clamp, _clamp, (D, 1, 1), _ANY3, (CAT_J, CAT_I, CAT_P)),
    "powf": Composite(C.powf, torch.pow, (D, D), ("pos", "any"), (CAT_I, CAT_J)),
    "powf-scalar-exponent": Composite(C.powf, torch.pow, (D, 1), ("pos", "any"), (CAT_J, CAT_P)),
}


def _composite_args(name, comp, gen):
    args = [draw(dom, arg_shape(c, d), gen) for dom, c, d in zip(comp.domains, comp.cats, comp.dims)]
    if name.startswith("clamp"):  # lower bounds below 0, upper above: some entries clamped each way
        args[0] = 2 * args[0]
        args[1] = -0.2 - args[1].abs()
        args[2] = 0.2 + args[2].abs()
    return [a.requires_grad_() for a in args]


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite(name, gen):
    comp = COMPOSITES[name]
    args = _composite_args(name, comp, gen)
    f = comp.build(*(var(k, c, d) for k, (c, d) in enumerate(zip(comp.cats, comp.dims))))
    ours = lazy_sum(f, args, comp.cats)
    ref = dense_sum(comp.ref, args, comp.cats)
    assert_close(ours, ref, 1e-12, f"{name} forward")
    w = torch.randn(ours.shape, generator=gen, dtype=DT)
    for k, (a, go, gr) in enumerate(zip(args, grads((ours * w).sum(), args), grads((ref * w).sum(), args))):
        assert gr is not None, "test defect: the dense reference has no gradient"
        assert_close(or_zeros(go, a), gr, 1e-10, f"{name} d/d(arg {k})")


def test_clamp_data_hits_both_bounds(gen):
    """The clamp test above is only meaningful if its data is clamped on both sides."""
    comp = COMPOSITES["clamp"]
    x, a, b = (t.detach() for t in _composite_args("clamp", comp, gen))
    x, a, b = x[:, None, :], a[None, :, :], b[None, None, :]
    assert (x < a).any() and (x > b).any() and ((x > a) & (x < b)).any()


def test_weightedsqnorm_rejects_bad_weights():
    with pytest.raises(ValueError, match=r"dimension 5.*dimension 3"):
        C.weightedsqnorm(var(0, CAT_P, 5), var(1, CAT_I, 3))


@pytest.mark.parametrize("exponent,expected", [(2, "square"), (3.0, "pow"), (0.5, "sqrt"), (-0.5, "rsqrt"),
                                               (-1, "inv"), (1.5, None)])
def test_sqrt_or_pow(exponent, expected):
    x = var(0, CAT_I, 3)
    out: Optional[object] = C.sqrt_or_pow(x, exponent)
    if expected is None:
        assert out is None
    else:
        assert out.op == expected and out.args == (x,) and out.dim == 3
