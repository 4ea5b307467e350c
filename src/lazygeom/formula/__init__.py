"""The formula IR (no torch, no numpy): nodes, ops, simplification, symbolic differentiation."""

from . import ops as _ops  # noqa: F401  (registers every op)
from .algebra import make
from .autodiff import vjp
from .node import CAT_I, CAT_J, CAT_NAMES, CAT_P, Node, const, is_const, node, var, variables, walk_many
from .printing import to_str
from .registry import OpSpec, all_ops, get_op
from .transform import recategorize, substitute, swap_ij

__all__ = [
    "CAT_I", "CAT_J", "CAT_P", "CAT_NAMES", "Node", "OpSpec", "all_ops", "const", "get_op",
    "is_const", "make", "node", "recategorize", "substitute", "swap_ij", "to_str", "var",
    "variables", "vjp", "walk_many",
]
