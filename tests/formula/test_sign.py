"""The sign analysis (``lazygeom.formula.sign``): every op's sign rule is sound, and composites get
the signs the backends rely on (``-|x - y|^2 <= 0``).

Soundness: for every op with a rule and every combination of known argument signs, the op's torch
implementation is evaluated on values of those signs, special values included (0, -0.0, ±inf,
nan): a claimed ``>= 0`` or ``<= 0`` must hold for every non-nan output.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from lazygeom import Pm, Vi, Vj
from lazygeom.formula import CAT_I, all_ops, const, node, var
from lazygeom.formula.sign import NEGATIVE, POSITIVE, UNKNOWN, sign, signs
from test_ops_registry import CASES

RULED = sorted(op for op, spec in all_ops().items() if spec.sign is not None and op not in ("var", "const"))
INF = float("inf")


def _values(s: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 1)`` values of sign ``s`` (1: >= 0, -1: <= 0, 0: any), with the special values."""
    mag = torch.cat([torch.tensor([0.0, INF, 1e-300, 1e300]), torch.rand(n, generator=gen, dtype=torch.float64) * 5])
    if s == POSITIVE:
        v = torch.cat([mag, torch.tensor([-0.0])])
    elif s == NEGATIVE:
        v = torch.cat([-mag, torch.tensor([0.0])])
    else:
        v = torch.cat([mag, -mag, torch.tensor([float("nan")])])
    return v[torch.randint(0, v.numel(), (4 * n,), generator=gen)]


def test_some_ops_have_rules():
    assert {"neg", "exp", "square", "abs", "add", "sub", "mul", "dot", "sum"} <= set(RULED)
    for op in ("div", "inv", "rsqrt", "log", "sin"):  # unsound or unknown: 1 / -0.0 = -inf
        assert all_ops()[op].sign is None, op


@pytest.mark.parametrize("op", RULED)
def test_rule_is_sound(op):
    spec = all_ops()[op]
    gen = torch.Generator().manual_seed(hash(op) % 2**31)
    for case in CASES[op]:
        arity = len(case.dims)
        args_nodes = [var(k, CAT_I, d) for k, d in enumerate(case.dims)]
        f = node(op, *args_nodes, attrs=case.attrs)
        for combo in itertools.product((POSITIVE, NEGATIVE, UNKNOWN), repeat=arity):
            claim = spec.sign(combo, f)
            assert claim in (POSITIVE, NEGATIVE, UNKNOWN)
            if claim == UNKNOWN:
                continue
            # every component of each argument drawn with its sign (same rows across arguments)
            args = [torch.stack([_values(s, 50, gen) for _ in range(d)], dim=1) for s, d in zip(combo, case.dims)]
            with torch.no_grad():
                out = spec.impl(torch, *args, case.attrs)
            ok = out.isnan() | ((out >= 0) if claim == POSITIVE else (out <= 0))
            assert bool(ok.all()), f"{op}{case.dims}{case.attrs} with argument signs {combo}: claimed {claim}, " \
                                   f"got {out[~ok][:5].tolist()}"


def test_a_product_of_a_value_with_itself_is_nonnegative():
    d = node("sub", var(0, CAT_I, 3), var(1, 1, 3))
    assert sign(node("dot", d, d)) == POSITIVE
    assert sign(node("mul", d, d)) == POSITIVE
    assert sign(node("dot", d, node("neg", d))) == UNKNOWN  # not the same node


def test_constants_and_composites():
    x, y = torch.rand(5, 3), torch.rand(6, 3)
    assert sign(const(2.0)) == POSITIVE and sign(const(-1.0)) == NEGATIVE and sign(const(float("nan"))) == UNKNOWN
    assert sign((-Vi(x).sqdist(Vj(y)))._node) == NEGATIVE
    assert sign((-Vi(x).sqdist(Vj(y)) / 2)._node) == NEGATIVE
    assert sign((-(Vi(x) - Vj(y)).norm2())._node) == NEGATIVE
    assert sign((Vi(x) - Vj(y)).abs().sum(-1)._node) == POSITIVE
    # a parameter's sign is not known when the kernel is compiled
    assert sign((-Vi(x).sqdist(Vj(y)) * Pm(torch.tensor([2.0])))._node) == UNKNOWN
    assert sign((Vi(x) - Vj(y)).sum(-1)._node) == UNKNOWN
    f = (-Vi(x).sqdist(Vj(y))).exp()._node
    s = signs([f])
    assert s[id(f)] == POSITIVE and s[id(f.args[0])] == NEGATIVE
