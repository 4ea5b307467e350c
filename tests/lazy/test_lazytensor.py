"""The front end: classification of inputs, shapes, arithmetic with numbers, constants that do
not recompile, indexing, and every elementwise and vector method checked through a reduction
against dense torch (values and gradients)."""

from __future__ import annotations

import pytest
import torch

import lazygeom
import lazygeom.lazy.reduce as lr
from lazygeom import LazyTensor, Pm, Vi, Vj
from lazy_helpers import assert_rel, rand, randn

N, M, D = 5, 8, 3
F64 = torch.float64


# --- classification and shapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, axis, lazy_shape",
    [
        ((N, 1, D), None, (N, 1, D)),
        ((1, M, D), None, (1, M, D)),
        ((1, 1, D), None, (1, 1, D)),
        ((D,), None, (1, 1, D)),
        ((), None, (1, 1, 1)),
        ((2, N, 1, D), None, (2, N, 1, D)),
        ((4, 2, 1, M, D), None, (4, 2, 1, M, D)),
        ((2, 1, 1, D), None, (2, 1, 1, D)),
        ((N, D), 0, (N, 1, D)),
        ((M, D), 1, (1, M, D)),
        ((N,), 0, (N, 1, 1)),
        ((M,), 1, (1, M, 1)),
        ((2, D), 2, (1, 1, 2 * D)),
    ],
)
def test_classification(shape, axis, lazy_shape):
    t = torch.randn(shape, dtype=F64)
    x = LazyTensor(t) if axis is None else LazyTensor(t, axis=axis)
    assert x.shape == lazy_shape
    assert x.ndim == len(lazy_shape)
    assert x.nbatchdims == len(lazy_shape) - 3
    assert x.dim == lazy_shape[-1]
    assert x.dtype == F64


def test_vi_vj_pm():
    x, y, p = torch.randn(N, D), torch.randn(M, D), torch.randn(D)
    assert Vi(x).shape == (N, 1, D) and Vj(y).shape == (1, M, D) and Pm(p).shape == (1, 1, D)
    assert Vi(x[:, 0]).shape == (N, 1, 1) and Vj(y[:, 0]).shape == (1, M, 1)
    assert Pm(2.5).shape == (1, 1, 1) and Pm(3).shape == (1, 1, 1)
    assert (Vi(x) - Vj(y)).shape == (N, M, D)
    assert ((Vi(x) - Vj(y)) ** 2).sum(-1).shape == (N, M, 1)
    b = LazyTensor(torch.randn(2, N, 1, D)) - LazyTensor(torch.randn(1, M, D))
    assert b.shape == (2, N, M, D) and b.ndim == 4 and b.nbatchdims == 1


def test_copy_repr_bool():
    x = Vi(torch.randn(N, D))
    assert LazyTensor(x).shape == x.shape and LazyTensor(x).formula is x.formula
    assert "LazyTensor(shape=" in repr(x - 1)
    with pytest.raises(TypeError, match="truth value"):
        bool(x)


@pytest.mark.parametrize("how", ["nd", "axis", "ViVj"])
def test_classification_through_reduction(how, backend, rng):
    x, y = randn(N, D, gen=rng), randn(M, D, gen=rng)
    if how == "nd":
        xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
    elif how == "axis":
        xi, yj = LazyTensor(x, axis=0), LazyTensor(y, axis=1)
    else:
        xi, yj = Vi(x), Vj(y)
    out = (xi - yj).sum(dim=1, backend=backend)
    assert_rel(out, (x[:, None] - y[None]).sum(1))
    out0 = (xi - yj).sum(dim=0, backend=backend)
    assert_rel(out0, (x[:, None] - y[None]).sum(0))


# --- arithmetic with numbers -----------------------------------------------------------------

NUMBER_CASES = {
    "add_int": (lambda u: u + 2, lambda u: u + 2),
    "radd_int": (lambda u: 2 + u, lambda u: 2 + u),
    "add_float": (lambda u: u + 0.25, lambda u: u + 0.25),
    "radd_float": (lambda u: 0.25 + u, lambda u: 0.25 + u),
    "sub_int": (lambda u: u - 3, lambda u: u - 3),
    "rsub_int": (lambda u: 3 - u, lambda u: 3 - u),
    "sub_float": (lambda u: u - 0.5, lambda u: u - 0.5),
    "rsub_float": (lambda u: 0.5 - u, lambda u: 0.5 - u),
    "mul_int": (lambda u: u * 3, lambda u: u * 3),
    "rmul_int": (lambda u: -2 * u, lambda u: -2 * u),
    "mul_float": (lambda u: u * 1.5, lambda u: u * 1.5),
    "rmul_float": (lambda u: 1.5 * u, lambda u: 1.5 * u),
    "div_int": (lambda u: u / 4, lambda u: u / 4),
    "rdiv_int": (lambda u: 4 / (u + 3), lambda u: 4 / (u + 3)),
    "div_float": (lambda u: u / 0.7, lambda u: u / 0.7),
    "rdiv_float": (lambda u: 0.7 / (u + 3), lambda u: 0.7 / (u + 3)),
    "neg": (lambda u: -u, lambda u: -u),
    "mixed": (lambda u: 1 - 2.5 * u / 3 + 0.5, lambda u: 1 - 2.5 * u / 3 + 0.5),
}


@pytest.mark.parametrize("case", list(NUMBER_CASES))
def test_arithmetic_with_numbers(case, backend, rng):
    x, y = randn(N, 1, D, gen=rng), randn(1, M, D, gen=rng)
    lazy, dense = NUMBER_CASES[case]
    out = lazy(LazyTensor(x) - LazyTensor(y)).sum(dim=1, backend=backend)
    assert_rel(out, dense(x - y).sum(-2))


def _capture_keys(monkeypatch):
    keys = []
    real = lr.genred

    def spy(red, *args, **kwargs):
        keys.append(red.key)
        return real(red, *args, **kwargs)

    monkeypatch.setattr(lr, "genred", spy)
    return keys


def test_float_constants_do_not_change_the_kernel(monkeypatch, backend, rng):
    """x * 2.5 and x * 3.5 run the same compiled reduction (floats are parameters)."""
    keys = _capture_keys(monkeypatch)
    x, y = randn(N, D, gen=rng), randn(M, D, gen=rng)
    outs = []
    for c, d in ((2.5, -1.0), (3.5, 0.25), (Pm(0.1), Pm(2.0))):
        F = (-Vi(x).sqdist(Vj(y)) * c).exp() + d
        outs.append(F.sum(dim=1, backend=backend))
    assert len(keys) == 3 and keys[0] == keys[1] == keys[2]
    for (c, d), out in zip(((2.5, -1.0), (3.5, 0.25), (0.1, 2.0)), outs):
        ref = (torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1) * c) + d).sum(-1, keepdim=True)
        assert_rel(out, ref)


def test_float_exponent_does_not_change_the_kernel(monkeypatch, backend, rng):
    keys = _capture_keys(monkeypatch)
    x, y = rand(N, D, gen=rng, low=0.5), rand(M, D, gen=rng, low=0.5)
    for e in (1.3, 2.7):
        out = ((Vi(x) + Vj(y)) ** e).sum(dim=1, backend=backend)
        assert_rel(out, ((x[:, None] + y[None]) ** e).sum(1))
    assert keys[0] == keys[1]


def test_formula_key_is_independent_of_data(monkeypatch, backend, rng):
    keys = _capture_keys(monkeypatch)
    for n, m in ((4, 6), (7, 3)):
        (Vi(randn(n, 2, gen=rng)) - Vj(randn(m, 2, gen=rng))).sqnorm2().sum(dim=1, backend=backend)
    assert keys[0] == keys[1]


# --- indexing and concatenation --------------------------------------------------------------

INDEX_CASES = {
    "ellipsis_k": (lambda u: u[..., 1], lambda u: u[..., 1:2]),
    "k": (lambda u: u[2], lambda u: u[..., 2:3]),
    "neg_k": (lambda u: u[..., -1], lambda u: u[..., -1:]),
    "slice": (lambda u: u[..., 0:2], lambda u: u[..., 0:2]),
    "open_slice": (lambda u: u[1:], lambda u: u[..., 1:]),
    "full_colons": (lambda u: u[:, :, 1], lambda u: u[..., 1:2]),
    "elem": (lambda u: u.elem(0), lambda u: u[..., 0:1]),
    "extract": (lambda u: u.extract(1, 2), lambda u: u[..., 1:3]),
    "concat": (lambda u: u[..., 2].concat(u), lambda u: torch.cat([u[..., 2:3], u], -1)),
}


@pytest.mark.parametrize("case", list(INDEX_CASES))
def test_indexing(case, backend, rng):
    x = randn(N, 1, D, gen=rng, requires_grad=True)
    y = randn(1, M, D, gen=rng, requires_grad=True)
    lazy, dense = INDEX_CASES[case]
    _check_formula(lazy(LazyTensor(x) * LazyTensor(y).exp()), dense(x * y.exp()), (x, y), backend, rng)


def test_concat_of_i_and_j_variables(backend, rng):
    x, y = randn(N, 1, 2, gen=rng), randn(1, M, 3, gen=rng)
    F = LazyTensor(x).concat(LazyTensor(y))
    assert F.shape == (N, M, 5)
    out = F.sum(dim=1, backend=backend)
    assert_rel(out, torch.cat([x.expand(N, M, 2), y.expand(N, M, 3)], -1).sum(1))


# --- elementwise and vector methods, values and gradients -------------------------------------


def _check_formula(F, Fd, inputs, backend, rng, grad=True, over=1):
    """Reduce F (lazy) and Fd (dense) with a sum over j (or i); compare values and gradients."""
    assert F.shape[-1] == Fd.shape[-1], f"vector dimension {F.shape[-1]} != {Fd.shape[-1]}"
    out = F.sum(dim=over, backend=backend)
    ref = Fd.sum(-3 + over)
    assert out.dtype == ref.dtype
    assert_rel(out, ref.detach())
    if not grad or not ref.requires_grad:
        return
    g = randn(*ref.shape, gen=rng)
    got = torch.autograd.grad(out, inputs, g, allow_unused=True) if out.requires_grad else (None,) * len(inputs)
    want = torch.autograd.grad(ref, inputs, g, allow_unused=True)
    for a, b, t in zip(got, want, inputs):
        a = torch.zeros_like(t) if a is None else a
        b = torch.zeros_like(t) if b is None else b
        assert_rel(a, b, factor=10.0) if b.abs().max() > 0 else torch.testing.assert_close(a, b)


def _ops():
    """name: (lazy(x, y), dense(x, y), differentiable) with x, y in (0.1, 0.9) (x - y in (-0.8, 0.8))."""
    T = torch
    return {
        "exp": (lambda x, y: (x - y).exp(), lambda x, y: T.exp(x - y)),
        "log": (lambda x, y: (x * y).log(), lambda x, y: T.log(x * y)),
        "sqrt": (lambda x, y: (x * y).sqrt(), lambda x, y: T.sqrt(x * y)),
        "rsqrt": (lambda x, y: (x * y).rsqrt(), lambda x, y: T.rsqrt(x * y)),
        "abs": (lambda x, y: (x - y).abs(), lambda x, y: T.abs(x - y)),
        "builtin_abs": (lambda x, y: abs(x - y), lambda x, y: T.abs(x - y)),
        "sign": (lambda x, y: (x - y).sign(), lambda x, y: T.sign(x - y)),
        "sin": (lambda x, y: (3 * (x - y)).sin(), lambda x, y: T.sin(3 * (x - y))),
        "cos": (lambda x, y: (3 * (x - y)).cos(), lambda x, y: T.cos(3 * (x - y))),
        "asin": (lambda x, y: (x - y).asin(), lambda x, y: T.asin(x - y)),
        "acos": (lambda x, y: (x - y).acos(), lambda x, y: T.acos(x - y)),
        "atan": (lambda x, y: (3 * (x - y)).atan(), lambda x, y: T.atan(3 * (x - y))),
        "atan2": (lambda x, y: (x - y).atan2(x + y), lambda x, y: T.atan2(x - y, x + y)),
        "tanh": (lambda x, y: (2 * (x - y)).tanh(), lambda x, y: T.tanh(2 * (x - y))),
        "relu": (lambda x, y: (x - y).relu(), lambda x, y: T.relu(x - y)),
        "step": (lambda x, y: (x - y).step(), lambda x, y: (x - y >= 0).to(x.dtype)),
        "clamp_num": (lambda x, y: (x - y).clamp(-0.2, 0.3), lambda x, y: T.clamp(x - y, -0.2, 0.3)),
        "clamp_lazy": (lambda x, y: (x - y).clamp(-x, y * 0.5),
                       lambda x, y: T.minimum(T.maximum(x - y, -x), y * 0.5)),
        "square": (lambda x, y: (x - y).square(), lambda x, y: (x - y) ** 2),
        "inv": (lambda x, y: (x + y).inv(), lambda x, y: 1 / (x + y)),
        "pow_2": (lambda x, y: (x - y) ** 2, lambda x, y: (x - y) ** 2),
        "pow_3": (lambda x, y: (x - y) ** 3, lambda x, y: (x - y) ** 3),
        "pow_neg2": (lambda x, y: (x + y) ** -2, lambda x, y: (x + y) ** -2),
        "pow_0": (lambda x, y: (x + y) ** 0, lambda x, y: (x + y) ** 0),
        "pow_half": (lambda x, y: (x * y) ** 0.5, lambda x, y: (x * y) ** 0.5),
        "pow_neghalf": (lambda x, y: (x * y) ** -0.5, lambda x, y: (x * y) ** -0.5),
        "pow_float": (lambda x, y: (x * y) ** 1.7, lambda x, y: (x * y) ** 1.7),
        "pow_float_int_valued": (lambda x, y: (x - y) ** 2.0, lambda x, y: (x - y) ** 2.0),
        "pow_lazy": (lambda x, y: (x * y) ** (x + y), lambda x, y: (x * y) ** (x + y)),
        "power_method": (lambda x, y: (x + y).power(3), lambda x, y: (x + y) ** 3),
        "log1p": (lambda x, y: (x * y).log1p(), lambda x, y: T.log1p(x * y)),
        "xlogx": (lambda x, y: (x * y).xlogx(), lambda x, y: x * y * T.log(x * y)),
        "sinxdivx": (lambda x, y: (3 * (x - y)).sinxdivx(), lambda x, y: T.sin(3 * (x - y)) / (3 * (x - y))),
        "minimum": (lambda x, y: lazygeom.minimum(x, y), lambda x, y: T.minimum(x, y)),
        "maximum": (lambda x, y: lazygeom.maximum(x, y), lambda x, y: T.maximum(x, y)),
        "minimum_method": (lambda x, y: x.minimum(y * 0.8), lambda x, y: T.minimum(x, y * 0.8)),
        "maximum_number_first": (lambda x, y: lazygeom.maximum(0.5, x - y),
                                 lambda x, y: T.clamp_min(x - y, 0.5)),
        "ifelse": (lambda x, y: lazygeom.ifelse(x - y, x * 2, y.exp()),
                   lambda x, y: T.where(x - y >= 0, x * 2, T.exp(y))),
        "ifelse_method": (lambda x, y: (y - x).ifelse(x, 1.5), lambda x, y: T.where(y - x >= 0, x, 1.5)),
        "mod": (lambda x, y: (3 * (x - y)).mod(0.7), lambda x, y: T.remainder(3 * (x - y), 0.7)),
        "mod_offset": (lambda x, y: (3 * (x - y)).mod(0.7, 0.2),
                       lambda x, y: 3 * (x - y) - 0.7 * T.floor((3 * (x - y) - 0.2) / 0.7)),
        "round": (lambda x, y: (5 * (x - y)).round(), lambda x, y: T.round(5 * (x - y))),
        "floor": (lambda x, y: (5 * (x - y)).floor(), lambda x, y: T.floor(5 * (x - y))),
    }


ELEMENTWISE = _ops()


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise(name, backend, rng):
    x = rand(N, 1, D, gen=rng, low=0.1, high=0.9, requires_grad=True)
    y = rand(1, M, D, gen=rng, low=0.1, high=0.9, requires_grad=True)
    lazy, dense = ELEMENTWISE[name]
    _check_formula(lazy(LazyTensor(x), LazyTensor(y)), dense(x, y), (x, y), backend, rng)


def _vector_ops():
    T = torch

    def wsq(s, u):  # dense weighted squared norm, s of dim 1, D or D*D
        if s.shape[-1] == 1:
            return s * (u**2).sum(-1, keepdim=True)
        if s.shape[-1] == u.shape[-1]:
            return (s * u**2).sum(-1, keepdim=True)
        S = s.unflatten(-1, (u.shape[-1], u.shape[-1]))
        return (u.unsqueeze(-2) * S * u.unsqueeze(-1)).sum((-1, -2)).unsqueeze(-1)

    return {
        "sum": (lambda x, y, a, s: (x * y).sum(-1), lambda x, y, a, s: (x * y).sum(-1, keepdim=True)),
        "sum_default_axis": (lambda x, y, a, s: (x * y).sum(), lambda x, y, a, s: (x * y).sum(-1, keepdim=True)),
        "norm2": (lambda x, y, a, s: (x - y).norm2(), lambda x, y, a, s: T.linalg.norm(x - y, dim=-1, keepdim=True)),
        "norm": (lambda x, y, a, s: (x - y).norm(-1), lambda x, y, a, s: T.linalg.norm(x - y, dim=-1, keepdim=True)),
        "sqnorm2": (lambda x, y, a, s: (x - y).sqnorm2(), lambda x, y, a, s: ((x - y) ** 2).sum(-1, keepdim=True)),
        "normalize": (lambda x, y, a, s: (x - y).normalize(),
                      lambda x, y, a, s: (x - y) / T.linalg.norm(x - y, dim=-1, keepdim=True)),
        "sqdist": (lambda x, y, a, s: x.sqdist(y), lambda x, y, a, s: ((x - y) ** 2).sum(-1, keepdim=True)),
        "dot": (lambda x, y, a, s: x | y, lambda x, y, a, s: (x * y).sum(-1, keepdim=True)),
        "wsqnorm_scalar": (lambda x, y, a, s: (x - y).weightedsqnorm(s.sum(-1)),
                           lambda x, y, a, s: wsq(s.sum(-1, keepdim=True), x - y)),
        "wsqnorm_diag": (lambda x, y, a, s: (x - y).weightedsqnorm(s), lambda x, y, a, s: wsq(s, x - y)),
        "wsqnorm_full": (lambda x, y, a, s: (x - y).weightedsqnorm(a), lambda x, y, a, s: wsq(a, x - y)),
        "wsqdist_diag": (lambda x, y, a, s: x.weightedsqdist(y, s), lambda x, y, a, s: wsq(s, x - y)),
        "wsqdist_full": (lambda x, y, a, s: x.weightedsqdist(y, a), lambda x, y, a, s: wsq(a, x - y)),
        "matvecmult": (lambda x, y, a, s: a.matvecmult(x - y),
                       lambda x, y, a, s: (a.unflatten(-1, (D, D)) @ (x - y).unsqueeze(-1)).squeeze(-1)),
        "vecmatmult": (lambda x, y, a, s: (x - y).vecmatmult(a),
                       lambda x, y, a, s: ((x - y).unsqueeze(-2) @ a.unflatten(-1, (D, D))).squeeze(-2)),
        "tensorprod": (lambda x, y, a, s: x.tensorprod(y[..., :2]),
                       lambda x, y, a, s: (x.unsqueeze(-1) * y[..., :2].unsqueeze(-2)).flatten(-2)),
        "vmin": (lambda x, y, a, s: (x - y).min(), lambda x, y, a, s: (x - y).amin(-1, keepdim=True)),
        "vmax": (lambda x, y, a, s: (x - y).max(), lambda x, y, a, s: (x - y).amax(-1, keepdim=True)),
        "vmin_dim": (lambda x, y, a, s: (x - y).min(-1), lambda x, y, a, s: (x - y).amin(-1, keepdim=True)),
        "vargmin": (lambda x, y, a, s: (x - y).argmin(),
                    lambda x, y, a, s: (x - y).argmin(-1, keepdim=True).to(x.dtype)),
        "vargmax": (lambda x, y, a, s: (x - y).argmax(),
                    lambda x, y, a, s: (x - y).argmax(-1, keepdim=True).to(x.dtype)),
        "one_hot": (lambda x, y, a, s: (x - y).argmax().one_hot(4) * y.sum(),
                    lambda x, y, a, s: T.nn.functional.one_hot((x - y).argmax(-1), 4).to(x.dtype)
                    * y.sum(-1, keepdim=True)),
    }


VECTOR_OPS = _vector_ops()


@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("name", list(VECTOR_OPS))
def test_vector_ops(name, over, backend, rng):
    x = randn(N, 1, D, gen=rng, requires_grad=True)
    y = randn(1, M, D, gen=rng, requires_grad=True)
    a = randn(N, 1, D * D, gen=rng, requires_grad=True)  # a matrix per i
    s = rand(1, M, D, gen=rng, low=0.5, high=1.5, requires_grad=True)  # diagonal weights per j
    lazy, dense = VECTOR_OPS[name]
    F = lazy(*(LazyTensor(t) for t in (x, y, a, s)))
    _check_formula(F, dense(x, y, a, s), (x, y, a, s), backend, rng, over=over)


def test_weighted_norm_with_parameter_weights(backend, rng):
    x, y = randn(N, D, gen=rng), randn(M, D, gen=rng)
    S = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 3.0]], dtype=F64)
    F = Vi(x).weightedsqdist(Vj(y), Pm(S.reshape(-1)))
    u = x[:, None] - y[None]
    assert_rel(F.sum(dim=1, backend=backend), torch.einsum("nmd,de,nme->n", u, S, u)[:, None])
