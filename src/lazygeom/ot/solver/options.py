"""The options of a Sinkhorn solve, as one validated, immutable value.

:func:`lazygeom.ot.sinkhorn`, :func:`lazygeom.ot.transport_plan`, :func:`lazygeom.ot.barycentric_map`
and :class:`lazygeom.ot.SamplesLoss` keep GeomLoss's keyword arguments; each builds a
:class:`SinkhornOptions` from them, which checks every value once (errors name the argument) and
travels to the solver (:func:`lazygeom.ot.solve.solve_measures`, the multiscale solver) in their
place. In terms of the options (GeomLoss conventions):

    ε = blur^p (the target temperature),   ρ = reach^p (None: balanced OT),
    ε_k = diameter^p · scaling^(p·k) down to ε (:func:`lazygeom.ot.solver.schedules.epsilon_schedule`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ...settings import normalize_backend
from ..costs import CostFn, GroundCost, ground_cost
from .schedules import epsilon_schedule, max_diameter
from .softmin import BACKENDS

#: the multiscale solver's user cluster labels ``(lab_x, lab_y)``
Labels = tuple[torch.Tensor, torch.Tensor]


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _positive(name: str, v: Any, optional: bool, meaning: str = "") -> Optional[float]:
    """``v`` as a float after checking that it is a positive number (or None when ``optional``)."""
    if v is None and optional:
        return None
    if not (_is_real(v) and v > 0):
        none = " or None" + (f" ({meaning})" if meaning else "") if optional else ""
        raise ValueError(f"{name} must be a positive number{none}, got {v!r}")
    return float(v)


def _same(u: Any, v: Any) -> bool:
    """Equality of option values; tensors (in ``labels``) compare by value."""
    if isinstance(u, tuple) and isinstance(v, tuple):
        return len(u) == len(v) and all(_same(s, t) for s, t in zip(u, v))
    if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
        return isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and torch.equal(u, v)
    return u == v


def _hashable(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_hashable(t) for t in v)
    return ("tensor", tuple(v.shape)) if isinstance(v, torch.Tensor) else v


@dataclass(frozen=True, eq=False)
class SinkhornOptions:
    """How to solve an entropic OT problem: the arguments of :func:`lazygeom.ot.sinkhorn`, checked.

    Immutable and compared by value (``labels`` by their contents): ``options.replace(blur=0.01)``
    gives a new, checked value. The defaults are :func:`lazygeom.ot.sinkhorn`'s.

    Attributes:
        p: the exponent of the built-in cost: C = |x − y|²/2 (p = 2) or |x − y| (p = 1); with a
            custom ``cost`` any positive number (it only sets ε = blur^p).
        blur: the target length scale, > 0; ε = blur^p.
        reach: None (balanced OT) or the length scale of the KL marginal penalties, > 0; ρ = reach^p.
        diameter: None (computed from the data, :func:`lazygeom.ot.solver.schedules.max_diameter`) or
            the largest distance, a finite number >= 0, which starts the ε-schedule.
        scaling: the ratio of consecutive length scales of the ε-schedule, in (0, 1).
        cost: None (the built-in cost of ``p``) or a callable ``cost(x_i, y_j)`` (:mod:`lazygeom.ot.costs`).
        debias: also compute the symmetric potentials f_aa, g_bb (the Sinkhorn divergence).
        backend: the solver: "auto", "tensorized", "online" or "multiscale"
            (:func:`lazygeom.ot.solver.softmin.choose_backend`).
        extra_iterations: a whole number >= 0 of iterations at the final ε after the schedule.
        truncate: multiscale: τ > 0, the kernel truncation threshold in units of ε (None: keep all).
        cluster_scale: multiscale: None (kd-tree clusters) or the side of the finest grid, > 0.
        labels: multiscale: None or integer cluster labels ``(lab_x, lab_y)`` shaped like the weights.
        verbose: print what the solver does.
        engine_backend: None (the configured one, :func:`lazygeom.config`) or the name of the
            lazygeom backend that runs the reductions ("auto", "reference", "cpu", "triton", or a
            pykeops alias).

    Raises:
        ValueError: a value out of its range, naming the argument.
        TypeError: a formula string or a non-callable as ``cost``.
    """

    p: float = 2
    blur: float = 0.05
    reach: Optional[float] = None
    diameter: Optional[float] = None
    scaling: float = 0.5
    cost: Optional[CostFn] = None
    debias: bool = True
    backend: str = "auto"
    extra_iterations: int = 0
    truncate: Optional[float] = 5.0
    cluster_scale: Optional[float] = None
    labels: Optional[Labels] = None
    verbose: bool = False
    engine_backend: Optional[str] = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not (_is_real(self.p) and self.p > 0):
            raise ValueError(f"p must be a positive number (1 or 2 for the built-in costs), got {self.p!r}")
        ground_cost(self.p, self.cost)  # p in (1, 2) without a cost; the cost's type
        blur = _positive("blur", self.blur, optional=False)
        if not math.isfinite(blur):
            raise ValueError(f"blur must be a finite positive number, got {self.blur!r}")
        put("blur", blur)
        put("reach", _positive("reach", self.reach, optional=True, meaning="balanced OT"))
        if self.diameter is not None:
            if not (_is_real(self.diameter) and math.isfinite(self.diameter) and self.diameter >= 0):
                raise ValueError(
                    f"diameter must be a finite number >= 0 or None (from the data), got {self.diameter!r}")
            put("diameter", float(self.diameter))
        if not (_is_real(self.scaling) and 0 < self.scaling < 1):
            raise ValueError(f"scaling must be a number in (0, 1), got {self.scaling!r}")
        put("scaling", float(self.scaling))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "multiscale" and not self.multiscale_ok:
            raise ValueError(
                "backend='multiscale' solves Sinkhorn problems with the built-in costs (p=1 or p=2, no "
                f"cost=...), got p={self.p!r}, cost={self.cost!r}; use backend='online' (memory O(N + M)) or 'auto'"
            )
        e = self.extra_iterations
        if not (_is_real(e) and e >= 0 and float(e).is_integer()):
            raise ValueError(f"extra_iterations must be a whole number >= 0, got {e!r}")
        put("extra_iterations", int(e))
        put("truncate", _positive("truncate", self.truncate, optional=True, meaning="keep every pair"))
        put("cluster_scale", _positive("cluster_scale", self.cluster_scale, optional=True, meaning="kd-tree clusters"))
        self._check_labels(put)
        put("debias", bool(self.debias))
        put("verbose", bool(self.verbose))
        if self.engine_backend is not None:
            try:
                normalize_backend(self.engine_backend)
            except (ValueError, TypeError) as err:
                raise ValueError(f"engine_backend: {err}") from None

    def _check_labels(self, put: Callable[[str, Any], None]) -> None:
        if self.labels is None:
            return
        if not (isinstance(self.labels, (tuple, list)) and len(self.labels) == 2):
            raise ValueError(f"labels must be a pair (lab_x, lab_y) of integer tensors or None, got {self.labels!r}")
        if self.backend not in ("auto", "multiscale"):
            raise ValueError(f"labels are cluster labels for backend='multiscale', not for {self.backend!r}")
        put("labels", tuple(self.labels))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SinkhornOptions):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def replace(self, **changes: Any) -> "SinkhornOptions":
        """A copy with some options changed (checked again).

        Args:
            **changes: new values of options, by name.

        Returns:
            The new :class:`SinkhornOptions`.
        """
        return dataclasses.replace(self, **changes)

    @property
    def eps(self) -> float:
        """The target temperature ε = blur^p."""
        return self.blur**self.p

    @property
    def rho(self) -> Optional[float]:
        """The marginal penalty ρ = reach^p, None for balanced OT."""
        return None if self.reach is None else self.reach**self.p

    @property
    def multiscale_ok(self) -> bool:
        """Whether the multiscale solver handles the cost: the built-in ones.

        Its truncation bounds are proved for |x − y|²/2 and |x − y| only.
        """
        return self.cost is None and self.p in (1, 2)

    def ground_cost(self) -> GroundCost:
        """The ground cost C (:func:`lazygeom.ot.costs.ground_cost` of ``p`` and ``cost``)."""
        return ground_cost(self.p, self.cost)

    def schedule(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, ...]:
        """The temperatures of the loop: the ε-schedule, then ``extra_iterations`` times the final ε.

        Args:
            x: ``(..., N, D)`` points (for the default diameter).
            y: ``(..., M, D)`` points.

        Returns:
            ``(ε_0, ..., ε_K, ε_K, ...)``, ending at ε = blur^p.
        """
        diameter = max_diameter(x, y) if self.diameter is None else self.diameter
        eps_list = epsilon_schedule(self.p, diameter, self.blur, self.scaling)
        return eps_list + (eps_list[-1],) * self.extra_iterations


__all__ = ["Labels", "SinkhornOptions"]
