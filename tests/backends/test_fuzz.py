"""Random-formula fuzzing of the code generators (CPU C++, Triton) against the oracles.

Hypothesis builds random well-formed formulas from the op registry (every registered op, random
depth and vector dimensions, i-, j- and parameter variables, constants), a random reduction (every
kind of :data:`lazygeom.reductions.SPECS`, the optional weight of ``lse`` or not, random K), over j
or over i (the formula with i and j exchanged, as the front end does), with or without batch
dimensions (arguments broadcast along some of them), in float64 or (formulas without jumps) float32,
sometimes with duplicated rows (exact ties) or a long reduced axis (several tiles), and sometimes
one of the spellings of a squared distance or an inner product at D >= 16 that the CPU backend runs
on its fused kNN kernel. It checks:

- the CPU backend against the reference backend and against a dense float64 evaluation of the
  formula with the ops' own torch implementations on the full (N, M) grid: values, and (float64,
  every differentiable kind) first derivatives against torch autograd of the dense evaluation;
- the Triton backend (interpreter on CPU, 16 x 16 tiles, smaller sizes, fewer examples) the same
  way, against the reference backend and the dense evaluation.

The dense evaluation runs on the formula *as generated*, while the backends get it as the front end
would (through the simplification rules of ``algebra.make``) or, in some examples, built raw with
``node`` (no rewriting): the simplifier is checked as well.

Inputs stay inside each op's domain (``OpSpec.domains``): the generator tracks an interval
enclosing every node's values and wraps an argument that could leave the domain (``log(x)`` becomes
``log(x**2 + c)``, ``log(|x| + c)`` or ``log(exp(x))``, ``asin(x)`` becomes ``asin(0.9 tanh x)``,
``1/x`` gets an argument bounded away from 0, ``atan2(y, x)`` a y away from 0 where x may be
negative: no branch cut, no signed zero), keeps magnitudes bounded (a node that could exceed
``LIMIT`` is squashed by ``sin``, ``tanh`` or ``atan``), and never feeds ``exp`` more than ~5. So no
nan appears in the dense reference; the comparisons still treat matching nan/inf entries as
equal, should one appear. Values are compared normwise (``max |out - ref| / max |ref|``, the scale
at least that of the formula's values), float64 within 1e-9, float32 within 2e-4; float64 gradients
within 1e-7.

Selections: values are compared with a tolerance, and the returned indices must be in range,
distinct per row for the K-selections, and point to dense values equal to the selected ones
(ties may resolve to any index). Their gradients are checked against autograd of the dense values
gathered at the backend's own indices. Flat ops (``OpSpec.flat``) need no special case: torch's
autograd and the VJP rules both give them a zero gradient.

Budget: one test per run kind (``GROUPS``: every kernel template gets its share), each of
``CPU_EXAMPLES`` or ``TRITON_EXAMPLES`` examples, derandomized (the same formulas on every run),
45-60 s on this project's 2-core machines (72 CPU examples, 24 Triton); each distinct formula
costs a C++ compilation (0.2-0.5 s, and as much again for its gradient) in a session-scoped cache
folder. Larger runs, by hand (600 examples: about 4 minutes; 2400: 15)::

    LAZYGEOM_FUZZ_EXAMPLES=500 pytest tests/backends/test_fuzz.py   # CPU, all groups; Triton: a quarter
    LAZYGEOM_FUZZ_SEED=7 ...                                          # another stream of examples

A failure shrinks to a small formula, printed (``hypothesis.note``): the formula as generated and as
reduced, the kind, K, the axis, the sizes, the dtype and the data's seed.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

try:  # sets TRITON_INTERPRET before Triton's first import (see triton_testing); CPU tests run without
    import triton_testing

    _TRITON_SKIP = None
except pytest.skip.Exception as exc:  # no triton, or imported in compiled mode before this file
    triton_testing = None
    _TRITON_SKIP = str(exc)

import lazygeom  # noqa: E402
import lazygeom.backends.policy as B  # noqa: E402
from lazygeom.backends.cpu.backend import CpuBackend  # noqa: E402
from lazygeom.formula import (CAT_I, CAT_J, CAT_NAMES, CAT_P, Node, all_ops, const, make, node,  # noqa: E402
                              swap_ij, to_str, var)
from lazygeom.lazy.genred import genred  # noqa: E402
from lazygeom.reductions import INDEX, RUN_KINDS, SPECS, Reduction  # noqa: E402

# --- budget ------------------------------------------------------------------------------------

#: the kinds grouped by the kind a backend runs: one test per group, so that every kernel template
#: gets its share of the examples
GROUPS = {run: tuple(k for k, s in SPECS.items() if s.run == run) for run in RUN_KINDS}
_ENV_EXAMPLES = int(os.environ.get("LAZYGEOM_FUZZ_EXAMPLES", "0") or 0)
#: examples per group (all groups: 6 times as many)
CPU_EXAMPLES = max(1, _ENV_EXAMPLES // len(GROUPS)) if _ENV_EXAMPLES else 12
TRITON_EXAMPLES = max(1, _ENV_EXAMPLES // (4 * len(GROUPS))) if _ENV_EXAMPLES else 4
_ENV_SEED = os.environ.get("LAZYGEOM_FUZZ_SEED")


def _settings(examples: int):
    """Fixed-budget settings: derandomized (or seeded by LAZYGEOM_FUZZ_SEED), no example database."""

    def wrap(test):
        test = settings(max_examples=examples, deadline=None, derandomize=_ENV_SEED is None, database=None,
                        print_blob=False,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                               HealthCheck.filter_too_much])(test)
        if _ENV_SEED is not None:
            test = hypothesis_seed(int(_ENV_SEED))(test)
        return test

    return wrap


# --- the formula generator -----------------------------------------------------------------------

#: largest magnitude a node may reach before it is squashed (keeps float errors proportionate)
LIMIT = 50.0
#: largest vector dimension of a generated node (matrices of matvecmult/vecmatmult: up to 3 x 3)
MAXDIM = 5
#: data ranges of the variables' domains
DATA = {"any": (-2.0, 2.0), "pos": (0.5, 2.0)}
#: a "nz" argument of these ops can be anything: a kink (abs, relu) or a branch (ifelse) where
#: torch's autograd and the VJP rules agree (a structural zero there has a zero derivative);
#: the poles (div, inv, atan2, negative powers, and sinxdivx whose VJP is 0/0 at 0) get
#: arguments bounded away from 0
NZ_ANYTHING = {"abs", "relu", "ifelse"}
#: ops whose value jumps: float32 rounding may move an argument across the jump, so examples
#: with them run in float64 only (atan2's y is kept away from 0 where x may be negative)
DISCONTINUOUS = {"sign", "step", "round", "floor", "vargmax", "vargmin", "onehot", "ifelse"}
CONSTANTS = (1.5, -0.5, 2, 0, 1, 0.25, -3)

UNARY = ("neg", "exp", "log", "sqrt", "rsqrt", "abs", "sign", "step", "round", "floor", "relu", "sin", "cos",
         "tanh", "asin", "acos", "atan", "square", "inv", "log1p", "xlogx", "sinxdivx", "pow")
BINARY = ("add", "sub", "mul", "div", "atan2", "min2", "max2")
#: ops that give a scalar from a vector (drawn only where the output dimension is 1)
TO_SCALAR = ("sum", "dot", "vmax", "vmin", "vargmax", "vargmin")
#: vector ops of any output dimension
VECTOR = ("ifelse", "extract", "pad", "concat", "bcast", "onehot", "matvecmult", "vecmatmult", "tensorprod")
GENERATED_OPS = set(UNARY) | set(BINARY) | set(TO_SCALAR) | set(VECTOR)


@dataclass(eq=False)
class Expr:
    """A generated formula node (as generated: before any simplification), with bounds of its values."""

    op: str
    args: tuple = ()
    attrs: tuple = ()
    dim: int = 1
    lo: float = 0.0
    hi: float = 0.0
    domain: str = ""  # variables only: the data domain

    def __repr__(self) -> str:
        return to_str(build(self, False))

    def _repr_pretty_(self, p, cycle) -> None:  # how Hypothesis prints a drawn value
        p.text(repr(self))

    def walk(self):
        seen = set()
        stack = [self]
        while stack:
            e = stack.pop()
            if id(e) in seen:
                continue
            seen.add(id(e))
            yield e
            stack.extend(e.args)


def _mul_ivl(a, b):
    p = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(p), max(p)


def _abs_ivl(lo, hi):
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def _pow_ivl(lo, hi, k):
    vals = [lo ** k, hi ** k]
    if k > 0 and lo < 0 < hi:
        vals.append(0.0)
    return min(vals), max(vals)


def _bounds(op: str, args: tuple, attrs: tuple) -> tuple[float, float]:
    """An interval enclosing the values of ``op(args)`` (every component), from the arguments' intervals."""
    iv = [(a.lo, a.hi) for a in args]
    lo, hi = iv[0] if iv else (0.0, 0.0)
    unary = {
        "neg": lambda: (-hi, -lo),
        "exp": lambda: (math.exp(lo), math.exp(hi)),
        "log": lambda: (math.log(lo), math.log(hi)),
        "sqrt": lambda: (math.sqrt(lo), math.sqrt(hi)),
        "rsqrt": lambda: (1 / math.sqrt(hi), 1 / math.sqrt(lo)),
        "abs": lambda: _abs_ivl(lo, hi),
        "sign": lambda: (-1.0, 1.0),
        "step": lambda: (0.0, 1.0),
        "round": lambda: (math.floor(lo), math.ceil(hi)),
        "floor": lambda: (math.floor(lo), math.floor(hi)),
        "relu": lambda: (max(lo, 0.0), max(hi, 0.0)),
        "sin": lambda: (-1.0, 1.0),
        "cos": lambda: (-1.0, 1.0),
        "tanh": lambda: (math.tanh(lo), math.tanh(hi)),
        "asin": lambda: (math.asin(lo), math.asin(hi)),
        "acos": lambda: (math.acos(hi), math.acos(lo)),
        "atan": lambda: (math.atan(lo), math.atan(hi)),
        "square": lambda: tuple(x * x for x in _abs_ivl(lo, hi)),
        "inv": lambda: (1 / hi, 1 / lo),
        "log1p": lambda: (math.log1p(lo), math.log1p(hi)),
        "xlogx": lambda: (-1 / math.e, max(0.0, lo * math.log(lo), hi * math.log(hi))),
        "sinxdivx": lambda: (-0.22, 1.0),
        "pow": lambda: _pow_ivl(lo, hi, attrs[0] if attrs else 1),
        "sum": lambda: (args[0].dim * lo, args[0].dim * hi),
        "bcast": lambda: (lo, hi),
        "vmax": lambda: (lo, hi),
        "vmin": lambda: (lo, hi),
        "vargmax": lambda: (0.0, args[0].dim - 1.0),
        "vargmin": lambda: (0.0, args[0].dim - 1.0),
        "onehot": lambda: (0.0, 1.0),
        "extract": lambda: (lo, hi),
        "pad": lambda: (min(lo, 0.0), max(hi, 0.0)),
    }
    if op in unary:
        return unary[op]()
    if op in ("min2", "max2", "add", "sub", "mul", "div", "atan2", "dot", "concat", "matvecmult", "vecmatmult",
              "tensorprod"):
        b = iv[1]
        if op == "add":
            return lo + b[0], hi + b[1]
        if op == "sub":
            return lo - b[1], hi - b[0]
        if op in ("mul", "tensorprod"):
            return _mul_ivl((lo, hi), b)
        if op == "div":
            return _mul_ivl((lo, hi), (1 / b[1], 1 / b[0]))
        if op == "atan2":
            return -math.pi, math.pi
        if op == "min2":
            return min(lo, b[0]), min(hi, b[1])
        if op == "max2":
            return max(lo, b[0]), max(hi, b[1])
        if op == "concat":
            return min(lo, b[0]), max(hi, b[1])
        n = {"dot": args[0].dim, "matvecmult": args[1].dim, "vecmatmult": args[0].dim}[op]
        p = _mul_ivl((lo, hi), b)
        return n * p[0], n * p[1]
    if op == "ifelse":
        return min(iv[1][0], iv[2][0]), max(iv[1][1], iv[2][1])
    raise AssertionError(f"no bounds for op {op!r}: extend the fuzzer's generator")


class Generator:
    """Draws a random formula, op by op, with Hypothesis' ``draw`` (so that failures shrink)."""

    def __init__(self, draw, variables: list):
        self.draw = draw
        self.vars = variables  # Expr leaves "var", shared with the weight formula

    # -- leaves --

    def leaf(self, dim: int) -> Expr:
        d = self.draw
        if d(st.integers(0, 7)) == 3:  # (interior values: Hypothesis draws the bounds often)
            value = d(st.sampled_from(CONSTANTS))
            return Expr("const", attrs=(value, dim), dim=dim, lo=float(value), hi=float(value))
        same = [v for v in self.vars if v.dim == dim]
        k = d(st.integers(0, len(same)))
        if k < len(same):
            return same[k]
        return self.new_var(dim)

    def new_var(self, dim: int, cat: Optional[int] = None, domain: Optional[str] = None) -> Expr:
        d = self.draw
        cat = d(st.sampled_from((CAT_I, CAT_J, CAT_P))) if cat is None else cat
        domain = d(st.sampled_from(("any", "pos"))) if domain is None else domain
        lo, hi = DATA[domain]
        v = Expr("var", attrs=(len(self.vars), cat, dim), dim=dim, lo=lo, hi=hi, domain=domain)
        self.vars.append(v)
        return v

    # -- nodes, with magnitudes kept under LIMIT --

    def raw(self, op: str, *args: Expr, attrs: tuple = ()) -> Expr:
        dim = all_ops()[op].dim_rule(tuple(a.dim for a in args), attrs)
        lo, hi = _bounds(op, args, attrs)
        return Expr(op, tuple(args), tuple(attrs), dim, float(lo), float(hi))

    def squash(self, a: Expr) -> Expr:
        return self.raw(self.draw(st.sampled_from(("tanh", "sin", "atan"))), a)

    def op(self, op: str, *args: Expr, attrs: tuple = ()) -> Expr:
        e = self.raw(op, *args, attrs=attrs)
        return e if max(abs(e.lo), abs(e.hi)) <= LIMIT else self.squash(e)

    # -- domain guards --

    def positive(self, a: Expr) -> Expr:
        """``a`` if its values are >= 0.1, else a wrapping of it that is (values >= 0.1)."""
        if a.lo >= 0.1:
            return a
        how = self.draw(st.integers(0, 2))
        if how == 0:  # x**2 + c
            e = self.op("add", self.op("square", a), self.constant(self.draw(st.sampled_from((1, 0.5))), 1))
        elif how == 1:  # |x| + c
            e = self.op("add", self.op("abs", a), self.constant(0.5, 1))
        else:  # exp(x), x in [-pi/2, pi/2]
            e = self.op("exp", a if -1.5 <= a.lo and a.hi <= 1.5 else self.squash(a))
        if e.lo < 0.1:  # squashed on the way: exp of a squashed argument always is
            e = self.op("exp", self.squash(a))
        return e

    def nonzero(self, a: Expr) -> Expr:
        if a.lo >= 0.1 or a.hi <= -0.1:
            return a
        p = self.positive(a)
        return self.op("neg", p) if self.draw(st.booleans()) else p

    def unit(self, a: Expr) -> Expr:
        """``a`` if within [-0.95, 0.95], else 0.9 tanh(a) or 0.9 sin(a)."""
        if -0.95 <= a.lo and a.hi <= 0.95:
            return a
        return self.op("mul", self.constant(0.9, 1), self.raw(self.draw(st.sampled_from(("tanh", "sin"))), a))

    def constant(self, value, dim) -> Expr:
        return Expr("const", attrs=(value, dim), dim=dim, lo=float(value), hi=float(value))

    def guard(self, op: str, k: int, a: Expr, attrs: tuple = ()) -> Expr:
        """Argument ``k`` of ``op``, brought inside the op's domain for that argument."""
        domain = all_ops()[op].domains[k]
        if domain == "pos":
            return self.positive(a)
        if domain == "unit":
            return self.unit(a)
        if domain == "nz":
            if op in NZ_ANYTHING or (op == "pow" and attrs[0] >= 0):
                return a
            return self.nonzero(a)
        assert domain == "any", f"unknown domain {domain!r} of {op}: teach the fuzzer's generator"
        if op == "exp" and a.hi > 5:
            return self.squash(a)
        return a

    # -- formulas --

    def formula(self, depth: int, dim: int) -> Expr:
        d = self.draw
        if depth <= 0:
            return self.leaf(dim)
        choices = ["add", "mul"] + [o for o in UNARY] + [o for o in BINARY if o not in ("add", "mul")]
        choices += [o for o in VECTOR if o not in ("pad", "concat", "bcast", "onehot") or dim >= 2]
        if dim == 1:
            choices += list(TO_SCALAR)
        op = d(st.sampled_from(choices))
        sub = depth - 1
        if op in UNARY:
            attrs = (d(st.sampled_from((2, 3, -1, -2, 0, 1))),) if op == "pow" else ()
            return self.op(op, self.guard(op, 0, self.formula(sub, dim), attrs), attrs=attrs)
        if op in BINARY or op == "ifelse":
            n = 2 if op in BINARY else 3
            dims = [dim] * n
            if dim > 1:  # some arguments of dimension 1, broadcast
                for k in range(n):
                    if d(st.booleans()):
                        dims[k] = 1
                if 1 not in dims or all(x == 1 for x in dims):
                    dims[d(st.integers(0, n - 1))] = dim
            args = [self.guard(op, k, self.formula(sub, dims[k])) for k in range(n)]
            if op == "atan2" and args[1].lo < 0:  # away from the branch cut (and from signed zeros:
                args[0] = self.nonzero(args[0])  # torch.sum of -0.0s is +0.0, C++'s a + b + c -0.0)
            return self.op(op, *args)
        if op in ("sum", "vmax", "vmin", "vargmax", "vargmin"):
            return self.op(op, self.formula(sub, d(st.integers(1, MAXDIM))))
        if op == "dot":
            n = d(st.integers(1, MAXDIM))
            return self.op(op, self.formula(sub, n), self.formula(sub, n))
        if op == "extract":
            total = dim + d(st.integers(0, 2))
            start = d(st.integers(0, total - dim))
            return self.op(op, self.formula(sub, total), attrs=(start, dim))
        if op == "pad":
            n = d(st.integers(1, dim - 1))
            start = d(st.integers(0, dim - n))
            return self.op(op, self.formula(sub, n), attrs=(start, dim))
        if op == "concat":
            n = d(st.integers(1, dim - 1))
            return self.op(op, self.formula(sub, n), self.formula(sub, dim - n))
        if op == "bcast":
            return self.op(op, self.formula(sub, 1), attrs=(dim,))
        if op == "onehot":
            if d(st.booleans()):  # an index: vargmax/vargmin of a vector (may exceed dim: all zeros)
                arg = self.op(d(st.sampled_from(("vargmax", "vargmin"))), self.formula(sub, d(st.integers(1, MAXDIM))))
            else:
                arg = self.formula(sub, 1)
            return self.op(op, arg, attrs=(dim,))
        if op in ("matvecmult", "vecmatmult"):
            n = d(st.integers(1, 3))
            if dim > 3:
                return self.leaf(dim)
            if op == "matvecmult":  # (dim x n) matrix times n-vector
                return self.op(op, self.formula(sub, dim * n), self.formula(sub, n))
            return self.op(op, self.formula(sub, n), self.formula(sub, n * dim))  # n-vector times (n x dim)
        if op == "tensorprod":
            divisors = [k for k in range(1, dim + 1) if dim % k == 0]
            a = d(st.sampled_from(divisors))
            return self.op(op, self.formula(sub, a), self.formula(sub, dim // a))
        raise AssertionError(op)


def build(e: Expr, simplify: bool, memo: Optional[dict] = None) -> Node:
    """The IR node of a generated formula: through ``make`` (simplified, as the front end) or raw."""
    memo = {} if memo is None else memo
    if id(e) not in memo:
        if e.op == "var":
            n = var(*e.attrs)
        elif e.op == "const":
            n = const(*e.attrs)
        else:
            args = [build(a, simplify, memo) for a in e.args]
            n = make(e.op, *args, attrs=e.attrs) if simplify else node(e.op, *args, attrs=e.attrs)
        memo[id(e)] = n
    return memo[id(e)]


def dense(e: Expr, views: list, memo: Optional[dict] = None) -> torch.Tensor:
    """The formula as generated, evaluated with the ops' torch implementations on dense views."""
    memo = {} if memo is None else memo
    if id(e) not in memo:
        if e.op == "var":
            v = views[e.attrs[0]]
        elif e.op == "const":
            v = torch.full((e.dim,), e.attrs[0], dtype=torch.float64)
        else:
            v = all_ops()[e.op].impl(torch, *(dense(a, views, memo) for a in e.args), e.attrs)
        memo[id(e)] = v
    return memo[id(e)]


# --- one fuzz case -------------------------------------------------------------------------------

BATCHES = ((), (2,), (3, 2))


@dataclass(eq=False)
class Case:
    formula: Expr
    weight: Optional[Expr]
    variables: list
    kind: str
    K: int
    over: int  # 1: reduce over j (rows i), 0: over i (rows j)
    N: int
    M: int
    batch: tuple
    dtype: torch.dtype
    simplify: bool
    seed: int
    ties: bool = False  # duplicated rows of the i- and j-variables: exact ties in every selection
    _nodes: dict = field(default_factory=dict)

    def nodes(self) -> tuple[Node, Optional[Node]]:
        """(formula, weight) as the backends get them (before any swap of i and j)."""
        if not self._nodes:
            memo: dict = {}
            self._nodes["f"] = build(self.formula, self.simplify, memo)
            self._nodes["w"] = None if self.weight is None else build(self.weight, self.simplify, memo)
        return self._nodes["f"], self._nodes["w"]

    @property
    def has_weight(self) -> bool:
        return self.weight is not None

    def __repr__(self) -> str:
        w = "" if self.weight is None else f", weight {self.weight!r}"
        return f"<{self.kind} of {self.formula!r}{w}; details in the notes below>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def describe(self) -> str:
        f, w = self.nodes()
        raw_f = build(self.formula, False)
        lines = [
            f"kind={self.kind}{'(weighted)' if self.kind == 'lse' and self.has_weight else ''} K={self.K} "
            f"over={'j' if self.over else 'i'} N={self.N} M={self.M} batch={self.batch} "
            f"dtype={str(self.dtype).replace('torch.', '')} simplify={self.simplify} seed={self.seed} ties={self.ties}",
            f"formula      = {to_str(raw_f)}",
            f"  as reduced = {to_str(f)}",
        ]
        if self.weight is not None:
            lines += [f"weight       = {to_str(build(self.weight, False))}", f"  as reduced = {to_str(w)}"]
        lines.append("variables: " + ", ".join(
            f"V{v.attrs[0]}{CAT_NAMES[v.attrs[1]]}[{v.dim}] {v.domain}" for v in self.variables))
        return "\n".join(lines)

    def data(self) -> list[torch.Tensor]:
        """float64 data per variable, in its domain; batch entries 1 (broadcast) at random."""
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        for v in self.variables:
            _, cat, dim = v.attrs
            bshape = tuple(b if torch.rand((), generator=gen) < 0.7 else 1 for b in self.batch)
            n = {CAT_I: (self.N,), CAT_J: (self.M,), CAT_P: ()}[cat]
            lo, hi = DATA[v.domain]
            t = lo + (hi - lo) * torch.rand((*bshape, *n, dim), generator=gen, dtype=torch.float64)
            if self.ties and n and n[0] > 1:  # the second half of the rows repeats the first
                half = n[0] // 2
                t[..., n[0] - half:, :] = t[..., :half, :]
            out.append(t.to(self.dtype).to(torch.float64))  # float32 cases: float32-representable data
        return out

    # -- the dense reference --

    def dense_views(self, data: list[torch.Tensor]) -> list[torch.Tensor]:
        views = []
        for v, t in zip(self.variables, data):
            cat = v.attrs[1]
            views.append({CAT_I: lambda: t.unsqueeze(-2), CAT_J: lambda: t.unsqueeze(-3),
                          CAT_P: lambda: t[..., None, None, :]}[cat]())
        return views

    def dense_F(self, data) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Dense formula (and weight), (*batch, N, M, E) float64, expanded to the common dimension."""
        memo: dict = {}
        views = self.dense_views(data)
        F = dense(self.formula, views, memo)
        W = None if self.weight is None else dense(self.weight, views, memo)
        E = self.out_dim
        F = F.expand(*self.batch, self.N, self.M, self.formula.dim if W is None else E)
        if W is not None:
            W = W.expand(*self.batch, self.N, self.M, E)
        return F, W

    @property
    def out_dim(self) -> int:
        return self.weight.dim if self.weight is not None else self.formula.dim

    @property
    def axis(self) -> int:
        return -2 if self.over == 1 else -3

    def dense_reduce(self, F: torch.Tensor, W: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The value output of the kind (None for the index-only kinds), (*batch, rows, [K,] E)."""
        r, spec = self.axis, SPECS[self.kind]
        if self.kind == "sum":
            return F.sum(r)
        if self.kind == "lse":
            S = F if W is None else F + torch.log(W)
            return torch.logsumexp(S, r)
        if self.kind == "ssmw":
            return (torch.softmax(F, r) * W).sum(r)
        return self.selected_values(F) if spec.differentiable else None

    def selected_values(self, F: torch.Tensor) -> torch.Tensor:
        """The values a selection kind selects (also for the index-only kinds)."""
        r, spec = self.axis, SPECS[self.kind]
        if not spec.k:
            return F.amin(r) if spec.extremum == "min" else F.amax(r)
        v = torch.sort(F, dim=r, stable=True).values.narrow(r, 0, self.K)
        return v.movedim(-3, -2) if r == -3 else v

    def gather(self, F: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Dense values at the reduced-axis indices ``idx`` (layout of the outputs)."""
        Fr = F.movedim(self.axis, -2)  # (*b, rows, n_red, E)
        i2 = idx if SPECS[self.kind].k else idx.unsqueeze(-2)
        out = torch.gather(Fr, -2, i2)
        return out if SPECS[self.kind].k else out.squeeze(-2)

    # -- the call --

    def call(self, args: list[torch.Tensor], backend: str, kind: Optional[str] = None):
        """genred of the case (or of ``kind`` on the same formula) on ``backend``."""
        f, w = self.nodes()
        cats = [v.attrs[1] for v in self.variables]
        ni, nj = self.N, self.M
        if self.over == 0:  # a reduction over i: over j of the swapped formula, as the front end does
            f, w = swap_ij(f), None if w is None else swap_ij(w)
            cats = [{CAT_I: CAT_J, CAT_J: CAT_I}.get(c, c) for c in cats]
            ni, nj = nj, ni
        kind = kind or self.kind
        red = Reduction(kind, f, w if SPECS[kind].weight != "none" else None, K=self.K)
        return genred(red, args, cats, ni, nj, self.batch, backend)


#: the kinds the CPU backend may run on its fused K-nearest-neighbour kernel (blas_knn)
KNN_KINDS = tuple(k for k, s in SPECS.items() if s.extremum == "min")


def knn_formula(draw, g: Generator) -> Expr:
    """One of the spellings of ``|x_i - y_j|^2`` or ``+-<x_i, y_j>`` that the CPU backend runs on its
    fused kNN kernel (dimension >= 16), or a near miss that it must not."""
    D = draw(st.integers(16, 20))
    x, y = g.new_var(D, CAT_I, "any"), g.new_var(D, CAT_J, "any")
    how = draw(st.integers(0, 6))
    if how <= 2:
        d = g.raw("sub", *((x, y) if how != 1 else (y, x)))
        sq = g.raw("mul", d, d) if how == 2 else g.raw("square", d)
        return g.raw("sum", sq)
    if how == 3:
        return g.raw("dot", x, y)
    if how == 4:
        return g.raw("neg", g.raw("dot", y, x))
    if how == 5:
        return g.raw("sum", g.raw("mul", x, y))
    return g.raw("sum", g.raw("pow", g.raw("sub", x, y), attrs=(2,)))


@st.composite
def cases(draw, kinds: tuple[str, ...], max_depth: int = 4, sizes=(1, 9), long=(250, 300)) -> Case:
    """Fuzz cases: reductions of one of ``kinds``, formulas of depth up to ``max_depth``, N and M
    in ``sizes``, and sometimes a reduced axis of a length in ``long`` (several tiles)."""
    variables: list = []
    g = Generator(draw, variables)
    knn_kinds = tuple(k for k in kinds if k in KNN_KINDS)
    knn = bool(knn_kinds) and draw(st.integers(0, 7)) == 3
    kind = draw(st.sampled_from(knn_kinds if knn else kinds))
    spec = SPECS[kind]
    E = 1 if knn else draw(st.integers(1, 3))
    # depth 1 when shrinking (draw 0), mostly deep when generating (Hypothesis favours the low end)
    depth = min(max_depth, (1, 2, 3, 3, 4, 4, 4, 5, 5, 5)[draw(st.integers(0, 9))])
    weighted = spec.weight == "required" or (spec.weight == "optional" and draw(st.booleans()))
    fdim = E if not weighted or draw(st.booleans()) else 1
    formula = knn_formula(draw, g) if knn else g.formula(depth, fdim)
    weight = None
    if weighted:
        weight = g.formula(draw(st.integers(0, 2)), E)
        if kind == "lse":  # log sum_j w_j exp F_j: positive weights
            weight = g.positive(weight)
    if not variables:  # a formula of constants only: give the call an argument all the same
        g.new_var(1)
    over = draw(st.sampled_from((1, 0)))
    lo, hi = sizes
    N, M = draw(st.integers(lo, hi)), draw(st.integers(lo, hi))
    if draw(st.integers(0, 9)) == 5:  # sometimes a long reduced axis: several tiles
        if over == 1:
            M = draw(st.integers(*long))
        else:
            N = draw(st.integers(*long))
    nred = M if over == 1 else N
    K = draw(st.integers(1, min(nred, 5))) if spec.k else 1
    batch = draw(st.sampled_from(BATCHES))
    nodes = [e.op for e in formula.walk()] + ([e.op for e in weight.walk()] if weight else [])
    continuous = not DISCONTINUOUS.intersection(nodes)
    dtype = torch.float32 if continuous and draw(st.integers(0, 5)) in (2, 3) else torch.float64
    simplify = draw(st.integers(0, 5)) != 2  # mostly as the front end builds formulas; sometimes raw
    seed = draw(st.integers(0, 2**31 - 1))
    ties = draw(st.integers(0, 7)) == 3
    return Case(formula, weight, variables, kind, K, over, N, M, batch, dtype, simplify, seed, ties)


# --- comparisons ---------------------------------------------------------------------------------

#: normwise tolerances of values against the float64 references, and of float64 gradients
TOL_VALUE = {torch.float64: 1e-9, torch.float32: 2e-4}
TOL_GRAD = 1e-7
#: the smallest gradient scale: a gradient that is 0 mathematically comes out as rounding errors of
#: terms of size ~LIMIT (ssmw of a constant weight: 1e-17 in torch, 0 here)
GRAD_FLOOR = 1e-3


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str, scale: float = 0.0) -> None:
    """Equal shapes, nan and infinite entries where the reference has them, and
    ``max |out - ref| <= tol * max(max |ref|, scale)`` on the finite entries."""
    out, ref = out.detach().double(), ref.detach().double()
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)}, expected {tuple(ref.shape)}"
    bad = torch.isnan(out) != torch.isnan(ref)
    assert not bad.any(), f"{what}: nan at {bad.nonzero()[:5].tolist()}: got {out[bad][:5]}, expected {ref[bad][:5]}"
    inf = torch.isinf(ref) | torch.isinf(out)
    assert torch.equal(out[inf], ref[inf]), f"{what}: infinite entries differ: got {out[inf]}, expected {ref[inf]}"
    fin = torch.isfinite(ref)
    if fin.any():
        s = max(float(ref[fin].abs().max()), scale, 1e-6)
        diff = (out[fin] - ref[fin]).abs()
        err = float(diff.max()) / s
        if err > tol:
            k = int(diff.argmax())
            pos = fin.nonzero()[k].tolist()
            raise AssertionError(f"{what}: relative error {err:.3e} > {tol:.1e} (scale {s:.3e}); worst at "
                                 f"{pos}: got {float(out[fin][k])!r}, expected {float(ref[fin][k])!r}")


def check_indices(case: Case, idx: torch.Tensor, F: torch.Tensor, values: torch.Tensor, tol: float, what: str):
    """Indices in range (distinct per row for K-selections) and selecting the given values."""
    nred = case.M if case.over == 1 else case.N
    assert idx.dtype == torch.int64 and not idx.requires_grad, f"{what}: indices {idx.dtype}"
    assert int(idx.min()) >= 0 and int(idx.max()) < nred, f"{what}: indices out of [0, {nred})"
    if SPECS[case.kind].k:
        srt = idx.sort(-2).values
        assert not (srt[..., 1:, :] == srt[..., :-1, :]).any(), f"{what}: repeated indices in a K-list"
    assert_close(case.gather(F, idx), values, tol, f"{what}: F at the returned indices vs the selected values",
                 scale=float(F.abs().max()))


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
    if not out.requires_grad:
        return [torch.zeros_like(a) for a in inputs]
    gs = torch.autograd.grad((out * g).sum(), inputs, allow_unused=True)
    return [torch.zeros_like(a) if x is None else x for x, a in zip(gs, inputs)]


@contextlib.contextmanager
def small_reference_tiles(elements: int = 64):
    """Several i- and j-tiles in the reference backend: its streaming folds are exercised too."""
    saved = B._REFERENCE.tile_elements
    B._REFERENCE.tile_elements = elements
    try:
        yield
    finally:
        B._REFERENCE.tile_elements = saved


def run_backend(case: Case, data: list[torch.Tensor], backend: str, grad: bool):
    """Outputs of the case on one backend (values and/or indices), and the float64 gradients of its
    values against a random cotangent, with the dense reference of those gradients.

    Returns ``(outs, grads, dense_grads)`` (gradients None when not computed).
    """
    spec = SPECS[case.kind]
    args = [t.to(case.dtype, copy=True).requires_grad_(grad) for t in data]
    outs = case.call(args, backend)
    if not (grad and spec.differentiable):
        return outs, None, None
    value = outs[spec.outputs.index("value")]
    g = torch.randn(value.shape, generator=torch.Generator().manual_seed(case.seed + 1), dtype=value.dtype)
    ours = _grads(value, args, g)
    # the dense reference, on fresh leaves
    leaves = [t.clone().requires_grad_(True) for t in data]
    Fd, Wd = case.dense_F(leaves)
    if spec.selection:  # through the backend's own indices (any of tied candidates is right)
        if INDEX in spec.outputs:
            idx = outs[spec.outputs.index(INDEX)]
        else:
            with torch.no_grad():
                idx = case.call([t.to(case.dtype) for t in data], backend, kind=spec.run)[1]
        ref_value = case.gather(Fd, idx)
    else:
        ref_value = case.dense_reduce(Fd, Wd)
    return outs, ours, _grads(ref_value, leaves, g)


def check_case(case: Case, backend: str) -> None:
    """Run the case on ``backend`` and on the reference backend, and compare both with the dense
    float64 evaluation (and with each other): values, indices, float64 gradients."""
    spec = SPECS[case.kind]
    data = case.data()
    F, W = case.dense_F(data)
    ref = case.dense_reduce(F, W)
    tol = TOL_VALUE[case.dtype]
    scale = max(float(F.abs().max()), 0.0 if W is None else float(W.abs().max()))
    grad = case.dtype == torch.float64
    results = {backend: run_backend(case, data, backend, grad)}
    with small_reference_tiles():
        results["reference"] = run_backend(case, data, "reference", grad)
    for name, (outs, grads, dense_grads) in results.items():
        assert len(outs) == len(spec.outputs), f"{name}: {len(outs)} outputs for {spec.outputs}"
        for kind, out in zip(spec.outputs, outs):
            if kind == "value":
                assert out.dtype == case.dtype, f"{name}: values of dtype {out.dtype}"
                assert_close(out, ref, tol, f"{name} {case.kind} vs dense float64", scale)
            else:
                check_indices(case, out, F, case.selected_values(F), tol, f"{name} {case.kind} indices")
        if grads is not None:
            gscale = max([GRAD_FLOOR] + [float(x.abs().max()) for x in dense_grads])
            for k, (go, gd) in enumerate(zip(grads, dense_grads)):
                label = f"V{k}{CAT_NAMES[case.variables[k].attrs[1]]}"
                assert_close(go, gd, TOL_GRAD, f"{name} {case.kind} d/d{label} vs dense autograd", gscale)
    (outs, grads, dense_grads), (ref_outs, ref_grads, _) = results[backend], results["reference"]
    for kind, out, r in zip(spec.outputs, outs, ref_outs):
        if kind == "value":
            assert_close(out, r, tol, f"{backend} {case.kind} vs the reference backend", scale)
    if grads is not None and not spec.selection:  # selections: each through its own indices (ties)
        gscale = max([GRAD_FLOOR] + [float(x.abs().max()) for x in dense_grads])
        for k, (go, gr) in enumerate(zip(grads, ref_grads)):
            assert_close(go, gr, TOL_GRAD, f"{backend} {case.kind} d/dV{k} vs the reference backend", gscale)


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fuzz_cache(tmp_path_factory) -> str:
    """One kernel cache folder for the whole session."""
    return str(tmp_path_factory.mktemp("lazygeom-fuzz"))


def test_generator_knows_every_op():
    """A new op must be taught to the generator (its bounds, its arguments' dimensions)."""
    ops = set(all_ops()) - {"var", "const"}
    assert ops == GENERATED_OPS, f"missing: {sorted(ops - GENERATED_OPS)}; stale: {sorted(GENERATED_OPS - ops)}"


@pytest.mark.skipif(not CpuBackend.available(), reason="no C++ compiler")
@pytest.mark.parametrize("run", list(GROUPS))
@_settings(CPU_EXAMPLES)
@given(data=st.data())
def test_cpu_fuzz(run, data, fuzz_cache):
    # the CPU's LSE tiles hold 256 scores: long axes of 250-300
    case = data.draw(cases(GROUPS[run], max_depth=5), label="case")
    note(case.describe())
    with lazygeom.config(cache_dir=fuzz_cache):
        check_case(case, "cpu")


@contextlib.contextmanager
def triton_mode():
    """What ``triton_testing.triton_mode`` does around a test: the interpreter, 16 x 16 tiles."""
    saved = os.environ.get("TRITON_INTERPRET")
    blocks = B._TRITON.block_i, B._TRITON.block_j
    if triton_testing.INTERPRET:
        os.environ["TRITON_INTERPRET"] = "1"
    B._TRITON.block_i = B._TRITON.block_j = 16
    try:
        # the interpreter evaluates masked-out lanes too (log(0), 0/0...), and its reductions skip
        # their nan with NumPy's nan-functions, which warn about all-nan (fully masked) slices
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            yield
    finally:
        B._TRITON.block_i, B._TRITON.block_j = blocks
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


@pytest.mark.skipif(triton_testing is None, reason=f"triton: {_TRITON_SKIP}")
@pytest.mark.parametrize("run", list(GROUPS))
@_settings(TRITON_EXAMPLES)
@given(data=st.data())
def test_triton_fuzz(run, data, fuzz_cache):
    case = data.draw(cases(GROUPS[run], max_depth=4, sizes=(1, 20), long=(33, 70)), label="case")  # 16 x 16 tiles
    note(case.describe())
    with lazygeom.config(cache_dir=fuzz_cache), triton_mode():
        check_case(case, "triton")
