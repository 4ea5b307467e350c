"""The differentiable reduction call: a ``torch.autograd.Function`` around the backends.

Its backward builds the gradient as *new reductions* (from the IR's vector-Jacobian rules, see
:mod:`lazygeom.reductions.backward`) and runs them through this same function, so gradients of
any order are available and nothing of size N*M is ever allocated.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import torch

from ..backends import Call, select_backend
from ..backends.base import expand_per_range
from ..formula import CAT_I, CAT_J, CAT_P, make, swap_ij, var
from ..reductions import INDEX, SELECTED, SUM_LIKE, VALUE, Reduction, selection_grad_formulas, sum_like_grad_formula

def genred(red: Reduction, args: Sequence[torch.Tensor], cats: Sequence[int], ni: int, nj: int,
           batch: Sequence[int], backend: str, ranges: Optional[tuple] = None,
           per_range: bool = False) -> tuple[torch.Tensor, ...]:
    """Run a reduction over j, differentiably.

    See :class:`lazygeom.backends.Call` for the argument layout, the block-sparse ``ranges`` and
    ``per_range``.

    Args:
        red: the reduction.
        args: its arguments.
        cats: their categories.
        ni: the number of rows i.
        nj: the number of reduced indices j.
        batch: the batch dimensions.
        backend: the backend name asked for (see :func:`lazygeom.backends.select_backend`).
        ranges: block-sparse ranges, or None.
        per_range: one result per row and listed range.

    Returns:
        The outputs of ``red.kind`` (values and/or int64 indices), differentiable with respect to
        every floating argument (per-range results are not differentiable).
    """
    call = Call(red, tuple(cats), int(ni), int(nj), tuple(batch), ranges, per_range)
    if per_range and torch.is_grad_enabled() and any(a.requires_grad for a in args):
        raise NotImplementedError("per-range reductions have no gradient: run them under torch.no_grad() "
                                  "or on detached tensors")
    return _GenredFn.apply(call, backend, *args)


def _run(backend: str, call: Call, args) -> tuple[torch.Tensor, ...]:
    chosen = select_backend(backend, call, args)
    if call.per_range and not getattr(chosen, "per_range", False):
        call, args = expand_per_range(call, args)  # one row per (row, range): the same results
    return chosen.run(call, args)


class _GenredFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: Call, backend: str, *args):
        red = call.reduction
        spec = red.spec
        # a selection runs as its values-and-indices pair: the indices carry the gradient
        run = red if spec.is_run else Reduction(spec.run, red.formula, K=red.K)
        saved_outs = _run(backend, replace(call, reduction=run), args)
        by_output = dict(zip(run.outputs, saved_outs))
        outs = tuple(by_output[o] for o in red.outputs)
        ctx.call, ctx.backend, ctx.n_args = call, backend, len(args)
        ctx.save_for_backward(*args, *saved_outs)
        ctx.mark_non_differentiable(*(o for o, k in zip(outs, red.outputs) if k == INDEX))
        return outs

    @staticmethod
    def backward(ctx, *gouts):
        call, n = ctx.call, ctx.n_args
        saved = ctx.saved_tensors
        args, outs = saved[:n], saved[n:]
        needs = ctx.needs_input_grad[2:]
        red = call.reduction
        g = next((g for g, k in zip(gouts, red.outputs) if k == VALUE), None)
        ks = [k for k in range(n) if needs[k] and args[k].is_floating_point()]
        if not ks or g is None:
            return (None, None, *([None] * n))
        rule = {SUM_LIKE: _sum_like_backward, SELECTED: _selection_backward}[red.spec.grad]
        return (None, None, *rule(call, ctx.backend, args, outs, g, ks))


def _sum_to_shape(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a gradient over the batch dimensions along which its argument was broadcast."""
    dims = tuple(d for d, (a, b) in enumerate(zip(shape, grad.shape)) if a == 1 and b != 1)
    return grad.sum(dims, keepdim=True) if dims else grad


def _concat(formulas):
    out = formulas[0]
    for f in formulas[1:]:
        out = make("concat", out, f)
    return out


def _split(t: torch.Tensor, dims: list[int]) -> list[torch.Tensor]:
    return list(torch.split(t, dims, dim=-1))


def _sum_like_backward(call: Call, backend: str, args, outs, g, ks: list[int]) -> list[Optional[torch.Tensor]]:
    red, n = call.reduction, len(args)
    grads: list[Optional[torch.Tensor]] = [None] * n
    wrt = [var(k, call.cats[k], args[k].shape[-1]) for k in ks]
    formulas, extras = sum_like_grad_formula(red, wrt, n)

    def saved(name: str) -> torch.Tensor:
        if name == "g":
            return g
        if name == "output":
            return outs[0]
        # LSE_j F, recomputed here so that it stays differentiable
        return genred(Reduction("lse", red.formula), args, call.cats, call.ni, call.nj, call.batch, backend,
                      call.ranges)[0]

    ext_args = list(args) + [saved(name) for name in extras]
    ext_cats = list(call.cats) + [CAT_I] * (len(ext_args) - n)

    # One reduction over j serves every i-variable and parameter; one over i every j-variable.
    for side in (CAT_I, CAT_J):
        group = [(k, f) for k, f in zip(ks, formulas)
                 if f is not None and (call.cats[k] == side or (side == CAT_I and call.cats[k] == CAT_P))]
        if not group:
            continue
        F = _concat([f for _, f in group])
        cats, ni, nj, ranges = ext_cats, call.ni, call.nj, call.ranges
        if side == CAT_J:
            F = swap_ij(F)
            cats = [{CAT_I: CAT_J, CAT_J: CAT_I}.get(c, c) for c in ext_cats]
            ni, nj, ranges = nj, ni, call.swapped_ranges
        (res,) = genred(Reduction("sum", F), ext_args, cats, ni, nj, call.batch, backend, ranges)
        for (k, _), part in zip(group, _split(res, [f.dim for _, f in group])):
            if call.cats[k] == CAT_P:
                part = part.sum(-2)
            grads[k] = _sum_to_shape(part, args[k].shape)
    return grads


def _selection_backward(call: Call, backend: str, args, outs, g, ks: list[int]) -> list[Optional[torch.Tensor]]:
    red, n = call.reduction, len(args)
    grads: list[Optional[torch.Tensor]] = [None] * n
    _, indices = outs
    K = red.K if red.spec.k else 1
    B, N = tuple(call.batch), call.ni
    wrt = [var(k, call.cats[k], args[k].shape[-1]) for k in ks]
    pair_cats = [CAT_P if c == CAT_P else CAT_I for c in call.cats] + [CAT_I]
    for e in range(red.out_dim):
        formulas = selection_grad_formulas(red, e, wrt, n)
        group = [(k, f) for k, f in zip(ks, formulas) if f is not None]
        if not group:
            continue
        idx = indices[..., e].reshape(*B, N * K)  # rows (i, k) flattened
        ge = g[..., e].reshape(*B, N * K, 1)
        pair_args = []
        for k, a in enumerate(args):
            if call.cats[k] == CAT_I:
                a = a.repeat_interleave(K, dim=-2) if K > 1 else a
            elif call.cats[k] == CAT_J:
                a = a.expand(*B, *a.shape[-2:])
                a = torch.gather(a, -2, idx.unsqueeze(-1).expand(*B, N * K, a.shape[-1]))
            pair_args.append(a)
        (res,) = genred(Reduction("sum", _concat([f for _, f in group])), pair_args + [ge], pair_cats,
                        N * K, 1, B, backend)
        for (k, _), part in zip(group, _split(res, [f.dim for _, f in group])):
            if call.cats[k] == CAT_I:
                part = part.reshape(*B, N, K, part.shape[-1]).sum(-2)
            elif call.cats[k] == CAT_J:
                D = part.shape[-1]
                zeros = part.new_zeros(*B, call.nj, D)
                part = zeros.scatter_add(-2, idx.unsqueeze(-1).expand(*B, N * K, D), part)
            else:
                part = part.sum(-2)
            part = _sum_to_shape(part, args[k].shape)
            grads[k] = part if grads[k] is None else grads[k] + part
    return grads
