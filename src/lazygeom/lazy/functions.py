"""Module-level elementwise functions on LazyTensors (and numbers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Operand
    from .lazytensor import LazyTensor


def _lazy(*xs: Operand) -> LazyTensor:
    from .lazytensor import LazyTensor

    for x in xs:
        if isinstance(x, LazyTensor):
            return x
    raise TypeError("at least one argument must be a LazyTensor")


def minimum(a: Operand, b: Operand) -> LazyTensor:
    """Elementwise ``min(a, b)``.

    Args:
        a: the first operand.
        b: the second operand; ``a`` or ``b`` must be a LazyTensor.

    Raises:
        TypeError: if neither is a LazyTensor.
    """
    x = _lazy(a, b)
    return x._lift(a).minimum(b)


def maximum(a: Operand, b: Operand) -> LazyTensor:
    """Elementwise ``max(a, b)``.

    Args:
        a: the first operand.
        b: the second operand; ``a`` or ``b`` must be a LazyTensor.

    Raises:
        TypeError: if neither is a LazyTensor.
    """
    x = _lazy(a, b)
    return x._lift(a).maximum(b)


def ifelse(cond: Operand, a: Operand, b: Operand) -> LazyTensor:
    """Elementwise ``a if cond >= 0 else b``.

    Args:
        cond: the condition.
        a: the value where ``cond >= 0``.
        b: the value where ``cond < 0``; one of the three must be a LazyTensor.

    Raises:
        TypeError: if none is a LazyTensor.
    """
    x = _lazy(cond, a, b)
    return x._lift(cond).ifelse(a, b)
