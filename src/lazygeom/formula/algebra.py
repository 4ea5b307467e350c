"""Smart constructors: build nodes through the simplification rules.

Everything that builds formulas (the front end, vector-Jacobian rules, composite ops) goes through
:func:`make`, which applies the rewrite rules of :mod:`lazygeom.formula.simplify` before interning.
This keeps gradients small: a zero cotangent prunes a whole branch, ``x * 1`` disappears, and
constant sub-expressions fold.
"""

from __future__ import annotations

from typing import Optional

from .node import Node, check, const, node


def make(op: str, *args: Node, attrs: tuple = ()) -> Node:
    """Build ``op(*args)``, simplified.

    Args:
        op: a registered op name.
        *args: the argument nodes.
        attrs: the op's static attributes.

    Raises:
        KeyError: for an unknown op.
        TypeError: for a wrong number of arguments.
        ValueError: for incompatible dimensions or invalid attributes.
    """
    from .simplify import simplify_step

    # Validate first: a rule that fires (dot(0, y) -> 0, extract of a constant...) must not hide
    # an arity or dimension error that the unsimplified node reports.
    check(op, args, tuple(attrs))
    out = simplify_step(op, args, tuple(attrs))
    return out if out is not None else node(op, *args, attrs=attrs)


def zeros(dim: int) -> Node:
    """The constant 0 of dimension ``dim``."""
    return const(0, dim)


def ones(dim: int) -> Node:
    """The constant 1 of dimension ``dim``."""
    return const(1, dim)


# Thin named wrappers, used by vjp rules and composites for readability.
def add(a: Node, b: Node) -> Node:
    """``a + b``, simplified."""
    return make("add", a, b)


def sub(a: Node, b: Node) -> Node:
    """``a - b``, simplified."""
    return make("sub", a, b)


def mul(a: Node, b: Node) -> Node:
    """``a * b``, simplified."""
    return make("mul", a, b)


def div(a: Node, b: Node) -> Node:
    """``a / b``, simplified."""
    return make("div", a, b)


def neg(a: Node) -> Node:
    """``-a``, simplified."""
    return make("neg", a)


def unary(op: str, a: Node) -> Node:
    """The one-argument op ``op(a)``, simplified."""
    return make(op, a)


def scal(c: float, a: Node) -> Node:
    """``c * a`` for a Python number ``c``."""
    return mul(const(c), a)


def vsum(a: Node) -> Node:
    """The sum of the components of ``a`` (dimension 1), simplified."""
    return make("sum", a)


def bcast(a: Node, dim: int) -> Node:
    """``a`` (dimension 1) broadcast to dimension ``dim``."""
    return make("bcast", a, attrs=(dim,))


def ifelse(c: Node, a: Node, b: Node) -> Node:
    """``a if c >= 0 else b``, simplified."""
    return make("ifelse", c, a, b)


def dot(a: Node, b: Node) -> Node:
    """The dot product of ``a`` and ``b``, simplified."""
    return make("dot", a, b)


def extract(a: Node, start: int, length: int) -> Node:
    """The components ``start:start + length`` of ``a``."""
    return make("extract", a, attrs=(start, length))


def pad(a: Node, start: int, total: int) -> Node:
    """``a`` placed at ``start`` in a zero vector of dimension ``total``."""
    return make("pad", a, attrs=(start, total))


def add_opt(a: Optional[Node], b: Optional[Node]) -> Optional[Node]:
    """Sum of two optional cotangents (None stands for zero)."""
    if a is None:
        return b
    if b is None:
        return a
    return add(a, b)


def mul_opt(g: Optional[Node], b: Node) -> Optional[Node]:
    """``g * b``, or None (zero) when ``g`` is None."""
    return None if g is None else mul(g, b)


def fit_dim(ct: Node, dim: int) -> Node:
    """Adapt a cotangent to the dimension of the argument it belongs to.

    An argument of dimension 1 broadcast against dimension D receives the sum of the D-dimensional
    cotangent; a cotangent of dimension 1 for a D-dimensional argument is broadcast.
    """
    if ct.dim == dim:
        return ct
    if dim == 1:
        return vsum(ct)
    if ct.dim == 1:
        return bcast(ct, dim)
    raise ValueError(f"internal error: cotangent of dimension {ct.dim} for an argument of dimension {dim}")
