"""lazygeom: geometric data analysis at scale with symbolic (lazy) matrices.

``from lazygeom import LazyTensor, Vi, Vj, Pm`` replaces ``from pykeops.torch import ...``.
"""

from .config import Config, config, get_config
from .errors import BackendUnavailable, LazyGeomError
from .lazytensor import LazyTensor, Pm, Vi, Vj
from .ops_api import ifelse, maximum, minimum

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "Config", "LazyGeomError", "LazyTensor", "Pm", "Vi", "Vj", "config",
    "get_config", "ifelse", "maximum", "minimum", "__version__",
]
