"""Both marginals of an entropic transport plan in one pass over its pairs (``marginals.cpp``).

A Jacobi Sinkhorn step updates the row potentials from the column ones and the column potentials
from the row ones; as two LogSumExp reductions, it evaluates every pair's cost and exponential
twice (once per direction), and a self-interaction's symmetric kernel twice as well. Written with
the plan's exponents ``z_ij = (u_i + v_j − C(x_i, y_j)) / ε``, both updates are sums of the same
``exp(z_ij)``:

    u_i − ε log Σ_j B_j exp(z_ij) = −ε log Σ_j B_j exp((v_j − C_ij) / ε)
    v_j − ε log Σ_i A_i exp(z_ij)

so one pass computes both. There is no max pass: near the fixed point of a Sinkhorn loop the
exponents are bounded above (B_j exp(z_ij) is a row's share of the plan, at most 1), and the
caller (:mod:`lazygeom.ot.marginals`) checks the sums and uses the LogSumExp reductions when one
lies outside the safe range.

Built-in costs only (|x − y| and |x − y|²/2) in dimension at most ``MAX_DIM``: those are the
low-dimensional problems where the pass is the whole cost of a solve.

A long pass runs by chunks of row clusters (:mod:`.runner`: Ctrl-C is honoured in between; one
thread in a forked child); the per-thread column sums accumulate across the chunks.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

import torch

from ...settings import get_config
from ..base import PairBlocks
from . import compiler, runner

#: dimensions with a compiled instance
MAX_DIM = 4
_VBYTES = 32  # bytes of one vec, as in lgmath.hpp

_P, _I, _C = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SCALARS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
#: the ``grad`` values of :func:`plan_marginals`, in the order of the C entry's ``grad`` code
_GRADS = ("none", "rows", "both")


def _signature(c_scalar) -> dict:
    return {"lg_plan_marginals": ([_I, _C, _C, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I, _P, _P, c_scalar,
                                   c_scalar, _C, _P, _P, _I, _C], _C)}


def supported(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the compiled pass applies to these points.

    Args:
        x: ``(n, D)`` points.
        y: ``(m, D)`` points.

    Returns:
        True for CPU float32/float64 points of one dtype and D <= MAX_DIM, with a compiler.
    """
    return (x.device.type == "cpu" and y.device.type == "cpu" and x.dtype in _SCALARS and y.dtype == x.dtype
            and 1 <= x.shape[-1] <= MAX_DIM and compiler.find_compiler() is not None)


def plan_marginals(blocks: PairBlocks, x: torch.Tensor, U: torch.Tensor, A: torch.Tensor, y: torch.Tensor,
                   V: torch.Tensor, B: torch.Tensor, p: int, eps: float, floor_z: float,
                   mode: int, grad: str = "none") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Row sums ``R_i = Σ_j B_j exp(z_ij)`` and column sums ``S_j = Σ_i A_i exp(z_ij)`` (float64).

    Args:
        blocks: the pairs (:class:`PairBlocks`).
        x: ``(n, D)`` points (no autograd).
        U: ``(n,)`` the potentials of x divided by ε.
        A: ``(n,)`` the weights of x.
        y: ``(m, D)`` points (no autograd).
        V: ``(m,)`` the potentials of y divided by ε.
        B: ``(m,)`` the weights of y.
        p: 1 (C = |x − y|) or 2 (C = |x − y|²/2).
        eps: the temperature ε.
        floor_z: a row skips a column node where its exponents are provably below this
            (``-inf``: every listed pair is visited).
        mode: 0 row sums only; 1 both; 2 a self-interaction listed as the pairs I <= J of a
            symmetric set (cluster c being node c): S then holds the other half of the row sums.
        grad: "none"; "rows": also the cost gradient's moments in the rows, ``R`` being
            ``(n, 1 + D)``, ``[R_i, Σ_j B_j exp(z_ij) ∇ₓC(x_i, y_j)]`` (∇|x − y| taken as 0 at
            x = y); "both": in the columns too, ``S`` ``(m, 1 + D)``, ``[S_j, Σ_i A_i exp(z_ij)
            ∇ᵧC(x_i, y_j)]`` (mode 2 needs "both" or "none": S holds half the rows).

    Returns:
        ``(R, S)``, S None in mode 0.
    """
    if grad not in _GRADS or (mode == 2 and grad == "rows"):
        raise ValueError(f"plan_marginals: grad must be 'none', 'rows' or 'both' ('none' or 'both' in mode 2), "
                         f"got {grad!r} in mode {mode}")
    if not supported(x, y) or p not in (1, 2):
        raise ValueError(f"plan_marginals: needs CPU float32/float64 points of dimension 1-{MAX_DIM} "
                         f"and p in (1, 2), got {tuple(x.shape)} {x.dtype}, p={p}")
    dtype = x.dtype
    name, c_scalar = _SCALARS[dtype]
    cfg = get_config()
    lib = compiler.load_source(Path(__file__).with_name("marginals.cpp"), name, cfg.cache_dir, cfg.verbose,
                               _signature(c_scalar))
    n, D = x.shape
    m = y.shape[0]
    W = _VBYTES // x.element_size()
    mp = -(-m // W) * W + W  # a full tile may start at any column
    yT = torch.zeros(D, mp, dtype=dtype)
    yT[:, :m] = y.T
    cull = floor_z > -float("inf")
    lengths = blocks.spans[:, 1] - blocks.spans[:, 0]
    vmax = torch.segment_reduce(V, "max", lengths=lengths) if cull else torch.zeros(lengths.shape[0], dtype=dtype)
    threads = runner.threads()
    KR, KC = (1 + D if grad != "none" else 1), (1 + D if grad == "both" else 1)
    R = torch.empty(n, KR, dtype=torch.float64)
    S = torch.zeros((threads, m, KC) if mode else (0,), dtype=torch.float64)
    args = [t.contiguous() for t in (blocks.rows, blocks.slices, blocks.nodes, blocks.spans)]
    flt = [t.to(dtype).contiguous() for t in (blocks.lo, blocks.hi, vmax, x, U, A, yT, V, B)]
    lo, hi, vm, xc, Uc, Ac, yTc, Vc, Bc = flt
    coef = 1.0 / eps if p == 1 else 0.5 / eps
    fixed = (args[0].data_ptr(), args[1].data_ptr(), args[2].data_ptr(), args[3].data_ptr(), lo.data_ptr(),
             hi.data_ptr(), vm.data_ptr(), xc.data_ptr(), Uc.data_ptr(), Ac.data_ptr(), yTc.data_ptr(), mp,
             Vc.data_ptr(), Bc.data_ptr(), coef, floor_z, mode, R.data_ptr(), S.data_ptr(), m, threads)

    def clusters(c0: int, c1: int) -> None:  # S accumulates over the calls (per-thread buffers)
        if lib.lg_plan_marginals(D, p, _GRADS.index(grad), c0, c1, *fixed) != 0:  # pragma: no cover
            raise RuntimeError(f"plan_marginals: no compiled instance for D={D}")  # (guarded by supported())

    # long passes run by chunks of row clusters, so that Ctrl-C is honoured in between (see runner)
    nc, weight = args[0].shape[0], 1 + D / 4
    cost: runner.Cost = weight * m * n / max(nc, 1)
    if n * m * weight > 2 * runner.PAIRS_PER_SECOND * threads * runner.CHUNK_SECONDS:
        cost = _cluster_costs(blocks, weight)
    runner.run_chunks(clusters, nc, cost, threads, label="cpu plan marginals", unit="row clusters")
    if KR == 1:
        R = R[:, 0]
    if KC == 1 and mode:
        S = S[..., 0]
    return R, (S.sum(0) if mode else None)


def _cluster_costs(blocks: PairBlocks, weight: float) -> torch.Tensor:
    """The cumulative cost ``(nc + 1,)`` of the row clusters: their listed pairs, weighted."""
    node_len = blocks.spans[:, 1] - blocks.spans[:, 0]
    ends = torch.cat([torch.zeros(1, dtype=torch.int64), node_len[blocks.nodes].cumsum(0)])
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), blocks.slices[:-1]])
    cols = ends[blocks.slices] - ends[starts]
    pairs = (blocks.rows[:, 1] - blocks.rows[:, 0]) * cols
    return torch.cat([torch.zeros(1, dtype=torch.float64), pairs.to(torch.float64).cumsum(0) * weight])


__all__ = ["MAX_DIM", "PairBlocks", "plan_marginals", "supported"]
