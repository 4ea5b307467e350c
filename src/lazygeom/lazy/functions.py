"""Module-level elementwise functions on LazyTensors (and numbers)."""

from __future__ import annotations


def _lazy(*xs):
    from .lazytensor import LazyTensor

    for x in xs:
        if isinstance(x, LazyTensor):
            return x
    raise TypeError("at least one argument must be a LazyTensor")


def minimum(a, b):
    """Elementwise ``min(a, b)``."""
    x = _lazy(a, b)
    return x._lift(a).minimum(b)


def maximum(a, b):
    """Elementwise ``max(a, b)``."""
    x = _lazy(a, b)
    return x._lift(a).maximum(b)


def ifelse(cond, a, b):
    """Elementwise ``a if cond >= 0 else b``."""
    x = _lazy(cond, a, b)
    return x._lift(cond).ifelse(a, b)
