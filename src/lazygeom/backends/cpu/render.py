"""C++ renderer: the op -> snippet table and the rendering of a formula into SIMD statements.

Every component of every node becomes one ``vec`` (W j-lanes, see ``lgmath.hpp``). A snippet
receives the C++ names of its arguments' components and the node's attributes, and returns the
expressions of its output components (plus, rarely, statements to emit before them).
"""

from __future__ import annotations

import re
from typing import Callable

from ...formula import CAT_J, Node, walk_many
from ...formula.sign import NEGATIVE, signs

Components = list[str]
Snippet = Callable[[list[Components], tuple, int], tuple[list[str], Components]]


def _ew(template: str) -> Snippet:
    """Elementwise op; an argument of dimension 1 is broadcast."""

    def snippet(args: list[Components], attrs: tuple, dim: int):
        out = []
        for k in range(dim):
            comps = [a[k] if len(a) > 1 else a[0] for a in args]
            out.append(template.format(*comps, *attrs))
        return [], out

    return snippet


def _sum(args, attrs, dim):
    return [], ["(" + " + ".join(args[0]) + ")"]


def _dot(args, attrs, dim):
    a, b = args
    return [], ["(" + " + ".join(f"{x} * {y}" for x, y in zip(a, b)) + ")"]


def _bcast(args, attrs, dim):
    return [], [args[0][0]] * dim


def _vext(fn: str) -> Snippet:
    def snippet(args, attrs, dim):
        expr = args[0][0]
        for c in args[0][1:]:
            expr = f"{fn}({expr}, {c})"
        return [], [expr]

    return snippet


def _vargext(maximum: bool) -> Snippet:
    def snippet(args, attrs, dim):
        name = re.sub(r"\W", "_", f"argext{int(maximum)}_{args[0][0]}")
        pre = [f"const vec {name}[] = {{{', '.join(args[0])}}};"]
        return pre, [f"v_argext({name}, {len(args[0])}, {'true' if maximum else 'false'})"]

    return snippet


def _onehot(args, attrs, dim):
    k = f"v_round({args[0][0]})"
    return [], [f"vsel({k} == bc({i}), bc(1), bc(0))" for i in range(dim)]


def _extract(args, attrs, dim):
    start, length = attrs
    return [], args[0][start: start + length]


def _pad(args, attrs, dim):
    start, total = attrs
    a = args[0]
    return [], ["bc(0)"] * start + a + ["bc(0)"] * (total - start - len(a))


def _concat(args, attrs, dim):
    return [], args[0] + args[1]


def _matvec(args, attrs, dim):
    A, x = args
    n = len(x)
    return [], ["(" + " + ".join(f"{A[i * n + k]} * {x[k]}" for k in range(n)) + ")" for i in range(dim)]


def _vecmat(args, attrs, dim):
    x, A = args
    m = len(x)
    return [], ["(" + " + ".join(f"{x[i]} * {A[i * dim + k]}" for i in range(m)) + ")" for k in range(dim)]


def _tensorprod(args, attrs, dim):
    x, y = args
    return [], [f"{a} * {b}" for a in x for b in y]


CPP: dict[str, Snippet] = {
    "neg": _ew("(-{0})"),
    "exp": _ew("v_exp({0})"),
    "log": _ew("v_log({0})"),
    "sqrt": _ew("v_sqrt({0})"),
    "rsqrt": _ew("(bc(1) / v_sqrt({0}))"),
    "abs": _ew("v_abs({0})"),
    "sign": _ew("v_sign({0})"),
    "step": _ew("v_step({0})"),
    "round": _ew("v_round({0})"),
    "floor": _ew("v_floor({0})"),
    "relu": _ew("v_relu({0})"),
    "sin": _ew("v_sin({0})"),
    "cos": _ew("v_cos({0})"),
    "tanh": _ew("v_tanh({0})"),
    "asin": _ew("v_asin({0})"),
    "acos": _ew("v_acos({0})"),
    "atan": _ew("v_atan({0})"),
    "square": _ew("({0} * {0})"),
    "inv": _ew("(bc(1) / {0})"),
    "log1p": _ew("v_log1p({0})"),
    "xlogx": _ew("v_xlogx({0})"),
    "sinxdivx": _ew("v_sinxdivx({0})"),
    "pow": _ew("v_powi({0}, {1})"),
    "add": _ew("({0} + {1})"),
    "sub": _ew("({0} - {1})"),
    "mul": _ew("({0} * {1})"),
    "div": _ew("({0} / {1})"),
    "atan2": _ew("v_atan2({0}, {1})"),
    "min2": _ew("v_min({0}, {1})"),
    "max2": _ew("v_max({0}, {1})"),
    "ifelse": _ew("vsel({0} >= 0, {1}, {2})"),
    "sum": _sum,
    "bcast": _bcast,
    "dot": _dot,
    "vmax": _vext("v_max"),
    "vmin": _vext("v_min"),
    "vargmax": _vargext(True),
    "vargmin": _vargext(False),
    "onehot": _onehot,
    "extract": _extract,
    "pad": _pad,
    "concat": _concat,
    "matvecmult": _matvec,
    "vecmatmult": _vecmat,
    "tensorprod": _tensorprod,
}


#: cheaper snippets for an op whose (first) argument is known to be <= 0 (nan aside): exp(-|x - y|^2)
#: needs no overflow clamp (``v_exp_nonpos``, exact there)
NONPOSITIVE_ARG: dict[str, Snippet] = {"exp": _ew("v_exp_nonpos({0})")}


def _lit(value) -> str:
    if value == float("inf"):
        return "bc(LG_INF)"
    if value == float("-inf"):
        return "bc(-LG_INF)"
    return f"bc((scalar){float(value)!r})"


def render(formulas: list[Node]) -> tuple[list[str], list[str], list[Components]]:
    """Render formulas into C++.

    Returns:
        ``(hoisted, body, outputs)``: statements that depend on i and parameters only (placed
        before the j loop), statements of the j loop (j-variable loads and the formula), and the
        component names of each formula's value.
    """
    hoisted: list[str] = []
    body: list[str] = []
    names: dict[int, Components] = {}
    j_dependent: set[int] = set()
    sign = signs(formulas)
    for n in walk_many(formulas):
        t = f"t{len(names)}"
        if n.op == "var":
            index, cat, dim = n.attrs
            if cat == CAT_J:
                comps = [f"vload(a{index} + {k} * njp + j)" for k in range(dim)]
                j_dependent.add(id(n))
                target = body
            else:
                comps = [f"bc(a{index}[{k}])" for k in range(dim)]
                target = hoisted
        elif n.op == "const":
            comps, target = [_lit(n.attrs[0])] * n.dim, hoisted
            names[id(n)] = comps
            continue
        else:
            snippet = CPP.get(n.op)
            if n.op in NONPOSITIVE_ARG and sign[id(n.args[0])] == NEGATIVE:
                snippet = NONPOSITIVE_ARG[n.op]
            if snippet is None:
                raise NotImplementedError(f"the C++ renderer has no snippet for op {n.op!r}")
            pre, comps = snippet([names[id(a)] for a in n.args], n.attrs, n.dim)
            if any(id(a) in j_dependent for a in n.args):
                j_dependent.add(id(n))
                target = body
            else:
                target = hoisted
            target.extend(pre)
        out = []
        for k, expr in enumerate(comps):
            if expr.startswith("bc(") and expr.count("(") == 1:
                out.append(expr)  # a constant: no temporary needed
                continue
            target.append(f"const vec {t}_{k} = {expr};")
            out.append(f"{t}_{k}")
        names[id(n)] = out
    return hoisted, body, [names[id(f)] for f in formulas]
