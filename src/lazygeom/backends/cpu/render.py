"""C++ renderer: the C++ snippets, and the dialect through which :mod:`..lowering` writes SIMD code.

Every component of every node becomes one ``vec`` (W j-lanes, see ``lgmath.hpp``). The shared
lowering walks the formula; this module says how C++ writes what differs between targets: the
math functions, comparisons, loads (``a{k}`` point to this row's i-variables and to the batch
entry's j-variables and parameters) and temporaries (``const vec t = ...;``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping, Optional

from ...formula import CAT_J, Node
from ...formula.sign import NEGATIVE, signs
from ..lowering import SHARED, Dialect, Lowered, Snippet, ew, fold, lower, pad


def _vargext(maximum: bool) -> Snippet:
    def snippet(args, attrs, dim, tmp):
        name = re.sub(r"\W", "_", f"argext{int(maximum)}_{args[0][0]}")
        pre = [f"const vec {name}[] = {{{', '.join(args[0])}}};"]
        return pre, [f"v_argext({name}, {len(args[0])}, {'true' if maximum else 'false'})"]

    return snippet


def _onehot(args, attrs, dim, tmp):
    k = f"v_round({args[0][0]})"
    return [], [f"vsel({k} == bc({i}), bc(1), bc(0))" for i in range(dim)]


CPP: Mapping[str, Snippet] = {
    **SHARED,
    "exp": ew("v_exp({0})"),
    "log": ew("v_log({0})"),
    "sqrt": ew("v_sqrt({0})"),
    "rsqrt": ew("(bc(1) / v_sqrt({0}))"),
    "abs": ew("v_abs({0})"),
    "sign": ew("v_sign({0})"),
    "step": ew("v_step({0})"),
    "round": ew("v_round({0})"),
    "floor": ew("v_floor({0})"),
    "relu": ew("v_relu({0})"),
    "sin": ew("v_sin({0})"),
    "cos": ew("v_cos({0})"),
    "tanh": ew("v_tanh({0})"),
    "asin": ew("v_asin({0})"),
    "acos": ew("v_acos({0})"),
    "atan": ew("v_atan({0})"),
    "inv": ew("(bc(1) / {0})"),
    "log1p": ew("v_log1p({0})"),
    "xlogx": ew("v_xlogx({0})"),
    "sinxdivx": ew("v_sinxdivx({0})"),
    "pow": ew("v_powi({0}, {1})"),
    "atan2": ew("v_atan2({0}, {1})"),
    "min2": ew("v_min({0}, {1})"),
    "max2": ew("v_max({0}, {1})"),
    "ifelse": ew("vsel({0} >= 0, {1}, {2})"),
    "vmax": fold("v_max({acc}, {c})"),
    "vmin": fold("v_min({acc}, {c})"),
    "vargmax": _vargext(True),
    "vargmin": _vargext(False),
    "onehot": _onehot,
    "pad": pad("bc(0)"),
}


#: cheaper snippets for an op whose (first) argument is known to be <= 0 (nan aside): exp(-|x - y|^2)
#: needs no overflow clamp (``v_exp_nonpos``, exact there)
NONPOSITIVE_ARG: Mapping[str, Snippet] = {"exp": ew("v_exp_nonpos({0})")}


def _lit(value: float) -> str:
    if value == float("inf"):
        return "bc(LG_INF)"
    if value == float("-inf"):
        return "bc(-LG_INF)"
    return f"bc((scalar){float(value)!r})"


#: C++ for :func:`..lowering.lower`: ``a{k}`` point to this row's i-variables, and to the batch
#: entry's j-variables (``vload`` of W lanes) and parameters; broadcasts of a name or a literal
#: (``bc(...)`` with no call inside) and constants need no temporary: the compiler folds them
DIALECT = Dialect(
    name="C++",
    snippets=CPP,
    load=lambda index, cat, comp: (f"vload(a{index} + {comp} * njp + j)" if cat == CAT_J
                                   else f"bc(a{index}[{comp}])"),
    constant=lambda value, dim, name: ([], [_lit(value)] * dim),
    assign="const vec {name} = {expr};",
    is_value=lambda expr: expr.startswith("bc(") and expr.count("(") == 1,
)


def render(formulas: list[Node]) -> Lowered:
    """Render formulas into C++.

    The sign analysis of the formulas picks the cheaper snippets of :data:`NONPOSITIVE_ARG`.

    Args:
        formulas: the formulas.

    Returns:
        ``(hoisted, body, outputs)``: statements that depend on i and parameters only (placed
        before the j loop), statements of the j loop (j-variable loads and the formula), and the
        component names of each formula's value.
    """
    sign = signs(formulas)

    def special(n: Node) -> Optional[Snippet]:
        if n.op in NONPOSITIVE_ARG and sign[id(n.args[0])] == NEGATIVE:
            return NONPOSITIVE_ARG[n.op]
        return None

    return lower(formulas, replace(DIALECT, special=special))
