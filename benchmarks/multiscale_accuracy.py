"""Multiscale Sinkhorn: how far from the online solver, and how fast, for each ``truncate``.

    .venv/bin/python benchmarks/multiscale_accuracy.py            # N = M = 10^4, float64 (about 5 minutes)
    .venv/bin/python benchmarks/multiscale_accuracy.py --n 5000 --blur 0.1

Both solvers run the same converged schedule (blur 0.05, scaling 0.8 and 60 extra iterations at
the target ε by default: a residual of a few 1e-3 ε), so that their difference is the truncation's, not the
paths' (with one update per scale, scaling 0.5, each solver is a few percent off the converged
value and the two differ by about that much). The clouds are those of ``benchmarks/ot.py``: x
uniform in the unit cube, y a Gaussian blob (mean 0.5, std 0.15), D = 3.

Columns: the relative differences of the loss and of its gradient in x (l2 norms) against the
online solver and against the multiscale solver without truncation (``truncate=None``: same
hierarchy, same path; this isolates the truncation's error, while the difference with the online
solver also holds the two paths' convergence gap), the time of each solve (forward + backward),
and the fraction of the point pairs within the last xy update's bound. Writes
``results/multiscale_accuracy.md``/``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TRUNCATES = (None, 1.0, 2.0, 3.0, 5.0, 8.0)


def solve(x, y, blur, extra, **kw):
    from lazygeom.ot import sinkhorn
    from lazygeom.ot.losses.divergence import sinkhorn_cost

    xs = x.clone().requires_grad_()
    t0 = time.perf_counter()
    res = sinkhorn(xs, y, blur=blur, scaling=0.8, extra_iterations=extra, **kw)
    n = x.shape[0]
    a = torch.full((1, n), 1.0 / n, dtype=x.dtype)
    S = sinkhorn_cost(a, a, res.map(lambda t: t[None]))[0]
    (g,) = torch.autograd.grad(S, xs)
    return float(S.detach()), g, time.perf_counter() - t0, res.residual


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blur", type=float, default=0.05)
    ap.add_argument("--extra", type=int, default=60, help="iterations at the target ε after the schedule")
    ap.add_argument("--cluster-scale", type=lambda v: None if v.lower() == "none" else float(v), default=None,
                    help="the finest grid side of the multiscale solver (default: none, its kd-tree clusters)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(args.n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    kw = dict(blur=args.blur, extra=args.extra)
    solve(x[:500], y[:500], backend="online", **kw)  # compile the kernels outside the timings
    solve(x[:500], y[:500], backend="multiscale", **kw)
    S1, g1, t1, r1 = solve(x, y, backend="online", **kw)
    rows = [{"truncate": "online", "loss": S1, "seconds": t1, "residual": r1}]
    print(f"online: S = {S1:.8g}, {t1:.1f} s, residual {r1:.2g} eps", flush=True)
    from lazygeom.ot.multiscale import solver as ms_module

    for tau in TRUNCATES:
        seen = []
        original = ms_module.Multiscale._report_pairs

        def report(self, _orig=original):  # record the visited fraction of the last level reached
            _orig(self)
            seen.append(self.visited_fraction)

        ms_module.Multiscale._report_pairs = report
        try:
            S0, g0, t0, r0 = solve(x, y, backend="multiscale", truncate=tau, cluster_scale=args.cluster_scale, **kw)
        finally:
            ms_module.Multiscale._report_pairs = original
        if tau is None:
            S2, g2 = S0, g0
        row = {"truncate": tau, "loss": S0, "rel_loss": abs(S0 - S1) / abs(S1),
               "rel_grad": float((g0 - g1).norm() / g1.norm()), "rel_loss_untruncated": abs(S0 - S2) / abs(S2),
               "rel_grad_untruncated": float((g0 - g2).norm() / g2.norm()), "seconds": t0, "residual": r0,
               "visited_xy": seen[-1] if seen else math.nan}
        rows.append(row)
        print(f"truncate={tau}: vs online {row['rel_loss']:.2e} / {row['rel_grad']:.2e}, vs untruncated "
              f"{row['rel_loss_untruncated']:.2e} / {row['rel_grad_untruncated']:.2e}, {t0:.1f} s, "
              f"xy pairs kept {100 * row['visited_xy']:.3g}%", flush=True)
    lines = [
        "# Multiscale Sinkhorn: accuracy against the online solver, per `truncate`",
        "",
        f"N = M = {args.n:,}, D = 3, float64, blur {args.blur}, scaling 0.8 + {args.extra} iterations at the "
        f"target ε (online residual {r1:.2g} ε), p = 2, debiased, multiscale "
        + ("kd-tree clusters (the default); " if args.cluster_scale is None
           else f"`cluster_scale={args.cluster_scale}`; ") +
        "x uniform in the unit cube, y normal (0.5, 0.15²); "
        f"{args.threads} threads. Time: one solve, forward + gradient in x.",
        "",
        "| truncate | loss vs online | gradient vs online | loss vs untruncated | gradient vs untruncated | time "
        "| xy point pairs kept (last step) |",
        "|---|---|---|---|---|---|---|",
        f"| online | (S = {S1:.8g}) | - | - | - | {t1:.1f} s | 100% |",
    ]
    for r in rows[1:]:
        lines.append(f"| {r['truncate']} | {r['rel_loss']:.1e} | {r['rel_grad']:.1e} | {r['rel_loss_untruncated']:.1e} "
                     f"| {r['rel_grad_untruncated']:.1e} | {r['seconds']:.1f} s | {100 * r['visited_xy']:.3g}% |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {platform.platform()}.", "",
              "Reproduce: `.venv/bin/python benchmarks/multiscale_accuracy.py`."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "multiscale_accuracy.md").write_text("\n".join(lines) + "\n")
    (out / "multiscale_accuracy.json").write_text(json.dumps({"n": args.n, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
