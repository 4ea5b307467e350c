"""The reference backend: pure PyTorch, on tiles of bounded size.

It materialises the formula on one (i-tile, j-tile) block at a time with each op's torch reference
implementation, and folds the block into running per-row accumulators. Memory is O(tile size),
never O(N*M). It runs on any torch device, in any floating dtype, and is the oracle every other
backend is tested against, as well as the fallback where no compiler is present.

Accuracy: float32 tiles are reduced into float64 accumulators, so long sums keep float64-level
error; LogSumExp-type reductions use a streaming maximum and are finite for scores of any size.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

from ..formula import CAT_I, CAT_J, Node, get_op, walk_many
from ..reductions import VALUE, KindTable, Reduction, kind_spec
from .base import Call

#: default number of elements of one materialised (batch, i, j, dim) block
TILE_ELEMENTS = 1 << 20


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else dtype


def evaluate_tile(formulas: Sequence[Node], args: Sequence[torch.Tensor], cats: Sequence[int], isl: slice,
                  jsl: Union[slice, torch.Tensor], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Evaluate formulas on the block (isl x jsl).

    Intermediate values are freed as soon as their last consumer has run.

    Args:
        formulas: the formulas.
        args: the arguments (layouts of :class:`Call`).
        cats: their categories.
        isl: the rows.
        jsl: the columns, a slice or a 1D index tensor.
        dtype: the dtype of constants.
        device: the device of constants.

    Returns:
        One tensor per formula, broadcastable to ``(*b, ti, tj, dim)`` (``ti``, ``tj`` may be 1).
    """
    order = list(walk_many(formulas))
    uses: dict[int, int] = {}
    for n in order:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    for f in formulas:
        uses[id(f)] = uses.get(id(f), 0) + 1
    vals: dict[int, torch.Tensor] = {}
    for n in order:
        if n.op == "var":
            index, cat, _ = n.attrs
            t = args[index]
            if cat == CAT_I:
                v = t[..., isl, :].unsqueeze(-2)
            elif cat == CAT_J:
                v = t[..., jsl, :].unsqueeze(-3)
            else:
                v = t[..., None, None, :]
        elif n.op == "const":
            v = torch.full((n.dim,), n.attrs[0], dtype=dtype, device=device)
        else:
            v = get_op(n.op).impl(torch, *(vals[id(a)] for a in n.args), n.attrs)
            for a in n.args:
                uses[id(a)] -= 1
                if uses[id(a)] == 0:
                    del vals[id(a)]
        vals[id(n)] = v
    return [vals[id(f)] for f in formulas]


def _tiles(call: Call, width: int, budget: int) -> tuple[int, int]:
    bprod = math.prod(call.batch) if call.batch else 1
    per_pair = max(1, bprod * width)
    tj = max(1, min(call.nj, 1024, budget // per_pair))
    ti = max(1, min(call.ni, budget // (per_pair * tj)))
    return ti, tj


class ReferenceBackend:
    """Pure-PyTorch tiled evaluation (see module docstring).

    Args:
        tile_elements: the largest number of elements of one node's values over a tile (rows x
            columns x components): what bounds the memory of one step.
    """

    name = "reference"

    def __init__(self, tile_elements: int = TILE_ELEMENTS) -> None:
        self.tile_elements = tile_elements

    def supports(self, call: Call, args: Sequence[torch.Tensor]) -> bool:
        """Whether it runs ``call``: always, on any device and dtype.

        Args:
            call: the call.
            args: its arguments.

        Returns:
            True.
        """
        return True

    def run(self, call: Call, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The outputs of the call (any kind: a selection is run through its run kind).

        Args:
            call: the reduction call.
            args: its arguments.

        Returns:
            The outputs of the reduction's kind.
        """
        red = call.reduction
        run = kind_spec(red.spec.run)
        fold = _FOLDS.hook(run.name)
        dtype, device = _common_dtype_device(args)
        width = max(n.dim for n in walk_many(red.formulas))
        ti, tj = _tiles(call, width, self.tile_elements)
        E, K = red.out_dim, red.K
        rows_shape = (*call.batch, call.ni)
        rows = len(call.batch)  # position of the row axis in every output
        shape = (*rows_shape, K, E) if run.k else (*rows_shape, E)
        outs = [torch.empty(shape, dtype=dtype if o == VALUE else torch.int64, device=device) for o in run.outputs]
        if call.ranges is not None:
            # rows outside every range reduce over nothing: the empty reduction's value
            for out, empty in zip(outs, fold.finish(red, fold.init(red, rows_shape, K, dtype, device))):
                out.copy_(empty)
        for isl, jchunks in _schedule(call, ti, tj, device):
            state = fold.init(red, (*call.batch, isl.stop - isl.start), K, dtype, device)
            for jsel in jchunks:
                blocks = evaluate_tile(red.formulas, args, call.cats, isl, jsel, dtype, device)
                jidx = torch.arange(jsel.start, jsel.stop, device=device) if isinstance(jsel, slice) else jsel
                full = (*call.batch, isl.stop - isl.start, jidx.numel())
                blocks = [b.expand(*full, b.shape[-1]) for b in blocks]
                fold.update(red, state, blocks, jidx)
            for out, part in zip(outs, fold.finish(red, state)):
                out.narrow(rows, isl.start, isl.stop - isl.start).copy_(part)
        by_output = dict(zip(run.outputs, outs))
        return tuple(by_output[o] for o in red.outputs)


def _schedule(call: Call, ti: int, tj: int, device):
    """Blocks of rows, each with the chunks of columns it reduces over.

    The chunks are slices, or index tensors gathered from the block-sparse ranges.
    """
    if call.ranges is None:
        for i0 in range(0, call.ni, ti):
            yield slice(i0, min(i0 + ti, call.ni)), [slice(j0, min(j0 + tj, call.nj)) for j0 in range(0, call.nj, tj)]
        return
    ranges_i, slices_i, redranges_j = (r.tolist() for r in call.ranges[:3])
    start = 0
    for (a, b), end in zip(ranges_i, slices_i):
        cols = [torch.arange(s, e) for s, e in redranges_j[start:end]]
        start = end
        if a >= b or not cols:
            continue
        cols = torch.cat(cols).to(device)
        chunks = [cols[k: k + tj] for k in range(0, cols.numel(), tj)]
        for i0 in range(a, b, ti):
            yield slice(i0, min(i0 + ti, b)), chunks


def _common_dtype_device(args):
    floats = [a for a in args if a.is_floating_point()]
    if not floats:
        return torch.get_default_dtype(), torch.device("cpu")
    return floats[0].dtype, floats[0].device


class _Sum:
    """Row sums, accumulated in float64 for float32 and narrower inputs."""

    def init(self, red: Reduction, rows: tuple, K: int, dtype: torch.dtype, device) -> dict:
        return {"s": torch.zeros((*rows, red.out_dim), dtype=_acc_dtype(dtype), device=device)}

    def update(self, red: Reduction, st: dict, blocks: list, jidx: torch.Tensor) -> None:
        st["s"] += blocks[0].sum(-2, dtype=st["s"].dtype)

    def finish(self, red: Reduction, st: dict) -> tuple:
        return (st["s"],)


class _Softmax:
    """Streaming LogSumExp (``normalized``: the softmax-weighted average of the weights, ssmw)."""

    def __init__(self, normalized: bool):
        self.normalized = normalized

    def init(self, red: Reduction, rows: tuple, K: int, dtype: torch.dtype, device) -> dict:
        acc, E = _acc_dtype(dtype), red.out_dim
        st = {
            "m": torch.full((*rows, E), -math.inf, dtype=acc, device=device),
            "s": torch.zeros((*rows, E), dtype=acc, device=device),
        }
        if self.normalized:
            st["t"] = torch.zeros((*rows, E), dtype=acc, device=device)
        return st

    def update(self, red: Reduction, st: dict, blocks: list, jidx: torch.Tensor) -> None:
        E = red.out_dim
        F = blocks[0].to(st["m"].dtype).expand(*blocks[0].shape[:-1], E)
        m_new = torch.maximum(st["m"], F.amax(-2))
        # a row whose scores are all -inf so far keeps a finite shift, so that exp() gives 0, not nan
        shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        scale = torch.exp(st["m"] - shift)
        P = torch.exp(F - shift.unsqueeze(-2))
        st["m"] = m_new
        st["shift"] = shift
        if self.normalized:
            V = blocks[1].to(P.dtype)
            st["s"] = st["s"] * scale + P.sum(-2)
            st["t"] = st["t"] * scale + (P * V).sum(-2)
        else:
            w = blocks[1].to(P.dtype) if red.weight is not None else None
            st["s"] = st["s"] * scale + (P if w is None else P * w).sum(-2)

    def finish(self, red: Reduction, st: dict) -> tuple:
        if self.normalized:
            return (st["t"] / st["s"],)
        return (st.get("shift", torch.zeros_like(st["m"])) + torch.log(st["s"]),)


class _Select:
    """The running extremum (or sorted K-list) of each row and the first index reaching it."""

    def init(self, red: Reduction, rows: tuple, K: int, dtype: torch.dtype, device) -> dict:
        shape = (*rows, K, red.out_dim) if red.spec.k else (*rows, red.out_dim)
        return {
            "v": torch.full(shape, red.spec.empty, dtype=dtype, device=device),
            "k": torch.zeros(shape, dtype=torch.int64, device=device),
        }

    def update(self, red: Reduction, st: dict, blocks: list, jidx: torch.Tensor) -> None:
        F = blocks[0]
        tj = F.shape[-2]
        if not red.spec.k:
            smallest = red.spec.extremum == "min"
            vt = F.amin(-2) if smallest else F.amax(-2)
            # first index reaching the tile's extremum (argmax returns the first maximal entry)
            kt = jidx[(F == vt.unsqueeze(-2)).to(torch.uint8).argmax(-2)]
            better = vt < st["v"] if smallest else vt > st["v"]
            st["v"] = torch.where(better, vt, st["v"])
            st["k"] = torch.where(better, kt, st["k"])
            return
        # K-min: merge the running list (earlier, hence smaller, indices first) with the tile, stably.
        cand_v = torch.cat([st["v"], F], dim=-2)
        ar = jidx.view(tj, 1).expand(F.shape)
        cand_k = torch.cat([st["k"], ar], dim=-2)
        order = torch.sort(cand_v, dim=-2, stable=True).indices[..., : st["v"].shape[-2], :]
        st["v"] = torch.gather(cand_v, -2, order)
        st["k"] = torch.gather(cand_k, -2, order)

    def finish(self, red: Reduction, st: dict) -> tuple:
        return st["v"], st["k"]


#: per run kind: how a block of formula values folds into the rows' state, and the outputs
_FOLDS = KindTable("the reference backend", {
    "sum": _Sum(), "lse": _Softmax(normalized=False), "ssmw": _Softmax(normalized=True),
    "min_argmin": _Select(), "max_argmax": _Select(), "kmin_argkmin": _Select(),
})
