"""lazygeom's Triton backend on a CUDA GPU against dense PyTorch and pykeops, in one run.

    .venv/bin/python benchmarks/gpu.py            # N = M = 1e6 (the targets of the GPU issue)
    .venv/bin/python benchmarks/gpu.py --quick    # N = M = 1e5
    .venv/bin/python benchmarks/gpu.py --only gauss lse --repeats 5

Without a CUDA device it prints "no CUDA device: GPU timings pending" and exits with status 0,
leaving ``benchmarks/results/gpu.md`` untouched (so that a CPU machine never overwrites real
numbers).

Problems (float32, x and y of shape (N, D), N = M):

=======  ===========================================================  ==========  ==============
name     problem                                                      D           target (H100)
=======  ===========================================================  ==========  ==============
gauss    ``a_i = sum_j exp(-|x_i - y_j|^2 / (2 s^2)) b_j``, b (M, 1)      3           <= 0.25 s
lse      ``a_i = log sum_j exp(-|x_i - y_j|^2 / eps)``                  3           <= 0.25 s
knn      the 10 nearest neighbours (``argKmin`` of ``|x_i - y_j|^2``)    64          <= 2 s
=======  ===========================================================  ==========  ==============

Protocol. Data from a fixed seed on the GPU; one call at N = M = 2,000 (compilation: reported as
"first call"), one warm-up call at full size, then ``--repeats`` timed calls (CUDA-synchronised,
``time.perf_counter``), best kept. Peers: dense torch, by blocks of rows holding at most 1 GiB of
kernel matrix (``torch.cdist`` then the map and the reduction; ``topk`` for knn), and pykeops'
``LazyTensor`` when it imports and runs (its own compilation on first call). A peer that fails is
reported as such. Correctness: 100 rows recomputed densely in float64; sums and LogSumExp by the
relative error (pass below 1e-4), knn by the recall of the exact neighbours (pass at 0.99).

Ceilings (DESIGN.md section 5), measured here: the float32 FMA peak of this GPU (a Triton kernel of
independent FMA chains in registers), the exp throughput (``tl.exp``: ex2.approx on the special
function units, which have an eighth of the FMA lanes), the float32 SGEMM rate (cuBLAS, TF32
off) and the TF32 tensor-core rate (cuBLAS, TF32 on). Each problem counts its flops per pair as
the formula is written (sub, mul, add = 1, FMA = 2; exp not included) and its exps per pair, and
reports ``% of FMA peak`` (flops/pair x pairs/s / peak) and the roofline bound
``min(FMA peak / flops, exp rate / exps)`` in G pairs/s.

Outputs: ``benchmarks/results/gpu.md`` (the table, also printed) and ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
#: flops (FMA = 2, exp excluded) and exps per pair, as each formula is written
COUNTS = {"gauss": (3 + 3 * 2 + 1 + 2, 1), "lse": (3 + 3 * 2 + 1 + 1, 1), "knn": (64 * 3, 0)}
DIMS = {"gauss": 3, "lse": 3, "knn": 64}
SIGMA, EPS, K = 0.1, 0.05, 10


def sync_time(fn, repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


# --- ceilings -----------------------------------------------------------------------------------


def fma_and_exp_peaks() -> dict:
    """float32 FMA and exp rates of this GPU, from small Triton kernels kept in registers."""
    import triton
    import triton.language as tl

    @triton.jit
    def fma_loop(out, n_iter, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        a = i.to(tl.float32) * 1e-9
        x0, x1, x2, x3 = a, a + 1.0, a + 2.0, a + 3.0
        for _ in range(n_iter):  # 4 independent chains x 8 FMAs per iteration
            for _k in tl.static_range(8):
                x0 = x0 * 0.999 + 0.001
                x1 = x1 * 0.999 + 0.001
                x2 = x2 * 0.999 + 0.001
                x3 = x3 * 0.999 + 0.001
        tl.store(out + i, x0 + x1 + x2 + x3)

    @triton.jit
    def exp_loop(out, n_iter, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x0 = i.to(tl.float32) * 1e-9
        x1 = x0 + 0.5
        for _ in range(n_iter):  # 2 chains x 8 exps per iteration
            for _k in tl.static_range(8):
                x0 = tl.exp(-x0)
                x1 = tl.exp(-x1)
        tl.store(out + i, x0 + x1)

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    n = sms * 64 * 1024
    out = torch.empty(n, device="cuda")
    res = {}
    for name, kern, ops in (("fma_gflops", fma_loop, 32 * 2), ("exp_gps", exp_loop, 16)):
        n_iter = 2000
        kern[(n // 1024,)](out, 10, BLOCK=1024)  # compile
        t, _ = sync_time(lambda: kern[(n // 1024,)](out, n_iter, BLOCK=1024), 5)
        res[name] = n * n_iter * ops / t / 1e9
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(8192, 8192, device="cuda")
        t, _ = sync_time(lambda: a @ a, 5)
        res["tf32_gflops" if tf32 else "sgemm_gflops"] = 2 * 8192**3 / t / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    return res


# --- the implementations ------------------------------------------------------------------------


def make_data(bench: str, n: int, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    d = DIMS[bench]
    x = torch.rand(n, d, device="cuda", generator=g)
    y = torch.rand(n, d, device="cuda", generator=g)
    b = torch.randn(n, 1, device="cuda", generator=g)
    return x, y, b


def run_lazygeom(bench, x, y, b, Vi, Vj):
    D2 = Vi(x).sqdist(Vj(y))
    if bench == "gauss":
        return ((-D2 / (2 * SIGMA**2)).exp() * Vj(b)).sum(dim=1, backend="triton")
    if bench == "lse":
        return (-D2 / EPS).logsumexp(dim=1, backend="triton")
    return D2.argKmin(K, dim=1, backend="triton")


def run_torch(bench, x, y, b):
    rows = max(1, (1 << 28) // y.shape[0])  # 1 GiB of float32 kernel matrix per block
    outs = []
    for i0 in range(0, x.shape[0], rows):
        D2 = torch.cdist(x[i0:i0 + rows], y).square_()
        if bench == "gauss":
            outs.append(D2.mul_(-1 / (2 * SIGMA**2)).exp_() @ b)
        elif bench == "lse":
            outs.append(torch.logsumexp(D2.mul_(-1 / EPS), 1, keepdim=True))
        else:
            outs.append(D2.topk(K, dim=1, largest=False).indices)
    return torch.cat(outs)


def run_pykeops(bench, x, y, b, LazyTensor):
    D2 = ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
    if bench == "gauss":
        return ((-D2 / (2 * SIGMA**2)).exp() * LazyTensor(b[None, :, :])).sum(dim=1)
    if bench == "lse":
        return (-D2 / EPS).logsumexp(dim=1)
    return D2.argKmin(K, dim=1)


def check(bench, out, x, y, b) -> tuple[float, bool]:
    rows = torch.linspace(0, x.shape[0] - 1, 100, device="cuda").long()
    D2 = torch.cdist(x[rows].double(), y.double()).square()
    if bench == "knn":
        exact = D2.topk(K, dim=1, largest=False).indices
        got = out[rows]
        recall = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(got, exact)) / exact.numel()
        return recall, recall >= 0.99
    ref = torch.exp(-D2 / (2 * SIGMA**2)) @ b.double() if bench == "gauss" else torch.logsumexp(-D2 / EPS, 1,
                                                                                                keepdim=True)
    err = float((out[rows].double() - ref).norm() / ref.norm())
    return err, err < 1e-4


def bench_one(bench, impl, n, repeats, peaks) -> dict:
    x, y, b = make_data(bench, n)
    if impl == "lazygeom":
        from lazygeom import Vi, Vj

        fn = lambda xx, yy, bb: run_lazygeom(bench, xx, yy, bb, Vi, Vj)  # noqa: E731
    elif impl == "pykeops":
        from pykeops.torch import LazyTensor

        fn = lambda xx, yy, bb: run_pykeops(bench, xx, yy, bb, LazyTensor)  # noqa: E731
    else:
        fn = lambda xx, yy, bb: run_torch(bench, xx, yy, bb)  # noqa: E731
    small = make_data(bench, 2000, seed=1)
    first, _ = sync_time(lambda: fn(*small), 1)
    fn(x, y, b)  # warm-up at full size
    t, out = sync_time(lambda: fn(x, y, b), repeats)
    score, ok = check(bench, out, x, y, b)
    flops, exps = COUNTS[bench]
    pairs = n * n / t
    bound = min(peaks["fma_gflops"] * 1e9 / flops, peaks["exp_gps"] * 1e9 / exps if exps else math.inf)
    return {"bench": bench, "impl": impl, "n": n, "time_s": t, "first_call_s": first, "gpairs_s": pairs / 1e9,
            "pct_fma_peak": 100 * flops * pairs / (peaks["fma_gflops"] * 1e9), "bound_gpairs_s": bound / 1e9,
            "check": score, "ok": ok}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = M = 1e5 instead of 1e6")
    ap.add_argument("--only", nargs="+", choices=list(COUNTS), default=list(COUNTS))
    ap.add_argument("--peers", nargs="+", choices=["torch", "pykeops"], default=["torch", "pykeops"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: GPU timings pending")
        return 0
    n = 100_000 if args.quick else 1_000_000
    peaks = fma_and_exp_peaks()
    rows = []
    for bench in args.only:
        for impl in ["lazygeom", *args.peers]:
            try:
                rows.append(bench_one(bench, impl, n, args.repeats, peaks))
            except Exception as err:  # noqa: BLE001 - a peer's failure is a result, not a crash
                rows.append({"bench": bench, "impl": impl, "n": n, "error": f"{type(err).__name__}: {err}"[:200]})
            torch.cuda.empty_cache()
            print(rows[-1], flush=True)
    lines = [f"# lazygeom Triton backend on {torch.cuda.get_device_name(0)}", "",
             f"float32, N = M = {n:,}; torch {torch.__version__}; peaks: FMA {peaks['fma_gflops']:.0f} GFLOP/s, "
             f"exp {peaks['exp_gps']:.0f} G/s, SGEMM {peaks['sgemm_gflops']:.0f} GFLOP/s, "
             f"TF32 {peaks['tf32_gflops']:.0f} GFLOP/s", "",
             "| problem | implementation | time (s) | first call (s) | G pairs/s | % FMA peak | bound (G pairs/s) "
             "| lazygeom speed-up | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    ours = {r["bench"]: r.get("time_s") for r in rows if r["impl"] == "lazygeom"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['bench']} | {r['impl']} | failed: {r['error']} | | | | | | |")
            continue
        speed = f"{r['time_s'] / ours[r['bench']]:.2f}" if ours.get(r["bench"]) and r["impl"] != "lazygeom" else ""
        lines.append(f"| {r['bench']} | {r['impl']} | {r['time_s']:.4f} | {r['first_call_s']:.2f} | "
                     f"{r['gpairs_s']:.0f} | {r['pct_fma_peak']:.1f} | {r['bound_gpairs_s']:.0f} | {speed} | "
                     f"{r['check']:.2e} {'ok' if r['ok'] else 'FAIL'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text(text)
    meta = {"device": torch.cuda.get_device_name(0), "python": sys.version, "platform": platform.platform(),
            "torch": torch.__version__, "peaks": peaks, "rows": rows}
    (args.out / "gpu.json").write_text(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
