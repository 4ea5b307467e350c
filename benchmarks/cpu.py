"""lazygeom's native CPU backend against its peers (pykeops, FAISS, dense PyTorch), in one run.

    .venv/bin/python benchmarks/cpu.py            # full sizes (about 30 minutes on 2 cores, 10 of them 1M x 1M)
    .venv/bin/python benchmarks/cpu.py --quick    # small sizes, no 1M x 1M run (a few minutes)
    .venv/bin/python benchmarks/cpu.py --only gauss1 knn --repeats 5

Peers are the ``bench`` extra: ``.venv/bin/pip install -e ".[bench]"`` (pykeops, faiss-cpu,
matplotlib). A peer that cannot be imported or run is reported as such in the table; the script
still runs.

What is measured (float32, ``--threads`` threads, 2 by default):

=========  ==================================================================  ====================
name       problem                                                             peers
=========  ==================================================================  ====================
gauss1     ``a_i = sum_j exp(-|x_i - y_j|^2) b_j``, D = 3, b of dim 1          pykeops, torch
gauss3     the same with b of dim 3                                            pykeops, torch
lse        ``a_i = log sum_j exp(-|x_i - y_j|^2 / 0.1)``, D = 3                pykeops, torch
cauchy     ``a_i = sum_j b_j / (1 + |x_i - y_j|^2)``, D = 3, b of dim 3          pykeops, torch
hyperbolic ``argmin_j |x_i - y_j|^2 / (x_i[2] y_j[2])`` (upper half space), D=3  pykeops, torch
knn        the 10 nearest neighbours (argKmin of the squared distance), D = 50  faiss, pykeops, torch
compile    cold compilation of a formula (fresh cache folder, new process)      pykeops
overhead   one cached call at N = M = 10 (median of many calls)                 pykeops, torch
big        gauss1 at N = M = 1,000,000, with its peak extra resident memory     (lazygeom only)
=========  ==================================================================  ====================

N = M = 50,000 (knn: 20,000); ``--quick``: 10,000 (knn: 5,000), and no ``big``.

Protocol. Every (benchmark, implementation) runs in its own subprocess, so that a peer's crash,
thread pool or allocator state cannot touch another's numbers. The subprocess imports, builds the
data from a fixed seed (the same for every implementation), calls once at a small size (200 rows:
this first call includes the kernel compilation of the compiled implementations and is reported
as "first call"), calls once at full size (warm-up), then times ``--repeats`` calls (3 by default;
fewer when one call takes more than ``--budget / repeats`` seconds) and keeps the best. Every
timing is also paired with the process' CPU time during the call: ``cpu share = CPU time /
(wall time x threads)`` is near 1 for a compute-bound kernel that had the cores to itself, and
drops when other processes compete for them (the load average is recorded as well). Compiled
kernels go to fresh cache folders made for the run (``--cache`` keeps them in a fixed folder
instead), so that "first call" means the same thing for lazygeom and pykeops.

Implementations. lazygeom: ``lazygeom.LazyTensor`` reductions with ``backend="cpu"``. pykeops:
``pykeops.torch.LazyTensor`` with the same formula, on its CPU path (its default compile flags:
``-O3 -fopenmp``, no ``-march=native``), ``OMP_NUM_THREADS`` threads. FAISS: ``IndexFlatL2``
(index built and searched inside the timed call), ``faiss.omp_set_num_threads``. torch: dense
``torch.cdist`` (matrix-product path) followed by the elementwise map and the reduction, in
blocks of rows holding at most 256 MB of kernel matrix.

Correctness. 200 rows spread over the i-range are recomputed in float64 (dense, against all M
columns) and every implementation's output on those rows is compared with them: sums and
LogSumExp by the relative error ``||a - a_ref|| / ||a_ref||`` (pass below 1e-4); argmin by the gap
between the float64 value at the returned index and the true minimum, relative to the minimum
(pass below 1e-5, so that near-ties do not fail); kNN by the recall of the exact 10 nearest
neighbours (pass at 0.99 or more). A fast wrong answer is reported as FAIL.

Ceilings (DESIGN.md section 5: count the floor first). Three small C++ loops (``cpu_ceiling.cpp``),
compiled here with ``g++ -O3 -march=native -fopenmp`` and lazygeom's own vector header
(``src/lazygeom/backends/cpu/lgmath.hpp``), measure this machine's

- FMA peak (GFLOP/s): 12 independent accumulators ``acc = acc * a + b`` on W-lane vectors, held in
  registers (an FMA counts as 2 flops);
- vectorised exp throughput (G exp/s): lazygeom's ``v_exp`` over an L1-resident array, summed;
- vectorised division throughput (G div/s): ``1 / x`` over the same array, summed;
- for comparison only, the throughput of a fixed exp (Cephes ``expf``, kept in the program): the
  exp ceiling moves when lazygeom's ``v_exp`` changes, this one does not.

Each is measured in many short trials (about 5 ms) with one thread, and the best trial kept:
on a machine shared with other work a long trial measures the other work. The ceiling for T
threads is T times the one-core rate (the cores share nothing these loops use); the measured
T-thread rates are recorded too.

Each benchmark counts, per pair (i, j), its floating-point operations as the formula is written
(``flops``: add, sub, mul, compare, max = 1; FMA = 2; exp and division not included), its exps
and its divisions; the ceiling in G pairs/s is the roofline bound

    ceiling = min(FMA peak / flops, exp rate / exps, division rate / divs)

an upper bound that no implementation of the formula can beat on this machine. It is optimistic:
the exp polynomial runs on the same FMA units as the rest of the formula, so the real bound for
gauss is nearer ``1 / (flops / peak + 1 / exp rate)`` (reported as "serial bound"). For knn the
count is that of the matrix-product form ``|x|^2 + |y|^2 - 2 <x, y>`` (2D + 2 flops, the FAISS
algorithm), not the 3D flops of the direct ``sum (x - y)^2`` that lazygeom evaluates. The data
(a few MB) stay in cache, so no bound comes from memory bandwidth.

Outputs: ``benchmarks/results/cpu.md`` (tables, also printed), ``benchmarks/results/cpu.json``
(every number, with the machine description), and ``benchmarks/results/cpu.png`` (throughput
against the ceiling) when matplotlib is installed.

Files: this script is the driver (options, the run loop, the report's data); beside it,
``cpu_problems.py`` (the benchmarks: counts, data, float64 checks), ``cpu_worker.py`` (one
measurement per process: ``cpu.py --worker SPEC``), ``cpu_machine.py`` (machine description,
peers, ceilings), ``cpu_ceiling.cpp`` (the ceiling program) and ``cpu_report.py`` (markdown, JSON,
plot).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cpu_machine import bounds, loadavg, machine, measure_ceilings, peers_available
from cpu_problems import ALL, PEERS, THROUGHPUT, compare
from cpu_report import fmt_t, write
from cpu_worker import run_worker, serve

HERE = Path(__file__).resolve().parent


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, no 1M x 1M run")
    p.add_argument("--only", nargs="+", choices=ALL, help="run these benchmarks only")
    p.add_argument("--n", type=int, help="N = M for the throughput benchmarks (default 50000, quick 10000)")
    p.add_argument("--n-knn", type=int, help="N = M for knn (default 20000, quick 5000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=90.0,
                   help="seconds of timed calls per implementation (at least one call is timed)")
    p.add_argument("--big-budget", type=float, default=900.0,
                   help="seconds allowed for the 1M x 1M call; beyond (estimated from gauss1), fewer rows")
    p.add_argument("--ceiling-trials", type=int, default=200, help="short trials per ceiling (best kept)")
    p.add_argument("--no-peer", nargs="+", default=[], choices=["pykeops", "faiss", "torch"],
                   help="leave these peers out (reported as skipped)")
    p.add_argument("--cache", help="compiled-kernel folder to reuse (default: fresh folders for this run)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def print_ceilings(ceil: dict, threads: int) -> None:
    if "error" in ceil:
        print("ceilings:", ceil["error"])
        return
    one = ceil["one_thread"]
    print(f"  one core : FMA {one['fma_gflops']:.1f} GFLOP/s, exp {one['exp_g_per_s']:.3f} G/s, "
          f"div {one['div_g_per_s']:.3f} G/s (fixed reference exp {one['ref_exp_g_per_s']:.3f} G/s)", flush=True)
    mt = ceil["measured_threads"]
    print(f"  {threads} threads: FMA {mt['fma_gflops']:.1f} GFLOP/s, exp {mt['exp_g_per_s']:.3f} G/s, "
          f"div {mt['div_g_per_s']:.3f} G/s (measured; the ceiling uses {threads} x one core)", flush=True)


def make_spec(bench: str, impl: str, a, n: int, n_knn: int, results: list, env: dict, tmp_root: Path):
    """The worker's spec for (bench, impl) and its environment (a fresh cache folder for compile)."""
    spec = {"bench": bench, "impl": impl, "threads": a.threads, "repeats": a.repeats, "budget": a.budget}
    wenv = env
    if bench == "compile":  # a fresh cache folder in a new process: a formula never compiled
        fresh = Path(tempfile.mkdtemp(prefix="cold-", dir=tmp_root))
        wenv = {**env, "LAZYGEOM_CACHE_DIR": str(fresh / "lazygeom"),
                "KEOPS_CACHE_FOLDER": str(fresh / "keops")}
        spec["calls"] = 20
    elif bench == "overhead":
        spec["calls"] = 300
    elif bench == "big":
        m = 1_000_000
        g1 = next((r for r in results if r["bench"] == "gauss1" and r["impl"] == "lazygeom"
                   and "times_s" in r), None)
        rate = g1["n"] * g1["m"] / min(g1["times_s"]) if g1 else None
        rows = m
        if rate and m * m / rate > a.big_budget:
            rows = max(10_000, int(a.big_budget * rate / m) // 1000 * 1000)
        spec.update(n=rows, m=m, full_estimate_s=(m * m / rate if rate else None))
    else:
        spec.update(n=n_knn if bench == "knn" else n, m=n_knn if bench == "knn" else n)
    return spec, wenv


def run_all(benches: list, a, n: int, n_knn: int, peers: dict, t_start: float) -> list:
    """Every (benchmark, implementation) in its own worker process, in order; the list of results."""
    tmp_root = Path(tempfile.mkdtemp(prefix="lgbench-cpu-"))
    caches = Path(a.cache) if a.cache else tmp_root
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "LAZYGEOM_CACHE_DIR": str(caches / "lazygeom"), "KEOPS_CACHE_FOLDER": str(caches / "keops"),
           "PYTHONWARNINGS": "ignore"}
    results = []
    try:
        for bench in benches:
            for impl in PEERS[bench]:
                if impl in a.no_peer:
                    results.append({"bench": bench, "impl": impl, "error": "skipped (--no-peer)"})
                    continue
                if impl in ("pykeops", "faiss") and not peers.get(impl):
                    results.append({"bench": bench, "impl": impl, "error": f"{impl} not available (import failed)"})
                    continue
                spec, wenv = make_spec(bench, impl, a, n, n_knn, results, env, tmp_root)
                print(f"[{time.time() - t_start:6.0f} s] {bench:10s} {impl:9s} "
                      f"{'N=%d M=%d' % (spec['n'], spec['m']) if 'n' in spec else ''} load {loadavg()}",
                      flush=True)
                load0 = loadavg()
                r = run_worker(spec, wenv, a.timeout)
                r.update({k: v for k, v in spec.items() if k not in r})
                r["load_before"], r["load_after"] = load0, loadavg()
                results.append(r)
                if "error" in r:
                    print(f"         error: {r['error']}", flush=True)
                elif "times_s" in r:
                    best = min(r["times_s"])
                    print(f"         best {fmt_t(best)} of {len(r['times_s'])}, "
                          f"{r['n'] * r['m'] / best / 1e9:.3f} G pairs/s, first call {fmt_t(r['first_call_s'])}",
                          flush=True)
                else:
                    print(f"         first call {fmt_t(r['first_call_s'])}, cached call {fmt_t(r['cached_call_s'])}",
                          flush=True)
    finally:
        if not a.cache:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return results


def main(argv=None) -> int:
    a = parse(argv)
    if a.worker:
        return serve(a.worker)

    n = a.n or (10_000 if a.quick else 50_000)
    n_knn = a.n_knn or (5_000 if a.quick else 20_000)
    benches = a.only or [b for b in ALL if not (a.quick and b == "big")]
    if "big" in benches and "gauss1" not in benches:
        benches = ["gauss1"] + benches  # big's row count is planned from gauss1's throughput
    t_start = time.time()
    load_before = loadavg()
    print(f"load average before: {load_before} on {os.cpu_count()} cpus", flush=True)
    if load_before and load_before[0] > 0.5:
        print("WARNING: other processes are running: timings will be pessimistic (see the cpu share column)",
              flush=True)

    peers = peers_available()
    info = machine()
    print(f"machine: {info.get('cpu')} ({info.get('cpus')} cpus), peers: {peers}", flush=True)

    print("measuring ceilings ...", flush=True)
    ceil = measure_ceilings(a.threads, a.ceiling_trials)
    print_ceilings(ceil, a.threads)

    results = run_all(benches, a, n, n_knn, peers, t_start)
    compare(results)  # correctness against float64, and lazygeom against each peer, on the check rows

    load_after = loadavg()
    report = {
        "command": "python benchmarks/cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": time.time() - t_start,
        "machine": info, "peers": peers, "threads": a.threads, "n": n, "n_knn": n_knn, "quick": a.quick,
        "load_before": load_before, "load_after": load_after,
        "ceilings": ceil,
        "bounds": {b: bounds(b, ceil) for b in THROUGHPUT + ["big"] if "error" not in ceil},
        "results": results,
    }
    write(report, Path(a.out))
    failed = [r for r in results if r.get("impl") == "lazygeom"
              and ("error" in r or not r.get("check", {}).get("ok", True))]
    if failed:
        print("lazygeom FAILED:", ", ".join(r["bench"] for r in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
