"""The machine side of ``benchmarks/cpu.py``: its description, load, peers, and the ceilings.

The ceilings come from ``cpu_ceiling.cpp`` (beside this file), compiled here with lazygeom's
``lgmath.hpp`` on the include path and run once on one thread and once on ``--threads`` threads;
``bounds`` turns them into per-benchmark ceilings with the per-pair counts of ``cpu_problems.COUNTS``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cpu_problems import COUNTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADER_DIR = ROOT / "src" / "lazygeom" / "backends" / "cpu"
CEILING_SRC = HERE / "cpu_ceiling.cpp"

CXXFLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-ffp-contract=fast", "-fno-math-errno",
            "-fno-trapping-math", "-Wno-psabi"]


def measure_ceilings(threads: int, trials: int) -> dict:
    """Compile and run ``cpu_ceiling.cpp``: the one-core and ``threads``-thread rates, and the ceilings used."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return {"error": "no C++ compiler"}
    with tempfile.TemporaryDirectory(prefix="lgbench-ceil-") as tmp:
        exe = Path(tmp) / "ceil"
        cmd = [cxx, *CXXFLAGS, f"-I{HEADER_DIR}", str(CEILING_SRC), "-o", str(exe)]
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
