"""Conjugate gradients on ``(alpha Id + K) a = b``, differentiable (w.r.t. b and the tensors inside K)."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Union

import torch

from ..errors import ConvergenceWarning
from ..formula import CAT_I
from ._types import Array
from .lazytensor import LazyTensor
from .leaves import Leaf, as_tensor
from .products import check_scalar, kv
from .reduce import IGNORED_OPTIONS


# --- conjugate gradients ----------------------------------------------------------------------


def _cg(K: LazyTensor, b: torch.Tensor, alpha: float, eps: float, maxiter: int,
        backend: Optional[str]) -> torch.Tensor:
    """Batched CG on ``(alpha Id + K) a = b`` for ``b`` of shape ``(*batch, N, E)``.

    Each column (and batch) has its own step sizes; a column stops moving once its residual
    satisfies ``|r| <= eps |b|``.
    """
    b_norm = b.norm(dim=-2)                                   # (*batch, E)
    tol2 = (eps * b_norm) ** 2
    a = torch.zeros_like(b)
    r = b.clone()
    rr = (r * r).sum(-2)
    active = rr > tol2
    broken = torch.zeros_like(active)
    p = r.clone()
    it = 0
    while bool(active.any()) and it < maxiter:
        Ap = alpha * p + kv(K, p, backend)
        pAp = (p * Ap).sum(-2)
        # p^T A p <= 0: A is not positive definite on this column (or rounding at the noise
        # floor): the column stops where it is and a warning follows.
        broken = broken | (active & ~(pAp > 0))
        active = active & (pAp > 0)
        step = torch.where(active, rr / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(pAp))
        a = a + step.unsqueeze(-2) * p
        r = r - step.unsqueeze(-2) * Ap
        rr_new = (r * r).sum(-2)
        active = active & (rr_new > tol2)
        beta = torch.where(active, rr_new / torch.where(active, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + beta.unsqueeze(-2) * p
        rr = rr_new
        it += 1
    failed = active | (broken & (rr > tol2))
    if bool(failed.any()):
        worst = float((rr.sqrt() / b_norm.clamp_min(torch.finfo(b.dtype).tiny))[failed].max())
        why = (f"stopped after maxiter={maxiter} iterations" if bool(active.any()) else
               "broke down (p^T A p <= 0: is K symmetric positive semi-definite? try a larger alpha)")
        warnings.warn(
            f"solve: conjugate gradients {why} with a relative residual of {worst:.3g} > eps={eps:g}",
            ConvergenceWarning,
            stacklevel=4,
        )
    return a


class _SolveFn(torch.autograd.Function):
    """``a = (alpha Id + K)^{-1} b``, differentiable w.r.t. ``b`` and the tensors inside ``K``."""

    @staticmethod
    def forward(ctx, K, uids, opts, b, *tensors):
        a = _cg(K, b, *opts)
        ctx.K, ctx.uids, ctx.opts = K, uids, opts
        ctx.save_for_backward(a, *tensors)
        return a

    @staticmethod
    def backward(ctx, g):
        K, uids, opts = ctx.K, ctx.uids, ctx.opts
        a, *tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad[4:]
        # The operator is symmetric: lambda = A^{-1} g, and dL/db = lambda. Going through the
        # Function again keeps dL/db differentiable (second order w.r.t. b).
        lam = _SolveFn.apply(K, uids, opts, g, *tensors)
        grads = [None] * len(tensors)
        if any(needs):
            # Implicit function theorem: dL/dtheta = -lambda^T (dK/dtheta) a.
            if torch.is_grad_enabled():
                warnings.warn(
                    "solve: gradients w.r.t. the tensors inside K are first-order only; with "
                    "create_graph=True they are returned without a graph",
                    RuntimeWarning,
                    stacklevel=2,
                )
            copies = [t.detach().requires_grad_(True) if need else t.detach()
                      for t, need in zip(tensors, needs)]
            leaves = {uid: leaf if uids.get(uid) is None else Leaf(copies[uids[uid]], leaf.cat, leaf.dim)
                      for uid, leaf in K._leaves.items()}
            K2 = LazyTensor._new(K._node, leaves, K._batch, K._ni, K._nj, K._dtype, K._device)
            wrt = [c for c, need in zip(copies, needs) if need]
            with torch.enable_grad():
                s = (lam.detach() * kv(K2, a.detach(), opts[3])).sum()
                parts = iter(torch.autograd.grad(s, wrt, allow_unused=True))
            for k, need in enumerate(needs):
                if need:
                    part = next(parts)
                    grads[k] = None if part is None else -part
        return (None, None, None, lam, *grads)


# --- public API ---------------------------------------------------------------------------------


def solve(K: LazyTensor, b: Union[LazyTensor, Array], alpha: float = 1e-10, eps: float = 1e-6,
          maxiter: Optional[int] = None, backend: Optional[str] = None, dim: Optional[int] = None,
          axis: Optional[int] = None, **options: Any) -> Array:
    r"""Solve ``(alpha Id + K) a = b`` by conjugate gradients, never forming K.

    .. math::
        \alpha\, a_i + \sum_j K_{ij}\, a_j = b_i, \qquad i = 1, \dots, N.

    K must be a scalar formula of i- and j-variables, square (N = M), symmetric and positive
    semi-definite (for instance a Gaussian kernel ``(-Vi(x).sqdist(Vj(x))).exp()``), so that
    ``alpha Id + K`` is positive definite for ``alpha > 0``. Each product ``K @ p`` is one
    LazyTensor reduction. The columns of b are solved together, each with its own step sizes, and
    column e stops once its residual satisfies the *relative* test

    .. math:: \| b_e - (\alpha\, \mathrm{Id} + K)\, a_e \| \le \varepsilon\, \| b_e \|

    (pykeops uses an absolute test on all columns at once; a relative one does not depend on the
    scale of b). If ``maxiter`` iterations are not enough, a :class:`ConvergenceWarning` is issued.

    The result is differentiable (torch front end) with respect to ``b`` (the backward pass is
    another solve, the operator being symmetric) and, to first order, with respect to the tensors
    inside K, by the implicit function theorem: with ``lambda = (alpha Id + K)^{-1} dL/da``,
    ``dL/dtheta = -lambda^T (dK/dtheta) a``, itself computed with reductions.

    Args:
        K: a scalar LazyTensor ``K_ij`` of shape ``(*batch, N, N, 1)`` (torch or NumPy front end).
        b: the right-hand side, an array ``(N,)``, ``(N, E)`` or ``(*batch, N, E)`` of K's kind
            (torch.Tensor or np.ndarray) and dtype, or an i-variable LazyTensor such as
            ``Vi(b)`` (pykeops' ``K.solve(Vi(b), alpha=...)``).
        alpha: the ridge ``alpha >= 0`` added to the diagonal.
        eps: relative tolerance on each column's residual norm.
        maxiter: maximum number of CG iterations (default ``10 * N``).
        backend: the backend of the reductions (default: the active configuration's).
        dim: accepted for pykeops compatibility; with a symmetric K both reduction axes give the
            same system.
        axis: the same as ``dim``.
        **options: pykeops tuning options, accepted and ignored (see ``IGNORED_OPTIONS``).

    Returns:
        ``a``, with the shape of b (of ``b``'s tensor in backend layout ``(*batch, N, E)`` when b is
        a LazyTensor): a torch.Tensor, or an np.ndarray on the NumPy front end.

    Raises:
        ValueError: if K is not scalar, not square, or ``alpha Id + K`` is found not positive
            definite; if b's shape does not match K.
        TypeError: if b is not an array of K's kind (torch vs NumPy) or has another dtype.

    Reference:
        Hestenes & Stiefel, "Methods of conjugate gradients for solving linear systems", 1952;
        Charlier et al., "Kernel operations on the GPU, with autodiff, without memory overflows",
        JMLR 2021 (the ``KernelSolve`` operation).
    """
    unknown = set(options) - IGNORED_OPTIONS
    if unknown:
        raise TypeError(f"solve: unexpected keyword argument(s) {sorted(unknown)}")
    check_scalar(K, "solve")
    if K._ni != K._nj:
        raise ValueError(f"solve: K must be square (N == M), got shape {K.shape}")
    red_axis = axis if dim is None else dim
    if red_axis is not None:
        K._red_axis(red_axis)  # validates; both axes give the same symmetric system
    if alpha < 0:
        raise ValueError(f"solve: alpha must be >= 0, got {alpha}")
    N = K._ni

    if isinstance(b, LazyTensor):
        if b._numpy != K._numpy:
            raise TypeError("cannot mix lazygeom.LazyTensor (torch) and lazygeom.numpy.LazyTensor")
        if b._node.op != "var" or b._node.attrs[1] != CAT_I:
            raise ValueError(f"solve: a LazyTensor right-hand side must be an i-variable such as Vi(b), got {b!r}")
        t = b._leaves[b._node.attrs[0]].value
        squeeze = False
    else:
        t = as_tensor(b, K._numpy)
        squeeze = t.ndim == 1
        if squeeze:
            t = t.unsqueeze(-1)
    if t.ndim < 2 or t.shape[-2] != N:
        raise ValueError(f"solve: b must have shape (N,), (N, E) or (*batch, N, E) with N={N}, "
                         f"got {tuple(b.shape) if not isinstance(b, LazyTensor) else b.shape}; K has shape {K.shape}")
    if t.dtype != K._dtype:
        raise TypeError(f"solve: b has dtype {t.dtype} but K has dtype {K._dtype}")
    if t.device != K._device:
        raise ValueError(f"solve: b is on {t.device} but K is on {K._device}")

    Kt = K.as_torch()
    opts = (float(alpha), float(eps), int(maxiter if maxiter is not None else 10 * N), backend)
    # K's tensors become inputs of the autograd Function (once each); uids maps a leaf to its input.
    position: dict[int, int] = {}
    tensors: list[torch.Tensor] = []
    uids: dict[int, int] = {}
    for uid, leaf in K._leaves.items():
        if isinstance(leaf.value, torch.Tensor):
            uids[uid] = position.setdefault(id(leaf.value), len(tensors))
            if uids[uid] == len(tensors):
                tensors.append(leaf.value)
    if torch.is_grad_enabled() and (t.requires_grad or any(x.requires_grad for x in tensors)):
        a = _SolveFn.apply(Kt, uids, opts, t, *tensors)
    else:
        with torch.no_grad():
            a = _cg(Kt, t, *opts)
    if squeeze:
        a = a.squeeze(-1)
    return K._to_user(a)


__all__ = ["solve"]
