"""The Triton backend's code generation: every op through the renderer, the vector math, the
kernel cache, compile errors, the selection policy, and compilation for a real GPU target.

Runs under Triton's interpreter on a CPU (see ``triton_testing``), the compiled kernels on a
machine with a CUDA device.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

from triton_testing import INTERPRET, assert_same, cache_dir, triton_mode  # noqa: F401  (fixtures)

import pytest
import torch

import lazygeom.backends.policy as B
from lazygeom import Pm, Vi, Vj
from lazygeom.backends import Call, select_backend
from lazygeom.backends.triton import backend as tb
from lazygeom.errors import BackendUnavailable, CompilationError
from lazygeom.formula import CAT_I, CAT_J, CAT_P, all_ops, composites, make, node, var
from lazygeom.lazy.genred import genred
from lazygeom.reductions import Reduction


# --- every op, and the vector math ------------------------------------------------------------


def test_every_op_has_a_triton_snippet():
    from lazygeom.backends.triton.render import TRITON

    missing = sorted(set(all_ops()) - {"var", "const"} - set(TRITON))
    assert not missing, f"ops without a Triton snippet: {missing}"


#: per op: argument dims and attrs (one configuration each; broadcast dims where the op allows)
OP_CASES = {
    **{op: ((3,), ()) for op in ("neg", "exp", "sin", "cos", "tanh", "atan", "square", "abs", "sign", "step",
                                 "round", "floor", "relu")},
    **{op: ((3,), ()) for op in ("log", "sqrt", "rsqrt", "log1p", "xlogx")},  # positive domain
    "asin": ((3,), ()), "acos": ((3,), ()), "inv": ((3,), ()), "sinxdivx": ((3,), ()),
    "pow": ((3,), (-3,)), "add": ((3, 1), ()), "sub": ((1, 3), ()), "mul": ((3, 3), ()), "div": ((3, 3), ()),
    "atan2": ((3, 3), ()), "min2": ((3, 3), ()), "max2": ((1, 3), ()), "ifelse": ((3, 1, 3), ()),
    "sum": ((4,), ()), "bcast": ((1,), (3,)), "dot": ((3, 3), ()), "vmax": ((4,), ()), "vmin": ((4,), ()),
    "vargmax": ((4,), ()), "vargmin": ((4,), ()), "onehot": ((1,), (4,)), "extract": ((5,), (1, 3)),
    "pad": ((2,), (1, 5)), "concat": ((2, 3), ()), "matvecmult": ((6, 3), ()), "vecmatmult": ((2, 6), ()),
    "tensorprod": ((2, 3), ()),
}
_POSITIVE = {"log", "sqrt", "rsqrt", "log1p", "xlogx"}


def _op_args(op, cats, dims, rng):
    out = []
    for c, d in zip(cats, dims):
        shape = {CAT_I: (13, d), CAT_J: (21, d)}.get(c, (d,))
        t = torch.randn(shape, generator=rng, dtype=torch.float64)
        if op in _POSITIVE:
            t = t.abs() + 0.1
        elif op in ("asin", "acos"):
            t = 0.9 * torch.tanh(t)
        elif op == "onehot":
            t = torch.randint(0, 4, shape, generator=rng).double()
        out.append(t)
    return out


def _op_params():
    for op in sorted(OP_CASES):
        yield pytest.param(op, "ij", id=f"{op}-ij")
        if len(OP_CASES[op][0]) > 1:  # a parameter first: [1, 1] tiles mixed with rows and columns
            yield pytest.param(op, "pj", id=f"{op}-pj")


@pytest.mark.parametrize("op,layout", list(_op_params()))
def test_every_op_forward(op, layout, rng):
    assert set(OP_CASES) == set(all_ops()) - {"var", "const"}, "an op has no case in OP_CASES"
    dims, attrs = OP_CASES[op]
    cats = [CAT_I if k % 2 == 0 else CAT_J for k in range(len(dims))]
    if layout == "pj":
        cats[0] = CAT_P
    args = _op_args(op, cats, dims, rng)
    f = node(op, *(var(k, c, d) for k, (c, d) in enumerate(zip(cats, dims))), attrs=attrs)
    ni, nj = 13, (21 if CAT_J in cats else 1)
    ours = genred(Reduction("sum", f), args, cats, ni, nj, (), "triton")
    ref = genred(Reduction("sum", f), args, cats, ni, nj, (), "reference")
    assert_same(ours, ref, torch.float64)


def test_integer_powers(rng):
    """pow's snippet unrolls repeated squaring at render time: every branch of it."""
    args = [torch.randn(13, 2, generator=rng, dtype=torch.float64)]
    for k in (-5, -1, 0, 1, 2, 7):  # node(), not make(): no simplification of x**0, x**1...
        red = Reduction("sum", node("pow", var(0, CAT_I, 2), attrs=(k,)))
        assert_same(genred(red, args, [CAT_I], 13, 3, (), "triton"), genred(red, args, [CAT_I], 13, 3, (), "reference"),
                    torch.float64)


def _special(dtype):
    inf, nan = float("inf"), float("nan")
    grid = torch.cat([torch.linspace(-30, 30, 2001, dtype=torch.float64),
                      torch.logspace(-30, 30, 301, dtype=torch.float64),
                      -torch.logspace(-30, 30, 301, dtype=torch.float64),
                      torch.tensor([0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -3.5, 1e300, inf, -inf, nan], dtype=torch.float64)])
    return grid.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_vector_math_accuracy(dtype, monkeypatch):
    """Our formulas for tanh, atan, asin, acos, log1p, round (and Triton's own functions) within a
    few ulps of torch, with the same special values (inf, nan, signed limits)."""
    if INTERPRET:  # one program: the interpreter pays per program (a GPU would spill)
        monkeypatch.setattr(B._TRITON, "block_i", 4096)
    x = _special(dtype)
    unit = torch.cat([torch.linspace(-1, 1, 2001, dtype=dtype), torch.tensor([1.5, -2.0, float("nan")], dtype=dtype)])
    domains = {"asin": unit, "acos": unit, "log1p": torch.cat([x[x > -1], torch.tensor([-1.0, -2.0], dtype=dtype)]),
               "log": x.abs(), "sqrt": x.abs(), "rsqrt": x.abs(), "xlogx": x.abs()}
    one = torch.ones(1, 1, dtype=dtype)
    eps = torch.finfo(dtype).eps
    for op in ("tanh", "atan", "asin", "acos", "log1p", "round", "sign", "floor", "exp", "log", "sqrt", "rsqrt",
               "sin", "cos", "xlogx", "sinxdivx"):
        t = domains.get(op, x)
        out = (getattr(Vi(t[:, None]), op)() * Vj(one)).sum(dim=1, backend="triton")[:, 0]
        exact = all_ops()[op].impl(torch, t.double()[:, None], ())[:, 0]
        ref = exact.to(dtype)
        assert torch.equal(torch.isnan(out), torch.isnan(ref)), op
        special = torch.isinf(ref) | (ref == 0)
        assert torch.equal(out[special], ref[special]), op
        ok = ~special & ~torch.isnan(ref) & (ref.abs() > torch.finfo(dtype).tiny)
        err = ((out[ok].double() - exact[ok]).abs() / exact[ok].abs()).max().item()
        # compiled float32 exp is ex2.approx(x log2 e): its error grows with |x| (here |x| <= 40)
        tol = 4 * eps if INTERPRET or dtype == torch.float64 else {"exp": 1e-5, "tanh": 1e-5}.get(op, 16 * eps)
        assert err <= tol, f"{op}: {err / eps:.1f} ulp"
    # atan2 on a grid of signs, zeros and infinities
    v = torch.tensor([0.0, 1.0, -1.0, 0.3, -2.5, 7.0, float("inf"), -float("inf")], dtype=dtype)
    y, xx = torch.meshgrid(v, v, indexing="ij")
    out = (Vi(y.reshape(-1, 1)).atan2(Vi(xx.reshape(-1, 1))) * Vj(one)).sum(dim=1, backend="triton")[:, 0]
    ref = torch.atan2(y.reshape(-1).double(), xx.reshape(-1).double())
    assert ((out.double() - ref).abs() <= 4 * eps * ref.abs()).all()


# --- selection policy, kernel cache, errors ---------------------------------------------------


def _call(kind="sum", nj=4):
    return Call(Reduction(kind, var(0, CAT_I, 1)), (CAT_I,), 3, nj)


def test_selection_policy(monkeypatch):
    cpu = [torch.zeros(3, 1)]
    assert "triton" in B.available_backends()  # TRITON_INTERPRET=1 here
    assert select_backend("triton", _call(), cpu).name == "triton"
    assert select_backend("GPU", _call(), cpu).name == "triton"  # pykeops' name
    assert select_backend("auto", _call(), cpu).name != "triton"  # CPU tensors stay on the CPU backends
    with pytest.raises(BackendUnavailable, match="int64"):
        select_backend("triton", _call(), [torch.zeros(3, 1, dtype=torch.int64)])
    with pytest.raises(BackendUnavailable, match="K <= 64"):
        select_backend("triton", Call(Reduction("kmin_argkmin", var(0, CAT_I, 1), K=65), (CAT_I,), 3, 70), cpu)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        assert "triton" not in B.available_backends()
        with pytest.raises(BackendUnavailable, match=r"GPU.*not available.*TRITON_INTERPRET=1"):
            select_backend("triton", _call(), cpu)
        assert select_backend("auto", _call(), cpu).name in ("cpu", "reference")


def test_no_regeneration_for_new_sizes_or_parameter_values(rng, monkeypatch, cache_dir):  # noqa: F811 (fixture)
    def gauss(n, m, s):
        x = torch.randn(n, 3, generator=rng, dtype=torch.float64)
        y = torch.randn(m, 3, generator=rng, dtype=torch.float64)
        F = (-Vi(x).sqdist(Vj(y)) * Pm(torch.tensor([s], dtype=torch.float64))).exp()
        return F.sum(dim=1, backend="triton"), F.sum(dim=1, backend="reference")

    assert_same(*gauss(20, 30, 0.5), torch.float64)
    n_modules = len(B._TRITON._modules)

    def no_generation(*a, **k):
        raise AssertionError("a kernel was generated again")

    monkeypatch.setattr(tb, "generate", no_generation)
    for n, m, s in ((37, 11, 2.0), (1, 64, 0.1), (48, 48, 3.0)):
        assert_same(*gauss(n, m, s), torch.float64)
    assert len(B._TRITON._modules) == n_modules
    files = list((__import__("pathlib").Path(cache_dir) / "triton").glob("lgt_*.py"))
    assert files and all("def lg_kernel" in f.read_text() for f in files)


def test_broken_source_raises_with_its_path(monkeypatch, rng):
    monkeypatch.setattr(tb, "generate", lambda *a: "def broken(:\n")
    x = torch.randn(5, 2, generator=rng, dtype=torch.float64)
    with pytest.raises(CompilationError) as err:
        (Vi(x).sqdist(Vj(x)) * 3.25).cos().sum(dim=1, backend="triton")  # a formula not seen before
    assert open(err.value.source_path).read() == "def broken(:\n"
    assert "SyntaxError" in str(err.value)


_AOT_SCRIPT = textwrap.dedent(
    """
    import pickle, sys
    import torch
    from lazygeom.backends import Call
    from lazygeom.backends.triton.aot import compile_kernel, resource_usage

    with open(sys.argv[1], "rb") as fh:
        cases, gauss, knn = pickle.load(fh)
    for red, cats, dims, dtype, sparse, constant_nj in cases:
        k = compile_kernel(Call(red, cats, 100, 100), dims, dtype, sparse=sparse, constant_nj=constant_nj)
        assert ".entry lg_kernel" in k.asm["ptx"], red.kind
    # the default tiles of a Gaussian sum (backend.tiles) do not spill
    k = compile_kernel(Call(gauss, (0, 1, 1), 100, 100), (3, 3, 1), torch.float32, block_i=64, block_j=64,
                       num_warps=8)
    usage = resource_usage(k)
    assert usage["spill_bytes"] == 0, usage
    for dtype in (torch.float32, torch.float64):
        k = compile_kernel(Call(knn, (0, 1), 100, 100), (20, 20), dtype, dot_terms=True, block_i=128, block_j=64,
                           num_warps=8)
        assert "mma" in k.asm["ptx"]  # tensor cores (float32: 3xTF32 wgmma; float64: DMMA)
    print("OK", usage)
    """
)


def every_op_formula():
    """One scalar formula using every op (through sums), to compile all snippets at once."""
    x, y, z = var(0, CAT_I, 3), var(1, CAT_J, 3), var(2, CAT_J, 1)
    wide = node("concat", node("concat", x, y), y)  # dimension 9, to extract any width from
    terms = []
    for op, (dims, attrs) in sorted(OP_CASES.items()):
        ins = [(x, y, z)[k % 3] if d == (x, y, z)[k % 3].dim else
               (z if d == 1 else node("extract", wide, attrs=(k, d))) for k, d in enumerate(dims)]
        terms.append(node("sum", node(op, *ins, attrs=attrs)))
    f = terms[0]
    for t in terms[1:]:
        f = node("add", f, t)
    return f


def test_generated_kernels_compile_for_a_gpu(tmp_path, cache_dir):  # noqa: F811 (the fixture)
    """The interpreter runs Python; a GPU runs what Triton's compiler makes of the same source,
    and that compiler is stricter (types, constexprs, loop-carried values). Compile for sm_90
    here, without a GPU (Triton ships ptxas), in a process where Triton runs in compiled mode:
    every snippet, every kind, each dtype, dense and block-sparse, nj == 1 (a constant for Triton)."""
    f = every_op_formula()
    x2, y2 = var(0, CAT_I, 2), var(1, CAT_J, 2)
    # the float64 branches of lgmath (float64 compiles are slow: libdevice's sin, exp... are large)
    x1, y1 = var(0, CAT_I, 1), var(1, CAT_J, 1)
    g = node("atan2", node("tanh", x1), node("log1p", node("mul", x1, y1)))
    for op in ("atan", "asin", "acos", "round", "xlogx", "sinxdivx", "sign"):
        g = node("add", g, node(op, node("mul", x1, y1)))
    f64, f32, f16 = torch.float64, torch.float32, torch.float16
    cases = [  # (reduction, cats, dims, dtype, sparse, nj constant)
        (Reduction("sum", f), (CAT_I, CAT_J, CAT_J), (3, 3, 1), f32, False, False),
        (Reduction("kmin_argkmin", g, K=3), (CAT_I, CAT_J), (1, 1), f64, True, True),
        (Reduction("lse", node("dot", x2, y2), weight=node("exp", y2)), (CAT_I, CAT_J), (2, 2), f32, True, False),
        (Reduction("max_argmax", node("sub", x2, y2)), (CAT_I, CAT_J), (2, 2), f64, False, True),
        (Reduction("ssmw", node("dot", x2, y2), weight=y2), (CAT_I, CAT_J), (2, 2), f16, False, False),
    ]
    x20, y20 = var(0, CAT_I, 20), var(1, CAT_J, 20)
    knn = Reduction("kmin_argkmin", composites.sqdist(x20, y20), K=4)  # tl.dot tiles
    x, y, b = var(0, CAT_I, 3), var(1, CAT_J, 3), var(2, CAT_J, 1)
    gauss = Reduction("sum", make("mul", make("exp", make("neg", composites.sqdist(x, y))), b))
    with open(tmp_path / "cases.pkl", "wb") as fh:
        pickle.dump((cases, gauss, knn), fh)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1", LAZYGEOM_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, str(tmp_path / "cases.pkl")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK")
