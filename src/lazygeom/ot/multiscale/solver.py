"""Multiscale Sinkhorn: ε-scaling on a coarse-to-fine hierarchy with block-sparse kernel truncation.

docs/mathematics.md section 5; Schmitzer 2019 ("Stabilized sparse scaling algorithms for entropy
regularized transport problems"); Feydy's thesis, section 3.3 (algorithms 3.5-3.6).

Both clouds are encoded as trees of clusters (:mod:`lazygeom.ot.multiscale.hierarchy`: kd-tree nodes by
default, or grid cells): levels of centroids with typical sides s_0 > s_1 > ... and the points
themselves (s = 0). The annealed loop of
:mod:`lazygeom.ot.solver.loop` runs unchanged; before each update at temperature ε = σ^p it asks
:class:`Multiscale` (its ``refine`` hook) whether to move to a finer level: the level used at
blur σ is the coarsest one whose cells are no larger than about σ (a cloud blurred at σ does not
see details below σ; ``LEVEL_RATIO``), and the points themselves at the target ε. Moving from level k
to k + 1 ("descending"):

1. truncation (:mod:`lazygeom.ot.multiscale.truncation`): among the node pairs visited at level k, keep
   those whose children may have a plan exponent (f + g − C)/ε above −truncate;
2. extrapolation: the potentials of level k + 1 are one soft-min of level k's potentials (the
   same formula as an update, e.g. f(x) = λ softmin_ε(C(x, ·), log b + g/ε) over level k's
   columns), restricted to the kept pairs;
3. the level's reductions only visit the children of kept pairs: block-sparse ``ranges`` whose
   clusters are the nodes of level k (:func:`lazygeom.cluster.from_pairs`), in the level's
   soft-min operator (:mod:`lazygeom.ot.multiscale.operator`); on CPU both updates of a step are
   one pass over those pairs (:mod:`lazygeom.ot.solver.marginals`), each row also skipping the column
   nodes its own bound puts below −truncate.

As ε decreases on a level (and before the final step, and every ``RETRUNCATE_EVERY`` updates at
a fixed ε), the level's block pairs are chosen again from its current potentials, among the
children of the pairs kept one level up: the bound then covers exactly the next update's
soft-mins (:meth:`Multiscale._retruncate`, with the bounds of
:func:`lazygeom.ot.multiscale.truncation.point_block_pairs`), so that every update drops only terms below
exp(−truncate) times the largest, and pairs dropped early come back if the potentials move.

Each level's work is then about (its points) x (the points within a few σ of their transport
image), instead of N·M. The final extrapolation (the differentiable step) runs on the points,
block-sparse as well, and the potentials go back to the caller's order. A batch of B problems is
one problem whose coarsest level is the B batch items, with block-diagonal pairs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import torch

from ...sparse import from_pairs, swap_axes
from .._inputs import Measures
from ..solver import marginals
from ..solver.loop import Potentials, SinkhornResult, damping
from ..solver.options import SinkhornOptions
from .hierarchy import Tree, build_trees
from .operator import BlockSparseSoftmin, block_softmin, forward_ranges
from .truncation import all_candidates, node_maps, point_block_pairs, select_pairs, unique_pairs, unit_ranges

#: at a fixed ε (extra iterations), the kept pairs are chosen again every this many updates
RETRUNCATE_EVERY = 5
#: a level is used while its cells are at most this many times the blur σ = ε^(1/p). Measured
#: (benchmarks/ot.py, N = 50k): 2 instead of 1 moves one annealing step off the points, 25% faster;
#: the updates at the target ε always run on the points (see ``Multiscale.level_for``).
LEVEL_RATIO = 2.0

Pairs = tuple[torch.Tensor, torch.Tensor]


class Multiscale:
    """The state of a multiscale solve: the trees, the current level, the kept pairs; the loop's hook.

    Args:
        m: the batched measures: points ``(B, N, D)`` and weights ``(B, N)`` (the fine level keeps
            x's and y's autograd graphs).
        options: the solve's options; it reads p (1 or 2: the built-in cost |x − y| or
            |x − y|²/2), reach (ρ = reach^p), truncate (τ: pairs whose children carry less than
            exp(−τ) of the largest kernel values are dropped; None: keep all pairs),
            cluster_scale and labels (the finest cluster level,
            :func:`lazygeom.ot.multiscale.hierarchy.build_trees`), verbose (print the levels and,
            per update, the level, ε and the kept fractions), debias (the self-interaction pairs
            xx and yy) and engine_backend.
        eps_list: the ε-schedule (its first value picks the starting level).
    """

    def __init__(self, m: Measures, options: SinkhornOptions, eps_list: Sequence[float]):
        self.B = m.x.shape[0]
        self.p, self.cost, self.rho, self.verbose = options.p, options.ground_cost(), options.rho, options.verbose
        self.truncate = math.inf if options.truncate is None else float(options.truncate)
        self.engine_backend = options.engine_backend
        self.tx, self.ty = build_trees(m.x, m.a, m.y, m.b, options.cluster_scale, options.labels)
        self.scales = [lev.scale for lev in self.tx.levels]
        root = torch.arange(self.B, device=m.x.device)
        pairs = ("xy", "xx", "yy") if options.debias else ("xy",)
        self.kept: dict[str, Pairs] = {k: (root, root) for k in pairs}
        self.parent_kept: dict[str, Pairs] = {}  # the kept pairs one level up
        # after a re-truncation: the pairs each side's update needs, (rows' side, columns' side),
        # subsets of ``kept`` (their union); each reduction visits only its own (_build_softmin)
        self.sides: dict[str, tuple[Pairs, Pairs]] = {}
        self.level = 0  # the kept pairs are those of the parents of the current level's nodes
        self.log: list[str] = []
        self._say("multiscale: levels (coarse to fine) " + ", ".join(
            f"{lx.size}x{ly.size} points @ {s:.3g}" for lx, ly, s in zip(self.tx.levels, self.ty.levels, self.scales)))
        self.visited_fraction = 1.0
        self.eps_target = float(eps_list[-1])
        self.truncated_at = math.inf
        self.updates_since = 0
        self._op: Optional[BlockSparseSoftmin] = None
        start = self.level_for(eps_list[0])
        while self.level < start:  # levels above the start: keep every pair
            self._keep_all()

    # --- levels ---------------------------------------------------------------------------------

    def level_for(self, eps: float) -> int:
        """The coarsest level whose cluster side is at most LEVEL_RATIO x the blur σ = ε^(1/p).

        The updates at the target temperature run on the points (the finest level), so that more
        iterations there (``extra_iterations``) converge to the fine problem's solution, not to
        the clusters'.

        Args:
            eps: the temperature ε.

        Returns:
            The index of the level (0: the coarsest).
        """
        if eps <= self.eps_target:
            return len(self.scales) - 1
        sigma = eps ** (1.0 / self.p)
        return next(k for k, s in enumerate(self.scales) if s <= LEVEL_RATIO * sigma)

    def _parents(self, tree: Tree, k: int) -> torch.Tensor:
        return tree.root_children if k == 0 else tree.levels[k - 1].children

    def _trees(self, pair: str) -> tuple[Tree, Tree]:
        return (self.tx if pair[0] == "x" else self.ty), (self.tx if pair[1] == "x" else self.ty)

    def _say(self, msg: str) -> None:
        self.log.append(msg)
        if self.verbose:
            print(msg)

    def _keep_all(self) -> None:
        """Move one level down without truncation: every pair of the current level's nodes is kept."""
        k = self.level
        for pair in self.kept:
            tr, tc = self._trees(pair)
            self.parent_kept[pair] = self.kept[pair]
            self.kept[pair] = all_candidates(self.kept[pair], self._parents(tr, k), self._parents(tc, k))
        self.sides = {}
        self.level = k + 1
        self._op = None

    def log_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(1, n)`` and ``(1, m)`` log-weights of the current level's nodes."""
        return self.tx.levels[self.level].weights.log()[None], self.ty.levels[self.level].weights.log()[None]

    def softmin(self) -> BlockSparseSoftmin:
        """The soft-min operator of the current level (pairs: children of the kept parent pairs).

        Built once per level and choice of kept pairs (``_op`` is reset when they change).

        Returns:
            The level's :class:`lazygeom.ot.multiscale.operator.BlockSparseSoftmin`.
        """
        if self._op is None:
            self._op = self._build_softmin()
        return self._op

    def _reduced_pairs(self) -> dict[str, Pairs]:
        """The parent pairs each reduction visits: "xy" (rows x), "yx" (as (x, y) pairs), "xx", "yy".

        After a re-truncation, each update's own side (the f-update's rows, the g-update's
        columns; the self-interactions update their rows only); else the kept pairs for both.
        """
        out = {}
        for pair, kept in self.kept.items():
            rows_side, cols_side = self.sides.get(pair, (kept, kept))
            out[pair] = rows_side
            if pair == "xy":
                out["yx"] = cols_side
        return out

    def _build_softmin(self) -> BlockSparseSoftmin:
        k = self.level
        ranges = {}
        for pair, (rows, cols) in self._reduced_pairs().items():
            tr, tc = self._trees("xy" if pair == "yx" else pair)
            r = from_pairs(self._parents(tr, k), self._parents(tc, k), rows, cols, merge=True)
            ranges[pair] = swap_axes(r) if pair == "yx" else r
        x, y = self.tx.levels[k].points, self.ty.levels[k].points
        blocks = {}
        if marginals.applies(x, y, self.cost.p, self.engine_backend):
            # the one-pass steps visit the kept pairs (the union of both sides' bounds); each row
            # then skips the column nodes below -truncate by a per-point bound
            for pair, (rows, cols) in self.kept.items():
                tr, tc = self._trees(pair)
                blocks[pair] = marginals.sparse_blocks(self._parents(tr, k), self._parents(tc, k), rows, cols,
                                                       tc.levels[k].points.detach(), pair[0] == pair[1])
        return BlockSparseSoftmin(x, y, self.cost, ranges, self.engine_backend, blocks, -self.truncate)

    def start(self) -> tuple[BlockSparseSoftmin, torch.Tensor, torch.Tensor]:
        """The starting level's operator and log-weights (the loop's first arguments)."""
        self._report_pairs()
        return (self.softmin(), *self.log_weights())

    def _report_pairs(self) -> None:
        k = self.level
        fractions = {}
        for pair, (rows, cols) in self._reduced_pairs().items():
            tr, tc = self._trees("xy" if pair == "yx" else pair)
            rr, rc = self._parents(tr, k), self._parents(tc, k)
            visited = int(((rr[rows, 1] - rr[rows, 0]) * (rc[cols, 1] - rc[cols, 0])).sum())
            fractions[pair] = visited * self.B / (tr.levels[k].size * tc.levels[k].size)
        self.visited_fraction = fractions["xy"]
        detail = ", ".join(f"{pair} {100 * f:.3g}%" for pair, f in fractions.items())
        self._say(f"multiscale: level {k}: {self.tx.levels[k].size} x {self.ty.levels[k].size} points, "
                  f"{self.kept['xy'][0].numel()} block pairs, point pairs within each update's bound: {detail}")

    # --- the loop's hook ------------------------------------------------------------------------

    def __call__(self, eps: float, eps_prev: float, pots: Potentials,
                 final: bool) -> Optional[tuple[BlockSparseSoftmin, torch.Tensor, torch.Tensor, Potentials]]:
        """The loop's hook (:class:`lazygeom.ot.solver.loop.Refiner`): descend or re-truncate before an update.

        Descends level by level, truncating and extrapolating the potentials; on a level, chooses
        its pairs again when ε has decreased since the last choice, before the final step and
        every ``RETRUNCATE_EVERY`` updates.

        Args:
            eps: the next update's temperature; its level is :meth:`level_for` ``(eps)``.
            eps_prev: the last update's temperature (the level's own record decides instead).
            pots: ``(f, g, f_aa, g_bb)`` on the current level.
            final: the next update is the final extrapolation: descend to the points.

        Returns:
            None when the level and its pairs stay, else ``(operator, a_log, b_log, pots)`` on
            the new ones.
        """
        target = len(self.scales) - 1 if final else self.level_for(eps)
        lam = damping(eps, self.rho)
        changed = False
        with torch.no_grad():
            while self.level < target:
                pots = self._descend(pots, eps, lam)
                changed = True
            self.updates_since += 1
            truncating = self.level > 0 and math.isfinite(self.truncate)
            if truncating and not changed and (final or eps < self.truncated_at * (1 - 1e-9)
                                               or self.updates_since >= RETRUNCATE_EVERY):
                self._retruncate(pots, eps, lam)
                changed = True
            if changed:
                self.updates_since = 0
        self._say(f"multiscale: eps {eps:.4g} at level {self.level}")
        return (self.softmin(), *self.log_weights(), pots) if changed else None

    def _pair_potentials(self, pots: Potentials) -> dict:
        f, g, f_aa, g_bb = pots
        out = {"xy": (f, g)}
        if f_aa is not None:
            out.update(xx=(f_aa, f_aa), yy=(g_bb, g_bb))
        return out

    def _descend(self, pots: Potentials, eps: float, lam: float) -> Potentials:
        """Truncate at the current level, extrapolate the potentials to the next one (at ε)."""
        k = self.level
        op = self.softmin()
        kept, examined = {}, 0
        for pair, (u, v) in self._pair_potentials(pots).items():
            tr, tc = self._trees(pair)
            if not math.isfinite(self.truncate):  # truncate=None: every child pair is kept
                kept[pair] = all_candidates(self.kept[pair], self._parents(tr, k), self._parents(tc, k))
                examined += kept[pair][0].numel()
                continue
            P, Q = tr.levels[k], tc.levels[k]
            mP = node_maps(P, Q.points.detach(), None, v, Q.weights.log(), op.ranges[pair], eps, lam, self.cost,
                           self.engine_backend)
            mQ = mP if pair[0] == pair[1] else node_maps(Q, P.points.detach(), None, u, P.weights.log(),
                                                         op.ranges["yx"], eps, lam, self.cost, self.engine_backend)
            rows, cols, n = select_pairs(mP, mQ, self.kept[pair], self._parents(tr, k), self._parents(tc, k),
                                         eps, lam, self.truncate, self.p, self.cost, self.engine_backend)
            kept[pair], examined = (rows, cols), examined + n
        self._say(f"multiscale: truncation at level {k} (eps {eps:.4g}): kept "
                  f"{sum(r.numel() for r, _ in kept.values())} of {examined} node pairs")

        def extrapolate(t_rows: Tree, t_cols: Tree, rows, cols, pot):
            # the next level's row points against this level's column nodes
            cols_k = t_cols.levels[k]
            ranges = forward_ranges(t_rows.levels[k].children, unit_ranges(cols_k.size, rows.device), rows, cols)
            h = cols_k.weights.log() + pot[0] / eps
            return lam * block_softmin(t_rows.levels[k + 1].points.detach(), t_cols.levels[k].points.detach(), h, eps,
                                  ranges, self.cost, self.engine_backend)[None]

        f, g, f_aa, g_bb = pots
        rows, cols = kept["xy"]
        new_f = extrapolate(self.tx, self.ty, rows, cols, g)
        new_g = extrapolate(self.ty, self.tx, cols, rows, f)
        if f_aa is not None:
            f_aa = extrapolate(self.tx, self.tx, *kept["xx"], f_aa)
            g_bb = extrapolate(self.ty, self.ty, *kept["yy"], g_bb)
        self.parent_kept.update({pair: self.kept[pair] for pair in kept})
        self.kept.update(kept)
        self.sides = {}
        self.level = k + 1
        self._op = None
        self.truncated_at = eps
        self._report_pairs()
        return new_f, new_g, f_aa, g_bb

    def _retruncate(self, pots: Potentials, eps: float, lam: float) -> None:
        """Choose the block pairs of the current level again, from its current potentials, at ε.

        The candidates are the children of the pairs kept one level up, so pairs dropped earlier
        can come back. A pair (I, J) of parent nodes is kept for the next update of f (rows) when
        it may give any of its point pairs a plan exponent above −τ·ε: the bound uses f̂ at X_I
        (a reduction over the points) with the *current* g at the points y_j — what that
        update's soft-min actually sums; symmetrically for g. Each update then reduces over its
        own set (``sides``; at 5·10^4 points: xy 26% and yx 30% of the point pairs instead of
        31% for both), their union (``kept``) generates the next candidates.
        """
        k = self.level
        before = after = 0
        thr = -self.truncate * eps
        for pair, (u, v) in self._pair_potentials(pots).items():
            tr, tc = self._trees(pair)
            Pn, Qn = tr.levels[k - 1], tc.levels[k - 1]
            Pp, Qp = tr.levels[k], tc.levels[k]
            gr, gc = self._parents(tr, k - 1), self._parents(tc, k - 1)
            I0, J0 = self.parent_kept[pair]

            def maps(nodes, groups, col_nodes, col_groups, pts, pot, pairs):
                # the row nodes against the column points under their candidate partners: one
                # contiguous run of points per kept parent pair (the points under the partner)
                span = torch.stack((col_nodes.children[col_groups[:, 0], 0],
                                    col_nodes.children[col_groups[:, 1] - 1, 1]), dim=1)
                ranges = forward_ranges(groups, span, *pairs)
                col_node = torch.repeat_interleave(torch.arange(col_nodes.size, device=span.device),
                                                   col_nodes.children[:, 1] - col_nodes.children[:, 0])
                return node_maps(nodes, pts.points.detach(), col_node, pot, pts.weights.log(), ranges, eps, lam,
                                 self.cost, self.engine_backend)

            mP = maps(Pn, gr, Qn, gc, Qp, v, (I0, J0))
            mQ = mP if pair[0] == pair[1] else maps(Qn, gc, Pn, gr, Pp, u, (J0, I0))
            i1, j1, n = point_block_pairs(mP, (I0, J0), (gr, gc), Qn.children, Qp.points.detach(), v, lam, thr,
                                          self.cost, self.engine_backend)
            j2, i2, _ = point_block_pairs(mQ, (J0, I0), (gc, gr), Pn.children, Pp.points.detach(), u, lam, thr,
                                          self.cost, self.engine_backend)
            # every row node keeps its best partner for the f-update, every column node for the
            # g-update; ``kept`` (the union) generates the next level's candidates
            every_P, every_Q = torch.arange(Pn.size, device=i1.device), torch.arange(Qn.size, device=j2.device)
            rows_side = unique_pairs(torch.cat((i1, every_P)), torch.cat((j1, mP.best)), Qn.size)
            cols_side = unique_pairs(torch.cat((i2, mQ.best)), torch.cat((j2, every_Q)), Qn.size)
            self.sides[pair] = (rows_side, cols_side)
            rows = torch.cat((rows_side[0], cols_side[0]))
            cols = torch.cat((rows_side[1], cols_side[1]))
            self.kept[pair] = unique_pairs(rows, cols, Qn.size)
            self._op = None
            before, after = before + n, after + self.kept[pair][0].numel()
        self.truncated_at = eps
        self._say(f"multiscale: truncation at level {k - 1} (eps {eps:.4g}): kept {after} of {before} node pairs")
        self._report_pairs()

    def result(self, res: SinkhornResult) -> SinkhornResult:
        """The fine-level result with its potentials in the caller's ``(B, N)`` / ``(B, M)`` order.

        Args:
            res: the loop's result, on the sorted points of the finest level.

        Returns:
            The same result (solver, schedule, engine...) with unsorted potentials.
        """
        def ux(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else self.tx.unsort(t, self.B)

        def uy(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else self.ty.unsort(t, self.B)

        return dataclasses.replace(res, f=ux(res.f), g=uy(res.g), f_aa=ux(res.f_aa), g_bb=uy(res.g_bb))


__all__ = ["LEVEL_RATIO", "Multiscale", "RETRUNCATE_EVERY"]
