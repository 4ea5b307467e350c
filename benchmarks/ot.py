"""Sinkhorn divergence, forward + backward: lazygeom.ot against GeomLoss and POT, in one run.

    .venv/bin/python benchmarks/ot.py            # N = M in 1k, 2k, 5k, 10k, 20k (about 10-15 minutes)
    .venv/bin/python benchmarks/ot.py --quick    # N = M in 1k, 2k, 5k
    .venv/bin/python benchmarks/ot.py --sizes 5000 --impls lazygeom geomloss-online
    .venv/bin/python benchmarks/ot.py --multiscale   # N = M from 10k to 1M, multiscale vs online
                                                     # (writes results/multiscale.*; about 30 minutes)

Peers are in the ``bench`` extra (``pip install -e ".[bench]"``: geomloss, pot, pykeops,
matplotlib). A peer that cannot be imported or run is reported as such; the script still runs.

The problem. x: N points uniform in the unit cube; y: M = N points from a normal law (mean 0.5,
standard deviation 0.15 per axis); D = 3, float32, uniform weights; p = 2 (cost |x − y|²/2),
blur 0.05 (ε = 0.0025), scaling 0.5. Implementations:

- ``lazygeom``: ``lazygeom.ot.SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.5)`` (backend
  "auto": online LazyTensor reductions on the compiled CPU backend below 8,000 points, multiscale
  from there), the debiased divergence S_ε, value + gradient with respect to x (``.backward()``);
- ``lazygeom-online``, ``lazygeom-multiscale``: the same with that backend forced;
- ``lazygeom-multiscale-resolution`` (``--multiscale`` only): multiscale with the blur following
  the sampling resolution, blur = 0.05 (N / 50,000)^(−1/3) (0.086 at 10^4, 0.018 at 10^6): the
  regime of the N log N claim, where the number of points within a few blurs of a point stays
  constant. At a fixed blur it grows like N, and so does the work per point;
- ``lazygeom-s0.9``: the same with ``scaling=0.9`` (about 5x more iterations): how much of the
  error is the short schedule's;
- ``geomloss-online``: ``geomloss.SamplesLoss`` with the same arguments and ``backend="online"``
  (pykeops on CPU), value + gradient;
- ``geomloss-multiscale``: ``backend="multiscale"`` (two levels, pykeops block-sparse reductions);
- ``geomloss-tensorized``: the same with dense torch matrices (only up to ``--tensorized-max``);
- ``pot-emd2``: ``ot.emd2`` (exact network simplex, float64): the exact OT value, forward only;
- ``pot-sinkhorn2``: ``ot.sinkhorn2(reg=ε=0.0025)`` (POT's default method, float64; the returned
  value is ⟨π_ε, C⟩), forward only.

Each method's value is compared with the exact value of ``pot-emd2`` where it ran: the column
"error" is |value − OT| / OT (for the Sinkhorn divergences it mixes the entropic bias at this blur
and the unconverged iterations of a 0.5 scaling, which is the point of showing it).

Protocol. Every (implementation, N) runs in its own subprocess with ``--threads`` threads: it
builds the data from a fixed seed, makes one call at N = 512 (imports, compilation of kernels),
then times calls at size N (the best of up to ``--repeats`` within ``--budget`` seconds). A run
predicted (from the previous size, quadratically: cubically for emd2) to take longer than
``--max-call`` seconds is skipped and marked so. CPU time is recorded with the wall time: a CPU
share well below 1 (CPU time / (wall x threads)) means other processes competed for the cores,
and the load average is written with the results.

Floor. lazygeom's online solver initialises with 4 LogSumExp reductions (f, g, f_aa, g_bb), then
runs ``n_steps`` Jacobi steps (the schedule's remaining values and the final extrapolation), each
one pass over the pairs of xy (both updates) and one over half the pairs of xx and of yy
(symmetric), that is 2 N² pair evaluations (N = M); the final pass also sums the gradient's
moments, so the backward evaluates no pairs. The table's "G pairs/s" is (4 + 2 n_steps) N²
divided by the time.

Outputs: ``benchmarks/results/ot.md`` (the table, also printed), ``ot.json`` (every number, the
machine) and ``ot.png`` (time and error against N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
D, BLUR, SCALING, SEED = 3, 0.05, 0.5, 0
IMPLS = ("lazygeom", "lazygeom-s0.9", "lazygeom-online", "lazygeom-multiscale", "lazygeom-multiscale-resolution",
         "geomloss-online", "geomloss-multiscale", "geomloss-tensorized", "pot-emd2", "pot-sinkhorn2")
#: lazygeom-multiscale-resolution: blur = BLUR (N / RESOLUTION_N)^(-1/D), the sampling resolution's scale
RESOLUTION_N = 50_000
#: predicted time ~ N^growth, to skip calls that would exceed --max-call (2 for the others)
GROWTH = {"pot-emd2": 3.0, "lazygeom-multiscale": 1.8, "lazygeom-multiscale-resolution": 1.3,
          "geomloss-multiscale": 1.6}
#: seconds: calls predicted to take longer are skipped (``--max-call``)
MAX_CALL = 150.0
#: the speed-up columns of the table: (ours, peer)
RATIOS = (("lazygeom", "geomloss-online"), ("lazygeom-multiscale", "geomloss-multiscale"),
          ("lazygeom-multiscale", "lazygeom-online"))


# --------------------------------------------------------------------------------------------
# worker side: one (implementation, N) per process
# --------------------------------------------------------------------------------------------


def _data(n: int):
    import torch

    g = torch.Generator().manual_seed(SEED)
    x = torch.rand(n, D, generator=g)
    y = torch.randn(n, D, generator=g) * 0.15 + 0.5
    return x, y


def _torch_call(loss):
    def call(x, y):
        xg = x.clone().requires_grad_(True)
        value = loss(xg, y)
        value.backward()
        assert xg.grad is not None and bool(xg.grad.isfinite().all())
        return float(value.detach())

    return call


def _blur(impl: str, n: int) -> float:
    return BLUR * (n / RESOLUTION_N) ** (-1.0 / D) if impl == "lazygeom-multiscale-resolution" else BLUR


def _make_call(impl: str, n: int):
    """``call(x, y) -> value`` (float) for an implementation at size n."""
    import warnings

    warnings.filterwarnings("ignore")
    if impl.startswith("lazygeom"):
        from lazygeom.ot import SamplesLoss

        scaling = 0.9 if impl == "lazygeom-s0.9" else SCALING
        backend = impl.split("-")[1] if impl.startswith(("lazygeom-online", "lazygeom-multiscale")) else "auto"
        return _torch_call(SamplesLoss("sinkhorn", p=2, blur=_blur(impl, n), scaling=scaling, backend=backend))
    if impl.startswith("geomloss"):
        import geomloss

        backend = impl.split("-")[1]
        return _torch_call(geomloss.SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=SCALING, backend=backend))
    import numpy as np

    # this script is benchmarks/ot.py: its folder must not shadow POT's package `ot`
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.modules.pop("ot", None)
    import ot

    def pot_call(x, y):
        X, Y = x.double().numpy(), y.double().numpy()
        a = np.full(len(X), 1.0 / len(X))
        b = np.full(len(Y), 1.0 / len(Y))
        M = ot.dist(X, Y) / 2  # squared Euclidean / 2: GeomLoss's p = 2 cost
        if impl == "pot-emd2":
            return float(ot.emd2(a, b, M, numItermax=100_000_000))
        return float(ot.sinkhorn2(a, b, M, reg=BLUR**2))

    return pot_call


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    call = _make_call(spec["impl"], spec["n"])
    t0 = time.perf_counter()
    call(*_data(512))
    first = time.perf_counter() - t0
    x, y = _data(spec["n"])
    times, cpus, value = [], [], None
    start = time.perf_counter()
    while len(times) < spec["repeats"]:
        c0, w0 = time.process_time(), time.perf_counter()
        value = call(x, y)
        times.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if time.perf_counter() - start + times[-1] > spec["budget"]:
            break
    k = min(range(len(times)), key=times.__getitem__)
    out = {"impl": spec["impl"], "n": spec["n"], "seconds": times[k], "cpu_seconds": cpus[k], "runs": len(times),
           "value": value, "first_call_512": first}
    from lazygeom.ot.solver.softmin import MULTISCALE_MIN_POINTS

    # "lazygeom" and "lazygeom-s0.9" use backend="auto": online below MULTISCALE_MIN_POINTS only
    dense = spec["impl"] == "lazygeom-online" or (
        spec["impl"] in ("lazygeom", "lazygeom-s0.9") and spec["n"] < MULTISCALE_MIN_POINTS)
    if dense:
        # dense pair evaluations: meaningful for the online solver only ("auto" is online below it)
        from lazygeom.ot import epsilon_schedule, max_diameter

        scaling = 0.9 if spec["impl"] == "lazygeom-s0.9" else SCALING
        steps = len(epsilon_schedule(2, max_diameter(x, y), BLUR, scaling))
        out["pair_evaluations"] = (4 + 2 * steps) * spec["n"] ** 2
    return out


# --------------------------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------------------------


def _run(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"impl": spec["impl"], "n": spec["n"], "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"impl": spec["impl"], "n": spec["n"], "error": f"failed: {tail[0][:200]}"}
    return json.loads(lines[-1])


def _load() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _fmt_t(r: dict) -> str:
    if "skipped" in r:
        return f"skipped ({r['skipped']})"
    if "error" in r:
        return r["error"]
    share = r["cpu_seconds"] / (r["seconds"] * r["threads"])
    return f"{r['seconds']:.3g} s (cpu {share:.2f})"


def _table(results: list[dict], sizes: list[int], impls: list[str]) -> str:
    by = {(r["impl"], r["n"]): r for r in results}
    ratios = [(a, b) for a, b in RATIOS if a in impls and b in impls]
    head = "| N = M | " + " | ".join(impls) + "".join(f" | {a} speed-up vs {b}" for a, b in ratios) + " |"
    lines = [head, "|" + "---|" * (len(impls) + len(ratios) + 1)]
    for n in sizes:
        exact = by.get(("pot-emd2", n), {}).get("value")
        cells = []
        for impl in impls:
            r = by.get((impl, n))
            if r is None:
                cells.append("-")
                continue
            cell = _fmt_t(r)
            if "value" in r:
                err = f", error {abs(r['value'] - exact) / exact:.1%}" if exact else ""
                cell += f"<br>value {r['value']:.5g}{err}"
                if "pair_evaluations" in r:
                    cell += f"<br>{r['pair_evaluations'] / r['seconds'] / 1e9:.2f} G pairs/s"
            cells.append(cell)
        cols = []
        for a, b in ratios:
            ra, rb = by.get((a, n), {}), by.get((b, n), {})
            cols.append(f"{rb['seconds'] / ra['seconds']:.1f}x" if "seconds" in ra and "seconds" in rb else "-")
        lines.append(f"| {n:,} | " + " | ".join(cells + cols) + " |")
    return "\n".join(lines)


def _plot(results: list[dict], path: Path) -> bool:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    exact = {r["n"]: r["value"] for r in results if r["impl"] == "pot-emd2" and "value" in r}
    # the error panel needs the exact values of ot.emd2 (not run at the multiscale sizes)
    fig = Figure(figsize=(11, 4.5) if exact else (6, 4.5))
    FigureCanvasAgg(fig)
    ax_t = fig.add_subplot(1, 2 if exact else 1, 1)
    ax_e = fig.add_subplot(1, 2, 2) if exact else None
    has_errors = False
    for impl in IMPLS:
        rs = sorted((r for r in results if r["impl"] == impl and "seconds" in r), key=lambda r: r["n"])
        if not rs:
            continue
        ax_t.loglog([r["n"] for r in rs], [r["seconds"] for r in rs], "o-", label=impl)
        if impl.startswith("lazygeom-multiscale") and len(rs) > 1:  # trend guides through its first point
            import math

            n0, t0 = rs[0]["n"], rs[0]["seconds"]
            ns = [r["n"] for r in rs]
            fixed = impl == "lazygeom-multiscale"  # the resolution series gets the N log N guide only
            ax_t.loglog(ns, [t0 * n * math.log(n) / (n0 * math.log(n0)) for n in ns], "k--", lw=0.8,
                        label="∝ N log N" if fixed or not any(r["impl"] == "lazygeom-multiscale" for r in results)
                        else None)
            if fixed:
                ax_t.loglog(ns, [t0 * (n / n0) ** 2 for n in ns], "k:", lw=0.8, label="∝ N²")
        er = [(r["n"], abs(r["value"] - exact[r["n"]]) / exact[r["n"]]) for r in rs if r["n"] in exact]
        if er and impl != "pot-emd2" and ax_e is not None:
            ax_e.semilogx([n for n, _ in er], [100 * e for _, e in er], "o-", label=impl)
            has_errors = True
    ax_t.set_xlabel("N = M")
    ax_t.set_ylabel("seconds (lazygeom, geomloss: forward + backward)")
    resolution = any(r["impl"] == "lazygeom-multiscale-resolution" for r in results)
    ax_t.set_title(f"Sinkhorn, D={D}, float32, blur {BLUR}" + (f" (resolution: {BLUR}·(N/{RESOLUTION_N:.0e})^(-1/{D}))"
                                                               if resolution else "") + f", scaling {SCALING}",
                   fontsize=9 if resolution else None)
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7, loc="upper left")
    if ax_e is not None:
        ax_e.set_xlabel("N = M")
        ax_e.set_ylabel("|value - exact OT| / exact OT (%)")
        ax_e.set_title("error against ot.emd2")
        ax_e.grid(True, which="both", alpha=0.3)
        if has_errors:
            ax_e.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="N = M in 1k, 2k, 5k")
    ap.add_argument("--multiscale", action="store_true",
                    help="N = M from 10k to 1M: lazygeom multiscale vs online vs GeomLoss multiscale, "
                         "written to results/multiscale.{md,json,png}")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per measurement")
    ap.add_argument("--max-call", type=float, default=MAX_CALL, help="skip calls predicted to take longer")
    ap.add_argument("--tensorized-max", type=int, default=5000, help="largest N for geomloss-tensorized")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--replot", action="store_true", help="redraw the figure from the saved JSON, run nothing")
    ap.add_argument("--merge", action="store_true",
                    help="keep the previous run's results (same output file) that this run does not redo")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    name = "multiscale" if args.multiscale else "ot"
    if args.replot:
        saved = json.loads((Path(args.out) / f"{name}.json").read_text())["results"]
        print("wrote" if _plot(saved, Path(args.out) / f"{name}.png") else "no matplotlib:", f"{name}.png")
        return 0
    if args.multiscale:
        sizes = args.sizes or [10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000]
        if args.impls == list(IMPLS):
            args.impls = ["lazygeom-multiscale", "lazygeom-multiscale-resolution", "lazygeom-online",
                          "geomloss-multiscale"]
    else:
        sizes = args.sizes or ([1000, 2000, 5000] if args.quick else [1000, 2000, 5000, 10000, 20000])
        if args.impls == list(IMPLS):  # the resolution series belongs to --multiscale's sizes
            args.impls = [i for i in IMPLS if i != "lazygeom-multiscale-resolution"]
    load_before, t_start = _load(), time.time()
    results: list[dict] = []
    kept: list[dict] = []
    old_meta: dict = {}
    if args.merge and (Path(args.out) / f"{name}.json").exists():
        old = json.loads((Path(args.out) / f"{name}.json").read_text())
        # every measurement this run does not redo is kept (other implementations, other sizes)
        kept = [r for r in old["results"] if r["impl"] not in args.impls or r["n"] not in sizes]
        old_meta = old["meta"]
    last: dict[str, dict] = {}
    for n in sizes:
        for impl in args.impls:
            spec = {"impl": impl, "n": n, "threads": args.threads, "repeats": args.repeats, "budget": args.budget}
            prev = last.get(impl)
            if impl == "geomloss-tensorized" and n > args.tensorized_max:
                r = {"impl": impl, "n": n, "skipped": f"N > {args.tensorized_max}: dense N x M matrices"}
            elif prev is not None and "seconds" not in prev:
                r = {"impl": impl, "n": n, "skipped": "failed or skipped at a smaller N"}
            elif prev is not None and prev["seconds"] * (n / prev["n"]) ** GROWTH.get(impl, 2.0) > args.max_call:
                pred = prev["seconds"] * (n / prev["n"]) ** GROWTH.get(impl, 2.0)
                r = {"impl": impl, "n": n, "skipped": f"predicted {pred:.0f} s > --max-call"}
            else:
                r = _run(spec, timeout=60 + args.max_call + args.budget * 2)
            r["threads"] = args.threads
            results.append(r)
            last[impl] = r
            value = f"  value {r['value']:.6g}" if "value" in r else ""
            print(f"N={n:>6} {impl:<20} {_fmt_t(r)}{value}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = kept + results
    impls = [i for i in IMPLS if any(r["impl"] == i for r in results)]
    sizes = sorted({r["n"] for r in results})
    table = _table(results, sizes, impls)
    load_after = _load()
    busy = any(v > 0.5 for v in load_before[:1]) or any(v > args.threads + 0.5 for v in load_after[:1])
    md = [
        "# Sinkhorn divergence: lazygeom.ot vs GeomLoss vs POT",
        "",
        f"Forward + backward (gradient w.r.t. x) for lazygeom and GeomLoss; forward only for POT (float64 numpy). "
        f"D = {D}, float32, blur {BLUR} (ε = {BLUR**2:g}), scaling {SCALING}, p = 2, uniform weights; "
        f"x uniform in the unit cube, y normal (0.5, 0.15²). {args.threads} threads, best of up to {args.repeats} "
        "calls per cell, each (implementation, N) in its own process; `cpu` is the CPU share "
        "(CPU time / (wall x threads)). \"error\" is |value − OT| / OT against POT's exact `ot.emd2`.",
        "",
        table,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"load average before {load_before}, after {load_after}"
        + (" — other work was running: absolute times are pessimistic; compare ratios within the run."
           if busy else "."),
        "",
        "Reproduce: `.venv/bin/python benchmarks/ot.py" + (" --quick" if args.quick else "")
        + (" --multiscale" if args.multiscale else "")
        + (f" --max-call {args.max_call:g}" if args.max_call != MAX_CALL else "") + "`.",
    ]
    merged = sorted({r["impl"] for r in kept})
    if merged:
        fresh = ", ".join(f"{r['impl']} at N = {r['n']:,}" for r in results[len(kept):])
        md.insert(-2, f"Measured in this run: {fresh}; the other cells come from a previous run (load average "
                      f"before {old_meta.get('load_before')}, after {old_meta.get('load_after')}).")
        md.insert(-2, "")
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    meta = {"sizes": sizes, "impls": impls, "merged_from_previous_run": merged, "previous_meta": old_meta or None,
            "threads": args.threads, "blur": BLUR, "scaling": SCALING, "D": D, "load_before": load_before,
            "load_after": load_after, "seconds_total": time.time() - t_start,
            "machine": {"processor": platform.processor(), "cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()}}
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    plotted = _plot(results, out / f"{name}.png")
    print()
    print(table)
    plot = f", {out / f'{name}.png'}" if plotted else " (no matplotlib: no plot)"
    print(f"\nwrote {out / f'{name}.md'}, {out / f'{name}.json'}{plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
