"""Multiscale Sinkhorn: ε-scaling on a coarse-to-fine hierarchy with block-sparse kernel truncation.

ALGORITHMS.md section 4; Schmitzer 2019 ("Stabilized sparse scaling algorithms for entropy
regularized transport problems"); Feydy's thesis, section 3.3 (algorithms 3.5-3.6).

Both clouds are encoded as trees of clusters (:mod:`lazygeom.ot.hierarchy`: kd-tree nodes by
default, or grid cells): levels of centroids with typical sides s_0 > s_1 > ... and the points
themselves (s = 0). The annealed loop of
:mod:`lazygeom.ot.sinkhorn` runs unchanged; before each update at temperature ε = σ^p it asks
:class:`Multiscale` (its ``refine`` hook) whether to move to a finer level: the level used at
blur σ is the coarsest one whose cells are no larger than about σ (a cloud blurred at σ does not
see details below σ; ``LEVEL_RATIO``), and the points themselves at the target ε. Moving from level k
to k + 1 ("descending"):

1. truncation (:mod:`lazygeom.ot.truncation`): among the node pairs visited at level k, keep
   those whose children may have a plan exponent (f + g − C)/ε above −truncate;
2. extrapolation: the potentials of level k + 1 are one soft-min of level k's potentials (the
   same formula as an update, e.g. f(x) = λ softmin_ε(C(x, ·), log b + g/ε) over level k's
   columns), restricted to the kept pairs;
3. the level's reductions only visit the children of kept pairs: block-sparse ``ranges`` whose
   clusters are the nodes of level k (:func:`lazygeom.cluster.from_pairs`); on CPU both updates
   of a step are one pass over those pairs (:mod:`lazygeom.ot.marginals`), each row also
   skipping the column nodes its own bound puts below −truncate.

As ε decreases on a level (and before the final step, and every ``RETRUNCATE_EVERY`` updates at
a fixed ε), the level's block pairs are chosen again from its current potentials, among the
children of the pairs kept one level up: the bound then covers exactly the next update's
soft-mins (:meth:`Multiscale._retruncate`), so that every update drops only terms below
exp(−truncate) times the largest, and pairs dropped early come back if the potentials move.

Each level's work is then about (its points) x (the points within a few σ of their transport
image), instead of N·M. The final extrapolation (the differentiable step) runs on the points,
block-sparse as well, and the potentials go back to the caller's order. A batch of B problems is
one problem whose coarsest level is the B batch items, with block-diagonal pairs.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ...sparse import from_pairs, pair_slices, swap_axes
from ...lazy.lazytensor import LazyTensor
from .._lazy import lazy_i, lazy_j
from ..solver import marginals
from ..costs import GroundCost
from .hierarchy import Tree, build_trees
from ..solver.loop import Potentials, SinkhornResult, damping
from ..solver.softmin import _check
from .truncation import (NodeMaps, all_candidates, block_pairs, child_blocks, select_pairs, unique_pairs,
                         unit_ranges)

#: at a fixed ε (extra iterations), the kept pairs are chosen again every this many updates
RETRUNCATE_EVERY = 5
#: a level is used while its cells are at most this many times the blur σ = ε^(1/p). Measured
#: (benchmarks/ot.py, N = 50k): 2 instead of 1 moves one annealing step off the points, 25% faster;
#: the updates at the target ε always run on the points (see ``Multiscale.level_for``).
LEVEL_RATIO = 2.0

Pairs = tuple[torch.Tensor, torch.Tensor]


def _forward_ranges(ranges_rows: torch.Tensor, ranges_cols: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    merge: bool = True) -> tuple:
    """Block-sparse ranges for a reduction over j run *without autograd*: the transposed half,
    which only reductions over i (and gradients) read, is left empty. The solver's own
    soft-min operators, which are differentiated, use :func:`lazygeom.cluster.from_pairs`."""
    slices, red = pair_slices(ranges_rows, ranges_cols, rows, cols, merge)
    return (ranges_rows, slices, red, ranges_cols, torch.zeros(ranges_cols.shape[0], dtype=torch.int64),
            torch.zeros(0, 2, dtype=torch.int64))


def _softmin(rows: torch.Tensor, cols: torch.Tensor, h: torch.Tensor, eps: float, ranges, cost: GroundCost,
             engine_backend: Optional[str]) -> torch.Tensor:
    """``−ε log Σ_j exp(h_j − C(rows_i, cols_j)/ε)`` over the pairs of ``ranges``: ``(n_rows,)``."""
    inv_eps = torch.full((1,), 1.0 / eps, dtype=h.dtype)
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

    Shapes follow :class:`lazygeom.ot.softmin.SoftminOperator` with a batch of one: h ``(1, #cols)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: GroundCost, ranges: dict, engine_backend=None,
                 blocks: Optional[dict] = None, floor_z: float = -math.inf):
        self.x, self.y, self.cost, self.engine_backend = x, y, cost, engine_backend
        self.ranges = dict(ranges)
        if "yx" not in self.ranges:  # "yx" visits the same pairs as "xy" unless given its own
            self.ranges["yx"] = swap_axes(ranges["xy"])
        self.blocks, self.floor_z = blocks or {}, floor_z
        self._cached: dict[str, tuple[torch.Tensor, torch.Tensor, LazyTensor]] = {}

    def step(self, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor, u_log: torch.Tensor,
             v_log: torch.Tensor, grad: str = "none") -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Both updates of a Jacobi step in one pass over ``blocks[pair]`` (the kept pairs, a
        self-interaction's symmetric closure), each row skipping the column nodes below
        ``floor_z`` (:mod:`lazygeom.ot.marginals`); None without blocks or out of range. The
        gradients of ``grad="rows"`` sum over the same pairs as the values."""
        if pair not in self.blocks:
            return None
        return marginals.jacobi_step(self, self.blocks[pair], eps, pair, u, v, u_log, v_log, grad, self.floor_z)

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        _check(pair, grad)
        rows = self.x if pair[0] == "x" else self.y
        cols = self.x if pair[1] == "x" else self.y
        if grad != "none":
            if grad == "rows":
                cols = cols.detach()
            return _softmin(rows, cols, h[0], eps, self.ranges[pair], self.cost, self.engine_backend)[None]
        with torch.no_grad():
            if pair not in self._cached:  # one formula per pair, over buffers (as OnlineSoftmin)
                h_buf, inv_eps = torch.empty_like(h[0]), torch.empty(1, dtype=h.dtype)
                F = lazy_j(h_buf[:, None]) - self.cost.formula(rows.detach(), cols.detach()) * LazyTensor(inv_eps)
                self._cached[pair] = (h_buf, inv_eps, F)
            h_buf, inv_eps, F = self._cached[pair]
            h_buf.copy_(h[0])
            inv_eps.fill_(1.0 / eps)
            out = F.logsumexp(dim=1, ranges=self.ranges[pair], backend=self.engine_backend)
            return -eps * out[:, 0][None]


class Multiscale:
    """The state of a multiscale solve: the trees, the current level, the kept pairs; the loop's hook.

    Args:
        x, a, y, b: batched points ``(B, N, D)`` and weights ``(B, N)`` (the fine level keeps x's
            and y's autograd graphs).
        p: 1 or 2, the built-in cost |x − y| or |x − y|²/2.
        cost: the matching :class:`lazygeom.ot.costs.GroundCost`.
        eps_list: the ε-schedule (its first value picks the starting level).
        rho: ρ = reach^p or None.
        truncate: τ: pairs whose children carry less than exp(−τ) of the largest kernel values
            are dropped (None: ``inf``, keep all pairs).
        cluster_scale: the grid side of the finest cluster level; None: kd-tree levels
            (:func:`lazygeom.ot.hierarchy.build_trees`).
        labels: optional user cluster labels ``(lab_x, lab_y)`` for the finest cluster level.
        verbose: print the levels and, per update, the level, ε and the kept fractions.
        debias: whether the loop also computes the self-interaction potentials (pairs xx, yy).
    """

    def __init__(self, x, a, y, b, p: int, cost: GroundCost, eps_list, rho: Optional[float],
                 truncate: Optional[float], cluster_scale: Optional[float], labels=None, verbose: bool = False,
                 debias: bool = True, engine_backend: Optional[str] = None):
        self.B = x.shape[0]
        self.p, self.cost, self.rho, self.verbose = p, cost, rho, verbose
        self.truncate = math.inf if truncate is None else float(truncate)
        self.engine_backend = engine_backend
        self.tx, self.ty = build_trees(x, a, y, b, cluster_scale, labels)
        self.scales = [lev.scale for lev in self.tx.levels]
        root = torch.arange(self.B)
        self.kept: dict[str, Pairs] = {k: (root, root) for k in (("xy", "xx", "yy") if debias else ("xy",))}
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
        """The coarsest level whose cluster side is at most LEVEL_RATIO x the blur σ = ε^(1/p); the points at the target ε.

        The updates at the target temperature run on the points, so that more iterations there
        (``extra_iterations``) converge to the fine problem's solution, not to the clusters'.
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
        """``(1, n)`` log-weights of the current level's nodes."""
        return self.tx.levels[self.level].weights.log()[None], self.ty.levels[self.level].weights.log()[None]

    def softmin(self) -> BlockSparseSoftmin:
        """The soft-min operator of the current level (pairs: children of the kept parent pairs).

        Built once per level and choice of kept pairs (``_op`` is reset when they change).
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
        """The starting level's operator and log-weights."""
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

    def __call__(self, eps: float, eps_prev: float, pots: Potentials, final: bool):
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

    def _maps(self, nodes, cols: torch.Tensor, col_node: Optional[torch.Tensor], pot: torch.Tensor, log_w: torch.Tensor,
              ranges, eps: float, lam: float) -> NodeMaps:
        """f̂, T and the best partners at ``nodes``, as reductions over the columns ``cols``.

        ``col_node`` maps each column to its node on the other side (None: the columns are nodes).
        """
        h = log_w + pot[0] / eps
        inv_eps = torch.full((1,), 1.0 / eps, dtype=h.dtype)
        F = lazy_j(h[:, None]) - self.cost.formula(nodes.points.detach(), cols) * LazyTensor(inv_eps)
        lse = F.logsumexp(dim=1, ranges=ranges, backend=self.engine_backend)[:, 0]
        T = F.sumsoftmaxweight(lazy_j(cols), dim=1, ranges=ranges, backend=self.engine_backend)
        best = F.argmax(dim=1, ranges=ranges, backend=self.engine_backend)[:, 0]
        best = best if col_node is None else col_node[best]
        return NodeMaps(nodes.points.detach(), nodes.radius, nodes.extent, -lam * eps * lse, T, best)

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
            mP = self._maps(P, Q.points.detach(), None, v, Q.weights.log(), op.ranges[pair], eps, lam)
            mQ = mP if pair[0] == pair[1] else \
                self._maps(Q, P.points.detach(), None, u, P.weights.log(), op.ranges["yx"], eps, lam)
            rows, cols, n = select_pairs(mP, mQ, self.kept[pair], self._parents(tr, k), self._parents(tc, k),
                                         eps, lam, self.truncate, self.p, self.cost, self.engine_backend)
            kept[pair], examined = (rows, cols), examined + n
        self._say(f"multiscale: truncation at level {k} (eps {eps:.4g}): kept "
                  f"{sum(r.numel() for r, _ in kept.values())} of {examined} node pairs")

        def extrapolate(t_rows: Tree, t_cols: Tree, rows, cols, pot):
            # the next level's row points against this level's column nodes
            ranges = _forward_ranges(t_rows.levels[k].children, unit_ranges(t_cols.levels[k].size), rows, cols)
            h = t_cols.levels[k].weights.log() + pot[0] / eps
            return lam * _softmin(t_rows.levels[k + 1].points.detach(), t_cols.levels[k].points.detach(), h, eps,
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

    def _block_max(self, maps: NodeMaps, pairs: Pairs, row_groups: torch.Tensor, col_groups: torch.Tensor,
                   col_children: torch.Tensor, pts: torch.Tensor, pot: torch.Tensor, lam: float,
                   thr: float) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The child pairs (I, J) of ``pairs`` whose bound on max over i in I, j in J of f̂(x_i) + h_j − C(x_i, y_j)
        is not below ``thr``, and the number of child pairs.

        One per-range max-reduction (:func:`lazygeom.ot.truncation.child_blocks`): rows are the row
        nodes I (the node's f̂, T, extents), and each row lists the points j under each candidate
        partner J, with their current potentials h (module docstring of
        :mod:`lazygeom.ot.truncation` for the margin). Returns ``(I, J, n_candidates)``.
        """
        ranges, J = child_blocks(pairs, row_groups, col_groups, col_children)
        X = maps.points
        F = lazy_i(maps.f[:, None]) + lazy_j(pot[0][:, None]) - self.cost.formula(X, pts)
        if self.p == 2:  # Σ_d |∂ₓ(f̂(x) − C(x, y_j))_d| h_I,d, with ∂ₓ = λ(X_I − T_I) − X_I + y_j at X_I
            grad = lazy_i(lam * (X - maps.T) - X) + lazy_j(pts)
            F = F + (grad.abs() * lazy_i(maps.extent)).sum(-1)
        else:
            F = F + 2 * lazy_i(maps.radius[:, None])
        bound = F.max(dim=1, ranges=ranges, per_range=True, backend=self.engine_backend)[:, 0]
        return (*block_pairs(ranges, J, X.shape[0], ~(bound < thr)), bound.numel())  # NaN: kept

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
                ranges = _forward_ranges(groups, span, *pairs)
                col_node = torch.repeat_interleave(torch.arange(col_nodes.size),
                                                   col_nodes.children[:, 1] - col_nodes.children[:, 0])
                return self._maps(nodes, pts.points.detach(), col_node, pot, pts.weights.log(), ranges, eps, lam)

            mP = maps(Pn, gr, Qn, gc, Qp, v, (I0, J0))
            mQ = mP if pair[0] == pair[1] else maps(Qn, gc, Pn, gr, Pp, u, (J0, I0))
            i1, j1, n = self._block_max(mP, (I0, J0), gr, gc, Qn.children, Qp.points.detach(), v, lam, thr)
            j2, i2, _ = self._block_max(mQ, (J0, I0), gc, gr, Pn.children, Pp.points.detach(), u, lam, thr)
            # every row node keeps its best partner for the f-update, every column node for the
            # g-update; ``kept`` (the union) generates the next level's candidates
            rows_side = unique_pairs(torch.cat((i1, torch.arange(Pn.size))), torch.cat((j1, mP.best)), Qn.size)
            cols_side = unique_pairs(torch.cat((i2, mQ.best)), torch.cat((j2, torch.arange(Qn.size))), Qn.size)
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
        """The fine-level result with its potentials in the caller's ``(B, N)`` / ``(B, M)`` order."""
        ux = lambda t: None if t is None else self.tx.unsort(t, self.B)  # noqa: E731
        uy = lambda t: None if t is None else self.ty.unsort(t, self.B)  # noqa: E731
        return SinkhornResult(ux(res.f), uy(res.g), ux(res.f_aa), uy(res.g_bb), res.eps, res.rho,
                              res.eps_history, res.residual)


__all__ = ["BlockSparseSoftmin", "Multiscale"]
