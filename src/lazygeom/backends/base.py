"""What a backend receives: one reduction call, with run-time sizes and argument layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

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
    """

    reduction: Reduction
    cats: tuple[int, ...]
    ni: int
    nj: int
    batch: tuple[int, ...] = ()
    ranges: Optional[tuple] = None

    @property
    def swapped_ranges(self) -> Optional[tuple]:
        """The ranges of the transposed problem (reduction over i), or None."""
        r = self.ranges
        return None if r is None else (r[3], r[4], r[5], r[0], r[1], r[2])

    def expected_shape(self, k: int, dim: int) -> tuple[str, ...]:
        rows = {CAT_I: (self.ni,), CAT_J: (self.nj,)}.get(self.cats[k], ())
        return tuple(str(b) for b in self.batch) + tuple(str(r) for r in rows) + (str(dim),)

    def describe(self) -> str:
        cats = "".join(CAT_NAMES[c] for c in self.cats)
        return f"{self.reduction.kind} over j, ni={self.ni}, nj={self.nj}, batch={self.batch}, args={cats}"


class Backend(Protocol):
    """A backend evaluates :class:`Call` objects on tensors (no autograd: that is done above)."""

    name: str

    def supports(self, call: Call, args: Sequence) -> bool:
        """Whether this backend can run ``call`` on these tensors (device, dtype...)."""

    def run(self, call: Call, args: Sequence) -> tuple:
        """The outputs of the reduction, in the layouts of :mod:`lazygeom.reductions.kinds`."""
