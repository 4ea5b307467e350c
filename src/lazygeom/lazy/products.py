"""Products with a symbolic matrix K, each one reduction: ``K v`` and ``K^T u``."""

from __future__ import annotations

from typing import Optional

import torch

from .lazytensor import LazyTensor


def as_torch_front(K: LazyTensor) -> LazyTensor:
    """The same formula on the torch front end (reductions then return tensors)."""
    return LazyTensor._new(K._node, K._leaves, K._batch, K._ni, K._nj, K._dtype, K._device)


def kv(K: LazyTensor, v: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """``sum_j K_ij v_j`` for ``v`` of shape ``(*batch, M, E)``: shape ``(*batch, N, E)``."""
    return (K * LazyTensor(v.unsqueeze(-3)))._reduce("sum", -2, backend=backend)


def ktu(K: LazyTensor, u: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    """``sum_i K_ij u_i`` for ``u`` of shape ``(*batch, N, E)``: shape ``(*batch, M, E)``."""
    return (K * LazyTensor(u.unsqueeze(-2)))._reduce("sum", -3, backend=backend)


def check_scalar(K, what: str) -> None:
    if not isinstance(K, LazyTensor):
        raise TypeError(f"{what}: K must be a LazyTensor, got {type(K).__name__}")
    if K.dim != 1:
        raise ValueError(f"{what}: K must be a scalar formula K_ij (vector dimension 1), got shape {K.shape}")
    if K._ni is None or K._nj is None:
        raise ValueError(
            f"{what}: K must depend on both an i-variable and a j-variable, got shape {K.shape} "
            f"(N={'?' if K._ni is None else K._ni}, M={'?' if K._nj is None else K._nj})"
        )


__all__ = ["as_torch_front", "check_scalar", "ktu", "kv"]
