"""Dot-product tiles on tensor cores: ``<x_i, y_j>`` and ``|x_i - y_j|^2`` at larger D with ``tl.dot``.

The generic template evaluates a formula component by component on the FMA units; at D = 64
that is 128 instructions per pair and, worse, 64 live tiles per component sum (register spills).
Here such a term becomes one ``[BLOCK_I, BLOCK_J]`` tile from ``tl.dot`` of a ``[BLOCK_I, DP]``
block of x (loaded once per program) and a ``[DP, BLOCK_J]`` block of y (DP: D rounded up to a
power of two >= 16, zero-padded), with ``|x - y|^2 = |x|^2 + |y|^2 - 2 <x, y>`` clamped at 0.

Precision. float32 products go through ``input_precision="tf32x3"`` (three TF32 tensor-core
products, about float32 accuracy; plain TF32 would cost 3 decimal digits); float64 through
"ieee" (the float64 MMA). The expansion itself loses accuracy for near points: its error is about
eps (|x|^2 + |y|^2), not eps |x - y|^2. Two measures keep results float32-exact where it is used
(K-min and min of a squared distance, i.e. kNN, as ``cpu/blas_knn.py`` does): the data are
centred on the mean of y first (distances do not change, |x|^2 and |y|^2 shrink to the spread of
the data), and the kernel keeps ``EXTRA`` more candidates than asked, whose distances are then
recomputed exactly (component by component, in the input's precision) and re-ranked by
(exact value, index), so that returned values are exact and ties go to the smallest index.
Other reductions (Gaussian sums, LogSumExp) do not use this path yet: without a re-ranking step
the expansion's error would reach their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...formula import CAT_I, CAT_J, Node, walk_many
from ..base import Call

MIN_DIM = 16  # below, the component-wise loop is cheap and exact
EXTRA = 8  # candidates kept beyond K before the exact re-ranking
_RERANK_ELEMENTS = 1 << 24  # gathered (row, candidate, coordinate) values per re-ranking chunk


@dataclass(frozen=True)
class DotTerm:
    """``<x, y>`` or ``|x - y|^2`` (``squared``) of i-argument ``x`` and j-argument ``y``."""

    node: Node
    x: int
    y: int
    dim: int
    squared: bool


def find_terms(formulas: Sequence[Node], min_dim: int = MIN_DIM) -> list[DotTerm]:
    """The dot-shaped terms of formulas.

    Args:
        formulas: the formulas.
        min_dim: the least dimension of the variables.

    Returns:
        The terms ``<x, y>`` and ``|x - y|^2`` between an i- and a j-variable of dimension >= min_dim.
    """
    terms = []
    for n in walk_many(formulas):
        if n.op != "dot":
            continue
        a, b = n.args
        squared = a is b and a.op == "sub"
        u, v = a.args if squared else (a, b)
        if u.op != "var" or v.op != "var" or u.dim < min_dim:
            continue
        if {u.attrs[1], v.attrs[1]} != {CAT_I, CAT_J}:
            continue
        x, y = (u, v) if u.attrs[1] == CAT_I else (v, u)
        terms.append(DotTerm(n, x.attrs[0], y.attrs[0], u.dim, squared))
    return terms


def render_terms(terms: list[DotTerm]) -> tuple[list[str], list[str], dict[int, str]]:
    """The Triton statements of dot-shaped terms.

    Args:
        terms: the terms.

    Returns:
        ``(hoisted, loop, names)``: statements before and inside the j loop, and the tile name of
        each term's node (for :func:`.render.render`).
    """
    hoisted, loop, names = [], [], {}
    for k, t in enumerate(terms):
        dp = max(16, 1 << (t.dim - 1).bit_length())
        hoisted += [
            f"dc{k} = tl.arange(0, {dp})",
            f"dX{k} = tl.load(a{t.x} + dc{k}[None, :] * nil + rows[:, None], "
            f"mask=rmask[:, None] & (dc{k} < {t.dim})[None, :], other=0.0).to(CT)",
        ]
        loop += [
            f"dY{k} = tl.load(a{t.y} + dc{k}[:, None] * njl + cols[None, :], "
            f"mask=(dc{k} < {t.dim})[:, None] & cmask[None, :], other=0.0).to(CT)",
            f"dG{k} = tl.dot(dX{k}, dY{k}, input_precision=DOT_PRECISION)",
        ]
        if t.squared:
            hoisted.append(f"dXX{k} = tl.sum(dX{k} * dX{k}, 1)[:, None]")
            loop += [f"dYY{k} = tl.sum(dY{k} * dY{k}, 0)[None, :]",
                     f"dT{k} = tl.maximum(dXX{k} + dYY{k} - 2.0 * dG{k}, 0.0)"]
        names[id(t.node)] = f"dT{k}" if t.squared else f"dG{k}"
    return hoisted, loop, names


def precision(dtype: torch.dtype) -> str:
    """The ``input_precision`` of ``tl.dot`` for a dtype (see the module docstring).

    Args:
        dtype: the dtype of the data.

    Returns:
        ``"ieee"`` for float64, ``"tf32x3"`` otherwise.
    """
    return "ieee" if dtype == torch.float64 else "tf32x3"


def match_knn(call: Call, dims: tuple[int, ...]) -> Optional[tuple[int, int]]:
    """Whether the call is a kNN that ``tl.dot`` tiles run.

    Args:
        call: the call.
        dims: its arguments' vector dimensions.

    Returns:
        ``(i-arg, j-arg)`` when the call is a K-min or min of exactly ``|x_i - y_j|^2`` at
        D >= MIN_DIM, else None.
    """
    red = call.reduction
    if not (red.spec.is_run and red.spec.extremum == "min"):
        return None
    terms = find_terms([red.formula])
    if len(terms) != 1 or terms[0].node is not red.formula or not terms[0].squared:
        return None
    return terms[0].x, terms[0].y


def centred(args: Sequence[torch.Tensor], ix: int, iy: int) -> list[torch.Tensor]:
    """The arguments with x and y translated by the mean of y (per batch entry).

    Args:
        args: the arguments.
        ix: the argument x.
        iy: the argument y.

    Returns:
        The arguments, x and y centred.
    """
    c = args[iy].mean(-2, keepdim=True)
    out = list(args)
    out[ix], out[iy] = args[ix] - c, args[iy] - c
    return out


def rerank(x: torch.Tensor, y: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor,
           K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distances of the candidates, sorted by (value, index); the K best.

    Args:
        x: ``(nb, ni, D)`` points.
        y: ``(nb, nj, D)`` points.
        vals: ``(nb, ni, Kc)`` the candidates' approximate values; +inf marks a slot that found no
            column, which stays +inf with index 0.
        idx: ``(nb, ni, Kc)`` the candidates' columns.
        K: how many to keep.

    Returns:
        ``(values, indices)`` of shape ``(nb, ni, K)``.
    """
    nb, ni, kc = idx.shape
    D = x.shape[-1]
    step = max(1, _RERANK_ELEMENTS // max(1, nb * kc * D))
    out_v, out_k = [], []
    for r0 in range(0, ni, step):
        k = idx[:, r0:r0 + step]
        yc = torch.gather(y, 1, k.reshape(nb, -1, 1).expand(nb, k.shape[1] * kc, D)).reshape(nb, -1, kc, D)
        d = ((x[:, r0:r0 + step, None, :] - yc) ** 2).sum(-1)
        d = torch.where(torch.isinf(vals[:, r0:r0 + step]), vals[:, r0:r0 + step], d)
        # ties by smallest index: sort by index, then stably by value
        by_index = torch.sort(k, dim=-1).indices
        k, d = torch.gather(k, -1, by_index), torch.gather(d, -1, by_index)
        order = torch.sort(d, dim=-1, stable=True).indices[..., :K]
        out_v.append(torch.gather(d, -1, order))
        out_k.append(torch.gather(k, -1, order))
    return torch.cat(out_v, 1), torch.cat(out_k, 1)
