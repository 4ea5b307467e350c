"""Gradients of reductions, as new formulas (docs/mathematics.md section 2).

For the Sum-like kinds the gradient with respect to a variable z is a Sum reduction of a
vector-Jacobian product::

    sum:   d/dz = sum_j VJP_z[F](g)
    lse:   d/dz = sum_j VJP_z[exp(F - O) * w](g)             (O: the saved output, w = 1 if absent)
    ssmw:  d/dz = sum_j VJP_z[exp(F - L) * (V - O)](g)       (L = LSE_j F, O: the saved output)

where g, L and O are *constants* of the VJP: extra i-variables appended after the formula's own.
``exp(F - L) <= 1``, so these are safe in floating point.

For the min/max/K-min values, the gradient only flows through the selected pairs; it is the VJP
of F evaluated at (i, k_i), a gather (:func:`pair_formula`).
"""

from __future__ import annotations

from typing import Callable, Optional

from ..formula import CAT_I, CAT_J, Node, make, recategorize, var, vjp
from .kinds import KindTable, Reduction


def num_vars(*formulas: Node) -> int:
    """1 + the largest variable index used in the formulas (0 if none).

    Args:
        *formulas: the formulas.
    """
    idx = [n.attrs[0] for f in formulas for n in f.walk() if n.op == "var"]
    return max(idx) + 1 if idx else 0


def _sum_target(red: Reduction, extra: Callable[[str, int], Node]) -> Node:
    return red.formula


def _lse_target(red: Reduction, extra: Callable[[str, int], Node]) -> Node:
    P = make("exp", make("sub", red.formula, extra("output", red.out_dim)))
    return P if red.weight is None else make("mul", P, red.weight)


def _ssmw_target(red: Reduction, extra: Callable[[str, int], Node]) -> Node:
    F = red.formula
    P = make("exp", make("sub", F, extra("lse", F.dim)))
    return make("mul", P, make("sub", red.weight, extra("output", red.out_dim)))


#: per Sum-like kind: the formula whose vector-Jacobian product is summed over j, built with
#: ``extra(name, dim)``, which appends an i-variable holding a saved quantity
SUM_LIKE_TARGETS: KindTable[Callable[[Reduction, Callable[[str, int], Node]], Node]] = KindTable(
    "the Sum-like gradient", {"sum": _sum_target, "lse": _lse_target, "ssmw": _ssmw_target})


def sum_like_grad_formula(red: Reduction, wrt: list[Node], n_args: int) -> tuple[list[Optional[Node]], dict[str, int]]:
    """Gradient formulas of a Sum-like reduction (sum, lse, ssmw).

    Args:
        red: the reduction (over j).
        wrt: the variable nodes to differentiate against.
        n_args: the number of arguments of the forward call; new variables are numbered from it.

    Returns:
        ``(grads, extras)``: one formula (or None) per entry of ``wrt``, to be Sum-reduced over j,
        and the extra i-variables it uses, in order, as ``{name: index}``: ``"g"`` the cotangent,
        ``"output"`` the saved output, ``"lse"`` LSE_j F (the dimension of F).
    """
    extras: dict[str, int] = {}

    def extra(name: str, dim: int) -> Node:
        extras[name] = n_args + len(extras)
        return var(extras[name], CAT_I, dim)

    g = extra("g", red.out_dim)
    return vjp(SUM_LIKE_TARGETS.hook(red.kind)(red, extra), wrt, g), extras


def pair_formula(f: Node) -> Node:
    """A formula evaluated at gathered pairs: F(x_i, y_{k_i}).

    Args:
        f: the formula.

    Returns:
        ``f`` with every j-variable turned into an i-variable (of gathered rows).
    """
    cats = {n.attrs[0]: CAT_I for n in f.walk() if n.op == "var" and n.attrs[1] == CAT_J}
    return recategorize(f, cats)


def selection_grad_formulas(red: Reduction, e: int, wrt: list[Node], n_args: int) -> list[Optional[Node]]:
    """Gradient formulas for coordinate ``e`` of a min/max/K-min value output.

    Args:
        red: the reduction (a selection).
        e: the coordinate.
        wrt: the variable nodes to differentiate against.
        n_args: the number of arguments of the forward call: the cotangent is i-variable number
            ``n_args`` (dimension 1).

    Returns:
        One formula per ``wrt`` (or None), over i-variables only (j-variables recategorized to
        gathered i-variables).
    """
    F = red.formula
    Fe = F if F.dim == 1 else make("extract", F, attrs=(e, 1))
    g = var(n_args, CAT_I, 1)
    return vjp(pair_formula(Fe), [pair_formula(z) for z in wrt], g)
