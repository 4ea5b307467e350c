"""The native CPU backend: generated C++ (SIMD over j, OpenMP over blocks of i), loaded with ctypes.

Every compiled entry point of the package (these kernels, the fused kNN, the plan marginals) runs
through :mod:`.runner`: one thread in a forked child (libgomp's thread pool does not survive a
fork), and long calls cut into chunks of rows so that Ctrl-C raises ``KeyboardInterrupt`` within
about 50 ms, with an optional progress line (``lazygeom.config(progress=True)``).
"""

from __future__ import annotations

import ctypes
import math
from types import ModuleType
from typing import Optional, Sequence

import torch

from ...settings import get_config
from ...formula import CAT_I, CAT_J
from ..base import Call, range_offsets, row_clusters
from . import blas_knn, compiler, marginals, pairs, runner
from .kernel import TEMPLATES, generate

_SCALARS = {torch.float32: "float", torch.float64: "double"}
_VBYTES = 32  # bytes of one vec: W = 8 floats or 4 doubles (see lgmath.hpp)
SERIAL_PAIRS = 1 << 16  # below this many pairs, one thread
RB = 32  # the kernel's rows per block (fewer for large row states): chunks hold whole blocks per thread

_ARGTYPES = [ctypes.c_int64] * 6 + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]


class CpuBackend:
    """Compiled C++ kernels for CPU tensors in float32 and float64.

    Safe in forked children (``os.fork``, multiprocessing's ``fork``, DataLoader workers: they run
    on one thread, see :mod:`lazygeom.backends.cpu.runner`), from concurrent Python threads, and
    interruptible: a long call runs by chunks of rows, between which Ctrl-C is honoured.
    """

    name = "cpu"
    per_range = True  # the kernel template writes one result per (row, range) itself

    def __init__(self) -> None:
        self._kernels: dict[tuple, ctypes._CFuncPtr] = {}

    @staticmethod
    def available() -> bool:
        """Whether a C++ compiler is found."""
        return compiler.find_compiler() is not None

    def capability(self, name: str, tensors: Sequence) -> Optional[ModuleType]:
        """The module of an optional fast path for these (CPU) tensors.

        Args:
            name: the capability (see :func:`lazygeom.backends.policy.capability`).
            tensors: the tensors it would run on.

        Returns:
            The module, or None.
        """
        if name == "pair_sorting":
            return pairs
        if name == "plan_marginals":
            return marginals if len(tensors) == 2 and marginals.supported(*tensors) else None
        if name == "fused_knn":
            return blas_knn
        return None

    def supports(self, call: Call, args: Sequence[torch.Tensor]) -> bool:
        """The run kinds of its kernel template, on float32/float64 CPU tensors of one dtype.

        Args:
            call: the call.
            args: its arguments.

        Returns:
            True when it can run the call.
        """
        if call.reduction.kind not in TEMPLATES or not args:
            return False
        dtype = args[0].dtype
        if dtype not in _SCALARS or any(a.dtype != dtype or a.device.type != "cpu" for a in args):
            return False
        # float32 lanes carry 32-bit indices
        return dtype == torch.float64 or call.nj < 2**31 - 1024

    def kernel(self, call: Call, dims: tuple[int, ...], dtype: torch.dtype) -> ctypes._CFuncPtr:
        """The compiled entry point for this call's structure (compiled on first use).

        Args:
            call: the call.
            dims: its arguments' vector dimensions.
            dtype: their dtype.

        Returns:
            The kernel's ``lg_kernel``.
        """
        cfg = get_config()
        key = (call.reduction.key, call.cats, dims, dtype, call.per_range, cfg.cache_dir)
        fn = self._kernels.get(key)
        if fn is None:
            source = generate(call.reduction, call.cats, dims, call.per_range)
            path = compiler.build(source, _SCALARS[dtype], cfg.cache_dir, cfg.verbose)
            fn = ctypes.CDLL(str(path)).lg_kernel
            fn.argtypes, fn.restype = _ARGTYPES, ctypes.c_int
            self._kernels[key] = fn
        return fn

    def run(self, call: Call, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Run a call (see :meth:`lazygeom.backends.Backend.run`).

        A call of more than about 0.1 s runs as several kernel calls over consecutive ranges of
        rows (:func:`lazygeom.backends.cpu.runner.run_chunks`), sized from its pairs (block-sparse:
        the pairs of each row's ranges); the results are those of one call.

        Args:
            call: the call.
            args: its arguments.

        Returns:
            Its outputs.
        """
        knn = blas_knn.match(call)
        if knn is not None:
            return blas_knn.run(call, args, *knn)
        red = call.reduction
        dtype = args[0].dtype
        dims = tuple(int(a.shape[-1]) for a in args)
        fn = self.kernel(call, dims, dtype)
        batch = tuple(call.batch)
        nb = math.prod(batch) if batch else 1
        W = _VBYTES // torch.tensor([], dtype=dtype).element_size()
        njp = -(-call.nj // W) * W
        prepared = [_layout(a, c, batch, nb, call.ni, call.nj, njp) for a, c in zip(args, call.cats)]
        E = red.out_dim
        rows = (*batch, call.ni)
        offsets = None
        if call.per_range:
            offsets, total = range_offsets(call)
            rows = (total,)
        shape = (*rows, red.K, E) if red.spec.k else (*rows, E)
        out = torch.empty(shape, dtype=dtype)
        selection = red.spec.selection
        outk = torch.empty(shape if selection else (0,), dtype=torch.int64)
        ptrs = (ctypes.c_void_p * max(1, len(prepared)))(*[p.data_ptr() for p in prepared])
        sparse = _sparse_layout(call) if call.ranges is not None else ()
        # waking an OpenMP team costs more than a small problem: those run on the calling thread
        threads = runner.threads() if nb * call.ni * call.nj >= SERIAL_PAIRS else 1
        fixed = (ctypes.cast(ptrs, ctypes.c_void_p), out.data_ptr(), outk.data_ptr(), threads,
                 *((t.data_ptr() for t in sparse) if sparse else (None, None, None)),
                 None if offsets is None else offsets.data_ptr())

        def rows(r0: int, r1: int) -> None:
            fn(nb, call.ni, call.nj, njp, r0, r1, *fixed)

        # long calls run by chunks of rows, so that Ctrl-C is honoured in between (see runner)
        weight = 1 + sum(dims) / 8  # a rough cost of one pair, in units of a small formula's
        cost = weight * call.nj
        if sparse and nb * call.ni * cost > 2 * runner.PAIRS_PER_SECOND * threads * runner.CHUNK_SECONDS:
            cost = _row_costs(*sparse, nb, weight)
        runner.run_chunks(rows, nb * call.ni, cost, threads, quantum=RB * threads, label=f"cpu {red.kind}")
        return (out, outk) if selection else (out,)


def _sparse_layout(call: Call) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row_cluster, slices, redranges) int64 arrays for the kernel; -1 marks rows in no cluster."""
    ranges_i, slices_i, redranges_j = call.ranges[:3]
    row_cluster = row_clusters(ranges_i.to(torch.int64), call.ni)
    return row_cluster, slices_i.to(torch.int64).contiguous(), redranges_j.to(torch.int64).contiguous()


def _row_costs(row_cluster: torch.Tensor, slices: torch.Tensor, redranges: torch.Tensor, nb: int,
               weight: float) -> torch.Tensor:
    """The cumulative cost ``(nb * ni + 1,)`` of the rows of a block-sparse call: its pairs, weighted."""
    ends = torch.cat([torch.zeros(1, dtype=torch.int64), (redranges[:, 1] - redranges[:, 0]).cumsum(0)])
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), slices[:-1]])
    cols = ends[slices] - ends[starts]  # per cluster, the columns its ranges hold
    if cols.numel() == 0:
        cols = torch.zeros(1, dtype=torch.int64)
    per_row = torch.where(row_cluster >= 0, cols[row_cluster.clamp(min=0)], 0).to(torch.float64) * weight
    return torch.cat([torch.zeros(1, dtype=torch.float64), per_row.repeat(nb).cumsum(0)])


def _layout(a: torch.Tensor, cat: int, batch, nb: int, ni: int, nj: int, njp: int) -> torch.Tensor:
    """Contiguous kernel layout; j-variables transposed to (nb, D, njp), zero-padded."""
    D = a.shape[-1]
    if cat == CAT_I:
        return a.expand(*batch, ni, D).reshape(nb, ni, D).contiguous()
    if cat == CAT_J:
        t = a.expand(*batch, nj, D).reshape(nb, nj, D).transpose(1, 2)
        out = torch.zeros(nb, D, njp, dtype=a.dtype)
        out[:, :, :nj] = t
        return out
    return a.expand(*batch, D).reshape(nb, D).contiguous()
