"""A SciPy ``LinearOperator`` view of a symbolic matrix, for SciPy's iterative solvers and eigensolvers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..lazy.lazytensor import LazyTensor
from ..lazy.products import check_scalar, ktu, kv

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator


def aslinearoperator(K: LazyTensor) -> LinearOperator:
    """A ``scipy.sparse.linalg.LinearOperator`` of shape ``(N, M)`` for a scalar LazyTensor K.

    ``matvec``/``matmat`` compute ``sum_j K_ij v_j`` and ``rmatvec``/``rmatmat``
    ``sum_i K_ij u_i``, each as one reduction: the operator can be handed to SciPy's iterative
    solvers and eigensolvers (``cg``, ``gmres``, ``eigsh``, ``svds``...). Inputs are cast to K's
    dtype; outputs are NumPy arrays. No gradient flows through the operator.

    Args:
        K: a scalar LazyTensor ``K_ij`` of shape ``(N, M, 1)`` (no batch dimensions), on the torch
            or NumPy front end.

    Returns:
        scipy.sparse.linalg.LinearOperator with K's NumPy dtype.

    Raises:
        ImportError: if SciPy is not installed.
        ValueError: if K is not scalar, has batch dimensions, or lacks an i- or j-variable.
    """
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError as err:
        raise ImportError("lazygeom.linalg.aslinearoperator needs SciPy: pip install scipy") from err
    import numpy as np

    check_scalar(K, "aslinearoperator")
    if K.batchdims:
        raise ValueError(f"aslinearoperator: K must have no batch dimensions, got shape {K.shape}")
    Kt = K.as_torch()
    N, M, dtype, device = K.ni, K.nj, K.dtype, K.device
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype

    def product(fn, v):
        v = np.asarray(v)
        t = torch.as_tensor(np.ascontiguousarray(v, dtype=np_dtype), device=device)
        t2 = t.reshape(t.shape[0], -1)
        with torch.no_grad():
            out = fn(Kt, t2, None)
        return out.cpu().numpy().reshape((out.shape[0],) + v.shape[1:])

    return LinearOperator(
        (N, M),
        matvec=lambda v: product(kv, v),
        rmatvec=lambda u: product(ktu, u),
        matmat=lambda V: product(kv, V),
        rmatmat=lambda U: product(ktu, U),
        dtype=np_dtype,
    )


__all__ = ["aslinearoperator"]
