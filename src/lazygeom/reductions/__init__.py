"""Reduction kinds and their gradients as formulas (no backend code here)."""

from .backward import SUM_LIKE_TARGETS, num_vars, pair_formula, selection_grad_formulas, sum_like_grad_formula
from .kinds import (INDEX, KINDS, OUTPUTS, RUN_KINDS, SELECTED, SELECTION, SPECS, SUM_LIKE, VALUE, KindSpec, KindTable,
                    Reduction, kind_spec, selection_kind)

__all__ = [
    "INDEX", "KINDS", "OUTPUTS", "RUN_KINDS", "SELECTED", "SELECTION", "SPECS", "SUM_LIKE", "SUM_LIKE_TARGETS", "VALUE",
    "KindSpec", "KindTable", "Reduction", "kind_spec", "num_vars", "pair_formula", "selection_grad_formulas",
    "selection_kind", "sum_like_grad_formula",
]
