"""K-nearest neighbours through blocked matrix products, for squared distances at larger D.

For ``F = |x_i - y_j|^2`` reduced with K-min or min, the generated loop spends a subtraction and a
multiply-add per pair and coordinate, reloading y for every row. Here, as FAISS does, distances
come from ``|x|^2 + |y|^2 - 2 <x, y>`` with the products register-blocked like a GEMM; unlike
a BLAS call plus a separate top-K pass, the fused kernel (``knn.cpp``) merges each block of
distances into the running K-lists while it is still in registers (a GEMM writing N x M floats
to memory ran at a third of this machine's FMA peak for D = 50). Memory stays O((N + M) D).

The expansion loses accuracy for near points (cancellation), so a few extra candidates are kept,
their distances are recomputed exactly, and the K best are sorted by (exact value, index): the
returned values are exact, and ties keep the smallest index like every other backend.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

import torch

from ...settings import get_config
from ...formula import CAT_I, CAT_J
from ..base import Call
from . import compiler

#: below this dimension the generated loop is faster than a GEMM
MIN_DIM = 16
EXTRA = 8  # candidates kept beyond K before the exact re-ranking


def match(call: Call) -> Optional[tuple[int, int]]:
    """``(i-arg, j-arg)`` when the call is a K-min / min of ``|x_i - y_j|^2`` at D >= MIN_DIM."""
    red = call.reduction
    if red.kind not in ("kmin_argkmin", "min_argmin") or call.ranges is not None:
        return None
    f = red.formula
    if f.op != "dot" or f.args[0] is not f.args[1] or f.args[0].op != "sub":
        return None
    x, y = f.args[0].args
    if x.op != "var" or y.op != "var" or x.dim < MIN_DIM:
        return None
    (ix, cx, _), (iy, cy, _) = x.attrs, y.attrs
    if cx == CAT_J and cy == CAT_I:  # |y_j - x_i|^2 is the same distance
        (ix, cx), (iy, cy) = (iy, cy), (ix, cx)
    if (cx, cy) != (CAT_I, CAT_J):
        return None
    return ix, iy


def run(call: Call, args, ix: int, iy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs in the backend layout: ``(*batch, ni, K, 1)`` (K-min) or ``(*batch, ni, 1)`` (min)."""
    K = call.reduction.K
    batch = tuple(call.batch)
    x = args[ix].expand(*batch, call.ni, args[ix].shape[-1]).reshape(-1, call.ni, args[ix].shape[-1])
    y = args[iy].expand(*batch, call.nj, args[iy].shape[-1]).reshape(-1, call.nj, args[iy].shape[-1])
    vals, idx = zip(*(_knn(xb, yb, K) for xb, yb in zip(x, y)))
    vals = torch.stack(vals).reshape(*batch, call.ni, K, 1)
    idx = torch.stack(idx).reshape(*batch, call.ni, K, 1)
    if call.reduction.kind == "min_argmin":
        return vals[..., 0, :], idx[..., 0, :]
    return vals, idx


_SCALARS = {torch.float32: "float", torch.float64: "double"}
_SIGNATURE = {"lg_knn_sqdist": ([ctypes.c_int64, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 4
                                + [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int], None)}


def _kernel(dtype: torch.dtype):
    """The compiled fused kernel of ``knn.cpp`` (compiled once per dtype, cached on disk)."""
    cfg = get_config()
    return compiler.load_source(Path(__file__).with_name("knn.cpp"), _SCALARS[dtype], cfg.cache_dir, cfg.verbose,
                                _SIGNATURE).lg_knn_sqdist


def _knn(x: torch.Tensor, y: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = x.shape[0], y.shape[0]
    kc = min(m, K + EXTRA)
    x = x.contiguous()
    step = 2 * (32 // x.element_size())  # the kernel's column block: 2 vectors (lgmath.hpp W)
    mp = -(-m // step) * step
    yT = torch.zeros(y.shape[1], mp, dtype=y.dtype)
    yT[:, :m] = y.T
    # packed by column panels (mp / step, D, step): the micro-kernel reads each panel sequentially
    yT = yT.reshape(y.shape[1], mp // step, step).transpose(0, 1).contiguous()
    y2 = torch.full((mp,), float("inf"), dtype=y.dtype)
    y2[:m] = (y * y).sum(1)
    y = y.contiguous()
    cand_v = torch.empty(n, kc, dtype=x.dtype)
    cand_k = torch.empty(n, kc, dtype=torch.int64)
    out_v = torch.empty(n, K, dtype=x.dtype)
    out_k = torch.empty(n, K, dtype=torch.int64)
    _kernel(x.dtype)(n, mp, x.shape[1], x.data_ptr(), y.data_ptr(), yT.data_ptr(), y2.data_ptr(), kc, K,
                     cand_v.data_ptr(), cand_k.data_ptr(), out_v.data_ptr(), out_k.data_ptr(),
                     torch.get_num_threads())
    return out_v, out_k
