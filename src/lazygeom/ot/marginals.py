"""Jacobi Sinkhorn steps from the plan's marginals: one pass over the pairs instead of two.

The loop's averaged update (:func:`lazygeom.ot.sinkhorn.sinkhorn_loop`) computes

    f̃ = softmin_ε(C_xy, log b + g/ε),   g̃ = softmin_ε(C_yx, log a + f/ε)

from the same old (f, g): two LogSumExp reductions that each evaluate every pair's cost and
exponential. With the plan's exponents z_ij = (f_i + g_j − C(x_i, y_j)) / ε,

    f̃_i = f_i − ε log Σ_j b_j exp(z_ij),   g̃_j = g_j − ε log Σ_i a_i exp(z_ij):

the row and column sums of one matrix (the plan divided by a_i, resp. b_j), computed in one pass
by :func:`lazygeom.backends.cpu.marginals.plan_marginals`. A self-interaction (f_aa on x) is
symmetric: the pass visits the pairs I <= J of its blocks only, each off-diagonal pair feeding
both its row and its column.

Near the fixed point the sums are about 1, so no max pass is needed. Where one is outside
[``TINY``, 1/``TINY``] (potentials far from consistent: exponents that could overflow or
underflow), or the pass does not apply (no compiler, GPU tensors, D > 4, a custom cost, another
engine backend requested), :meth:`Marginals.step` returns None and the caller runs the two
LogSumExp reductions.

Multiscale (``floor_z = −truncate``): a row also skips a column node whose exponents are provably
below −truncate (a bound from the node's bounding box and largest potential), the same guarantee
as the block truncation (:mod:`lazygeom.ot.truncation`) but per point.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..backends.cpu import marginals as native
from ..settings import get_config, normalize_backend
from .truncation import unique_pairs

#: the accepted range of the sums, [TINY, 1/TINY] (their terms are float32 exponentials, which
#: lose precision below 1e-38)
TINY = {torch.float32: 1e-30, torch.float64: 1e-280}
#: row clusters and column nodes of a dense pass
DENSE_ROWS, DENSE_COLS = 64, 256


def applies(x: torch.Tensor, y: torch.Tensor, p: Optional[int], engine_backend: Optional[str]) -> bool:
    """Whether the compiled pass can replace the LogSumExp reductions for these points."""
    backend = normalize_backend(engine_backend) if engine_backend else get_config().backend
    return p in (1, 2) and backend in ("auto", "cpu", "cpu_any") and native.supported(x, y)


def _boxes(points: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = spans[:, 1] - spans[:, 0]
    lo = torch.segment_reduce(points, "min", lengths=lengths, axis=0)
    hi = torch.segment_reduce(points, "max", lengths=lengths, axis=0)
    return lo, hi


def sparse_blocks(rows: torch.Tensor, spans: torch.Tensor, I: torch.Tensor, J: torch.Tensor, cols: torch.Tensor,
                  symmetric: bool) -> native.PairBlocks:
    """The blocks of the node pairs (I, J) sorted by (I, J): row nodes ``rows`` (their point
    ranges), column nodes ``spans`` over the points ``cols``. ``symmetric``: (I, J) is a
    self-interaction's pair set; the blocks list the pairs I <= J of its symmetric closure."""
    if symmetric:
        both_I, both_J = torch.cat((I, J)), torch.cat((J, I))
        upper = both_I <= both_J
        I, J = unique_pairs(both_I[upper], both_J[upper], spans.shape[0])
    else:
        I, J = unique_pairs(I, J, spans.shape[0])  # kept as they are when already in order
    counts = torch.bincount(I, minlength=rows.shape[0])
    return native.PairBlocks(rows.contiguous(), counts.cumsum(0), J.contiguous(), spans.contiguous(),
                             *_boxes(cols, spans))


def _chunks(n: int, size: int, offset: int) -> torch.Tensor:
    start = torch.arange(0, n, size)
    return torch.stack((start, torch.clamp(start + size, max=n)), dim=1) + offset


def dense_blocks(B: int, N: int, M: int, symmetric: bool) -> native.PairBlocks:
    """Every pair of each batch item (rows b·N + i, columns b·M + j): the online operator's blocks."""
    rows = torch.cat([_chunks(N, DENSE_ROWS, b * N) for b in range(B)])
    spans = rows if symmetric else torch.cat([_chunks(M, DENSE_COLS, b * M) for b in range(B)])
    per_r, per_c = -(-N // DENSE_ROWS), spans.shape[0] // B
    c = torch.arange(rows.shape[0])
    if symmetric:  # node c and the later ones of its batch item
        counts = (c // per_r + 1) * per_c - c
        nodes = torch.cat([torch.arange(int(k), (int(k) // per_c + 1) * per_c) for k in c])
    else:
        counts = torch.full((rows.shape[0],), per_c)
        nodes = (c // per_r * per_c)[:, None].add(torch.arange(per_c)).reshape(-1)
    empty = torch.zeros(spans.shape[0], 1)  # no boxes: a dense pass skips nothing
    return native.PairBlocks(rows, counts.cumsum(0), nodes, spans, empty, empty)


def step(blocks: native.PairBlocks, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
         u_log: torch.Tensor, v_log: torch.Tensor, p: int, eps: float, symmetric: bool,
         floor_z: float = -math.inf) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """The soft-min updates of the rows and columns from the potentials u (rows) and v (columns).

    Args:
        blocks: the pairs (:func:`sparse_blocks` or :func:`dense_blocks`).
        x, y: ``(n, D)``, ``(m, D)`` the points (detached); for a self-interaction y is x.
        u, v: ``(n,)``, ``(m,)`` potentials; u_log, v_log the log-weights.
        p: the cost exponent (1 or 2).
        eps: the temperature.
        symmetric: a self-interaction (v is u); only the rows' update is returned.
        floor_z: the per-row skip threshold on the exponents (−truncate; ``-inf``: none).

    Returns:
        ``(softmin_xy(v_log + v/ε), softmin_yx(u_log + u/ε))`` (the second None when symmetric),
        or None when a sum is out of the safe range (the caller then runs LogSumExp reductions).
    """
    R, S = native.plan_marginals(blocks, x, u / eps, u_log.exp(), y, v / eps, v_log.exp(), p, eps, floor_z,
                                 2 if symmetric else 1)
    tiny = TINY[x.dtype]
    rows = R + S if symmetric else R
    sums = rows if symmetric else torch.cat((R, S))
    if not bool(((sums >= tiny) & (sums <= 1 / tiny)).all()):  # nan fails too
        return None
    new_u = u - eps * rows.log().to(u.dtype)
    return new_u, (None if symmetric else v - eps * S.log().to(v.dtype))


__all__ = ["DENSE_COLS", "DENSE_ROWS", "TINY", "applies", "dense_blocks", "sparse_blocks", "step"]
