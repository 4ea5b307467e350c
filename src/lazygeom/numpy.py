"""The NumPy front end under pykeops' name: ``lazygeom.numpy`` replaces ``pykeops.numpy``.

The implementation is :mod:`lazygeom.lazy.numpy`.
"""

from .lazy.numpy import LazyTensor, Pm, Vi, Vj, ifelse, maximum, minimum

__all__ = ["LazyTensor", "Pm", "Vi", "Vj", "ifelse", "maximum", "minimum"]
