"""Jacobi Sinkhorn steps from the plan's marginals: one pass over the pairs instead of two.

The loop's averaged update (:func:`lazygeom.ot.solver.loop.sinkhorn_loop`) computes

    f̃ = softmin_ε(C_xy, log b + g/ε),   g̃ = softmin_ε(C_yx, log a + f/ε)

from the same old (f, g): two LogSumExp reductions that each evaluate every pair's cost and
exponential. With the plan's exponents z_ij = (f_i + g_j − C(x_i, y_j)) / ε,

    f̃_i = f_i − ε log Σ_j b_j exp(z_ij),   g̃_j = g_j − ε log Σ_i a_i exp(z_ij):

the row and column sums of one matrix (the plan divided by a_i, resp. b_j), computed in one pass
by the backend capability ``plan_marginals`` (:func:`lazygeom.backends.policy.capability`). A
self-interaction (f_aa on x) is symmetric: the pass visits the pairs I <= J of its blocks only,
each off-diagonal pair feeding both its row and its column.

Near the fixed point the sums are about 1, so no max pass is needed. Where one is outside
[``TINY``, 1/``TINY``] (potentials far from consistent: exponents that could overflow or
underflow), or the pass does not apply (no compiler, GPU tensors, D > 4, a custom cost, another
engine backend requested), :meth:`Marginals.step` returns None and the caller runs the two
LogSumExp reductions.

Multiscale (``floor_z = −truncate``): a row also skips a column node whose exponents are provably
below −truncate (a bound from the node's bounding box and largest potential), the same guarantee
as the block truncation (:mod:`lazygeom.ot.multiscale.truncation`) but per point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from ...backends import policy
from ...backends.base import PairBlocks
from ...sparse import unique_pairs
from ..costs import GroundCost

#: the accepted range of the sums, [TINY, 1/TINY] (their terms are float32 exponentials, which
#: lose precision below 1e-38)
TINY = {torch.float32: 1e-30, torch.float64: 1e-280}
#: row clusters and column nodes of a dense pass
DENSE_ROWS, DENSE_COLS = 64, 256


def applies(x: torch.Tensor, y: torch.Tensor, p: Optional[int], engine_backend: Optional[str]) -> bool:
    """Whether the compiled pass can replace the LogSumExp reductions for these points.

    Args:
        x: the row points.
        y: the column points.
        p: the cost's exponent (1 or 2 for the built-in costs, None for a custom cost).
        engine_backend: the engine backend requested (None: the configured one).

    Returns:
        True when the backend that would run these tensors offers ``plan_marginals``.
    """
    return p in (1, 2) and policy.capability("plan_marginals", x, y, backend=engine_backend) is not None


def _boxes(points: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = spans[:, 1] - spans[:, 0]
    lo = torch.segment_reduce(points, "min", lengths=lengths, axis=0)
    hi = torch.segment_reduce(points, "max", lengths=lengths, axis=0)
    return lo, hi


def sparse_blocks(rows: torch.Tensor, spans: torch.Tensor, I: torch.Tensor, J: torch.Tensor, cols: torch.Tensor,
                  symmetric: bool) -> PairBlocks:
    """The blocks of the node pairs (I, J), sorted by (I, J).

    Args:
        rows: ``(P, 2)`` the row nodes' point ranges.
        spans: ``(Q, 2)`` the column nodes' point ranges.
        I: the row node of each pair.
        J: the column node of each pair.
        cols: ``(m, D)`` the column points (for the nodes' bounding boxes).
        symmetric: (I, J) is a self-interaction's pair set; the blocks list the pairs I <= J of
            its symmetric closure.

    Returns:
        The :class:`lazygeom.backends.base.PairBlocks` of the ``plan_marginals`` pass.
    """
    if symmetric:
        both_I, both_J = torch.cat((I, J)), torch.cat((J, I))
        upper = both_I <= both_J
        I, J = unique_pairs(both_I[upper], both_J[upper], spans.shape[0])
    else:
        I, J = unique_pairs(I, J, spans.shape[0])  # kept as they are when already in order
    counts = torch.bincount(I, minlength=rows.shape[0])
    return PairBlocks(rows.contiguous(), counts.cumsum(0), J.contiguous(), spans.contiguous(), *_boxes(cols, spans))


def _chunks(n: int, size: int, offset: int) -> torch.Tensor:
    start = torch.arange(0, n, size)
    return torch.stack((start, torch.clamp(start + size, max=n)), dim=1) + offset


def dense_blocks(B: int, N: int, M: int, symmetric: bool) -> PairBlocks:
    """Every pair of each batch item (rows b·N + i, columns b·M + j): the online operator's blocks.

    Args:
        B: the batch size.
        N: the rows per batch item.
        M: the columns per batch item.
        symmetric: a self-interaction (N = M): the pairs of node c and the later nodes only.

    Returns:
        The :class:`lazygeom.backends.base.PairBlocks` (CPU tensors: the pass runs on CPU).
    """
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
    return PairBlocks(rows, counts.cumsum(0), nodes, spans, empty, empty)


def step(blocks: PairBlocks, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
         u_log: torch.Tensor, v_log: torch.Tensor, p: int, eps: float, symmetric: bool,
         floor_z: float = -math.inf) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """The soft-min updates of the rows and columns from the potentials u (rows) and v (columns).

    Args:
        blocks: the pairs (:func:`sparse_blocks` or :func:`dense_blocks`).
        x: ``(n, D)`` the row points (detached).
        y: ``(m, D)`` the column points; for a self-interaction y is x.
        u: ``(n,)`` the rows' potentials.
        v: ``(m,)`` the columns' potentials.
        u_log: ``(n,)`` the rows' log-weights.
        v_log: ``(m,)`` the columns' log-weights.
        p: the cost exponent (1 or 2).
        eps: the temperature.
        symmetric: a self-interaction (v is u); only the rows' update is returned.
        floor_z: the per-row skip threshold on the exponents (−truncate; ``-inf``: none).

    Returns:
        ``(softmin_xy(v_log + v/ε), softmin_yx(u_log + u/ε))`` (the second None when symmetric),
        or None when a sum is out of the safe range (the caller then runs LogSumExp reductions).
    """
    out = _step(blocks, x, y, u, v, u_log, v_log, p, eps, symmetric, floor_z, "none")
    return None if out is None else out[:2]


def _step(blocks, x, y, u, v, u_log, v_log, p, eps, symmetric, floor_z, grad):
    """:func:`step` and the pass's sums (R, S) with the moments ``grad`` asks for.

    The pass is the ``plan_marginals`` capability (:mod:`lazygeom.backends.policy`); returns
    ``(new_u, new_v, R, S)`` or None.
    """
    # applies() has checked the requested engine backend: here, the implementation for these tensors
    native = policy.capability("plan_marginals", x, y, backend="auto")
    R, S = native.plan_marginals(blocks, x, u / eps, u_log.exp(), y, v / eps, v_log.exp(), p, eps, floor_z,
                                 2 if symmetric else 1, grad=grad)
    if symmetric:
        R, S = R + S, None
    R0 = R if R.ndim == 1 else R[:, 0]
    S0 = None if S is None else (S if S.ndim == 1 else S[:, 0])
    tiny = TINY[x.dtype]
    sums = R0 if symmetric else torch.cat((R0, S0))
    if not bool(((sums >= tiny) & (sums <= 1 / tiny)).all()):  # nan fails too
        return None
    new_u = u - eps * R0.log().to(u.dtype)
    return new_u, (None if symmetric else v - eps * S0.log().to(v.dtype)), R, S


class _Envelope(torch.autograd.Function):
    """The final extrapolation's outputs, differentiable with respect to their row points.

    Forward: the values computed by the pass (given). Backward: the envelope-step gradients of
    :func:`lazygeom.ot.solver.loop.sinkhorn_loop` (soft-min with its h detached, the cost
    differentiated in its row points): ∂f̃_i/∂x_i = Σ_j P_ij ∇ₓC(x_i, y_j), P_ij = B_j
    exp(z_ij) / R_i the plan's row i over the pairs the forward pass summed: the forward pass
    also sums the gradient's moments (:attr:`Envelope.R`), and the backward divides them. Under
    ``create_graph`` the LogSumExp path is rebuilt and differentiated instead (its own gradients
    are symbolic).
    """

    @staticmethod
    def forward(ctx, rows, cols, new_u, new_v, spec):
        ctx.spec = spec
        ctx.save_for_backward(rows, cols)
        return new_u.clone(), (None if new_v is None else new_v.clone())

    @staticmethod
    def backward(ctx, g_u, g_v):
        rows, cols = ctx.saved_tensors
        spec = ctx.spec
        need_rows = g_u is not None and ctx.needs_input_grad[0]
        need_cols = g_v is not None and not spec.symmetric and ctx.needs_input_grad[1]
        if not (need_rows or need_cols):
            return None, None, None, None, None
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: the differentiable path
            outs = spec.fallback()
            pairs = [(o, g) for o, g in zip(outs, (g_u, g_v)) if o is not None and g is not None and o.requires_grad]
            wanted = [t for t, need in zip((rows, cols), ctx.needs_input_grad[:2]) if need]
            if not pairs:
                return None, None, None, None, None
            grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                             allow_unused=True, create_graph=True))
            return (*(next(grads) if need else None for need in ctx.needs_input_grad[:2]), None, None, None)
        grad_rows = _weighted(spec.R, g_u, rows) if need_rows else None
        grad_cols = _weighted(spec.S, g_v, cols) if need_cols else None
        return grad_rows, grad_cols, None, None, None


def _weighted(sums: torch.Tensor, g: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``g_i`` times the soft-min's gradient ``Σ_j P_ij ∇C`` (the moments over the sum), shaped like the points."""
    grad = sums[:, 1:] / sums[:, :1] * g.reshape(-1, 1).to(sums.dtype)
    return grad.to(points.dtype).reshape(points.shape)


@dataclass(frozen=True)
class Envelope:
    """What the backward of a final step needs (see :func:`differentiable`).

    Attributes:
        symmetric: a self-interaction (the columns are the rows, detached).
        R, S: the pass's row and column sums with the cost gradient's moments, ``(n, 1 + D)``
            and ``(m, 1 + D)`` (the ``plan_marginals`` capability, :mod:`lazygeom.backends.policy`), for the
            sides whose points require gradients (else None or the bare sums); a
            self-interaction's R is its full row sums, S None.
        fallback: ``() -> (new_u, new_v)`` by the differentiable LogSumExp path.
    """

    symmetric: bool
    R: torch.Tensor
    S: Optional[torch.Tensor]
    fallback: Callable[[], tuple]


class PairOperator(Protocol):
    """What :func:`jacobi_step` reads of a soft-min operator: its points, its cost and its soft-min."""

    x: torch.Tensor
    y: torch.Tensor
    cost: GroundCost

    def __call__(self, eps: float, pair: str, h: torch.Tensor, grad: str = "none") -> torch.Tensor:
        """The operator's soft-min (:class:`lazygeom.ot.solver.softmin.SoftminOperator`).

        Args:
            eps: the temperature.
            pair: the rows and the columns.
            h: what the columns carry.
            grad: "rows" here: the final step's differentiable fallback.

        Returns:
            The rows' soft-min.
        """
        ...


def jacobi_step(op: PairOperator, blocks: PairBlocks, eps: float, pair: str, u: torch.Tensor, v: torch.Tensor,
                u_log: torch.Tensor, v_log: torch.Tensor, grad: str = "none",
                floor_z: float = -math.inf) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """A soft-min operator's ``step`` (:class:`lazygeom.ot.solver.softmin.SoftminOperator`) through :func:`step`.

    Args:
        op: the operator (its points ``x``, ``y``, ``cost``, and its soft-min for the
            differentiable fallback).
        blocks: the pairs of ``pair``.
        eps: the temperature ε.
        pair: "xy", "xx" or "yy".
        u: the rows' potentials, shaped like the operator's soft-min outputs.
        v: the columns' potentials.
        u_log: the rows' log-weights.
        v_log: the columns' log-weights.
        grad: "none", or "rows": the final step's values, differentiable like
            ``softmin(..., grad="rows")`` (:func:`differentiable`).
        floor_z: the per-row skip threshold.

    Returns:
        The rows' and the columns' updates (the second None for a self-interaction), or None
        where the pass's sums leave the safe range.
    """
    rows = op.x if pair[0] == "x" else op.y
    cols = op.x if pair[1] == "x" else op.y
    symmetric = pair[0] == pair[1]
    D = rows.shape[-1]
    x, y = rows.detach().reshape(-1, D), cols.detach().reshape(-1, D)
    flat = [t.reshape(-1) for t in (u, v, u_log.expand_as(u), v_log.expand_as(v))]
    # the final step's backward divides moments that this pass sums along (no second pass)
    tracked = grad != "none" and torch.is_grad_enabled()
    rows_grad, cols_grad = tracked and rows.requires_grad, tracked and not symmetric and cols.requires_grad
    moments = "both" if cols_grad or (symmetric and rows_grad) else "rows" if rows_grad else "none"
    out = _step(blocks, x, y, *flat, op.cost.p, eps, symmetric, floor_z, moments)
    if out is None:
        return None
    new_u, new_v = out[0].reshape(u.shape), (None if symmetric else out[1].reshape(v.shape))
    if not (rows_grad or cols_grad):
        return new_u, new_v
    h_u = (v_log + v / eps).detach()
    h_v = None if symmetric else (u_log + u / eps).detach()

    def fallback():
        return op(eps, pair, h_u, grad="rows"), (None if symmetric else op(eps, pair[::-1], h_v, grad="rows"))

    # a self-interaction's columns are its rows, detached (grad="rows")
    return differentiable(rows, cols.detach() if symmetric else cols, new_u, new_v,
                          Envelope(symmetric, out[2], out[3], fallback))


def differentiable(rows: torch.Tensor, cols: torch.Tensor, new_u: torch.Tensor, new_v: Optional[torch.Tensor],
                   spec: Envelope) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The values of a final (envelope) step, with the gradients of the soft-mins they equal.

    Args:
        rows: the row points (their gradient: new_u's).
        cols: the column points (their gradient: new_v's).
        new_u: the rows' new potentials.
        new_v: the columns' new potentials (None for a self-interaction).
        spec: the pass's sums and moments, and the differentiable fallback.

    Returns:
        ``(new_u, new_v)``, differentiable with respect to ``rows`` and ``cols``.
    """
    return _Envelope.apply(rows, cols, new_u.detach(), None if new_v is None else new_v.detach(), spec)


__all__ = ["DENSE_COLS", "DENSE_ROWS", "Envelope", "PairOperator", "TINY", "applies", "dense_blocks", "differentiable",
           "jacobi_step", "sparse_blocks", "step"]
