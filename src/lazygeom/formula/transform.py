"""Whole-formula transforms: substitution of leaves and relabelling of variables."""

from __future__ import annotations

from typing import Callable, Optional

from .algebra import make
from .node import CAT_I, CAT_J, Node, var


def substitute(f: Node, leaf_map: Callable[[Node], Optional[Node]]) -> Node:
    """Rebuild ``f`` with every leaf ``n`` replaced by ``leaf_map(n)`` (kept when it returns None).

    The rebuilt formula goes through the simplification rules again.

    Args:
        f: the formula.
        leaf_map: the new node of a leaf (a variable or a constant), or None to keep it.
    """
    memo: dict[int, Node] = {}
    for n in f.walk():
        if not n.args:
            new = leaf_map(n)
            memo[id(n)] = n if new is None else new
        else:
            args = tuple(memo[id(a)] for a in n.args)
            memo[id(n)] = n if all(x is y for x, y in zip(args, n.args)) else make(n.op, *args, attrs=n.attrs)
    return memo[id(f)]


def swap_ij(f: Node) -> Node:
    """The same formula with the roles of i- and j-variables exchanged (for dim=0 reductions).

    Args:
        f: the formula.
    """

    def leaf(n: Node) -> Optional[Node]:
        if n.op != "var":
            return None
        index, cat, dim = n.attrs
        if cat == CAT_I:
            return var(index, CAT_J, dim)
        if cat == CAT_J:
            return var(index, CAT_I, dim)
        return None

    return substitute(f, leaf)


def recategorize(f: Node, cats: dict[int, int]) -> Node:
    """Change the category of variables by index.

    Args:
        f: the formula.
        cats: ``{index: new_cat}``.
    """

    def leaf(n: Node) -> Optional[Node]:
        if n.op == "var" and n.attrs[0] in cats:
            return var(n.attrs[0], cats[n.attrs[0]], n.attrs[2])
        return None

    return substitute(f, leaf)
