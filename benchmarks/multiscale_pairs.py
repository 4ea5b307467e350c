"""How many point pairs the multiscale solver's fine level needs, visits, and could visit.

    .venv/bin/python benchmarks/multiscale_pairs.py            # N = M = 50,000 (about 3 minutes)
    .venv/bin/python benchmarks/multiscale_pairs.py --n 10000 --leaf 16 64

The problem of ``benchmarks/ot.py`` (x uniform in the unit cube, y normal (0.5, 0.15²), D = 3,
blur 0.05, scaling 0.5, truncate τ = 5). From the converged multiscale potentials (f, g, f_aa,
g_bb), for each soft-min pair (xy: rows x, yx: rows y, xx, yy), as fractions of N·M:

- ``exact``: the pairs with a plan exponent f_i + g_j − C(x_i, y_j) >= −τ·ε, what the truncation
  bound must keep (a lower bound for any block scheme);
- ``row-exact``: the pairs visited if each *row* tested each column block J of the kd-tree level
  above the points (leaves of ``--leaf`` points) with the rigorous per-(row, block) bound
  f_i − |x_i − Y_J|²/2 + G_J + Σ_d |x_i − Y_J + v_J|_d h_J,d (G_J = max over j in J of
  g_j − ⟨v_J, y_j − Y_J⟩ − |y_j − Y_J|²/2, v_J a least-squares fit of g's slope in J, h_J the
  block's extents) — what a per-row culling inside the kernels would visit;
- ``visited``: what the solver's block pairs visit (its ``verbose`` report, the last truncation).

Printed, not written: an analysis for the design of the fine level, not a peer comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ot import BLUR, SCALING, _data  # noqa: E402

from lazygeom import Vi, Vj  # noqa: E402
from lazygeom.ot import sinkhorn  # noqa: E402
from lazygeom.ot.multiscale.hierarchy import build_trees  # noqa: E402

TAU = 5.0


def exact_fraction(X, Y, f, g, eps: float) -> float:
    e = Vi(f[:, None]) + Vj(g[:, None]) - Vi(X).sqdist(Vj(Y)) / 2
    return float((e + TAU * eps).step().sum(dim=1).sum()) / (X.shape[0] * Y.shape[0])


def row_exact_fraction(X, Y, f, g, blocks, eps: float) -> float:
    """Pairs visited by per-(row, block) culling with the bound of the module docstring."""
    X, Y, f, g = X.double(), Y.double(), f.double(), g.double()
    ch = blocks.children
    nb = blocks.size
    size = (ch[:, 1] - ch[:, 0]).double()
    bid = torch.repeat_interleave(torch.arange(nb), ch[:, 1] - ch[:, 0])
    YJ = blocks.points.double()
    d = Y - YJ[bid]
    D = d.shape[1]
    gc = g - torch.zeros(nb, dtype=torch.float64).index_add_(0, bid, g)[bid] / size[bid]
    num = torch.zeros(nb, D, dtype=torch.float64).index_add_(0, bid, d * gc[:, None])
    den = torch.zeros(nb, D, dtype=torch.float64).index_add_(0, bid, d * d).clamp(min=1e-12)
    v = num / den
    G = torch.full((nb,), -torch.inf, dtype=torch.float64).scatter_reduce_(
        0, bid, g - (v[bid] * d).sum(1) - (d * d).sum(1) / 2, "amax")
    h = torch.zeros(nb, D, dtype=torch.float64).scatter_reduce_(0, bid[:, None].expand(-1, D), d.abs(), "amax")
    visited = 0.0
    for s in range(0, X.shape[0], 2048):  # (2048, nb) bounds at a time
        diff = X[s:s + 2048, None, :] - YJ[None]
        bound = f[s:s + 2048, None] - (diff * diff).sum(-1) / 2 + G[None] + ((diff + v[None]).abs() * h[None]).sum(-1)
        visited += float(((bound >= -TAU * eps).double() * size[None]).sum())
    return visited / (X.shape[0] * Y.shape[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--leaf", type=int, nargs="+", default=[64, 16])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, eps = args.n, BLUR**2
    x, y = _data(n)
    res = sinkhorn(x, y, blur=BLUR, scaling=SCALING, backend="multiscale", truncate=TAU, verbose=True)
    w = torch.full((1, n), 1.0 / n)
    pots = {"xy": (x, y, res.f, res.g), "yx": (y, x, res.g, res.f), "xx": (x, x, res.f_aa, res.f_aa),
            "yy": (y, y, res.g_bb, res.g_bb)}
    print(f"\nN = M = {n}, tau = {TAU}, eps = {eps:.4g}: fractions of N*M")
    for name, (X, Y, f, g) in pots.items():
        print(f"{name}: exact {exact_fraction(X, Y, f.reshape(-1), g.reshape(-1), eps):.4f}")
    for leaf in args.leaf:
        tx, ty = build_trees(x[None], w, y[None], w, None, None, leaf_size=leaf)
        trees = {"x": tx, "y": ty}
        for name, (X, Y, f, g) in pots.items():
            tr, tc = trees[name[0]], trees[name[1]]
            fi, gj = f.reshape(-1)[tr.order], g.reshape(-1)[tc.order]
            frac = row_exact_fraction(tr.levels[-1].points, tc.levels[-1].points, fi, gj, tc.levels[-2], eps)
            print(f"{name}: row-exact culling over blocks of the leaf-{leaf} kd-tree "
                  f"({tc.levels[-2].size} blocks): {frac:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
