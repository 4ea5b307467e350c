"""Linear algebra with symbolic matrices: conjugate-gradient ``solve`` and a SciPy adaptor.

Every product with the matrix is a LazyTensor reduction (``sum_j K_ij v_j``), so memory stays
O(N + M) and the N-by-M matrix is never formed. The solver itself lives with the front end
(:mod:`lazygeom.lazy.solve`), since ``K.solve(b)`` is a LazyTensor method: this package sits above
it and adds what works on any symbolic matrix from outside.
"""

from ..errors import ConvergenceWarning
from ..lazy.solve import solve
from .scipy import aslinearoperator

__all__ = ["ConvergenceWarning", "aslinearoperator", "solve"]
