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
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..backends.cpu import marginals as native
from ..lazytensor import LazyTensor
from ..settings import get_config, normalize_backend
from ._lazy import lazy_i, lazy_j
from .costs import GroundCost
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


class _Envelope(torch.autograd.Function):
    """The final extrapolation's outputs, differentiable with respect to their row points.

    Forward: the values computed by the pass (given). Backward: the envelope-step gradients of
    :func:`lazygeom.ot.sinkhorn.sinkhorn_loop` (soft-min with its h detached, the cost
    differentiated in its row points): ∂f̃_i/∂x_i = Σ_j P_ij ∇ₓC(x_i, y_j) with
    P_ij = exp(h_j − C_ij/ε − L_i), L_i = −f̃_i/ε the LogSumExp the values already hold, so the
    backward is one Sum reduction per side, as the LogSumExp path's. Under ``create_graph`` the
    LogSumExp path is rebuilt and differentiated instead (its own gradients are symbolic).
    """

    @staticmethod
    def forward(ctx, rows, cols, new_u, new_v, spec):
        ctx.spec = spec
        ctx.save_for_backward(rows, cols, new_u, new_v)
        return new_u.clone(), (None if new_v is None else new_v.clone())

    @staticmethod
    def backward(ctx, g_u, g_v):
        rows, cols, new_u, new_v = ctx.saved_tensors
        spec = ctx.spec
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: the differentiable path
            outs = spec.fallback()
            pairs = [(o, g) for o, g in zip(outs, (g_u, g_v)) if o is not None and g is not None and o.requires_grad]
            wanted = [t for t, need in zip((rows, cols), ctx.needs_input_grad[:2]) if need]
            if not pairs:
                return None, None, None, None, None
            grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                             allow_unused=True, create_graph=True))
            return (*(next(grads) if need else None for need in ctx.needs_input_grad[:2]), None, None, None)
        grad_rows = grad_cols = None
        if g_u is not None and ctx.needs_input_grad[0]:
            grad_rows = _envelope_grad(spec, rows, cols, spec.h_u, new_u, g_u, spec.ranges_u)
        if g_v is not None and new_v is not None and ctx.needs_input_grad[1]:
            grad_cols = _envelope_grad(spec, cols, rows, spec.h_v, new_v, g_v, spec.ranges_v)
        return grad_rows, grad_cols, None, None, None


def _envelope_grad(spec, rows, cols, h, new, g, ranges) -> torch.Tensor:
    """``g_i Σ_j exp(h_j − C_ij/ε − L_i) ∇ₓC(x_i, y_j)``, L = −new/ε, for C = |x − y|²/2 or |x − y|.

    Points ``(*batch, n, D)``; h, new and g are read with the points' batch shape (the multiscale
    operator's have a batch of one in front of unbatched points)."""
    shape = rows.shape
    rows, cols = rows.detach(), cols.detach()
    h, new, g = h.reshape(cols.shape[:-1]), new.reshape(rows.shape[:-1]), g.reshape(rows.shape[:-1])
    inv_eps = torch.full((1,), 1.0 / spec.eps, dtype=rows.dtype, device=rows.device)
    C = spec.cost.formula(rows, cols)
    P = (lazy_j(h[..., None]) - C * LazyTensor(inv_eps) + lazy_i((new * inv_eps)[..., None])).exp()
    weight = P if spec.cost.p == 2 else P / C  # ∇ₓ|x − y| = (x − y) / |x − y| (the guarded C)
    G = (weight * (lazy_i(rows) - lazy_j(cols))).sum(dim=-2, ranges=ranges, backend=spec.engine_backend)
    return (G * g[..., None]).reshape(shape)


@dataclass(frozen=True)
class Envelope:
    """What the backward of a final step needs (see :func:`differentiable`).

    Attributes:
        cost, eps, engine_backend: the soft-min's.
        h_u, h_v: the detached log-weights-plus-potentials of the row and column soft-mins.
        ranges_u, ranges_v: the block-sparse ranges of the gradients' Sum reductions (None: all pairs).
        fallback: ``() -> (new_u, new_v)`` by the differentiable LogSumExp path.
    """

    cost: GroundCost
    eps: float
    engine_backend: Optional[str]
    h_u: torch.Tensor
    h_v: Optional[torch.Tensor]
    ranges_u: Optional[tuple]
    ranges_v: Optional[tuple]
    fallback: Callable[[], tuple]


def jacobi_step(op, blocks: native.PairBlocks, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor,
                u_log: torch.Tensor, v_log: torch.Tensor, grad: str = "none", floor_z: float = -math.inf,
                ranges: tuple = (None, None)) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """A soft-min operator's ``step`` (:class:`lazygeom.ot.softmin.SoftminOperator`) through :func:`step`.

    Args:
        op: the operator (its points ``x``, ``y``, ``cost``, ``engine_backend``, and its soft-min
            for the differentiable fallback).
        blocks: the pairs of ``pair``.
        eps, pair, u, v, u_log, v_log: as the operator's ``step``: potentials and log-weights of
            the rows and columns, shaped like the operator's soft-min outputs.
        grad: "none", or "rows": the final step's values, differentiable like
            ``softmin(..., grad="rows")`` (:func:`differentiable`).
        floor_z: the per-row skip threshold.
        ranges: the block-sparse ranges of the soft-mins of ``pair`` and of its reverse (the
            gradients' Sum reductions), None for all pairs.
    """
    rows = op.x if pair[0] == "x" else op.y
    cols = op.x if pair[1] == "x" else op.y
    symmetric = pair[0] == pair[1]
    D = rows.shape[-1]
    out = step(blocks, rows.detach().reshape(-1, D), cols.detach().reshape(-1, D), u.reshape(-1), v.reshape(-1),
               u_log.expand_as(u).reshape(-1), v_log.expand_as(v).reshape(-1), op.cost.p, eps, symmetric, floor_z)
    if out is None:
        return None
    new_u, new_v = out[0].reshape(u.shape), (None if symmetric else out[1].reshape(v.shape))
    if grad == "none":
        return new_u, new_v
    h_u = (v_log + v / eps).detach()
    h_v = None if symmetric else (u_log + u / eps).detach()

    def fallback():
        return op(eps, pair, h_u, grad="rows"), (None if symmetric else op(eps, pair[::-1], h_v, grad="rows"))

    spec = Envelope(op.cost, eps, op.engine_backend, h_u, h_v, ranges[0], ranges[1], fallback)
    # a self-interaction's columns are its rows, detached (grad="rows")
    return differentiable(rows, cols.detach() if symmetric else cols, new_u, new_v, spec)


def differentiable(rows: torch.Tensor, cols: torch.Tensor, new_u: torch.Tensor, new_v: Optional[torch.Tensor],
                   spec: Envelope) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The values of a final (envelope) step, with the gradients of the soft-mins they equal:
    new_u with respect to the row points, new_v (None for a self-interaction) to the columns."""
    return _Envelope.apply(rows, cols, new_u.detach(), None if new_v is None else new_v.detach(), spec)


__all__ = ["DENSE_COLS", "DENSE_ROWS", "Envelope", "TINY", "applies", "dense_blocks", "differentiable", "jacobi_step",
           "sparse_blocks", "step"]
