"""lazygeom: geometric data analysis at scale with symbolic (lazy) matrices.

``from lazygeom import LazyTensor, Vi, Vj, Pm`` replaces ``from pykeops.torch import ...``.

The package loads its parts on first use, so that ``import lazygeom.formula`` (the IR) pulls in
neither torch nor NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LazyTensor": "lazy", "Vi": "lazy", "Vj": "lazy", "Pm": "lazy",
    "Config": "settings", "config": "settings", "get_config": "settings",
    "BackendUnavailable": "errors", "CompilationError": "errors", "LazyGeomError": "errors",
    "ifelse": "lazy", "maximum": "lazy", "minimum": "lazy",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lazygeom' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
