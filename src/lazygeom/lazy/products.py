"""Products with a symbolic matrix K, each one reduction: ``K v`` and ``K^T u``."""

from __future__ import annotations

from typing import Optional

import torch

from .lazytensor import LazyTensor


def kv(K: LazyTensor, v: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """``sum_j K_ij v_j`` for ``v`` of shape ``(*batch, M, E)``: shape ``(*batch, N, E)``."""
    return (K * LazyTensor(v.unsqueeze(-3)))._reduce("sum", -2, backend=backend)


def ktu(K: LazyTensor, u: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """``sum_i K_ij u_i`` for ``u`` of shape ``(*batch, N, E)``: shape ``(*batch, M, E)``."""
    return (K * LazyTensor(u.unsqueeze(-2)))._reduce("sum", -3, backend=backend)


def check_scalar(K: object, what: str) -> None:
    """Check that K is a scalar LazyTensor ``K_ij`` with both an i- and a j-variable.

    Args:
        K: the object to check.
        what: the caller's name, for the error messages.

    Raises:
        TypeError: if K is not a LazyTensor.
        ValueError: if K is not scalar or lacks an i- or j-variable.
    """
    if not isinstance(K, LazyTensor):
        raise TypeError(f"{what}: K must be a LazyTensor, got {type(K).__name__}")
    if K.dim != 1:
        raise ValueError(f"{what}: K must be a scalar formula K_ij (vector dimension 1), got shape {K.shape}")
    if K.ni is None or K.nj is None:
        raise ValueError(
            f"{what}: K must depend on both an i-variable and a j-variable, got shape {K.shape} "
            f"(N={'?' if K.ni is None else K.ni}, M={'?' if K.nj is None else K.nj})"
        )


__all__ = ["check_scalar", "ktu", "kv"]
