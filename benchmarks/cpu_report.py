"""The report of ``benchmarks/cpu.py``: the markdown tables, the JSON file and the throughput plot.

``write(report, out)`` prints the markdown and writes ``cpu.md``, ``cpu.json`` and (when matplotlib
imports) ``cpu.png`` into the folder ``out``; ``report`` is the dictionary built by the driver.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cpu_problems import THROUGHPUT, TITLES


def fmt_t(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s:.2f} s"


def _cell(text) -> str:
    """Text made safe for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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


def write(report: dict, out: Path) -> None:
    """Print the markdown, write ``cpu.md``, ``cpu.json`` and ``cpu.png`` into ``out``, say so."""
    md = render_md(report)
    print()
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu.md").write_text(md)
    (out / "cpu.json").write_text(json.dumps(report, indent=1))
    plotted = plot(report, out / "cpu.png")
    print(f"wrote {out / 'cpu.md'}, {out / 'cpu.json'}" + (f", {out / 'cpu.png'}" if plotted else ""))
