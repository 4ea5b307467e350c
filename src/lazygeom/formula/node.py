"""The formula IR: one immutable, hash-consed node type.

A formula ``F(p, x_i, y_j)`` is a DAG of :class:`Node`. Every node has an op name (a key of the
op registry, see :mod:`lazygeom.formula.ops`), a tuple of argument nodes, a tuple of hashable
static attributes and an output *vector* dimension. Sizes N, M and batch dimensions never appear
in the IR: they are run-time facts, so one compiled kernel serves every size.

Nodes are hash-consed: building the same structure twice returns the same object, so equality is
identity and common sub-expressions are shared for free. :attr:`Node.key` is a structural digest
(stable across processes) used as the cache key of compiled kernels.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Iterable, Iterator

#: Variable categories: indexed by i, indexed by j, or a parameter (same for every pair).
CAT_I, CAT_J, CAT_P = 0, 1, 2
CAT_NAMES = ("i", "j", "p")

# Intern table. Weak values: a formula nobody references any more is free to go.
_INTERN: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()


class Node:
    """An immutable IR node. Build nodes with :func:`node`, never with the constructor."""

    __slots__ = ("op", "args", "attrs", "dim", "_key", "__weakref__")

    op: str
    args: tuple["Node", ...]
    attrs: tuple
    dim: int

    def __setattr__(self, name: str, value: object) -> None:  # pragma: no cover - defensive
        raise AttributeError("lazygeom.formula.Node is immutable")

    def __delattr__(self, name: str) -> None:
        # object.__delattr__ would empty a slot and leave a broken, still-interned node
        raise AttributeError("lazygeom.formula.Node is immutable")

    @property
    def key(self) -> str:
        """Structural digest: equal for equal formulas, in any process."""
        return self._key

    def walk(self) -> Iterator["Node"]:
        """Yield every node of the DAG once, children before parents."""
        return walk_many([self])

    def replace(self, **changes: Any) -> "Node":
        """A node like this one with some fields changed (re-interned, re-validated).

        Args:
            **changes: new values of ``op``, ``args`` or ``attrs``.
        """
        op = changes.get("op", self.op)
        args = changes.get("args", self.args)
        attrs = changes.get("attrs", self.attrs)
        return node(op, *args, attrs=attrs)

    def __repr__(self) -> str:
        from .printing import to_str

        return f"Node({to_str(self)})"

    def __reduce__(self) -> tuple:
        # (callable, args) cannot pass attrs by keyword, and a third item would be *state*, which
        # a slotted, immutable node cannot take: rebuild through a helper (re-interned on load).
        return (_unpickle, (self.op, self.args, self.attrs))


def walk_many(roots: Iterable[Node]) -> Iterator[Node]:
    """Yield every node reachable from ``roots`` once, children before parents, left to right.

    Args:
        roots: the formulas.
    """
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        n, expanded = stack.pop()
        if id(n) in seen:
            continue
        if expanded:
            seen.add(id(n))
            yield n
        else:
            stack.append((n, True))
            for a in reversed(n.args):
                if id(a) not in seen:
                    stack.append((a, False))


def _make(op: str, args: tuple[Node, ...], attrs: tuple, dim: int) -> Node:
    ident = (op, tuple(id(a) for a in args), attrs)
    hit = _INTERN.get(ident)
    # ids may be reused after garbage collection: check the args really are the same objects.
    if hit is not None and all(x is y for x, y in zip(hit.args, args)):
        return hit
    n = object.__new__(Node)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((op, attrs, dim)).encode())
    for a in args:
        h.update(a._key.encode())
    for name, value in (("op", op), ("args", args), ("attrs", attrs), ("dim", dim), ("_key", h.hexdigest())):
        object.__setattr__(n, name, value)
    _INTERN[ident] = n
    return n


def check(op: str, args: tuple, attrs: tuple) -> int:
    """Validate ``op(*args)`` (arity, argument types, dimension rule); return its output dimension."""
    from .registry import get_op

    spec = get_op(op)
    if spec.arity is not None and len(args) != spec.arity:
        raise TypeError(f"op {op!r} takes {spec.arity} argument(s), got {len(args)}")
    for a in args:
        if not isinstance(a, Node):
            raise TypeError(f"op {op!r}: arguments must be Nodes, got {type(a).__name__}")
    return spec.dim_rule(tuple(a.dim for a in args), tuple(attrs))


def node(op: str, *args: Node, attrs: tuple = ()) -> Node:
    """Build (or fetch) the node ``op(*args)`` with static ``attrs``.

    The op's dimension rule validates the argument dimensions and gives the output dimension.
    Nodes are hash-consed: building the same node twice returns the same object.

    Args:
        op: a registered op name.
        *args: the argument nodes.
        attrs: the op's static attributes (hashable).

    Raises:
        KeyError: for an unknown op.
        TypeError: for a wrong number of arguments.
        ValueError: for incompatible dimensions (naming both) or invalid attributes.
    """
    attrs = tuple(attrs)
    dim = check(op, args, attrs)
    return _make(op, tuple(args), attrs, dim)


def _unpickle(op: str, args: tuple, attrs: tuple) -> Node:
    return node(op, *args, attrs=attrs)


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------


def var(index: int, cat: int, dim: int) -> Node:
    """Variable number ``index`` of category ``cat`` (CAT_I, CAT_J or CAT_P) and dimension ``dim``.

    Args:
        index: the variable's number (its position among the reduction's arguments).
        cat: CAT_I, CAT_J or CAT_P.
        dim: its vector dimension.
    """
    return node("var", attrs=(int(index), int(cat), int(dim)))


def const(value: float, dim: int = 1) -> Node:
    """A constant vector of ``dim`` equal entries ``value``.

    Args:
        value: an int or a float.
        dim: the vector dimension.
    """
    # Integral values are stored as ints (const(2.0) is const(2)), but only where float64 is
    # exact: beyond 2**53 an int (1e20 from a user, or folded with exact int arithmetic,
    # 1e200 * 1e200) cannot be given to torch, and float semantics (rounding, inf) are wanted.
    if isinstance(value, int) and abs(value) > _EXACT_INT:
        try:
            value = float(value)
        except OverflowError:
            value = float("inf") if value > 0 else float("-inf")
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        value = int(value)
    return node("const", attrs=(value, int(dim)))


_EXACT_INT = 2**53


def is_const(n: Node, value: float | None = None) -> bool:
    """True when ``n`` is a constant (equal to ``value`` when given).

    Args:
        n: the node.
        value: the constant's value to compare with; None: any constant.
    """
    return n.op == "const" and (value is None or n.attrs[0] == value)


def variables(f: Node) -> list[Node]:
    """The variable leaves of ``f``, in order of first appearance (depth first, left to right).

    Args:
        f: the formula.
    """
    return [n for n in f.walk() if n.op == "var"]
