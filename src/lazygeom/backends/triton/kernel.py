"""The Triton kernel template: one program per (block of BLOCK_I rows, batch entry), tiles of j.

A program loads its rows' i-variables once (``[BLOCK_I, 1]`` columns), evaluates the parts of
the formula that depend on i and parameters only, then streams over tiles of BLOCK_J columns:
j-variables come in as ``[1, BLOCK_J]`` rows, the formula is one ``[BLOCK_I, BLOCK_J]`` tile
per component, and the tile is folded into running per-row accumulators held in registers.
Columns past the end of a range are masked with the reduction's neutral value.

Only the reduction-specific parts differ between kinds: the state, its update with one tile, and
the final write. Accumulation: tile partial sums in the compute dtype, row sums across tiles in
``ACC`` (float64 for float32/float64 inputs, as the CPU backend's double-precision row sums;
float32 for float16/bfloat16 inputs). One ACC operation per row and tile costs BLOCK_J times less
than the per-pair work.

Block-sparse ranges (``SPARSE``): the host lists blocks of rows that belong to one i-cluster,
``blocks[p] = (row_start, row_end, cluster)``; the program loops over that cluster's j-ranges
(``slices``, ``redranges`` as in pykeops). Rows in no cluster are never visited: the host fills
the outputs with the empty reduction's value beforehand.

Layouts (prepared by :mod:`.backend`): i-variables ``(nb, D, ni)``, j-variables ``(nb, D, nj)``
(one contiguous row per component: coalesced loads), parameters ``(nb, D)``; outputs
``(nb, ni, E)`` or ``(nb, ni, K, E)``; indices are int32 in registers, int64 in memory.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Optional

from ...formula import CAT_I, CAT_J
from ...reductions import KindTable, Reduction
from ..lowering import Components, indent
from .dot import find_terms, render_terms
from .render import render

_LGMATH = Path(__file__).with_name("lgmath.py")


def _bt(expr: str) -> str:
    return f"tl.broadcast_to({expr}, (BLOCK_I, BLOCK_J))"


def _parts(**kw) -> dict:
    return {k: kw.get(k, []) for k in ("init", "update", "final")}


def _store(e: int, E: int, value: str, p: int | None = None, K: int = 1, out: str = "out") -> str:
    off = f"orow * {E} + {e}" if p is None else f"(orow * {K} + {p}) * {E} + {e}"
    return f"tl.store({out} + {off}, ({value}).to({out}.dtype.element_ty), mask=rmask)"


def _sum_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    return _parts(
        init=[f"acc{e} = tl.zeros([BLOCK_I], ACC)" for e in range(E)],
        update=[f"acc{e} += tl.sum(tl.where(jmask, {_bt(f[e])}, 0.0), 1).to(ACC)" for e in range(E)],
        final=[_store(e, E, f"acc{e}") for e in range(E)],
    )


def _running(v: str, k: str, fill: str) -> list[str]:
    """A running value per row, starting at ``fill``, and its index."""
    return [f"{v} = tl.full([BLOCK_I], {fill}, CT)", f"{k} = tl.zeros([BLOCK_I], tl.int32)"]


def _masked(F: str, f: Components, e: int, fill: str) -> str:
    """Tile ``F``: component ``e`` of the formula (or its only one) on valid columns, else ``fill``."""
    return f"{F} = tl.where(jmask, {_bt(f[e] if len(f) > 1 else f[0])}, {fill})"


def _first_column(F: str, tv: str) -> str:
    """The first column of each row of tile ``F`` that holds the row's value ``tv``."""
    return f"tl.min(tl.where({F} == {tv}[:, None], cidx, BIG_INDEX), 1)"


def _shift(f: Components, g: int) -> list[str]:
    """Group ``g``'s tile of scores, its row maximum moved up to the tile's, and the factors."""
    return [
        _masked(f"F{g}", f, g, "-INF"),
        f"mn{g} = tl.maximum(m{g}, tl.max(F{g}, 1))",
        f"sh{g} = tl.where(tl.abs(mn{g}) < INF, mn{g}, 0.0)",
        f"sc{g} = tl.exp(m{g} - sh{g}).to(ACC)",
        f"P{g} = tl.exp(F{g} - sh{g}[:, None])",
        f"m{g} = mn{g}",
    ]


def _lse_parts(red: Reduction, f: Components, w: Optional[Components], E: int, ssmw: bool) -> dict:
    """Streaming maximum per group (one group for a scalar F, else one per component).

    The row's maximum M moves up to the tile's, the sums are rescaled once per tile by
    exp(M_old - M_new), and the tile adds exp(F - M) <= 1. A row whose scores are all -inf keeps a
    zero shift, so that exp gives 0, not nan (as the reference backend).
    """
    G = len(f)

    def g_of(e: int) -> int:
        return e if G > 1 else 0

    init = [f"m{g} = tl.full([BLOCK_I], -INF, CT)" for g in range(G)]
    # (state names must not be t<k>: the lowering names node k's constant so; ws<e>, not t<e>)
    if ssmw:
        init += [f"s{g} = tl.zeros([BLOCK_I], ACC)" for g in range(G)]
        init += [f"ws{e} = tl.zeros([BLOCK_I], ACC)" for e in range(E)]
    else:
        init += [f"s{e} = tl.zeros([BLOCK_I], ACC)" for e in range(E)]
    update = [s for g in range(G) for s in _shift(f, g)]
    if w is not None:
        update += [_masked(f"W{e}", w, e, "0.0") for e in range(E)]
    if ssmw:
        update += [f"s{g} = s{g} * sc{g} + tl.sum(P{g}, 1).to(ACC)" for g in range(G)]
        update += [f"ws{e} = ws{e} * sc{g_of(e)} + tl.sum(P{g_of(e)} * W{e}, 1).to(ACC)" for e in range(E)]
    else:
        term = (lambda e: f"P{g_of(e)} * W{e}") if w is not None else (lambda e: f"P{g_of(e)}")
        update += [f"s{e} = s{e} * sc{g_of(e)} + tl.sum({term(e)}, 1).to(ACC)" for e in range(E)]
    if ssmw:
        final = [_store(e, E, f"ws{e} / s{g_of(e)}") for e in range(E)]
    else:
        final = [f"sh{g} = tl.where(tl.abs(m{g}) < INF, m{g}, 0.0).to(ACC)" for g in range(G)]
        final += [_store(e, E, f"sh{g_of(e)} + tl.log(s{e})") for e in range(E)]
    return _parts(init=init, update=update, final=final)


def _select_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    """Running extremum and the first index reaching it.

    Within a tile, the smallest column holding the tile's extremum; across tiles, a strict
    comparison keeps the earlier one.
    """
    fill, red_fn, lt = ("INF", "tl.min", "<") if red.spec.extremum == "min" else ("-INF", "tl.max", ">")
    init = [s for e in range(E) for s in _running(f"v{e}", f"k{e}", fill)]
    update = []
    for e in range(E):
        update += [
            _masked(f"F{e}", f, e, fill),
            f"tv{e} = {red_fn}(F{e}, 1)",
            f"tk{e} = {_first_column(f'F{e}', f'tv{e}')}",
            f"bt{e} = tv{e} {lt} v{e}",
            f"v{e} = tl.where(bt{e}, tv{e}, v{e})",
            f"k{e} = tl.where(bt{e}, tk{e}, k{e})",
        ]
    final = []
    for e in range(E):
        final += [_store(e, E, f"v{e}"), _store(e, E, f"k{e}", out="outk")]
    return _parts(init=init, update=update, final=final)


def _kmin_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    """Running sorted K-lists, one register column per rank (K small).

    Each tile first drops the candidates that cannot enter (not below the current K-th value), then
    runs as many rounds as the row with the most remaining candidates needs (at most K): extract
    the tile's minimum (first column on ties), insert it into the sorted list after the equal
    values already there (which come from earlier columns), remove it from the tile.
    """
    K = red.K
    init = [s for e in range(E) for p in range(K) for s in _running(f"kv{e}_{p}", f"kk{e}_{p}", "INF")]
    update = []
    for e in range(E):
        update += [
            _masked(f"F{e}", f, e, "INF"),
            f"F{e} = tl.where(F{e} < kv{e}_{K - 1}[:, None], F{e}, INF)",
            f"nr{e} = tl.minimum(tl.max(tl.sum((F{e} < INF).to(tl.int32), 1), 0), {K})",
            f"for _round in range(0, nr{e}):",
            f"    tv = tl.min(F{e}, 1)",
            f"    tk = {_first_column(f'F{e}', 'tv')}",
            f"    F{e} = tl.where(cidx == tk[:, None], INF, F{e})",
        ]
        update += [f"    lt{p} = tv < kv{e}_{p}" for p in range(K)]
        # descending ranks, so that rank p-1 still holds its old value when rank p reads it
        for p in range(K - 1, 0, -1):
            update += [f"    kv{e}_{p} = tl.where(lt{p - 1}, kv{e}_{p - 1}, tl.where(lt{p}, tv, kv{e}_{p}))",
                       f"    kk{e}_{p} = tl.where(lt{p - 1}, kk{e}_{p - 1}, tl.where(lt{p}, tk, kk{e}_{p}))"]
        update += [f"    kv{e}_0 = tl.where(lt0, tv, kv{e}_0)", f"    kk{e}_0 = tl.where(lt0, tk, kk{e}_0)"]
    final = []
    for e in range(E):
        for p in range(K):
            final += [_store(e, E, f"kv{e}_{p}", p, K), _store(e, E, f"kk{e}_{p}", p, K, out="outk")]
    return _parts(init=init, update=update, final=final)


#: per run kind: the builder ``(red, f, w, E) -> parts`` of the kernel's reduction-specific parts
TEMPLATES: KindTable[Callable[[Reduction, Components, Optional[Components], int], dict]] = KindTable(
    "the Triton backend", {
        "sum": _sum_parts,
        "lse": partial(_lse_parts, ssmw=False),
        "ssmw": partial(_lse_parts, ssmw=True),
        "min_argmin": _select_parts,
        "max_argmax": _select_parts,
        "kmin_argkmin": _kmin_parts,
    })


def _offsets(cats: tuple[int, ...], dims: tuple[int, ...]) -> list[str]:
    """Move every argument pointer to this program's batch entry (int64: nb * n * D may be large)."""
    out = []
    for k, (c, d) in enumerate(zip(cats, dims)):
        size = {CAT_I: " * nil", CAT_J: " * njl"}.get(c, "")
        out.append(f"a{k} = a{k} + bi * {d}{size}")
    return out


def lgmath_source() -> str:
    """The helper functions of :mod:`.lgmath`, without its docstring and imports."""
    text = _LGMATH.read_text()
    return text[text.index("\n@triton.jit") + 1:]


#: above this many i-variable components, reload them per tile rather than hold them in registers
HOIST_I_MAX = 16


def generate(red: Reduction, cats: tuple[int, ...], dims: tuple[int, ...], dot_terms: bool = False) -> str:
    """The Python source of one kernel module; its entry point is ``lg_kernel``.

    Args:
        red: the reduction (a run kind).
        cats: the categories of its arguments.
        dims: their vector dimensions.
        dot_terms: compute the dot-shaped terms of the formula (:func:`.dot.find_terms`) with
            ``tl.dot`` on tiles instead of component by component.

    Returns:
        The source.

    Raises:
        NotImplementedError: a kind that runs through another (see
            :attr:`lazygeom.reductions.KindSpec.run`).
    """
    template = TEMPLATES.hook(red.kind)
    formulas = list(red.formulas)
    width_i = sum(d for c, d in zip(cats, dims) if c == CAT_I)
    dot_hoisted, dot_loop, tiles = render_terms(find_terms(formulas)) if dot_terms else ([], [], {})
    hoisted, body, outs = render(formulas, hoist_i=width_i <= HOIST_I_MAX, tiles=tiles)
    hoisted, body = dot_hoisted + hoisted, dot_loop + body
    parts = template(red, outs[0], outs[1] if len(outs) > 1 else None, red.out_dim)
    cidx = ["cidx = cols.to(tl.int32)[None, :]"] if red.spec.selection else []
    args = "".join(f"a{k}, " for k in range(len(cats)))
    return f'''# generated by lazygeom: {red.kind} over j, arguments {cats} of dimensions {dims}
import triton
import triton.language as tl

INF = tl.constexpr(float("inf"))
BIG_INDEX = tl.constexpr(2147483647)

{lgmath_source()}

@triton.jit
def lg_kernel({args}out, outk, ni, nj, blocks, slices, redranges,
              CT: tl.constexpr, ACC: tl.constexpr, SPARSE: tl.constexpr,
              BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, DOT_PRECISION: tl.constexpr):
    pid = tl.program_id(0)
    bi = tl.program_id(1).to(tl.int64)
    # ni, nj may arrive as compile-time constants (Triton specialises the value 1): widen by adding
    nil = ni + bi * 0
    njl = nj + bi * 0
    if SPARSE:
        i_lo = tl.load(blocks + 3 * pid)
        i_hi = tl.load(blocks + 3 * pid + 1)
        cluster = tl.load(blocks + 3 * pid + 2)
        r0 = tl.load(slices + cluster - 1, mask=cluster > 0, other=0)
        r1 = tl.load(slices + cluster)
    else:
        i_lo = pid * BLOCK_I
        i_hi = ni
        r0 = 0
        r1 = 1
    rows = i_lo + tl.arange(0, BLOCK_I)
    rmask = rows < i_hi
    orow = bi * nil + rows
{indent(_offsets(cats, dims), 4)}
{indent(hoisted, 4)}
{indent(parts["init"], 4)}
    for r in range(r0, r1):
        if SPARSE:
            j_lo = tl.load(redranges + 2 * r)
            j_hi = tl.load(redranges + 2 * r + 1)
        else:
            j_lo = 0
            j_hi = nj
        for j0 in range(j_lo, j_hi, BLOCK_J):
            cols = j0 + tl.arange(0, BLOCK_J)
            cmask = cols < j_hi
            jmask = cmask[None, :]
{indent(cidx, 12)}
{indent(body, 12)}
{indent(parts["update"], 12)}
{indent(parts["final"], 4)}
'''
