"""The rewrite rules applied by ``make``: each rule on its own, then a property test showing that
simplified formulas (``make``) and raw ones (``node``) evaluate to the same values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from formula_testing import DT, NI, NJ
from lazygeom.backends.reference import evaluate_tile
from lazygeom.formula import CAT_I, CAT_J, CAT_P, const, is_const, make, node, var, vjp

x, y = var(0, CAT_I, 3), var(1, CAT_J, 3)
s, t = var(2, CAT_I, 1), var(3, CAT_J, 1)
p = var(4, CAT_P, 3)
VARS = (x, y, s, t, p)


def is_zero(n, dim):
    return is_const(n, 0) and n.dim == dim


# --- identities --------------------------------------------------------------------------------


@pytest.mark.parametrize("one", [const(1), const(1, 3)], ids=["scalar", "vector"])
def test_times_one(one):
    assert make("mul", x, one) is x
    assert make("mul", one, x) is x
    assert make("div", x, one) is x


def test_times_one_keeps_the_broadcast_dimension():
    out = make("mul", s, const(1, 3))
    assert out.dim == 3 and out is node("bcast", s, attrs=(3,))


@pytest.mark.parametrize("zero", [const(0), const(0, 3)], ids=["scalar", "vector"])
def test_plus_zero(zero):
    assert make("add", x, zero) is x
    assert make("add", zero, x) is x
    assert make("sub", x, zero) is x
    assert make("sub", zero, x) is node("neg", x)


def test_plus_zero_keeps_the_broadcast_dimension():
    assert make("add", s, const(0, 4)) is node("bcast", s, attrs=(4,))
    assert make("add", const(0, 4), const(2)) is const(2, 4)


@pytest.mark.parametrize("a,b,dim", [(x, const(0), 3), (const(0), x, 3), (s, const(0, 4), 4), (const(0, 4), s, 4),
                                     (const(0), s, 1)])
def test_times_zero_is_a_zero_of_the_right_dim(a, b, dim):
    out = make("mul", a, b)
    assert is_zero(out, dim), out


def test_zero_numerator_and_zero_dot():
    assert is_zero(make("div", const(0), x), 3)
    assert is_zero(make("dot", const(0, 3), x), 1)
    assert is_zero(make("dot", y, const(0, 3)), 1)
    assert make("div", const(0), const(0)).op == "div"  # 0/0 is nan, not 0: left alone


def test_inverse_pairs():
    assert make("exp", make("log", x)) is x
    assert make("log", make("exp", x)) is x
    assert make("neg", make("neg", x)) is x
    assert make("exp", node("log", x)) is x  # also on a raw argument


def test_self_difference_and_sum():
    assert is_zero(make("sub", x, x), 3)
    assert is_zero(make("sub", s, s), 1)
    assert make("add", x, x) is make("mul", const(2), x)
    assert make("sub", x, y).op == "sub"  # different operands: kept


@pytest.mark.parametrize(
    "k,expected",
    [(1, lambda a: a), (0, lambda a: const(1, a.dim)), (2, lambda a: node("square", a)),
     (-1, lambda a: node("inv", a)), (3, lambda a: node("pow", a, attrs=(3,))),
     (-2, lambda a: node("pow", a, attrs=(-2,)))],
)
@pytest.mark.parametrize("a", [x, t], ids=["dim3", "dim1"])
def test_pow(a, k, expected):
    assert make("pow", a, attrs=(k,)) is expected(a)


def test_structural_rules():
    assert make("extract", x, attrs=(0, 3)) is x
    assert make("extract", x, attrs=(1, 2)).op == "extract"
    assert make("extract", const(2, 5), attrs=(1, 3)) is const(2, 3)
    assert make("pad", x, attrs=(0, 3)) is x
    assert make("pad", const(0, 2), attrs=(1, 4)) is const(0, 4)
    assert make("pad", x, attrs=(1, 4)).op == "pad"
    assert make("sum", s) is s
    assert make("bcast", s, attrs=(1,)) is s
    assert make("bcast", const(3), attrs=(4,)) is const(3, 4)
    assert make("ifelse", s, x, x) is x
    assert make("ifelse", s, t, t) is t
    assert make("ifelse", x, s, s) is node("bcast", s, attrs=(3,))  # the condition's dim counts
    assert make("ifelse", const(1), x, y) is x
    assert make("ifelse", const(0), x, y) is x  # condition is c >= 0
    assert make("ifelse", const(-1), x, y) is y
    assert make("ifelse", const(-1, 3), s, t) is node("bcast", t, attrs=(3,))


def test_exact_power_of_two_rewrites():
    """Rules that move powers of two and negations next to j-free factors: exact in floating point,
    and they take work out of the j loop (the factor is computed once per row)."""
    q = var(5, CAT_P, 1)
    assert make("div", t, const(2)) is make("mul", const(0.5), t)
    assert make("div", t, const(3)).op == "div"  # 1/3 is not exact: left alone
    assert make("div", t, const(2.0 ** -200)).op == "div"  # 2^200 overflows float32
    sq = make("sum", make("square", make("sub", x, y)))
    # |x - y|^2 / 2 * q: the 1/2 joins the parameter
    assert make("mul", make("div", sq, const(2)), q) is make("mul", sq, make("mul", const(0.5), q))
    assert make("mul", const(2), make("mul", t, q)) is make("mul", t, make("mul", const(2), q))
    assert make("mul", make("neg", t), q) is make("mul", t, make("neg", q))
    assert make("mul", make("neg", t), s).args[1] is make("neg", s)  # an i-variable is j-free too
    assert make("mul", make("neg", s), q) is node("mul", make("neg", s), q)  # nothing j-dependent to spare
    # bcast(t q) = bcast(t) q, so that 2 bcast(t (q / 2)) is bcast(t) q
    b = make("bcast", make("mul", t, make("mul", const(0.5), q)), attrs=(3,))
    assert make("mul", const(2), b) is make("mul", make("bcast", t, attrs=(3,)), q)
    # a j-dependent factor stays where it is
    assert make("mul", make("mul", const(0.5), t), y) is node("mul", node("mul", const(0.5), t), y)


# --- constant folding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "built,value,dim",
    [
        (lambda: make("add", const(2), const(3)), 5, 1),
        (lambda: make("sub", const(2), const(3, 4)), -1, 4),
        (lambda: make("mul", const(2.5), const(-2)), -5, 1),
        (lambda: make("neg", const(2, 3)), -2, 3),
        (lambda: make("exp", const(0)), 1, 1),
        (lambda: make("log", const(1, 2)), 0, 2),
        (lambda: make("sqrt", const(6.25)), 2.5, 1),
        (lambda: make("square", const(-3)), 9, 1),
        (lambda: make("pow", const(2, 3), attrs=(3,)), 8, 3),
        (lambda: make("pow", const(2), attrs=(-3,)), 0.125, 1),
        (lambda: make("sum", const(2, 3)), 6, 1),
        (lambda: make("mul", const(3), make("mul", const(2), x)), None, 3),
        (lambda: make("add", make("mul", const(2), const(3)), make("neg", const(1))), 5, 1),
    ],
)
def test_constant_folding(built, value, dim):
    out = built()
    assert out.dim == dim
    if value is None:  # c1 * (c2 * x) -> (c1 c2) * x
        assert out is make("mul", const(6), x)
    else:
        assert out is const(value, dim)


@pytest.mark.parametrize(
    "op,c,attrs",
    [("log", 0, ()), ("log", -1, ()), ("sqrt", -4, ()), ("exp", 1000, ()), ("pow", 0, (-2,)), ("pow", 1e200, (3,))],
)
def test_no_folding_outside_the_domain(op, c, attrs):
    """Folding that Python refuses (log 0, 0**-2, overflow) is left to the run time: no error."""
    out = make(op, const(c), attrs=attrs)
    assert out.op == op and out.args == (const(c),)


@pytest.mark.parametrize(
    "built,expected",
    [
        (lambda: const(1e20), 1e20),
        (lambda: const(2**80), float(2**80)),
        (lambda: make("mul", const(1e200), const(1e200)), float("inf")),
        (lambda: make("mul", const(-1e200), const(1e200)), float("-inf")),
        (lambda: make("pow", const(10), attrs=(400,)), float("inf")),
        (lambda: make("add", const(2**53), const(1.0)), 2.0**53),  # float64 rounding, not exact ints
    ],
)
def test_large_constants_follow_float64(built, expected):
    """Constants beyond 2**53 are floats: exact big-int folding would give values torch cannot take."""
    c = built()
    (out,) = evaluate_tile([c], [], [], slice(0, 1), slice(0, 1), DT, "cpu")
    assert out.item() == expected


# --- differentiation ---------------------------------------------------------------------------


def test_vjp_is_none_when_the_formula_does_not_depend_on_the_variable():
    g = var(9, CAT_I, 3)
    f = make("mul", make("exp", x), p)
    assert vjp(f, [y, s], g) == [None, None]
    # a variable that only enters through piecewise-constant ops
    f2 = make("mul", make("sign", y), make("add", make("floor", s), x))
    assert vjp(f2, [y, s], g) == [None, None]
    # a variable simplified away
    f3 = make("add", make("mul", y, const(0)), x)
    assert f3 is x and vjp(f3, [y], g) == [None]


def test_vjp_dims_and_broadcast_cotangent():
    f = make("mul", make("dot", x, y), s)  # dim 1
    gx, gy, gs = vjp(f, [x, y, s], var(9, CAT_I, 1))
    assert (gx.dim, gy.dim, gs.dim) == (3, 3, 1)
    f = make("mul", x, s)  # dim 3; a scalar cotangent is broadcast
    gx, gs = vjp(f, [x, s], var(9, CAT_I, 1))
    assert (gx.dim, gs.dim) == (3, 1)


# --- property: simplification preserves values -------------------------------------------------

CONSTS = (0, 1, -1, 2, 0.5)


def _pair(op, *ab, attrs=()):
    """``op`` built raw (node) and simplified (make) from (raw, simplified) argument pairs."""
    return node(op, *(a for a, _ in ab), attrs=attrs), make(op, *(b for _, b in ab), attrs=attrs)


def _leaf(draw):
    if draw(st.booleans()):
        v = draw(st.sampled_from(VARS))
    else:
        v = const(draw(st.sampled_from(CONSTS)), draw(st.sampled_from((1, 3))))
    return v, v


@st.composite
def trees(draw, depth=3):
    """A (raw, simplified) pair of random formulas of dim 1 or 3, shaped to meet the rules.

    Ops that amplify rounding errors without bound (log, division, negative powers near 0) only
    appear on arguments kept away from 0, so that both trees agree to ~1e-9 of their magnitude.
    """
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        return _leaf(draw)
    sub = trees(depth - 1)
    a = draw(sub)
    kind = draw(st.sampled_from(
        ["unary", "unary", "binary", "binary", "self", "logexp", "explog", "logpos", "pow", "powneg",
         "div", "div2", "sum", "bcast", "extract", "pad", "dot", "ifelse", "minmax", "scale", "scale", "scale2",
         "shift"]))
    one_plus_sq = lambda u: _pair("add", (const(1), const(1)), _pair("square", u))  # noqa: E731  (>= 1)
    if kind == "unary":
        return _pair(draw(st.sampled_from(["neg", "sin", "tanh", "square", "exp"])), a)
    if kind == "binary":
        return _pair(draw(st.sampled_from(["add", "sub", "mul"])), a, draw(sub))
    if kind in ("scale", "scale2", "shift"):  # constants on either side: folding, reassociation
        for _ in range(2 if kind == "scale2" else 1):
            c = const(draw(st.sampled_from(CONSTS)), draw(st.sampled_from((1, 1, 3))))
            args = [(c, c), a] if draw(st.booleans()) else [a, (c, c)]
            a = _pair(draw(st.sampled_from(["add", "sub"])) if kind == "shift" else "mul", *args)
        return a
    if kind == "self":
        return _pair(draw(st.sampled_from(["add", "sub", "mul"])), a, a)
    if kind == "logexp":
        return _pair("log", _pair("exp", a))
    if kind == "explog":
        return _pair("exp", _pair("log", one_plus_sq(a)))
    if kind == "logpos":
        return _pair("log", one_plus_sq(a))
    if kind == "pow":
        return _pair("pow", a, attrs=(draw(st.integers(0, 3)),))
    if kind == "powneg":  # 2 + sin(a) >= 1
        return _pair("pow", _pair("add", (const(2), const(2)), _pair("sin", a)), attrs=(draw(st.integers(-2, -1)),))
    if kind == "div":
        return _pair("div", a, one_plus_sq(draw(sub)))
    if kind == "div2":  # by a power of two: a product
        c = const(draw(st.sampled_from((2, 0.5, -4))))
        return _pair("div", a, (c, c))
    if kind == "sum":
        return _pair("sum", a)
    if kind == "bcast":
        a = a if a[0].dim == 1 else _pair("sum", a)
        return _pair("bcast", a, attrs=(draw(st.sampled_from((1, 3))),))
    if kind == "extract":
        attrs = (0, 1) if a[0].dim == 1 else draw(st.sampled_from([(0, 3), (0, 1), (1, 1), (2, 1)]))
        return _pair("extract", a, attrs=attrs)
    if kind == "pad":
        attrs = (0, 3) if a[0].dim == 3 else draw(st.sampled_from([(0, 1), (0, 3), (1, 3), (2, 3)]))
        return _pair("pad", a, attrs=attrs)
    if kind == "dot":
        b = draw(sub)
        return _pair("dot", a, b if b[0].dim == a[0].dim else a)
    if kind == "ifelse":  # a leaf condition: no rounding difference can flip a branch
        return _pair("ifelse", _leaf(draw), a, draw(sub))
    return _pair(draw(st.sampled_from(["min2", "max2"])), a, draw(sub))


def _resimplify(f):
    """``f`` rebuilt bottom-up through ``make``."""
    memo = {}
    for n in f.walk():
        memo[id(n)] = n if not n.args else make(n.op, *(memo[id(a)] for a in n.args), attrs=n.attrs)
    return memo[id(f)]


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = {CAT_I: (NI,), CAT_J: (NJ,), CAT_P: ()}
    return [(3 * torch.rand(*shapes[v.attrs[1]], v.dim, generator=g, dtype=DT) - 1.5) for v in VARS]


def _eval(formulas, args):
    outs = evaluate_tile(formulas, args, [v.attrs[1] for v in VARS], slice(0, NI), slice(0, NJ), DT, "cpu")
    return [o.expand(NI, NJ, o.shape[-1]) for o in outs]


def test_a_widened_product_is_a_fixed_point():
    """(y_j 2) * [1, 1, 1] widens 2 y_j to dimension 3: the widening goes through the bcast rules
    (2 bcast(y_j)), so that simplifying the result again changes nothing (found by the property test)."""
    v = var(3, CAT_J, 1)
    f = make("mul", make("mul", v, const(2)), const(1, 3))
    assert _resimplify(f) is f
    assert f is make("mul", const(2), make("bcast", v, attrs=(3,)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pair=trees(), seed=st.integers(0, 2**32 - 1))
def test_simplified_and_raw_formulas_agree(pair, seed):
    raw, simp = pair
    assert simp.dim == raw.dim
    assert _resimplify(raw) is simp  # make(...) is what rebuilding the raw tree with rules gives
    assert _resimplify(simp) is simp  # and a fixed point of the rules
    args = _data(seed)
    inter = list(raw.walk())
    vals = _eval(inter + [simp], args)
    assume(all(torch.isfinite(v).all() for v in vals[:-1]))
    scale = max(v.abs().max().item() for v in vals[:-1])
    assume(scale <= 1e4)  # a bound on rounding amplification (exp, products)
    r, q = vals[inter.index(raw)], vals[-1]
    assert torch.isfinite(q).all()
    err = (r - q).abs().max().item()
    assert err <= 1e-9 * (1 + scale), f"raw {raw} vs simplified {simp}: error {err:.2e} (scale {scale:.1e})"
