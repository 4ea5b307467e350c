"""Optimal transport and kernel losses between weighted point clouds (GeomLoss-compatible).

- :class:`SamplesLoss`: Sinkhorn divergences (balanced or unbalanced), Hausdorff divergence,
  kernel norms (energy, gaussian, laplacian) — ``from lazygeom.ot import SamplesLoss`` replaces
  ``from geomloss import SamplesLoss``;
- :func:`sinkhorn`: the annealed Sinkhorn solver, returning a :class:`SinkhornResult`
  (potentials, ε history, iteration count, and what ran: the solver, the engine backend of the
  reductions); :func:`sinkhorn_loop` is the loop itself, written once for every backend (it
  receives a soft-min operator);
- :class:`SinkhornOptions`: the solvers' options as one checked, immutable value, which the
  functions and ``SamplesLoss`` build from their GeomLoss keyword arguments;
- :func:`transport_plan` (a LazyTensor, never dense unless asked) and :func:`barycentric_map`;
- :func:`epsilon_schedule`: the annealing schedule.

Conventions (GeomLoss's): C = |x − y|²/2 for p = 2 and |x − y| for p = 1, ε = blur^p,
ρ = reach^p. See :mod:`lazygeom.ot.solver.loop` and :mod:`lazygeom.ot.losses.divergence` for the maths.
"""

from .costs import ground_cost
from .plans import barycentric_map, transport_plan
from .losses.samples_loss import SamplesLoss
from .solver.schedules import epsilon_schedule, max_diameter
from .solver.loop import SinkhornResult, sinkhorn_loop
from .solver.options import SinkhornOptions
from .solver.softmin import OnlineSoftmin, TensorizedSoftmin
from .solve import sinkhorn

__all__ = [
    "OnlineSoftmin", "SamplesLoss", "SinkhornOptions", "SinkhornResult", "TensorizedSoftmin", "barycentric_map",
    "epsilon_schedule", "ground_cost", "max_diameter", "sinkhorn", "sinkhorn_loop", "transport_plan",
]
