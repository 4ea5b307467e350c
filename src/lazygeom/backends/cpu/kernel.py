"""The C++ kernel template: blocks of rows i per OpenMP iteration, SIMD over W j-lanes, tiles of j.

Only the reduction-specific parts differ between kinds: the state (per lane, per tile, and per
row as members of a struct ``St``), its update with one vector of formula values, the merge of a
tile's lanes into the row state (in double precision, which keeps float32 sums over 1e5+ terms
accurate), and the final write. The formula itself comes from :mod:`render`.

Layouts (prepared by :mod:`.backend`): i-variables ``(nb, ni, D)``, j-variables transposed and
padded ``(nb, D, njp)`` with ``njp`` a multiple of W, parameters ``(nb, D)``; outputs
``(nb, ni, E)`` or ``(nb, ni, K, E)``. The entry point computes the global rows ``[row0, row1)``
of the ``nb * ni`` rows: the backend cuts long calls into such chunks (:mod:`.runner`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple, Optional

from ...formula import CAT_I, CAT_J
from ...reductions import KindTable, Reduction
from ..lowering import Components, indent
from .render import render

TILE = 1024  # j-values per tile; a multiple of every W
TILE_LSE = 256  # LogSumExp tiles are buffered (one vec per W scores): keep them in L1


def _ptrs(cats: tuple[int, ...], dims: tuple[int, ...]) -> list[str]:
    out = []
    for k, (c, d) in enumerate(zip(cats, dims)):
        off = {CAT_I: f"(b * ni + i) * {d}", CAT_J: f"b * {d} * njp"}.get(c, f"b * {d}")
        out.append(f"const scalar* __restrict a{k} = args[{k}] + {off};")
    return out


def _parts(**kw) -> dict:
    keys = ("state", "tile_init", "update", "mid", "pass2", "flush", "final")
    return {k: kw.get(k, []) for k in keys}


def _sum_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    return _parts(
        state=[("double", "acc", E, "0")],
        tile_init=[f"vec tacc{e} = bc(0);" for e in range(E)],
        update=[f"tacc{e} += vsel(valid, {f[e]}, bc(0));" for e in range(E)],
        flush=[f"acc[{e}] += hsum(tacc{e});" for e in range(E)],
        final=[f"out[orow * {E} + {e}] = (scalar)acc[{e}];" for e in range(E)],
    )


def _lse_parts(red: Reduction, f: Components, w: Optional[Components], E: int, ssmw: bool) -> dict:
    """LogSumExp-type reductions in two passes over each tile, one exp per pair.

    Pass 1 stores the (masked) scores of the tile in a small buffer and finds their maximum; the
    row's running maximum M moves up to it (rescaling the double-precision sums once per tile);
    pass 2 adds exp(F - M) <= 1 (``v_exp_nonpos``), so nothing overflows, and rows of -inf scores
    stay exact. The maximum skips nan: a nan score reaches the sums through pass 2, or, in a tile
    whose scores are all -inf or nan, through the flag that LogSumExp's final write turns into nan
    (SumSoftMaxWeight's 0 / 0 is nan by itself).
    """
    G = len(f)  # maximum groups: 1 (scalar F) or E

    def group(e: int) -> int:
        return e if G > 1 else 0

    # the sums rescaled with group g: lse -> s_e ; ssmw -> s_g and t_e
    qs: dict[int, list[str]] = {g: [] for g in range(G)}
    if ssmw:
        for g in range(G):
            qs[g].append(f"s{g}")
        for e in range(E):
            qs[group(e)].append(f"t{e}")
    else:
        for e in range(E):
            qs[group(e)].append(f"s{e}")
    state = [("double", f"M{g}", None, "-LG_INF") for g in range(G)]
    if not ssmw:  # (SumSoftMaxWeight of such a row is 0 / 0 = nan already)
        state += [("bool", f"nan{g}", None, "false") for g in range(G)]
    state += [("double", f"S_{q}", None, "0") for g in range(G) for q in qs[g]]
    # the tile's scores (and weights), from pass 1 to pass 2
    tile_init = [f"vec bF{g}[{TILE_LSE} / W];" for g in range(G)]
    weighted = ssmw or w is not None
    if weighted:
        tile_init += [f"vec bV{e}[{TILE_LSE} / W];" for e in range(E)]
    tile_init += [f"vec tm{g} = bc(-LG_INF);" for g in range(G)]
    tile_init += [f"vec {q} = bc(0);" for g in range(G) for q in qs[g]]
    update = []
    for g in range(G):
        update += [f"{{ const vec F = vsel(valid, {f[g]}, bc(-LG_INF)); bF{g}[(j - j0) / W] = F; "
                   f"tm{g} = v_max(tm{g}, F); }}"]
    if weighted:
        update += [f"bV{e}[(j - j0) / W] = vsel(valid, {w[e]}, bc(0));" for e in range(E)]
    mid = []
    for g in range(G):
        rescale = " ".join(f"S_{q} *= sc;" for q in qs[g])
        mid += [f"const double mt{g} = hmax(tm{g});",
                f"if (mt{g} > M{g}) {{ const double sc = lg::exp(M{g} - mt{g}); {rescale} M{g} = mt{g}; }}",
                f"const vec Mv{g} = bc((scalar)M{g});",
                f"const bool live{g} = M{g} > -LG_INF;"]
    pass2 = []
    for g in range(G):
        body = [f"const vec P = v_exp_nonpos(bF{g}[(j - j0) / W] - Mv{g});"]
        if ssmw:
            body.append(f"s{g} += P;")
        for e in range(E):
            if group(e) != g:
                continue
            if ssmw:
                body.append(f"t{e} += P * bV{e}[(j - j0) / W];")
            elif w is not None:
                body.append(f"s{e} += P * bV{e}[(j - j0) / W];")
            else:
                body.append(f"s{e} += P;")
        # a tile with no score above -inf may still hold nan, which pass 1's max skips
        dead = "" if ssmw else (f" else {{ const vec F = bF{g}[(j - j0) / W]; "
                                f"for (int l = 0; l < W; ++l) nan{g} |= F[l] != F[l]; }}")
        pass2.append(f"if (live{g}) {{ {' '.join(body)} }}{dead}")
    flush = [f"S_{q} += hsum({q});" for g in range(G) for q in qs[g]]
    if ssmw:
        final = [f"out[orow * {E} + {e}] = (scalar)(S_t{e} / S_s{group(e)});" for e in range(E)]
    else:
        final = [f"out[orow * {E} + {e}] = nan{group(e)} ? LG_NAN : (scalar)(M{group(e)} + lg::log(S_s{e}));"
                 for e in range(E)]
    return _parts(state=state, tile_init=tile_init, update=update, mid=mid, pass2=pass2, flush=flush, final=final)


def _select_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    smallest = red.spec.extremum == "min"
    lt = "<" if smallest else ">"
    fill = "LG_INF" if smallest else "-LG_INF"
    state = [s for e in range(E) for s in (("vec", f"bv{e}", None, f"bc({fill})"), ("ivec", f"bk{e}", None, "ibc(0)"))]
    update = []
    for e in range(E):
        update += [
            f"{{ const vec F = vsel(valid, {f[e] if len(f) > 1 else f[0]}, bc({fill}));",
            f"  const ivec better = F {lt} bv{e}; bv{e} = vsel(better, F, bv{e});",
            f"  bk{e} = better ? ibc((iscalar)j) + lane : bk{e}; }}",
        ]
    final = []
    for e in range(E):
        final.append(
            f"{{ scalar v = bv{e}[0]; int64_t k = bk{e}[0]; for (int l = 1; l < W; ++l) "
            f"if (bv{e}[l] {lt} v || (bv{e}[l] == v && bk{e}[l] < k)) {{ v = bv{e}[l]; k = bk{e}[l]; }} "
            f"out[orow * {E} + {e}] = v; outk[orow * {E} + {e}] = k; }}"
        )
    return _parts(state=state, update=update, final=final)


def _kmin_parts(red: Reduction, f: Components, w: Optional[Components], E: int) -> dict:
    K = red.K
    state = [s for e in range(E) for s in (("scalar", f"kv{e}", K, "LG_INF"), ("int64_t", f"kk{e}", K, "0"))]
    update = []
    for e in range(E):
        update.append(
            f"{{ const vec F = {f[e] if len(f) > 1 else f[0]}; "
            f"const ivec c = (F < bc(kv{e}[{K - 1}])) & valid; "
            f"for (unsigned m = lane_bits(c); m; m &= m - 1) {{ "
            f"const int l = __builtin_ctz(m); const scalar v = F[l]; "
            f"if (v < kv{e}[{K - 1}]) {{ int p = {K - 1}; "
            f"while (p > 0 && kv{e}[p - 1] > v) {{ kv{e}[p] = kv{e}[p - 1]; kk{e}[p] = kk{e}[p - 1]; --p; }} "
            f"kv{e}[p] = v; kk{e}[p] = j + l; }} }} }}"
        )
    final = [f"for (int k = 0; k < {K}; ++k) {{ out[(orow * {K} + k) * {E} + {e}] = kv{e}[k]; "
             f"outk[(orow * {K} + k) * {E} + {e}] = kk{e}[k]; }}" for e in range(E)]
    return _parts(state=state, update=update, final=final)


class Template(NamedTuple):
    """A kind's part of the kernel: its parts builder ``(red, f, w, E) -> parts``, and its tile of j."""

    parts: Callable[[Reduction, Components, Optional[Components], int], dict]
    tile: int


#: per run kind: the reduction-specific parts of the kernel (see the module docstring)
TEMPLATES: KindTable[Template] = KindTable("the CPU backend", {
    "sum": Template(_sum_parts, TILE),
    "lse": Template(partial(_lse_parts, ssmw=False), TILE_LSE),
    "ssmw": Template(partial(_lse_parts, ssmw=True), TILE_LSE),
    "min_argmin": Template(_select_parts, TILE),
    "max_argmax": Template(_select_parts, TILE),
    "kmin_argkmin": Template(_kmin_parts, TILE),
})


def _state(state: list[tuple]) -> tuple[list[str], list[str], list[str], list[str]]:
    """The row state's struct members, its initialisation (on ``S``), and its binding.

    The binding statements give the state the names the parts use: scalars and vectors are copied
    in and back, so that they live in registers during a tile; arrays are bound by reference.
    """
    members, init, bind, unbind = [], [], [], []
    for ctype, name, n, value in state:
        if n is None:
            members.append(f"{ctype} {name};")
            init.append(f"S.{name} = {value};")
            bind.append(f"{ctype} {name} = S.{name};")
            unbind.append(f"S.{name} = {name};")
        else:
            members.append(f"{ctype} {name}[{n}];")
            init.append(f"for (int k = 0; k < {n}; ++k) S.{name}[k] = {value};")
            bind.append(f"{ctype} (&{name})[{n}] = S.{name};")
    return members, init, bind, unbind


def generate(red: Reduction, cats: tuple[int, ...], dims: tuple[int, ...], per_range: bool = False) -> str:
    """The C++ source of one kernel.

    Rows are processed in blocks of up to ``RB`` that share their ranges: each tile of j is loaded
    once into the cache and used by every row of the block, whose states persist across tiles.
    (Row after row, each row would stream every j-variable from L3 or memory: at D = 3 with a
    3-vector weight this bandwidth, not arithmetic, was the bound.) The entry point ``lg_kernel``
    takes a range ``[row0, row1)`` of the ``nb * ni`` global rows (batch-major): one call may be
    cut into chunks of rows, with the same results.

    Args:
        red: the reduction (a run kind).
        cats: the categories of its arguments.
        dims: their vector dimensions.
        per_range: one result per (row, listed range) instead of per row: the state is reset at
            every range and written at ``out_offset[row] + r`` (see :class:`lazygeom.backends.Call`).

    Returns:
        The C++ source (the scalar type is set at compilation, ``-DLG_DOUBLE``).

    Raises:
        NotImplementedError: for a kind the CPU backend runs as its run kind (``KindSpec.run``).
    """
    template = TEMPLATES.hook(red.kind)
    hoisted, body, outs = render(list(red.formulas))
    parts = template.parts(red, outs[0], outs[1] if len(outs) > 1 else None, red.out_dim)
    tile = template.tile
    tile_init, update, mid, pass2, flush, final = (parts[k] for k in
                                                   ("tile_init", "update", "mid", "pass2", "flush", "final"))
    members, init, bind, unbind = _state(parts["state"])
    rows_init = ["for (int64_t row = s0; row < s1; ++row) {", "  St& S = st[row - s0];",
                 *("  " + x for x in init), "}"]
    orow = "out_offset[row] + r" if per_range else "row"
    rows_final = ["for (int64_t row = s0; row < s1; ++row) {", "  St& S = st[row - s0];",
                  *("  " + x for x in bind), f"  const int64_t orow = {orow};", *("  " + x for x in final), "}"]
    # per-range calls: the state lives for one range and its result goes to the range's slot
    run_init, range_init = ([], rows_init) if per_range else (rows_init, [])
    range_final, run_final = (rows_final, []) if per_range else ([], rows_final)
    second = ""
    if pass2:
        second = f"""{{
{indent(mid, 10)}
          for (int64_t j = j0; j < j1; j += W) {{
{indent(pass2, 12)}
          }}
        }}"""
    return f"""// generated by lazygeom: {red.kind} over j
#include "lgmath.hpp"

struct St {{
{indent(members or ["char unused;"], 2)}
}};
// rows per block: a block's states stay within 16 KiB
constexpr int64_t RB = sizeof(St) * 32 <= 16384 ? 32 : (16384 / sizeof(St) > 0 ? 16384 / sizeof(St) : 1);

// row_cluster (ni), slices (clusters) and redranges (2 per range) describe block-sparse ranges;
// all three are null for a dense reduction over [0, nj).
// out_offset (ni): where each row's results start, with one result per range (per-range calls only).
// Only the global rows [row0, row1) of the nb * ni rows (batch-major) are computed: the caller cuts
// long calls into such chunks (and handles signals in between).
extern "C" int lg_kernel(int64_t nb, int64_t ni, int64_t nj, int64_t njp, int64_t row0, int64_t row1,
                         const scalar* const* args, scalar* __restrict out, int64_t* __restrict outk, int nthreads,
                         const int64_t* row_cluster, const int64_t* slices, const int64_t* redranges,
                         const int64_t* out_offset) {{
  ivec lane;
  for (int l = 0; l < W; ++l) lane[l] = l;
  const int64_t nblocks = row1 > row0 ? (row1 - row0 + RB - 1) / RB : 0;
  #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t blk = 0; blk < nblocks; ++blk) {{
    St st[RB];
    const int64_t q1 = row0 + (blk + 1) * RB < row1 ? row0 + (blk + 1) * RB : row1;
    // runs of rows of one batch and one cluster: the same ranges of j
    for (int64_t s0 = row0 + blk * RB, s1; s0 < q1; s0 = s1) {{
      const int64_t b = s0 / ni;
      const int64_t c = row_cluster ? row_cluster[s0 % ni] : 0;
      for (s1 = s0 + 1; s1 < q1 && s1 / ni == b && (!row_cluster || row_cluster[s1 % ni] == c); ++s1) {{}}
      const int64_t dense[2] = {{0, nj}};
      const int64_t* jr = dense;
      int64_t nr = 1;
      if (row_cluster) {{
        const int64_t r0 = c > 0 ? slices[c - 1] : 0;
        jr = redranges + 2 * r0;
        nr = c < 0 ? 0 : slices[c] - r0;
      }}
{indent(run_init, 6)}
      for (int64_t r = 0; r < nr; ++r) {{
{indent(range_init, 8)}
        for (int64_t j0 = jr[2 * r]; j0 < jr[2 * r + 1]; j0 += {tile}) {{
          const int64_t j1 = j0 + {tile} < jr[2 * r + 1] ? j0 + {tile} : jr[2 * r + 1];
          // full vectors need no mask (the constant mask folds away); the last one is masked
          const int64_t jfull = j0 + (j1 - j0) / W * W;
          for (int64_t row = s0; row < s1; ++row) {{
            const int64_t i = row % ni;
            (void)i;
            St& S = st[row - s0];
{indent(_ptrs(cats, dims), 12)}
{indent(hoisted, 12)}
{indent(bind, 12)}
{indent(tile_init, 12)}
            for (int64_t j = j0; j < jfull; j += W) {{
              const ivec valid = ibc(-1);
{indent(body, 14)}
{indent(update, 14)}
            }}
            if (jfull < j1) {{
              const int64_t j = jfull;
              const ivec valid = (ibc((iscalar)(j - j1)) + lane) < 0;
{indent(body, 14)}
{indent(update, 14)}
            }}
            {second}
{indent(flush, 12)}
{indent(unbind, 12)}
          }}
        }}
{indent(range_final, 8)}
      }}
{indent(run_final, 6)}
    }}
  }}
  return 0;
}}
"""
