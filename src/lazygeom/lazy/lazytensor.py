"""The user front end: symbolic matrices over PyTorch tensors (pykeops-compatible).

``LazyTensor`` wraps tensors as i-variables ``(..., N, 1, D)``, j-variables ``(..., 1, M, D)`` and
parameters ``(..., 1, 1, D)``; arithmetic builds a formula (IR nodes, never strings), and a
reduction (``sum``, ``logsumexp``, ``min``, ``argKmin``...) evaluates it with a backend, streaming
over tiles: memory stays O(N + M).

The class is the whole API in one place, with short methods: the elementwise math and vector
operations are functions of :mod:`.elementwise` and :mod:`.vectorops` bound in the class body, and
the reductions call :mod:`.reduce` (axes, variables, ranges and the differentiable call).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from ..formula import CAT_I, CAT_J, Node, const, to_str, var
from . import elementwise as E, reduce as R, vectorops as V
from ._types import Array, L, Operand
from .leaves import Leaf, combine, make_leaf, new_uid, shapes


class LazyTensor:
    """A symbolic N-by-M (by D) array: a formula of i-variables, j-variables and parameters.

    Reductions (``sum(dim=...)``, ``logsumexp``, ``min``, ``argKmin``...) reduce over i with
    ``dim=nbatchdims`` (or -3) and over j with ``dim=nbatchdims + 1`` (or -2), and take keyword
    options: ``backend`` (a backend name, default the configured one), ``ranges`` (a block-sparse
    6-tuple, see :mod:`lazygeom.sparse`), ``per_range`` (one result per row and range, with
    ``ranges``), and pykeops' tuning options, accepted and ignored (``reduce.IGNORED_OPTIONS``).
    They return torch tensors (int64 for indices); on :mod:`lazygeom.numpy`, ndarrays.

    Example:
        >>> x_i, y_j = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])  # (N, 1, D), (1, M, D)
        >>> a = (-((x_i - y_j) ** 2).sum(-1)).exp() @ b  # (N, E): sum_j exp(-|x_i - y_j|^2) b_j

    Args:
        x: a tensor shaped ``(..., N, 1, D)``, ``(..., 1, M, D)`` or ``(..., 1, 1, D)``; a 1D tensor
            (a parameter vector); a Python number; or, with ``axis``, a 2D tensor ``(N, D)``.
        axis: 0 to make ``x`` an i-variable, 1 a j-variable, 2 a parameter.

    Raises:
        TypeError: if ``x`` is not a floating-point array of this front end or a number.
        ValueError: if the layout of ``x`` is ambiguous or invalid.
    """

    _numpy = False
    __array_ufunc__ = None  # let NumPy defer `array * lazytensor` to our reflected operators
    __array_priority__ = 1000

    def __init__(self, x: Union[LazyTensor, Array, int, float], axis: Optional[int] = None) -> None:
        if isinstance(x, LazyTensor):
            self._copy_from(x)
            return
        if isinstance(x, int) and not isinstance(x, bool) and axis is None:
            self._set(const(x), {}, (), None, None, None, None)
            return
        leaf = make_leaf(x, axis, self._numpy)
        uid = new_uid()
        tensor = isinstance(leaf.value, torch.Tensor)
        self._set(var(uid, leaf.cat, leaf.dim), {uid: leaf}, leaf.batch, leaf.rows if leaf.cat == CAT_I else None,
                  leaf.rows if leaf.cat == CAT_J else None, leaf.value.dtype if tensor else None,
                  leaf.value.device if tensor else None)

    # --- construction helpers (private: the package's own code uses them) ----------------------

    def _set(self, node: Node, leaves: dict[int, Leaf], batch: tuple[int, ...], ni: Optional[int],
             nj: Optional[int], dtype: Optional[torch.dtype], device: Optional[torch.device]) -> None:
        self._node, self._leaves, self._batch = node, leaves, batch
        self._ni, self._nj, self._dtype, self._device = ni, nj, dtype, device

    def _copy_from(self, other: LazyTensor) -> None:
        self._set(other._node, other._leaves, other._batch, other._ni, other._nj, other._dtype, other._device)

    @classmethod
    def _new(cls: type[L], node: Node, leaves: dict[int, Leaf], batch: tuple[int, ...], ni: Optional[int],
             nj: Optional[int], dtype: Optional[torch.dtype], device: Optional[torch.device]) -> L:
        out = cls.__new__(cls)
        out._set(node, leaves, batch, ni, nj, dtype, device)
        return out

    def _lift(self, x: Operand) -> LazyTensor:
        if isinstance(x, LazyTensor):
            if x._numpy != self._numpy:
                raise TypeError("cannot mix lazygeom.LazyTensor (torch) and lazygeom.numpy.LazyTensor")
            return x
        return type(self)(x)

    def _combine(self: L, op: str, *others: Operand, attrs: tuple = (),
                 build: Optional[Callable[..., Node]] = None) -> L:
        """Apply ``op`` (or the node builder ``build``) to self and others, checking compatibility."""
        return combine(self, op, others, attrs, build)

    @staticmethod
    def _shapes(operands: list[LazyTensor]) -> str: return shapes(operands)
    def _to_user(self, t: torch.Tensor) -> Any: return t  # the NumPy twin returns an ndarray
    def _extract(self: L, start: int, length: int) -> L: return self._combine("extract", attrs=(start, length))
    def _is_vector_axis(self, a: Optional[int]) -> bool: return R.is_vector_axis(self, a)
    def _red_axis(self, a: Optional[int]) -> int: return R.reduction_axis(self, a)
    def _reduce(self, kind: str, axis: Optional[int], **kwargs: Any) -> Any: return R.reduce(self, kind, axis, **kwargs)

    def _minmax(self, kind: str, vector_op: Optional[str], axis: Optional[int], dim: Optional[int],
                kwargs: dict) -> Any:
        return R.minmax(self, kind, vector_op, R.axis_arg(axis, dim), kwargs)

    # --- the public read-only interface --------------------------------------------------------

    @property
    def batchdims(self) -> tuple[int, ...]:
        """The batch shape (pykeops' ``batchdims``): the dims before N and M, ``()`` if none."""
        return self._batch

    @property
    def nbatchdims(self) -> int:
        """The number of batch dimensions."""
        return len(self._batch)

    @property
    def ni(self) -> Optional[int]:
        """N, the number of i-indices; None when the formula has no i-variable (pykeops' ``ni``)."""
        return self._ni

    @property
    def nj(self) -> Optional[int]:
        """M, the number of j-indices; None when the formula has no j-variable (pykeops' ``nj``)."""
        return self._nj

    @property
    def ndim(self) -> int:
        """Number of batch dims + 2 (N, M) + 1 (the vector dim)."""
        return len(self._batch) + 3

    @property
    def shape(self) -> tuple[int, ...]:
        """``(*batch, N, M, D)``; N or M is 1 when the formula has no i- or j-variable."""
        return (*self._batch, self._ni or 1, self._nj or 1, self._node.dim)

    @property
    def dim(self) -> int:
        """The vector dimension D of the formula."""
        return self._node.dim

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """The torch dtype of the wrapped arrays; None when only Python numbers are wrapped."""
        return self._dtype

    @property
    def device(self) -> Optional[torch.device]:
        """The torch device of the wrapped arrays; None when only Python numbers are wrapped."""
        return self._device

    @property
    def formula(self) -> Node:
        """The formula as an IR node (leaves are placeholders until a reduction)."""
        return self._node

    def as_torch(self) -> LazyTensor:
        """The same symbolic matrix on the torch front end (reductions return tensors; no data is copied)."""
        return LazyTensor._new(self._node, self._leaves, self._batch, self._ni, self._nj, self._dtype, self._device)

    def __repr__(self) -> str:
        return f"LazyTensor(shape={self.shape}, formula={to_str(self._node)})"

    def __bool__(self) -> bool:
        raise TypeError("a LazyTensor has no truth value: reduce it first (e.g. .sum(dim=1))")

    # --- arithmetic ----------------------------------------------------------------------------

    def __add__(self: L, o: Operand) -> L: return self._combine("add", o)
    def __radd__(self: L, o: Operand) -> L: return self._lift(o)._combine("add", self)
    def __sub__(self: L, o: Operand) -> L: return self._combine("sub", o)
    def __rsub__(self: L, o: Operand) -> L: return self._lift(o)._combine("sub", self)
    def __mul__(self: L, o: Operand) -> L: return self._combine("mul", o)
    def __rmul__(self: L, o: Operand) -> L: return self._lift(o)._combine("mul", self)
    def __truediv__(self: L, o: Operand) -> L: return self._combine("div", o)
    def __rtruediv__(self: L, o: Operand) -> L: return self._lift(o)._combine("div", self)
    def __neg__(self: L) -> L: return self._combine("neg")
    def __abs__(self: L) -> L: return self._combine("abs")
    def __or__(self: L, o: Operand) -> L: return self._combine("dot", o)  # pykeops: (x | y) is the dot product
    def __ror__(self: L, o: Operand) -> L: return self._lift(o)._combine("dot", self)

    def __pow__(self: L, other: Operand) -> L:
        """``x ** k``, elementwise.

        Integer k, 0.5 and -0.5 are exact primitives; other floats and LazyTensors use exp(k log x)
        (x > 0), with a float exponent passed as a parameter (no recompilation).
        """
        return E.pow_(self, other)

    def __getitem__(self: L, key: Any) -> L:
        """``x[..., k]`` or ``x[..., a:b]`` (also ``x[k]``, ``x[a:b]``): indexing the vector dim."""
        return self._extract(*V.vector_slice(self, key))

    # --- elementwise math and vector operations (documented in .elementwise and .vectorops) ----

    exp, log, sqrt, rsqrt, abs, sign = E.exp, E.log, E.sqrt, E.rsqrt, E.abs, E.sign
    step, relu, round, floor = E.step, E.relu, E.round, E.floor
    sin, cos, tanh, asin, acos, atan, atan2 = E.sin, E.cos, E.tanh, E.asin, E.acos, E.atan, E.atan2
    square, inv, log1p, xlogx, sinxdivx = E.square, E.inv, E.log1p, E.xlogx, E.sinxdivx
    minimum, maximum, ifelse, clamp, clampint, mod, power = (E.minimum, E.maximum, E.ifelse, E.clamp, E.clampint,
                                                             E.mod, E.power)
    norm, norm2, sqnorm2, normalize, sqdist = V.norm, V.norm2, V.sqnorm2, V.normalize, V.sqdist
    weightedsqnorm, weightedsqdist, matvecmult, vecmatmult = (V.weightedsqnorm, V.weightedsqdist, V.matvecmult,
                                                              V.vecmatmult)
    tensorprod, concat, elem, extract, one_hot = V.tensorprod, V.concat, V.elem, V.extract, V.one_hot

    # --- reductions (see .reduce) --------------------------------------------------------------

    def sum(self: L, axis: int = -1, dim: Optional[int] = None, **kwargs: Any) -> Union[L, Array]:
        """Sum over the vector dimension (``axis=-1``, the default) or a reduction over i or j.

        Args:
            axis: -1 (the vector dimension: a LazyTensor of dimension 1), or the axis of i or j.
            dim: the same as ``axis`` (pykeops accepts both); wins when given.
            **kwargs: reduction options (``backend``, ``ranges``, ``per_range``: see the class).

        Returns:
            A LazyTensor for the vector sum; else ``(*batch, N, D)`` over j (``(*batch, M, D)`` over i).
        """
        a = R.axis_arg(axis, dim)
        if R.is_vector_axis(self, a):
            return self._combine("sum")
        return R.reduce(self, "sum", a, **kwargs)

    def logsumexp(self, axis: Optional[int] = None, dim: Optional[int] = None, weight: Optional[Operand] = None,
                  **kwargs: Any) -> Array:
        """``log sum exp F`` over i or j, shaped as :meth:`sum` (streaming maximum: finite for any scores).

        Args:
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            weight: a positive LazyTensor ``w``: then ``log sum_j w_j exp F_j``, F scalar or of w's
                dimension, and the output has w's dimension.
            **kwargs: reduction options (see the class).
        """
        return R.reduce(self, "lse", R.axis_arg(axis, dim), weight=weight, **kwargs)

    lse = logsumexp

    def sumsoftmaxweight(self, weight: Operand, axis: Optional[int] = None, dim: Optional[int] = None,
                         **kwargs: Any) -> Array:
        """``sum_j exp(F_j) V_j / sum_j exp(F_j)`` with ``V = weight``.

        Args:
            weight: the LazyTensor V.
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.reduce(self, "ssmw", R.axis_arg(axis, dim), weight=weight, **kwargs)

    def min(self: L, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Union[L, Array]:
        """Min over i or j; without ``dim``, the min over the vector dimension (a LazyTensor).

        Args:
            axis: the reduction axis (i or j), or -1 / None for the vector dimension.
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "min", "vmin", R.axis_arg(axis, dim), kwargs)

    def max(self: L, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Union[L, Array]:
        """Max over i or j; without ``dim``, the max over the vector dimension (a LazyTensor).

        Args:
            axis: the reduction axis (i or j), or -1 / None for the vector dimension.
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "max", "vmax", R.axis_arg(axis, dim), kwargs)

    def argmin(self: L, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Union[L, Array]:
        """Int64 index of the min over i or j (first on ties); without ``dim``, over the vector.

        Args:
            axis: the reduction axis (i or j), or -1 / None for the vector dimension.
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "argmin", "vargmin", R.axis_arg(axis, dim), kwargs)

    def argmax(self: L, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Union[L, Array]:
        """Int64 index of the max over i or j (first on ties); without ``dim``, over the vector.

        Args:
            axis: the reduction axis (i or j), or -1 / None for the vector dimension.
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "argmax", "vargmax", R.axis_arg(axis, dim), kwargs)

    def min_argmin(self, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> tuple[Array, Array]:
        """``(min, argmin)`` over i or j.

        Args:
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "min_argmin", None, R.axis_arg(axis, dim), kwargs)

    def max_argmax(self, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> tuple[Array, Array]:
        """``(max, argmax)`` over i or j.

        Args:
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.minmax(self, "max_argmax", None, R.axis_arg(axis, dim), kwargs)

    def Kmin(self, K: int, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Array:
        """The K smallest values over i or j, sorted: shape ``(..., N, K)`` (``(..., N, K, D)`` if D > 1).

        Args:
            K: the number of values per output row.
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.reduce(self, "kmin", R.axis_arg(axis, dim), K=K, **kwargs)

    def argKmin(self, K: int, axis: Optional[int] = None, dim: Optional[int] = None, **kwargs: Any) -> Array:
        """Int64 indices of the K smallest values (ties: smallest index first), shaped as :meth:`Kmin`.

        Args:
            K: the number of indices per output row.
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.reduce(self, "argkmin", R.axis_arg(axis, dim), K=K, **kwargs)

    def Kmin_argKmin(self, K: int, axis: Optional[int] = None, dim: Optional[int] = None,
                     **kwargs: Any) -> tuple[Array, Array]:
        """``(Kmin, argKmin)``.

        Args:
            K: the number of values per output row.
            axis: the reduction axis (i or j).
            dim: the same as ``axis``; wins when given.
            **kwargs: reduction options (see the class).
        """
        return R.reduce(self, "kmin_argkmin", R.axis_arg(axis, dim), K=K, **kwargs)

    def __matmul__(self, v: Array) -> Array:
        """``K @ v``: ``sum_j K_ij v_j``, for ``v`` of shape ``(M,)``, ``(M, E)`` or ``(*batch, M, E)``."""
        return R.matmul(self, v)

    def solve(self, other: Union[LazyTensor, Array], alpha: float = 1e-10, eps: float = 1e-6,
              maxiter: Optional[int] = None, **kwargs: Any) -> Array:
        """Solve ``(alpha Id + K) a = b`` by conjugate gradients: ``a``, shaped as b (:func:`lazygeom.linalg.solve`).

        Args:
            other: the right-hand side b (an array, or an i-variable such as ``Vi(b)``).
            alpha: the ridge added to the diagonal.
            eps: the relative tolerance on each column's residual.
            maxiter: the maximum number of iterations (default ``10 * N``).
            **kwargs: ``backend``, ``dim``/``axis`` and pykeops options (see :func:`lazygeom.linalg.solve`).
        """
        from .solve import solve

        return solve(self, other, alpha=alpha, eps=eps, maxiter=maxiter, **kwargs)


def Vi(x: Array) -> LazyTensor:
    """An i-variable from an ``(N, D)`` or ``(N,)`` array (pykeops' ``Vi``).

    Args:
        x: the array, indexed by i along its first dimension.
    """
    return LazyTensor(x, axis=0)


def Vj(x: Array) -> LazyTensor:
    """A j-variable from an ``(M, D)`` or ``(M,)`` array (pykeops' ``Vj``).

    Args:
        x: the array, indexed by j along its first dimension.
    """
    return LazyTensor(x, axis=1)


def Pm(x: Union[Array, int, float]) -> LazyTensor:
    """A parameter from a number or a 1D array (pykeops' ``Pm``).

    Args:
        x: the number (a parameter of dimension 1: changing it does not recompile) or vector.
    """
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return LazyTensor(float(x))
    return LazyTensor(x, axis=2)


__all__ = ["LazyTensor", "Pm", "Vi", "Vj"]
