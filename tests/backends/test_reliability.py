"""Reliability of the compiled CPU entry points (``backends/cpu/runner.py``).

Forked children (os.fork, multiprocessing's fork / spawn / forkserver), concurrent Python threads,
Ctrl-C during long calls (generated kernels, the fused kNN, a multiscale Sinkhorn solve), chunked
calls equal to one call, and the optional progress line. Everything that could hang runs in a
subprocess with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import lazygeom
from lazygeom import LazyTensor, Vi, Vj
from lazygeom.backends.cpu import compiler, runner
from reliability_calls import gauss, kmin, knn, lse, plan

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")

#: the source of this checkout and the calls' module, first on the subprocesses' path
_PATH = [str(Path(lazygeom.__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
_CALLS = {"gauss": gauss, "lse": lse, "kmin": kmin, "knn": knn}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*_PATH, *filter(None, [env.get("PYTHONPATH")])])
    env.pop("LAZYGEOM_PROGRESS", None)
    return env


def _run_script(tmp_path: Path, source: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a script file (spawn and forkserver re-import its functions) under a deadline."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    try:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=_env(),
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:  # pragma: no cover - the failure this file guards against
        pytest.fail(f"the script hung (killed after {timeout} s); stdout: {e.stdout!r}; stderr: {e.stderr!r}")


def _same(a, b, rtol=0.0) -> bool:
    """Equal outputs (tuples of tensors); ``rtol`` for sums whose order of terms may change."""
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    if len(a) != len(b):
        return False
    for s, t in zip(a, b):
        if (s is None) != (t is None):
            return False
        if s is None:
            continue
        if not (torch.equal(s, t) if rtol == 0 else torch.allclose(s, t, rtol=rtol, atol=0)):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# chunks


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Every compiled call in chunks of one quantum; yields the list of (label, i0, i1) run."""
    ran = []
    run = runner.run_chunks

    def spy(fn, n, cost, nthreads, quantum=1, label="kernel", **kw):
        def chunk(i0, i1):
            ran.append((label, i0, i1))
            fn(i0, i1)
        run(chunk, n, cost, nthreads, quantum, label, **kw)

    monkeypatch.setattr(runner, "run_chunks", spy)
    monkeypatch.setattr(runner, "PAIRS_PER_SECOND", 1e-3)
    monkeypatch.setattr(runner, "CHUNK_SECONDS", 1e-9)
    return ran


def _covered(ran, label):
    """The chunks of one call cover its rows in order."""
    spans = [(i0, i1) for lab, i0, i1 in ran if lab == label]
    assert len(spans) > 2, spans
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_chunked_reductions_equal_one_call(name, tiny_chunks):
    fn = _CALLS[name]
    n, m = (1500, 700) if name == "knn" else (700, 900)
    with pytest.MonkeyPatch.context() as mp:  # one call
        mp.setattr(runner, "PAIRS_PER_SECOND", 1e30)
        whole = fn(n, m)
    tiny_chunks.clear()
    chunked = fn(n, m)
    _covered(tiny_chunks, {"knn": "cpu kNN", "kmin": "cpu kmin_argkmin", "gauss": "cpu sum"}.get(name, f"cpu {name}"))
    assert _same(chunked, whole)
    ref = fn(n, m, backend="reference")
    if isinstance(ref, tuple):  # K-min: the same neighbours
        assert torch.equal(whole[1], ref[1]) and torch.allclose(whole[0], ref[0], rtol=1e-4, atol=1e-6)
    else:
        assert torch.allclose(whole, ref, rtol=1e-4, atol=1e-6)


def test_chunked_batched_and_block_sparse_calls_equal_one_call(tiny_chunks):
    from lazygeom.cluster import cluster_ranges_centroids, from_matrix, grid_cluster, sort_clusters

    g = torch.Generator().manual_seed(5)
    xb, yb = torch.rand(3, 400, 1, 2, generator=g), torch.rand(3, 1, 500, 2, generator=g)
    bb = torch.rand(3, 1, 500, 1, generator=g)
    x, y = torch.rand(2000, 2, generator=g, dtype=torch.float64), torch.rand(1500, 2, generator=g, dtype=torch.float64)
    x, _ = sort_clusters(x, grid_cluster(x, 0.2))
    y, _ = sort_clusters(y, grid_cluster(y, 0.2))
    rx, cx, _ = cluster_ranges_centroids(x, grid_cluster(x, 0.2))
    ry, cy, _ = cluster_ranges_centroids(y, grid_cluster(y, 0.2))
    keep = ((cx[:, None] - cy[None]) ** 2).sum(-1) < 0.3**2
    keep[0] = False  # a row cluster without pairs
    ranges = from_matrix(rx, ry, keep)

    def calls():
        batched = ((-LazyTensor(xb).sqdist(LazyTensor(yb))).exp() * LazyTensor(bb)).sum(dim=2, backend="cpu")
        sparse = (-Vi(x).sqdist(Vj(y))).logsumexp(dim=1, ranges=ranges, backend="cpu")
        per_range = Vi(x).sqdist(Vj(y)).max(dim=1, ranges=ranges, per_range=True, backend="cpu")
        return batched, sparse, per_range

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "PAIRS_PER_SECOND", 1e30)
        whole = calls()
    tiny_chunks.clear()
    chunked = calls()
    _covered(tiny_chunks, "cpu sum")
    _covered(tiny_chunks, "cpu lse")
    assert _same(chunked, whole)


@pytest.mark.parametrize("mode,grad", [(0, "none"), (1, "none"), (1, "both"), (2, "both")])
def test_chunked_plan_marginals_equal_one_call(mode, grad, tiny_chunks):
    n = 900
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "PAIRS_PER_SECOND", 1e30)
        whole = plan(n, n, mode=mode, grad=grad)
    tiny_chunks.clear()
    chunked = plan(n, n, mode=mode, grad=grad)
    _covered(tiny_chunks, "cpu plan marginals")
    assert torch.equal(chunked[0], whole[0])  # each row's sum is one thread's
    assert _same(chunked[1], whole[1], rtol=1e-12)  # the columns' across threads and chunks


def test_small_calls_stay_one_call(monkeypatch):
    ran = []
    run = runner.run_chunks
    monkeypatch.setattr(runner, "run_chunks", lambda fn, n, *a, **k: run(lambda i0, i1: (ran.append((i0, i1)),
                                                                                        fn(i0, i1)), n, *a, **k))
    gauss(2000, 2000)
    knn(1000, 1000)
    plan(500, 500)
    assert ran == [(0, 2000), (0, 1000), (0, 10)]  # rows, rows, row clusters


# ---------------------------------------------------------------------------------------------
# progress


def test_progress_line_for_long_calls_only(monkeypatch, capsys):
    monkeypatch.setattr(runner, "PAIRS_PER_SECOND", 1e3)  # every call of this test is "long"
    monkeypatch.setattr(runner, "CHUNK_SECONDS", 1e-3)
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 0.0)
    want = gauss(3000, 500, backend="reference")
    out = gauss(3000, 500)  # off by default
    assert capsys.readouterr().err == ""
    with lazygeom.config(progress=True):
        out = gauss(3000, 500)
    err = capsys.readouterr().err
    assert torch.allclose(out, want, rtol=1e-4)
    lines = err.split("\r")
    assert err.endswith("\n") and len(lines) > 3, err
    assert "[lazygeom] cpu sum:" in lines[1] and "elapsed, ETA" in lines[1], err
    assert "100.0% of 3000 rows" in lines[-1], err
    monkeypatch.setenv("LAZYGEOM_PROGRESS", "1")
    knn(1500, 500)
    assert "[lazygeom] cpu kNN:" in capsys.readouterr().err
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 1e9)  # calls expected to be short print nothing
    knn(1500, 500)
    assert capsys.readouterr().err == ""


def test_progress_setting_resolves_from_the_environment(monkeypatch):
    monkeypatch.delenv("LAZYGEOM_PROGRESS", raising=False)
    assert lazygeom.settings.get_config().progress is False
    monkeypatch.setenv("LAZYGEOM_PROGRESS", "1")
    assert lazygeom.settings.get_config().progress is True
    with lazygeom.config(progress=False):
        assert lazygeom.settings.get_config().progress is False


# ---------------------------------------------------------------------------------------------
# threads


def test_concurrent_python_threads_get_single_threaded_results():
    jobs = [(gauss, 3000, 2500), (lse, 2000, 4000), (kmin, 2500, 1500), (knn, 1200, 2000), (plan, 1500, 1500),
            (gauss, 500, 700), (lse, 5000, 800), (knn, 3000, 600), (kmin, 300, 200), (plan, 700, 2000)]
    jobs = [(fn, n, m, seed) for seed in range(2) for fn, n, m in jobs]
    want = [fn(n, m, seed) for fn, n, m, seed in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            got = list(pool.map(lambda job: job[0](*job[1:]), jobs))
            for (fn, n, m, seed), a, b in zip(jobs, got, want):
                assert _same(a, b, rtol=1e-12 if fn is plan else 0.0), (fn.__name__, n, m, seed)


# ---------------------------------------------------------------------------------------------
# forked children

_FORK = '''
import os, sys, time
import multiprocessing as mp

import torch

from reliability_calls import gauss, knn, lse, plan


def calls(seed):
    return [gauss(3000, 2000, seed), lse(2000, 2500, seed), knn(1500, 1200, seed), plan(800, 900, seed)]


def same(a, b):
    for s, t in zip(a, b):
        s, t = (s if isinstance(s, tuple) else (s,)), (t if isinstance(t, tuple) else (t,))
        for u, v in zip(s, t):
            if (u is None) != (v is None) or (u is not None and not torch.allclose(u, v, rtol=1e-12, atol=0)):
                return False
    return True


def worker(seed):
    return [torch.get_num_threads()] + calls(seed)


def main(method):
    torch.set_num_threads(2)
    want = calls(0)  # the OpenMP pool exists now (and torch's own parallel ops too)
    torch.rand(4_000_000).mul(2).sum()
    if method == "os.fork":
        pid = os.fork()
        if pid == 0:
            ok = same(calls(0), want) and torch.rand(4_000_000).mul(2).sum() > 0  # torch itself works too
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exit", os.waitstatus_to_exitcode(status))
                return
            time.sleep(0.05)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("child hung")
        return
    with mp.get_context(method).Pool(2) as pool:
        try:
            out = pool.map_async(worker, [0, 1]).get(timeout=30)
        except mp.TimeoutError:
            print("child hung")
            pool.terminate()
            return
    print("threads", [o[0] for o in out])
    print("child exit", 0 if same(out[0][1:], want) and same(out[1][1:], calls(1)) else 1)


if __name__ == "__main__":
    main(sys.argv[1])
'''


@pytest.mark.parametrize("method", ["os.fork", "fork", "spawn", "forkserver"])
def test_forked_and_fresh_children_run_reductions(tmp_path, method):
    res = _run_script(tmp_path, _FORK, method)
    assert res.returncode == 0, res.stderr
    assert "child exit 0" in res.stdout, res.stdout + res.stderr
    if method in ("spawn", "forkserver"):
        print(res.stdout)


# ---------------------------------------------------------------------------------------------
# Ctrl-C

_SIGINT = '''
import json, os, signal, sys, time

import torch

import lazygeom.ot
from lazygeom import Vi, Vj
from reliability_calls import data, gauss, knn
from lazygeom.backends.cpu import marginals as cpu_marginals

signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the test runner ignores SIGINT
what = sys.argv[1]


def ms(n, blur, seed=0):
    x, y, _, _ = data(n, n, 3, seed)
    return lazygeom.ot.SamplesLoss(backend="multiscale", blur=blur)(x, y + 0.05)


def small():
    if what == "gauss":
        return gauss(3000, 2000), gauss(3000, 2000, backend="reference")
    if what == "knn":
        return knn(2000, 1500), knn(2000, 1500, backend="reference")
    return ms(3000, 0.2), ms(3000, 0.2)


def long():
    if what == "gauss":
        return gauss(300_000, 300_000)
    if what == "knn":
        x, y, _, _ = data(150_000, 150_000, 32, 1)
        return Vi(x).sqdist(Vj(y)).Kmin_argKmin(10, dim=1, backend="cpu")
    # the multiscale solve: "go" when its pass on the points starts (the passes before are short)
    run = cpu_marginals.plan_marginals

    def spy(blocks, x, *args, **kw):
        if x.shape[0] == 100_000:
            cpu_marginals.plan_marginals = run
            go()
        return run(blocks, x, *args, **kw)

    cpu_marginals.plan_marginals = spy
    return ms(100_000, 0.15)


def go():
    print("go", time.monotonic(), flush=True)


def tasks():
    return len(os.listdir("/proc/self/task"))


before = small()
threads = tasks()
if what != "ms":
    go()
try:
    long()
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
after = small()
if what == "knn":
    ok = torch.equal(after[0][0], before[0][0]) and torch.equal(after[0][1], after[1][1])
    ok = ok and torch.allclose(after[0][0], after[1][0], rtol=1e-4)
elif what == "gauss":
    ok = torch.equal(after[0], before[0]) and torch.allclose(after[0], after[1], rtol=1e-4, atol=1e-6)
else:
    ok = torch.allclose(after[0], before[0], rtol=1e-6)
print("result", json.dumps({"ok": bool(ok), "tasks": [threads, tasks()]}), flush=True)
'''


class _Lines:
    """Lines of a child's stdout, read under deadlines (select on the raw pipe)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buf, self.seen = proc, b"", []

    def wait_for(self, prefix: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.seen.append(line.decode())
                if self.seen[-1].startswith(prefix):
                    return self.seen[-1].split(" ", 1)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return []
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return []
            self.buf += chunk


@pytest.mark.parametrize("what", ["gauss", "knn", "ms"])
def test_ctrl_c_interrupts_a_long_call_quickly_and_the_next_call_works(tmp_path, what):
    """SIGINT 1 s into a call of 10+ s (0.3 s into the multiscale solve's first pass on the points, 2-3 s):
    KeyboardInterrupt within 1 s (the design aims at 0.2 s: the measured delay is printed), no
    thread left behind, and the next calls give the results of before and of the reference."""
    script = tmp_path / "sigint.py"
    script.write_text(textwrap.dedent(_SIGINT))
    proc = subprocess.Popen([sys.executable, str(script), what], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())
    try:
        lines = _Lines(proc)
        started = lines.wait_for("go", 300)
        assert started, f"the long call did not start: {lines.seen} {proc.stderr.read().decode()}"
        time.sleep(1.0 if what != "ms" else 0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        got = lines.wait_for("interrupted", 5.0)
        assert got, f"no KeyboardInterrupt within 5 s of SIGINT: {lines.seen}"
        delay = float(got[1]) - sent
        print(f"{what}: KeyboardInterrupt {delay * 1e3:.0f} ms after SIGINT")
        result = lines.wait_for("result", 120)
        assert result, f"the calls after the interruption did not finish: {lines.seen}"
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert delay < 1.0, f"KeyboardInterrupt {delay:.2f} s after SIGINT"
    report = json.loads(result[1])
    assert report["ok"], lines.seen
    assert report["tasks"][1] <= report["tasks"][0], f"threads left behind: {report['tasks']}"


def test_threads_in_a_forked_child_and_here():
    assert not runner.in_forked_child()
    assert runner.threads() == torch.get_num_threads()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, json.dumps([runner.in_forked_child(), runner.threads(), torch.get_num_threads()]).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert json.loads(os.read(r, 1000)) == [True, 1, 1]
    os.close(r)

