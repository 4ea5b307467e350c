"""Helpers of the formula-layer tests: input sampling by op domain, and the two evaluations
compared everywhere: our reduction (``genred`` on the reference backend, gradients through the
symbolic VJP rules) and a dense (N, M, D) torch computation differentiated by torch autograd."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from lazygeom.formula import CAT_I, CAT_J, CAT_P, Node
from lazygeom.lazy.genred import genred
from lazygeom.reductions import Reduction

DT = torch.float64
NI, NJ = 4, 5  # different on purpose: an i/j mix-up changes shapes


def draw(domain: str, shape, gen: torch.Generator) -> torch.Tensor:
    """Random float64 values in an op's argument domain (see ``OpSpec.domains``)."""
    u = torch.rand(shape, generator=gen, dtype=DT)
    if domain == "any":
        return torch.randn(shape, generator=gen, dtype=DT)
    if domain == "pos":  # > 0, away from the singularity at 0
        return 0.2 + 1.8 * u
    if domain == "unit":  # |x| < 1, away from +-1
        return 0.9 * (2 * u - 1)
    if domain == "nz":  # away from 0 (kinks, poles)
        sign = torch.where(torch.rand(shape, generator=gen, dtype=DT) < 0.5, -1.0, 1.0).to(DT)
        return sign * (0.3 + 1.7 * u)
    raise AssertionError(f"unknown domain {domain!r}: extend formula_testing.draw")


def arg_shape(cat: int, dim: int) -> tuple[int, ...]:
    return {CAT_I: (NI, dim), CAT_J: (NJ, dim), CAT_P: (dim,)}[cat]


def dense_view(t: torch.Tensor, cat: int) -> torch.Tensor:
    """An argument laid out for broadcasting on the (N, M, D) grid."""
    return {CAT_I: lambda: t[:, None, :], CAT_J: lambda: t[None, :, :], CAT_P: lambda: t[None, None, :]}[cat]()


def lazy_sum(f: Node, args: Sequence[torch.Tensor], cats: Sequence[int], backend: str = "reference") -> torch.Tensor:
    """sum_j F(args) through genred; shape (NI, F.dim)."""
    (out,) = genred(Reduction("sum", f), list(args), list(cats), NI, NJ, (), backend)
    return out


def dense_sum(fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor], cats: Sequence[int]) -> torch.Tensor:
    """sum_j fn(dense args) on the materialised (NI, NJ, E) grid."""
    out = fn(*(dense_view(a, c) for a, c in zip(args, cats)))
    return out.expand(NI, NJ, out.shape[-1]).sum(1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normwise relative error of ``a`` against the reference ``b`` (absolute when b == 0)."""
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs reference {tuple(b.shape)}"
    nb = b.norm().item()
    d = (a - b).norm().item()
    return d / nb if nb > 0 else d


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str = "") -> None:
    assert torch.isfinite(b).all(), f"{what}: non-finite reference (bad test domain)"
    err = rel_err(a, b)
    assert err < tol, f"{what}: relative error {err:.3e} >= {tol:.1e}\nours={a}\nref={b}"


def grads(out: torch.Tensor, inputs: Sequence[torch.Tensor], create_graph: bool = False
          ) -> list[Optional[torch.Tensor]]:
    """d(out)/d(inputs) with None where no gradient flows (out may not require grad at all)."""
    if not out.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(out, list(inputs), allow_unused=True, create_graph=create_graph))


def or_zeros(g: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g
