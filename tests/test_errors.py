"""Errors are specific and early: raised when the formula is built (or, for a reduction argument,
at the reduction call), with a message naming both shapes / dtypes or the offending argument."""

from __future__ import annotations

import re

import pytest
import torch

from lazygeom import LazyTensor, Pm, Vi, Vj

F64 = torch.float64


def _x(*shape, dtype=F64):
    return torch.randn(*shape, dtype=dtype)


# --- at formula build time -------------------------------------------------------------------


def test_incompatible_vector_dims():
    x, y = LazyTensor(_x(5, 1, 3)), LazyTensor(_x(1, 7, 4))
    with pytest.raises(ValueError, match=r"(?s)3.*4.*\(5, 1, 3\).*\(1, 7, 4\)"):
        x - y
    with pytest.raises(ValueError, match=r"(?s)different dimensions 3 and 2.*\(5, 1, 3\).*\(1, 7, 2\)"):
        x | LazyTensor(_x(1, 7, 2))
    with pytest.raises(ValueError, match=r"(?s)weights of dimension 4.*dimension 3"):
        x.weightedsqnorm(Pm(_x(4)))
    with pytest.raises(ValueError, match=r"(?s)matvecmult.*3.*2"):
        x.matvecmult(LazyTensor(_x(1, 7, 2)))


def test_incompatible_batch_dims():
    x, y = LazyTensor(_x(2, 5, 1, 3)), LazyTensor(_x(3, 1, 7, 3))
    with pytest.raises(ValueError, match=r"(?s)batch.*\(2,\).*\(3,\).*\(2, 5, 1, 3\).*\(3, 1, 7, 3\)"):
        x * y


def test_mismatched_N_between_i_variables():
    with pytest.raises(ValueError, match=r"(?s)i-indices.*5 vs 6.*\(5, 1, 3\).*\(6, 1, 3\)"):
        Vi(_x(5, 3)) + Vi(_x(6, 3))


def test_mismatched_M_between_j_variables():
    with pytest.raises(ValueError, match=r"(?s)j-indices.*7 vs 8.*\(1, 7, 3\).*\(1, 8, 3\)"):
        Vj(_x(7, 3)) + Vj(_x(8, 3))


def test_mismatched_dtypes():
    x, y = Vi(_x(5, 3, dtype=torch.float32)), Vj(_x(7, 3))
    with pytest.raises(ValueError, match=r"(?s)dtypes.*float32.*float64.*\(5, 1, 3\).*\(1, 7, 3\)"):
        x - y
    with pytest.raises(ValueError, match=r"(?s)dtypes.*float64.*float32"):
        y.sqdist(x)


def test_mismatched_devices():
    """Checked without a GPU: the "meta" device stands for any other device."""
    x, y = Vi(torch.randn(5, 3, device="meta")), Vj(torch.randn(7, 3))
    with pytest.raises(ValueError, match=r"(?s)devices.*meta.*cpu.*\(5, 1, 3\).*\(1, 7, 3\)"):
        x - y


def test_mismatched_dtype_in_weight():
    F = Vi(_x(5, 3)).sqdist(Vj(_x(7, 3)))
    w = Vj(torch.rand(7, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"(?s)dtypes.*float64.*float32"):
        F.logsumexp(dim=1, weight=w)


def test_2d_tensor_without_axis():
    with pytest.raises(ValueError, match=re.escape("(5, 3)") + r".*Vi\(x\) / Vj\(x\)"):
        LazyTensor(_x(5, 3))


def test_bad_layouts_and_axis():
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4, 5)")):
        LazyTensor(_x(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"axis must be 0 \(i\), 1 \(j\) or 2 \(parameter\), got 3"):
        LazyTensor(_x(5, 3), axis=3)
    with pytest.raises(ValueError, match=re.escape("axis=0") + ".*" + re.escape("(3, 3, 3)")):
        LazyTensor(_x(3, 3, 3), axis=0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_tensor(dtype):
    t = torch.ones(5, 1, 3, dtype=dtype)
    with pytest.raises(TypeError, match=f"floating-point.*{re.escape(str(dtype))}"):
        LazyTensor(t)
    with pytest.raises(TypeError, match="floating-point"):
        Vi(torch.ones(5, 3, dtype=dtype))


def test_not_an_array():
    with pytest.raises(TypeError, match="str"):
        LazyTensor("x")
    with pytest.raises(TypeError, match="boolean"):
        LazyTensor(True)


def test_bad_vector_indices():
    x = Vi(_x(5, 3))
    with pytest.raises(IndexError, match="index 3 out of range for vector dimension 3"):
        x[..., 3]
    with pytest.raises(IndexError, match="index -4 out of range"):
        x[-4]
    with pytest.raises(IndexError, match="slice"):
        x[..., 2:1]
    with pytest.raises(IndexError, match="vector dimension only"):
        x[0, 1]
    with pytest.raises(ValueError, match=r"extract \[2:4\] from a vector of dimension 3"):
        x.extract(2, 2)


def test_truth_value():
    with pytest.raises(TypeError, match="truth value"):
        if Vi(_x(5, 3)):
            pass


# --- at the reduction call (arguments of the reduction) -------------------------------------


@pytest.fixture
def F():
    return Vi(_x(5, 3)).sqdist(Vj(_x(7, 3)))


@pytest.fixture
def Fb():
    return LazyTensor(_x(2, 5, 1, 3)).sqdist(LazyTensor(_x(2, 1, 7, 3)))


@pytest.mark.parametrize("dim", [0, -4])
def test_reducing_over_a_batch_dim(Fb, dim, backend):
    with pytest.raises(ValueError, match=rf"dim={dim}.*\(2, 5, 7, 1\).*batch dims cannot be reduced"):
        Fb.sum(dim=dim, backend=backend)


@pytest.mark.parametrize("dim", [3, 5, -5])
@pytest.mark.parametrize("kind", ["sum", "logsumexp", "min", "argmin"])
def test_bad_dim_value(F, kind, dim, backend):
    with pytest.raises(ValueError, match=rf"dim={dim}: a LazyTensor of shape \(5, 7, 1\)"):
        getattr(F, kind)(dim=dim, backend=backend)


def test_missing_dim(F):
    with pytest.raises(ValueError, match="needs dim="):
        F.logsumexp()
    with pytest.raises(ValueError, match="needs dim="):
        F.Kmin(2)


@pytest.mark.parametrize("K", [8, 100])
@pytest.mark.parametrize("kind", ["Kmin", "argKmin", "Kmin_argKmin"])
def test_K_larger_than_M(F, kind, K, backend):
    with pytest.raises(ValueError, match=rf"K={K} is larger than the 7 j-indices"):
        getattr(F, kind)(K, dim=1, backend=backend)
    with pytest.raises(ValueError, match=rf"K={K} is larger than the 5 i-indices"):
        getattr(F, kind)(K, dim=0, backend=backend)


@pytest.mark.parametrize("K", [0, -1])
def test_K_not_positive(F, K, backend):
    with pytest.raises(ValueError, match=f"K must be a positive integer, got {K}"):
        F.Kmin(K, dim=1, backend=backend)


def test_K_not_an_integer(F, backend):
    with pytest.raises(TypeError, match="K must be an integer, got 2.5"):
        F.argKmin(2.5, dim=1, backend=backend)


@pytest.mark.parametrize("name", ["foo", "cuda", "Reference"])
def test_unknown_backend_name(F, name):
    with pytest.raises(ValueError, match=rf"unknown backend '{name}'.*reference"):
        F.sum(dim=1, backend=name)


@pytest.mark.parametrize("kind", ["sum", "logsumexp", "min", "argKmin"])
def test_unknown_keyword(F, kind, backend):
    args = (2,) if kind == "argKmin" else ()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['foo'\]"):
        getattr(F, kind)(*args, dim=1, backend=backend, foo=1)


def test_pykeops_tuning_options_are_accepted(F, backend):
    """pykeops options that tune its own kernels are accepted and have no effect."""
    a = F.sum(dim=1, backend=backend)
    b = F.sum(dim=1, backend=backend, use_double_acc=True, sum_scheme="block_sum", enable_chunks=False)
    assert torch.equal(a, b)


def test_vector_min_takes_no_options(F):
    with pytest.raises(TypeError, match=r"takes no options.*\['foo'\]"):
        F.min(foo=1)


def test_no_j_variable_reduced_over_j(backend):
    x = Vi(_x(5, 3))
    with pytest.raises(ValueError, match="no j-variable to reduce over"):
        (x * 2).sum(dim=1, backend=backend)
    with pytest.raises(ValueError, match="no i-variable to reduce over"):
        Vj(_x(7, 3)).exp().logsumexp(dim=0, backend=backend)
    with pytest.raises(ValueError, match="no i-variable, so the output size is unknown"):
        Vj(_x(7, 3)).sum(dim=1, backend=backend)
    with pytest.raises(ValueError, match="no i-variable"):
        (Pm(2.0) * Pm(_x(3))).sum(dim=1, backend=backend)


def test_weight_dimension_mismatch(backend):
    F = Vi(_x(5, 3)) * Vj(_x(7, 3))  # dimension 3
    with pytest.raises(ValueError, match="formula has dimension 3 and the weight dimension 2"):
        F.logsumexp(dim=1, weight=Vj(torch.rand(7, 2, dtype=F64)), backend=backend)
    with pytest.raises(ValueError, match="formula has dimension 3 and the weight dimension 2"):
        F.sumsoftmaxweight(Vj(_x(7, 2)), dim=1, backend=backend)


def test_weight_size_mismatch():
    F = Vi(_x(5, 3)).sqdist(Vj(_x(7, 3)))
    with pytest.raises(ValueError, match=r"(?s)j-indices.*7 vs 9"):
        F.sumsoftmaxweight(Vj(_x(9, 2)), dim=1)


def test_matmul_errors():
    F = Vi(_x(5, 3)).sqdist(Vj(_x(7, 3)))
    with pytest.raises(ValueError, match="scalar formula"):
        (Vi(_x(5, 3)) - Vj(_x(7, 3))) @ _x(7)
    with pytest.raises(ValueError, match=r"(?s)j-indices.*7 vs 8"):
        F @ _x(8, 2)


def test_errors_are_raised_before_any_work(monkeypatch):
    """A bad reduction argument is reported before a backend is called."""
    import lazygeom.lazy.reduce as lr

    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("a backend was called")

    monkeypatch.setattr(lr, "genred", boom)
    F = Vi(_x(5, 3)).sqdist(Vj(_x(7, 3)))
    for bad in (lambda: F.Kmin(9, dim=1), lambda: F.sum(dim=4), lambda: F.sum(dim=1, bar=2)):
        with pytest.raises((ValueError, TypeError)):
            bad()
