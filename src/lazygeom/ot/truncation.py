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
reductions (:mod:`lazygeom.ot.multiscale`); only the bound is evaluated here, pair by pair, over
chunks of candidates: nothing of size (#P)·(#Q) is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

#: candidate pairs handled at once (memory: a few tensors of this many entries)
CHUNK = 1 << 21


def candidates(parent_pairs: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor,
               chunk: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The child pairs (i, j) of the kept parent pairs (I, J), in chunks of about ``chunk`` pairs.

    Args:
        parent_pairs: ``(I, J)`` index tensors of the kept pairs of the level above.
        rows: ``(n_I, 2)`` children ranges of the row parents; cols: ``(n_J, 2)`` of the columns.
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
        k = torch.arange(start, stop)
        n = sizes[k]
        pid = torch.repeat_interleave(k, n)
        off = torch.arange(int(n.sum())) - torch.repeat_interleave(ends[k] - n - base, n)
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
    """Every child pair of the kept parent pairs, in one piece (see :func:`candidates`)."""
    pieces = list(candidates(parent_pairs, rows, cols))
    return torch.cat([q[0] for q in pieces]), torch.cat([q[1] for q in pieces])


Chunks = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def select_pairs(P: NodeMaps, Q: NodeMaps, chunks: Chunks, eps: float, lam: float, truncate: float,
                 p: int, cost) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The candidate pairs whose children may have e ≥ −truncate·ε (module docstring).

    Every row node also keeps its best partner, and every column node likewise.

    Args:
        P, Q: the row and column nodes with their maps.
        chunks: returns a fresh iterator over the candidate pairs ``(i, j)``, chunk by chunk.
        eps, lam: temperature and damping of the next update.
        truncate: τ, in units of ε.
        p: 1 or 2 (the margin of the module docstring).
        cost: ``cost(x, y)`` on ``(K, D)`` tensors, row by row.

    Returns:
        ``(rows, cols, n_candidates)``: the kept pairs, sorted by row then column.
    """
    nP, nQ = P.points.shape[0], Q.points.shape[0]
    kept_i, kept_j, total = [P.best.new_empty(0)], [P.best.new_empty(0)], 0
    for i, j in chunks():
        total += i.numel()
        Xi, Yj = P.points[i], Q.points[j]
        e = P.f[i] + Q.f[j] - cost(Xi, Yj)
        if p == 2:
            hi, hj = P.extent[i], Q.extent[j]
            dx = (lam * (Xi - P.T[i]) - (Xi - Yj)).abs()
            dy = (lam * (Yj - Q.T[j]) - (Yj - Xi)).abs()
            margin = (dx * hi + dy * hj + hi * hj).sum(1)
        else:
            margin = 2 * (P.radius[i] + Q.radius[j])
        keep = ~(e + margin < -truncate * eps)  # NaN (a node that sees no mass): kept
        kept_i.append(i[keep]), kept_j.append(j[keep])
    rows = torch.cat(kept_i + [torch.arange(nP), Q.best])
    cols = torch.cat(kept_j + [P.best, torch.arange(nQ)])
    keys = torch.unique(rows * max(nQ, 1) + cols)  # sorted: by row, then column
    return keys // max(nQ, 1), keys % max(nQ, 1), total


__all__ = ["CHUNK", "Chunks", "NodeMaps", "all_candidates", "candidates", "select_pairs"]
