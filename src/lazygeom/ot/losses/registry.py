"""The losses of :class:`lazygeom.ot.SamplesLoss`, one table: name -> implementation, options, solvers.

Each entry of :data:`LOSSES` computes one loss between checked, batched measures from the
module's :class:`lazygeom.ot.solver.options.SinkhornOptions`, and says what it ran in a
:class:`LossRun`:

- ``"sinkhorn"``: the Sinkhorn divergence S_ε (or OT_ε without debiasing) from the potentials of
  :func:`lazygeom.ot.solve.solve_measures` (:mod:`lazygeom.ot.losses.divergence`);
- ``"hausdorff"``: H_ε = ½⟨α − β, s_β − s_α⟩, four soft-mins (:mod:`lazygeom.ot.losses.hausdorff`);
- ``"energy"``, ``"gaussian"``, ``"laplacian"``: the kernel norm ½⟨α − β, k ⋆ (α − β)⟩
  (:mod:`lazygeom.ot.losses.kernels`).

``reads`` lists the ``SamplesLoss`` arguments a loss uses (the others are accepted and ignored,
as in GeomLoss) and ``solvers`` the solvers its ``backend`` may name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from .._inputs import Measures
from ..costs import CostFn
from ..solve import solve_measures
from ..solver.engine import DENSE, engine_for
from ..solver.options import SinkhornOptions
from ..solver.softmin import choose_backend, make_softmin
from .divergence import sinkhorn_cost
from .hausdorff import hausdorff_loss, hausdorff_potentials
from .kernels import KERNELS, kernel_function, kernel_loss

#: a loss value ``(B,)`` (or a scalar), or the potentials ``(F, G)``
Output = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LossRun:
    """What one call of a :class:`lazygeom.ot.SamplesLoss` ran (``loss.last_run``).

    Attributes:
        loss: the loss's name.
        solver: "tensorized", "online" or "multiscale".
        engine: the engine backend of the reductions: "cpu", "reference", "triton", or "torch"
            for the tensorized solver's dense operations (:mod:`lazygeom.ot.solver.engine`).
        sizes: ``(B, N, M)``, the batch and the two clouds' sizes.
        eps_history: the ε-schedule of the Sinkhorn loop (empty for the one-pass losses).
        residual: how much the Sinkhorn loop's final update moved the potentials, in units of ε
            (None for the one-pass losses).
        one_pass_steps: the Sinkhorn updates that ran as one pass over the plan's pairs
            (:attr:`lazygeom.ot.SinkhornResult.one_pass_steps`).
        seconds: the forward computation's wall-clock time.
    """

    loss: str
    solver: str
    engine: str
    sizes: tuple[int, int, int]
    eps_history: tuple[float, ...] = ()
    residual: Optional[float] = None
    one_pass_steps: int = 0
    seconds: float = 0.0

    @property
    def n_iter(self) -> int:
        """The Sinkhorn loop's number of steps (0 for the one-pass losses)."""
        return len(self.eps_history)

    def describe(self) -> str:
        """One line for ``verbose=True``: solver, engine, sizes, iterations and time."""
        B, N, M = self.sizes
        if self.eps_history:
            detail = (f"{self.n_iter} iterations, eps {self.eps_history[0]:.3g} -> {self.eps_history[-1]:.3g}, "
                      f"residual {self.residual:.2g} eps")
        else:
            detail = "one pass"
        return (f"SamplesLoss({self.loss!r}): backend {self.solver!r}, engine {self.engine!r}, B={B}, N={N}, M={M}, "
                f"{detail}, {self.seconds:.3f} s (forward)")


#: ``compute(m, options, name=..., kernel=..., potentials=...) -> (output, run)``
Compute = Callable[..., tuple[Output, LossRun]]


@dataclass(frozen=True)
class LossKind:
    """One entry of :data:`LOSSES`.

    Attributes:
        compute: ``compute(m, options, *, name, kernel, potentials) -> (output, run)``: the loss
            (or its potentials, shaped ``(B, N)`` and ``(B, M)``) between batched measures.
        reads: the ``SamplesLoss`` arguments the loss uses.
        solvers: the solvers its ``backend`` may name ("auto" always).
    """

    compute: Compute
    reads: tuple[str, ...]
    solvers: tuple[str, ...]


def _sinkhorn(m: Measures, options: SinkhornOptions, *, name: str, kernel: Optional[CostFn],
              potentials: bool) -> tuple[Output, LossRun]:
    res = solve_measures(m, options)
    if potentials:
        out: Output = (res.f - res.f_aa, res.g - res.g_bb) if options.debias else (res.f, res.g)
    else:
        out = sinkhorn_cost(m.a, m.b, res)
    return out, LossRun(name, res.solver, res.engine, m.sizes, res.eps_history, res.residual, res.one_pass_steps)


def _hausdorff(m: Measures, options: SinkhornOptions, *, name: str, kernel: Optional[CostFn],
               potentials: bool) -> tuple[Output, LossRun]:
    solver = choose_backend(options.backend, *m.sizes)
    softmin = make_softmin(solver, m.x, m.y, options.ground_cost(), options.engine_backend)
    if potentials:
        out: Output = hausdorff_potentials(softmin, options.eps, m.a, m.b)
    else:
        out = hausdorff_loss(softmin, options.eps, m.a, m.b)
    return out, LossRun(name, solver, softmin.engine, m.sizes)


def _kernel(m: Measures, options: SinkhornOptions, *, name: str, kernel: Optional[CostFn],
            potentials: bool) -> tuple[Output, LossRun]:
    solver = choose_backend(options.backend, *m.sizes)
    k = kernel_function(name, options.blur, kernel)
    out = kernel_loss(k, solver, m.a, m.x, m.b, m.y, potentials=potentials, engine_backend=options.engine_backend)
    engine = DENSE if solver == "tensorized" else engine_for(options.engine_backend, m.x, m.y)
    return out, LossRun(name, solver, engine, m.sizes)


_DENSE_OR_ONLINE = ("tensorized", "online")
_KERNEL = LossKind(_kernel, ("blur", "kernel", "potentials", "verbose", "backend"), _DENSE_OR_ONLINE)

#: the losses of ``SamplesLoss``, by name
LOSSES: dict[str, LossKind] = {
    "sinkhorn": LossKind(
        _sinkhorn,
        ("p", "blur", "reach", "diameter", "scaling", "truncate", "cost", "cluster_scale", "debias", "potentials",
         "verbose", "backend"),
        _DENSE_OR_ONLINE + ("multiscale",),
    ),
    "hausdorff": LossKind(_hausdorff, ("p", "blur", "cost", "potentials", "verbose", "backend"), _DENSE_OR_ONLINE),
    **{name: _KERNEL for name in KERNELS},
}


__all__ = ["LOSSES", "LossKind", "LossRun", "Output"]
