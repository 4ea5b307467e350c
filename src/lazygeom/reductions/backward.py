"""Gradients of reductions, as new formulas (ALGORITHMS.md section 1).

For the Sum-like kinds the gradient with respect to a variable z is a Sum reduction of a
vector-Jacobian product::

    sum:   d/dz = sum_j VJP_z[F](g)
    lse:   d/dz = sum_j VJP_z[exp(F - L) * w](g)             (L: the saved output, w = 1 if absent)
    ssmw:  d/dz = sum_j VJP_z[exp(F - L) * (V - O)](g)       (L = LSE_j F, O: the saved output)

where g, L and O are *constants* of the VJP: extra i-variables appended after the formula's own.
``exp(F - L) <= 1``, so these are safe in floating point.

For the min/max/K-min values, the gradient only flows through the selected pairs; it is the VJP
of F evaluated at (i, k_i), a gather (:func:`pair_formula`).
"""

from __future__ import annotations

from ..formula import CAT_I, CAT_J, Node, make, recategorize, var, vjp
from .kinds import Reduction


def num_vars(*formulas: Node) -> int:
    """1 + the largest variable index used in the formulas (0 if none)."""
    idx = [n.attrs[0] for f in formulas for n in f.walk() if n.op == "var"]
    return max(idx) + 1 if idx else 0


def sum_like_grad_formula(red: Reduction, wrt: list[Node], n_args: int) -> tuple[list, dict]:
    """Gradient formulas of a sum/lse/ssmw reduction.

    Args:
        red: the reduction (over j).
        wrt: the variable nodes to differentiate against.
        n_args: the number of arguments of the forward call; new variables are numbered from it.

    Returns:
        ``(grads, extras)``: one formula (or None) per entry of ``wrt``, to be Sum-reduced over j,
        and the extra i-variables it uses, as ``{"g"|"L"|"O": index}``.
    """
    E = red.out_dim
    g = var(n_args, CAT_I, E)
    extras = {"g": n_args}
    F = red.formula
    if red.kind == "sum":
        H = F
    else:
        # lse: L is the saved output (dimension E); ssmw: L = LSE_j F (dimension of F)
        L = var(n_args + 1, CAT_I, E if red.kind == "lse" else F.dim)
        extras["L"] = n_args + 1
        P = make("exp", make("sub", F, L))
        if red.kind == "lse":
            H = P if red.weight is None else make("mul", P, red.weight)
        elif red.kind == "ssmw":
            O = var(n_args + 2, CAT_I, E)
            extras["O"] = n_args + 2
            H = make("mul", P, make("sub", red.weight, O))
        else:  # pragma: no cover - guarded by the caller
            raise ValueError(red.kind)
    return vjp(H, wrt, g), extras


def pair_formula(f: Node) -> Node:
    """``f`` with every j-variable turned into an i-variable: F(x_i, y_{k_i}) on gathered rows."""
    cats = {n.attrs[0]: CAT_I for n in f.walk() if n.op == "var" and n.attrs[1] == CAT_J}
    return recategorize(f, cats)


def selection_grad_formulas(red: Reduction, e: int, wrt: list[Node], n_args: int):
    """Gradient formulas for coordinate ``e`` of a min/max/K-min value output.

    Returns one formula per ``wrt`` (or None), over i-variables only (j-variables recategorized to
    gathered i-variables), with the cotangent as i-variable number ``n_args`` (dimension 1).
    """
    F = red.formula
    Fe = F if F.dim == 1 else make("extract", F, attrs=(e, 1))
    g = var(n_args, CAT_I, 1)
    return vjp(pair_formula(Fe), [pair_formula(z) for z in wrt], g)
