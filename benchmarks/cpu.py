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

Ceilings (DESIGN.md section 5: count the floor first). Three small C++ programs, compiled here with
``g++ -O3 -march=native -fopenmp`` and lazygeom's own vector header
(``src/lazygeom/backends/cpu/lgmath.hpp``), measure this machine's

- FMA peak (GFLOP/s): 12 independent accumulators ``acc = acc * a + b`` on W-lane vectors, held in
  registers (an FMA counts as 2 flops);
- vectorised exp throughput (G exp/s): lazygeom's ``v_exp`` over an L1-resident array, summed;
- vectorised division throughput (G div/s): ``1 / x`` over the same array, summed;
- for comparison only, the throughput of a fixed exp (Cephes ``expf``, kept in this script): the
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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procmem import reset_peak, status_bytes  # benchmarks/procmem.py, beside this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADER_DIR = ROOT / "src" / "lazygeom" / "backends" / "cpu"
MARKER = "@@RESULT@@"
SMALL = 200  # rows and columns of the first (compiling) call
CHECK_ROWS = 200  # rows recomputed in float64
EPS_LSE = 0.1
K_NN = 10
CHUNK_BYTES = 256 * 2**20  # dense torch: kernel-matrix block size

# per-pair operation counts (see the module docstring): flops (FMA = 2), exps, divisions, and how
# the count is made up
COUNTS = {
    "gauss1": (10, 1, 0, "|x-y|^2: 3 sub + 3 mul + 2 add; exp; * b + accumulate: 2"),
    "gauss3": (14, 1, 0, "|x-y|^2: 8; exp; 3 x (* b + accumulate): 6"),
    "lse": (13, 1, 0, "|x-y|^2: 8; / eps: 1; running max: 1, shift: 1, accumulate: 2; exp"),
    "cauchy": (15, 0, 1, "|x-y|^2: 8; 1 + : 1; division; 3 x (* b + accumulate): 6"),
    "hyperbolic": (10, 0, 1, "|x-y|^2: 8; x2 * y2: 1; division; compare: 1"),
    "knn": (2 * 50 + 2, 0, 0, "<x,y>: 50 FMA = 100; + |y|^2: 1; compare with the K-th best: 1"),
}
COUNTS["big"] = COUNTS["gauss1"]

TITLES = {
    "gauss1": "Gaussian kernel sum, D=3, b dim 1",
    "gauss3": "Gaussian kernel sum, D=3, b dim 3",
    "lse": "LogSumExp of -|x-y|^2/0.1, D=3",
    "cauchy": "Cauchy kernel 1/(1+|x-y|^2) * b (dim 3), D=3",
    "hyperbolic": "hyperbolic argmin |x-y|^2/(x_2 y_2), D=3",
    "knn": "kNN, K=10, D=50",
    "big": "Gaussian kernel sum, D=3, b dim 1, N=M=1e6",
    "compile": "cold compile (fresh cache, new process)",
    "overhead": "cached call overhead, N=M=10",
}
PEERS = {
    "gauss1": ["lazygeom", "pykeops", "torch"],
    "gauss3": ["lazygeom", "pykeops", "torch"],
    "lse": ["lazygeom", "pykeops", "torch"],
    "cauchy": ["lazygeom", "pykeops", "torch"],
    "hyperbolic": ["lazygeom", "pykeops", "torch"],
    "knn": ["lazygeom", "faiss", "pykeops", "torch"],
    "compile": ["lazygeom", "pykeops"],
    "overhead": ["lazygeom", "pykeops", "torch"],
    "big": ["lazygeom"],
}
THROUGHPUT = ["gauss1", "gauss3", "lse", "cauchy", "hyperbolic", "knn"]
ALL = THROUGHPUT + ["compile", "overhead", "big"]


# ============================================================================================
# problems: data, float64 reference, implementations
# ============================================================================================


def make_data(bench: str, n: int, m: int, seed: int = 0):
    """The inputs of a benchmark (float32, deterministic in the seed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if bench == "knn":
        return torch.randn(n, 50, generator=g), torch.randn(m, 50, generator=g)
    x, y = torch.rand(n, 3, generator=g), torch.rand(m, 3, generator=g)
    if bench == "hyperbolic":  # upper half space: last coordinate in [0.1, 1.1]
        x[:, 2] += 0.1
        y[:, 2] += 0.1
        return x, y
    if bench == "lse":
        return x, y
    e = 3 if bench in ("gauss3", "cauchy") else 1
    return x, y, torch.randn(m, e, generator=g)


def check_rows(n: int):
    import torch

    return torch.linspace(0, n - 1, min(CHECK_ROWS, n)).round().long()


def dense_values(bench: str, args, rows):
    """float64 dense values on the given rows: the kernel matrix (or distances) against all j."""
    import torch

    x, y = args[0][rows].double(), args[1].double()
    if bench == "knn":
        d2 = torch.cdist(x, y) ** 2
    else:
        d2 = torch.zeros(x.shape[0], y.shape[0], dtype=torch.float64)
        for k in range(x.shape[1]):
            d2 += (x[:, k, None] - y[None, :, k]) ** 2
    if bench in ("gauss1", "gauss3", "big"):
        return d2.neg_().exp_()
    if bench == "lse":
        return d2.mul_(-1 / EPS_LSE)
    if bench == "cauchy":
        return d2.add_(1).reciprocal_()
    if bench == "hyperbolic":
        return d2.div_(x[:, 2:3] * y[None, :, 2])
    return d2


def check(bench: str, args, rows, got) -> dict:
    """Compare an implementation's output on the check rows with float64 (dense, in blocks of rows)."""
    import torch

    step = max(1, 2**24 // args[1].shape[0])  # 128 MB of float64 per block
    got = torch.as_tensor(got)
    refs, gaps, matches, hits = [], [], [], 0
    for s in range(0, len(rows), step):
        v = dense_values(bench, args, rows[s:s + step])
        g = got[s:s + step]
        if bench in ("gauss1", "gauss3", "cauchy", "big"):
            refs.append(v @ args[2].double())
        elif bench == "lse":
            refs.append(torch.logsumexp(v, dim=1, keepdim=True))
        elif bench == "hyperbolic":
            g = g.to(torch.int64).reshape(-1, 1)
            best, idx = v.min(dim=1, keepdim=True)
            gaps.append(((v.gather(1, g) - best) / best.abs()).reshape(-1))
            matches.append((g == idx).reshape(-1))
        else:
            ref = v.topk(K_NN, dim=1, largest=False).indices
            g = g.to(torch.int64).reshape(ref.shape)
            hits += sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(g, ref))
    if bench == "hyperbolic":
        gap = float(torch.cat(gaps).max())
        match = float(torch.cat(matches).double().mean())
        return {"metric": "argmin value gap", "value": gap, "index_match": match, "ok": bool(gap < 1e-5)}
    if bench == "knn":
        recall = hits / (len(rows) * K_NN)
        return {"metric": "recall@10", "value": recall, "ok": bool(recall >= 0.99)}
    ref = torch.cat(refs)
    got = got.to(torch.float64).reshape(ref.shape)
    err = float((got - ref).norm() / ref.norm())
    return {"metric": "rel. error", "value": err, "ok": bool(err < 1e-4)}


def implementation(bench: str, impl: str):
    """A function args -> output (a tensor or an index array) for this benchmark and peer."""
    import torch

    if impl == "lazygeom":
        from lazygeom import Vi, Vj

        def lazy(*a):
            X, Y = Vi(a[0]), Vj(a[1])
            if bench in ("gauss1", "gauss3", "big", "compile", "overhead"):
                return ((-X.sqdist(Y)).exp() * Vj(a[2])).sum(dim=1, backend="cpu")
            if bench == "lse":
                return (-X.sqdist(Y) / EPS_LSE).logsumexp(dim=1, backend="cpu")
            if bench == "cauchy":
                return ((1 / (1 + X.sqdist(Y))) * Vj(a[2])).sum(dim=1, backend="cpu")
            if bench == "hyperbolic":
                return (X.sqdist(Y) / (X.elem(2) * Y.elem(2))).argmin(dim=1, backend="cpu")
            return X.sqdist(Y).argKmin(K_NN, dim=1, backend="cpu")
        return lazy

    if impl == "pykeops":
        from pykeops.torch import LazyTensor

        def keops(*a):
            X, Y = LazyTensor(a[0][:, None, :]), LazyTensor(a[1][None, :, :])
            if bench in ("gauss1", "gauss3", "big", "compile", "overhead"):
                return ((-X.sqdist(Y)).exp() * LazyTensor(a[2][None, :, :])).sum(dim=1)
            if bench == "lse":
                return (-X.sqdist(Y) / EPS_LSE).logsumexp(dim=1)
            if bench == "cauchy":
                return ((1 / (1 + X.sqdist(Y))) * LazyTensor(a[2][None, :, :])).sum(dim=1)
            if bench == "hyperbolic":
                return (X.sqdist(Y) / (X.elem(2) * Y.elem(2))).argmin(dim=1)
            return X.sqdist(Y).argKmin(K_NN, dim=1)
        return keops

    if impl == "faiss":
        import faiss
        import numpy as np

        def flat(x, y):
            index = faiss.IndexFlatL2(x.shape[1])
            index.add(np.ascontiguousarray(y.numpy()))
            return torch.from_numpy(index.search(np.ascontiguousarray(x.numpy()), K_NN)[1])
        return flat

    if impl == "torch":
        def blocks(x, y, f, out_cols, dtype=None):
            n, m = x.shape[0], y.shape[0]
            step = max(1, min(n, CHUNK_BYTES // (4 * m)))
            out = torch.empty(n, out_cols, dtype=dtype or x.dtype)
            for s in range(0, n, step):
                xs = x[s:s + step]
                out[s:s + step] = f(xs, torch.cdist(xs, y).square_())
            return out

        def dense(*a):
            x, y = a[0], a[1]
            with torch.no_grad():
                if bench in ("gauss1", "gauss3", "big", "overhead"):
                    return blocks(x, y, lambda xs, d2: d2.neg_().exp_() @ a[2], a[2].shape[1])
                if bench == "lse":
                    return blocks(x, y, lambda xs, d2: torch.logsumexp(d2.mul_(-1 / EPS_LSE), 1, keepdim=True), 1)
                if bench == "cauchy":
                    return blocks(x, y, lambda xs, d2: d2.add_(1).reciprocal_() @ a[2], 3)
                if bench == "hyperbolic":
                    return blocks(x, y, lambda xs, d2: d2.div_(xs[:, 2:3] * y[None, :, 2]).argmin(1, keepdim=True),
                                  1, torch.int64)
                return blocks(x, y, lambda xs, d2: d2.topk(K_NN, dim=1, largest=False).indices, K_NN, torch.int64)
        return dense
    raise ValueError(impl)


def version_of(impl: str) -> str:
    if impl == "lazygeom":
        from importlib.metadata import version
        return version("lazygeom")
    if impl == "pykeops":
        import pykeops
        return pykeops.__version__
    if impl == "faiss":
        import faiss
        return faiss.__version__
    import torch
    return torch.__version__


# ============================================================================================
# worker side: one (benchmark, implementation) per process
# ============================================================================================


def _timed(f, *args):
    """(wall seconds, process CPU seconds, result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = f(*args)
    t1, c1 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, out


def _sample(bench: str, out, rows):
    import torch

    if isinstance(out, tuple):
        out = out[0]
    out = torch.as_tensor(out)
    return out[rows].tolist()


def worker(spec: dict) -> dict:
    bench, impl, threads = spec["bench"], spec["impl"], spec["threads"]
    t_import = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    if impl == "faiss":
        import faiss
        faiss.omp_set_num_threads(threads)
    if impl == "pykeops":
        import pykeops  # noqa: F401  (its import prints and sets up; not part of any timing)
    if impl == "lazygeom":
        import lazygeom  # noqa: F401
    f = implementation(bench, impl)
    res = {"bench": bench, "impl": impl, "version": version_of(impl), "threads": threads,
           "import_s": time.perf_counter() - t_import}

    if bench in ("compile", "overhead"):
        args = make_data("gauss1", 10, 10, seed=3)
        wall, _, _ = _timed(f, *args)
        res["first_call_s"] = wall
        calls = []
        for _ in range(spec["calls"]):
            calls.append(_timed(f, *args)[0])
        calls.sort()
        res["cached_call_s"] = calls[len(calls) // 2]
        res["cached_call_min_s"] = calls[0]
        res["calls"] = len(calls)
        if bench == "compile":
            res["compile_s"] = res["first_call_s"] - res["cached_call_s"]
        return res

    n, m = spec["n"], spec["m"]
    small = make_data(bench, SMALL, SMALL, seed=1)
    wall, _, _ = _timed(f, *small)
    res["first_call_s"] = wall  # includes compilation (cold cache) for lazygeom and pykeops
    res["second_small_call_s"] = _timed(f, *small)[0]
    args = make_data(bench, n, m)
    rows = check_rows(n)

    if bench == "big":  # one call: its peak extra resident memory and its time
        can_peak = reset_peak()
        base = status_bytes("VmRSS")
        wall, cpu, out = _timed(f, *args)
        peak = status_bytes("VmHWM") if can_peak else None
        res["times_s"] = [wall]
        res["cpu_s"] = [cpu]
        res["input_bytes"] = sum(a.numel() * a.element_size() for a in args)
        res["peak_extra_bytes"] = (peak - base) if peak is not None and base is not None else None
        res["sample"] = _sample(bench, out, rows)
        return res

    wall, cpu, out = _timed(f, *args)  # warm-up at full size
    res["warmup_s"] = wall
    repeats = spec["repeats"]
    if wall * repeats > spec["budget"]:
        repeats = max(1, int(spec["budget"] // max(wall, 1e-9)))
    times, cpus = [], []
    for _ in range(repeats):
        del out
        wall, cpu, out = _timed(f, *args)
        times.append(wall)
        cpus.append(cpu)
    res["times_s"], res["cpu_s"] = times, cpus
    res["sample"] = _sample(bench, out, rows)
    return res


# ============================================================================================
# ceilings
# ============================================================================================

CEILING_CPP = r"""
#include "lgmath.hpp"
#include <omp.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

// stops the compiler from hoisting the loop body out of the repetition loop
#define OPAQUE(p) asm volatile("" : "+r"(p) : : "memory")

// GFLOP/s of `acc = acc * a + b` on A independent register accumulators (FMA = 2 flops)
static double fma_rate(int nt, long iters, float a0, float b0) {
  const int A = 12;  // FMA latency 4 x 2 pipes = 8 in flight needed; 12 + a + b fit in 16 ymm
  double sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    vec acc[A];
    for (int k = 0; k < A; ++k) acc[k] = bc(0.001f * (k + 1 + omp_get_thread_num()));
    vec a = bc(a0), b = bc(b0);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
      for (int k = 0; k < A; ++k) acc[k] = acc[k] * a + b;
    }
    for (int k = 0; k < A; ++k)
      for (int l = 0; l < W; ++l) sink += acc[k][l];
  }
  double dt = omp_get_wtime() - t0;
  if (sink == 12345.678) std::printf("#");
  return 2.0 * W * A * (double)iters * nt / dt / 1e9;
}

// A fixed exp (Cephes expf: degree-6 polynomial, two-constant range reduction), kept here so that
// a change of lazygeom's v_exp shows as a change of the ceiling against a constant reference.
static inline __attribute__((always_inline)) vec ref_exp(vec x) {
  vec xc = x < -87.3f ? bc(-87.3f) : x;
  xc = xc > 88.7f ? bc(88.7f) : xc;
  vec t = xc * 1.44269504088896341f + 12582912.0f;
  vec n = t - 12582912.0f;
  vec r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  vec p = bc(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * (r * r) + r + 1.0f;
  ivec e = (__builtin_convertvector(n, ivec) + 127) << 23;
  vec s;
  __builtin_memcpy(&s, &e, sizeof(vec));
  return x < -87.3f ? bc(0) : p * s;
}

// G evaluations/s of lazygeom's v_exp (kind 0), of a division 1 / x (kind 1) or of ref_exp
// (kind 2) over an L1-resident array, summed into 4 accumulators
static double map_rate(int kind, int nt, long reps) {
  const int L = 2048;  // floats per thread: 8 KiB
  double sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    std::vector<scalar> buf(L + W);
    for (int k = 0; k < L; ++k) buf[k] = -10.0f * (k % 997) / 997.0f - 0.01f;
    const scalar* x = buf.data();
    vec s0 = bc(0), s1 = bc(0), s2 = bc(0), s3 = bc(0);
    for (long r = 0; r < reps; ++r) {
      OPAQUE(x);
      if (kind == 0) {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += v_exp(vload(x + k));
          s1 += v_exp(vload(x + k + W));
          s2 += v_exp(vload(x + k + 2 * W));
          s3 += v_exp(vload(x + k + 3 * W));
        }
      } else if (kind == 2) {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += ref_exp(vload(x + k));
          s1 += ref_exp(vload(x + k + W));
          s2 += ref_exp(vload(x + k + 2 * W));
          s3 += ref_exp(vload(x + k + 3 * W));
        }
      } else {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += bc(1) / vload(x + k);
          s1 += bc(1) / vload(x + k + W);
          s2 += bc(1) / vload(x + k + 2 * W);
          s3 += bc(1) / vload(x + k + 3 * W);
        }
      }
    }
    vec s = s0 + s1 + s2 + s3;
    for (int l = 0; l < W; ++l) sink += s[l];
  }
  double dt = omp_get_wtime() - t0;
  if (sink == 12345.678) std::printf("#");
  return (double)L * reps * nt / dt / 1e9;
}

// usage: ceil THREADS TRIALS; prints the best trial of each measure
int main(int argc, char** argv) {
  int nt = std::atoi(argv[1]);
  int trials = std::atoi(argv[2]);
  float a0 = argc > 3 ? (float)std::atof(argv[3]) : 0.9999999f;
  double f = 0, e = 0, d = 0, re = 0;
  for (int t = 0; t < trials; ++t) {  // about 5 ms per measure and trial
    double v;
    v = fma_rate(nt, 1000000, a0, 1e-7f); if (v > f) f = v;
    v = map_rate(0, nt, 4000); if (v > e) e = v;
    v = map_rate(1, nt, 8000); if (v > d) d = v;
    v = map_rate(2, nt, 4000); if (v > re) re = v;
  }
  std::printf("{\"threads\": %d, \"lanes\": %d, \"fma_gflops\": %.4f, \"exp_g_per_s\": %.5f, "
              "\"div_g_per_s\": %.5f, \"ref_exp_g_per_s\": %.5f}\n", nt, W, f, e, d, re);
  return 0;
}
"""

CXXFLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-ffp-contract=fast", "-fno-math-errno",
            "-fno-trapping-math", "-Wno-psabi"]


def measure_ceilings(threads: int, trials: int) -> dict:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return {"error": "no C++ compiler"}
    with tempfile.TemporaryDirectory(prefix="lgbench-ceil-") as tmp:
        src, exe = Path(tmp) / "ceil.cpp", Path(tmp) / "ceil"
        src.write_text(CEILING_CPP)
        cmd = [cxx, *CXXFLAGS, f"-I{HEADER_DIR}", str(src), "-o", str(exe)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": "compilation failed: " + proc.stderr[-2000:]}
        one = json.loads(subprocess.run([str(exe), "1", str(trials)], capture_output=True, text=True,
                                        check=True).stdout)
        many = json.loads(subprocess.run([str(exe), str(threads), str(trials)], capture_output=True, text=True,
                                         check=True).stdout)
    return {
        "compiler": f"{cxx} " + " ".join(CXXFLAGS),
        "lanes": one["lanes"],
        "one_thread": one,
        "measured_threads": many,
        # the ceiling used: threads x the best single-core rate
        "fma_gflops": threads * one["fma_gflops"],
        "exp_g_per_s": threads * one["exp_g_per_s"],
        "div_g_per_s": threads * one["div_g_per_s"],
        "ref_exp_g_per_s": threads * one["ref_exp_g_per_s"],  # recorded, not used by the model
    }


def bounds(bench: str, ceil: dict) -> dict:
    flops, exps, divs, how = COUNTS[bench]
    b = {"flops": flops, "exps": exps, "divs": divs, "count": how,
         "fma_bound": ceil["fma_gflops"] / flops}
    if exps:
        b["exp_bound"] = ceil["exp_g_per_s"] / exps
    if divs:
        b["div_bound"] = ceil["div_g_per_s"] / divs
    b["ceiling"] = min(v for k, v in b.items() if k.endswith("_bound"))
    b["serial_bound"] = 1 / (flops / ceil["fma_gflops"] + exps / ceil["exp_g_per_s"] + divs / ceil["div_g_per_s"])
    return b


# ============================================================================================
# driver
# ============================================================================================


def loadavg():
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    for pkg in ("lazygeom", "torch", "numpy"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", text).group(1)
        fam, mod = re.search(r"cpu family\s*:\s*(\d+)", text), re.search(r"\nmodel\s*:\s*(\d+)", text)
        if fam and mod:
            info["cpu_family_model"] = f"{fam.group(1)}/{mod.group(1)}"
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
        info["simd"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
        info["hypervisor"] = "hypervisor" in flags
    except (OSError, AttributeError):
        pass
    try:
        mem = Path("/proc/meminfo").read_text()
        info["mem_gib"] = round(int(re.search(r"MemTotal:\s+(\d+)", mem).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    cxx = shutil.which("g++")
    if cxx:
        info["gxx"] = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
        info["git"] = head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return info


def run_worker(spec: dict, env: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            out = json.loads(line[len(MARKER):])
            out["process_s"] = time.perf_counter() - t0
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()
    msg = next((l for l in reversed(tail) if l.strip() and not l.startswith(" ")), "no output")
    return {**spec, "error": f"exit {proc.returncode}: {msg[-300:]}"}


def peers_available() -> dict:
    """Which peers import at all (cheap, in subprocesses so that nothing is imported here)."""
    out = {}
    for name, mod in (("pykeops", "pykeops"), ("faiss", "faiss"), ("matplotlib", "matplotlib")):
        probe_env = {**os.environ, "KEOPS_CACHE_FOLDER": tempfile.gettempdir() + "/lgbench-probe"}
        proc = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"], capture_output=True,
                              text=True, env=probe_env)
        out[name] = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None
    shutil.rmtree(tempfile.gettempdir() + "/lgbench-probe", ignore_errors=True)
    return out


def fmt_t(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s:.2f} s"


def main(argv=None) -> int:
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
    a = p.parse_args(argv)

    if a.worker:
        res = worker(json.loads(a.worker))
        print(MARKER + json.dumps(res), flush=True)
        return 0

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
    if "error" in ceil:
        print("ceilings:", ceil["error"])
    else:
        one = ceil["one_thread"]
        print(f"  one core : FMA {one['fma_gflops']:.1f} GFLOP/s, exp {one['exp_g_per_s']:.3f} G/s, "
              f"div {one['div_g_per_s']:.3f} G/s (fixed reference exp {one['ref_exp_g_per_s']:.3f} G/s)", flush=True)
        mt = ceil["measured_threads"]
        print(f"  {a.threads} threads: FMA {mt['fma_gflops']:.1f} GFLOP/s, exp {mt['exp_g_per_s']:.3f} G/s, "
              f"div {mt['div_g_per_s']:.3f} G/s (measured; the ceiling uses {a.threads} x one core)", flush=True)

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

    # correctness against float64, and lazygeom against each peer, on the check rows
    for bench in sorted({r["bench"] for r in results if "sample" in r}, key=ALL.index):
        rs = [r for r in results if r["bench"] == bench and "sample" in r]
        args = make_data(bench, rs[0]["n"], rs[0]["m"])
        rows = check_rows(rs[0]["n"])
        for r in rs:
            r["check"] = check(bench, args, rows, r["sample"])
        lg = next((r for r in rs if r["impl"] == "lazygeom"), None)
        if lg is not None and bench not in ("hyperbolic", "knn"):
            import torch
            a0 = torch.tensor(lg["sample"], dtype=torch.float64)
            for r in rs:
                if r is not lg:
                    b0 = torch.tensor(r["sample"], dtype=torch.float64).reshape(a0.shape)
                    r["rel_diff_vs_lazygeom"] = float((a0 - b0).norm() / b0.norm())
        elif lg is not None:
            for r in rs:
                if r is not lg:
                    x, y = lg["sample"], r["sample"]
                    same = sum(len(set(_flat(u)) & set(_flat(v))) for u, v in zip(x, y))
                    r["index_agreement_vs_lazygeom"] = same / sum(len(_flat(v)) for v in y)
        for r in rs:
            r.pop("sample", None)

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
    md = render_md(report)
    print()
    print(md)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu.md").write_text(md)
    (out / "cpu.json").write_text(json.dumps(report, indent=1))
    plotted = plot(report, out / "cpu.png")
    print(f"wrote {out / 'cpu.md'}, {out / 'cpu.json'}" + (f", {out / 'cpu.png'}" if plotted else ""))
    failed = [r for r in results if r.get("impl") == "lazygeom"
              and ("error" in r or not r.get("check", {}).get("ok", True))]
    if failed:
        print("lazygeom FAILED:", ", ".join(r["bench"] for r in failed))
    return 1 if failed else 0


def _cell(text) -> str:
    """Text made safe for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _flat(v):
    return v if isinstance(v, list) else [v]


def _rate(r):
    return r["n"] * r["m"] / min(r["times_s"]) / 1e9 if r.get("times_s") else None


def _cpu_share(r):
    if not r.get("times_s"):
        return None
    k = min(range(len(r["times_s"])), key=r["times_s"].__getitem__)
    return r["cpu_s"][k] / (r["times_s"][k] * r["threads"])


def render_md(rep: dict) -> str:
    ceil, bnd, res = rep["ceilings"], rep.get("bounds", {}), rep["results"]
    m = rep["machine"]
    L = ["# lazygeom CPU backend vs pykeops, FAISS and dense PyTorch", ""]
    L.append(f"Reproduce: `.venv/bin/python benchmarks/cpu.py{' --quick' if rep['quick'] else ''}` "
             f"(this run: `{rep['command'].strip()}`, {rep['date']}, {rep['duration_s'] / 60:.1f} min).")
    L.append("")
    L.append(f"Machine: {m.get('cpu')} (family/model {m.get('cpu_family_model')}), {m.get('cpus')} cpus"
             f"{' (virtual machine)' if m.get('hypervisor') else ''}, {m.get('mem_gib')} GiB, "
             f"SIMD {', '.join(m.get('simd', []))}; {m.get('gxx')}; {m.get('platform')}, Python {m.get('python')}.")
    pk, fa = rep["peers"].get("pykeops") or "not installed", rep["peers"].get("faiss") or "not installed"
    L.append(f"Versions: lazygeom {m.get('lazygeom')} (git {m.get('git', '?')}), "
             f"torch {m.get('torch')}, numpy {m.get('numpy')}, pykeops {pk}, faiss {fa}.")
    L.append(f"Threads: {rep['threads']} for every implementation; float32; N = M = {rep['n']:,} "
             f"(knn: {rep['n_knn']:,}).")
    lb, la = rep["load_before"], rep["load_after"]
    busy = max((lb or [0])[0], (la or [0])[0]) > 0.5
    L.append(f"Load average (1, 5, 15 min) before: {lb}, after: {la}"
             + (f" -- **the machine was busy: other processes competed for the {m.get('cpus')} cores, timings "
                "are pessimistic** (see the cpu share column)." if busy else "."))
    L.append("")

    L.append("## Ceilings")
    L.append("")
    if "error" in ceil:
        L.append(f"Not measured: {ceil['error']}")
    else:
        one, mt = ceil["one_thread"], ceil["measured_threads"]
        t = rep["threads"]
        L.append(f"Measured with lazygeom's vector header (W = {ceil['lanes']} float32 lanes), "
                 f"`{ceil['compiler']}`; best of many ~5 ms trials. The exp ceiling is that of lazygeom's own "
                 "`v_exp` (it moves when `v_exp` changes; the fixed Cephes `expf` row does not).")
        L.append("")
        L.append(f"| resource | one core | ceiling ({t} x one core) | measured, {t} threads |")
        L.append("|---|---:|---:|---:|")
        L.append(f"| FMA peak (GFLOP/s) | {one['fma_gflops']:.1f} | {ceil['fma_gflops']:.1f} | "
                 f"{mt['fma_gflops']:.1f} |")
        L.append(f"| exp, lazygeom `v_exp` (G exp/s) | {one['exp_g_per_s']:.3f} | {ceil['exp_g_per_s']:.3f} | "
                 f"{mt['exp_g_per_s']:.3f} |")
        L.append(f"| division (G div/s) | {one['div_g_per_s']:.3f} | {ceil['div_g_per_s']:.3f} | "
                 f"{mt['div_g_per_s']:.3f} |")
        L.append(f"| *for comparison, not in the model:* exp, fixed Cephes `expf` polynomial (G exp/s) | "
                 f"{one['ref_exp_g_per_s']:.3f} | {ceil['ref_exp_g_per_s']:.3f} | {mt['ref_exp_g_per_s']:.3f} |")
        L.append("")
        L.append("Per-pair model: `ceiling = min(FMA peak / flops, exp rate / exps, div rate / divs)` (an upper "
                 "bound: each resource alone); `serial bound = 1 / (flops / FMA peak + exps / exp rate + divs / "
                 "div rate)` (the exp polynomial shares the FMA units with the rest of the formula, so the truth is "
                 "nearer this one). Flops count the formula as written (FMA = 2); knn counts the matrix-product "
                 "form (2D + 2), which is what FAISS computes; lazygeom's direct form costs 3D.")
        L.append("")
        L.append("| benchmark | flops | exps | divs | what | ceiling (G pairs/s) | serial bound |")
        L.append("|---|---:|---:|---:|---|---:|---:|")
        for b in THROUGHPUT:
            if b in bnd:
                x = bnd[b]
                L.append(f"| {b} | {x['flops']} | {x['exps']} | {x['divs']} | {_cell(x['count'])} | "
                         f"{x['ceiling']:.2f} | {x['serial_bound']:.2f} |")
    L.append("")

    L.append("## Throughput")
    L.append("")
    L.append("Best of the timed calls (after a first call at 200 x 200 that compiles, and a full-size warm-up). "
             "*speed-up* = that implementation's time / lazygeom's time (> 1: lazygeom is faster). *first call*: "
             "200 x 200, including compilation for lazygeom and pykeops (fresh caches). *cpu share*: process CPU time "
             "/ (wall x threads) of the best call. *check*: against float64 on 200 rows.")
    L.append("")
    L.append("| benchmark | impl | N x M | time | G pairs/s | % ceiling | lazygeom speed-up | first call | check | "
             "cpu share | runs |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for b in THROUGHPUT + ["big"]:
        rs = [r for r in res if r["bench"] == b]
        lg = next((r for r in rs if r["impl"] == "lazygeom" and r.get("times_s")), None)
        for r in rs:
            size = f"{r['n']:,} x {r['m']:,}" if "n" in r else "-"
            if "error" in r or not r.get("times_s"):
                L.append(f"| {b} | {r['impl']} | {size} | - | - | - | - | - | {_cell(r.get('error', '?'))} | - | - |")
                continue
            best = min(r["times_s"])
            rate = _rate(r)
            frac = f"{100 * rate / bnd[b]['ceiling']:.1f}%" if b in bnd else "-"
            sp = f"{best / min(lg['times_s']):.2f}" if lg is not None and b != "big" else "-"
            c = r.get("check", {})
            cs = "-"
            if c:
                v = c["value"]
                cs = (f"{c['metric']} {v:.3f}" if c["metric"].startswith("recall") else f"{c['metric']} {v:.1e}")
                if "index_match" in c:
                    cs += f", same index {100 * c['index_match']:.1f}%"
                cs += "" if c["ok"] else " **FAIL**"
            share = _cpu_share(r)
            L.append(f"| {b} | {r['impl']} | {size} | {fmt_t(best)} | {rate:.3f} | {frac} | {sp} | "
                     f"{fmt_t(r.get('first_call_s'))} | {cs} | {share:.2f} | {len(r['times_s'])} |")
    big = next((r for r in res if r["bench"] == "big" and r.get("times_s")), None)
    if big:
        L.append("")
        pe = big.get("peak_extra_bytes")
        L.append(f"big: N = {big['n']:,} rows against M = {big['m']:,} columns, one call: "
                 f"{fmt_t(big['times_s'][0])}; peak resident memory above the inputs "
                 f"({big['input_bytes'] / 2**20:.0f} MiB): "
                 f"{'%.1f MiB' % (pe / 2**20) if pe is not None else 'n/a'} (VmHWM after resetting it through "
                 "/proc/self/clear_refs).")
        if big["n"] < big["m"]:
            L.append(f"**Rows reduced** from 1,000,000 to {big['n']:,}: the full call would take about "
                     f"{big['full_estimate_s']:.0f} s at the gauss1 throughput, over `--big-budget` "
                     f"(pass `--big-budget {math.ceil(big['full_estimate_s'] * 1.2 / 100) * 100}` to run it whole).")
    diffs = [(r["bench"], r["impl"], r.get("rel_diff_vs_lazygeom"), r.get("index_agreement_vs_lazygeom"))
             for r in res if "rel_diff_vs_lazygeom" in r or "index_agreement_vs_lazygeom" in r]
    if diffs:
        L.append("")
        L.append("Agreement with lazygeom on the check rows: " + "; ".join(
            f"{b}/{i}: " + (f"rel. diff {d:.1e}" if d is not None else f"same indices {100 * s:.1f}%")
            for b, i, d, s in diffs) + ".")
    L.append("")

    L.append("## Compilation and call overhead")
    L.append("")
    L.append("| measure | impl | first call | cached call (median) | cached call (min) | compile (first - cached) "
             "| import |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for b in ("compile", "overhead"):
        for r in (r for r in res if r["bench"] == b):
            if "error" in r:
                L.append(f"| {_cell(TITLES[b])} | {r['impl']} | {_cell(r['error'])} | | | | |")
                continue
            comp = fmt_t(r.get("compile_s")) if b == "compile" else "-"
            L.append(f"| {_cell(TITLES[b])} | {r['impl']} | {fmt_t(r['first_call_s'])} | {fmt_t(r['cached_call_s'])} "
                     f"(of {r['calls']}) | {fmt_t(r['cached_call_min_s'])} | {comp} | {fmt_t(r['import_s'])} |")
    L.append("")
    L.append("compile: Gaussian kernel sum at N = M = 10 in a new process with empty cache folders "
             "(`LAZYGEOM_CACHE_DIR`, `KEOPS_CACHE_FOLDER`). overhead: the same formula, kernels already compiled, "
             "median of 300 calls. torch: the dense blocked implementation of the benchmarks above.")
    L.append("")
    L.append("Benchmarks: " + "; ".join(f"{b}: {TITLES[b]}" for b in THROUGHPUT) + ". The script's docstring has "
             "the protocol.")
    return "\n".join(L) + "\n"


def plot(rep: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    bnd = rep.get("bounds", {})
    benches = [b for b in THROUGHPUT if any(r["bench"] == b and r.get("times_s") for r in rep["results"])]
    if not benches:
        return False
    impls = ["lazygeom", "pykeops", "faiss", "torch"]
    colors = {"lazygeom": "tab:blue", "pykeops": "tab:orange", "faiss": "tab:green", "torch": "tab:gray"}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    w = 0.2
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for i, b in enumerate(benches):
            r = next((r for r in rep["results"] if r["bench"] == b and r["impl"] == impl and r.get("times_s")), None)
            if r:
                xs.append(i + (k - 1.5) * w)
                ys.append(_rate(r))
        if xs:
            ax.bar(xs, ys, w, label=impl, color=colors[impl])
    for i, b in enumerate(benches):
        if b in bnd:
            ax.hlines(bnd[b]["ceiling"], i - 0.45, i + 0.45, colors="k", linestyles="-",
                      label="ceiling" if i == 0 else None)
            ax.hlines(bnd[b]["serial_bound"], i - 0.45, i + 0.45, colors="k", linestyles=":",
                      label="serial bound" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(range(len(benches)))
    ax.set_xticklabels(benches)
    ax.set_ylabel("G pairs / s (log)")
    lb, la = rep.get("load_before") or [0], rep.get("load_after") or [0]
    ax.set_title(f"CPU, {rep['threads']} threads, float32 -- {rep['machine'].get('cpu')} "
                 f"(load average {lb[0]:.1f} -> {la[0]:.1f} on {rep['machine'].get('cpus')} cpus)", fontsize=10)
    ax.set_ylim(top=3 * max([bnd[b]["ceiling"] for b in benches if b in bnd] + [1]))
    ax.legend(fontsize=8, ncol=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
