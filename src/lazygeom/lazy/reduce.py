"""Reductions of a LazyTensor (pykeops names and conventions), mixed into the class.

Axes follow pykeops: a LazyTensor of shape ``(*batch, N, M, D)`` is reduced over i with
``dim=len(batch)`` (or ``-3``) and over j with ``dim=len(batch)+1`` (or ``-2``); ``dim=-1`` is the
vector dimension (``sum(-1)``, ``min()`` and friends without ``dim`` act on it, not on i or j).
"""

from __future__ import annotations

import operator
from typing import Optional

import torch

from ..settings import get_config
from ..formula import CAT_I, CAT_J, CAT_P, substitute, swap_ij, var, walk_many
from .genred import genred
from ..reductions import SELECTION, Reduction

#: pykeops options that tune its own kernels: accepted for compatibility, with no effect here
#: (lazygeom always accumulates float32 sums blockwise and needs no chunking switches).
IGNORED_OPTIONS = frozenset({"device_id", "use_double_acc", "sum_scheme", "enable_chunks", "dtype_acc",
                             "use_fast_math", "optional_flags", "call", "alias"})


class ReductionsMixin:
    """Reduction methods of :class:`lazygeom.LazyTensor`."""

    # --- axes ----------------------------------------------------------------------------------

    def _is_vector_axis(self, a) -> bool:
        return a is not None and a in (-1, self.ndim - 1)

    def _red_axis(self, a) -> int:
        """0 for a reduction over i (output indexed by j), 1 for a reduction over j."""
        nb = self.nbatchdims
        if a is None:
            raise ValueError(f"this reduction needs dim= ({nb} or -3: over i; {nb + 1} or -2: over j)")
        full = nb + 3
        a2 = a + full if a < 0 else a
        if a2 == nb:
            return 0
        if a2 == nb + 1:
            return 1
        raise ValueError(
            f"dim={a}: a LazyTensor of shape {self.shape} reduces over i (dim={nb} or -3) or over "
            f"j (dim={nb + 1} or -2); batch dims cannot be reduced"
        )

    # --- the one place where reductions are run ------------------------------------------------

    def _reduce(self, kind: str, axis, weight=None, K: int = 1, backend: Optional[str] = None,
                ranges=None, per_range: bool = False, **options):
        """Every reduction goes through here. ``per_range=True`` (a lazygeom extension, with
        ``ranges``, no batch dims, no gradient) returns one result per output row *and* listed
        range instead of one per row, stacked row after row (:class:`lazygeom.backends.Call`)."""
        unknown = set(options) - IGNORED_OPTIONS
        if unknown:
            raise TypeError(f"{kind}: unexpected keyword argument(s) {sorted(unknown)}")
        over = self._red_axis(axis)
        src = self if weight is None else self._combine("reduction", weight, build=lambda a, b: a)
        nodes = [self._node] + ([self._lift(weight)._node] if weight is not None else [])
        dtype = src._dtype or torch.get_default_dtype()
        device = src._device or torch.device("cpu")
        batch = src._batch

        # Canonical variables: numbered by first appearance, one per distinct array.
        mapping, args, cats, seen = {}, [], [], {}
        for n in walk_many(nodes):
            if n.op != "var":
                continue
            leaf = src._leaves[n.attrs[0]]
            ident = (id(leaf.value), leaf.cat) if isinstance(leaf.value, torch.Tensor) else None
            if ident is not None and ident in seen:
                mapping[n.attrs[0]] = var(seen[ident], leaf.cat, leaf.dim)
                continue
            k = len(args)
            if ident is not None:
                seen[ident] = k
            mapping[n.attrs[0]] = var(k, leaf.cat, leaf.dim)
            args.append(_backend_layout(leaf, batch, dtype, device))
            cats.append(leaf.cat)
        if not args:
            # The formula simplified to a constant (e.g. (x_i + y_j) ** 0). Backends read the dtype
            # and device from their arguments: pass them in an unused parameter.
            args.append(torch.zeros((1,) * len(batch) + (1,), dtype=dtype, device=device))
            cats.append(CAT_P)
        formulas = [substitute(f, lambda n: mapping.get(n.attrs[0]) if n.op == "var" else None) for f in nodes]

        ni, nj = src._ni, src._nj
        if over == 0:
            formulas = [swap_ij(f) for f in formulas]
            cats = [{CAT_I: CAT_J, CAT_J: CAT_I}.get(c, c) for c in cats]
            ni, nj = nj, ni
        out_side, red_side = ("j", "i") if over == 0 else ("i", "j")
        if ni is None:
            raise ValueError(f"{kind}: the formula has no {out_side}-variable, so the output size is unknown")
        if nj is None:
            raise ValueError(f"{kind}: the formula has no {red_side}-variable to reduce over")
        try:
            K = operator.index(K)  # ints, NumPy ints; not 2.5, which int() would silently make 2
        except TypeError:
            raise TypeError(f"{kind}: K must be an integer, got {K!r}") from None
        if kind in SELECTION and SELECTION[kind][1] and K > nj:
            raise ValueError(f"{kind}: K={K} is larger than the {nj} {red_side}-indices reduced over")

        if per_range and (ranges is None or batch):
            raise ValueError(f"{kind}: per_range=True needs ranges= and no batch dimensions, got "
                             f"ranges={'None' if ranges is None else 'given'} and batch {tuple(batch)}")
        if ranges is not None:
            ranges = _check_ranges(ranges, kind, batch, src._ni, src._nj, self._numpy)
            if over == 0:  # the transposed problem: rows are the j side
                ranges = ranges[3:] + ranges[:3]
        red = Reduction(kind, formulas[0], formulas[1] if len(formulas) > 1 else None, K=int(K))
        outs = genred(red, args, cats, ni, nj, batch, backend or get_config().backend, ranges, bool(per_range))
        if kind in SELECTION and SELECTION[kind][1] and red.out_dim == 1:
            outs = tuple(o.squeeze(-1) for o in outs)
        outs = tuple(self._to_user(o) for o in outs)
        return outs[0] if len(outs) == 1 else outs

    def _to_user(self, t: torch.Tensor):
        return t

    # --- pykeops reductions --------------------------------------------------------------------

    def logsumexp(self, axis=None, dim=None, weight=None, **kwargs):
        """``log sum exp F`` over i or j (streaming maximum: finite for any scores).

        With ``weight`` (a LazyTensor w, positive), ``log sum_j w_j exp F_j``; F is then scalar
        or of w's dimension, and the output has w's dimension.
        """
        return self._reduce("lse", _axis(axis, dim), weight=weight, **kwargs)

    lse = logsumexp

    def sumsoftmaxweight(self, weight, axis=None, dim=None, **kwargs):
        """``sum_j exp(F_j) V_j / sum_j exp(F_j)`` with ``V = weight`` (a LazyTensor)."""
        return self._reduce("ssmw", _axis(axis, dim), weight=weight, **kwargs)

    def _minmax(self, kind: str, vector_op: Optional[str], axis, dim, kwargs):
        a = _axis(axis, dim)
        if a is None and vector_op is not None:
            if kwargs:
                raise TypeError(f"{kind} over the vector dimension takes no options, got {sorted(kwargs)}")
            return self._combine(vector_op)
        if self._is_vector_axis(a) and vector_op is not None:
            return self._combine(vector_op)
        return self._reduce(kind, a, **kwargs)

    def min(self, axis=None, dim=None, **kwargs):
        """Min over i or j; without ``dim``, the min over the vector dimension (a LazyTensor)."""
        return self._minmax("min", "vmin", axis, dim, kwargs)

    def max(self, axis=None, dim=None, **kwargs):
        """Max over i or j; without ``dim``, the max over the vector dimension (a LazyTensor)."""
        return self._minmax("max", "vmax", axis, dim, kwargs)

    def argmin(self, axis=None, dim=None, **kwargs):
        """Int64 index of the min over i or j (first on ties); without ``dim``, over the vector."""
        return self._minmax("argmin", "vargmin", axis, dim, kwargs)

    def argmax(self, axis=None, dim=None, **kwargs):
        """Int64 index of the max over i or j (first on ties); without ``dim``, over the vector."""
        return self._minmax("argmax", "vargmax", axis, dim, kwargs)

    def min_argmin(self, axis=None, dim=None, **kwargs):
        """``(min, argmin)`` over i or j."""
        return self._minmax("min_argmin", None, axis, dim, kwargs)

    def max_argmax(self, axis=None, dim=None, **kwargs):
        """``(max, argmax)`` over i or j."""
        return self._minmax("max_argmax", None, axis, dim, kwargs)

    def Kmin(self, K: int, axis=None, dim=None, **kwargs):
        """The K smallest values over i or j, sorted: shape ``(..., N, K)`` (``(..., N, K, D)`` if D > 1)."""
        return self._reduce("kmin", _axis(axis, dim), K=K, **kwargs)

    def argKmin(self, K: int, axis=None, dim=None, **kwargs):
        """Int64 indices of the K smallest values (ties: smallest index first)."""
        return self._reduce("argkmin", _axis(axis, dim), K=K, **kwargs)

    def Kmin_argKmin(self, K: int, axis=None, dim=None, **kwargs):
        """``(Kmin, argKmin)``."""
        return self._reduce("kmin_argkmin", _axis(axis, dim), K=K, **kwargs)

    def __matmul__(self, v):
        """``K @ v``: ``sum_j K_ij v_j``, for ``v`` of shape ``(M,)``, ``(M, E)`` or ``(*batch, M, E)``."""
        if self.dim != 1:
            raise ValueError(f"K @ v needs a scalar formula K, got vector dimension {self.dim}")
        from .leaves import as_tensor

        t = as_tensor(v, self._numpy)
        squeeze = t.ndim == 1
        t2 = t.unsqueeze(-1) if squeeze else t
        v_j = type(self)(t2.unsqueeze(-3))  # (*batch, 1, M, E): a j-variable
        out = (self * v_j)._reduce("sum", self.nbatchdims + 1)
        return out[..., 0] if squeeze else out

    def solve(self, other, alpha: float = 1e-10, eps: float = 1e-6, maxiter: Optional[int] = None, **kwargs):
        """Solve ``(alpha Id + K) a = b`` by conjugate gradients (see :func:`lazygeom.linalg.solve`)."""
        from .solve import solve

        return solve(self, other, alpha=alpha, eps=eps, maxiter=maxiter, **kwargs)


def _check_ranges(ranges, kind: str, batch, ni, nj, numpy: bool) -> tuple:
    """Validate pykeops' 6-tuple of block-sparse ranges; return it as int64 CPU tensors."""
    from ..sparse.check import check_ranges
    from .leaves import as_tensor

    if batch:
        raise NotImplementedError(f"{kind}: block-sparse ranges with batch dimensions {batch} are not supported")
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        raise ValueError(
            f"{kind}: ranges must be the 6-tuple (ranges_i, slices_i, redranges_j, ranges_j, slices_j, "
            f"redranges_i), got {type(ranges).__name__} of length {len(ranges) if hasattr(ranges, '__len__') else '?'}"
        )
    ranges = tuple(as_tensor(r, numpy) if not isinstance(r, torch.Tensor) else r for r in ranges)
    ranges = tuple(r.to(device="cpu") for r in ranges)
    check_ranges(ranges, ni or 0, nj or 0)
    return ranges


def _axis(axis, dim):
    return axis if dim is None else dim


def _backend_layout(leaf, batch, dtype, device) -> torch.Tensor:
    """The leaf's tensor with as many batch dims as the formula (leading ones added)."""
    if isinstance(leaf.value, float):
        t = torch.tensor([leaf.value], dtype=dtype, device=device)
    else:
        t = leaf.value
    extra = len(batch) - len(leaf.batch)
    return t.reshape((1,) * extra + tuple(t.shape)) if extra > 0 else t


__all__ = ["IGNORED_OPTIONS", "ReductionsMixin"]
