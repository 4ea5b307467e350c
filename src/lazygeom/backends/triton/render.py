"""Triton renderer: the Triton snippets, and the dialect through which :mod:`..lowering` writes tiles.

Every component of every node becomes one tile: ``[BLOCK_I, 1]`` when it depends on i only (an
i-variable is loaded as a column), ``[1, BLOCK_J]`` on j only (a row), ``[BLOCK_I, BLOCK_J]`` on
both, ``[1, 1]`` on parameters and constants; Triton broadcasts them like NumPy. Values are in
the compute dtype ``CT`` (float32 for float16/bfloat16/float32 inputs, float64 for float64).
Functions named ``lg_*`` come from :mod:`.lgmath`.

Precision choices (they matter on the GPU, where Triton picks fast instructions): exp in float32
is ``ex2.approx`` (relative error about 2^-22 plus the rounding of x log2(e)); sqrt and division
in float32 are the approximate (1-2 ulp, flush-to-zero) instructions; rsqrt is written 1/sqrt
because the float64 ``rsqrt.approx`` instruction is not accurate to double precision.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from ...formula import CAT_I, CAT_J, CAT_P, Node
from ..lowering import SHARED, Dialect, Lowered, Snippet, ew, fold, lower, pad


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


TRITON: Mapping[str, Snippet] = {
    **SHARED,
    "exp": ew("tl.exp({0})"),
    "log": ew("tl.log({0})"),
    "sqrt": ew("tl.sqrt({0})"),
    "rsqrt": ew("(1.0 / tl.sqrt({0}))"),
    "abs": ew("tl.abs({0})"),
    "sign": ew("lg_sign({0})"),
    "step": ew("({0} >= 0).to(CT)"),
    "round": ew("lg_round({0})"),
    "floor": ew("tl.floor({0})"),
    "relu": ew("tl.where({0} > 0, {0}, 0.0)"),
    "sin": ew("tl.sin({0})"),
    "cos": ew("tl.cos({0})"),
    "tanh": ew("lg_tanh({0})"),
    "asin": ew("lg_asin({0})"),
    "acos": ew("lg_acos({0})"),
    "atan": ew("lg_atan({0})"),
    "inv": ew("(1.0 / {0})"),
    "log1p": ew("lg_log1p({0})"),
    "xlogx": ew("lg_xlogx({0})"),
    "sinxdivx": ew("lg_sinxdivx({0})"),
    "pow": _pow,
    "atan2": ew("lg_atan2({0}, {1})"),
    "min2": ew("tl.where({1} < {0}, {1}, {0})"),
    "max2": ew("tl.where({1} > {0}, {1}, {0})"),
    "ifelse": ew("tl.where({0} >= 0, {1}, {2})"),
    "vmax": fold("tl.where({c} > {acc}, {c}, {acc})"),  # as max2: the first nan met propagates
    "vmin": fold("tl.where({c} < {acc}, {c}, {acc})"),
    "vargmax": _vargext(True),
    "vargmin": _vargext(False),
    "onehot": _onehot,
    "pad": pad("tl.zeros([1, 1], CT)"),
}


def _lit(value: float) -> str:
    v = float(value)
    if v != v:
        return "float('nan')"
    if v in (float("inf"), float("-inf")):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


#: per category: the tile of component ``{comp}`` of variable ``{index}``: i-variables as
#: ``[BLOCK_I, 1]`` columns (layout (nb, D, ni)), j-variables as ``[1, BLOCK_J]`` rows (layout
#: (nb, D, nj)), parameters as ``[1, 1]`` tiles (a 0-d scalar would not mix with tiles in every
#: operation of the interpreter, e.g. ``|`` of two masks)
_LOADS = {
    CAT_I: "tl.load(a{index} + {comp} * nil + rows, mask=rmask, other=0.0).to(CT)[:, None]",
    CAT_J: "tl.load(a{index} + {comp} * njl + cols, mask=cmask, other=0.0).to(CT)[None, :]",
    CAT_P: "tl.load(a{index} + {comp} + tl.zeros([1, 1], tl.int32)).to(CT)",
}

#: Triton for :func:`..lowering.lower`: a constant is one ``[1, 1]`` tile shared by its components
DIALECT = Dialect(
    name="Triton",
    snippets=TRITON,
    load=lambda index, cat, comp: _LOADS[cat].format(index=index, comp=comp),
    constant=lambda value, dim, name: ([f"{name} = tl.full([1, 1], {_lit(value)}, CT)"], [name] * dim),
    assign="{name} = {expr}",
)

#: the same, reloading i-variables in every tile (see :func:`render`)
DIALECT_RELOAD_I = replace(DIALECT, loop_cats=frozenset({CAT_I, CAT_J}))


def render(formulas: list[Node], hoist_i: bool = True, tiles: dict[int, str] | None = None) -> Lowered:
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

    Args:
        formulas: the formulas.
        hoist_i: hoist i-variables and what depends on them (see above).
        tiles: node id -> tile name, for the nodes computed elsewhere.

    Returns:
        ``(hoisted, body, outputs)``: statements that depend on i and parameters only (placed
        before the j loop), statements of the j loop (j-variable loads and the formula), and the
        component names of each formula's value.
    """
    return lower(formulas, DIALECT if hoist_i else DIALECT_RELOAD_I, tiles)
