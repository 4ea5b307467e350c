"""Gaussian kernel sum: a lazygeom backend (the reference backend by default) against dense PyTorch.

    .venv/bin/python benchmarks/reference.py            # N = M in 1k, 2k, 5k, 10k, 20k, 50k
    .venv/bin/python benchmarks/reference.py --quick    # N = M in 1k, 2k, 5k
    .venv/bin/python benchmarks/reference.py --backend cpu --sizes 10000 100000
    .venv/bin/python benchmarks/reference.py --threads 1   # steadier on a busy machine

The problem: ``a_i = sum_j exp(-|x_i - y_j|^2 / (2 sigma^2)) b_j`` with x, y of shape (N, 3) uniform
in the unit cube, b of shape (N, 1), float32, sigma = 0.1.

- lazygeom: ``(-((Vi(x) - Vj(y)) ** 2).sum(-1) / (2 sigma^2)).exp() @ b`` under
  ``lazygeom.config(backend=...)``.
- dense torch: ``torch.cdist(x, y).square_().mul_(-1 / (2 sigma^2)).exp_() @ b``: the strongest
  plain-torch version we know (one N x M float32 buffer, updated in place; cdist uses a matrix
  product). It runs only while ``2 * 4 * N * M`` bytes stay under half the available memory.

Protocol. Each (implementation, N) runs in a fresh subprocess, so that one measurement's allocator
state cannot help or hurt the next. The subprocess builds its data, runs a warm-up call at a small
size (imports, first-call set-up, kernel compilation for compiled backends), then times the call
at size N: once, then again while the total stays under ``--budget`` seconds (at most
``--repeats`` runs); the table reports the best wall-clock time, the CPU time of that run (all
threads; on a busy machine, a CPU time well below threads x wall time means the process was kept
waiting) and the number of runs. Throughput is ``N * M / wall time`` pairs per second.

Peak memory. torch's CPU tensors are allocated by malloc/mmap outside Python's allocator, so
``tracemalloc`` does not see them, and ``ru_maxrss`` is a lifetime maximum that includes imports and
the input data. Instead the subprocess resets its resident-set high-water mark after set-up and
warm-up (Linux: write ``5`` to ``/proc/self/clear_refs``), records its resident size, runs the
first timed call and reads ``VmHWM`` from ``/proc/self/status``: the difference is the peak extra
resident memory of one call (temporaries and the output), in bytes. Where ``clear_refs`` is
unavailable the column reads "n/a". The warm-up runs at a small size so that memory it frees and
the allocator keeps cannot hide the measured call's own allocations.

``--threads T`` sets torch's thread count in every measurement (both implementations, and the
ceilings below); on a machine shared with other work, ``--threads 1`` gives steadier numbers.

The machine's ceilings are measured the same way (a float32 matrix product, a large copy) and
written with the results, with the load average: timings taken on a busy machine say so.

Outputs: ``benchmarks/results/<backend>.md`` (a markdown table, also printed) and
``benchmarks/results/<backend>.json`` (every number, with the machine description).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procmem import reset_peak, status_bytes  # benchmarks/procmem.py, beside this script

HERE = Path(__file__).resolve().parent
SIGMA = 0.1
D = 3
WARMUP_N = 512
FLOP_PER_PAIR = 12  # sub 3, square 3, sum 2, scale 1, exp 1, times b 1, add 1 (exp counted as one)


# --------------------------------------------------------------------------------------------
# worker side (one measurement per process)
# --------------------------------------------------------------------------------------------


def _data(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, D, generator=g), torch.rand(n, D, generator=g), torch.randn(n, 1, generator=g)


def _impl(name: str, backend: str):
    import torch

    if name == "dense":
        def dense(x, y, b):
            return torch.cdist(x, y).square_().mul_(-1 / (2 * SIGMA**2)).exp_() @ b
        return dense

    import lazygeom
    from lazygeom import Vi, Vj

    def lazy(x, y, b):
        with lazygeom.config(backend=backend):
            return (-((Vi(x) - Vj(y)) ** 2).sum(-1) / (2 * SIGMA**2)).exp() @ b
    return lazy


def worker(impl: str, n: int, backend: str, repeats: int, budget: float, save: str, threads: int) -> dict:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    fn = _impl(impl, backend)
    fn(*_data(WARMUP_N, seed=1))
    x, y, b = _data(n)
    can_peak = reset_peak()
    base = status_bytes("VmRSS")
    times, cpu = [], []
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(x, y, b)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
    peak = status_bytes("VmHWM") if can_peak else None
    while len(times) < repeats and sum(times) + times[0] <= budget:
        del out
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(x, y, b)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if save:
        torch.save(out, save)
    best = min(range(len(times)), key=times.__getitem__)
    return {"impl": impl, "n": n, "times_s": times, "best_s": times[best], "cpu_s": cpu, "best_cpu_s": cpu[best],
            "peak_bytes": (peak - base) if peak is not None and base is not None else None,
            "threads": torch.get_num_threads()}


def ceilings(threads: int) -> dict:
    """Measured float32 matrix-product rate and copy bandwidth of this machine (best of 5)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    src = torch.empty(64 * 2**20)  # 256 MB
    dst = torch.empty_like(src)
    dst.copy_(src)
    copy = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    return {"sgemm_gflops": 2 * 2048**3 / best / 1e9, "copy_gbytes_per_s": 2 * src.numel() * 4 / copy / 1e9}


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------------------------


def _available_bytes() -> int:
    m = re.search(r"MemAvailable:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text())
    return int(m.group(1)) * 1024


def _total_bytes() -> int:
    m = re.search(r"MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text())
    return int(m.group(1)) * 1024


def _spawn(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(impl: str, n: int, opts, tmp: Path) -> dict:
    save = tmp / f"{impl}_{n}.pt"
    res = _spawn(["--worker", impl, str(n), "--backend", opts.backend, "--repeats", str(opts.repeats),
                  "--budget", str(opts.budget), "--save", str(save), "--threads", str(opts.threads)],
                 timeout=opts.timeout)
    res["output"] = str(save)
    return res


def _max_rel_diff(a_path: str, b_path: str) -> float:
    import torch

    a, b = torch.load(a_path).double(), torch.load(b_path).double()
    return ((a - b).abs().amax() / b.abs().amax()).item()


def _fmt_s(t):
    return "—" if t is None else (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s")


def _fmt_b(n):
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _runs(m: dict) -> str:
    """CPU time and number of runs of a measurement."""
    n = len(m["times_s"])
    return f"CPU {_fmt_s(m['best_cpu_s'])}, {n} run" + ("s" if n > 1 else "")


def table(rows: list[dict], backend: str) -> str:
    head = (f"| N = M | lazygeom {backend} | dense torch | ratio (lazygeom / dense) | lazygeom G pairs/s "
            f"| dense G pairs/s | peak mem lazygeom | peak mem dense | max rel. diff |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lz, dn = r["lazygeom"], r.get("dense")
        pairs = r["n"] ** 2
        lz_time = f"{_fmt_s(lz['best_s'])} ({_runs(lz)})"
        if dn:
            dn_time = f"{_fmt_s(dn['best_s'])} ({_runs(dn)})"
            ratio = f"{lz['best_s'] / dn['best_s']:.1f}x"
            dn_rate = f"{pairs / dn['best_s'] / 1e9:.3f}"
            dn_peak = _fmt_b(dn["peak_bytes"])
            diff = f"{r['max_rel_diff']:.1e}"
        else:
            dn_time, ratio, dn_rate, dn_peak, diff = r.get("dense_skipped", "—"), "—", "—", "—", "—"
        cells = [f"{r['n']:,}", lz_time, dn_time, ratio, f"{pairs / lz['best_s'] / 1e9:.3f}", dn_rate,
                 _fmt_b(lz["peak_bytes"]), dn_peak, diff]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = M in 1k, 2k, 5k only")
    p.add_argument("--sizes", type=int, nargs="+", help="N = M values (default 1k ... 50k)")
    p.add_argument("--backend", default="reference", help="lazygeom backend (default: reference)")
    p.add_argument("--repeats", type=int, default=5, help="at most this many timed runs per point")
    p.add_argument("--budget", type=float, default=20.0, help="seconds of timed runs per point (after the first)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the measurements (default: torch's)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement is abandoned")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder of the result files")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    p.add_argument("--ceilings", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--save", default="", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)

    if opts.worker:
        res = worker(opts.worker[0], int(opts.worker[1]), opts.backend, opts.repeats, opts.budget, opts.save,
                     opts.threads)
        print(json.dumps(res))
        return 0
    if opts.ceilings:
        print(json.dumps(ceilings(opts.threads)))
        return 0

    sizes = opts.sizes or ([1_000, 2_000, 5_000] if opts.quick else [1_000, 2_000, 5_000, 10_000, 20_000, 50_000])
    if opts.quick:
        opts.repeats, opts.budget = min(opts.repeats, 3), min(opts.budget, 5.0)
    started = time.time()
    load_before = os.getloadavg()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "ram_bytes": _total_bytes(), "python": platform.python_version(),
               **_spawn(["--ceilings", "--threads", str(opts.threads)], 300)}
    import torch

    machine["torch"] = torch.__version__
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for n in sizes:
            row = {"n": n, "lazygeom": measure("lazygeom", n, opts, tmp)}
            need = 2 * 4 * n * n
            if need <= _available_bytes() / 2:
                row["dense"] = measure("dense", n, opts, tmp)
                row["max_rel_diff"] = _max_rel_diff(row["lazygeom"]["output"], row["dense"]["output"])
            else:
                row["dense_skipped"] = f"skipped (needs ~{need / 1e9:.0f} GB)"
            for key in ("lazygeom", "dense"):
                row.get(key, {}).pop("output", None)
            rows.append(row)
            print(f"N = M = {n:>7,}: lazygeom {_fmt_s(row['lazygeom']['best_s'])}, dense "
                  f"{_fmt_s(row['dense']['best_s']) if 'dense' in row else row['dense_skipped']}", flush=True)
    load_after = os.getloadavg()

    nthreads = rows[0]["lazygeom"]["threads"]
    threads = f"{nthreads} thread" + ("s" if nthreads > 1 else "")
    busy = max(load_before[0], load_after[0]) > 0.5 * (machine["cores"] or 1)
    busy = " (the machine was busy with other work: timings are pessimistic)" if busy else ""
    md = [f"# Gaussian kernel sum: lazygeom `{opts.backend}` backend vs dense PyTorch", "",
          f"`a = K @ b`, `K_ij = exp(-|x_i - y_j|^2 / (2*{SIGMA}^2))`, D = {D}, b of dim 1, float32; "
          f"best of up to {opts.repeats} runs after a warm-up, each implementation and size in its own process "
          f"(see `benchmarks/reference.py`).", "",
          f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_bytes'] / 2**30:.1f} GiB RAM, "
          f"torch {machine['torch']} ({threads}); measured ceilings: float32 "
          f"matmul {machine['sgemm_gflops']:.0f} GFLOP/s, copy {machine['copy_gbytes_per_s']:.1f} GB/s. "
          f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after{busy}.",
          "", table(rows, opts.backend), "",
          f"At about {FLOP_PER_PAIR} flop per pair, 1 G pairs/s is {FLOP_PER_PAIR} GFLOP/s "
          f"({100 * FLOP_PER_PAIR / machine['sgemm_gflops']:.0f}% of the measured matmul rate). "
          f"Peak memory: extra resident memory of one call (see the script's docstring)."]
    text = "\n".join(md) + "\n"
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / f"{opts.backend}.md").write_text(text)
    (opts.out / f"{opts.backend}.json").write_text(json.dumps(
        {"backend": opts.backend, "sigma": SIGMA, "dim": D, "dtype": "float32", "flop_per_pair": FLOP_PER_PAIR,
         "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
         "load_avg_before": load_before, "load_avg_after": load_after, "machine": machine, "rows": rows}, indent=2))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
