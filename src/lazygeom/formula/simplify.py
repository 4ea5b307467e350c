"""Local rewrite rules, applied by :func:`lazygeom.formula.algebra.make` at construction.

Each rule looks at one candidate node ``op(*args)`` and either returns a simpler equivalent node
or None. Rules are listed per op; the first that fires wins, and the constructors it calls apply
the rules again, so rewriting proceeds to a fixed point bottom-up.

All rules preserve the output dimension: a rule that would shrink ``x * 0`` (dim D) to a scalar
zero returns ``const(0, D)`` instead.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from .node import CAT_J, Node, const, is_const, walk_many
from .registry import broadcast_dims

Rule = Callable[[tuple, tuple], Optional[Node]]


def _cval(n: Node):
    return n.attrs[0]


def _fold_binary(fn) -> Rule:
    def rule(args, attrs):
        a, b = args
        if is_const(a) and is_const(b):
            return const(fn(_cval(a), _cval(b)), broadcast_dims((a.dim, b.dim)))
        return None

    return rule


def _fold_unary(fn) -> Rule:
    def rule(args, attrs):
        (a,) = args
        if is_const(a):
            try:
                return const(fn(_cval(a)), a.dim)
            except (ValueError, ZeroDivisionError, OverflowError):
                return None  # leave e.g. log(0) to the run time, which gives -inf
        return None

    return rule


def _widen(x: Node, dim: int) -> Node:
    """``x`` as a node of dimension ``dim`` (x has dim or 1)."""
    if x.dim == dim:
        return x
    if is_const(x):
        return const(_cval(x), dim)
    from .algebra import bcast

    return bcast(x, dim)  # through the bcast rules: j-free factors move out (a fixed point of make)


def _add_rules(args, attrs):
    a, b = args
    d = broadcast_dims((a.dim, b.dim))
    if is_const(a, 0):
        return _widen(b, d)
    if is_const(b, 0):
        return _widen(a, d)
    if a is b:
        from .algebra import mul

        return mul(const(2), a)
    return None


def _sub_rules(args, attrs):
    a, b = args
    d = broadcast_dims((a.dim, b.dim))
    if is_const(b, 0):
        return _widen(a, d)
    if is_const(a, 0):
        from .algebra import neg

        return _widen(neg(b), d)
    if a is b:
        return const(0, d)
    return None


def _mul_rules(args, attrs):
    a, b = args
    d = broadcast_dims((a.dim, b.dim))
    if is_const(a, 0) or is_const(b, 0):
        return const(0, d)
    if is_const(a, 1):
        return _widen(b, d)
    if is_const(b, 1):
        return _widen(a, d)
    if is_const(a, -1):
        from .algebra import neg

        return _widen(neg(b), d)
    if is_const(b, -1):
        from .algebra import neg

        return _widen(neg(a), d)
    # keep constants on the left so that c1 * (c2 * x) folds
    if is_const(b) and not is_const(a):
        from .algebra import mul

        return mul(b, a)
    if is_const(a) and b.op == "mul" and is_const(b.args[0]):
        from .algebra import mul

        if a.dim == 1 and b.args[0].dim == 1:
            return mul(const(_cval(a) * _cval(b.args[0]), 1), b.args[1])
    # (2^k x) y == x (2^k y) exactly: when y does not depend on j, the product 2^k y is computed
    # once per row instead of once per pair (e.g. |x - y|^2 / 2 * (1 / eps))
    for u, v in ((a, b), (b, a)):
        if u.op == "mul" and _power_of_two(u.args[0]) and not is_const(v) and not is_const(u.args[1]) \
                and _j_free(v) and not _j_free(u.args[1]):
            from .algebra import mul

            return mul(u.args[1], mul(u.args[0], v))
    # (-x) y == x (-y): the negation of a j-free y is computed once per row
    for u, v in ((a, b), (b, a)):
        if u.op == "neg" and not is_const(v) and _j_free(v) and not _j_free(u.args[0]):
            from .algebra import mul, neg

            return mul(u.args[0], neg(v))
    # 2^k (x y) == x (2^k y) likewise (a gradient's 2 (x (0.5 / eps)) becomes x (1 / eps))
    if _power_of_two(a) and b.op == "mul":
        for x, y in (b.args, b.args[::-1]):
            if not is_const(y) and _j_free(y) and not _j_free(x):
                from .algebra import mul

                return mul(x, mul(a, y))
    return None


def _j_free(n: Node) -> bool:
    """Whether the formula ``n`` reads no j-variable (its value is the same for every j)."""
    return not any(m.op == "var" and m.attrs[1] == CAT_J for m in walk_many([n]))


def _power_of_two(n: Node) -> bool:
    """A scalar constant ±2^k whose inverse is a normal float32 number too."""
    if not (is_const(n) and n.dim == 1):
        return False
    c = _cval(n)
    return isinstance(c, (int, float)) and c != 0 and math.isfinite(c) and abs(math.frexp(c)[0]) == 0.5 \
        and -126 <= math.frexp(c)[1] - 1 <= 127


def _div_rules(args, attrs):
    a, b = args
    d = broadcast_dims((a.dim, b.dim))
    if is_const(b, 1):
        return _widen(a, d)
    if _power_of_two(b) and not is_const(a):
        # x / 2^k == 2^-k * x exactly; as a product the constant folds with its neighbours
        # (a gradient's (g / 2) * 2 disappears) and costs a multiply instead of a division
        from .algebra import mul

        return mul(const(1.0 / _cval(b), 1), a)
    if is_const(a, 0) and not is_const(b, 0):
        return const(0, d)
    return None


def _neg_rules(args, attrs):
    (a,) = args
    if a.op == "neg":
        return a.args[0]
    if is_const(a):
        return const(-_cval(a), a.dim)
    return None


def _exp_rules(args, attrs):
    (a,) = args
    if a.op == "log":
        return a.args[0]
    return _fold_unary(math.exp)(args, attrs)


def _log_rules(args, attrs):
    (a,) = args
    if a.op == "exp":
        return a.args[0]
    return _fold_unary(math.log)(args, attrs)


def _pow_rules(args, attrs):
    (a,) = args
    (n,) = attrs
    if n == 1:
        return a
    if n == 0:
        return const(1, a.dim)
    if n == 2:
        from .algebra import unary

        return unary("square", a)
    if n == -1:
        from .algebra import unary

        return unary("inv", a)
    # through _fold_unary: 0 ** -2 raises ZeroDivisionError, left to the run time (inf)
    return _fold_unary(lambda c: c ** n)(args, attrs)


def _sum_rules(args, attrs):
    (a,) = args
    if a.dim == 1:
        return a
    if is_const(a):
        return const(_cval(a) * a.dim, 1)
    return None


def _bcast_rules(args, attrs):
    (a,) = args
    (d,) = attrs
    if a.dim == d:
        return a
    if is_const(a):
        return const(_cval(a), d)
    if a.op == "mul":
        # bcast(x y) == bcast(x) y for a constant or j-free y: the factor moves out, where it can
        # fold with others (the gradient of a sum of squares: 2 bcast(g (0.5 / eps)))
        for x, y in (a.args, a.args[::-1]):
            if _j_free(y) and not _j_free(x):
                from .algebra import bcast, mul

                return mul(y, bcast(x, d)) if is_const(y) else mul(bcast(x, d), y)
    if a.dim != 1:
        raise ValueError(f"bcast: only dimension 1 broadcasts, got dimension {a.dim} -> {d}")
    return None


def _extract_rules(args, attrs):
    (a,) = args
    start, length = attrs
    if start == 0 and length == a.dim:
        return a
    if is_const(a):
        return const(_cval(a), length)
    return None


def _pad_rules(args, attrs):
    (a,) = args
    start, total = attrs
    if start == 0 and total == a.dim:
        return a
    if is_const(a, 0):
        return const(0, total)
    return None


def _ifelse_rules(args, attrs):
    c, a, b = args
    d = broadcast_dims((c.dim, a.dim, b.dim))
    if a is b:
        return _widen(a, d)
    if is_const(c):
        return _widen(a if _cval(c) >= 0 else b, d)
    return None


def _dot_rules(args, attrs):
    a, b = args
    if is_const(a, 0) or is_const(b, 0):
        return const(0, 1)
    return None


RULES: dict[str, list[Rule]] = {
    "add": [_add_rules, _fold_binary(lambda x, y: x + y)],
    "sub": [_sub_rules, _fold_binary(lambda x, y: x - y)],
    "mul": [_mul_rules, _fold_binary(lambda x, y: x * y)],
    "div": [_div_rules],
    "neg": [_neg_rules],
    "exp": [_exp_rules],
    "log": [_log_rules],
    "pow": [_pow_rules],
    "sum": [_sum_rules],
    "bcast": [_bcast_rules],
    "extract": [_extract_rules],
    "pad": [_pad_rules],
    "ifelse": [_ifelse_rules],
    "dot": [_dot_rules],
    "square": [_fold_unary(lambda x: x * x)],
    "sqrt": [_fold_unary(math.sqrt)],
}


def simplify_step(op: str, args: tuple, attrs: tuple) -> Optional[Node]:
    """Return a simpler node equivalent to ``op(*args)``, or None when no rule applies."""
    for rule in RULES.get(op, ()):
        out = rule(args, attrs)
        if out is not None:
            return out
    return None
