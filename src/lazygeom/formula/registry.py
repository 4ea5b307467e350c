"""The op registry: each op is described once, here and in :mod:`lazygeom.formula.ops`.

An :class:`OpSpec` holds everything about an op: its arity, its output-dimension rule, its
vector-Jacobian rule (written with IR nodes, so that gradients are formulas too), a reference
implementation in torch, and a slot for renderer snippets (C++, Triton) that later backends fill.

The reference implementation receives the torch module as its first argument instead of
importing it, so that :mod:`lazygeom.formula` stays free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

DimRule = Callable[[tuple[int, ...], tuple], int]
#: ``vjp(n, g)`` returns one cotangent (a Node or None for zero) per argument of ``n``.
VJPRule = Callable[[Any, Any], tuple]
#: ``impl(T, *arg_tensors, attrs=...)`` evaluates the op on tensors shaped ``(..., dim)``.
TorchImpl = Callable[..., Any]
#: ``sign(arg_signs, node)``: what is known of the sign of the node's value (every component, nan
#: aside) from its arguments' signs (see :mod:`lazygeom.formula.sign`): POSITIVE (>= 0), NEGATIVE
#: (<= 0) or UNKNOWN.
SignRule = Callable[[tuple[int, ...], Any], int]
#: the values of a sign rule
POSITIVE, NEGATIVE, UNKNOWN = 1, -1, 0


@dataclass(frozen=True)
class OpSpec:
    """Everything the library knows about one op."""

    name: str
    arity: Optional[int]
    dim_rule: DimRule
    vjp: Optional[VJPRule]
    impl: Optional[TorchImpl]
    #: argument domains for the registry-driven tests: "any", "pos" (>0), "unit" (|x|<1), "nz" (≠0)
    domains: tuple[str, ...] = ()
    #: True when the op is piecewise constant: its gradient is zero almost everywhere
    flat: bool = False
    doc: str = ""
    #: the sign rule (None: the sign is unknown)
    sign: Optional[SignRule] = None
    #: renderer name -> snippet (filled by backends that generate code)
    snippets: dict = field(default_factory=dict, compare=False, hash=False)


_REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op to the registry (ValueError if its name is taken); returns the spec."""
    if spec.name in _REGISTRY:
        raise ValueError(f"op {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_op(name: str) -> OpSpec:
    """The spec of the op ``name``.

    Args:
        name: the op's name.

    Raises:
        KeyError: listing the known ops, if there is none of this name.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {sorted(_REGISTRY)}") from None


def all_ops() -> dict[str, OpSpec]:
    """A copy of the registry (name -> spec)."""
    return dict(_REGISTRY)


# --- dimension rules --------------------------------------------------------------------------


def same_dim(dims: tuple[int, ...], attrs: tuple) -> int:
    """Dimension rule: the output has the first argument's dimension."""
    return dims[0]


def broadcast_dims(dims: tuple[int, ...], attrs: tuple = ()) -> int:
    """Elementwise ops: every argument has the output dimension or dimension 1."""
    out = max(dims)
    for d in dims:
        if d not in (1, out):
            raise ValueError(
                f"incompatible vector dimensions {dims}: elementwise operations need equal "
                f"dimensions or dimension 1"
            )
    return out


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Right-aligned broadcast of two shapes (batch dimensions); ValueError if incompatible.

    Plain Python on purpose: ``torch.broadcast_shapes`` imports sympy through ``torch.fx`` on its
    first call (0.4 s, most of a first LazyTensor program's start-up).
    """
    n = max(len(a), len(b))
    out = []
    for p, q in zip((1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)):
        if p != q and p != 1 and q != 1:
            raise ValueError(f"incompatible shapes {tuple(a)} and {tuple(b)}")
        out.append(q if p == 1 else p)
    return tuple(out)


def scalar_dim(dims: tuple[int, ...], attrs: tuple) -> int:
    """Dimension rule: the output is a scalar (dimension 1)."""
    return 1
