"""The Triton backend's reductions against the reference backend, at small sizes.

Every kind in both directions, scalar and vector formulas, float32 and float64, ties, batch
dimensions, block-sparse ranges, float16/bfloat16 inputs, kNN on tensor-core tiles, gradients and
a double backward. Runs under Triton's interpreter on a CPU (see ``triton_testing``); with a CUDA
device, the compiled kernels, plus the large-size checks at the end (``test_gpu_*``).
"""

from __future__ import annotations

from triton_testing import assert_same, cache_dir, reduce, rel_err, triton_mode  # noqa: F401  (fixtures)

import pytest
import torch

import lazygeom.backends.policy as B
from lazygeom import LazyTensor, Pm, Vi, Vj
from lazygeom.backends import Call, select_backend
from lazygeom.formula import CAT_I, CAT_J, composites, var
from lazygeom.reductions import Reduction


# --- reductions against the reference backend ---------------------------------------------------

KINDS = ["sum", "lse", "lse_w", "ssmw", "min", "max", "argmin", "argmax", "min_argmin", "max_argmax",
         "kmin", "argkmin", "kmin_argkmin"]


def _formula(name, x, y, p):
    if name == "scalar":  # both signs, dimension 1
        return (x - y).sqnorm2() * 0.5 + ((x * p) | y).sin()
    return (x - y).abs() * p + y.cos()  # dimension 3, coordinatewise different minimisers


def _data(rng, dtype, n=37, m=45, d=3, batch=()):
    x = torch.randn(*batch, n, d, generator=rng, dtype=torch.float64).to(dtype)
    y = torch.randn(*batch, m, d, generator=rng, dtype=torch.float64).to(dtype)
    p = torch.rand(d, generator=rng, dtype=torch.float64).to(dtype) + 0.5
    return x, y, p


def _weight(kind, rng, dim, n, m, dtype, E):
    rows = m if dim == 1 else n
    if kind == "lse_w":
        w = torch.rand(rows, E, generator=rng, dtype=torch.float64).to(dtype) + 0.1
    else:
        w = torch.randn(rows, 2 if E == 1 else E, generator=rng, dtype=torch.float64).to(dtype)
    return Vj(w) if dim == 1 else Vi(w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_reductions_match_reference(kind, dtype, rng):
    x, y, p = _data(rng, dtype)
    for dim in (0, 1):
        for name, E in (("scalar", 1), ("vector", 3)):
            F = _formula(name, Vi(x), Vj(y), Pm(p))
            w = _weight(kind, rng, dim, 37, 45, dtype, E) if kind in ("lse_w", "ssmw") else None
            ours = reduce(kind, F, dim, "triton", w)
            ref = reduce(kind, F, dim, "reference", w)
            assert_same(ours, ref, dtype)


def test_ssmw_sums_do_not_shadow_formula_constants(rng):
    """The ssmw template named its weighted sums t0, t1..., like the lowering's constants (``t{k}``,
    node k): with E >= 2 a constant numbered below E read a running sum instead of its value (found
    by tests/backends/test_fuzz.py: ``vmax(exp(V0j[3] + 1.5))`` with a weight of dimension 2)."""
    x = torch.randn(9, 3, generator=rng, dtype=torch.float64)
    y = torch.randn(23, 3, generator=rng, dtype=torch.float64)
    w = torch.randn(23, 3, generator=rng, dtype=torch.float64)
    y_j = Vj(y)
    F = (y_j + y_j) | Vi(x)  # y + y is simplified to 2 * y: the constant 2 is node 0 or 1
    assert "(2 * V" in str(F.formula), F.formula
    for E in (2, 3):
        ours = reduce("ssmw", F, 1, "triton", Vj(w[:, :E]))
        ref = reduce("ssmw", F, 1, "reference", Vj(w[:, :E]))
        assert_same(ours, ref, torch.float64)


def test_logsumexp_special_scores(rng):
    """-inf scores, rows of -inf, nan rows and scores far below the maximum: the reference's values."""
    inf, nan = float("inf"), float("nan")
    b = torch.cat([torch.tensor([-inf, -1000.0, -90.0, 0.0, -745.0]), torch.randn(40, generator=rng) * 30])
    a = torch.tensor([0.0, 5.0, -200.0, -inf, nan, 1e3])
    F = Vi(a[:, None]) + Vj(b[:, None])
    ours = F.logsumexp(dim=1, backend="triton")[:, 0]
    ref = F.logsumexp(dim=1, backend="reference")[:, 0]
    assert torch.equal(torch.isnan(ours), torch.isnan(ref)) and torch.isnan(ref[4]) and ours[3] == -inf
    fin = torch.isfinite(ref)
    assert ((ours - ref).abs() / ref.abs().clamp(min=1))[fin].max() <= 1e-6


def test_ties_keep_the_first_index(rng):
    """Integer data: many exact ties, within and across tiles; first index wins everywhere."""
    x = torch.randint(0, 3, (29, 1), generator=rng).double()
    y = torch.randint(0, 3, (53, 1), generator=rng).double()
    F = (Vi(x) - Vj(y)).abs()
    for kind in ("min_argmin", "max_argmax", "kmin_argkmin"):
        assert_same(reduce(kind, F, 1, "triton", K=7), reduce(kind, F, 1, "reference", K=7), torch.float64)
    # as many neighbours as columns: the whole row, sorted
    small = (Vi(x) - Vj(y[:5])).abs()
    assert_same(small.Kmin_argKmin(5, dim=1, backend="triton"), small.Kmin_argKmin(5, dim=1, backend="reference"),
                torch.float64)


def test_tiny_and_wide_sizes(rng):
    for n, m in ((1, 1), (1, 17), (33, 1), (16, 16), (64, 70)):
        x, y, p = _data(rng, torch.float64, n, m)
        F = _formula("scalar", Vi(x), Vj(y), Pm(p))
        for kind in ("sum", "lse", "kmin_argkmin"):
            K = min(2, m)
            assert_same(reduce(kind, F, 1, "triton", K=K), reduce(kind, F, 1, "reference", K=K), torch.float64)


def test_wide_vectors_are_reloaded_per_tile(rng):
    """D above kernel.HOIST_I_MAX: i-variables reloaded in the loop (no hoisting)."""
    x, y, p = _data(rng, torch.float64, 21, 30, d=20)
    F = (-Vi(x).sqdist(Vj(y)) / 20).exp() * Vj(y)
    assert_same(F.sum(dim=1, backend="triton"), F.sum(dim=1, backend="reference"), torch.float64)
    G = (Vi(x) - Vj(y)).abs().sum()  # an L1 distance: no tl.dot tiles for this one
    assert_same(G.Kmin_argKmin(4, dim=1, backend="triton"), G.Kmin_argKmin(4, dim=1, backend="reference"),
                torch.float64)


@pytest.mark.parametrize("bx,by", [((2,), (2,)), ((2,), (1,)), ((1,), (3,)), ((2, 1), (1, 3))],
                         ids=["B", "B_vs_1", "1_vs_B", "2d_bcast"])
def test_batch_dims(bx, by, rng):
    x = torch.randn(*bx, 19, 1, 3, generator=rng, dtype=torch.float64)
    y = torch.randn(*by, 1, 23, 3, generator=rng, dtype=torch.float64)
    b = torch.randn(*by, 1, 23, 2, generator=rng, dtype=torch.float64)
    nb = len(bx)
    X, Y, Bj = LazyTensor(x), LazyTensor(y), LazyTensor(b)
    D2 = X.sqdist(Y)
    for kind, F, w in (("sum", (-D2).exp() * Bj, None), ("lse", -D2, None), ("ssmw", -D2, Bj),
                       ("min_argmin", D2, None), ("kmin_argkmin", D2, None)):
        for over in (1,) if w is not None else (0, 1):
            ours = reduce(kind, F, nb + over, "triton", w)
            ref = reduce(kind, F, nb + over, "reference", w)
            assert_same(ours, ref, torch.float64)


@pytest.mark.parametrize("D", [20, 64])
def test_knn_on_dot_tiles_is_exact(D, rng):
    """K-min / min of |x - y|^2 at D >= 16 go through tl.dot tiles (the expansion
    |x|^2 + |y|^2 - 2<x, y>) and an exact re-ranking: values and indices as the reference, also
    for data far from the origin (centred first), in both directions, float32 and float64."""
    from lazygeom.backends.triton import dot

    for dtype in (torch.float32, torch.float64):
        x = (torch.randn(37, D, generator=rng, dtype=torch.float64) + 100).to(dtype)
        y = (torch.randn(45, D, generator=rng, dtype=torch.float64) + 100).to(dtype)
        F = Vi(x).sqdist(Vj(y))
        sq = composites.sqdist(var(0, CAT_I, D), var(1, CAT_J, D))
        assert dot.match_knn(Call(Reduction("kmin_argkmin", sq, K=2), (CAT_I, CAT_J), 37, 45), (D, D))
        for kind, dim in (("kmin_argkmin", 1), ("min_argmin", 0)):
            assert_same(reduce(kind, F, dim, "triton", K=2), reduce(kind, F, dim, "reference", K=2), dtype)
    ranges = _clustered(rng, 40, 30)[2]
    x, y = torch.randn(40, D, generator=rng), torch.randn(30, D, generator=rng)
    F = Vi(x).sqdist(Vj(y))
    assert_same(F.Kmin_argKmin(3, dim=1, ranges=ranges, backend="triton"),
                F.Kmin_argKmin(3, dim=1, ranges=ranges, backend="reference"), torch.float32)
    vals, _ = F.Kmin_argKmin(3, dim=1, ranges=ranges, backend="triton")
    assert torch.isinf(vals).any()  # rows with fewer than K neighbours keep +inf (index 0)


# --- block-sparse ranges ------------------------------------------------------------------------


def _clustered(rng, n, m):
    from lazygeom.cluster import cluster_ranges_centroids, from_matrix, grid_cluster, sort_clusters

    x = torch.rand(n, 2, generator=rng, dtype=torch.float64)
    y = torch.rand(m, 2, generator=rng, dtype=torch.float64)
    x, _ = sort_clusters(x, grid_cluster(x, 0.3))
    y, _ = sort_clusters(y, grid_cluster(y, 0.3))
    rx, cx, _ = cluster_ranges_centroids(x, grid_cluster(x, 0.3))
    ry, cy, _ = cluster_ranges_centroids(y, grid_cluster(y, 0.3))
    keep = ((cx[:, None] - cy[None]) ** 2).sum(-1) < 0.4**2
    keep[0] = False  # an i-cluster with no neighbour: its rows reduce over nothing
    keep[:, 1] = False  # and a j-cluster that no i-cluster sees
    return x, y, from_matrix(rx, ry, keep)


def test_ranges(rng):
    x, y, ranges = _clustered(rng, 60, 50)
    X, Y = Vi(x), Vj(y)
    D2 = X.sqdist(Y)
    for dim in (0, 1):
        b = Vj(torch.randn(50, 2, generator=rng, dtype=torch.float64)) if dim == 1 else \
            Vi(torch.randn(60, 2, generator=rng, dtype=torch.float64))
        for kind, F, w in (("sum", (-4 * D2).exp() * b, None), ("lse", -D2, None), ("ssmw", -D2, b),
                           ("min_argmin", D2, None), ("argmax", D2, None), ("kmin_argkmin", D2, None)):
            ours = reduce(kind, F, dim, "triton", w, ranges=ranges)
            ref = reduce(kind, F, dim, "reference", w, ranges=ranges)
            assert_same(ours, ref, torch.float64)
    # rows with no neighbour (i-cluster 0) hold the empty reductions' values
    lse = (-D2).logsumexp(dim=1, ranges=ranges, backend="triton")
    assert torch.isinf(lse).any()


def test_ranges_with_rows_outside_every_cluster(rng):
    """Rows in no i-range are never visited by a program: the host fills them beforehand."""
    x = torch.randn(40, 2, generator=rng, dtype=torch.float64)
    y = torch.randn(30, 2, generator=rng, dtype=torch.float64)
    ri = torch.tensor([[3, 20], [25, 37]])
    rj = torch.tensor([[0, 12], [12, 30]])
    from lazygeom.cluster import from_matrix

    ranges = from_matrix(ri, rj, torch.tensor([[True, False], [True, True]]))
    D2 = Vi(x).sqdist(Vj(y))
    for kind in ("sum", "lse", "ssmw", "min_argmin", "kmin_argkmin"):
        w = Vj(torch.randn(30, 1, generator=rng, dtype=torch.float64)) if kind == "ssmw" else None
        ours = reduce(kind, -D2 if kind in ("lse", "ssmw") else D2, 1, "triton", w, ranges=ranges)
        ref = reduce(kind, -D2 if kind in ("lse", "ssmw") else D2, 1, "reference", w, ranges=ranges)
        assert_same(ours, ref, torch.float64)


# --- half precision inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_inputs_accumulate_in_float32(dtype, rng):
    """Half-precision inputs, float32 tiles and sums, half outputs: within the output's rounding of
    the float32 result computed from the same (rounded) inputs."""
    x, y, _ = _data(rng, torch.float64, 37, 300)
    x, y = x.to(dtype), y.to(dtype)
    b = torch.rand(300, 1, generator=rng, dtype=torch.float64).to(dtype)
    ulp = torch.finfo(dtype).eps
    for kind, F in (("sum", lambda X, Y, Bj: (-X.sqdist(Y)).exp() * Bj), ("lse", lambda X, Y, Bj: -X.sqdist(Y)),
                    ("min_argmin", lambda X, Y, Bj: X.sqdist(Y)), ("kmin_argkmin", lambda X, Y, Bj: X.sqdist(Y))):
        ours = reduce(kind, F(Vi(x), Vj(y), Vj(b)), 1, "triton")
        ref = reduce(kind, F(Vi(x.float()), Vj(y.float()), Vj(b.float())), 1, "reference")
        ours = ours if isinstance(ours, tuple) else (ours,)
        ref = ref if isinstance(ref, tuple) else (ref,)
        assert ours[0].dtype == dtype
        assert rel_err(ours[0], ref[0]) <= ulp
        if len(ours) > 1:  # indices of the float32 computation (no near-ties at this scale)
            assert torch.equal(ours[1], ref[1])


# --- gradients (they run the forward kinds, through genred's backward) ------------------------


def _grads(out, inputs, create_graph=False):
    return torch.autograd.grad(out, inputs, create_graph=create_graph)


def test_gradients(rng):
    x, y, p = _data(rng, torch.float64, 23, 31)
    b = torch.randn(31, 2, generator=rng, dtype=torch.float64)
    for t in (x, y, p, b):
        t.requires_grad_(True)
    cases = {
        "sum": lambda be: ((-Vi(x).sqdist(Vj(y)) * Pm(p[:1])).exp() * Vj(b)).sum(dim=1, backend=be),
        "sum_dim0": lambda be: ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(dim=0, backend=be),
        "lse": lambda be: _formula("scalar", Vi(x), Vj(y), Pm(p)).logsumexp(dim=1, backend=be),
        "lse_w": lambda be: (-Vi(x).sqdist(Vj(y))).logsumexp(dim=1, weight=Vj(b.exp()), backend=be),
        "ssmw": lambda be: (-Vi(x).sqdist(Vj(y))).sumsoftmaxweight(Vj(b), dim=1, backend=be),
        "min": lambda be: _formula("vector", Vi(x), Vj(y), Pm(p)).min(dim=1, backend=be),
        "kmin": lambda be: Vi(x).sqdist(Vj(y)).Kmin(4, dim=0, backend=be),
    }
    for name, fn in cases.items():
        ours, ref = fn("triton"), fn("reference")
        assert_same(ours.detach(), ref.detach(), torch.float64)
        g = torch.randn(ours.shape, generator=rng, dtype=torch.float64)
        inputs = [t for t in (x, y, p, b)]
        go = torch.autograd.grad(ours, inputs, g, allow_unused=True)
        gr = torch.autograd.grad(ref, inputs, g, allow_unused=True)
        for a, r in zip(go, gr):
            assert (a is None) == (r is None), name
            if a is not None:
                assert rel_err(a, r) <= 1e-11, name


def test_double_backward(rng):
    x, y, _ = _data(rng, torch.float64, 17, 26)
    b = torch.randn(26, 1, generator=rng, dtype=torch.float64)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def second(backend):
        gauss = ((-Vi(x).sqdist(Vj(y))).exp() * Vj(b)).sum(dim=1, backend=backend)
        lse = (-Vi(x).sqdist(Vj(y))).logsumexp(dim=1, backend=backend)
        (gx,) = _grads((gauss**2).sum() + lse.sum(), [x], create_graph=True)
        return _grads((gx**2).sum(), [x, y])

    for a, r in zip(second("triton"), second("reference")):
        assert rel_err(a, r) <= 1e-11


# --- on a GPU -----------------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_gpu
def test_gpu_large_sizes_match_reference(monkeypatch):
    """Default tiles, sizes that span many programs and tiles, float32, against the reference
    backend (float64 accumulation) on the same GPU."""
    monkeypatch.setattr(B._TRITON, "block_i", None)
    monkeypatch.setattr(B._TRITON, "block_j", None)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(20_000, 3, device="cuda", generator=g)
    y = torch.randn(30_000, 3, device="cuda", generator=g)
    b = torch.randn(30_000, 1, device="cuda", generator=g)
    D2 = Vi(x).sqdist(Vj(y))
    for kind, F in (("sum", (-D2 * 4).exp() * Vj(b)), ("lse", -D2 * 4), ("min_argmin", D2)):
        ours, ref = reduce(kind, F, 1, "triton"), reduce(kind, F, 1, "reference")
        ours, ref = (ours if isinstance(ours, tuple) else (ours,)), (ref if isinstance(ref, tuple) else (ref,))
        assert rel_err(ours[0], ref[0]) <= 1e-5, kind
    xs, ys = torch.randn(4_000, 64, device="cuda", generator=g), torch.randn(5_000, 64, device="cuda", generator=g)
    F = Vi(xs).sqdist(Vj(ys))
    (v, i), (rv, ri) = F.Kmin_argKmin(10, dim=1, backend="triton"), F.Kmin_argKmin(10, dim=1, backend="reference")
    assert rel_err(v, rv) <= 1e-5
    assert (i == ri).float().mean() > 0.999  # float32 near-ties may swap neighbours
    assert_same(reduce("sum", (-D2).exp(), 0, "triton").double(), reduce("sum", (-D2).exp(), 0, "reference").double(),
                torch.float32)


@needs_gpu
def test_gpu_auto_picks_triton_for_cuda_tensors():
    x = torch.randn(10, 3, device="cuda")
    call = Call(Reduction("sum", var(0, CAT_I, 3)), (CAT_I,), 10, 4)
    assert select_backend("auto", call, [x]).name == "triton"
    out = (Vi(x).sqdist(Vj(x))).sum(dim=1)
    assert out.device.type == "cuda"
