"""The soft-min operators that the Sinkhorn loop (and the Hausdorff divergence) run on.

For a pair of point clouds (rows ``u_i``, columns ``v_j``) and a log-weight vector ``h_j``,

    softmin_ε(C, h)_i = −ε log Σ_j exp(h_j − C(u_i, v_j) / ε),

a LogSumExp reduction over j. The loop never sees how it is computed; it calls
``softmin(eps, pair, h, grad=...)`` with ``pair`` one of

- ``"xy"``: rows x, columns y (potentials on x, from a function on y),
- ``"yx"``: rows y, columns x,
- ``"xx"`` and ``"yy"``: the self-interactions of the debiased divergence,

and ``grad``:

- ``"none"``: no autograd graph (the loop itself runs under ``torch.no_grad``);
- ``"rows"``: the cost keeps its gradient with respect to the row points only (the final
  extrapolation step: envelope theorem, see :mod:`lazygeom.ot.solver.loop`); the caller detaches h;
- ``"all"``: gradients flow to both point clouds and to h (the Hausdorff divergence).

Shapes: x ``(B, N, D)``, y ``(B, M, D)``; h ``(B, #columns)``; the output is ``(B, #rows)``.

Two implementations: :class:`TensorizedSoftmin` stores the dense ``(B, N, M)`` cost matrices
(fast for small problems: no per-call overhead), :class:`OnlineSoftmin` evaluates LazyTensor
LogSumExp reductions (memory O(N + M), compiled kernels). :func:`choose_backend` is the policy
behind ``backend="auto"``.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from ...lazy.lazytensor import LazyTensor
from . import marginals
from .._lazy import lazy_j
from ..costs import GroundCost
from .engine import DENSE, engine_for

PAIRS = ("xy", "yx", "xx", "yy")
GRAD_MODES = ("none", "rows", "all")

#: ``backend="auto"`` is tensorized up to this many cost entries B·N·M: torch's parallel grain
#: size, below which its elementwise ops and logsumexp run on one thread. Measured on 2 CPU cores
#: (SamplesLoss forward + backward, float32, D = 3, blur 0.05): dense torch is 2-8x faster than the
#: online reductions up to about 200 x 200 points (the reductions' fixed cost per call, ~0.5 ms,
#: dominates), even up to 300 x 300 on an idle machine; but above the grain size every dense op
#: starts an OpenMP team, and on a busy machine a 300 x 300 solve then ran 50x slower. The online
#: reductions (one parallel region per call, memory O(N + M)) take over from here.
TENSORIZED_MAX_ENTRIES = 32_768

BACKENDS = ("auto", "tensorized", "online", "multiscale")


class SoftminOperator(Protocol):
    """What the Sinkhorn loop needs: ``softmin(eps, pair, h, grad)`` -> ``(B, #rows)``.

    An operator may also have ``step(eps, pair, u, v, u_log, v_log, grad)``: both sides' updates
    of a Jacobi step in one pass (:mod:`lazygeom.ot.solver.marginals`; ``grad="rows"`` for the final
    step), or None where it does not apply; and the attributes ``solver`` (its name:
    "tensorized", "online", "multiscale") and ``engine`` (the engine backend that runs its
    reductions, :mod:`lazygeom.ot.solver.engine`), which the loop records in its result.
    """

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        """``softmin_ε(C_pair, h)``: ``(B, #rows)`` from h ``(B, #columns)`` (module docstring).

        Args:
            eps: the temperature ε.
            pair: "xy", "yx", "xx" or "yy" (rows, columns).
            h: the log-weights plus potentials of the columns, ``(B, #columns)``.
            grad: "none", "rows" or "all" (module docstring).

        Returns:
            ``(B, #rows)``: −ε log Σ_j exp(h_j − C_ij / ε).
        """
        ...


def check_softmin_call(pair: str, grad: str) -> None:
    """Check a soft-min call's ``pair`` and ``grad`` (module docstring).

    Args:
        pair: one of :data:`PAIRS`.
        grad: one of :data:`GRAD_MODES`.

    Raises:
        ValueError: an unknown pair or gradient mode.
    """
    if pair not in PAIRS:
        raise ValueError(f"softmin: pair must be one of {PAIRS}, got {pair!r}")
    if grad not in GRAD_MODES:
        raise ValueError(f"softmin: grad must be one of {GRAD_MODES}, got {grad!r}")


class _PointPairs:
    """The two point clouds of an operator and its cost, and which of them carry gradients."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: GroundCost) -> None:
        self.x, self.y, self.cost = x, y, cost

    def points(self, pair: str, grad: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' and the columns' points of ``pair``, detached as ``grad`` asks.

        Args:
            pair: "xy", "yx", "xx" or "yy".
            grad: "none" (both detached), "rows" (the columns detached) or "all".

        Returns:
            ``(rows, cols)``, ``(B, #rows, D)`` and ``(B, #columns, D)``.
        """
        rows = self.x if pair[0] == "x" else self.y
        cols = self.x if pair[1] == "x" else self.y
        if grad == "none":
            return rows.detach(), cols.detach()
        if grad == "rows":
            return rows, cols.detach()
        return rows, cols


class TensorizedSoftmin(_PointPairs):
    """Dense soft-min: the ``(B, N, M)`` cost matrices are computed once (without graph) and reused.

    Memory: up to three B·N·M matrices (xy, xx, yy) plus one temporary per call.

    Args:
        x: the first point cloud ``(B, N, D)``.
        y: the second point cloud ``(B, M, D)``.
        cost: the ground cost; its ``dense`` callable builds the cost matrices.
    """

    solver = "tensorized"
    engine = DENSE

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: GroundCost) -> None:
        super().__init__(x, y, cost)
        self._C: dict[str, torch.Tensor] = {}

    def _matrix(self, pair: str) -> torch.Tensor:
        if pair == "yx":  # the transpose of C_xy: no second matrix
            return self._matrix("xy").transpose(1, 2)
        if pair not in self._C:
            with torch.no_grad():
                self._C[pair] = self.cost.matrix(*self.points(pair, "none"))
        return self._C[pair]

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        """The soft-min over the dense cost matrix (:meth:`SoftminOperator.__call__`).

        Args:
            eps: the temperature ε (a new ε reuses the stored matrices).
            pair: which cost matrix: "xy", "xx", "yy", or "yx" (the transpose of the stored "xy").
            h: ``(B, #columns)`` log-weights plus potentials / ε.
            grad: "none" (the stored matrices, no graph), or "rows" and "all" (a fresh matrix
                with the graph of the points that need it).

        Returns:
            ``(B, #rows)``: −ε log Σ_j exp(h_j − C_ij / ε), a dense logsumexp.
        """
        check_softmin_call(pair, grad)
        if grad != "none":
            C = self.cost.matrix(*self.points(pair, grad))
            return -eps * (h[:, None, :] - C / eps).logsumexp(2)
        with torch.no_grad():
            return -eps * (h[:, None, :] - self._matrix(pair) / eps).logsumexp(2)


class OnlineSoftmin(_PointPairs):
    """Soft-min as a LazyTensor LogSumExp reduction: nothing of size N·M is stored.

    Args:
        x: the first point cloud ``(B, N, D)``.
        y: the second point cloud ``(B, M, D)``.
        cost: the ground cost; its ``lazy`` callable builds the formula from ``x_i, y_j``.
        engine_backend: the lazygeom reduction backend (``None``: the configured one, see
            :func:`lazygeom.config`).
    """

    solver = "online"

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: GroundCost,
                 engine_backend: Optional[str] = None) -> None:
        super().__init__(x, y, cost)
        self.engine_backend = engine_backend
        self._engine: Optional[str] = None
        self._cached: dict[str, tuple[torch.Tensor, torch.Tensor, LazyTensor]] = {}
        self._blocks: dict = {}  # the dense pair blocks of ``step``, per pair

    def _formula(self, pair: str, grad: str, h: torch.Tensor, inv_eps: torch.Tensor) -> LazyTensor:
        C_ij = self.cost.formula(*self.points(pair, grad))
        # 1 / ε is a kernel *parameter*, not a constant: one compiled kernel serves every ε
        return lazy_j(h[..., None]) - C_ij * LazyTensor(inv_eps)

    @property
    def engine(self) -> str:
        """The engine backend that runs the reductions (:func:`lazygeom.ot.solver.engine.engine_for`)."""
        if self._engine is None:
            self._engine = engine_for(self.engine_backend, self.x, self.y)
        return self._engine

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        """The soft-min as a LazyTensor LogSumExp reduction (:meth:`SoftminOperator.__call__`).

        Args:
            eps: the temperature, a parameter of the compiled formula (one kernel serves every ε).
            pair: the formula's rows and columns.
            h: ``(B, #columns)``, the j-variable; without graph it is copied into the buffer of
                the pair's cached formula.
            grad: "none" (the cached formula) or "rows" and "all" (a new formula whose points keep
                their graph).

        Returns:
            ``(B, #rows)`` soft-mins from one reduction over j.
        """
        check_softmin_call(pair, grad)
        if grad != "none":
            inv_eps = torch.full((1,), 1.0 / eps, dtype=h.dtype, device=h.device)
            F = self._formula(pair, grad, h, inv_eps)
            return -eps * F.logsumexp(dim=-2, backend=self.engine_backend)[..., 0]
        with torch.no_grad():
            # The loop calls each pair ~10 times with new (h, ε): build the formula once, over
            # buffers updated in place (building it costs about as much as a 300 x 300 reduction).
            if pair not in self._cached:
                h_buf = torch.empty_like(h)
                inv_eps = torch.empty(1, dtype=h.dtype, device=h.device)
                self._cached[pair] = (h_buf, inv_eps, self._formula(pair, grad, h_buf, inv_eps))
            h_buf, inv_eps, F = self._cached[pair]
            h_buf.copy_(h)
            inv_eps.fill_(1.0 / eps)
            return -eps * F.logsumexp(dim=-2, backend=self.engine_backend)[..., 0]

    def step(self, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor, u_log: torch.Tensor,
             v_log: torch.Tensor, grad: str = "none") -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Both updates of a Jacobi step over every pair, in one pass (:mod:`lazygeom.ot.solver.marginals`).

        Args:
            eps: the temperature ε.
            pair: "xy", "xx" or "yy" (rows, columns).
            u: ``(B, #rows)`` the rows' potentials.
            v: ``(B, #columns)`` the columns' potentials (u itself for a self-interaction).
            u_log: the rows' log-weights, shaped like u.
            v_log: the columns' log-weights, shaped like v.
            grad: "none", or "rows" for the final (differentiable) step.

        Returns:
            ``(softmin(pair, v_log + v/ε), softmin(reversed pair, u_log + u/ε))`` (the second
            None for a self-interaction), or None where the pass does not apply or its sums
            leave the safe range.
        """
        rows, cols = self.points(pair, "none")
        if not marginals.applies(rows, cols, self.cost.p, self.engine_backend):
            return None
        if pair not in self._blocks:
            self._blocks[pair] = marginals.dense_blocks(rows.shape[0], rows.shape[1], cols.shape[1], pair[0] == pair[1])
        return marginals.jacobi_step(self, self._blocks[pair], eps, pair, u, v, u_log, v_log, grad)


#: ``backend="auto"`` uses the multiscale solver (Sinkhorn, built-in cost) from this many points
#: per cloud, in dimension at most ``MULTISCALE_MAX_DIM``. Measured with benchmarks/ot.py (2 CPU
#: cores, D = 3, blur 0.05, forward + backward): online / multiscale 0.06 / 0.13 s at 2,000
#: points, 0.25 / 0.26 s at 5,000, 0.92 / 0.66 s at 10,000, 21 / 3.7 s at 50,000 (grid clusters);
#: with the kd-tree clusters (2026-12-02, another machine): 0.29 / 0.33 s at 5,000, 1.08 / 0.58 s
#: at 10,000, 27.5 / 4.1 s at 50,000.
MULTISCALE_MIN_POINTS = 8_000
MULTISCALE_MAX_DIM = 3


def choose_backend(backend: str, B: int, N: int, M: int, D: Optional[int] = None,
                   multiscale: bool = False) -> str:
    """The solver behind ``backend`` for a problem of B batches of N x M points in dimension D.

    Args:
        backend: "auto", "tensorized", "online" or "multiscale".
        B: the number of problems of the batch.
        N: the points of the first cloud (per problem).
        M: the points of the second cloud.
        D: the points' dimension (for "auto"'s multiscale rule).
        multiscale: whether the problem can use the multiscale solver (Sinkhorn with a built-in
            cost); "multiscale" is refused otherwise.

    Returns:
        The solver's name. "auto" gives "tensorized" when B·N·M <= TENSORIZED_MAX_ENTRIES, else
        "multiscale" when allowed, D <= MULTISCALE_MAX_DIM and min(N, M) >= MULTISCALE_MIN_POINTS
        (cluster hierarchies pay off in low dimension, for large clouds), else "online".

    Raises:
        ValueError: an unknown name, or "multiscale" where it cannot be used.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "multiscale" and not multiscale:
        raise ValueError(
            "backend='multiscale' solves Sinkhorn problems with the built-in costs (p=1 or p=2, no "
            "cost=...); use backend='online' (memory O(N + M)) or 'auto'"
        )
    if backend == "auto":
        if B * N * M <= TENSORIZED_MAX_ENTRIES:
            return "tensorized"
        if multiscale and D is not None and D <= MULTISCALE_MAX_DIM and min(N, M) >= MULTISCALE_MIN_POINTS:
            return "multiscale"
        return "online"
    return backend


def make_softmin(backend: str, x: torch.Tensor, y: torch.Tensor, cost: GroundCost,
                 engine_backend: Optional[str] = None) -> SoftminOperator:
    """The soft-min operator of a resolved backend.

    Args:
        backend: "tensorized" or "online".
        x: ``(B, N, D)`` points.
        y: ``(B, M, D)`` points.
        cost: the ground cost.
        engine_backend: the online operator's reduction backend (None: the configured one).

    Returns:
        A :class:`TensorizedSoftmin` or an :class:`OnlineSoftmin`.
    """
    if backend == "tensorized":
        return TensorizedSoftmin(x, y, cost)
    if backend == "online":
        return OnlineSoftmin(x, y, cost, engine_backend)
    raise ValueError(f"make_softmin: expected 'tensorized' or 'online', got {backend!r}")


__all__ = [
    "BACKENDS", "OnlineSoftmin", "SoftminOperator", "TENSORIZED_MAX_ENTRIES", "TensorizedSoftmin",
    "check_softmin_call", "choose_backend", "make_softmin",
]
