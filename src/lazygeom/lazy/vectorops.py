"""The vector methods of :class:`lazygeom.LazyTensor` (``sqdist``, ``norm2``, ``concat``, ``x[k]``...).

Each function here is a method of LazyTensor, bound in the class body, as in :mod:`.elementwise`:
it adds a node to the formula and runs nothing; the result has the class of ``self``.

This module does not import :mod:`.lazytensor` at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..formula import composites as C
from ._types import L, Operand

if TYPE_CHECKING:
    from .lazytensor import LazyTensor


def norm2(self: L) -> L:
    """Euclidean norm over the vector dimension (dimension 1)."""
    return self._combine("norm2", build=C.norm2)


def sqnorm2(self: L) -> L:
    """Squared Euclidean norm over the vector dimension (dimension 1)."""
    return self._combine("sqnorm2", build=C.sqnorm2)


def normalize(self: L) -> L:
    """``self / |self|``: the vector scaled to unit Euclidean norm."""
    return self._combine("normalize", build=C.normalize)


def sqdist(self: L, other: Operand) -> L:
    """Squared Euclidean distance ``|self - other|^2`` (dimension 1).

    Args:
        self: a vector.
        other: a vector of self's dimension (or of dimension 1).
    """
    return self._combine("sqdist", other, build=C.sqdist)


def norm(self: L, dim: int = -1) -> L:
    """Euclidean norm over the vector dimension (pykeops' ``norm(dim=-1)``).

    Args:
        self: a vector.
        dim: the vector dimension: -1 or ``ndim - 1``.

    Raises:
        ValueError: for any other ``dim``.
    """
    if dim not in (-1, self.ndim - 1):
        raise ValueError(f"norm: only the vector dimension (-1) is supported, got dim={dim}")
    return self.norm2()


def weightedsqnorm(self: L, s: Operand) -> L:
    """Weighted squared norm of self with weights ``s`` (dimension 1).

    Args:
        self: a vector.
        s: the weights: of dimension 1 (isotropic), D (diagonal) or D*D (a full matrix, row-major).
    """
    return self._combine("weightedsqnorm", s, build=lambda x, w: C.weightedsqnorm(w, x))


def weightedsqdist(self: L, other: Operand, s: Operand) -> L:
    """Weighted squared distance between self and ``other`` with weights ``s`` (dimension 1).

    Args:
        self: a vector.
        other: a vector of self's dimension.
        s: the weights, as in :meth:`weightedsqnorm`.
    """
    return self._combine("weightedsqdist", other, s, build=lambda x, y, w: C.weightedsqdist(w, x, y))


def matvecmult(self: L, v: Operand) -> L:
    """Self (a row-major m-by-n matrix, dimension m*n) times the vector ``v`` (dimension n).

    Args:
        self: the matrix.
        v: the vector.
    """
    return self._combine("matvecmult", v)


def vecmatmult(self: L, A: Operand) -> L:
    """Self (a vector, dimension m) times the row-major m-by-n matrix ``A`` (dimension m*n).

    Args:
        self: the vector.
        A: the matrix.
    """
    return self._combine("vecmatmult", A)


def tensorprod(self: L, other: Operand) -> L:
    """Tensor (outer) product of two vectors, row-major (dimension ``self.dim * other.dim``).

    Args:
        self: the first vector.
        other: the second vector.
    """
    return self._combine("tensorprod", other)


def concat(self: L, other: Operand) -> L:
    """Concatenation of two vectors (dimension ``self.dim + other.dim``).

    Args:
        self: the first vector.
        other: the vector appended to self.
    """
    return self._combine("concat", other)


def elem(self: L, k: int) -> L:
    """The k-th component of the vector (dimension 1); as ``self[k]``.

    Args:
        self: a vector.
        k: the index, ``0 <= k < dim``.
    """
    return self._combine("extract", attrs=(k, 1))


def extract(self: L, start: int, length: int) -> L:
    """The components ``start`` to ``start + length - 1``; as ``self[start:start + length]``.

    Args:
        self: a vector.
        start: the first index.
        length: the number of components.
    """
    return self._combine("extract", attrs=(start, length))


def one_hot(self: L, D: int) -> L:
    """One-hot encoding in dimension D of a scalar (rounded to an integer index).

    Args:
        self: a scalar, rounded to an integer index.
        D: the output dimension.
    """
    return self._combine("onehot", attrs=(D,))


def vector_slice(F: LazyTensor, key: Any) -> tuple[int, int]:
    """``(start, length)`` in the vector dimension for ``F[key]``; IndexError for other keys."""
    if isinstance(key, tuple):
        *front, key = key
        ok = all(k is Ellipsis or (isinstance(k, slice) and k == slice(None)) for k in front)
        if not ok or (len(front) not in (0, F.ndim - 1) and Ellipsis not in front):
            raise IndexError("LazyTensor indexing applies to the vector dimension only: use x[..., k]")
    D = F.dim
    if isinstance(key, int):
        k = key + D if key < 0 else key
        if not 0 <= k < D:
            raise IndexError(f"index {key} out of range for vector dimension {D}")
        return k, 1
    if isinstance(key, slice):
        start, stop, step = key.indices(D)
        if step != 1 or stop <= start:
            raise IndexError(f"only non-empty unit-step slices are supported, got {key}")
        return start, stop - start
    raise IndexError(f"unsupported LazyTensor index {key!r}")
