"""What a backend receives: one reduction call, with run-time sizes and argument layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch

from ..formula import CAT_I, CAT_J, CAT_NAMES
from ..reductions import Reduction


@dataclass(frozen=True)
class Call:
    """A reduction over j, for every i, with the layout of its arguments.

    Argument ``k`` has category ``cats[k]`` and is a tensor shaped

    - ``(*b, ni, D)`` for an i-variable,
    - ``(*b, nj, D)`` for a j-variable,
    - ``(*b, D)`` for a parameter,

    where ``b`` has ``len(batch)`` entries, each 1 or equal to the matching entry of ``batch``.

    ``ranges``, when given, is pykeops' block-sparse 6-tuple oriented for this call (rows are the
    i side): ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``, int64 tensors.
    Row i reduces over the j-ranges listed for its cluster only; rows outside every cluster get
    the value of an empty reduction (0 for sums, -inf for LogSumExp, +inf and index 0 for min).

    ``per_range`` (with ``ranges``, no batch): one result per row *and listed range* instead of
    per row: row i of cluster c gives ``slices_i[c] - slices_i[c - 1]`` results, each the
    reduction over one of its cluster's j-ranges, in list order; the outputs stack them row after
    row, ``(sum of those counts, ...)`` (:func:`range_offsets`). Used to bound many small blocks
    at once (the multiscale truncation) without one row per block.
    """

    reduction: Reduction
    cats: tuple[int, ...]
    ni: int
    nj: int
    batch: tuple[int, ...] = ()
    ranges: Optional[tuple] = None
    per_range: bool = False

    @property
    def swapped_ranges(self) -> Optional[tuple]:
        """The ranges of the transposed problem (reduction over i), or None."""
        r = self.ranges
        return None if r is None else (r[3], r[4], r[5], r[0], r[1], r[2])

    def expected_shape(self, k: int, dim: int) -> tuple[str, ...]:
        """The shape argument ``k`` should have, written out (for error messages).

        Args:
            k: the argument number.
            dim: its vector dimension.

        Returns:
            The sizes, as strings.
        """
        rows = {CAT_I: (self.ni,), CAT_J: (self.nj,)}.get(self.cats[k], ())
        return tuple(str(b) for b in self.batch) + tuple(str(r) for r in rows) + (str(dim),)

    def describe(self) -> str:
        """The call in one line (kind, sizes, argument categories), for error messages."""
        cats = "".join(CAT_NAMES[c] for c in self.cats)
        return f"{self.reduction.kind} over j, ni={self.ni}, nj={self.nj}, batch={self.batch}, args={cats}"


@dataclass(frozen=True)
class PairBlocks:
    """The pairs a pass visits, by row cluster and column node.

    Attributes:
        rows: ``(nc, 2)`` int64 ``[start, end)`` of each row cluster.
        slices: ``(nc,)`` int64, cluster c visits ``nodes[slices[c-1]:slices[c]]`` (pykeops' slices).
        nodes: ``(nnz,)`` int64 column nodes.
        spans: ``(nJ, 2)`` int64 ``[start, end)`` of each column node, a partition of the columns
            in order.
        lo, hi: ``(nJ, D)`` the bounding boxes of the column nodes (for the per-row skip test).
    """

    rows: torch.Tensor
    slices: torch.Tensor
    nodes: torch.Tensor
    spans: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def row_clusters(ranges_i: torch.Tensor, ni: int) -> torch.Tensor:
    """The cluster of each row.

    Args:
        ranges_i: ``(nc, 2)`` the ``[start, end)`` rows of each cluster.
        ni: the number of rows.

    Returns:
        ``(ni,)`` int64: the cluster of each row in ``ranges_i``, -1 for rows in none.
    """
    out = torch.full((ni,), -1, dtype=torch.int64, device=ranges_i.device)
    lens = (ranges_i[:, 1] - ranges_i[:, 0]).clamp(min=0)
    cl = torch.repeat_interleave(torch.arange(ranges_i.shape[0], device=lens.device), lens)
    first = torch.cumsum(lens, 0) - lens  # position of each cluster's first row in `cl`
    out[ranges_i[cl, 0] + torch.arange(cl.numel(), device=lens.device) - first[cl]] = cl
    return out


def row_range_lists(ranges_i: torch.Tensor, slices_i: torch.Tensor, ni: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each row's list of j-ranges lies in ``redranges_j``.

    Args:
        ranges_i: ``(nc, 2)`` the rows of each cluster.
        slices_i: ``(nc,)`` the end of each cluster's list of j-ranges (pykeops' slices).
        ni: the number of rows.

    Returns:
        ``(start, count)`` per row: where its cluster's list of j-ranges starts, and its length.
    """
    slices = slices_i.to(torch.int64)
    ends = torch.cat((slices, slices.new_zeros(1)))  # cluster -1 (none): an empty list
    starts = torch.cat((slices.new_zeros(1), slices[:-1], slices.new_zeros(1)))
    c = row_clusters(ranges_i.to(torch.int64), ni)
    return starts[c], ends[c] - starts[c]


def per_range_index(ranges_i: torch.Tensor, slices_i: torch.Tensor, ni: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The results of a per-range reduction (see :class:`Call`), in order.

    Args:
        ranges_i: ``(nc, 2)`` the rows of each cluster.
        slices_i: ``(nc,)`` the end of each cluster's list of j-ranges.
        ni: the number of rows.

    Returns:
        ``(rows, ranges)``: for each result, its row and its range's index in ``redranges_j``.
    """
    start, counts = row_range_lists(ranges_i, slices_i, ni)
    rows = torch.repeat_interleave(torch.arange(ni, device=counts.device), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    k = torch.arange(rows.numel(), device=counts.device) - first
    return rows, start[rows] + k


def range_offsets(call: Call) -> tuple[torch.Tensor, int]:
    """Where each row's per-range results start.

    Args:
        call: a per-range call.

    Returns:
        ``(offsets, total)``: the offset of each row's first result, and the number of results.
    """
    _, counts = row_range_lists(call.ranges[0], call.ranges[1], call.ni)
    return torch.cumsum(counts, 0) - counts, int(counts.sum())


def expand_per_range(call: Call, args: Sequence) -> tuple[Call, list]:
    """The ordinary call equal to a per-range one, for the backends without a per-range kernel.

    Args:
        call: a per-range call.
        args: its arguments.

    Returns:
        ``(call, args)``: one row per (row, range), each its own cluster with that one range
        (i-variables repeated).
    """
    rows, entry = per_range_index(call.ranges[0], call.ranges[1], call.ni)
    n = rows.numel()
    red = call.ranges[2][entry]
    unit = torch.stack((torch.arange(n), torch.arange(1, n + 1)), dim=1).to(red)
    ranges = (unit, torch.arange(1, n + 1).to(red), red, call.ranges[3], torch.zeros_like(call.ranges[4]),
              red.new_zeros(0, 2))
    new_args = [a.index_select(-2, rows.to(a.device)) if c == CAT_I else a for a, c in zip(args, call.cats)]
    return Call(call.reduction, call.cats, n, call.nj, (), ranges), new_args


class Backend(Protocol):
    """A backend evaluates :class:`Call` objects on tensors (no autograd: that is done above)."""

    name: str

    def supports(self, call: Call, args: Sequence) -> bool:
        """Whether this backend can run ``call`` on these tensors (device, dtype...).

        Args:
            call: the call.
            args: its arguments.

        Returns:
            True when it can.
        """

    def run(self, call: Call, args: Sequence) -> tuple:
        """Run a call.

        Args:
            call: the call (compiled backends run the run kinds only: :attr:`lazygeom.reductions.KindSpec.run`).
            args: its arguments.

        Returns:
            The outputs of the reduction, in the layouts of :mod:`lazygeom.reductions.kinds`.
        """
