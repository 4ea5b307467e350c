"""What is known of the sign of a formula's values: a bottom-up pass over the op registry's sign rules.

``signs(roots)`` gives every node of the formulas one of ``POSITIVE`` (every component >= 0),
``NEGATIVE`` (<= 0) or ``UNKNOWN``, nan values aside (a nan propagates through whatever a backend
does with the sign). Backends use it to pick cheaper code that is exact on that domain, e.g. the
CPU renderer's ``exp`` of a non-positive argument (``exp(-|x - y|^2)``) needs no overflow clamp.
Each op's rule lives with the op (:class:`lazygeom.formula.registry.OpSpec.sign`); an op without
one gives ``UNKNOWN``, variables too.
"""

from __future__ import annotations

from typing import Iterable

from .node import Node, walk_many
from .registry import NEGATIVE, POSITIVE, UNKNOWN, get_op


def signs(roots: Iterable[Node]) -> dict[int, int]:
    """``id(node) -> sign`` for every node of the formulas ``roots``."""
    out: dict[int, int] = {}
    for n in walk_many(roots):
        rule = get_op(n.op).sign
        out[id(n)] = UNKNOWN if rule is None else rule(tuple(out[id(a)] for a in n.args), n)
    return out


def sign(f: Node) -> int:
    """The sign of one formula's values (``POSITIVE``, ``NEGATIVE`` or ``UNKNOWN``)."""
    return signs([f])[id(f)]


__all__ = ["NEGATIVE", "POSITIVE", "UNKNOWN", "sign", "signs"]
