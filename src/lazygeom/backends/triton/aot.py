"""Compile generated kernels for a given NVIDIA architecture without a GPU, and read their register use.

Triton's wheel ships ``ptxas``, so PTX and cubins for, say, sm_90 can be produced on any Linux
machine. The tests use this to put every snippet through Triton's compiler, which checks types,
constexprs and loop-carried values more strictly than the interpreter; :func:`resource_usage`
reports registers and spills (how the tile sizes of :meth:`TritonBackend.tiles` were chosen).

Must run in a process where Triton was imported *without* ``TRITON_INTERPRET=1`` (its own
library functions are decorated in one mode at import).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..base import Call
from .backend import _DTYPES, TritonBackend, interpreting
from .dot import precision

_PTR = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.float64: "*fp64"}


def compile_kernel(call: Call, dims: tuple[int, ...], dtype: torch.dtype, *, arch: int = 90,
                   sparse: bool = False, constant_nj: bool = False, block_i: int = 64, block_j: int = 32,
                   num_warps: int = 4, dot_terms: bool = False) -> Any:
    """The compiled kernel of ``call``.

    Args:
        call: the reduction (sizes are irrelevant, except ``constant_nj``).
        dims: the arguments' vector dimensions.
        dtype: the arguments' dtype.
        arch: the compute capability (90: H100).
        sparse: compile the block-sparse variant.
        constant_nj: compile the variant Triton makes when nj == 1 (a compile-time constant).
        block_i: the tile's rows.
        block_j: the tile's columns.
        num_warps: the warps per program.
        dot_terms: compute dot-shaped terms with ``tl.dot`` (see :mod:`.dot`).

    Returns:
        A ``triton.compiler.CompiledKernel`` (its PTX in ``.asm["ptx"]``).

    Raises:
        RuntimeError: in a process where Triton interprets kernels.
    """
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if interpreting() or type(tl.zeros).__name__ == "InterpretedFunction":
        raise RuntimeError("ahead-of-time compilation needs a process without TRITON_INTERPRET=1")
    mod = TritonBackend().module(call, dims, dot_terms)
    ptr = _PTR[dtype]
    sig = {f"a{k}": ptr for k in range(len(dims))}
    sig.update(out=ptr, outk="*i64", ni="i32", nj="constexpr" if constant_nj else "i32", blocks="*i64",
               slices="*i64", redranges="*i64", CT="constexpr", ACC="constexpr", SPARSE="constexpr",
               BLOCK_I="constexpr", BLOCK_J="constexpr", DOT_PRECISION="constexpr")
    ct, acc = (getattr(tl, t) for t in _DTYPES[dtype])
    consts = dict(CT=ct, ACC=acc, SPARSE=sparse, BLOCK_I=block_i, BLOCK_J=block_j, DOT_PRECISION=precision(dtype))
    if constant_nj:
        consts["nj"] = 1
    return triton.compile(ASTSource(fn=mod.lg_kernel, signature=sig, constexprs=consts),
                          target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


def resource_usage(compiled: Any, arch: int = 90) -> dict:
    """The registers and spills of a compiled kernel, from ``ptxas -v``.

    Args:
        compiled: a kernel from :func:`compile_kernel`.
        arch: its compute capability.

    Returns:
        ``{"registers": ..., "spill_bytes": ...}``.
    """
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "k.ptx"
        ptx.write_text(compiled.asm["ptx"])
        proc = subprocess.run([get_ptxas(arch).path, f"--gpu-name=sm_{arch}a", "-v", str(ptx), "-o",
                               str(Path(tmp) / "k.cubin")], capture_output=True, text=True, check=True)
    regs = re.search(r"Used (\d+) registers", proc.stderr)
    spill = re.search(r"(\d+) bytes spill stores", proc.stderr)
    return {"registers": int(regs.group(1)) if regs else None, "spill_bytes": int(spill.group(1)) if spill else 0}
