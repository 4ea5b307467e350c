"""Reduction kinds: what is reduced, what comes out, and what is differentiable.

Backends always reduce over j (for every i); a reduction over i is the same reduction of the
formula with the roles of i and j exchanged (:func:`lazygeom.formula.swap_ij`).

Output layouts (``E`` is the output vector dimension, B the batch dims, N the number of rows):

===================  ===============================================  =====================
kind                 outputs                                          differentiable
===================  ===============================================  =====================
sum                  (B, N, E)                                        yes
lse                  (B, N, E): log sum_j w_j exp F_j (w optional)    yes
ssmw                 (B, N, E): sum_j e^F_j V_j / sum_j e^F_j         yes
min, max             (B, N, E)                                        yes (through indices)
argmin, argmax       (B, N, E) int64                                  no
min_argmin, ...      both of the above                                values only
kmin                 (B, N, K, E)                                     yes (through indices)
argkmin              (B, N, K, E) int64                               no
kmin_argkmin         both                                             values only
===================  ===============================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..formula import Node

KINDS = (
    "sum", "lse", "ssmw",
    "min", "max", "argmin", "argmax", "min_argmin", "max_argmax",
    "kmin", "argkmin", "kmin_argkmin",
)

#: per kind: the outputs, each "value" (formula dtype) or "index" (int64)
OUTPUTS = {
    "sum": ("value",), "lse": ("value",), "ssmw": ("value",),
    "min": ("value",), "max": ("value",), "argmin": ("index",), "argmax": ("index",),
    "min_argmin": ("value", "index"), "max_argmax": ("value", "index"),
    "kmin": ("value",), "argkmin": ("index",), "kmin_argkmin": ("value", "index"),
}

#: the selection family of each min/max-type kind: which extremum, and is it a K-selection
SELECTION = {
    "min": ("min", False), "argmin": ("min", False), "min_argmin": ("min", False),
    "max": ("max", False), "argmax": ("max", False), "max_argmax": ("max", False),
    "kmin": ("min", True), "argkmin": ("min", True), "kmin_argkmin": ("min", True),
}


@dataclass(frozen=True)
class Reduction:
    """A reduction over j of a formula, for every i.

    Attributes:
        kind: one of :data:`KINDS`.
        formula: the reduced formula F (canonical variables).
        weight: the weight formula (``lse`` with weights: w_j; ``ssmw``: V_j), else None.
        K: the number of kept values for the K-min kinds.
    """

    kind: str
    formula: Node
    weight: Optional[Node] = None
    K: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown reduction {self.kind!r}; expected one of {KINDS}")
        if self.kind == "ssmw" and self.weight is None:
            raise ValueError("sumsoftmaxweight needs a weight formula")
        if self.weight is not None and self.kind not in ("lse", "ssmw"):
            raise ValueError(f"reduction {self.kind!r} takes no weight")
        if self.weight is not None and self.formula.dim not in (1, self.weight.dim):
            raise ValueError(
                f"{self.kind}: the formula has dimension {self.formula.dim} and the weight "
                f"dimension {self.weight.dim}; expected a scalar formula or equal dimensions"
            )
        if self.K < 1:
            raise ValueError(f"K must be a positive integer, got {self.K}")

    @property
    def out_dim(self) -> int:
        """E, the vector dimension of the output."""
        return self.weight.dim if self.weight is not None else self.formula.dim

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS[self.kind]

    @property
    def formulas(self) -> tuple[Node, ...]:
        return (self.formula,) if self.weight is None else (self.formula, self.weight)

    @property
    def key(self) -> str:
        """Cache key of the reduction (structure only, no sizes, no values)."""
        wkey = self.weight.key if self.weight is not None else "-"
        return f"{self.kind}:{self.K}:{self.formula.key}:{wkey}"
