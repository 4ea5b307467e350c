"""The lowering shared by the code generators: a formula becomes scalar expressions per component.

Every component of every node becomes one value of the target (a ``vec`` of W j-lanes in C++, a
tile in Triton). A *snippet* receives the target's names of its arguments' components, the node's
attributes, its output dimension and a prefix for temporaries; it returns statements to emit first
(rarely) and the expressions of its output components.

The snippets that only rearrange components or write arithmetic operators (sums, dot products,
broadcasts, extraction, matrix products...) are the same for every target and live here
(:data:`SHARED`); each backend adds its own table for the rest (function names, comparisons,
integer powers...) and a :class:`Dialect`: how to load a variable, write a constant, and declare a
temporary.

:func:`lower` walks the formulas' DAG once, children first. A node depends on j when one of its
arguments does (or it is a j-variable, or a node the backend computed elsewhere); the others
depend on i and parameters only and are *hoisted*: evaluated once per row, before the loop over j.
The value of node number ``k`` is held in temporaries ``t{k}_{c}``, one per component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

from ..formula import CAT_J, Node, walk_many

Components = list[str]
Snippet = Callable[[list[Components], tuple, int, str], tuple[list[str], Components]]


def ew(template: str) -> Snippet:
    """An elementwise op written as a ``str.format`` template; an argument of dimension 1 is broadcast.

    Args:
        template: the expression of one component, ``{0}``, ``{1}``... the arguments' components,
            then the node's attributes.

    Returns:
        The snippet.
    """

    def snippet(args: list[Components], attrs: tuple, dim: int, tmp: str) -> tuple[list[str], Components]:
        out = []
        for k in range(dim):
            comps = [a[k] if len(a) > 1 else a[0] for a in args]
            out.append(template.format(*comps, *attrs))
        return [], out

    return snippet


def pad(zero: str) -> Snippet:
    """``pad``: the argument's components placed at ``start`` among ``total``, the others ``zero``.

    Args:
        zero: the target's expression of 0.

    Returns:
        The snippet.
    """

    def snippet(args: list[Components], attrs: tuple, dim: int, tmp: str) -> tuple[list[str], Components]:
        start, total = attrs
        a = args[0]
        return [], [zero] * start + a + [zero] * (total - start - len(a))

    return snippet


def fold(template: str) -> Snippet:
    """A vector folded into one component, left to right (``vmax``, ``vmin``).

    Args:
        template: the combination of the running value ``{acc}`` with the next component ``{c}``.

    Returns:
        The snippet.
    """

    def snippet(args: list[Components], attrs: tuple, dim: int, tmp: str) -> tuple[list[str], Components]:
        expr = args[0][0]
        for c in args[0][1:]:
            expr = template.format(acc=expr, c=c)
        return [], [expr]

    return snippet


def _sum_of(terms) -> str:
    return "(" + " + ".join(terms) + ")"


def _sum(args, attrs, dim, tmp):
    return [], [_sum_of(args[0])]


def _dot(args, attrs, dim, tmp):
    a, b = args
    return [], [_sum_of(f"{x} * {y}" for x, y in zip(a, b))]


def _bcast(args, attrs, dim, tmp):
    return [], [args[0][0]] * dim


def _extract(args, attrs, dim, tmp):
    start, length = attrs
    return [], args[0][start: start + length]


def _concat(args, attrs, dim, tmp):
    return [], args[0] + args[1]


def _matvec(args, attrs, dim, tmp):
    A, x = args
    n = len(x)
    return [], [_sum_of(f"{A[i * n + k]} * {x[k]}" for k in range(n)) for i in range(dim)]


def _vecmat(args, attrs, dim, tmp):
    x, A = args
    m = len(x)
    return [], [_sum_of(f"{x[i]} * {A[i * dim + k]}" for i in range(m)) for k in range(dim)]


def _tensorprod(args, attrs, dim, tmp):
    x, y = args
    return [], [f"{a} * {b}" for a in x for b in y]


#: the snippets every target shares: arithmetic, and the ops that only move components around
SHARED: Mapping[str, Snippet] = {
    "neg": ew("(-{0})"),
    "square": ew("({0} * {0})"),
    "add": ew("({0} + {1})"),
    "sub": ew("({0} - {1})"),
    "mul": ew("({0} * {1})"),
    "div": ew("({0} / {1})"),
    "sum": _sum,
    "bcast": _bcast,
    "dot": _dot,
    "extract": _extract,
    "concat": _concat,
    "matvecmult": _matvec,
    "vecmatmult": _vecmat,
    "tensorprod": _tensorprod,
}


@dataclass(frozen=True)
class Dialect:
    """What a code generator tells :func:`lower`: its snippets and how it writes values.

    Attributes:
        name: the target's name, for error messages.
        snippets: op -> snippet (:data:`SHARED` plus the target's own).
        load: ``(index, cat, comp)`` -> the expression of component ``comp`` of variable ``index``
            of category ``cat``.
        constant: ``(value, dim, name)`` -> ``(statements, components)`` of a constant vector of
            ``dim`` equal components: statements to hoist (``name`` is the node's temporary, if the
            target wants one) and the components' expressions.
        assign: the statement that binds a temporary, a format string of ``{name}`` and ``{expr}``.
        is_value: whether an expression a snippet returned is used as it stands (a name, a
            literal...), without a temporary.
        loop_cats: the categories of the variables loaded inside the loop over j.
        special: node -> a snippet that replaces its op's own for this node (None: the op's).
    """

    name: str
    snippets: Mapping[str, Snippet]
    load: Callable[[int, int, int], str]
    constant: Callable[[float, int, str], tuple[list[str], Components]]
    assign: str
    is_value: Callable[[str], bool] = str.isidentifier
    loop_cats: frozenset[int] = frozenset({CAT_J})
    special: Callable[[Node], Optional[Snippet]] = lambda n: None

    def snippet(self, n: Node) -> Snippet:
        """The snippet that renders node ``n``.

        Args:
            n: the node (neither a variable nor a constant).

        Returns:
            The snippet.

        Raises:
            NotImplementedError: the target has no snippet for the node's op.
        """
        snippet = self.special(n) or self.snippets.get(n.op)
        if snippet is None:
            raise NotImplementedError(f"the {self.name} renderer has no snippet for op {n.op!r}")
        return snippet


class Lowered(NamedTuple):
    """The statements of a lowered formula.

    Attributes:
        hoisted: statements that depend on i and parameters only (before the loop over j).
        body: statements of the loop over j (j-variable loads and what depends on them).
        outputs: the component expressions of each formula's value.
    """

    hoisted: list[str]
    body: list[str]
    outputs: list[Components]


def lower(formulas: Sequence[Node], dialect: Dialect, tiles: Mapping[int, str] | None = None) -> Lowered:
    """Lower formulas into a target's statements (see the module docstring).

    Args:
        formulas: the formulas (their nodes may be shared).
        dialect: the target.
        tiles: the ids of nodes the target computes elsewhere, each with the name of its value (one
            component, in the loop over j); what lies below them is not lowered unless something
            else uses it.

    Returns:
        The hoisted statements, the loop's statements, and the formulas' components.
    """
    tiles = tiles or {}
    hoisted: list[str] = []
    body: list[str] = []
    names: dict[int, Components] = {}
    in_loop: set[int] = set()
    for n in needed(formulas, tiles):
        t = f"t{len(names)}"
        if id(n) in tiles:
            names[id(n)] = [tiles[id(n)]]
            in_loop.add(id(n))
            continue
        if n.op == "const":
            pre, names[id(n)] = dialect.constant(n.attrs[0], n.dim, t)
            hoisted.extend(pre)
            continue
        if n.op == "var":
            index, cat, dim = n.attrs
            pre, comps = [], [dialect.load(index, cat, k) for k in range(dim)]
            loop = cat in dialect.loop_cats
        else:
            pre, comps = dialect.snippet(n)([names[id(a)] for a in n.args], n.attrs, n.dim, t)
            loop = any(id(a) in in_loop for a in n.args)
        if loop:
            in_loop.add(id(n))
        target = body if loop else hoisted
        target.extend(pre)
        out = []
        for k, expr in enumerate(comps):
            if dialect.is_value(expr):
                out.append(expr)
                continue
            target.append(dialect.assign.format(name=f"{t}_{k}", expr=expr))
            out.append(f"{t}_{k}")
        names[id(n)] = out
    return Lowered(hoisted, body, [names[id(f)] for f in formulas])


def needed(formulas: Sequence[Node], tiles: Mapping[int, str]) -> list[Node]:
    """The nodes to lower, children first: those reachable without passing through a tile.

    Args:
        formulas: the formulas.
        tiles: the ids of the nodes computed elsewhere.

    Returns:
        The nodes, in the order of :func:`lazygeom.formula.walk_many`.
    """
    reach: set[int] = set()
    stack = list(formulas)
    while stack:
        n = stack.pop()
        if id(n) in reach:
            continue
        reach.add(id(n))
        if id(n) not in tiles:
            stack.extend(n.args)
    return [n for n in walk_many(formulas) if id(n) in reach]


def indent(lines: Sequence[str], n: int) -> str:
    """The lines joined, each indented by ``n`` spaces (for the kernel templates).

    Args:
        lines: the lines.
        n: the indentation.

    Returns:
        One string.
    """
    return "\n".join(" " * n + s for s in lines)
