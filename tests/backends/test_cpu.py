"""The native CPU backend: code generation coverage, vector math accuracy, the kernel cache, its
concurrency, compile errors and the no-compiler fallback. (Reductions and gradients on this backend
are covered by the engine suite, which runs on every available backend.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import lazygeom
import lazygeom.backends.policy
from lazygeom import Vi, Vj
from lazygeom.backends import select_backend
from lazygeom.backends.cpu import backend as cpu_backend
from lazygeom.backends.cpu import compiler
from lazygeom.backends.cpu.render import CPP
from lazygeom.errors import BackendUnavailable, CompilationError
from lazygeom.formula import all_ops

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def test_every_op_has_a_cpp_snippet():
    missing = sorted(set(all_ops()) - {"var", "const"} - set(CPP))
    assert not missing, f"ops without a C++ snippet: {missing}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vector_exp_and_log_accuracy(tmp_path, dtype):
    x = torch.cat([torch.linspace(-100, 88.3, 100_001, dtype=torch.float64), torch.randn(10_000, dtype=torch.float64)])
    pos = torch.cat([torch.logspace(-37, 38, 100_001, dtype=torch.float64), torch.rand(10_000, dtype=torch.float64)])
    one = torch.ones(1, 1, dtype=dtype)
    with lazygeom.config(cache_dir=str(tmp_path)):
        e = (Vi(x[:, None].to(dtype)).exp() * Vj(one)).sum(dim=1, backend="cpu")[:, 0].double()
        lg = (Vi(pos[:, None].to(dtype)).log() * Vj(one)).sum(dim=1, backend="cpu")[:, 0].double()
    ref_e = torch.exp(x.to(dtype).double())
    ref_l = torch.log(pos.to(dtype).double())
    ok = ref_e > torch.finfo(dtype).tiny  # below: flushed to 0, checked separately
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert ((e - ref_e).abs() / ref_e)[ok].max() <= tol
    assert (e[~ok] <= torch.finfo(dtype).tiny).all()
    assert (e[x.to(dtype).double() <= (-88 if dtype == torch.float32 else -709)] == 0).all()  # exactly 0 far below
    assert ((lg - ref_l).abs() / ref_l.abs().clamp(min=1e-3)).max() <= tol


def _kernel_source(F, folder) -> str:
    """The C++ source the CPU backend compiles for ``F.sum(dim=1)`` (read back from its cache)."""
    with lazygeom.config(cache_dir=str(folder)):
        F.sum(dim=1, backend="cpu")
    (src,) = list(folder.glob("*.cpp"))
    return src.read_text()


def test_exp_of_a_provably_nonpositive_argument_uses_the_cheaper_exp(tmp_path):
    x, y, p = torch.rand(4, 3), torch.rand(5, 3), torch.tensor([2.0])
    cases = {"gauss": ((-Vi(x).sqdist(Vj(y))).exp(), True),
             "param": ((-Vi(x).sqdist(Vj(y)) * lazygeom.Pm(p)).exp(), False),  # the sign of p is unknown
             "any": ((Vi(x) - Vj(y)).sum(-1).exp(), False)}
    for name, (F, cheap) in cases.items():
        src = _kernel_source(F, tmp_path / name)
        assert ("v_exp_nonpos(" in src) == cheap and ("v_exp(" in src) != cheap, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exp_of_nonpositive_arguments_matches_torch(tmp_path, dtype):
    """exp(-t^2) through v_exp_nonpos: accurate, exactly 0 far below (not the smallest normal
    number), 1 at 0, nan kept; a Gaussian kernel sum far from every point is exactly 0."""
    inf, nan = float("inf"), float("nan")
    t = torch.cat([torch.linspace(0, 30, 20_001, dtype=torch.float64), torch.tensor([0.0, -0.0, inf, -inf, nan, 1e20])])
    one = torch.ones(1, 1, dtype=dtype)
    with lazygeom.config(cache_dir=str(tmp_path)):
        e = ((-Vi(t[:, None].to(dtype)).square()).exp() * Vj(one)).sum(dim=1, backend="cpu")[:, 0].double()
        far = ((-Vi(torch.full((2, 3), 1e3, dtype=dtype)).sqdist(Vj(torch.rand(300, 3, dtype=dtype)))).exp()
               * Vj(torch.ones(300, 1, dtype=dtype))).sum(dim=1, backend="cpu")
    tf = t.to(dtype)
    ref = torch.exp((-(tf * tf)).double())  # the square rounded as the kernel rounds it
    ok = ref > torch.finfo(dtype).tiny
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert ((e - ref).abs() / ref)[ok].max() <= tol
    assert (e[(ref == 0) & ~t.isnan()] == 0).all() and (e[~ok & ~t.isnan()] <= torch.finfo(dtype).tiny).all()
    assert e[-6] == 1 and e[-5] == 1 and e[-4] == 0 and e[-3] == 0 and torch.isnan(e[-2]) and e[-1] == 0
    assert (far == 0).all()


def test_exp_log_special_values(tmp_path):
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[inf], [-inf], [nan], [0.0], [-1.0]])
    one = torch.ones(1, 1)
    with lazygeom.config(cache_dir=str(tmp_path)):
        e = (Vi(x).exp() * Vj(one)).sum(dim=1, backend="cpu")[:, 0]
        lg = (Vi(x).log() * Vj(one)).sum(dim=1, backend="cpu")[:, 0]
    assert e[0] == inf and e[1] == 0 and torch.isnan(e[2]) and e[3] == 1
    assert lg[0] == inf and torch.isnan(lg[1]) and torch.isnan(lg[2]) and lg[3] == -inf and torch.isnan(lg[4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_far_below_the_maximum_and_special_scores(tmp_path, dtype):
    """LogSumExp's second pass sums exp(F - max) <= 1 with a cheaper exp (no upper clamp, no
    flush to 0 below the smallest normal number): scores far below the row's maximum, -inf scores,
    rows of -inf and nan rows still give torch's values."""
    inf, nan = float("inf"), float("nan")
    g = torch.Generator().manual_seed(3)
    b = torch.cat([torch.tensor([-inf, -1000.0, -90.0, -1e30, 0.0, -87.5, -745.0]),
                   torch.randn(600, generator=g, dtype=torch.float64) * 30]).to(dtype)
    a = torch.tensor([0.0, 5.0, -200.0, -inf, nan, 1e3], dtype=dtype)
    v = torch.randn(b.shape[0], 2, generator=g, dtype=dtype)
    with lazygeom.config(cache_dir=str(tmp_path)):
        F = Vi(a[:, None]) + Vj(b[:, None])
        lse = F.logsumexp(dim=1, backend="cpu")[:, 0]
        ssmw = F.sumsoftmaxweight(Vj(v), dim=1, backend="cpu")
    S = a[:, None].double() + b[None].double()
    ref = torch.logsumexp(S, dim=1)
    ref_w = torch.softmax(S, dim=1) @ v.double()
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    fin = torch.isfinite(ref)
    assert ((lse.double() - ref).abs() / ref.abs().clamp(min=1))[fin].max() <= tol
    assert lse[3] == -inf and torch.isnan(lse[4])
    ok = torch.isfinite(ref_w).all(1)
    assert ((ssmw.double() - ref_w).abs().max(1).values / ref_w.abs().max(1).values)[ok].max() <= 10 * tol
    assert torch.isnan(ssmw[4]).all()


def _gauss(x, y, b):
    return ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(dim=1, backend="cpu")


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    x, y, b = torch.randn(30, 3), torch.randn(40, 3), torch.randn(40, 1)
    with lazygeom.config(cache_dir=str(tmp_path)):
        first = _gauss(x, y, b)
        assert len(compiler.cache_entries(str(tmp_path))) == 1

        # A new process (here: a fresh backend, with no kernel in memory) loads the kernel from
        # disk: the compiler must not run.
        def no_compile(*a, **k):
            raise AssertionError("the compiler ran although the kernel is cached")

        monkeypatch.setattr(compiler.subprocess, "run", no_compile)
        monkeypatch.setattr(lazygeom.backends.policy, "_CPU", cpu_backend.CpuBackend())
        assert torch.equal(first, _gauss(x, y, b))
        # a different formula is a miss: it must compile (and here, cannot)
        with pytest.raises(AssertionError, match="compiler ran"):
            ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b) * 2.0).sin().sum(dim=1, backend="cpu")
    assert len(compiler.cache_entries(str(tmp_path))) == 1


def test_cache_info_and_clear(tmp_path):
    with lazygeom.config(cache_dir=str(tmp_path)):
        _gauss(torch.randn(5, 3), torch.randn(6, 3), torch.randn(6, 1))
    assert len(compiler.cache_entries(str(tmp_path))) == 1
    assert compiler.clear_cache(str(tmp_path)) >= 1
    assert compiler.cache_entries(str(tmp_path)) == []


def test_concurrent_processes_compile_one_kernel_safely(tmp_path):
    script = textwrap.dedent(
        """
        import sys, torch, lazygeom
        from lazygeom import Vi, Vj
        torch.manual_seed(0)
        x, y, b = torch.randn(50, 3), torch.randn(60, 3), torch.randn(60, 1)
        with lazygeom.config(cache_dir=sys.argv[1]):
            out = ((-Vi(x).sqdist(Vj(y)) * 1.7).exp().cos() * Vj(b)).sum(dim=1, backend="cpu")
        ref = (torch.cos(torch.exp(-1.7 * torch.cdist(x, y) ** 2)) @ b)
        assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4), (out - ref).abs().max()
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert len(compiler.cache_entries(str(tmp_path))) == 1
    assert not list(tmp_path.glob("*.tmp.so")), "a temporary library was left behind"


def test_compile_error_carries_source_and_compiler_output(tmp_path):
    with pytest.raises(CompilationError) as err:
        compiler.build('extern "C" int broken( { return 0; }', "float", str(tmp_path))
    e = err.value
    assert e.source_path.endswith(".cpp") and open(e.source_path).read().startswith('extern "C" int broken')
    assert "error" in e.output
    assert e.source_path in str(e)


def test_no_compiler_falls_back_to_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(cpu_backend.CpuBackend, "available", staticmethod(lambda: False))
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(25, 3, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            out = Vi(x).sqdist(Vj(y)).sum(dim=1, backend="auto")
    msgs = [str(w.message) for w in caught if "no C++ compiler" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert torch.allclose(out[:, 0], torch.cdist(x, y).pow(2).sum(1))
    with pytest.raises(BackendUnavailable, match="compiler"):
        Vi(x).sqdist(Vj(y)).sum(dim=1, backend="cpu")


def test_auto_picks_cpu_for_cpu_float_tensors_and_reference_otherwise():
    from lazygeom.backends import Call
    from lazygeom.formula import var
    from lazygeom.reductions import Reduction

    call = Call(Reduction("sum", var(0, 0, 1)), (0,), 3, 4)
    assert select_backend("auto", call, [torch.zeros(3, 1)]).name == "cpu"
    assert select_backend("CPU", call, [torch.zeros(3, 1)]).name == "cpu"
    assert select_backend("auto", call, [torch.zeros(3, 1, dtype=torch.float16)]).name == "reference"
    with pytest.raises(BackendUnavailable, match="float32/float64"):
        select_backend("cpu", call, [torch.zeros(3, 1, dtype=torch.float16)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("D", [16, 50])
def test_knn_fast_path_matches_dense(dtype, D):
    """Squared distances at D >= 16 take the fused kNN kernel: values exact, ties to the first index."""
    g = torch.Generator().manual_seed(D)
    x = torch.randn(2, 301, D, generator=g, dtype=dtype)
    y = torch.randn(2, 157, D, generator=g, dtype=dtype)
    y[:, 40] = y[:, 7]  # exact ties
    x[:, 3] = y[:, 7]  # a zero distance
    from lazygeom import LazyTensor
    from lazygeom.backends.cpu import blas_knn
    from lazygeom.backends import Call
    from lazygeom.formula import composites as C, var
    from lazygeom.reductions import Reduction

    assert blas_knn.match(Call(Reduction("kmin_argkmin", C.sqdist(var(0, 0, D), var(1, 1, D)), K=5), (0, 1), 3, 4))
    D2 = ((x.double()[:, :, None] - y.double()[:, None]) ** 2).sum(-1)
    xl, yl = LazyTensor(x[:, :, None]), LazyTensor(y[:, None])
    vals, idx = xl.sqdist(yl).Kmin_argKmin(5, dim=2, backend="cpu")
    ref_v, ref_i = torch.sort(D2, dim=-1, stable=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(vals.double(), ref_v[..., :5], rtol=tol, atol=tol)
    assert torch.equal(idx, ref_i[..., :5])
    assert idx[0, 3, 0] == 7 and idx[0, 3, 1] == 40 and vals[0, 3, 0] == 0
    am = xl.sqdist(yl).argmin(dim=1, backend="cpu")  # reduction over i (transposed)
    assert torch.equal(am[..., 0], torch.sort(D2, dim=1, stable=True).indices[:, 0])
    # gradients of the selected values, against dense torch
    xg = x.clone().requires_grad_(True)
    v = LazyTensor(xg[:, :, None]).sqdist(yl).Kmin(3, dim=2, backend="cpu")
    (gx,) = torch.autograd.grad(v.sum(), [xg])
    xd = x.double().clone().requires_grad_(True)
    vd = torch.sort(((xd[:, :, None] - y.double()[:, None]) ** 2).sum(-1), dim=-1, stable=True).values[..., :3]
    (gd,) = torch.autograd.grad(vd.sum(), [xd])
    assert torch.allclose(gx.double(), gd, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_fast_path_over_several_row_and_column_blocks(dtype):
    """Sizes past the kernel's row block (240 rows) and panels (6 rows, 2 vectors of columns), none
    of them multiples: every row and column is reached once."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1001, 20, generator=g, dtype=dtype)
    y = torch.randn(1203, 20, generator=g, dtype=dtype)
    from lazygeom import Vi, Vj

    vals, idx = Vi(x).sqdist(Vj(y)).Kmin_argKmin(10, dim=1, backend="cpu")
    ref_v, ref_i = torch.sort(((x.double()[:, None] - y.double()[None]) ** 2).sum(-1), dim=-1, stable=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(vals.double(), ref_v[:, :10], rtol=tol, atol=tol)
    assert torch.equal(idx, ref_i[:, :10])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_fast_path_takes_every_spelling_of_distances_and_inner_products(dtype, monkeypatch):
    """``((x - y) ** 2).sum(-1)``, ``|y - x|^2``, ``<x, y>``, ``(x * y).sum(-1)`` and ``-<x, y>`` (the
    largest inner products) take the fused kernel, with exact values and ties to the first index."""
    from lazygeom import Vi, Vj
    from lazygeom.backends.cpu import blas_knn

    signs = []
    run = blas_knn.run
    monkeypatch.setattr(blas_knn, "run", lambda call, args, ix, iy, sign: signs.append(sign) or
                        run(call, args, ix, iy, sign))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(517, 24, generator=g, dtype=dtype)
    y = torch.randn(611, 24, generator=g, dtype=dtype)
    y[300] = y[20]  # exact ties, in distance and in inner product
    X, Y = Vi(x), Vj(y)
    xd, yd = x.double(), y.double()
    d2 = ((xd[:, None] - yd[None]) ** 2).sum(-1)
    ip = xd @ yd.T
    cases = [(((X - Y) ** 2).sum(-1), d2, 0), (((Y - X) ** 2).sum(-1), d2, 0), (X | Y, ip, 1),
             ((X * Y).sum(-1), ip, 1), (-(X | Y), -ip, -1), (-(Y | X), -ip, -1)]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for F, ref, sign in cases:
        signs.clear()
        vals, idx = F.Kmin_argKmin(7, dim=1, backend="cpu")
        am = F.argmin(dim=1, backend="cpu")
        assert signs == [sign, sign]
        ref_v, ref_i = torch.sort(ref, dim=1, stable=True)
        assert torch.allclose(vals.double(), ref_v[:, :7], rtol=tol, atol=tol), sign
        assert torch.equal(idx, ref_i[:, :7]), sign
        assert torch.equal(am[:, 0], ref_i[:, 0]), sign
    signs.clear()
    (-X.sqdist(Y)).argKmin(3, dim=1, backend="cpu")  # the farthest points: the generated loop
    Vi(x[:, :8]).sqdist(Vj(y[:, :8])).argKmin(3, dim=1, backend="cpu")  # D < 16: the generated loop
    assert signs == []


def test_cache_command(tmp_path, monkeypatch, capsys):
    from lazygeom.cli import main

    monkeypatch.setenv("LAZYGEOM_CACHE_DIR", str(tmp_path))
    _gauss(torch.randn(4, 3), torch.randn(5, 3), torch.randn(5, 1))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "compiled kernels: 1" in out
    assert main(["cache", "clear"]) == 0
    assert compiler.cache_entries(str(tmp_path)) == []
    assert main(["cache", "info"]) == 0 and "compiled kernels: 0" in capsys.readouterr().out
