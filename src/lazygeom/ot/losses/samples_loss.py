"""``SamplesLoss``: GeomLoss's loss module between sampled measures, on lazygeom's reductions.

GeomLoss code runs by changing the import::

    from lazygeom.ot import SamplesLoss          # instead of: from geomloss import SamplesLoss
    loss = SamplesLoss("sinkhorn", p=2, blur=0.05)
    L = loss(x, y)                               # or loss(a, x, b, y)

Differences from GeomLoss (each one a fix): the Hausdorff loss works; identical clouds
(diameter 0) do not crash; the unbalanced gradients have the right scale
(:mod:`lazygeom.ot.losses.divergence`); the ε-schedule does not repeat its first value; a custom cost is a
callable building a LazyTensor formula (no formula strings); the multiscale backend has any
number of levels (GeomLoss: two), supports batches and user cluster labels, and bounds what
its kernel truncation drops (:mod:`lazygeom.ot.multiscale.truncation`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import torch

from .._inputs import parse_measures
from ..costs import CostFn
from ..solver.options import SinkhornOptions
from .kernels import kernel_function
from .registry import LOSSES, LossKind, LossRun, Output


class _Option:
    """A :class:`SamplesLoss` attribute that reads one field of its options and replaces it (checked)."""

    def __set_name__(self, owner: type, name: str) -> None:
        """Remember the option's name (the attribute's)."""
        self.name = name

    def __get__(self, obj: Optional["SamplesLoss"], owner: Optional[type] = None) -> Any:
        """The option's value (the descriptor itself on the class)."""
        return self if obj is None else getattr(obj.options, self.name)

    def __set__(self, obj: "SamplesLoss", value: Any) -> None:
        """A new options value with this option changed: ``loss.blur = 0.01`` is checked as in the constructor."""
        obj.options = obj.options.replace(**{self.name: value})


class SamplesLoss(torch.nn.Module):
    """A loss between weighted point clouds: Sinkhorn divergence, Hausdorff divergence or kernel norm.

    Measures α = Σ_i a_i δ_{x_i} and β = Σ_j b_j δ_{y_j}; cost C(x, y) = |x − y|²/2 (p = 2) or
    |x − y| (p = 1); ε = blur^p, ρ = reach^p.

    - ``"sinkhorn"``: the debiased Sinkhorn divergence
      S_ε(α, β) = OT_ε(α, β) − ½OT_ε(α, α) − ½OT_ε(β, β) (Feydy et al. 2019), or OT_ε(α, β) with
      ``debias=False``; unbalanced (KL marginal penalties of strength ρ) when ``reach`` is set.
      It interpolates between OT (blur → 0) and the energy distance (blur → ∞, p = 1).
      Computed by annealed, symmetric Sinkhorn iterations (:mod:`lazygeom.ot.solver.loop`) with the
      ε-schedule of :func:`lazygeom.ot.solver.schedules.epsilon_schedule` and a final extrapolation
      step, so that first-order gradients are exact at the fixed point without back-propagating
      through the loop.
    - ``"hausdorff"``: H_ε(α, β) = ½⟨α − β, s_β − s_α⟩ with soft distances s
      (:mod:`lazygeom.ot.losses.hausdorff`).
    - ``"energy"``, ``"gaussian"``, ``"laplacian"``: the kernel norm ½⟨α − β, k ⋆ (α − β)⟩ with
      k = −|x − y|, exp(−|x − y|²/2σ²), exp(−|x − y|/σ), σ = blur (:mod:`lazygeom.ot.losses.kernels`).

    Args:
        loss: one of "sinkhorn", "hausdorff", "energy", "gaussian", "laplacian".
        p: 1 or 2, the exponent of the built-in cost (sinkhorn and hausdorff).
        blur: the length scale: ε = blur^p, or the kernel width σ.
        reach: None (balanced OT) or the reach of unbalanced OT (sinkhorn only).
        diameter: the largest distance between points (default: computed from the data); it
            starts the ε-schedule.
        scaling: the ratio of consecutive blurs in the ε-schedule, in (0, 1): closer to 1 is
            more accurate and slower.
        truncate: multiscale backend: a cluster pair is dropped when a bound shows that the plan
            exponent (f + g − C)/ε stays below −truncate for all its point pairs, i.e. its terms
            weigh less than exp(−truncate) times the largest (None: nothing is dropped). Unlike
            GeomLoss, whose ``truncate`` counts blurs (distance truncate·blur, exponent
            −truncate²/2 for p = 2), this counts units of ε: truncate=5 here is tighter than
            GeomLoss's 5 and still measured at 1e-6 of the converged loss.
        cost: a callable ``cost(x_i, y_j)`` built from LazyTensor operations (also applied to
            dense tensors by the tensorized backend; see :mod:`lazygeom.ot.costs`).
        kernel: a callable ``k(x_i, y_j)`` for the kernel losses (same convention).
        cluster_scale: multiscale backend: the grid side of the finest cluster level; None
            (default): balanced kd-tree clusters of at most 64 points per leaf, which follow each
            cloud's density (:mod:`lazygeom.sparse.kdtree`).
        debias: the debiased divergence (True) or raw entropic OT (False), for "sinkhorn".
        potentials: return the dual potentials ``(F, G)``, shaped like the weights, instead of
            the loss (sinkhorn: f − f_aa and g − g_bb, or f and g without debiasing).
        verbose: print the backend, the schedule and the timing of each call (multiscale: also
            the levels, the level of each step and the fraction of point pairs each update keeps).
        backend: "auto" (tensorized for at most ``TENSORIZED_MAX_ENTRIES`` = 32,768 cost entries
            B·N·M; else, for sinkhorn with a built-in cost in D <= 3 and at least
            ``MULTISCALE_MIN_POINTS`` points per cloud, multiscale; else online), "tensorized"
            (dense torch), "online" (LazyTensor reductions, memory O(N + M)) or "multiscale"
            (block-sparse reductions on coarse-to-fine clusters, :mod:`lazygeom.ot.multiscale`;
            sinkhorn only).

    Shapes:
        ``loss(x, y)`` with uniform weights or ``loss(a, x, b, y)``: x ``(N, D)``, a ``(N,)``,
        y ``(M, D)``, b ``(M,)`` give a scalar; batched x ``(B, N, D)``, a ``(B, N)`` give ``(B,)``.

    Attributes:
        options: the Sinkhorn options, one checked value
            (:class:`lazygeom.ot.solver.options.SinkhornOptions`); the attributes ``p``, ``blur``,
            ``reach``, ``diameter``, ``scaling``, ``truncate``, ``cost``, ``cluster_scale``,
            ``debias``, ``verbose`` and ``backend`` read it, and setting one (``loss.blur = 0.01``)
            replaces it by a checked copy.
        last_run: what the last call ran (:class:`lazygeom.ot.losses.registry.LossRun`: the
            solver, "tensorized", "online" or "multiscale"; the engine backend of its reductions;
            the ε-schedule, the residual and the timing), or None before the first call. The
            call itself returns the loss (a tensor), as GeomLoss's.

    Example:
        >>> loss = SamplesLoss("sinkhorn", p=2, blur=0.01, scaling=0.9)
        >>> L = loss(x, y); L.backward()
        >>> loss.last_run.solver, loss.last_run.engine, loss.last_run.n_iter
    """

    p = _Option()
    blur = _Option()
    reach = _Option()
    diameter = _Option()
    scaling = _Option()
    truncate = _Option()
    cost = _Option()
    cluster_scale = _Option()
    debias = _Option()
    verbose = _Option()
    backend = _Option()

    def __init__(
        self,
        loss: str = "sinkhorn",
        p: int = 2,
        blur: float = 0.05,
        reach: Optional[float] = None,
        diameter: Optional[float] = None,
        scaling: float = 0.5,
        truncate: Optional[float] = 5,
        cost: Optional[CostFn] = None,
        kernel: Optional[CostFn] = None,
        cluster_scale: Optional[float] = None,
        debias: bool = True,
        potentials: bool = False,
        verbose: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        kind = LOSSES.get(loss)
        if kind is None:
            raise ValueError(f"unknown loss {loss!r}; expected one of {tuple(LOSSES)}")
        options = _loss_options(kind, dict(p=p, blur=blur, reach=reach, diameter=diameter, scaling=scaling, cost=cost,
                                           debias=debias, backend=backend, truncate=truncate,
                                           cluster_scale=cluster_scale, verbose=verbose))
        if backend not in ("auto",) + kind.solvers:
            raise ValueError(f"backend={backend!r} does not compute the {loss!r} loss; it takes one of "
                             f"{('auto',) + kind.solvers} (backend='multiscale': the 'sinkhorn' loss only)")
        if "kernel" in kind.reads:
            kernel_function(loss, options.blur, kernel)  # the kernel's own checks
        self.loss, self.kernel, self.potentials = loss, kernel, potentials
        self.options = options
        self._sync_cost()
        self.last_run: Optional[LossRun] = None

    def __setattr__(self, name: str, value: Any) -> None:
        """Options go through their descriptors (a checked copy of :attr:`options`), the rest to torch."""
        if isinstance(getattr(type(self), name, None), _Option):
            object.__setattr__(self, name, value)
            if name == "cost":
                self._sync_cost()
        else:
            super().__setattr__(name, value)

    def _sync_cost(self) -> None:
        # a cost that is a torch module is a submodule, as GeomLoss's: its parameters, .to(), state_dict
        if isinstance(self.options.cost, torch.nn.Module):
            self._modules["cost"] = self.options.cost
        else:
            self._modules.pop("cost", None)

    def extra_repr(self) -> str:
        """The loss, p, blur, reach (when set), scaling and backend, for ``repr(loss)``."""
        reach = f", reach={self.reach}" if self.reach is not None else ""
        return (f"loss={self.loss!r}, p={self.p}, blur={self.blur}{reach}, scaling={self.scaling}, "
                f"backend={self.backend!r}")

    def forward(self, *args: torch.Tensor) -> Output:
        """The loss between two measures, or their potentials.

        Args:
            *args: ``(x, y)`` (uniform weights) or ``(a, x, b, y)``.

        Returns:
            The loss value(s), or ``(F, G)`` with ``potentials=True``; :attr:`last_run` records
            what ran.
        """
        m = parse_measures(args, "SamplesLoss")
        t0 = time.perf_counter()
        out, run = LOSSES[self.loss].compute(m, self.options, name=self.loss, kernel=self.kernel,
                                             potentials=self.potentials)
        self.last_run = dataclasses.replace(run, seconds=time.perf_counter() - t0)
        if self.verbose:
            print(self.last_run.describe())
        return (m.unbatch(out[0]), m.unbatch(out[1])) if isinstance(out, tuple) else m.unbatch(out)


def _loss_options(kind: LossKind, values: dict[str, Any]) -> SinkhornOptions:
    """The options of a loss: the arguments it reads are checked, the others accepted and ignored.

    As GeomLoss does, ``SamplesLoss("gaussian", p=3)`` is a Gaussian kernel norm: an argument the
    loss does not read is kept when it is valid, else replaced by its default.
    """
    try:
        return SinkhornOptions(**values)
    except (TypeError, ValueError):
        # an error about an argument the loss reads is raised here; others fall back to defaults
        return SinkhornOptions(**{k: v for k, v in values.items() if k in kind.reads})


__all__ = ["LOSSES", "LossRun", "SamplesLoss"]
