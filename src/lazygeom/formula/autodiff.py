"""Symbolic reverse-mode differentiation of formulas.

:func:`vjp` returns, for each requested variable, the formula of the vector-Jacobian product
``(dF/dz)^T g`` where ``g`` is a cotangent formula of the output's dimension. The result is a
formula like any other, so it can be reduced, compiled and differentiated again.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .algebra import add_opt, fit_dim, zeros
from .node import Node
from .registry import get_op


def vjp(f: Node, wrt: Sequence[Node], g: Node) -> list[Optional[Node]]:
    """Cotangents of the leaves ``wrt`` for the output cotangent ``g``.

    Args:
        f: the formula.
        wrt: leaf nodes (variables) of ``f``.
        g: cotangent formula, of dimension ``f.dim`` (or 1, broadcast).

    Returns:
        One formula per entry of ``wrt``, of that leaf's dimension, or None where the gradient is
        identically zero (the leaf does not appear, or only through piecewise-constant ops).
    """
    order = list(f.walk())  # children before parents
    ct: dict[int, Node] = {id(f): fit_dim(g, f.dim)}
    for n in reversed(order):
        gn = ct.get(id(n))
        if gn is None or not n.args:
            continue
        spec = get_op(n.op)
        if spec.vjp is None:
            raise NotImplementedError(f"op {n.op!r} has no vector-Jacobian rule")
        for a, ca in zip(n.args, spec.vjp(n, gn)):
            if ca is not None:
                ct[id(a)] = add_opt(ct.get(id(a)), fit_dim(ca, a.dim))
    out: list[Optional[Node]] = []
    for z in wrt:
        c = ct.get(id(z))
        if c is not None and c.op == "const" and c.attrs[0] == 0:
            c = None
        out.append(c)
    return out


def grad_or_zero(f: Node, z: Node, g: Node) -> Node:
    """Like :func:`vjp` for one leaf, with an explicit zero formula instead of None."""
    (c,) = vjp(f, [z], g)
    return zeros(z.dim) if c is None else c
