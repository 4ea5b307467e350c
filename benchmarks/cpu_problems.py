"""The benchmarks of ``benchmarks/cpu.py``: names, per-pair operation counts, data and float64 checks.

Imported by the driver (``cpu.py``), the worker (``cpu_worker.py``), the ceilings
(``cpu_machine.py``) and the report (``cpu_report.py``); torch is imported inside the functions only.
"""

from __future__ import annotations

SMALL = 200  # rows and columns of the first (compiling) call
CHECK_ROWS = 200  # rows recomputed in float64
EPS_LSE = 0.1
K_NN = 10

# per-pair operation counts (see the docstring of cpu.py): flops (FMA = 2), exps, divisions, and how
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


def _flat(v):
    return v if isinstance(v, list) else [v]


def compare(results: list) -> None:
    """Correctness against float64, and lazygeom against each peer, on the check rows (in place).

    Each result with a ``sample`` (its output on the check rows) gets ``check``; every other result of
    a benchmark that lazygeom ran gets ``rel_diff_vs_lazygeom`` (values) or
    ``index_agreement_vs_lazygeom`` (argmin, kNN); the samples are then dropped.
    """
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
