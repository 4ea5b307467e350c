"""Composite operations, built from the primitives of :mod:`lazygeom.formula.ops`.

They need no entry in the registry: their evaluation, code generation and gradients follow from
the primitives they expand to.
"""

from __future__ import annotations

from typing import Optional

from .algebra import dot, make, mul, sub, unary
from .node import Node


def sqnorm2(x: Node) -> Node:
    """|x|^2."""
    return dot(x, x)


def norm2(x: Node) -> Node:
    """|x|."""
    return unary("sqrt", dot(x, x))


def normalize(x: Node) -> Node:
    """``x / |x|``."""
    return mul(x, unary("rsqrt", dot(x, x)))


def sqdist(x: Node, y: Node) -> Node:
    """|x - y|^2."""
    return sqnorm2(sub(x, y))


def weightedsqnorm(s: Node, x: Node) -> Node:
    """Weighted squared norm: s|x|^2 (s scalar), sum_k s_k x_k^2 (diagonal), x^T S x (full D*D)."""
    d = x.dim
    if s.dim == 1:
        return mul(s, sqnorm2(x))
    if s.dim == d:
        return dot(s, unary("square", x))
    if s.dim == d * d:
        return dot(x, make("matvecmult", s, x))
    raise ValueError(
        f"weightedsqnorm: weights of dimension {s.dim} do not fit vectors of dimension {d} "
        f"(expected 1, {d} or {d * d})"
    )


def weightedsqdist(s: Node, x: Node, y: Node) -> Node:
    """Weighted squared distance between x and y (see :func:`weightedsqnorm`)."""
    return weightedsqnorm(s, sub(x, y))


def clamp(x: Node, a: Node, b: Node) -> Node:
    """min(max(x, a), b)."""
    return make("min2", make("max2", x, a), b)


def powf(x: Node, y: Node) -> Node:
    """``x ** y = exp(y log x)``, for x > 0."""
    return unary("exp", mul(y, unary("log", x)))


def sqrt_or_pow(x: Node, exponent: float) -> Optional[Node]:
    """``x ** exponent`` for a constant exponent with an exact primitive (int, 1/2, -1/2); else None."""
    if float(exponent).is_integer():
        return make("pow", x, attrs=(int(exponent),))
    if exponent == 0.5:
        return unary("sqrt", x)
    if exponent == -0.5:
        return unary("rsqrt", x)
    return None
