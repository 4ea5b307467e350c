"""lazygeom.linalg: conjugate-gradient solve (values, gradients) and the SciPy LinearOperator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lazygeom
import lazygeom.numpy as lgn
from lazygeom import Pm, Vi, Vj
from lazygeom.linalg import ConvergenceWarning, aslinearoperator, solve

F64 = torch.float64


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _gauss(x, y=None, s=1.0):
    """The lazy Gaussian kernel exp(-|x_i - y_j|^2 / s) (torch front end)."""
    y = x if y is None else y
    return (-Vi(x).sqdist(Vj(y)) / s).exp()


def _dense_gauss(x, y=None, s=1.0):
    y = x if y is None else y
    return (-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / s).exp()


def _dense_solve(x, b, alpha, s=1.0):
    N = x.shape[0]
    A = alpha * torch.eye(N, dtype=x.dtype) + _dense_gauss(x, s=s)
    return torch.linalg.solve(A, b if b.ndim == 2 else b[:, None]).reshape(b.shape)


def _points(N=60, D=2, dtype=F64, requires_grad=False):
    return torch.randn(N, D, dtype=dtype).mul(1.5).requires_grad_(requires_grad)


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bshape", [(60,), (60, 1), (60, 4)])
@pytest.mark.parametrize("alpha", [1e-2, 0.7])
def test_solve_matches_dense(bshape, alpha):
    x = _points()
    b = torch.randn(*bshape, dtype=F64)
    a = solve(_gauss(x), b, alpha=alpha, eps=1e-12)
    assert isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == F64
    ref = _dense_solve(x, b, alpha)
    assert _rel(a, ref) < 1e-8
    # the method form (pykeops) gives the same
    assert _rel(_gauss(x).solve(b, alpha=alpha, eps=1e-12), ref) < 1e-8


def test_solve_with_vi_rhs():
    x = _points()
    b = torch.randn(60, 3, dtype=F64)
    a = _gauss(x).solve(Vi(b), alpha=0.1, eps=1e-12)
    assert a.shape == (60, 3)
    assert _rel(a, _dense_solve(x, b, 0.1)) < 1e-8
    b1 = torch.randn(60, dtype=F64)
    a1 = _gauss(x).solve(Vi(b1), alpha=0.1, eps=1e-12)  # pykeops: Vi of a vector is (N, 1)
    assert a1.shape == (60, 1)
    assert _rel(a1[:, 0], _dense_solve(x, b1, 0.1)) < 1e-8
    with pytest.raises(ValueError, match="i-variable"):
        _gauss(x).solve(Vj(b), alpha=0.1)
    with pytest.raises(ValueError, match="i-variable"):
        _gauss(x).solve(2 * Vi(b), alpha=0.1)


def test_solve_float32():
    x = _points(dtype=torch.float32)
    b = torch.randn(60, 2)
    a = solve(_gauss(x), b, alpha=1.0, eps=1e-6)
    assert a.dtype == torch.float32 and a.shape == b.shape
    ref = _dense_solve(x.double(), b.double(), 1.0)
    assert _rel(a, ref) < 1e-4


def test_tolerance_is_relative_per_column():
    """Columns of very different scales each reach |r| <= eps |b| (an absolute or joint test would not)."""
    x = _points()
    b = torch.randn(60, 3, dtype=F64) * torch.tensor([1e6, 1.0, 1e-6], dtype=F64)
    alpha, eps = 1e-3, 1e-5
    a = solve(_gauss(x), b, alpha=alpha, eps=eps)
    A = alpha * torch.eye(60, dtype=F64) + _dense_gauss(x)
    res = (b - A @ a).norm(dim=0)
    assert torch.all(res <= eps * b.norm(dim=0) * (1 + 1e-6)), res / b.norm(dim=0)
    # but not much more than needed: the smallest column was actually solved (not stopped at 0)
    assert _rel(a[:, 2], _dense_solve(x, b[:, 2], alpha)) < 1e-2


def test_zero_column_and_zero_rhs():
    x = _points()
    b = torch.randn(60, 2, dtype=F64)
    b[:, 1] = 0
    a = solve(_gauss(x), b, alpha=0.1, eps=1e-12)
    assert torch.isfinite(a).all()
    assert torch.all(a[:, 1] == 0)
    assert _rel(a[:, 0], _dense_solve(x, b[:, 0], 0.1)) < 1e-8
    assert torch.all(solve(_gauss(x), torch.zeros(60, dtype=F64), alpha=0.1) == 0)


def test_batched_kernel():
    B, N, D = 3, 40, 2
    x = torch.randn(B, N, D, dtype=F64)
    K = (-lazygeom.LazyTensor(x[:, :, None, :]).sqdist(lazygeom.LazyTensor(x[:, None, :, :]))).exp()
    b = torch.randn(B, N, 2, dtype=F64)
    a = K.solve(b, alpha=0.2, eps=1e-12)
    assert a.shape == (B, N, 2)
    A = 0.2 * torch.eye(N, dtype=F64) + (-((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1)).exp()
    assert _rel(a, torch.linalg.solve(A, b)) < 1e-8


def test_maxiter_warns():
    x = _points()
    b = torch.randn(60, 2, dtype=F64)
    with pytest.warns(ConvergenceWarning, match="maxiter=2"):
        solve(_gauss(x), b, alpha=1e-6, eps=1e-12, maxiter=2)


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bshape", [(50,), (50, 3)])
def test_grad_wrt_b(bshape):
    x = _points(50)
    b = torch.randn(*bshape, dtype=F64, requires_grad=True)
    w = torch.randn(*bshape, dtype=F64)
    a = solve(_gauss(x), b, alpha=0.05, eps=1e-12)
    (g,) = torch.autograd.grad((a * w).sum(), b)
    (g_ref,) = torch.autograd.grad((_dense_solve(x, b, 0.05) * w).sum(), b)
    assert _rel(g, g_ref) < 1e-8


def test_grad_wrt_points_and_scale():
    x = _points(50, requires_grad=True)
    s = torch.tensor([0.8], dtype=F64, requires_grad=True)
    b = torch.randn(50, 2, dtype=F64, requires_grad=True)
    w = torch.randn(50, 2, dtype=F64)
    K = (-Vi(x).sqdist(Vj(x)) / Pm(s)).exp()
    a = K.solve(b, alpha=0.1, eps=1e-12)
    grads = torch.autograd.grad((a * w).sum(), [x, s, b])
    A = 0.1 * torch.eye(50, dtype=F64) + _dense_gauss(x, s=s)
    grads_ref = torch.autograd.grad((torch.linalg.solve(A, b) * w).sum(), [x, s, b])
    for g, g_ref in zip(grads, grads_ref):
        assert g.shape == g_ref.shape
        assert _rel(g, g_ref) < 1e-7


def test_grad_wrt_points_in_raw_layout():
    """Leaves that are views ((N, 1, D) and (1, N, D) of one tensor) route gradients to it."""
    x = _points(40, requires_grad=True)
    b = torch.randn(40, dtype=F64)
    K = (-lazygeom.LazyTensor(x[:, None, :]).sqdist(lazygeom.LazyTensor(x[None, :, :]))).exp()
    (g,) = torch.autograd.grad(solve(K, b, alpha=0.3, eps=1e-12).pow(2).sum(), x)
    (g_ref,) = torch.autograd.grad(_dense_solve(x, b, 0.3).pow(2).sum(), x)
    assert _rel(g, g_ref) < 1e-7


def test_gradcheck():
    x = _points(8, requires_grad=True)
    b = torch.randn(8, 2, dtype=F64, requires_grad=True)
    torch.autograd.gradcheck(lambda x, b: solve(_gauss(x), b, alpha=0.5, eps=1e-13), (x, b))
    # second order with respect to b (the backward pass is itself a differentiable solve)
    xd = x.detach()
    torch.autograd.gradgradcheck(lambda b: solve(_gauss(xd), b, alpha=0.5, eps=1e-13), (b,))


# --- NumPy front end ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("E", [None, 3])
def test_numpy_solve(dtype, E):
    rng = np.random.default_rng()
    x = rng.standard_normal((50, 2)).astype(dtype)
    b = rng.standard_normal((50,) if E is None else (50, E)).astype(dtype)
    K = (-lgn.Vi(x).sqdist(lgn.Vj(x))).exp()
    a = K.solve(b, alpha=0.5, eps=1e-12 if dtype == np.float64 else 1e-6)
    assert isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == b.shape
    ref = _dense_solve(torch.from_numpy(x).double(), torch.from_numpy(b).double(), 0.5)
    assert _rel(torch.from_numpy(a), ref) < (1e-9 if dtype == np.float64 else 1e-4)
    a2 = K.solve(lgn.Vi(b), alpha=0.5, eps=1e-12 if dtype == np.float64 else 1e-6)
    assert isinstance(a2, np.ndarray) and a2.shape == (50, E or 1)


# --- errors -------------------------------------------------------------------------------------


def test_solve_errors():
    x, y = _points(30), _points(20)
    b = torch.randn(30, dtype=F64)
    with pytest.raises(ValueError, match="square"):
        solve(_gauss(x, y), b)
    with pytest.raises(ValueError, match="scalar"):
        solve(Vi(x) - Vj(x), b)
    with pytest.raises(ValueError, match="j-variable"):
        solve(Vi(x).sqnorm2(), b)
    with pytest.raises(ValueError, match="N=30"):
        solve(_gauss(x), torch.randn(29, dtype=F64))
    with pytest.raises(TypeError, match="dtype"):
        solve(_gauss(x), b.float())
    with pytest.raises(TypeError, match="torch.Tensor"):
        solve(_gauss(x), b.numpy())
    with pytest.raises(TypeError, match="cannot mix"):
        solve(_gauss(x), lgn.Vi(b.numpy()))
    with pytest.raises(TypeError, match="unexpected"):
        solve(_gauss(x), b, alhpa=1.0)
    with pytest.raises(ValueError, match="alpha"):
        solve(_gauss(x), b, alpha=-1.0)


# --- SciPy LinearOperator -----------------------------------------------------------------------


@pytest.mark.parametrize("front", ["torch", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_aslinearoperator_products(front, dtype):
    pytest.importorskip("scipy")
    rng = np.random.default_rng()
    x = rng.standard_normal((45, 3)).astype(dtype)
    y = rng.standard_normal((31, 3)).astype(dtype)
    if front == "numpy":
        K = (-lgn.Vi(x).sqdist(lgn.Vj(y))).exp()
    else:
        K = (-Vi(torch.from_numpy(x)).sqdist(Vj(torch.from_numpy(y)))).exp()
    Kd = np.exp(-((x.astype(np.float64)[:, None] - y.astype(np.float64)[None]) ** 2).sum(-1))
    op = aslinearoperator(K)
    assert op.shape == (45, 31) and op.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    v, V = rng.standard_normal(31), rng.standard_normal((31, 4))
    u, U = rng.standard_normal(45), rng.standard_normal((45, 2))
    for out, ref in [(op.matvec(v), Kd @ v), (op @ V, Kd @ V), (op.rmatvec(u), Kd.T @ u),
                     (op.H @ U, Kd.T @ U), (op.matvec(v[:, None]), (Kd @ v)[:, None])]:
        assert isinstance(out, np.ndarray) and out.shape == ref.shape
        assert _rel(out, ref) < tol


def test_aslinearoperator_with_scipy_cg():
    sla = pytest.importorskip("scipy.sparse.linalg")
    x = _points(70)
    b = torch.randn(70, dtype=F64)
    op = aslinearoperator(_gauss(x))
    A = op + 0.5 * sla.aslinearoperator(np.eye(70))
    a, info = sla.cg(A, b.numpy(), rtol=1e-12, atol=0.0)
    assert info == 0
    assert _rel(torch.from_numpy(a), _dense_solve(x, b, 0.5)) < 1e-8


def test_aslinearoperator_errors():
    pytest.importorskip("scipy")
    x = _points(10)
    with pytest.raises(ValueError, match="scalar"):
        aslinearoperator(Vi(x) - Vj(x))
    with pytest.raises(ValueError, match="j-variable"):
        aslinearoperator(Vi(x).sqnorm2())
    xb = torch.randn(2, 10, 1, 2, dtype=F64)
    with pytest.raises(ValueError, match="batch"):
        aslinearoperator(lazygeom.LazyTensor(xb).sqdist(lazygeom.LazyTensor(xb.transpose(1, 2))))


def test_second_order_through_K_warns():
    """Gradients w.r.t. K's tensors are first-order: create_graph=True says so instead of failing silently."""
    x = _points(20, requires_grad=True)
    b = torch.randn(20, dtype=F64)
    a = solve(_gauss(x), b, alpha=0.5, eps=1e-12)
    with pytest.warns(RuntimeWarning, match="first-order"):
        (g,) = torch.autograd.grad(a.pow(2).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad(_dense_solve(x, b, 0.5).pow(2).sum(), x)
    assert _rel(g, g_ref) < 1e-7
