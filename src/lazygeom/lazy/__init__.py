"""The pykeops-compatible front end: ``LazyTensor`` over torch tensors (and NumPy arrays, :mod:`.numpy`).

Holds the user-facing class and everything between it and the backends: leaves (how arrays
become i-, j-variables or parameters, :mod:`.leaves`), the formula-building methods
(:mod:`.elementwise`, :mod:`.vectorops`), the reductions (:mod:`.reduce`), and the differentiable
call (:mod:`.genred`) whose backward is built from new reductions. :class:`LazyTensor`
(:mod:`.lazytensor`) is one class whose methods delegate to these modules.
"""

from .functions import ifelse, maximum, minimum
from .lazytensor import LazyTensor, Pm, Vi, Vj

__all__ = ["LazyTensor", "Pm", "Vi", "Vj", "ifelse", "maximum", "minimum"]
