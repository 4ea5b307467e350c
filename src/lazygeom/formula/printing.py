"""Human-readable rendering of formulas (for errors, logs and debugging; never parsed back)."""

from __future__ import annotations

from .node import CAT_NAMES, Node

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def to_str(f: Node) -> str:
    """A compact infix string for ``f``.

    Args:
        f: the formula.
    """
    memo: dict[int, str] = {}
    for n in f.walk():
        if n.op == "var":
            index, cat, dim = n.attrs
            s = f"V{index}{CAT_NAMES[cat]}[{dim}]"
        elif n.op == "const":
            s = repr(n.attrs[0]) if n.dim == 1 else f"{n.attrs[0]!r}[{n.dim}]"
        elif n.op in _INFIX:
            a, b = (memo[id(x)] for x in n.args)
            s = f"({a} {_INFIX[n.op]} {b})"
        else:
            inner = ", ".join([memo[id(x)] for x in n.args] + [repr(a) for a in n.attrs])
            s = f"{n.op}({inner})"
        memo[id(n)] = s
    return memo[id(f)]
