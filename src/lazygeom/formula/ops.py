"""Every primitive op of the IR, each described in one place.

An entry gives: the name, the arity, the output-dimension rule, the vector-Jacobian rule (as IR
nodes built with :mod:`lazygeom.formula.algebra`), and a torch reference implementation
``impl(T, *args, attrs)`` on tensors shaped ``(..., dim)`` (``T`` is the torch module).

Composite operations (norms, distances, clamp, powers with a float exponent...) are built from
these primitives in :mod:`lazygeom.formula.composites`; they need no entry here.
"""

from __future__ import annotations

from .algebra import (
    add,
    bcast,
    const,
    div,
    extract,
    ifelse,
    make,
    mul,
    neg,
    pad,
    scal,
    sub,
    unary,
    vsum,
)
from .registry import (NEGATIVE, POSITIVE, UNKNOWN, OpSpec, broadcast_dims, broadcast_shapes, register, same_dim,
                       scalar_dim)


def _reg(name, arity, dim_rule, vjp, impl, domains=None, flat=False, doc="", sign=None):
    register(
        OpSpec(
            name=name,
            arity=arity,
            dim_rule=dim_rule,
            vjp=vjp,
            impl=impl,
            domains=tuple(domains) if domains else ("any",) * (arity or 0),
            flat=flat,
            doc=doc,
            sign=sign,
        )
    )


# --- sign rules (see lazygeom.formula.sign): POSITIVE (>= 0), NEGATIVE (<= 0), UNKNOWN; nan aside.
# Only rules that hold for every non-nan value, infinities and -0.0 included (hence no rule for
# division or inverses: 1 / -0.0 = -inf although -0.0 >= 0).


def _nonneg(s, n):
    return POSITIVE


def _same(s, n):
    return s[0]


def _flip(s, n):
    return -s[0]


def _agree(s, n):
    """All arguments of one known sign: that sign (add, concat, ...)."""
    return s[0] if s[0] != UNKNOWN and all(v == s[0] for v in s) else UNKNOWN


def _product(s, n):
    """Sign of mul and dot: x * x >= 0 (nodes are hash-consed: the same value is the same node)."""
    return POSITIVE if n.args[0] is n.args[1] else s[0] * s[1]  # the signs multiply: +1, -1, 0


def _const_sign(s, n):
    value = n.attrs[0]
    return POSITIVE if value >= 0 else NEGATIVE if value < 0 else UNKNOWN  # nan: unknown


def _no_grad(n, g):
    return (None,) * len(n.args)


# --- leaves -----------------------------------------------------------------------------------

_reg("var", 0, lambda dims, attrs: attrs[2], None, None, doc="variable (index, category, dim)")
_reg("const", 0, lambda dims, attrs: attrs[1], None, None, doc="constant vector (value, dim)",
     sign=_const_sign)

# --- elementwise unary ------------------------------------------------------------------------


def _unary_op(name, impl, vjp, domain="any", flat=False, doc="", sign=None):
    _reg(name, 1, same_dim, vjp if not flat else _no_grad, lambda T, x, attrs: impl(T, x), [domain], flat, doc,
         sign)


def _x(n):
    return n.args[0]


_unary_op("neg", lambda T, x: -x, lambda n, g: (neg(g),), doc="-x", sign=_flip)
_unary_op("exp", lambda T, x: T.exp(x), lambda n, g: (mul(g, n),), doc="exp(x)", sign=_nonneg)
_unary_op("log", lambda T, x: T.log(x), lambda n, g: (div(g, _x(n)),), "pos", doc="log(x)")
_unary_op("sqrt", lambda T, x: T.sqrt(x), lambda n, g: (div(scal(0.5, g), n),), "pos", doc="sqrt(x)",
          sign=_nonneg)
_unary_op(
    "rsqrt",
    lambda T, x: T.rsqrt(x),
    lambda n, g: (mul(scal(-0.5, g), mul(n, unary("square", n))),),
    "pos",
    doc="1/sqrt(x)",  # no sign rule: rsqrt(-0.0) = -inf
)
_unary_op("abs", lambda T, x: T.abs(x), lambda n, g: (mul(g, unary("sign", _x(n))),), "nz", doc="|x|",
          sign=_nonneg)
_unary_op("sign", lambda T, x: T.sign(x), None, flat=True, doc="sign(x) in {-1, 0, 1}")
_unary_op("step", lambda T, x: (x >= 0).to(x.dtype), None, flat=True, doc="1 if x >= 0 else 0", sign=_nonneg)
_unary_op("round", lambda T, x: T.round(x), None, flat=True, doc="round to nearest integer")
_unary_op("floor", lambda T, x: T.floor(x), None, flat=True, doc="floor(x)")
_unary_op("relu", lambda T, x: T.relu(x), lambda n, g: (mul(g, unary("step", _x(n))),), "nz", doc="max(x, 0)",
          sign=_nonneg)
_unary_op("sin", lambda T, x: T.sin(x), lambda n, g: (mul(g, unary("cos", _x(n))),), doc="sin(x)")
_unary_op("cos", lambda T, x: T.cos(x), lambda n, g: (neg(mul(g, unary("sin", _x(n)))),), doc="cos(x)")
_unary_op("tanh", lambda T, x: T.tanh(x), lambda n, g: (mul(g, sub(const(1), unary("square", n))),), doc="tanh(x)")


def _one_minus_sq(x):
    return sub(const(1), unary("square", x))


_unary_op(
    "asin",
    lambda T, x: T.asin(x),
    lambda n, g: (mul(g, unary("rsqrt", _one_minus_sq(_x(n)))),),
    "unit",
    doc="arcsin(x)",
)
_unary_op(
    "acos",
    lambda T, x: T.acos(x),
    lambda n, g: (neg(mul(g, unary("rsqrt", _one_minus_sq(_x(n))))),),
    "unit",
    doc="arccos(x)",
)
_unary_op(
    "atan",
    lambda T, x: T.atan(x),
    lambda n, g: (div(g, add(const(1), unary("square", _x(n)))),),
    doc="arctan(x)",
)
_unary_op("square", lambda T, x: x * x, lambda n, g: (mul(scal(2, g), _x(n)),), doc="x**2", sign=_nonneg)
_unary_op("inv", lambda T, x: 1 / x, lambda n, g: (neg(mul(g, unary("square", n))),), "nz", doc="1/x")
_unary_op("log1p", lambda T, x: T.log1p(x), lambda n, g: (div(g, add(const(1), _x(n))),), "pos", doc="log(1+x)")
_unary_op(
    "xlogx",
    lambda T, x: T.where(x == 0, T.zeros_like(x), x * T.log(x)),
    lambda n, g: (mul(g, add(unary("log", _x(n)), const(1))),),
    "pos",
    doc="x log x (0 at 0)",
)
_unary_op(
    "sinxdivx",
    lambda T, x: T.where(x == 0, T.ones_like(x), T.sin(x) / T.where(x == 0, T.ones_like(x), x)),
    lambda n, g: (mul(g, div(sub(unary("cos", _x(n)), n), _x(n))),),
    "nz",
    doc="sin(x)/x (1 at 0)",
)


def _pow_sign(s, n):
    (k,) = n.attrs  # x**k >= 0 for an even k >= 0; an odd k keeps the sign; k < 0: 1/-0.0 = -inf
    return (POSITIVE if k % 2 == 0 else s[0]) if k >= 0 else UNKNOWN


def _pow_impl(T, x, attrs):
    return x ** attrs[0]


def _pow_vjp(n, g):
    (k,) = n.attrs
    return (mul(scal(k, g), make("pow", _x(n), attrs=(k - 1,))),)


_reg("pow", 1, same_dim, _pow_vjp, _pow_impl, ["nz"], doc="x**k for an integer k",
     sign=_pow_sign)

# --- elementwise binary / ternary -------------------------------------------------------------


def _binary_op(name, impl, vjp, domains=("any", "any"), doc="", sign=None):
    _reg(name, 2, broadcast_dims, vjp, lambda T, a, b, attrs: impl(T, a, b), domains, doc=doc, sign=sign)


_binary_op("add", lambda T, a, b: a + b, lambda n, g: (g, g), doc="a + b", sign=_agree)
_binary_op("sub", lambda T, a, b: a - b, lambda n, g: (g, neg(g)), doc="a - b",
           sign=lambda s, n: _agree((s[0], -s[1]), n))
_binary_op("mul", lambda T, a, b: a * b, lambda n, g: (mul(g, n.args[1]), mul(g, n.args[0])), doc="a * b",
           sign=_product)
_binary_op(
    "div",
    lambda T, a, b: a / b,
    lambda n, g: (div(g, n.args[1]), neg(div(mul(g, n), n.args[1]))),
    ("any", "nz"),
    doc="a / b",
)


def _atan2_vjp(n, g):
    y, x = n.args
    r2 = add(unary("square", x), unary("square", y))
    return (div(mul(g, x), r2), neg(div(mul(g, y), r2)))


_binary_op("atan2", lambda T, y, x: T.atan2(y, x), _atan2_vjp, ("any", "nz"), doc="atan2(y, x)")


def _minmax_vjp(first_wins):
    def vjp(n, g):
        a, b = n.args
        c = first_wins(a, b)  # >= 0 where the first argument is selected
        zero = const(0)
        return (ifelse(c, g, zero), ifelse(c, zero, g))

    return vjp


_binary_op("min2", lambda T, a, b: T.minimum(a, b), _minmax_vjp(lambda a, b: sub(b, a)), doc="elementwise min",
           sign=lambda s, n: NEGATIVE if NEGATIVE in s else _agree(s, n))
_binary_op("max2", lambda T, a, b: T.maximum(a, b), _minmax_vjp(lambda a, b: sub(a, b)), doc="elementwise max",
           sign=lambda s, n: POSITIVE if POSITIVE in s else _agree(s, n))


def _ifelse_vjp(n, g):
    c = n.args[0]
    zero = const(0)
    return (None, ifelse(c, g, zero), ifelse(c, zero, g))


_reg(
    "ifelse",
    3,
    broadcast_dims,
    _ifelse_vjp,
    lambda T, c, a, b, attrs: T.where(c >= 0, a, b),
    ["nz", "any", "any"],
    doc="a if c >= 0 else b",
)

# --- vector ops -------------------------------------------------------------------------------

_reg("sum", 1, scalar_dim, lambda n, g: (bcast(g, _x(n).dim),), lambda T, x, attrs: x.sum(-1, keepdim=True),
     doc="sum over the vector dimension", sign=_same)


def _bcast_dim(dims, attrs):
    if dims[0] != 1:
        raise ValueError(f"bcast expects a scalar argument, got dimension {dims[0]}")
    return attrs[0]


_reg("bcast", 1, _bcast_dim, lambda n, g: (vsum(g),),
     lambda T, x, attrs: x.expand(*x.shape[:-1], attrs[0]), doc="repeat a scalar into a vector", sign=_same)


def _dot_dim(dims, attrs):
    if dims[0] != dims[1]:
        raise ValueError(f"dot product of vectors of different dimensions {dims[0]} and {dims[1]}")
    return 1


_reg("dot", 2, _dot_dim, lambda n, g: (mul(g, n.args[1]), mul(g, n.args[0])),
     lambda T, a, b, attrs: (a * b).sum(-1, keepdim=True), doc="<a, b>", sign=_product)


def _vext_vjp(arg_op):
    def vjp(n, g):
        x = _x(n)
        return (mul(g, make("onehot", make(arg_op, x), attrs=(x.dim,))),)

    return vjp


def _argext_impl(method):
    def impl(T, x, attrs):
        return getattr(x, method)(-1, keepdim=True).to(x.dtype)

    return impl


_reg("vmax", 1, scalar_dim, _vext_vjp("vargmax"), lambda T, x, attrs: x.amax(-1, keepdim=True),
     doc="max over the vector dimension", sign=_same)
_reg("vmin", 1, scalar_dim, _vext_vjp("vargmin"), lambda T, x, attrs: x.amin(-1, keepdim=True),
     doc="min over the vector dimension", sign=_same)
_reg("vargmax", 1, scalar_dim, _no_grad, _argext_impl("argmax"), flat=True,
     doc="argmax over the vector dimension (as a float)")
_reg("vargmin", 1, scalar_dim, _no_grad, _argext_impl("argmin"), flat=True,
     doc="argmin over the vector dimension (as a float)")


def _onehot_dim(dims, attrs):
    if dims[0] != 1:
        raise ValueError(f"onehot expects a scalar index, got dimension {dims[0]}")
    return attrs[0]


def _onehot_impl(T, k, attrs):
    ar = T.arange(attrs[0], device=k.device, dtype=k.dtype)
    return (ar == T.round(k)).to(k.dtype)


_reg("onehot", 1, _onehot_dim, _no_grad, _onehot_impl, flat=True, doc="one-hot vector of a (float) index")


def _extract_dim(dims, attrs):
    start, length = attrs
    if start < 0 or length < 1 or start + length > dims[0]:
        raise ValueError(f"cannot extract [{start}:{start + length}] from a vector of dimension {dims[0]}")
    return length


_reg("extract", 1, _extract_dim, lambda n, g: (pad(g, n.attrs[0], _x(n).dim),),
     lambda T, x, attrs: x[..., attrs[0]: attrs[0] + attrs[1]], doc="x[start:start+length]", sign=_same)


def _pad_dim(dims, attrs):
    start, total = attrs
    if start < 0 or start + dims[0] > total:
        raise ValueError(f"cannot place a vector of dimension {dims[0]} at {start} in dimension {total}")
    return total


def _pad_impl(T, x, attrs):
    start, total = attrs
    return T.nn.functional.pad(x, (start, total - start - x.shape[-1]))


_reg("pad", 1, _pad_dim, lambda n, g: (extract(g, n.attrs[0], _x(n).dim),), _pad_impl,
     doc="zero vector of dimension total with x at [start:...]", sign=_same)

def _concat_impl(T, a, b, attrs):
    shape = broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return T.cat([a.expand(*shape, a.shape[-1]), b.expand(*shape, b.shape[-1])], -1)


_reg(
    "concat",
    2,
    lambda dims, attrs: dims[0] + dims[1],
    lambda n, g: (extract(g, 0, n.args[0].dim), extract(g, n.args[0].dim, n.args[1].dim)),
    _concat_impl,
    doc="[a, b]",
    sign=_agree,
)


def _matvec_dim(dims, attrs):
    a, x = dims
    if a % x != 0:
        raise ValueError(f"matvecmult: matrix of dimension {a} is not a multiple of vector dimension {x}")
    return a // x


def _vecmat_dim(dims, attrs):
    x, a = dims
    if a % x != 0:
        raise ValueError(f"vecmatmult: matrix of dimension {a} is not a multiple of vector dimension {x}")
    return a // x


def _matvec_impl(T, a, x, attrs):
    n = x.shape[-1]
    return (a.unflatten(-1, (a.shape[-1] // n, n)) * x.unsqueeze(-2)).sum(-1)


def _vecmat_impl(T, x, a, attrs):
    m = x.shape[-1]
    return (x.unsqueeze(-1) * a.unflatten(-1, (m, a.shape[-1] // m))).sum(-2)


def _tensorprod_impl(T, x, y, attrs):
    return (x.unsqueeze(-1) * y.unsqueeze(-2)).flatten(-2)


_reg("matvecmult", 2, _matvec_dim,
     lambda n, g: (make("tensorprod", g, n.args[1]), make("vecmatmult", g, n.args[0])),
     _matvec_impl, doc="row-major (m x n) matrix A times vector x")
_reg("vecmatmult", 2, _vecmat_dim,
     lambda n, g: (make("matvecmult", n.args[1], g), make("tensorprod", n.args[0], g)),
     _vecmat_impl, doc="vector x times row-major (m x n) matrix A")
_reg("tensorprod", 2, lambda dims, attrs: dims[0] * dims[1],
     lambda n, g: (make("matvecmult", g, n.args[1]), make("vecmatmult", n.args[0], g)),
     _tensorprod_impl, doc="outer product, flattened row-major")
