"""The C++ kernel template: one row i per OpenMP iteration, SIMD over W j-lanes, tiles of j.

Only the reduction-specific parts differ between kinds: the state (per lane, per tile and per
row), its update with one vector of formula values, the merge of a tile's lanes into the row
state (in double precision, which keeps float32 sums over 1e5+ terms accurate), and the final
write. The formula itself comes from :mod:`render`.

Layouts (prepared by :mod:`.backend`): i-variables ``(nb, ni, D)``, j-variables transposed and
padded ``(nb, D, njp)`` with ``njp`` a multiple of W, parameters ``(nb, D)``; outputs
``(nb, ni, E)`` or ``(nb, ni, K, E)``.
"""

from __future__ import annotations

from ...formula import CAT_I, CAT_J
from ...reductions import SELECTION, Reduction
from .render import render

TILE = 1024  # j-values per tile; a multiple of every W


def _ptrs(cats: tuple[int, ...], dims: tuple[int, ...]) -> list[str]:
    out = []
    for k, (c, d) in enumerate(zip(cats, dims)):
        off = {CAT_I: f"(b * ni + i) * {d}", CAT_J: f"b * {d} * njp"}.get(c, f"b * {d}")
        out.append(f"const scalar* __restrict a{k} = args[{k}] + {off};")
    return out


def _sum_parts(f, E):
    init = ["double acc[%d] = {0};" % E]
    tile_init = [f"vec tacc{e} = bc(0);" for e in range(E)]
    update = [f"tacc{e} += vsel(valid, {f[e]}, bc(0));" for e in range(E)]
    flush = [f"for (int l = 0; l < W; ++l) acc[{e}] += (double)tacc{e}[l];" for e in range(E)]
    final = [f"out[row * {E} + {e}] = (scalar)acc[{e}];" for e in range(E)]
    return init, tile_init, update, flush, final


def _lse_parts(red: Reduction, f, w, E):
    """Streaming LogSumExp with one exp per pair: per lane (m, s), rescaled only when m grows."""
    G = len(f)  # max groups: 1 (scalar F) or E
    ssmw = red.kind == "ssmw"
    group = (lambda e: e if G > 1 else 0)
    # quantities rescaled with group g: lse -> s_e ; ssmw -> s_g and t_e
    qs = {g: [] for g in range(G)}
    if ssmw:
        for g in range(G):
            qs[g].append(f"s{g}")
        for e in range(E):
            qs[group(e)].append(f"t{e}")
    else:
        for e in range(E):
            qs[group(e)].append(f"s{e}")
    init = [f"double M{g} = -LG_INF;" for g in range(G)]
    init += [f"double S_{q} = 0;" for g in range(G) for q in qs[g]]
    tile_init = [f"vec m{g} = bc(-LG_INF);" for g in range(G)]
    tile_init += [f"vec {q} = bc(0);" for g in range(G) for q in qs[g]]
    update = []
    for g in range(G):
        update += [
            f"const vec F{g} = vsel(valid, {f[g]}, bc(-LG_INF));",
            f"const vec d{g} = F{g} - m{g};",
            f"const vec e{g} = vsel(d{g} != d{g}, bc(0), v_exp(-v_abs(d{g})));",
            f"const ivec up{g} = d{g} > 0;",
            f"m{g} = v_max(m{g}, F{g});",
        ]
    for e in range(E):
        g = group(e)
        if ssmw:
            update.append(f"{{ const vec V = vsel(valid, {w[e]}, bc(0)); "
                          f"t{e} = vsel(up{g}, t{e} * e{g} + V, t{e} + V * e{g}); }}")
        elif w is not None:
            update.append(f"{{ const vec V = vsel(valid, {w[e]}, bc(0)); "
                          f"s{e} = vsel(up{g}, s{e} * e{g} + V, s{e} + V * e{g}); }}")
        else:
            update.append(f"s{e} = vsel(up{g}, s{e} * e{g} + bc(1), s{e} + e{g});")
    if ssmw:
        for g in range(G):
            update.append(f"s{g} = vsel(up{g}, s{g} * e{g} + bc(1), s{g} + e{g});")
    flush = []
    for g in range(G):
        body = " ".join(f"S_{q} = S_{q} * so + (double){q}[l] * sl;" for q in qs[g])
        flush.append(
            f"for (int l = 0; l < W; ++l) {{ const double ml = m{g}[l]; if (ml == -LG_INF) continue; "
            f"const double Mn = M{g} > ml ? M{g} : ml; const double so = std::exp(M{g} - Mn), "
            f"sl = std::exp(ml - Mn); {body} M{g} = Mn; }}"
        )
    if ssmw:
        final = [f"out[row * {E} + {e}] = (scalar)(S_t{e} / S_s{group(e)});" for e in range(E)]
    else:
        final = [f"out[row * {E} + {e}] = (scalar)(M{group(e)} + std::log(S_s{e}));" for e in range(E)]
    return init, tile_init, update, [], flush, final


def _select_parts(red: Reduction, f, E):
    which, _ = SELECTION[red.kind]
    lt = "<" if which == "min" else ">"
    fill = "LG_INF" if which == "min" else "-LG_INF"
    init = [f"vec bv{e} = bc({fill}); ivec bk{e} = ibc(0);" for e in range(E)]
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
            f"out[row * {E} + {e}] = v; outk[row * {E} + {e}] = k; }}"
        )
    return init, [], update, [], final


def _kmin_parts(red: Reduction, f, E):
    K = red.K
    init = [f"scalar kv{e}[{K}]; int64_t kk{e}[{K}]; "
            f"for (int k = 0; k < {K}; ++k) {{ kv{e}[k] = LG_INF; kk{e}[k] = 0; }}" for e in range(E)]
    update = []
    for e in range(E):
        update.append(
            f"{{ const vec F = {f[e] if len(f) > 1 else f[0]}; "
            f"const ivec c = (F < bc(kv{e}[{K - 1}])) & valid; iscalar any = 0; "
            f"for (int l = 0; l < W; ++l) any |= c[l]; "
            f"if (any) for (int l = 0; l < W; ++l) {{ const scalar v = F[l]; "
            f"if (c[l] && v < kv{e}[{K - 1}]) {{ int p = {K - 1}; "
            f"while (p > 0 && kv{e}[p - 1] > v) {{ kv{e}[p] = kv{e}[p - 1]; kk{e}[p] = kk{e}[p - 1]; --p; }} "
            f"kv{e}[p] = v; kk{e}[p] = j + l; }} }} }}"
        )
    final = [f"for (int k = 0; k < {K}; ++k) {{ out[(row * {K} + k) * {E} + {e}] = kv{e}[k]; "
             f"outk[(row * {K} + k) * {E} + {e}] = kk{e}[k]; }}" for e in range(E)]
    return init, [], update, [], final


def generate(red: Reduction, cats: tuple[int, ...], dims: tuple[int, ...]) -> str:
    """The C++ source of one kernel (without the scalar type, set by -DLG_SCALAR)."""
    formulas = list(red.formulas)
    hoisted, body, outs = render(formulas)
    f = outs[0]
    w = outs[1] if len(outs) > 1 else None
    E = red.out_dim
    if red.kind == "sum":
        init, tile_init, update, flush, final = _sum_parts(f, E)
    elif red.kind in ("lse", "ssmw"):
        init, tile_init, update, _, flush, final = _lse_parts(red, f, w, E)
    elif red.kind in ("min_argmin", "max_argmax"):
        init, tile_init, update, flush, final = _select_parts(red, f, E)
    elif red.kind == "kmin_argkmin":
        init, tile_init, update, flush, final = _kmin_parts(red, f, E)
    else:
        raise NotImplementedError(f"the CPU backend runs {red.kind!r} through its pair kind")
    ind = lambda lines, n: "\n".join(" " * n + s for s in lines)  # noqa: E731
    return f"""// generated by lazygeom: {red.kind} over j
#include "lgmath.hpp"

// row_cluster (ni), slices (clusters) and redranges (2 per range) describe block-sparse ranges;
// all three are null for a dense reduction over [0, nj).
extern "C" int lg_kernel(int64_t nb, int64_t ni, int64_t nj, int64_t njp, const scalar* const* args,
                         scalar* __restrict out, int64_t* __restrict outk, int nthreads,
                         const int64_t* row_cluster, const int64_t* slices, const int64_t* redranges) {{
  ivec lane;
  for (int l = 0; l < W; ++l) lane[l] = l;
  #pragma omp parallel for schedule(dynamic, 64) num_threads(nthreads)
  for (int64_t row = 0; row < nb * ni; ++row) {{
    const int64_t b = row / ni, i = row % ni;
    (void)b; (void)i;
    const int64_t dense[2] = {{0, nj}};
    const int64_t* jr = dense;
    int64_t nr = 1;
    if (row_cluster) {{
      const int64_t c = row_cluster[i];
      const int64_t r0 = c > 0 ? slices[c - 1] : 0;
      jr = redranges + 2 * r0;
      nr = c < 0 ? 0 : slices[c] - r0;
    }}
{ind(_ptrs(cats, dims), 4)}
{ind(hoisted, 4)}
{ind(init, 4)}
    for (int64_t r = 0; r < nr; ++r)
    for (int64_t j0 = jr[2 * r]; j0 < jr[2 * r + 1]; j0 += {TILE}) {{
      const int64_t j1 = j0 + {TILE} < jr[2 * r + 1] ? j0 + {TILE} : jr[2 * r + 1];
{ind(tile_init, 6)}
      // full vectors need no mask (the constant mask folds away); the last one is masked
      const int64_t jfull = j0 + (j1 - j0) / W * W;
      for (int64_t j = j0; j < jfull; j += W) {{
        const ivec valid = ibc(-1);
{ind(body, 8)}
{ind(update, 8)}
      }}
      if (jfull < j1) {{
        const int64_t j = jfull;
        const ivec valid = (ibc((iscalar)(j - j1)) + lane) < 0;
{ind(body, 8)}
{ind(update, 8)}
      }}
{ind(flush, 6)}
    }}
{ind(final, 4)}
  }}
  return 0;
}}
"""
