"""The soft-min operator of one multiscale level: LogSumExp reductions over the kept pairs only.

On a level with nodes x_i (rows) and y_j (columns), the Sinkhorn loop's soft-min

    softmin_ε(C, h)_i = −ε log Σ_{j : (I(i), J(j)) kept} exp(h_j − C(x_i, y_j) / ε)

sums over the children of the parent pairs (I, J) that the truncation kept
(:mod:`lazygeom.ot.multiscale.truncation`): block-sparse ``ranges`` whose clusters are the parent
nodes (:func:`lazygeom.sparse.from_pairs`). Where the compiled pass applies, both updates of a
Jacobi step are one pass over the same pairs (:mod:`lazygeom.ot.solver.marginals`), each row also
skipping the column nodes whose exponents its own bound puts below ``floor_z`` = −truncate.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ...backends.base import PairBlocks
from ...lazy.lazytensor import LazyTensor
from ...sparse import pair_slices, swap_axes
from .._lazy import lazy_j
from ..costs import GroundCost
from ..solver import marginals
from ..solver.engine import engine_for
from ..solver.softmin import check_softmin_call


def forward_ranges(ranges_rows: torch.Tensor, ranges_cols: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   merge: bool = True) -> tuple:
    """Block-sparse ranges for a reduction over j run *without autograd*.

    The transposed half, which only reductions over i (and gradients) read, is left empty. The
    solver's own soft-min operators, which are differentiated, use
    :func:`lazygeom.cluster.from_pairs`.

    Args:
        ranges_rows: ``(P, 2)`` the point ranges of the row clusters.
        ranges_cols: ``(Q, 2)`` the point ranges of the column clusters.
        rows: the row cluster of each kept pair.
        cols: the column cluster of each kept pair.
        merge: merge the touching column ranges of a row cluster.

    Returns:
        The 6-tuple of ranges (:class:`lazygeom.backends.Call`).
    """
    slices, red = pair_slices(ranges_rows, ranges_cols, rows, cols, merge)
    zeros = torch.zeros(ranges_cols.shape[0], dtype=torch.int64, device=ranges_cols.device)
    return (ranges_rows, slices, red, ranges_cols, zeros, torch.zeros(0, 2, dtype=torch.int64, device=zeros.device))


def block_softmin(rows: torch.Tensor, cols: torch.Tensor, h: torch.Tensor, eps: float, ranges: tuple,
                  cost: GroundCost, engine_backend: Optional[str]) -> torch.Tensor:
    """``−ε log Σ_j exp(h_j − C(rows_i, cols_j)/ε)`` over the pairs of ``ranges``.

    Args:
        rows: ``(n, D)`` the row points.
        cols: ``(m, D)`` the column points.
        h: ``(m,)`` the columns' log-weights plus potentials / ε.
        eps: the temperature ε.
        ranges: the block-sparse 6-tuple of the pairs.
        cost: the ground cost.
        engine_backend: the reduction backend (None: the configured one).

    Returns:
        ``(n,)`` the soft-min of every row.
    """
    inv_eps = torch.full((1,), 1.0 / eps, dtype=h.dtype, device=h.device)
    F = lazy_j(h[:, None]) - cost.formula(rows, cols) * LazyTensor(inv_eps)
    return -eps * F.logsumexp(dim=1, ranges=ranges, backend=engine_backend)[:, 0]


class BlockSparseSoftmin:
    """The soft-min operator of one level: LogSumExp reductions over the kept pairs only.

    Args:
        x, y: ``(n, D)`` and ``(m, D)`` the level's nodes (sorted by parent).
        cost: the ground cost.
        ranges: ``{"xy": ..., "xx": ..., "yy": ...}`` block-sparse 6-tuples, and optionally "yx"
            (rows y; by default the transpose of "xy").
        engine_backend: the lazygeom reduction backend (None: the configured one).
        blocks: the pairs of the one-pass steps, per pair (:func:`lazygeom.ot.solver.marginals.sparse_blocks`);
            none: the steps run as two LogSumExp reductions.
        floor_z: the one-pass steps' per-row skip threshold on the exponents (−truncate).

    Shapes follow :class:`lazygeom.ot.solver.softmin.SoftminOperator` with a batch of one: h ``(1, #cols)``.
    """

    solver = "multiscale"

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: GroundCost, ranges: dict,
                 engine_backend: Optional[str] = None, blocks: Optional[dict[str, PairBlocks]] = None,
                 floor_z: float = -math.inf):
        self.x, self.y, self.cost, self.engine_backend = x, y, cost, engine_backend
        self.ranges = dict(ranges)
        if "yx" not in self.ranges:  # "yx" visits the same pairs as "xy" unless given its own
            self.ranges["yx"] = swap_axes(ranges["xy"])
        self.blocks, self.floor_z = blocks or {}, floor_z
        self._cached: dict[str, tuple[torch.Tensor, torch.Tensor, LazyTensor]] = {}

    @property
    def engine(self) -> str:
        """The engine backend that runs the reductions (:func:`lazygeom.ot.solver.engine.engine_for`)."""
        return engine_for(self.engine_backend, self.x, self.y)

    def step(self, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor, u_log: torch.Tensor,
             v_log: torch.Tensor, grad: str = "none") -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Both updates of a Jacobi step in one pass over ``blocks[pair]``.

        The pass visits the kept pairs (a self-interaction's symmetric closure), each row skipping
        the column nodes below ``floor_z`` (:mod:`lazygeom.ot.solver.marginals`). The gradients of
        ``grad="rows"`` sum over the same pairs as the values.

        Args:
            eps: the temperature ε.
            pair: "xy", "xx" or "yy".
            u: ``(1, #rows)`` the rows' potentials.
            v: ``(1, #columns)`` the columns' potentials.
            u_log: the rows' log-weights, shaped like u.
            v_log: the columns' log-weights, shaped like v.
            grad: "none", or "rows" for the final step.

        Returns:
            The two updates (the second None for a self-interaction), or None without blocks or
            when the pass's sums leave the safe range.
        """
        if pair not in self.blocks:
            return None
        return marginals.jacobi_step(self, self.blocks[pair], eps, pair, u, v, u_log, v_log, grad, self.floor_z)

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        """The soft-min over the kept pairs (:meth:`lazygeom.ot.solver.softmin.SoftminOperator.__call__`).

        Args:
            eps: the temperature ε.
            pair: "xy", "yx", "xx" or "yy"; each visits its own ranges ("yx": the g-update's pairs).
            h: ``(1, #columns)`` the level's column nodes' log-weights plus potentials / ε.
            grad: "none", "rows" (the columns detached) or "all".

        Returns:
            ``(1, #rows)``, sums over the kept pairs only.
        """
        check_softmin_call(pair, grad)
        rows = self.x if pair[0] == "x" else self.y
        cols = self.x if pair[1] == "x" else self.y
        if grad != "none":
            if grad == "rows":
                cols = cols.detach()
            return block_softmin(rows, cols, h[0], eps, self.ranges[pair], self.cost, self.engine_backend)[None]
        with torch.no_grad():
            if pair not in self._cached:  # one formula per pair, over buffers (as OnlineSoftmin)
                h_buf = torch.empty_like(h[0])
                inv_eps = torch.empty(1, dtype=h.dtype, device=h.device)
                F = lazy_j(h_buf[:, None]) - self.cost.formula(rows.detach(), cols.detach()) * LazyTensor(inv_eps)
                self._cached[pair] = (h_buf, inv_eps, F)
            h_buf, inv_eps, F = self._cached[pair]
            h_buf.copy_(h[0])
            inv_eps.fill_(1.0 / eps)
            out = F.logsumexp(dim=1, ranges=self.ranges[pair], backend=self.engine_backend)
            return -eps * out[:, 0][None]


__all__ = ["BlockSparseSoftmin", "block_softmin", "forward_ranges"]
