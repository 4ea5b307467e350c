"""The NumPy front end (lazygeom.numpy) against dense NumPy, and against the torch front end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lazygeom
import lazygeom.numpy as lgn

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture
def rng():
    return np.random.default_rng()  # fresh data on every run


def _data(rng, dtype, N=37, M=53, D=3, E=2):
    x = rng.standard_normal((N, D)).astype(dtype)
    y = rng.standard_normal((M, D)).astype(dtype)
    b = rng.standard_normal((M, E)).astype(dtype)
    return x, y, b


def _dense_sqdist(x, y):
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    return ((x64[:, None, :] - y64[None, :, :]) ** 2).sum(-1)  # (N, M)


def _check(out, ref, dtype, shape=None):
    assert isinstance(out, np.ndarray), type(out)
    assert out.dtype == dtype, (out.dtype, dtype)
    assert out.shape == (ref.shape if shape is None else shape), (out.shape, ref.shape)
    assert _rel(out, ref) < RTOL[dtype], _rel(out, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_both_axes(rng, dtype):
    x, y, b = _data(rng, dtype)
    K = (-lgn.Vi(x).sqdist(lgn.Vj(y))).exp()
    Kd = np.exp(-_dense_sqdist(x, y))
    _check(K.sum(dim=1), Kd.sum(1)[:, None], dtype)
    _check(K.sum(axis=0), Kd.sum(0)[:, None], dtype)
    _check(K.sum(1), Kd.sum(1)[:, None], dtype)
    # a vector-valued formula
    V = lgn.Vi(x) - lgn.Vj(y)
    ref = (x.astype(np.float64)[:, None, :] - y.astype(np.float64)[None, :, :]).sum(1)
    _check(V.sum(dim=1), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_with_ndarray(rng, dtype):
    x, y, b = _data(rng, dtype)
    K = (-lgn.Vi(x).sqdist(lgn.Vj(y))).exp()
    Kd = np.exp(-_dense_sqdist(x, y))
    _check(K @ b, Kd @ b.astype(np.float64), dtype)
    _check(K @ b[:, 0], Kd @ b[:, 0].astype(np.float64), dtype)
    # a non-contiguous view is accepted
    bt = np.asfortranarray(b)
    _check(K @ bt, Kd @ b.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_and_softmax(rng, dtype):
    x, y, b = _data(rng, dtype)
    S = -lgn.Vi(x).sqdist(lgn.Vj(y))
    Sd = -_dense_sqdist(x, y)
    m = Sd.max(1, keepdims=True)
    lse = (m + np.log(np.exp(Sd - m).sum(1, keepdims=True)))
    _check(S.logsumexp(dim=1), lse, dtype)
    w = np.exp(Sd - lse)
    _check(S.sumsoftmaxweight(lgn.Vj(b), dim=1), w @ b.astype(np.float64), dtype)
    # weighted LSE: log sum_j w_j exp(S_ij), positive weights
    pw = (rng.random(y.shape[0]) + 0.5).astype(dtype)
    ref = np.log((np.exp(Sd) * pw.astype(np.float64)[None, :]).sum(1, keepdims=True))
    _check(S.logsumexp(dim=1, weight=lgn.Vj(pw)), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_min_max_arg(rng, dtype):
    x, y, _ = _data(rng, dtype)
    D = lgn.Vi(x).sqdist(lgn.Vj(y))
    Dd = _dense_sqdist(x, y)
    _check(D.min(dim=1), Dd.min(1)[:, None], dtype)
    _check(D.max(dim=0), Dd.max(0)[:, None], dtype)
    for out, ref in [(D.argmin(dim=1), Dd.argmin(1)), (D.argmax(dim=1), Dd.argmax(1)),
                     (D.argmin(dim=0), Dd.argmin(0))]:
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        np.testing.assert_array_equal(out.reshape(-1), ref)
    vals, idx = D.min_argmin(dim=1)
    _check(vals, Dd.min(1)[:, None], dtype)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx.reshape(-1), Dd.argmin(1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kmin(rng, dtype):
    x, y, _ = _data(rng, dtype)
    K = 4
    D = lgn.Vi(x).sqdist(lgn.Vj(y))
    Dd = _dense_sqdist(x, y)
    order = np.argsort(Dd, axis=1)[:, :K]
    _check(D.Kmin(K, dim=1), np.take_along_axis(Dd, order, 1), dtype)
    idx = D.argKmin(K, dim=1)
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.shape == (x.shape[0], K)
    np.testing.assert_array_equal(idx, order)
    vals, idx2 = D.Kmin_argKmin(K, dim=0)
    order0 = np.argsort(Dd, axis=0)[:K, :].T
    np.testing.assert_array_equal(idx2, order0)
    _check(vals, np.take_along_axis(Dd.T, order0, 1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_shapes_and_values_as_torch_front_end(rng, dtype):
    x, y, b = _data(rng, dtype)
    tx, ty, tb = (torch.from_numpy(a.copy()) for a in (x, y, b))

    def reductions(Vi, Vj, b):
        D = Vi(x if Vi is lgn.Vi else tx).sqdist(Vj(y if Vj is lgn.Vj else ty))
        Kd = (-D).exp()
        return [Kd.sum(dim=1), Kd.sum(dim=0), Kd @ b, D.min(dim=1), D.argKmin(3, dim=1),
                D.Kmin(3, dim=0), (-D).logsumexp(dim=1), *D.min_argmin(dim=0),
                (Vi(x if Vi is lgn.Vi else tx) * Vj(y if Vj is lgn.Vj else ty)).sum(dim=0)]

    outs_np = reductions(lgn.Vi, lgn.Vj, b)
    outs_t = reductions(lazygeom.Vi, lazygeom.Vj, tb)
    for o_np, o_t in zip(outs_np, outs_t):
        assert isinstance(o_np, np.ndarray) and isinstance(o_t, torch.Tensor)
        assert o_np.shape == tuple(o_t.shape)
        assert o_np.dtype == o_t.numpy().dtype
        np.testing.assert_allclose(o_np, o_t.numpy(), rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_parameters_and_batches(rng, dtype):
    x, y, b = _data(rng, dtype)
    s = rng.random(1).astype(dtype) + 0.5
    Dd = _dense_sqdist(x, y)
    ref = (np.exp(-Dd / float(s[0])) @ b.astype(np.float64))
    # raw pykeops layouts (N, 1, D) / (1, M, D), and a parameter from a 1D array
    x_i, y_j, b_j = lgn.LazyTensor(x[:, None, :]), lgn.LazyTensor(y[None, :, :]), lgn.LazyTensor(b[None])
    K = (-((x_i - y_j) ** 2).sum(-1) / lgn.Pm(s)).exp()
    _check((K * b_j).sum(dim=1), ref, dtype)
    # Python and NumPy scalars
    K2 = (-x_i.sqdist(y_j) * np.asarray(1.0 / s[0], dtype=dtype).reshape(1)).exp()
    _check(K2 @ b, ref, dtype)
    K3 = (-x_i.sqdist(y_j) * dtype(1.0 / s[0])).exp()
    _check(K3 @ b, ref, dtype)
    # a batch dimension: (B, N, 1, D) and (B, 1, M, D)
    B = 3
    xb = rng.standard_normal((B, x.shape[0], 1, x.shape[1])).astype(dtype)
    yb = rng.standard_normal((B, 1, y.shape[0], y.shape[1])).astype(dtype)
    Kb = (-lgn.LazyTensor(xb).sqdist(lgn.LazyTensor(yb))).exp()
    refb = np.exp(-((xb.astype(np.float64) - yb.astype(np.float64)) ** 2).sum(-1)).sum(-1, keepdims=True)
    _check(Kb.sum(dim=2), refb, dtype)
    _check(Kb.sum(dim=-2), refb, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_module_level_functions(rng, dtype):
    x, y, _ = _data(rng, dtype)
    D = lgn.Vi(x).sqdist(lgn.Vj(y))
    Dd = _dense_sqdist(x, y)
    _check(lgn.minimum(D, 2.0).sum(dim=1), np.minimum(Dd, 2.0).sum(1)[:, None], dtype)
    _check(lgn.maximum(D, 2.0).sum(dim=1), np.maximum(Dd, 2.0).sum(1)[:, None], dtype)
    _check(lgn.ifelse(D - 3.0, D, -D).sum(dim=1), np.where(Dd - 3.0 >= 0, Dd, -Dd).sum(1)[:, None], dtype)


def test_mixing_front_ends_raises(rng):
    x, y, b = _data(rng, np.float64)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with pytest.raises(TypeError, match="cannot mix"):
        lgn.Vi(x) + lazygeom.Vj(ty)
    with pytest.raises(TypeError, match="cannot mix"):
        lazygeom.Vi(tx) * lgn.Vj(y)
    with pytest.raises(TypeError, match="cannot mix"):
        lgn.minimum(lgn.Vi(x), lazygeom.Vj(ty))
    with pytest.raises(TypeError):
        lgn.LazyTensor(lazygeom.Vi(tx))
    # the torch front end does not take ndarrays
    with pytest.raises(TypeError, match="torch.Tensor"):
        (-lazygeom.Vi(tx).sqdist(lazygeom.Vj(ty))).exp() @ b
    with pytest.raises(TypeError, match="torch.Tensor"):
        lazygeom.Vi(x)


def test_bad_inputs(rng):
    x, y, _ = _data(rng, np.float64)
    with pytest.raises(TypeError, match="floating-point"):
        lgn.Vi(np.arange(6).reshape(3, 2))
    with pytest.raises(ValueError, match="dtypes"):
        lgn.Vi(x) - lgn.Vj(y.astype(np.float32))
    with pytest.raises(ValueError, match="cannot tell"):
        lgn.LazyTensor(x)
