"""K-nearest neighbours through blocked matrix products, for squared distances and inner products.

For ``F = |x_i - y_j|^2`` reduced with K-min or min, the generated loop spends a subtraction and a
multiply-add per pair and coordinate, reloading y for every row. Here, as FAISS does, distances
come from ``|x|^2 + |y|^2 - 2 <x, y>`` with the products register-blocked like a GEMM (and
``F = <x_i, y_j>`` or ``-<x_i, y_j>``, the largest inner products, from the products alone); unlike
a BLAS call plus a separate top-K pass, the fused kernel (``knn.cpp``) merges each block of
distances into the running K-lists while it is still in registers (a GEMM writing N x M floats
to memory ran at a third of this machine's FMA peak for D = 50). Memory stays O((N + M) D).

The expansion loses accuracy for near points (cancellation), so a few extra candidates are kept,
their distances are recomputed exactly, and the K best are sorted by (exact value, index): the
returned values are exact, and ties keep the smallest index like every other backend.

Long searches run by chunks of rows (:mod:`.runner`: Ctrl-C is honoured in between; one thread in
a forked child): the kernel sees a chunk's rows through offset pointers.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...settings import get_config
from ...formula import CAT_I, CAT_J
from ..base import Call
from . import compiler, runner

#: below this dimension the generated loop is faster than a GEMM
MIN_DIM = 16
EXTRA = 8  # candidates kept beyond K before the exact re-ranking
ROW_BLOCK = 240  # the rows a thread takes at once in knn.cpp (IC): chunks hold whole blocks per thread


def _pair(a, b) -> Optional[tuple[int, int]]:
    """``(i-arg, j-arg)`` when a and b are an i-variable and a j-variable (either order) of D >= MIN_DIM."""
    if a.op != "var" or b.op != "var" or a.dim < MIN_DIM or a.dim != b.dim:
        return None
    (ia, ca, _), (ib, cb, _) = a.attrs, b.attrs
    if (ca, cb) == (CAT_I, CAT_J):
        return ia, ib
    if (ca, cb) == (CAT_J, CAT_I):
        return ib, ia
    return None


def _products(f) -> Optional[tuple]:
    """The two factors of ``dot(a, b)`` or ``sum(a * b)``; ``(s, s)`` for ``sum(square(s))``."""
    if f.op == "dot":
        return f.args
    if f.op == "sum" and f.args[0].op == "mul":
        return f.args[0].args
    if f.op == "sum" and f.args[0].op == "square":
        return f.args[0].args[0], f.args[0].args[0]
    return None


def match(call: Call) -> Optional[tuple[int, int, int]]:
    """Whether the fused kernel runs this call.

    It does for a K-min / min over j at D >= MIN_DIM, without ranges, of ``|x_i - y_j|^2`` (sign 0:
    written ``sqdist``, ``((x - y) ** 2).sum(-1)``, ...), of ``<x_i, y_j>`` (sign 1) or of
    ``-<x_i, y_j>`` (sign -1: the largest inner products).

    Args:
        call: the call.

    Returns:
        ``(i-arg, j-arg, sign)``, or None.
    """
    red = call.reduction
    if not (red.spec.is_run and red.spec.extremum == "min") or call.ranges is not None:
        return None
    f, sign = red.formula, 1
    if f.op == "neg":
        f, sign = f.args[0], -1
    ab = _products(f)
    if ab is None:
        return None
    a, b = ab
    if a is b and a.op == "sub" and sign == 1:  # |x - y|^2 (or |y - x|^2: the same distance)
        found = _pair(*a.args)
        return None if found is None else (*found, 0)
    found = _pair(a, b)
    return None if found is None else (*found, sign)


def run(call: Call, args: Sequence[torch.Tensor], ix: int, iy: int, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a call that :func:`match` accepted.

    Args:
        call: the call.
        args: its arguments.
        ix: the i-argument.
        iy: the j-argument.
        sign: 0 for squared distances, 1 for inner products, -1 for their opposites.

    Returns:
        Values and indices in the backend layout: ``(*batch, ni, K, 1)`` (K-min) or
        ``(*batch, ni, 1)`` (min).
    """
    K = call.reduction.K
    batch = tuple(call.batch)
    x = args[ix].expand(*batch, call.ni, args[ix].shape[-1]).reshape(-1, call.ni, args[ix].shape[-1])
    y = args[iy].expand(*batch, call.nj, args[iy].shape[-1]).reshape(-1, call.nj, args[iy].shape[-1])
    vals, idx = zip(*(_knn(xb, yb, K, sign) for xb, yb in zip(x, y)))
    vals = torch.stack(vals).reshape(*batch, call.ni, K, 1)
    idx = torch.stack(idx).reshape(*batch, call.ni, K, 1)
    if not call.reduction.spec.k:
        return vals[..., 0, :], idx[..., 0, :]
    return vals, idx


_SCALARS = {torch.float32: "float", torch.float64: "double"}
_SIGNATURE = {"lg_knn_sqdist": ([ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int] + [ctypes.c_void_p] * 4
                                + [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int], None)}


def _kernel(dtype: torch.dtype):
    """The compiled fused kernel of ``knn.cpp`` (compiled once per dtype, cached on disk)."""
    cfg = get_config()
    return compiler.load_source(Path(__file__).with_name("knn.cpp"), _SCALARS[dtype], cfg.cache_dir, cfg.verbose,
                                _SIGNATURE).lg_knn_sqdist


def _knn(x: torch.Tensor, y: torch.Tensor, K: int, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    y2[:m] = (y * y).sum(1) if sign == 0 else 0
    y = y.contiguous()
    cand_v = torch.empty(n, kc, dtype=x.dtype)
    cand_k = torch.empty(n, kc, dtype=torch.int64)
    out_v = torch.empty(n, K, dtype=x.dtype)
    out_k = torch.empty(n, K, dtype=torch.int64)
    fn, D, es = _kernel(x.dtype), x.shape[1], x.element_size()
    threads = runner.threads()

    def rows(i0: int, i1: int) -> None:  # the rows [i0, i1): the kernel sees them from their pointers
        fn(i1 - i0, mp, D, sign, x.data_ptr() + i0 * D * es, y.data_ptr(), yT.data_ptr(), y2.data_ptr(), kc, K,
           cand_v.data_ptr() + i0 * kc * es, cand_k.data_ptr() + i0 * kc * 8, out_v.data_ptr() + i0 * K * es,
           out_k.data_ptr() + i0 * K * 8, threads)

    # long searches run by chunks of rows, so that Ctrl-C is honoured in between (see runner);
    # a pair costs D multiply-adds (W of them per instruction)
    runner.run_chunks(rows, n, mp * max(1.0, D / 8), threads, quantum=ROW_BLOCK * threads, label="cpu kNN")
    return out_v, out_k
