"""The user front end: symbolic matrices over PyTorch tensors (pykeops-compatible).

``LazyTensor`` wraps tensors as i-variables ``(..., N, 1, D)``, j-variables ``(..., 1, M, D)`` and
parameters ``(..., 1, 1, D)``; arithmetic builds a formula (IR nodes, never strings), and a
reduction (``sum``, ``logsumexp``, ``min``, ``argKmin``...) evaluates it with a backend, streaming
over tiles: memory stays O(N + M).

Example:
    >>> from lazygeom import LazyTensor
    >>> x_i = LazyTensor(x[:, None, :])          # (N, 1, D)
    >>> y_j = LazyTensor(y[None, :, :])          # (1, M, D)
    >>> K_ij = (-((x_i - y_j) ** 2).sum(-1)).exp()
    >>> a = K_ij @ b                             # (N, E): sum_j exp(-|x_i - y_j|^2) b_j
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..formula import CAT_I, CAT_J, Node, composites as C, const, make, var
from .leaves import Leaf, broadcast_batch, make_leaf, new_uid
from .reduce import ReductionsMixin

Operand = Union["LazyTensor", int, float, torch.Tensor]


class LazyTensor(ReductionsMixin):
    """A symbolic N-by-M (by D) array: a formula of i-variables, j-variables and parameters.

    Args:
        x: a tensor shaped ``(..., N, 1, D)``, ``(..., 1, M, D)`` or ``(..., 1, 1, D)``; a 1D tensor
            (a parameter vector); a Python number; or, with ``axis``, a 2D tensor ``(N, D)``.
        axis: 0 to make ``x`` an i-variable, 1 a j-variable, 2 a parameter.
    """

    _numpy = False
    __array_ufunc__ = None  # let NumPy defer `array * lazytensor` to our reflected operators
    __array_priority__ = 1000

    def __init__(self, x, axis: Optional[int] = None):
        if isinstance(x, LazyTensor):
            self._copy_from(x)
            return
        if isinstance(x, int) and not isinstance(x, bool) and axis is None:
            self._set(const(x), {}, (), None, None, None, None)
            return
        leaf = make_leaf(x, axis, self._numpy)
        uid = new_uid()
        tensor = isinstance(leaf.value, torch.Tensor)
        self._set(
            var(uid, leaf.cat, leaf.dim),
            {uid: leaf},
            leaf.batch,
            leaf.rows if leaf.cat == CAT_I else None,
            leaf.rows if leaf.cat == CAT_J else None,
            leaf.value.dtype if tensor else None,
            leaf.value.device if tensor else None,
        )

    # --- construction helpers ------------------------------------------------------------------

    def _set(self, node, leaves, batch, ni, nj, dtype, device):
        self._node: Node = node
        self._leaves: dict[int, Leaf] = leaves
        self._batch: tuple[int, ...] = batch
        self._ni: Optional[int] = ni
        self._nj: Optional[int] = nj
        self._dtype = dtype
        self._device = device

    def _copy_from(self, other: "LazyTensor"):
        self._set(other._node, other._leaves, other._batch, other._ni, other._nj, other._dtype, other._device)

    @classmethod
    def _new(cls, node, leaves, batch, ni, nj, dtype, device) -> "LazyTensor":
        out = cls.__new__(cls)
        out._set(node, leaves, batch, ni, nj, dtype, device)
        return out

    def _lift(self, x: Operand) -> "LazyTensor":
        if isinstance(x, LazyTensor):
            if x._numpy != self._numpy:
                raise TypeError("cannot mix lazygeom.LazyTensor (torch) and lazygeom.numpy.LazyTensor")
            return x
        return type(self)(x)

    def _combine(self, op: str, *others: Operand, attrs: tuple = (), build=None) -> "LazyTensor":
        """Apply ``op`` (or the node builder ``build``) to self and others, checking compatibility."""
        operands = [self] + [self._lift(o) for o in others]
        leaves: dict[int, Leaf] = {}
        batch: tuple[int, ...] = ()
        ni = nj = dtype = device = None
        for o in operands:
            leaves.update(o._leaves)
            batch = broadcast_batch(batch, o._batch, f"between operands of shapes {self._shapes(operands)}")
            ni = _same(ni, o._ni, "number of i-indices (N)", operands)
            nj = _same(nj, o._nj, "number of j-indices (M)", operands)
            dtype = _same(dtype, o._dtype, "dtypes", operands)
            device = _same(device, o._device, "devices", operands)
        nodes = [o._node for o in operands]
        try:
            node = build(*nodes) if build is not None else make(op, *nodes, attrs=attrs)
        except ValueError as err:
            raise ValueError(f"{op}: {err} (operand shapes {self._shapes(operands)})") from None
        return self._new(node, leaves, batch, ni, nj, dtype, device)

    @staticmethod
    def _shapes(operands) -> str:
        return " and ".join(str(o.shape) for o in operands)

    # --- introspection -------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of batch dims + 2 (N, M) + 1 (the vector dim)."""
        return len(self._batch) + 3

    @property
    def nbatchdims(self) -> int:
        return len(self._batch)

    @property
    def shape(self) -> tuple:
        """``(*batch, N, M, D)``; N or M is 1 when the formula has no i- or j-variable."""
        return (*self._batch, self._ni or 1, self._nj or 1, self._node.dim)

    @property
    def dim(self) -> int:
        """The vector dimension D of the formula."""
        return self._node.dim

    @property
    def dtype(self):
        return self._dtype

    @property
    def formula(self) -> Node:
        """The formula as an IR node (leaves are placeholders until a reduction)."""
        return self._node

    def __repr__(self) -> str:
        from ..formula import to_str

        return f"LazyTensor(shape={self.shape}, formula={to_str(self._node)})"

    def __bool__(self):
        raise TypeError("a LazyTensor has no truth value: reduce it first (e.g. .sum(dim=1))")

    # --- arithmetic ----------------------------------------------------------------------------

    def __add__(self, o): return self._combine("add", o)
    def __radd__(self, o): return self._lift(o)._combine("add", self)
    def __sub__(self, o): return self._combine("sub", o)
    def __rsub__(self, o): return self._lift(o)._combine("sub", self)
    def __mul__(self, o): return self._combine("mul", o)
    def __rmul__(self, o): return self._lift(o)._combine("mul", self)
    def __truediv__(self, o): return self._combine("div", o)
    def __rtruediv__(self, o): return self._lift(o)._combine("div", self)
    def __neg__(self): return self._combine("neg")
    def __abs__(self): return self._combine("abs")
    def __or__(self, o): return self._combine("dot", o)  # pykeops: (x | y) is the dot product
    def __ror__(self, o): return self._lift(o)._combine("dot", self)

    def __pow__(self, other):
        """``x ** k``: integer k, 0.5 and -0.5 are exact primitives; other floats and LazyTensors
        use exp(k log x) (x > 0), with a float exponent passed as a parameter (no recompilation)."""
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            exact = C.sqrt_or_pow(self._node, other)
            if exact is not None:
                return self._combine("pow", build=lambda x: exact)
        return self._combine("powf", other, build=C.powf)

    def power(self, other): return self ** other

    # --- elementwise math (one method per registered op) ---------------------------------------

    def exp(self): return self._combine("exp")
    def log(self): return self._combine("log")
    def sqrt(self): return self._combine("sqrt")
    def rsqrt(self): return self._combine("rsqrt")
    def abs(self): return self._combine("abs")
    def sign(self): return self._combine("sign")
    def step(self): return self._combine("step")
    def relu(self): return self._combine("relu")
    def sin(self): return self._combine("sin")
    def cos(self): return self._combine("cos")
    def tanh(self): return self._combine("tanh")
    def asin(self): return self._combine("asin")
    def acos(self): return self._combine("acos")
    def atan(self): return self._combine("atan")
    def square(self): return self._combine("square")
    def inv(self): return self._combine("inv")
    def log1p(self): return self._combine("log1p")
    def xlogx(self): return self._combine("xlogx")
    def sinxdivx(self): return self._combine("sinxdivx")
    def round(self): return self._combine("round")
    def floor(self): return self._combine("floor")
    def atan2(self, x): return self._combine("atan2", x)

    def minimum(self, other): return self._combine("min2", other)
    def maximum(self, other): return self._combine("max2", other)

    def ifelse(self, a, b):
        """``a if self >= 0 else b``, elementwise."""
        return self._combine("ifelse", a, b)

    def clamp(self, a, b):
        """``min(max(self, a), b)``, elementwise."""
        return self._combine("clamp", a, b, build=C.clamp)

    def clampint(self, a: int, b: int): return self.clamp(a, b)

    def mod(self, modulus, offset=0):
        """``self - modulus * floor((self - offset) / modulus)``, elementwise (pykeops' Mod)."""
        return self - modulus * ((self - offset) / modulus).floor()

    # --- vector ops ----------------------------------------------------------------------------

    def norm2(self): return self._combine("norm2", build=C.norm2)
    def sqnorm2(self): return self._combine("sqnorm2", build=C.sqnorm2)
    def normalize(self): return self._combine("normalize", build=C.normalize)
    def sqdist(self, other): return self._combine("sqdist", other, build=C.sqdist)

    def norm(self, dim=-1):
        """Euclidean norm over the vector dimension (pykeops' ``norm(dim=-1)``)."""
        if dim not in (-1, self.ndim - 1):
            raise ValueError(f"norm: only the vector dimension (-1) is supported, got dim={dim}")
        return self.norm2()

    def weightedsqnorm(self, s):
        """Weighted squared norm of self with weights ``s`` (dim 1, D or D*D)."""
        return self._combine("weightedsqnorm", s, build=lambda x, w: C.weightedsqnorm(w, x))

    def weightedsqdist(self, other, s):
        """Weighted squared distance between self and ``other`` with weights ``s``."""
        return self._combine("weightedsqdist", other, s, build=lambda x, y, w: C.weightedsqdist(w, x, y))

    def matvecmult(self, v):
        """self (a row-major m-by-n matrix, dim m*n) times the vector ``v`` (dim n)."""
        return self._combine("matvecmult", v)

    def vecmatmult(self, A):
        """self (a vector, dim m) times the row-major m-by-n matrix ``A`` (dim m*n)."""
        return self._combine("vecmatmult", A)

    def tensorprod(self, other): return self._combine("tensorprod", other)

    def concat(self, other): return self._combine("concat", other)

    def elem(self, k: int): return self._extract(k, 1)

    def extract(self, start: int, length: int): return self._extract(start, length)

    def one_hot(self, D: int):
        """One-hot encoding in dimension D of a scalar (rounded to an integer index)."""
        return self._combine("onehot", attrs=(D,))

    def _extract(self, start: int, length: int):
        return self._combine("extract", attrs=(start, length))

    def __getitem__(self, key):
        """``x[..., k]`` or ``x[..., a:b]`` (also ``x[k]``, ``x[a:b]``): indexing the vector dim."""
        if isinstance(key, tuple):
            *front, key = key
            ok = all(k is Ellipsis or (isinstance(k, slice) and k == slice(None)) for k in front)
            if not ok or (len(front) not in (0, self.ndim - 1) and Ellipsis not in front):
                raise IndexError("LazyTensor indexing applies to the vector dimension only: use x[..., k]")
        D = self.dim
        if isinstance(key, int):
            k = key + D if key < 0 else key
            if not 0 <= k < D:
                raise IndexError(f"index {key} out of range for vector dimension {D}")
            return self._extract(k, 1)
        if isinstance(key, slice):
            start, stop, step = key.indices(D)
            if step != 1 or stop <= start:
                raise IndexError(f"only non-empty unit-step slices are supported, got {key}")
            return self._extract(start, stop - start)
        raise IndexError(f"unsupported LazyTensor index {key!r}")

    def sum(self, axis: int = -1, dim: Optional[int] = None, **kwargs):
        """Sum over the vector dimension (``axis=-1``, the default) or a reduction over i or j."""
        a = axis if dim is None else dim
        if self._is_vector_axis(a):
            return self._combine("sum")
        return self._reduce("sum", a, **kwargs)


def _same(a, b, what: str, operands):
    if a is None:
        return b
    if b is None or a == b:
        return a
    shapes = " and ".join(f"{o.shape} ({o._dtype}, {o._device})" for o in operands)
    raise ValueError(f"incompatible {what}: {a} vs {b}, between operands {shapes}")


def Vi(x) -> LazyTensor:
    """An i-variable from an ``(N, D)`` or ``(N,)`` array (pykeops' ``Vi``)."""
    return LazyTensor(x, axis=0)


def Vj(x) -> LazyTensor:
    """A j-variable from an ``(M, D)`` or ``(M,)`` array (pykeops' ``Vj``)."""
    return LazyTensor(x, axis=1)


def Pm(x) -> LazyTensor:
    """A parameter from a number or a 1D array (pykeops' ``Pm``)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return LazyTensor(float(x))
    return LazyTensor(x, axis=2)


__all__ = ["LazyTensor", "Pm", "Vi", "Vj"]
