"""Triton renderer: the op -> snippet table and the rendering of a formula into tile statements.

Every component of every node becomes one tile: ``[BLOCK_I, 1]`` when it depends on i only (an
i-variable is loaded as a column), ``[1, BLOCK_J]`` on j only (a row), ``[BLOCK_I, BLOCK_J]`` on
both, ``[1, 1]`` on parameters and constants; Triton broadcasts them like NumPy. Values are in
the compute dtype ``CT`` (float32 for float16/bfloat16/float32 inputs, float64 for float64).

A snippet receives the names of its arguments' components, the node's attributes, its output
dimension and a prefix for temporaries; it returns statements to emit first (rarely) and the
expressions of its output components. Functions named ``lg_*`` come from :mod:`.lgmath`.

Precision choices (they matter on the GPU, where Triton picks fast instructions): exp in float32
is ``ex2.approx`` (relative error about 2^-22 plus the rounding of x log2(e)); sqrt and division
in float32 are the approximate (1-2 ulp, flush-to-zero) instructions; rsqrt is written 1/sqrt
because the float64 ``rsqrt.approx`` instruction is not accurate to double precision.
"""

from __future__ import annotations

from typing import Callable

from ...formula import CAT_I, CAT_J, Node, walk_many

Components = list[str]
Snippet = Callable[[list[Components], tuple, int, str], tuple[list[str], Components]]


def _ew(template: str) -> Snippet:
    """Elementwise op; an argument of dimension 1 is broadcast."""

    def snippet(args: list[Components], attrs: tuple, dim: int, tmp: str):
        out = []
        for k in range(dim):
            comps = [a[k] if len(a) > 1 else a[0] for a in args]
            out.append(template.format(*comps, *attrs))
        return [], out

    return snippet


def _sum(args, attrs, dim, tmp):
    return [], ["(" + " + ".join(args[0]) + ")"]


def _dot(args, attrs, dim, tmp):
    a, b = args
    return [], ["(" + " + ".join(f"{x} * {y}" for x, y in zip(a, b)) + ")"]


def _bcast(args, attrs, dim, tmp):
    return [], [args[0][0]] * dim


def _vext(maximum: bool) -> Snippet:
    # b > a ? b : a, as min2/max2: the first nan met propagates
    cmp = ">" if maximum else "<"

    def snippet(args, attrs, dim, tmp):
        expr = args[0][0]
        for c in args[0][1:]:
            expr = f"tl.where({c} {cmp} {expr}, {c}, {expr})"
        return [], [expr]

    return snippet


def _vargext(maximum: bool) -> Snippet:
    """Index (as a float) of the first maximal / minimal component."""
    cmp = ">" if maximum else "<"

    def snippet(args, attrs, dim, tmp):
        comps = args[0]
        best, idx = f"{tmp}_best", f"{tmp}_idx"
        pre = [f"{best} = {comps[0]}", f"{idx} = tl.zeros([1, 1], CT)"]
        for k, c in enumerate(comps[1:], start=1):
            pre += [f"{tmp}_m{k} = {c} {cmp} {best}",
                    f"{idx} = tl.where({tmp}_m{k}, {float(k)!r}, {idx})",
                    f"{best} = tl.where({tmp}_m{k}, {c}, {best})"]
        return pre, [idx]

    return snippet


def _onehot(args, attrs, dim, tmp):
    k = f"{tmp}_k"
    return [f"{k} = lg_round({args[0][0]})"], [f"({k} == {float(i)!r}).to(CT)" for i in range(dim)]


def _extract(args, attrs, dim, tmp):
    start, length = attrs
    return [], args[0][start: start + length]


def _pad(args, attrs, dim, tmp):
    start, total = attrs
    a = args[0]
    zero = "tl.zeros([1, 1], CT)"
    return [], [zero] * start + a + [zero] * (total - start - len(a))


def _concat(args, attrs, dim, tmp):
    return [], args[0] + args[1]


def _matvec(args, attrs, dim, tmp):
    A, x = args
    n = len(x)
    return [], ["(" + " + ".join(f"{A[i * n + k]} * {x[k]}" for k in range(n)) + ")" for i in range(dim)]


def _vecmat(args, attrs, dim, tmp):
    x, A = args
    m = len(x)
    return [], ["(" + " + ".join(f"{x[i]} * {A[i * dim + k]}" for i in range(m)) + ")" for k in range(dim)]


def _tensorprod(args, attrs, dim, tmp):
    x, y = args
    return [], [f"{a} * {b}" for a in x for b in y]


def _pow(args, attrs, dim, tmp):
    """x**k for an integer k by repeated squaring, unrolled here (k is a static attribute)."""
    (k,) = attrs
    pre, out = [], []
    for c, x in enumerate(args[0]):
        if k == 0:
            out.append("tl.full([1, 1], 1.0, CT)")
            continue
        acc, base, n, step = None, x, abs(k), 0
        while n:
            if n & 1:
                acc = base if acc is None else f"({acc} * {base})"
            n >>= 1
            if n:
                sq = f"{tmp}_c{c}_s{step}"
                pre.append(f"{sq} = {base} * {base}")
                base, step = sq, step + 1
        out.append(f"(1.0 / {acc})" if k < 0 else acc)
    return pre, out


TRITON: dict[str, Snippet] = {
    "neg": _ew("(-{0})"),
    "exp": _ew("tl.exp({0})"),
    "log": _ew("tl.log({0})"),
    "sqrt": _ew("tl.sqrt({0})"),
    "rsqrt": _ew("(1.0 / tl.sqrt({0}))"),
    "abs": _ew("tl.abs({0})"),
    "sign": _ew("lg_sign({0})"),
    "step": _ew("({0} >= 0).to(CT)"),
    "round": _ew("lg_round({0})"),
    "floor": _ew("tl.floor({0})"),
    "relu": _ew("tl.where({0} > 0, {0}, 0.0)"),
    "sin": _ew("tl.sin({0})"),
    "cos": _ew("tl.cos({0})"),
    "tanh": _ew("lg_tanh({0})"),
    "asin": _ew("lg_asin({0})"),
    "acos": _ew("lg_acos({0})"),
    "atan": _ew("lg_atan({0})"),
    "square": _ew("({0} * {0})"),
    "inv": _ew("(1.0 / {0})"),
    "log1p": _ew("lg_log1p({0})"),
    "xlogx": _ew("lg_xlogx({0})"),
    "sinxdivx": _ew("lg_sinxdivx({0})"),
    "pow": _pow,
    "add": _ew("({0} + {1})"),
    "sub": _ew("({0} - {1})"),
    "mul": _ew("({0} * {1})"),
    "div": _ew("({0} / {1})"),
    "atan2": _ew("lg_atan2({0}, {1})"),
    "min2": _ew("tl.where({1} < {0}, {1}, {0})"),
    "max2": _ew("tl.where({1} > {0}, {1}, {0})"),
    "ifelse": _ew("tl.where({0} >= 0, {1}, {2})"),
    "sum": _sum,
    "bcast": _bcast,
    "dot": _dot,
    "vmax": _vext(True),
    "vmin": _vext(False),
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


def _lit(value) -> str:
    v = float(value)
    if v != v:
        return "float('nan')"
    if v in (float("inf"), float("-inf")):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


def load_i(index: int, comp: int) -> str:
    """Component ``comp`` of i-variable ``index`` as a ``[BLOCK_I, 1]`` column (layout (nb, D, ni))."""
    return f"tl.load(a{index} + {comp} * nil + rows, mask=rmask, other=0.0).to(CT)[:, None]"


def load_j(index: int, comp: int) -> str:
    """Component ``comp`` of j-variable ``index`` as a ``[1, BLOCK_J]`` row (layout (nb, D, nj))."""
    return f"tl.load(a{index} + {comp} * njl + cols, mask=cmask, other=0.0).to(CT)[None, :]"


def load_p(index: int, comp: int) -> str:
    """Component ``comp`` of parameter ``index`` as a ``[1, 1]`` tile (a 0-d scalar would not mix
    with tiles in every operation of the interpreter, e.g. ``|`` of two masks)."""
    return f"tl.load(a{index} + {comp} + tl.zeros([1, 1], tl.int32)).to(CT)"


def render(formulas: list[Node], hoist_i: bool = True, tiles: dict[int, str] | None = None
           ) -> tuple[list[str], list[str], list[Components]]:
    """Render formulas into Triton statements.

    With ``hoist_i`` (the default), i-variables are loaded once per program and what depends on
    them and on parameters only is computed before the j loop. For wide i-variables that costs a
    register per component and row: without it, they are reloaded per tile (from L1), which
    keeps large D from spilling. ``tiles`` maps (the ids of) nodes computed elsewhere (see
    :mod:`.dot`) to the name of their ``[BLOCK_I, BLOCK_J]`` tile: what lies below them is not
    rendered unless something else uses it.

    The kernel template provides ``rows``/``rmask`` (this block's rows), ``cols``/``cmask`` (this
    tile's columns), ``nil``/``njl`` (int64 sizes) and ``a{k}``, the argument pointers already
    offset to this program's batch entry.

    Returns:
        ``(hoisted, body, outputs)``: statements that depend on i and parameters only (placed
        before the j loop), statements of the j loop (j-variable loads and the formula), and the
        component names of each formula's value.
    """
    tiles = tiles or {}
    hoisted: list[str] = []
    body: list[str] = []
    names: dict[int, Components] = {}
    j_dependent: set[int] = set()
    for n in _needed(formulas, tiles):
        t = f"t{len(names)}"
        if id(n) in tiles:
            names[id(n)] = [tiles[id(n)]]
            j_dependent.add(id(n))
            continue
        if n.op == "var":
            index, cat, dim = n.attrs
            load = {CAT_I: load_i, CAT_J: load_j}.get(cat, load_p)
            comps = [load(index, k) for k in range(dim)]
            if cat == CAT_J or (cat == CAT_I and not hoist_i):
                j_dependent.add(id(n))  # i.e. evaluated in the loop
            target, pre = (body if id(n) in j_dependent else hoisted), []
        elif n.op == "const":
            comps, target, pre = [f"tl.full([1, 1], {_lit(n.attrs[0])}, CT)"], hoisted, []
        else:
            snippet = TRITON.get(n.op)
            if snippet is None:
                raise NotImplementedError(f"the Triton renderer has no snippet for op {n.op!r}")
            pre, comps = snippet([names[id(a)] for a in n.args], n.attrs, n.dim, t)
            if any(id(a) in j_dependent for a in n.args):
                j_dependent.add(id(n))
            target = body if id(n) in j_dependent else hoisted
        target.extend(pre)
        if n.op == "const":  # one tile shared by every component
            target.append(f"{t} = {comps[0]}")
            names[id(n)] = [t] * n.dim
            continue
        out = []
        for k, expr in enumerate(comps):
            if expr.isidentifier():  # already a name (extract, concat...): no copy
                out.append(expr)
                continue
            target.append(f"{t}_{k} = {expr}")
            out.append(f"{t}_{k}")
        names[id(n)] = out
    return hoisted, body, [names[id(f)] for f in formulas]


def _needed(formulas: list[Node], tiles: dict[int, str]) -> list[Node]:
    """The nodes to render, children first: those reachable without passing through a tile."""
    reach: set[int] = set()
    stack = list(formulas)
    while stack:
        n = stack.pop()
        if id(n) in reach:
            continue
        reach.add(id(n))
        if id(n) not in tiles:
            stack.extend(n.args)
    return [n for n in walk_many(formulas) if id(n) in reach]
