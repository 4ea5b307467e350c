"""Per-range reductions (``per_range=True``): one result per row and listed range, on every backend.

Each result must equal the ordinary reduction of that row over that one range (dense, float64
reference), rows outside every cluster give none, and the results stack row after row.
"""

from __future__ import annotations

import pytest
import torch

from lazygeom import LazyTensor, Vi, Vj
from lazygeom.backends.base import Call, per_range_index, range_offsets
from lazygeom.cluster import from_pairs


def _problem(rng, dtype):
    x = torch.rand(60, 3, generator=rng, dtype=dtype)
    y = torch.rand(80, 3, generator=rng, dtype=dtype)
    b = torch.randn(80, 2, generator=rng, dtype=dtype)
    # rows 25..30 and 55..60 are in no cluster; ranges of lengths 1 to 37, some repeated
    ri = torch.tensor([[0, 10], [10, 25], [30, 55]])
    rj = torch.tensor([[0, 1], [1, 9], [9, 46], [46, 80], [80, 80]])
    rows = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    cols = torch.tensor([0, 2, 3, 1, 1, 3, 4])
    return x, y, b, ri, rj, rows, cols, from_pairs(ri, rj, rows, cols)


def _blocks(ri, rj, rows, cols, n):
    """The (row, [start, end)) of every per-range result, in the documented order."""
    out = []
    for i in range(n):
        c = [k for k in range(len(ri)) if ri[k, 0] <= i < ri[k, 1]]
        if c:
            out += [(i, *rj[J].tolist()) for J in sorted(cols[rows == c[0]].tolist())]
    return out


@pytest.mark.parametrize("kind", ["sum", "lse", "ssmw", "max", "min_argmin", "argkmin"])
def test_each_result_is_the_reduction_over_one_range(backend, rng, dtype, kind):
    x, y, b, ri, rj, rows, cols, ranges = _problem(rng, dtype)
    D = ((x[:, None].double() - y[None].double()) ** 2).sum(-1)
    F = -Vi(x).sqdist(Vj(y)) * 3
    with torch.no_grad():
        if kind == "sum":
            out = (F.exp() * Vj(b)).sum(dim=1, ranges=ranges, per_range=True, backend=backend)
        elif kind == "lse":
            out = F.logsumexp(dim=1, ranges=ranges, per_range=True, backend=backend)
        elif kind == "ssmw":
            out = F.sumsoftmaxweight(Vj(b), dim=1, ranges=ranges, per_range=True, backend=backend)
        elif kind == "max":
            out = F.max(dim=1, ranges=ranges, per_range=True, backend=backend)
        elif kind == "min_argmin":
            out = F.min_argmin(dim=1, ranges=ranges, per_range=True, backend=backend)
        else:
            out = F.argKmin(1, dim=1, ranges=ranges, per_range=True, backend=backend)
    blocks = _blocks(ri, rj, rows, cols, len(x))
    assert len(blocks) == 3 * 10 + 1 * 15 + 3 * 25
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for k, (i, s, e) in enumerate(blocks):
        if e == s:  # an empty range: the empty reduction (test_empty_range_gives_the_empty_reduction)
            continue
        f = -3 * D[i, s:e]
        if kind == "sum":
            want, got = (f.exp()[:, None] * b[s:e].double()).sum(0), out[k]
        elif kind == "lse":
            want, got = torch.logsumexp(f, 0)[None], out[k]
        elif kind == "ssmw":
            want, got = (f.softmax(0)[:, None] * b[s:e].double()).sum(0), out[k]
        elif kind == "max":
            want, got = f.max()[None], out[k]
        elif kind == "min_argmin":
            want, got = f.min()[None], out[0][k]
            assert int(out[1][k]) == s + int(f.argmin())  # indices count from 0 over all of y
        else:
            want, got = None, out[k]
            assert int(got) == s + int(f.argmin())
        if want is not None:
            assert torch.allclose(got.double(), want, rtol=tol, atol=tol), (kind, i, s, e)


def test_empty_range_gives_the_empty_reduction(backend, rng):
    x, y, b, ri, rj, rows, cols, ranges = _problem(rng, torch.float64)
    F = -Vi(x).sqdist(Vj(y))
    blocks = _blocks(ri, rj, rows, cols, len(x))
    empty = torch.tensor([e == s for _, s, e in blocks])
    assert empty.any()
    with torch.no_grad():
        s = (F.exp() * Vj(b)).sum(dim=1, ranges=ranges, per_range=True, backend=backend)
        lse = F.logsumexp(dim=1, ranges=ranges, per_range=True, backend=backend)
        mx = F.max(dim=1, ranges=ranges, per_range=True, backend=backend)
    assert bool((s[empty] == 0).all())
    assert bool((lse[empty] == -float("inf")).all()) and bool((mx[empty] == -float("inf")).all())


def test_over_i_uses_the_transposed_ranges(backend, rng):
    x, y, b, ri, rj, rows, cols, ranges = _problem(rng, torch.float64)
    D = ((x[:, None] - y[None]) ** 2).sum(-1)
    with torch.no_grad():
        out = Vi(x).sqdist(Vj(y)).max(dim=0, ranges=ranges, per_range=True, backend=backend)
    # the transposed problem: rows are y's points, listing the i-ranges of their j-cluster
    blocks = _blocks(rj, ri, cols, rows, len(y))
    assert out.shape == (len(blocks), 1)
    for k, (j, s, e) in enumerate(blocks):
        assert float(out[k]) == pytest.approx(float(D[s:e, j].max()), rel=1e-12)


def test_offsets_and_index_agree():
    x = torch.zeros(1)  # unused: the helpers read the ranges only
    ri = torch.tensor([[0, 2], [3, 6]])
    slices = torch.tensor([2, 3])
    red = torch.tensor([[0, 4], [5, 9], [4, 5]])
    call = Call(None, (), 7, 9, (), (ri, slices, red, red, torch.zeros(3, dtype=torch.int64),
                                       torch.zeros(0, 2, dtype=torch.int64)), True)
    offsets, total = range_offsets(call)
    assert total == 2 * 2 + 3 * 1 and offsets.tolist() == [0, 2, 4, 4, 5, 6, 7]
    rows, entry = per_range_index(ri, slices, 7)
    assert rows.tolist() == [0, 0, 1, 1, 3, 4, 5] and entry.tolist() == [0, 1, 0, 1, 2, 2, 2]
    del x


def test_errors(rng):
    x, y, b, ri, rj, rows, cols, ranges = _problem(rng, torch.float64)
    F = Vi(x).sqdist(Vj(y))
    with pytest.raises(ValueError, match="per_range=True needs ranges"):
        F.max(dim=1, per_range=True)
    xb = LazyTensor(x[None, :, None, :].expand(2, 60, 1, 3).contiguous())
    with pytest.raises(ValueError, match="no batch"):
        xb.sqdist(LazyTensor(y[None, None])).max(dim=2, ranges=ranges, per_range=True)
    xg = x.clone().requires_grad_()
    with pytest.raises(NotImplementedError, match="no gradient"):
        Vi(xg).sqdist(Vj(y)).sum(dim=1, ranges=ranges, per_range=True)


def test_no_cluster_gives_no_result(backend, rng):
    x, y = torch.rand(5, 2, generator=rng, dtype=torch.float64), torch.rand(4, 2, generator=rng, dtype=torch.float64)
    e = torch.zeros(0, 2, dtype=torch.int64)
    ranges = (e, torch.zeros(0, dtype=torch.int64), e, torch.tensor([[0, 4]]), torch.zeros(1, dtype=torch.int64), e)
    with torch.no_grad():
        out = Vi(x).sqdist(Vj(y)).max(dim=1, ranges=ranges, per_range=True, backend=backend)
    assert out.shape == (0, 1)
