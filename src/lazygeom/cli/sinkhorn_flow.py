"""The optimal-transport part of ``lazygeom demo``: a Sinkhorn gradient flow between two 2D shapes.

A crescent of N points flows towards a filled heart of N points along the gradient of the
Sinkhorn divergence (Feydy et al. 2019, figure 1):

    x_i ← x_i − lr · ∇_{x_i} S_ε(α, β) / a_i,

where ∇_{x_i} S / a_i = ∇f(x_i) − ∇f_aa(x_i) is a displacement (for p = 2 and a small blur,
about x_i − T(x_i) with T the transport map): after t = steps · lr ≈ 5 time units the crescent
has become the heart. The figure shows the cloud at six times over the target; the check asks the
divergence to fall below 5% of its initial value.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..ot.losses.samples_loss import SamplesLoss

Say = Callable[[str], None]


@dataclass(frozen=True)
class FlowResult:
    """What the gradient-flow demo did.

    Attributes:
        n_points: points per shape.
        steps: gradient steps.
        losses: the divergence before each step, and after the last one.
        step_seconds: wall-clock time of each forward + backward + update (the first one
            includes compiling the kernels).
        figure: the path of the saved figure, or None (no matplotlib, or not asked).
        ok: the divergence fell below 5% of its initial value.
        solver: the solver that ran (``SamplesLoss.last_run.solver``: "tensorized", "online" or
            "multiscale").
        engine: the engine backend of its reductions ("torch" for the tensorized solver).
    """

    n_points: int
    steps: int
    losses: tuple[float, ...]
    step_seconds: tuple[float, ...]
    figure: Optional[str]
    ok: bool
    solver: str = ""
    engine: str = ""


def default_figure_path() -> str:
    """Where the figure goes unless told: the system's temporary folder (not the working tree)."""
    return os.path.join(tempfile.gettempdir(), "lazygeom-demo", "ot_flow.png")


def _rejection_sample(n: int, inside, box: float, gen: torch.Generator) -> torch.Tensor:
    """The first n of points drawn uniformly in the square [-box, box]² that fall in the region {inside(p)}."""
    out, have = [], 0
    while have < n:
        p = (torch.rand(4 * n, 2, generator=gen) * 2 - 1) * box
        p = p[inside(p)]
        out.append(p)
        have += len(p)
    return torch.cat(out)[:n]


def crescent(n: int, gen: torch.Generator) -> torch.Tensor:
    """A crescent moon: the unit disk minus a disk of radius 0.8 shifted right, within [0.05, 0.45] x [0.3, 0.7].

    Args:
        n: the number of points.
        gen: the random generator.

    Returns:
        ``(n, 2)`` float32 points, uniform in the crescent.
    """

    def inside(p):
        return ((p**2).sum(1) <= 1) & (((p - torch.tensor([0.45, 0.0])) ** 2).sum(1) > 0.8**2)

    return 0.2 * _rejection_sample(n, inside, 1.0, gen) + torch.tensor([0.25, 0.5])


def heart(n: int, gen: torch.Generator) -> torch.Tensor:
    """A filled heart, (x² + y² − 1)³ ≤ x² y³, scaled into about [0.55, 0.95] x [0.3, 0.7].

    Args:
        n: the number of points.
        gen: the random generator (one sample of the square after another, as :func:`crescent`).

    Returns:
        ``(n, 2)`` float32 points, uniform in the heart.
    """

    def inside(p):
        x, y = p[:, 0], p[:, 1]
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0

    return 0.17 * _rejection_sample(n, inside, 1.5, gen) + torch.tensor([0.75, 0.5])


def _save_figure(path: str, target: torch.Tensor, snapshots: list[tuple[float, torch.Tensor]],
                 say: Say) -> Optional[str]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        say("  matplotlib is not installed: no figure (pip install 'lazygeom[plot]')")
        return None
    fig = Figure(figsize=(12, 6))
    FigureCanvasAgg(fig)
    cols = math.ceil(len(snapshots) / 2)
    for k, (t, pts) in enumerate(snapshots):
        ax = fig.add_subplot(2, cols, k + 1)
        ax.scatter(target[:, 0], target[:, 1], s=4, c="tab:red", alpha=0.25, linewidths=0)
        ax.scatter(pts[:, 0], pts[:, 1], s=4, c="tab:blue", linewidths=0)
        ax.set_title(f"t = {t:.2f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0.25, 0.75)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Sinkhorn gradient flow (lazygeom.ot.SamplesLoss, p=2): crescent (blue) -> heart (red)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def sinkhorn_flow_part(n_points: int = 2000, steps: int = 50, lr: float = 0.1, blur: float = 0.01,
                       seed: int = 0, figure: Optional[str] = None, say: Say = print) -> FlowResult:
    """Run the gradient flow, print timings, save the figure (``figure=""`` to skip it).

    Args:
        n_points: N = M, points per shape.
        steps: number of gradient steps of size ``lr`` (time t = steps · lr).
        lr: the step size, in units of the displacement ∇S / a_i.
        blur: the Sinkhorn blur (ε = blur²).
        seed: the seed of the point samples.
        figure: where to save the PNG (default :func:`default_figure_path`); ``""``: no figure.
        say: where to print.

    Returns:
        What ran and how it went (:class:`FlowResult`).
    """
    gen = torch.Generator().manual_seed(seed)
    x, y = crescent(n_points, gen), heart(n_points, gen)
    a = torch.full((n_points,), 1.0 / n_points)
    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.5)
    say(f"Sinkhorn gradient flow: {n_points:,} + {n_points:,} points in 2D, blur {blur}, {steps} steps of {lr} "
        "(float32, SamplesLoss backend 'auto')")
    shots = {0, steps // 20, steps // 10, steps // 5, steps // 2, steps}
    snapshots: list[tuple[float, torch.Tensor]] = []
    losses, times = [], []
    for k in range(steps + 1):
        if k in shots:
            snapshots.append((k * lr, x.clone()))
        t0 = time.perf_counter()
        xk = x.clone().requires_grad_(True)
        S = loss(xk, y)
        losses.append(S.item())
        if k == steps:
            break
        (g,) = torch.autograd.grad(S, xk)
        x = x - lr * g / a[:, None]
        times.append(time.perf_counter() - t0)
    ok = losses[-1] <= 0.05 * losses[0]
    rest = times[1:] or times
    run = loss.last_run
    say(f"  solver {run.solver!r} (engine {run.engine!r}, {run.n_iter} Sinkhorn steps a call)")
    say(f"  first step {times[0] * 1e3:.0f} ms (with a fresh cache: compiling the kernels), then "
        f"{sum(rest) / len(rest) * 1e3:.1f} ms per step (forward + backward), {sum(times):.2f} s in all")
    say(f"  divergence {losses[0]:.4g} -> {losses[-1]:.4g} ({losses[-1] / losses[0]:.1%} of the start): "
        + ("OK" if ok else "FAIL (expected below 5%)"))
    path = None
    if figure != "":
        path = _save_figure(figure or default_figure_path(), y, snapshots, say)
        if path:
            say(f"  figure: {path}")
    return FlowResult(n_points, steps, tuple(losses), tuple(times), path, ok, run.solver, run.engine)


__all__ = ["FlowResult", "crescent", "default_figure_path", "heart", "sinkhorn_flow_part"]
