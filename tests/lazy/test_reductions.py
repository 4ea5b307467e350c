"""Every reduction against dense PyTorch: both axes, batch dims (with broadcasting), both float
dtypes, scalar and vector formulas, weights, ties, and the numerics of long sums and large scores."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazygeom import LazyTensor, Vi, Vj
from lazy_helpers import (
    ALL_BATCHES,
    FORMULAS,
    assert_rel,
    check_indices,
    dense_reduce,
    lazy_reduce,
    rand,
    randn,
    scalar_formula,
    small_tiles,
    vector_formula,
)

N, M, D = 7, 13, 3


def _data(batch, dtype, gen):
    bx, by = batch
    x = randn(*bx, N, 1, D, dtype=dtype, gen=gen)
    y = randn(*by, 1, M, D, dtype=dtype, gen=gen)
    p = rand(D, dtype=dtype, gen=gen, low=0.5, high=1.5)
    return x, y, p


def _pair(formula, x, y, p):
    """(lazy F, dense float64 F) for the same data."""
    return formula(x, y, p, True), formula(x.double(), y.double(), p.double(), False)


@pytest.fixture(autouse=True)
def _tiles(monkeypatch, backend, request):
    if request.node.get_closest_marker("default_tiles") is None:
        small_tiles(monkeypatch, backend)


# --- sum, lse, selections --------------------------------------------------------------------

UNWEIGHTED = ["sum", "lse", "min", "max", "argmin", "argmax", "min_argmin", "max_argmax",
              "kmin", "argkmin", "kmin_argkmin"]


@pytest.mark.parametrize("batch", ALL_BATCHES)
@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("fname", list(FORMULAS))
@pytest.mark.parametrize("kind", UNWEIGHTED)
def test_reduction_matches_dense(kind, fname, over, batch, dtype, backend, rng):
    x, y, p = _data(batch, dtype, rng)
    F, Fd = _pair(FORMULAS[fname], x, y, p)
    K = 3
    outs = lazy_reduce(kind, F, over, backend, K=K)
    refs = dense_reduce(kind, Fd, over, K=K)
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        if ref.dtype == torch.int64:
            K_ = K if kind.startswith(("k", "argk")) else None
            check_indices(out, ref, Fd, over, K_, dtype, exact=dtype == torch.float64)
        else:
            assert out.dtype == dtype
            assert_rel(out, ref, dtype)


@pytest.mark.parametrize("batch", ALL_BATCHES)
@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("case", ["scalarF_scalarW", "scalarF_vectorW", "vectorF_vectorW"])
def test_weighted_logsumexp(case, over, batch, dtype, backend, rng):
    x, y, p = _data(batch, dtype, rng)
    fname = "vector" if case.startswith("vector") else "scalar"
    F, Fd = _pair(FORMULAS[fname], x, y, p)
    E = {"scalarF_scalarW": 1, "scalarF_vectorW": 4, "vectorF_vectorW": D}[case]
    # the weight lives on the reduced side: w_j for dim=1, w_i for dim=0
    side = y.shape[:-3] + ((1, M) if over == 1 else (N, 1))
    w = rand(*side, E, dtype=dtype, gen=rng, low=0.2, high=2.0)
    out = lazy_reduce("lse", F, over, backend, w=LazyTensor(w))[0]
    ref = dense_reduce("lse", Fd, over, w=w.double())[0]
    assert_rel(out, ref, dtype)


@pytest.mark.parametrize("batch", ALL_BATCHES)
@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("fname", list(FORMULAS))
def test_sumsoftmaxweight(fname, over, batch, dtype, backend, rng):
    x, y, p = _data(batch, dtype, rng)
    F, Fd = _pair(FORMULAS[fname], x, y, p)
    E = 4 if fname == "scalar" else D
    side = y.shape[:-3] + ((1, M) if over == 1 else (N, 1))
    v = randn(*side, E, dtype=dtype, gen=rng)
    # a weight formula mixing both sides, to check V is a full formula and not only a variable
    V, Vd = LazyTensor(v) * LazyTensor(x).sum(-1).cos(), v.double() * x.double().sum(-1, keepdim=True).cos()
    out = lazy_reduce("ssmw", F, over, backend, w=V)[0]
    ref = dense_reduce("ssmw", Fd, over, w=Vd)[0]
    assert_rel(out, ref, dtype)


@pytest.mark.parametrize("batch", ALL_BATCHES)
@pytest.mark.parametrize("vshape", ["M", "ME", "bME"])
def test_matmul(vshape, batch, dtype, backend, rng):
    x, y, p = _data(batch, dtype, rng)
    bx, by = batch
    Kij = (-LazyTensor(x).sqdist(LazyTensor(y))).exp()
    Kd = torch.exp(-((x.double() - y.double()) ** 2).sum(-1))  # (*b, N, M)
    v = {"M": lambda: randn(M, dtype=dtype, gen=rng), "ME": lambda: randn(M, 2, dtype=dtype, gen=rng),
         "bME": lambda: randn(*by, M, 2, dtype=dtype, gen=rng)}[vshape]()
    out = _matmul(Kij, v, backend)
    vd = v.double()
    ref = (Kd @ vd.unsqueeze(-1)).squeeze(-1) if vshape == "M" else Kd @ vd
    assert_rel(out, ref, dtype)


def _matmul(Kij, v, backend):
    import lazygeom

    with lazygeom.config(backend=backend):  # `@` takes no options: the backend comes from the config
        return Kij @ v


# --- layouts and axis spellings --------------------------------------------------------------


@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
def test_axis_spellings_agree(over, backend, rng):
    x, y, p = _data(((2,), (2,)), torch.float64, rng)
    F = vector_formula(x, y, p, True)
    pos = F.sum(dim=1 + over, backend=backend)
    neg = F.sum(dim=-3 + over, backend=backend)
    ax = F.sum(axis=1 + over, backend=backend)
    assert torch.equal(pos, neg) and torch.equal(pos, ax)


@pytest.mark.parametrize("E", [1, 3])
@pytest.mark.parametrize("K", [1, M])
def test_kmin_extreme_K(K, E, backend, rng):
    x, y, p = _data(((), ()), torch.float64, rng)
    F, Fd = _pair(FORMULAS["scalar" if E == 1 else "vector"], x, y, p)
    v, k = F.Kmin_argKmin(K, dim=1, backend=backend)
    rv, rk = dense_reduce("kmin_argkmin", Fd, 1, K=K)
    assert v.shape == ((N, K) if E == 1 else (N, K, E))
    assert_rel(v, rv)
    assert torch.equal(k, rk)


def test_output_layouts(backend, rng):
    x, y, p = _data(((2,), (2,)), torch.float64, rng)
    S, Vf = scalar_formula(x, y, p, True), vector_formula(x, y, p, True)
    assert S.sum(dim=2, backend=backend).shape == (2, N, 1)
    assert S.min(dim=1, backend=backend).shape == (2, M, 1)
    assert S.argmin(dim=1, backend=backend).shape == (2, M, 1)
    assert S.Kmin(2, dim=2, backend=backend).shape == (2, N, 2)
    assert S.argKmin(2, dim=1, backend=backend).shape == (2, M, 2)
    assert Vf.Kmin(2, dim=2, backend=backend).shape == (2, N, 2, D)
    assert Vf.argmax(dim=2, backend=backend).shape == (2, N, D)


# --- ties: first index wins ------------------------------------------------------------------


def _grid_points(n, gen, dtype):
    """Points with small integer coordinates: exact distances, many exact ties, duplicates."""
    return torch.randint(0, 3, (n, 2), generator=gen).to(dtype)


@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
@pytest.mark.parametrize("kind", ["argmin", "argmax", "min_argmin", "max_argmax", "argkmin", "kmin_argkmin"])
def test_ties_first_index(kind, over, dtype, backend, rng):
    x = _grid_points(9, rng, dtype)
    y = _grid_points(31, rng, dtype)
    y[20:] = y[:11]  # duplicated points
    x[5:] = x[:4]
    for F, Fd in [
        (Vi(x).sqdist(Vj(y)), ((x[:, None] - y[None]) ** 2).sum(-1, keepdim=True)),
        ((Vi(x) - Vj(y)).abs(), (x[:, None] - y[None]).abs()),  # coordinatewise ties
    ]:
        outs = lazy_reduce(kind, F, over, backend, K=4)
        refs = dense_reduce(kind, Fd, over, K=4)
        for out, ref in zip(outs, refs):
            if ref.dtype == torch.int64:
                assert out.dtype == torch.int64
                assert torch.equal(out, ref), f"{kind}: ties must resolve to the first index"
            else:
                assert torch.equal(out, ref)


# --- numerics --------------------------------------------------------------------------------


@pytest.mark.parametrize("over", [0, 1], ids=["dim0", "dim1"])
def test_logsumexp_large_scores(over, dtype, backend, rng):
    x, y = randn(20, 1, 2, dtype=dtype, gen=rng), randn(1, 30, 2, dtype=dtype, gen=rng)
    F = (LazyTensor(x) | LazyTensor(y)) * 1e4  # scores ~ +-1e4: exp overflows in any dtype
    out = F.logsumexp(dim=over, backend=backend)
    Fd = 1e4 * (x.double() * y.double()).sum(-1, keepdim=True)
    ref = torch.logsumexp(Fd, dim=-3 if over == 0 else -2)
    assert torch.isfinite(out).all()
    # float32 scores carry a relative rounding error ~1e-7 * 1e4: compare at that scale
    assert_rel(out, ref, dtype, factor=1.0 if dtype == torch.float64 else 10.0)
    neg = (-F).logsumexp(dim=over, backend=backend)
    assert torch.isfinite(neg).all()


@pytest.mark.parametrize("weighted", [False, True])
def test_logsumexp_all_minus_inf_rows(weighted, dtype, backend, rng):
    x = rand(6, 1, 1, dtype=dtype, gen=rng, low=0.5, high=1.0)
    x[2] = 0.0
    x[4] = 0.0
    y = rand(1, 50, 1, dtype=dtype, gen=rng, low=0.5, high=1.0)
    F = (LazyTensor(x) * LazyTensor(y)).log()  # log(0) = -inf on every j for rows 2 and 4
    w = rand(1, 50, 1, dtype=dtype, gen=rng, low=0.5, high=2.0)
    out = F.logsumexp(dim=1, weight=LazyTensor(w) if weighted else None, backend=backend)
    Fd = torch.log(x.double() * y.double()) + (torch.log(w.double()) if weighted else 0)
    ref = torch.logsumexp(Fd, dim=-2)
    assert not torch.isnan(out).any()
    assert torch.isneginf(out[[2, 4]]).all()
    assert_rel(out, ref, dtype)


def test_sumsoftmaxweight_large_scores(dtype, backend, rng):
    x, y = randn(10, 1, 2, dtype=dtype, gen=rng), randn(1, 40, 2, dtype=dtype, gen=rng)
    v = randn(1, 40, 3, dtype=dtype, gen=rng)
    F = -LazyTensor(x).sqdist(LazyTensor(y)) * 1e3
    out = F.sumsoftmaxweight(LazyTensor(v), dim=1, backend=backend)
    Fd = -1e3 * ((x.double() - y.double()) ** 2).sum(-1, keepdim=True)
    ref = (torch.softmax(Fd, dim=-2) * v.double()).sum(-2)
    assert torch.isfinite(out).all()
    assert_rel(out, ref, dtype, factor=1.0 if dtype == torch.float64 else 100.0)


@pytest.mark.default_tiles
def test_float32_long_sum_accuracy(backend):
    """A float32 Gaussian-kernel sum over 2e5 terms stays within 1e-5 of the float64 result."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 3, generator=g, dtype=torch.float64)
    y = torch.rand(1, 200_000, 3, generator=g, dtype=torch.float64)
    b = torch.rand(1, 200_000, 1, generator=g, dtype=torch.float64)

    def run(dt):
        Kij = (-LazyTensor(x.to(dt)).sqdist(LazyTensor(y.to(dt))) * 2.0).exp()
        return (Kij * LazyTensor(b.to(dt))).sum(dim=1, backend=backend)

    out32, out64 = run(torch.float32), run(torch.float64)
    assert out32.dtype == torch.float32
    err = ((out32.double() - out64) / out64).abs().max()
    assert err < 1e-5, f"float32 relative error {float(err):.2e}"


# --- misc semantics --------------------------------------------------------------------------


def test_same_tensor_used_twice_is_one_argument(backend, rng):
    """The j-variables made from the i-data (K(q_i, q_j)) are a different variable than q_i."""
    q = randn(11, 2, gen=rng)
    Kij = (-Vi(q).sqdist(Vj(q))).exp()
    out = Kij.sum(dim=1, backend=backend)
    ref = torch.exp(-((q[:, None] - q[None]) ** 2).sum(-1)).sum(-1, keepdim=True)
    assert_rel(out, ref)


def test_python_float_parameter_dtype(dtype, backend, rng):
    """A Python float in a formula takes the dtype of the data."""
    x, y = randn(5, 1, 2, dtype=dtype, gen=rng), randn(1, 6, 2, dtype=dtype, gen=rng)
    out = (LazyTensor(x) * 0.1 + LazyTensor(y) * 2.5).sum(-1).sum(dim=1, backend=backend)
    assert out.dtype == dtype
    ref = (0.1 * x.double() + 2.5 * y.double()).sum(-1, keepdim=True).sum(-2)
    assert_rel(out, ref, dtype)


def test_parameter_with_batch(dtype, backend, rng):
    x, y = randn(2, 5, 1, 2, dtype=dtype, gen=rng), randn(2, 1, 6, 2, dtype=dtype, gen=rng)
    s = rand(2, 1, 1, 1, dtype=dtype, gen=rng, low=0.5, high=2.0)  # one scale per batch
    F = (-LazyTensor(x).sqdist(LazyTensor(y)) / LazyTensor(s)).exp()
    out = F.sum(dim=2, backend=backend)
    ref = torch.exp(-((x.double() - y.double()) ** 2).sum(-1, keepdim=True) / s.double()).sum(-2)
    assert_rel(out, ref, dtype)



@pytest.mark.parametrize("kind", ["sum", "lse", "min", "kmin"])
def test_formula_simplified_to_a_constant(kind, dtype, backend, rng):
    """(x_i + y_j) ** 0 simplifies to 1: the result keeps the data's dtype, sizes and batch."""
    x, y = randn(2, N, 1, D, dtype=dtype, gen=rng), randn(1, M, D, dtype=dtype, gen=rng)
    F = (LazyTensor(x) + LazyTensor(y)) ** 0
    (out,) = lazy_reduce(kind, F, 1, backend, K=2)
    Fd = torch.ones(2, N, M, D, dtype=torch.float64)
    (ref,) = dense_reduce(kind, Fd, 1, K=2)
    assert out.dtype == dtype
    assert_rel(out, ref, dtype)


# --- memory: O(N + M), never O(N * M) ----------------------------------------------------------

_MEMORY_SCRIPT = r"""
import resource, sys, torch
from lazygeom import Vi, Vj
backend, n = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(2)
def run(n):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    return (-Vi(x).sqdist(Vj(y))).exp().sum(dim=1, backend=backend)
run(300)  # compile, warm the allocator: one-time costs stay out of the measurement
x = run(50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = run(n)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert out.shape == (n, 1) and torch.isfinite(out).all()
print((after - before) * 1024)  # ru_maxrss is in KiB on Linux
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units are Linux's")
def test_reduction_does_not_allocate_n_by_m(backend):
    """Peak resident memory of a Gaussian-kernel sum grows by far less than one N-by-M matrix."""
    n = 6000 if backend == "reference" else 20000  # the reference backend is slow: fewer pairs
    dense_bytes = n * n * 4  # float32
    res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, backend, str(n)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    growth = int(res.stdout.strip().splitlines()[-1])
    assert growth < min(96 * 2**20, dense_bytes // 4), f"peak RSS grew by {growth / 2**20:.0f} MiB"


# --- invariants (property tests) ---------------------------------------------------------------


# the backend fixture is the same for every example: the health check does not apply
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9), m=st.integers(1, 40))
def test_permutation_of_j_points(backend, seed, n, m):
    """Permuting the j-points leaves sums and LSEs unchanged and permutes the selected indices."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(m, 2, generator=g, dtype=torch.float64)
    perm = torch.randperm(m, generator=g)
    K = min(3, m)

    def reductions(y):
        F = Vi(x).sqdist(Vj(y))
        return (F.sum(dim=1, backend=backend), (-F).logsumexp(dim=1, backend=backend),
                *F.Kmin_argKmin(K, dim=1, backend=backend))

    s1, l1, v1, k1 = reductions(y)
    s2, l2, v2, k2 = reductions(y[perm])
    assert_rel(s2, s1, factor=100.0)
    assert_rel(l2, l1, factor=100.0)
    assert_rel(v2, v1, factor=100.0)
    assert torch.equal(perm[k2], k1)  # distinct random points: no ties

