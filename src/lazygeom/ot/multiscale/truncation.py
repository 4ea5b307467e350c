"""Kernel truncation: which cluster pairs still carry transport mass at the current temperature.

At temperature ε the entropic plan is π(x, y) = a(x) b(y) exp(e(x, y)/ε) with
e(x, y) = f(x) + g(y) − C(x, y) ≤ ~0. Given potentials on the nodes of one level (P rows, Q
columns), a pair of nodes (I, J) is *kept* for the next finer level when some pair of their
children may have e ≥ −τ·ε (τ = ``truncate``); pairs whose children all lie below are dropped:
their kernel values are below exp(−τ) times the largest ones (Schmitzer 2019; Feydy's thesis,
section 3.3).

The potentials used are the *functions* that the next level starts from: the extrapolations
f̂(x) = λ softmin_ε(C(x, ·), log b + g/ε) and ĝ(y) likewise, evaluated (with their gradients) at
the nodes. The bound on a pair of children (X_I + dx, Y_J + dy), |dx| ≤ r_I, |dy| ≤ r_J:

- p = 2, C = |x − y|²/2: f̂ − |x|²/2 is concave (−λ times a log-sum-exp of affine functions,
  minus (1−λ)|x|²/2), hence e(X+dx, Y+dy) ≤ e(X, Y) + ⟨∂ₓe, dx⟩ + ⟨∂ᵧe, dy⟩ + ⟨dx, dy⟩
  ≤ e(X, Y) + Σ_d (|∂ₓe_d| h_I,d + |∂ᵧe_d| h_J,d + h_I,d h_J,d), h the per-axis extents of the
  children (``Level.extent``; tighter than the radii for grid cells), with ∂ₓe = λ(X − T(X)) − (X − Y),
  T(X) = the softmin's barycentre of the Q's (the barycentric map), and symmetrically ∂ᵧe.
  This margin is exact to first order: a pair far from the transport map's image gets a large
  margin, one near it a small one.
- p = 1, C = |x − y|: f̂, ĝ and C are 1-Lipschitz: e varies by at most 2(r_I + r_J).

Every node also keeps its best partner (the node of the other side with the largest kernel
term), so that no row is left without columns. f̂, T and the best partners are block-sparse
reductions (:mod:`lazygeom.ot.multiscale`). The candidates are the children pairs of the pairs
kept one level up; the bounds of all of them come from *one per-range reduction*
(:class:`lazygeom.backends.Call`): its rows are the row nodes, grouped by parent, and each row
lists one range per candidate partner (:func:`child_blocks`), so that the ranges cost
O(#kept parent pairs × children) to build and nothing of size (#P)·(#Q) is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from ...backends.base import row_range_lists
from ...backends import policy
from ...lazy.lazytensor import LazyTensor
from ...sparse import unique_pairs
from .._lazy import lazy_i, lazy_j
from ..costs import GroundCost
from .hierarchy import Level

#: candidate pairs handled at once (memory: a few tensors of this many entries)
CHUNK = 1 << 21


def candidates(parent_pairs: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor,
               chunk: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The child pairs (i, j) of the kept parent pairs (I, J), in chunks of about ``chunk`` pairs.

    Args:
        parent_pairs: ``(I, J)`` index tensors of the kept pairs of the level above.
        rows: ``(n_I, 2)`` children ranges of the row parents.
        cols: ``(n_J, 2)`` children ranges of the column parents.
        chunk: about how many child pairs to yield at a time (at least one parent pair's).

    Yields:
        ``(i, j)`` index tensors of child pairs, parent pair after parent pair.
    """
    I, J = parent_pairs
    si, ci = rows[I, 0], rows[I, 1] - rows[I, 0]
    sj, cj = cols[J, 0], cols[J, 1] - cols[J, 0]
    sizes = ci * cj
    ends = sizes.cumsum(0)
    start = 0
    while start < I.numel():
        # as many parent pairs as fit in one chunk (at least one)
        base = int(ends[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(ends, base + chunk, right=True)), start + 1)
        k = torch.arange(start, stop, device=I.device)
        n = sizes[k]
        pid = torch.repeat_interleave(k, n)
        off = torch.arange(int(n.sum()), device=I.device) - torch.repeat_interleave(ends[k] - n - base, n)
        cjp = cj[pid]
        yield si[pid] + off // cjp, sj[pid] + off % cjp
        start = stop


@dataclass(frozen=True)
class NodeMaps:
    """The next update's potential, barycentric map and best partner at the nodes of one side.

    Attributes:
        points: ``(n, D)`` the nodes.
        radius: ``(n,)`` the distance bound of each node's children.
        extent: ``(n, D)`` the per-axis offset bound of each node's children.
        f: ``(n,)`` f̂ at the nodes (+inf for a node that sees no mass).
        T: ``(n, D)`` the barycentric map T at the nodes (softmin-weighted mean of the other side).
        best: ``(n,)`` the node of the other side with the largest kernel term.
    """

    points: torch.Tensor
    radius: torch.Tensor
    extent: torch.Tensor
    f: torch.Tensor
    T: torch.Tensor
    best: torch.Tensor


def all_candidates(parent_pairs: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor,
                   cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every child pair of the kept parent pairs, in one piece.

    Args:
        parent_pairs: ``(I, J)``, as :func:`candidates`.
        rows: ``(n_I, 2)`` children ranges of the row parents.
        cols: ``(n_J, 2)`` children ranges of the column parents.

    Returns:
        ``(i, j)`` index tensors of all the child pairs.
    """
    pieces = list(candidates(parent_pairs, rows, cols))
    return torch.cat([q[0] for q in pieces]), torch.cat([q[1] for q in pieces])


def child_blocks(parent_pairs: tuple[torch.Tensor, torch.Tensor], row_groups: torch.Tensor,
                 col_groups: torch.Tensor, col_span: torch.Tensor) -> tuple[tuple, torch.Tensor]:
    """Ranges for one per-range reduction over the children pairs of the kept parent pairs.

    The rows are the row parents' children, grouped by parent (``row_groups``, the children
    ranges of the row parents); for each kept pair (P, Q), every child J of Q (``col_groups[Q]``)
    contributes one range, ``col_span[J]`` (its own column, or the columns under it).

    Args:
        parent_pairs: ``(P, Q)`` the kept parent pairs.
        row_groups: ``(n_P, 2)`` the children ranges of the row parents.
        col_groups: ``(n_Q, 2)`` the children ranges of the column parents.
        col_span: ``(n_J, 2)`` the column range of each column child.

    Returns:
        ``(ranges, J)``: the 6-tuple (its transposed half empty: reductions over j only) and the
        column node of every listed range.
    """
    P, Q = parent_pairs
    if P.numel() > 1 and not bool(((P[1:] > P[:-1]) | ((P[1:] == P[:-1]) & (Q[1:] > Q[:-1]))).all()):
        order = torch.argsort(P * max(col_groups.shape[0], 1) + Q)
        P, Q = P[order], Q[order]
    start, count = col_groups[Q, 0], col_groups[Q, 1] - col_groups[Q, 0]
    first = torch.cumsum(count, 0) - count
    J = torch.repeat_interleave(start - first, count) + torch.arange(int(count.sum()), device=count.device)
    slices = torch.zeros(row_groups.shape[0], dtype=torch.int64, device=P.device).index_add_(0, P, count).cumsum(0)
    ranges = (row_groups, slices, col_span[J], col_span,
              torch.zeros(col_span.shape[0], dtype=torch.int64, device=col_span.device),
              torch.zeros(0, 2, dtype=torch.int64, device=col_span.device))
    return ranges, J


def block_pairs(ranges: tuple, J: torch.Tensor, n_rows: int, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(row, column node)`` of the results ``keep`` of a per-range reduction over :func:`child_blocks`.

    Args:
        ranges: the ranges of :func:`child_blocks` (per-row lists of
            :func:`lazygeom.backends.base.row_range_lists`).
        J: the column node of every listed range.
        n_rows: the number of rows.
        keep: a mask over the reduction's results.

    Returns:
        ``(rows, cols)`` of the kept results.
    """
    start, counts = row_range_lists(ranges[0], ranges[1], n_rows)
    offsets = torch.cumsum(counts, 0) - counts
    native = policy.capability("pair_sorting", start, J, keep)
    done = None if native is None else native.kept_results(start, counts, offsets, J, keep)
    if done is not None:
        return done
    o = keep.nonzero()[:, 0]
    rows = torch.searchsorted(offsets, o, right=True) - 1  # right: rows without results share offsets
    return rows, J[start[rows] + o - offsets[rows]]


def select_pairs(P: NodeMaps, Q: NodeMaps, parent_pairs: tuple[torch.Tensor, torch.Tensor], row_groups: torch.Tensor,
                 col_groups: torch.Tensor, eps: float, lam: float, truncate: float, p: int,
                 cost: GroundCost, backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The children pairs of ``parent_pairs`` whose own children may have e ≥ −truncate·ε (module docstring).

    Every row node also keeps its best partner, and every column node likewise.

    Args:
        P: the row nodes (the children of the parents) with their maps.
        Q: the column nodes with their maps.
        parent_pairs: ``(I, J)`` the kept pairs one level up.
        row_groups: ``(n_parents, 2)`` the children ranges of the row parents.
        col_groups: ``(n_parents, 2)`` the children ranges of the column parents.
        eps: the temperature of the next update.
        lam: its damping λ.
        truncate: τ, in units of ε.
        p: 1 or 2 (the margin of the module docstring).
        cost: the ground cost (its LazyTensor formula).
        backend: the lazygeom reduction backend (None: the configured one).

    Returns:
        ``(rows, cols, n_candidates)``: the kept pairs, sorted by row then column.
    """
    nP, nQ = P.points.shape[0], Q.points.shape[0]
    ranges, J = child_blocks(parent_pairs, row_groups, col_groups, unit_ranges(nQ))
    X, Y = P.points, Q.points
    e = lazy_i(P.f[:, None]) + lazy_j(Q.f[:, None]) - cost.formula(X, Y)
    if p == 2:
        xi, yj = lazy_i(X), lazy_j(Y)
        hi, hj = lazy_i(P.extent), lazy_j(Q.extent)
        dx = (lazy_i(lam * (X - P.T)) - (xi - yj)).abs()
        dy = (lazy_j(lam * (Y - Q.T)) - (yj - xi)).abs()
        e = e + (dx * hi + dy * hj + hi * hj).sum(-1)
    else:
        e = e + 2 * (lazy_i(P.radius[:, None]) + lazy_j(Q.radius[:, None]))
    with torch.no_grad():
        bound = e.max(dim=1, ranges=ranges, per_range=True, backend=backend)[:, 0]
    i, j = block_pairs(ranges, J, nP, ~(bound < -truncate * eps))  # NaN (a node that sees no mass): kept
    rows = torch.cat((i, torch.arange(nP, device=i.device), Q.best))
    cols = torch.cat((j, P.best, torch.arange(nQ, device=j.device)))
    return (*unique_pairs(rows, cols, nQ), bound.numel())


def node_maps(nodes: Level, cols: torch.Tensor, col_node: Optional[torch.Tensor], pot: torch.Tensor,
              log_w: torch.Tensor, ranges: tuple, eps: float, lam: float, cost: GroundCost,
              backend: Optional[str] = None) -> NodeMaps:
    """f̂, T and the best partners at ``nodes``, as reductions over the columns ``cols``.

    f̂(X) = λ softmin_ε(C(X, ·), log w + pot/ε) and T(X) its soft-max barycentre of the columns.

    Args:
        nodes: the level whose nodes get the maps.
        cols: ``(m, D)`` the column points.
        col_node: ``(m,)`` each column's node on the other side (None: the columns are nodes).
        pot: ``(1, m)`` the columns' potential.
        log_w: ``(m,)`` the columns' log-weights.
        ranges: the block-sparse 6-tuple of the reductions.
        eps: the temperature ε.
        lam: the damping λ.
        cost: the ground cost.
        backend: the lazygeom reduction backend (None: the configured one).

    Returns:
        The :class:`NodeMaps` of the nodes.
    """
    h = log_w + pot[0] / eps
    inv_eps = torch.full((1,), 1.0 / eps, dtype=h.dtype, device=h.device)
    F = lazy_j(h[:, None]) - cost.formula(nodes.points.detach(), cols) * LazyTensor(inv_eps)
    lse = F.logsumexp(dim=1, ranges=ranges, backend=backend)[:, 0]
    T = F.sumsoftmaxweight(lazy_j(cols), dim=1, ranges=ranges, backend=backend)
    best = F.argmax(dim=1, ranges=ranges, backend=backend)[:, 0]
    best = best if col_node is None else col_node[best]
    return NodeMaps(nodes.points.detach(), nodes.radius, nodes.extent, -lam * eps * lse, T, best)


def point_block_pairs(maps: NodeMaps, pairs: tuple[torch.Tensor, torch.Tensor],
                      groups: tuple[torch.Tensor, torch.Tensor], col_children: torch.Tensor, pts: torch.Tensor,
                      pot: torch.Tensor, lam: float, thr: float, cost: GroundCost,
                      backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The child pairs (I, J) of ``pairs`` whose bound on their point pairs' exponents is not below ``thr``.

    The bound is on max over i in I, j in J of f̂(x_i) + h_j − C(x_i, y_j): one per-range
    max-reduction (:func:`child_blocks`) whose rows are the row nodes I (the node's f̂, T,
    extents) and each row lists the points j under each candidate partner J, with their current
    potentials h (module docstring for the margin).

    Args:
        maps: the row nodes' maps.
        pairs: ``(I0, J0)`` the kept parent pairs.
        groups: ``(row_groups, col_groups)`` the children ranges of the row and column parents.
        col_children: ``(n_J, 2)`` the point range under each column node.
        pts: ``(m, D)`` the column points.
        pot: ``(1, m)`` their current potential.
        lam: the damping λ.
        thr: the threshold −τ·ε.
        cost: the ground cost (p = 1 or 2).
        backend: the lazygeom reduction backend (None: the configured one).

    Returns:
        ``(I, J, n_candidates)``.
    """
    ranges, J = child_blocks(pairs, groups[0], groups[1], col_children)
    X = maps.points
    F = lazy_i(maps.f[:, None]) + lazy_j(pot[0][:, None]) - cost.formula(X, pts)
    if cost.p == 2:  # Σ_d |∂ₓ(f̂(x) − C(x, y_j))_d| h_I,d, with ∂ₓ = λ(X_I − T_I) − X_I + y_j at X_I
        grad = lazy_i(lam * (X - maps.T) - X) + lazy_j(pts)
        F = F + (grad.abs() * lazy_i(maps.extent)).sum(-1)
    else:
        F = F + 2 * lazy_i(maps.radius[:, None])
    bound = F.max(dim=1, ranges=ranges, per_range=True, backend=backend)[:, 0]
    return (*block_pairs(ranges, J, X.shape[0], ~(bound < thr)), bound.numel())  # NaN: kept


def unit_ranges(n: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """The ranges ``[k, k + 1)`` of n nodes of one point each.

    Args:
        n: the number of nodes.
        device: the device of the ranges.

    Returns:
        ``(n, 2)`` int64 ranges.
    """
    k = torch.arange(n, device=device)
    return torch.stack((k, k + 1), dim=1)


__all__ = ["CHUNK", "NodeMaps", "all_candidates", "block_pairs", "candidates", "child_blocks", "node_maps",
           "point_block_pairs", "select_pairs", "unique_pairs", "unit_ranges"]
