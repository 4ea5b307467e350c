"""Reduction kinds and their gradients as formulas (no backend code here)."""

from .backward import num_vars, pair_formula, selection_grad_formulas, sum_like_grad_formula
from .kinds import KINDS, OUTPUTS, SELECTION, Reduction

__all__ = [
    "KINDS", "OUTPUTS", "SELECTION", "Reduction", "num_vars", "pair_formula",
    "selection_grad_formulas", "sum_like_grad_formula",
]
