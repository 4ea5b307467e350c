"""Reduction kinds: one registry of what is reduced, what comes out, and what is differentiable.

Every kind has a :class:`KindSpec` in :data:`SPECS`; code that treats kinds differently asks the
registry (:func:`kind_spec`), and a backend's per-kind hooks (kernel templates, state updates)
live in a :class:`KindTable`, checked against it.

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

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Optional, TypeVar

from ..formula import Node

VALUE, INDEX = "value", "index"
#: the gradient rule families: a Sum reduction of a vector-Jacobian product, or a gather of the
#: vector-Jacobian product at the selected pairs (:mod:`.backward`)
SUM_LIKE, SELECTED = "sum_like", "selection"


@dataclass(frozen=True)
class KindSpec:
    """One reduction kind.

    Attributes:
        name: the kind's name.
        outputs: its outputs, each ``"value"`` (formula dtype) or ``"index"`` (int64).
        run: the kind the backends run: a selection runs as its values-and-indices pair (min ->
            min_argmin, argkmin -> kmin_argkmin), which the indices of its gradient need; the
            others as themselves.
        grad: the family of its gradient rule, :data:`SUM_LIKE` or :data:`SELECTED`.
        extremum: ``"min"`` or ``"max"`` for a selection, else None.
        k: whether it selects the K best values per row (else one).
        weight: the weight formula it takes: ``"none"``, ``"optional"`` or ``"required"``.
        empty: the value of a reduction over nothing (its indices are 0).
    """

    name: str
    outputs: tuple[str, ...]
    run: str
    grad: str
    extremum: Optional[str] = None
    k: bool = False
    weight: str = "none"
    empty: float = 0.0

    @property
    def selection(self) -> bool:
        """Whether it selects values (min, max, K-min and their indices)."""
        return self.extremum is not None

    @property
    def differentiable(self) -> bool:
        """Whether an output carries a gradient (indices do not)."""
        return VALUE in self.outputs

    @property
    def is_run(self) -> bool:
        """Whether backends run this kind as it is (see :attr:`run`)."""
        return self.run == self.name


_INF = math.inf
_ALL = (
    KindSpec("sum", (VALUE,), "sum", SUM_LIKE),
    KindSpec("lse", (VALUE,), "lse", SUM_LIKE, weight="optional", empty=-_INF),
    KindSpec("ssmw", (VALUE,), "ssmw", SUM_LIKE, weight="required", empty=math.nan),
    KindSpec("min", (VALUE,), "min_argmin", SELECTED, "min", empty=_INF),
    KindSpec("max", (VALUE,), "max_argmax", SELECTED, "max", empty=-_INF),
    KindSpec("argmin", (INDEX,), "min_argmin", SELECTED, "min", empty=_INF),
    KindSpec("argmax", (INDEX,), "max_argmax", SELECTED, "max", empty=-_INF),
    KindSpec("min_argmin", (VALUE, INDEX), "min_argmin", SELECTED, "min", empty=_INF),
    KindSpec("max_argmax", (VALUE, INDEX), "max_argmax", SELECTED, "max", empty=-_INF),
    KindSpec("kmin", (VALUE,), "kmin_argkmin", SELECTED, "min", k=True, empty=_INF),
    KindSpec("argkmin", (INDEX,), "kmin_argkmin", SELECTED, "min", k=True, empty=_INF),
    KindSpec("kmin_argkmin", (VALUE, INDEX), "kmin_argkmin", SELECTED, "min", k=True, empty=_INF),
)

#: every kind's spec, by name
SPECS: Mapping[str, KindSpec] = MappingProxyType({s.name: s for s in _ALL})

#: the kinds, the outputs of each, and the selection family of each min/max-type kind (which
#: extremum, and is it a K-selection): the registry seen as the tables of earlier versions
KINDS: tuple[str, ...] = tuple(SPECS)
OUTPUTS: Mapping[str, tuple[str, ...]] = MappingProxyType({n: s.outputs for n, s in SPECS.items()})
SELECTION: Mapping[str, tuple[str, bool]] = MappingProxyType(
    {n: (s.extremum, s.k) for n, s in SPECS.items() if s.selection})

#: the kinds a backend runs (every other kind runs through one of them)
RUN_KINDS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.is_run)


def kind_spec(kind: str) -> KindSpec:
    """The spec of a kind.

    Args:
        kind: its name.

    Returns:
        The spec.

    Raises:
        ValueError: an unknown kind.
    """
    spec = SPECS.get(kind)
    if spec is None:
        raise ValueError(f"unknown reduction {kind!r}; expected one of {KINDS}")
    return spec


def selection_kind(extremum: str, k: bool) -> KindSpec:
    """The run kind of a selection (values and indices).

    Args:
        extremum: ``"min"`` or ``"max"``.
        k: a K-selection.

    Returns:
        The spec.

    Raises:
        ValueError: no such selection (a K-max).
    """
    for s in _ALL:
        if s.is_run and s.extremum == extremum and s.k == k:
            return s
    raise ValueError(f"no {'K-' if k else ''}{extremum} selection")


T = TypeVar("T")


class KindTable(Mapping[str, T], Generic[T]):
    """Hooks per run kind: a backend's kernel templates or state updates, a gradient rule's formulas.

    Args:
        owner: whose hooks (for error messages).
        hooks: run kind -> hook; a kind not listed is one the owner does not run.

    Raises:
        ValueError: a key is not a run kind of the registry.
    """

    def __init__(self, owner: str, hooks: Mapping[str, T]) -> None:
        wrong = [k for k in hooks if k not in SPECS or not SPECS[k].is_run]
        if wrong:
            raise ValueError(f"{owner}: {wrong} are not kinds a backend runs; those are {RUN_KINDS}")
        self.owner = owner
        self._hooks = dict(hooks)

    def __getitem__(self, kind: str) -> T:
        return self._hooks[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def hook(self, kind: str) -> T:
        """The hook of a kind.

        Args:
            kind: a run kind.

        Returns:
            The hook.

        Raises:
            NotImplementedError: the owner does not run this kind (another kind runs through its
                run kind: see :attr:`KindSpec.run`).
        """
        if kind not in self._hooks:
            raise NotImplementedError(f"{self.owner} does not run {kind!r}; it runs {tuple(self._hooks)} (other "
                                      f"kinds through their run kind)")
        return self._hooks[kind]


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

    def __post_init__(self) -> None:
        weight = kind_spec(self.kind).weight
        if weight == "required" and self.weight is None:
            raise ValueError(f"reduction {self.kind!r} needs a weight formula")
        if self.weight is not None and weight == "none":
            raise ValueError(f"reduction {self.kind!r} takes no weight")
        if self.weight is not None and self.formula.dim not in (1, self.weight.dim):
            raise ValueError(
                f"{self.kind}: the formula has dimension {self.formula.dim} and the weight "
                f"dimension {self.weight.dim}; expected a scalar formula or equal dimensions"
            )
        if self.K < 1:
            raise ValueError(f"K must be a positive integer, got {self.K}")

    @property
    def spec(self) -> KindSpec:
        """The spec of its kind."""
        return SPECS[self.kind]

    @property
    def out_dim(self) -> int:
        """E, the vector dimension of the output."""
        return self.weight.dim if self.weight is not None else self.formula.dim

    @property
    def outputs(self) -> tuple[str, ...]:
        """Its outputs, each ``"value"`` or ``"index"``."""
        return self.spec.outputs

    @property
    def formulas(self) -> tuple[Node, ...]:
        """The formula, and the weight when there is one."""
        return (self.formula,) if self.weight is None else (self.formula, self.weight)

    @property
    def key(self) -> str:
        """Cache key of the reduction (structure only, no sizes, no values)."""
        wkey = self.weight.key if self.weight is not None else "-"
        return f"{self.kind}:{self.K}:{self.formula.key}:{wkey}"
