"""How a LazyTensor is reduced: axes, canonical variables, ranges checks and the differentiable call.

The reduction methods of :class:`lazygeom.LazyTensor` (``sum``, ``logsumexp``, ``min``,
``argKmin``, ``K @ v``...) are one-line calls to the functions here, which take the LazyTensor
``F`` as their first argument; :func:`reduce` is the one place where reductions run. This module
does not import :mod:`.lazytensor` at run time: it reads ``F`` through its attributes and builds
new LazyTensors with ``type(F)``.

Axes follow pykeops: a LazyTensor of shape ``(*batch, N, M, D)`` is reduced over i with
``dim=len(batch)`` (or ``-3``) and over j with ``dim=len(batch)+1`` (or ``-2``); ``dim=-1`` is the
vector dimension (``sum(-1)``, ``min()`` and friends without ``dim`` act on it, not on i or j).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import torch

from ..formula import CAT_I, CAT_J, CAT_P, Node, substitute, swap_ij, var, walk_many
from ..reductions import SELECTION, Reduction
from ..settings import get_config
from ._types import Array
from .genred import genred
from .leaves import Leaf, as_tensor

if TYPE_CHECKING:
    from .lazytensor import LazyTensor

#: pykeops options that tune its own kernels: accepted for compatibility, with no effect here
#: (lazygeom always accumulates float32 sums blockwise and needs no chunking switches).
IGNORED_OPTIONS = frozenset({"device_id", "use_double_acc", "sum_scheme", "enable_chunks", "dtype_acc",
                             "use_fast_math", "optional_flags", "call", "alias"})


# --- axes -----------------------------------------------------------------------------------------


def axis_arg(axis: Optional[int], dim: Optional[int]) -> Optional[int]:
    """The reduction axis of a pykeops call: ``dim`` when given, else ``axis``."""
    return axis if dim is None else dim


def is_vector_axis(F: LazyTensor, a: Optional[int]) -> bool:
    """True when ``a`` names F's vector dimension (``-1`` or ``ndim - 1``)."""
    return a is not None and a in (-1, F.ndim - 1)


def reduction_axis(F: LazyTensor, a: Optional[int]) -> int:
    """0 for a reduction over i (output indexed by j), 1 for a reduction over j; ValueError otherwise."""
    nb = F.nbatchdims
    if a is None:
        raise ValueError(f"this reduction needs dim= ({nb} or -3: over i; {nb + 1} or -2: over j)")
    full = nb + 3
    a2 = a + full if a < 0 else a
    if a2 == nb:
        return 0
    if a2 == nb + 1:
        return 1
    raise ValueError(
        f"dim={a}: a LazyTensor of shape {F.shape} reduces over i (dim={nb} or -3) or over "
        f"j (dim={nb + 1} or -2); batch dims cannot be reduced"
    )


# --- the one place where reductions are run --------------------------------------------------------


def reduce(F: LazyTensor, kind: str, axis: Optional[int], weight: Any = None, K: int = 1,
           backend: Optional[str] = None, ranges: Optional[Sequence[Any]] = None, per_range: bool = False,
           **options: Any) -> Any:
    """Run the reduction ``kind`` (a key of :data:`lazygeom.reductions.KINDS`) of F over ``axis``.

    Every reduction goes through here. ``per_range=True`` (a lazygeom extension, with ``ranges``,
    no batch dims, no gradient) returns one result per output row *and* listed range instead of
    one per row, stacked row after row (:class:`lazygeom.backends.Call`).

    Returns:
        The output array (a tensor, or an ndarray on the NumPy front end), or a tuple of them
        (values and int64 indices) for the kinds with two outputs.
    """
    unknown = set(options) - IGNORED_OPTIONS
    if unknown:
        raise TypeError(f"{kind}: unexpected keyword argument(s) {sorted(unknown)}")
    over = reduction_axis(F, axis)
    src = F if weight is None else F._combine("reduction", weight, build=lambda a, b: a)
    nodes = [F._node] + ([F._lift(weight)._node] if weight is not None else [])
    dtype = src._dtype or torch.get_default_dtype()
    device = src._device or torch.device("cpu")
    batch = src._batch
    formulas, args, cats = canonical_variables(nodes, src._leaves, batch, dtype, device)

    ni, nj = src._ni, src._nj
    if over == 0:
        formulas = [swap_ij(f) for f in formulas]
        cats = [{CAT_I: CAT_J, CAT_J: CAT_I}.get(c, c) for c in cats]
        ni, nj = nj, ni
    out_side, red_side = ("j", "i") if over == 0 else ("i", "j")
    if ni is None:
        raise ValueError(f"{kind}: the formula has no {out_side}-variable, so the output size is unknown")
    if nj is None:
        raise ValueError(f"{kind}: the formula has no {red_side}-variable to reduce over")
    K = _check_K(kind, K, nj, red_side)

    if per_range and (ranges is None or batch):
        raise ValueError(f"{kind}: per_range=True needs ranges= and no batch dimensions, got "
                         f"ranges={'None' if ranges is None else 'given'} and batch {tuple(batch)}")
    if ranges is not None:
        ranges = _check_ranges(ranges, kind, batch, src._ni, src._nj, F._numpy)
        if over == 0:  # the transposed problem: rows are the j side
            ranges = ranges[3:] + ranges[:3]
    red = Reduction(kind, formulas[0], formulas[1] if len(formulas) > 1 else None, K=K)
    outs = genred(red, args, cats, ni, nj, batch, backend or get_config().backend, ranges, bool(per_range))
    if kind in SELECTION and SELECTION[kind][1] and red.out_dim == 1:
        outs = tuple(o.squeeze(-1) for o in outs)
    outs = tuple(F._to_user(o) for o in outs)
    return outs[0] if len(outs) == 1 else outs


def canonical_variables(nodes: Sequence[Node], leaves: Mapping[int, Leaf], batch: tuple[int, ...],
                        dtype: torch.dtype, device: torch.device) -> tuple[list[Node], list[torch.Tensor], list[int]]:
    """The formulas with canonical variables, the backend's arguments and their categories.

    Variables are numbered by first appearance, one per distinct array (an array used twice, e.g.
    ``Vi(x) * Vi(x)``, is one argument). A formula without variables (one that simplified to a
    constant) gets an unused parameter: backends read the dtype and device from their arguments.
    """
    mapping: dict[int, Node] = {}
    args: list[torch.Tensor] = []
    cats: list[int] = []
    seen: dict[tuple[int, int], int] = {}
    for n in walk_many(list(nodes)):
        if n.op != "var":
            continue
        leaf = leaves[n.attrs[0]]
        ident = (id(leaf.value), leaf.cat) if isinstance(leaf.value, torch.Tensor) else None
        if ident is not None and ident in seen:
            mapping[n.attrs[0]] = var(seen[ident], leaf.cat, leaf.dim)
            continue
        k = len(args)
        if ident is not None:
            seen[ident] = k
        mapping[n.attrs[0]] = var(k, leaf.cat, leaf.dim)
        args.append(_backend_layout(leaf, batch, dtype, device))
        cats.append(leaf.cat)
    if not args:
        args.append(torch.zeros((1,) * len(batch) + (1,), dtype=dtype, device=device))
        cats.append(CAT_P)
    formulas = [substitute(f, lambda n: mapping.get(n.attrs[0]) if n.op == "var" else None) for f in nodes]
    return formulas, args, cats


# --- the reductions behind several methods ---------------------------------------------------------


def minmax(F: LazyTensor, kind: str, vector_op: Optional[str], axis: Optional[int],
           options: Mapping[str, Any]) -> Any:
    """``min``, ``argmax``... over i or j; without an axis (or ``-1``), ``vector_op`` over the vector dim."""
    if axis is None and vector_op is not None:
        if options:
            raise TypeError(f"{kind} over the vector dimension takes no options, got {sorted(options)}")
        return F._combine(vector_op)
    if is_vector_axis(F, axis) and vector_op is not None:
        return F._combine(vector_op)
    return reduce(F, kind, axis, **options)


def matmul(F: LazyTensor, v: Array) -> Array:
    """``F @ v``: ``sum_j F_ij v_j`` for a scalar F and ``v`` of shape ``(M,)``, ``(M, E)`` or ``(*batch, M, E)``."""
    if F.dim != 1:
        raise ValueError(f"K @ v needs a scalar formula K, got vector dimension {F.dim}")
    t = as_tensor(v, F._numpy)
    squeeze = t.ndim == 1
    t2 = t.unsqueeze(-1) if squeeze else t
    v_j = type(F)(t2.unsqueeze(-3))  # (*batch, 1, M, E): a j-variable
    out = reduce(F * v_j, "sum", F.nbatchdims + 1)
    return out[..., 0] if squeeze else out


# --- checks and layouts ----------------------------------------------------------------------------


def _check_K(kind: str, K: Any, nj: int, red_side: str) -> int:
    try:
        K = operator.index(K)  # ints, NumPy ints; not 2.5, which int() would silently make 2
    except TypeError:
        raise TypeError(f"{kind}: K must be an integer, got {K!r}") from None
    if kind in SELECTION and SELECTION[kind][1] and K > nj:
        raise ValueError(f"{kind}: K={K} is larger than the {nj} {red_side}-indices reduced over")
    return int(K)


def _check_ranges(ranges: Any, kind: str, batch: tuple[int, ...], ni: Optional[int], nj: Optional[int],
                  numpy: bool) -> tuple[torch.Tensor, ...]:
    """Validate pykeops' 6-tuple of block-sparse ranges; return it as int64 CPU tensors."""
    from ..sparse.check import check_ranges

    if batch:
        raise NotImplementedError(f"{kind}: block-sparse ranges with batch dimensions {batch} are not supported")
    if not isinstance(ranges, (tuple, list)) or len(ranges) != 6:
        raise ValueError(
            f"{kind}: ranges must be the 6-tuple (ranges_i, slices_i, redranges_j, ranges_j, slices_j, "
            f"redranges_i), got {type(ranges).__name__} of length {len(ranges) if hasattr(ranges, '__len__') else '?'}"
        )
    ranges = tuple(as_tensor(r, numpy) if not isinstance(r, torch.Tensor) else r for r in ranges)
    ranges = tuple(r.to(device="cpu") for r in ranges)
    check_ranges(ranges, ni or 0, nj or 0)
    return ranges


def _backend_layout(leaf: Leaf, batch: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The leaf's tensor with as many batch dims as the formula (leading ones added)."""
    if isinstance(leaf.value, float):
        t = torch.tensor([leaf.value], dtype=dtype, device=device)
    else:
        t = leaf.value
    extra = len(batch) - len(leaf.batch)
    return t.reshape((1,) * extra + tuple(t.shape)) if extra > 0 else t


__all__ = ["IGNORED_OPTIONS", "axis_arg", "canonical_variables", "is_vector_axis", "matmul", "minmax", "reduce",
           "reduction_axis"]
