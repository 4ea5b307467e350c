"""The Triton backend: kernels generated from the IR, for CUDA tensors (or the Triton interpreter).

Each kernel is a Python module written to ``<cache_dir>/triton/`` and imported from there:
Triton's ``@jit`` reads the source of the functions it compiles, so they must live in a real
file. Modules are cached in memory per (reduction, argument categories and dimensions); Triton
itself keeps one binary per dtype and specialisation. Sizes N, M and parameter values are
run-time arguments, so they never trigger a recompilation (Triton specialises integers on
divisibility by 16 and on the value 1: at most a few variants per kernel).

Devices: CUDA tensors run on their GPU. CPU tensors run under the interpreter when
``TRITON_INTERPRET=1`` (slow: meant for tests at small sizes), else are copied to the current
CUDA device and the results copied back (like pykeops' ``"GPU"`` backend on host data).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import math
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Sequence

import torch

from ...errors import CompilationError
from ...formula import CAT_I, CAT_J
from ...reductions import Reduction, selection_kind
from ...settings import get_config
from ..base import Call
from .. import cache
from . import dot
from .kernel import TEMPLATES, generate

#: compute dtype (tiles) and accumulation dtype (row sums across tiles) per input dtype
_DTYPES = {
    torch.float16: ("float32", "float32"),
    torch.bfloat16: ("float32", "float32"),
    torch.float32: ("float32", "float64"),
    torch.float64: ("float64", "float64"),
}
MAX_K = 64  # K-min lists live in registers, one column per rank
_INDEX_LIMIT = 2**31 - 2**16  # indices are int32 in registers


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter.

    ``TRITON_INTERPRET=1`` is read at each call, as Triton does when it decorates a function.
    """
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


class TritonBackend:
    """Generated Triton kernels (see the module docstring).

    Attributes:
        block_i: the tile's rows; None picks them from the call (tests set small tiles).
        block_j: the tile's columns; None picks them from the call.
    """

    name = "triton"

    def __init__(self, block_i: int | None = None, block_j: int | None = None) -> None:
        self.block_i = block_i
        self.block_j = block_j
        self._modules: dict[tuple, ModuleType] = {}

    @staticmethod
    def available() -> bool:
        """Triton is installed, and a CUDA device is present or the interpreter is on."""
        return _triton_installed() and (interpreting() or torch.cuda.is_available())

    def supports(self, call: Call, args: Sequence[torch.Tensor]) -> bool:
        """Whether it runs ``call`` on ``args`` (see :meth:`why_not`).

        Args:
            call: the call.
            args: its arguments.

        Returns:
            True when it can.
        """
        return self.why_not(call, args) is None

    def why_not(self, call: Call, args: Sequence[torch.Tensor]) -> str | None:
        """Why this backend cannot run ``call`` on ``args`` (for errors).

        Args:
            call: the call.
            args: its arguments.

        Returns:
            None when it can, else the reason.
        """
        red = call.reduction
        if red.kind not in TEMPLATES:
            return f"it runs {tuple(TEMPLATES)} (the others through their run kind)"
        if not args:
            return "a reduction without tensor arguments"
        if call.nj >= _INDEX_LIMIT:
            return f"at most {_INDEX_LIMIT} reduced indices (int32 in registers), got {call.nj}"
        if red.spec.k and red.K > MAX_K:
            return f"K-min keeps its lists in registers: K <= {MAX_K}, got {red.K}"
        dtype, device = args[0].dtype, args[0].device
        if dtype not in _DTYPES or any(a.dtype != dtype or a.device != device for a in args):
            dtypes = sorted({str(a.dtype) for a in args})
            devices = sorted({str(a.device) for a in args})
            return (f"it needs float16/bfloat16/float32/float64 tensors of one dtype on one device; "
                    f"got dtypes {dtypes} on devices {devices}")
        if device.type == "cuda" or (device.type == "cpu" and (interpreting() or torch.cuda.is_available())):
            return None
        return f"tensors on {device} need a CUDA device (or TRITON_INTERPRET=1 for CPU tensors)"

    # --- kernels -------------------------------------------------------------------------------

    def module(self, call: Call, dims: tuple[int, ...], dot_terms: bool = False) -> ModuleType:
        """The imported kernel module for this call's structure (generated on first use).

        Args:
            call: the call.
            dims: its arguments' vector dimensions.
            dot_terms: compute dot-shaped terms with ``tl.dot`` (see :mod:`.dot`).

        Returns:
            The module; its entry point is ``lg_kernel``.
        """
        cfg = get_config()
        key = (call.reduction.key, call.cats, dims, dot_terms, interpreting(), cfg.cache_dir)
        mod = self._modules.get(key)
        if mod is None:
            source = generate(call.reduction, call.cats, dims, dot_terms)
            path = write_source(source, Path(cfg.cache_dir) / "triton")
            if cfg.verbose:
                print(f"[lazygeom] triton kernel {path}")
            mod = _import(path, source)
            self._modules[key] = mod
        return mod

    def tiles(self, call: Call, dims: tuple[int, ...], dtype: torch.dtype,
              dot_terms: bool = False) -> tuple[int, int, int]:
        """The tile sizes and warps of a launch.

        Not timed on a GPU yet: chosen so that ptxas (sm_90) reports no register spills for
        Gaussian sums, LogSumExp and K-min at D = 3 (about 16 tile elements per thread) and for the
        kNN kernel on tl.dot tiles at D = 64, K = 10 (+8 extra); smaller tiles when many components
        are live.

        Args:
            call: the call.
            dims: its arguments' vector dimensions.
            dtype: their dtype.
            dot_terms: the kernel computes dot-shaped terms with ``tl.dot``.

        Returns:
            ``(BLOCK_I, BLOCK_J, num_warps)``.
        """
        if interpreting():
            bi, bj, warps = 32, 32, 1  # the interpreter's cost is per operation: few, large tiles
        elif dot_terms:
            # tl.dot tiles (>= 16 each way): 128 rows halve the reloads of y per row
            bi, bj, warps = 128, 64, 8
        elif sum(dims) > 8:
            bi, bj, warps = 32, 32, 4
        elif dtype == torch.float64:
            bi, bj, warps = 64, 32, 4
        else:
            bi, bj, warps = 64, 64, 8
        return self.block_i or bi, self.block_j or bj, warps

    # --- running -------------------------------------------------------------------------------

    def run(self, call: Call, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Run a call (see :meth:`lazygeom.backends.Backend.run`).

        Args:
            call: the call.
            args: its arguments (CPU tensors are copied to the GPU and back, or interpreted).

        Returns:
            Its outputs.
        """
        device = args[0].device
        if device.type == "cpu" and not interpreting():
            outs = self.run(call, [a.cuda() for a in args])
            return tuple(o.to(device) for o in outs)
        knn = dot.match_knn(call, tuple(int(a.shape[-1]) for a in args))
        if knn is not None:
            return self._run_knn(call, args, *knn)
        return self._launch(call, args)

    def _run_knn(self, call: Call, args, ix: int, iy: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K-min / min of ``|x_i - y_j|^2`` at larger D.

        ``tl.dot`` tiles on centred data keep ``dot.EXTRA`` more candidates, re-ranked with exact
        distances (see :mod:`.dot`).
        """
        red, dtype = call.reduction, args[0].dtype
        work = torch.float64 if dtype == torch.float64 else torch.float32
        K = red.K if red.spec.k else 1
        kc = min(K + dot.EXTRA, call.nj)
        kmin = selection_kind("min", k=True).name
        sub = Call(Reduction(kmin, red.formula, K=kc), call.cats, call.ni, call.nj, call.batch, call.ranges)
        vals, idx = self._launch(sub, dot.centred([a.to(work) for a in args], ix, iy), dot_terms=True)
        batch = tuple(call.batch)
        nb, D = (math.prod(batch) if batch else 1), args[ix].shape[-1]
        x = args[ix].to(work).expand(*batch, call.ni, D).reshape(nb, call.ni, D)
        y = args[iy].to(work).expand(*batch, call.nj, D).reshape(nb, call.nj, D)
        v, k = dot.rerank(x, y, vals.reshape(nb, call.ni, kc), idx.reshape(nb, call.ni, kc), K)
        shape = (*batch, call.ni, K, 1) if red.spec.k else (*batch, call.ni, 1)
        return v.to(dtype).reshape(shape), k.reshape(shape)

    def _launch(self, call: Call, args, dot_terms: bool = False) -> tuple[torch.Tensor, ...]:
        red = call.reduction
        dtype, device = args[0].dtype, args[0].device
        dims = tuple(int(a.shape[-1]) for a in args)
        batch = tuple(call.batch)
        nb = math.prod(batch) if batch else 1
        prepared = [_layout(a, c, batch, nb, call.ni, call.nj) for a, c in zip(args, call.cats)]
        E, K = red.out_dim, red.K
        selection = red.spec.selection
        shape = (nb, call.ni, K, E) if red.spec.k else (nb, call.ni, E)
        sparse = call.ranges is not None
        if sparse:  # rows outside every cluster are never visited: the empty reduction's value
            out = torch.full(shape, red.spec.empty, dtype=dtype, device=device)
        else:
            out = torch.empty(shape, dtype=dtype, device=device)
        outk = torch.zeros(shape if selection else (1,), dtype=torch.int64, device=device)
        bi, bj, warps = self.tiles(call, dims, dtype, dot_terms)
        if sparse:
            blocks, slices, redranges = _sparse_layout(call, bi, device)
            grid = (blocks.shape[0], nb)
        else:
            blocks = slices = redranges = torch.zeros(3, dtype=torch.int64, device=device)
            grid = (triton_cdiv(call.ni, bi), nb)
        if grid[0] > 0 and nb > 0 and call.ni > 0:
            mod = self.module(call, dims, dot_terms)
            ct, acc = _DTYPES[dtype]
            import triton.language as tl

            # Triton launches on the current device: make it the tensors' one
            on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
            try:
                with on_device:
                    mod.lg_kernel[grid](*prepared, out, outk, call.ni, call.nj, blocks, slices, redranges,
                                        CT=getattr(tl, ct), ACC=getattr(tl, acc), SPARSE=sparse,
                                        BLOCK_I=bi, BLOCK_J=bj, DOT_PRECISION=dot.precision(dtype),
                                        num_warps=warps)
            except Exception as err:  # noqa: BLE001 - Triton's errors, re-raised with the source path
                if type(err).__module__.startswith("triton"):
                    msg = f"{type(err).__name__}: {err}"
                    raise CompilationError(mod.__file__, ["triton", mod.__file__], msg) from err
                raise
        out = out.reshape(*batch, *shape[1:])
        if selection:
            return out, outk.reshape(*batch, *shape[1:])
        return (out,)


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None  # without importing it


def triton_cdiv(a: int, b: int) -> int:
    """The number of blocks of ``b`` that cover ``a``.

    Args:
        a: the size.
        b: the block.

    Returns:
        ``ceil(a / b)``.
    """
    return -(-a // b)


def write_source(source: str, folder: Path) -> Path:
    """Write ``source`` to ``folder/lgt_<hash>.py`` (atomically; an existing file is reused).

    An existing file is reused only if it holds exactly ``source`` (its name is the hash of its
    content); a damaged one is written again, with one ``RuntimeWarning``. When ``folder`` cannot
    be written, the file goes to this process's temporary folder (see
    :func:`lazygeom.backends.cache.fall_back`, one ``RuntimeWarning``); a matching file in a
    read-only folder is reused without writes.

    Args:
        source: a kernel module's source.
        folder: the folder.

    Returns:
        The file's path.
    """
    data = source.encode()
    name = f"lgt_{hashlib.blake2b(data, digest_size=16).hexdigest()}.py"
    temp = cache.stand_in(folder)
    for place in (folder, temp):  # reads only
        if place is not None and _module_problem(place / name, data) is None:
            return place / name
    problem = _module_problem(folder / name, data)
    if problem != cache.MISSING and (folder / name).exists():
        cache.warn_damaged(folder / name, problem, "Triton module")
    try:
        return _write_atomic(temp or folder, name, data)
    except OSError as err:
        if temp is not None:
            raise OSError(err.errno, f"lazygeom: cannot write to the temporary kernel cache {temp}: {err}") from err
        return _write_atomic(cache.fall_back(folder, err), name, data)


def _write_atomic(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)  # concurrent writers write the same bytes: last rename wins, harmlessly
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return folder / name


def _module_problem(path: Path, data: bytes) -> str | None:
    """Why the module file cannot be imported as ``data``; None when it holds exactly ``data``."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return cache.MISSING
    except OSError as err:
        return f"unreadable ({err})"
    if content != data:
        return f"{len(content)} bytes that differ from the {len(data)} bytes its name stands for"
    return None


def _import(path: Path, source: str) -> ModuleType:
    """Execute ``source`` (the verified content of ``path``) as a module whose file is ``path``.

    Compiled from ``source`` rather than imported from the file: what runs is what was verified,
    and no ``__pycache__`` (which could be damaged in turn) is written beside it.
    """
    name = f"lazygeom_triton_{path.stem}_{int(interpreting())}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Triton resolves the kernel's globals through its module
    try:
        exec(compile(source, str(path), "exec"), mod.__dict__)  # the generated kernel, verified
    except Exception as err:
        del sys.modules[name]
        raise CompilationError(str(path), ["import", str(path)], f"{type(err).__name__}: {err}") from err
    return mod


def _sparse_layout(call: Call, block: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks of at most ``block`` rows of one i-cluster, with the clusters' slices and j-ranges.

    The blocks are ``(start, end, cluster)`` int64 triples; slices and ranges in pykeops' layout.
    """
    ranges_i, slices_i, redranges_j = (r.to(device=device, dtype=torch.int64) for r in call.ranges[:3])
    lens = (ranges_i[:, 1] - ranges_i[:, 0]).clamp(min=0)
    per = (lens + block - 1) // block
    cl = torch.repeat_interleave(torch.arange(len(ranges_i), device=device), per)
    first = torch.cumsum(per, 0) - per
    k = torch.arange(cl.numel(), device=device) - first[cl]  # block number within its cluster
    start = ranges_i[cl, 0] + k * block
    end = torch.minimum(start + block, ranges_i[cl, 1])
    blocks = torch.stack([start, end, cl], 1).contiguous()
    return blocks, slices_i.contiguous(), redranges_j.contiguous()


def _layout(a: torch.Tensor, cat: int, batch, nb: int, ni: int, nj: int) -> torch.Tensor:
    """Contiguous kernel layout: variables transposed to (nb, D, n), parameters (nb, D)."""
    D = a.shape[-1]
    if cat == CAT_I:
        return a.expand(*batch, ni, D).reshape(nb, ni, D).transpose(1, 2).contiguous()
    if cat == CAT_J:
        return a.expand(*batch, nj, D).reshape(nb, nj, D).transpose(1, 2).contiguous()
    return a.expand(*batch, D).reshape(nb, D).contiguous()
