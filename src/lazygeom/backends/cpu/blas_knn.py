"""K-nearest neighbours through blocked matrix products (BLAS), for squared distances at larger D.

For ``F = |x_i - y_j|^2`` reduced with K-min or min, the generated loop spends D multiply-adds per
pair without the register blocking of a matrix product. Here, as FAISS does, blocks of
``|x|^2 + |y|^2 - 2 <x, y>`` come from one GEMM each (torch's BLAS) and a running top-K is merged
block by block; memory stays O(block^2).

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
ROW_BLOCK, COL_BLOCK = 2048, 8192


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
_MERGE: dict = {}


def _merge_fn(dtype: torch.dtype):
    """The compiled block-merge routine of ``topk.cpp`` (compiled once, cached on disk)."""
    fn = _MERGE.get(dtype)
    if fn is None:
        cfg = get_config()
        source = Path(__file__).with_name("topk.cpp").read_text()
        lib = ctypes.CDLL(str(compiler.build(source, _SCALARS[dtype], cfg.cache_dir, cfg.verbose)))
        fn = lib.lg_topk_merge
        fn.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        fn.restype = None
        _MERGE[dtype] = fn
    return fn


def _knn(x: torch.Tensor, y: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = x.shape[0], y.shape[0]
    kc = min(m, K + EXTRA)
    x = x.contiguous()
    y = y.contiguous()
    y2 = (y * y).sum(1)
    merge = _merge_fn(x.dtype)
    threads = torch.get_num_threads()
    out_v = torch.empty(n, K, dtype=x.dtype)
    out_k = torch.empty(n, K, dtype=torch.int64)
    d = torch.empty(min(n, ROW_BLOCK), min(m, COL_BLOCK), dtype=x.dtype)
    for i0 in range(0, n, ROW_BLOCK):
        xb = x[i0: i0 + ROW_BLOCK]
        rows = xb.shape[0]
        x2 = (xb * xb).sum(1, keepdim=True)
        best_v = torch.full((rows, kc), float("inf"), dtype=x.dtype)
        best_k = torch.zeros((rows, kc), dtype=torch.int64)
        for j0 in range(0, m, COL_BLOCK):
            yb = y[j0: j0 + COL_BLOCK]
            blk = d[:rows, : yb.shape[0]]
            torch.addmm(y2[j0: j0 + COL_BLOCK].unsqueeze(0), xb, yb.T, alpha=-2, out=blk)
            blk.add_(x2)
            merge(rows, yb.shape[0], blk.data_ptr(), d.shape[1], j0, kc, best_v.data_ptr(), best_k.data_ptr(),
                  threads)
        # exact re-ranking of the candidates: sort by index first, then stably by exact value
        best_k, _ = torch.sort(best_k, dim=1)
        exact = ((xb.unsqueeze(1) - y[best_k]) ** 2).sum(-1)
        exact, order = torch.sort(exact, dim=1, stable=True)
        out_v[i0: i0 + rows] = exact[:, :K]
        out_k[i0: i0 + rows] = torch.gather(best_k, 1, order[:, :K])
    return out_v, out_k
