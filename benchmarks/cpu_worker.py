"""The worker of ``benchmarks/cpu.py``: one (benchmark, implementation) measured in its own process.

The driver starts ``python benchmarks/cpu.py --worker SPEC`` (``run_worker``); that process calls
``worker(spec)`` and prints its result as one JSON line after ``MARKER``. The implementations
(lazygeom, pykeops, FAISS, dense torch) import their library when asked for, never at import time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cpu_problems import EPS_LSE, K_NN, SMALL, check_rows, make_data
from procmem import reset_peak, status_bytes  # benchmarks/procmem.py, beside this script

SCRIPT = Path(__file__).resolve().parent / "cpu.py"  # the driver, which runs `worker` under --worker
MARKER = "@@RESULT@@"
CHUNK_BYTES = 256 * 2**20  # dense torch: kernel-matrix block size


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


def serve(spec_json: str) -> int:
    """The worker process (``cpu.py --worker SPEC``): measure, print the result line for ``run_worker``."""
    res = worker(json.loads(spec_json))
    print(MARKER + json.dumps(res), flush=True)
    return 0


def run_worker(spec: dict, env: dict, timeout: float) -> dict:
    """Run one measurement in a new process (``cpu.py --worker``) and return its result or its error."""
    cmd = [sys.executable, str(SCRIPT), "--worker", json.dumps(spec)]
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
