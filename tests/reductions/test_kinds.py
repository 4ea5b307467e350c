"""The registry of reduction kinds (``lazygeom.reductions.kinds``) and the per-kind tables built on it."""

from __future__ import annotations

import math

import pytest
import torch

from lazygeom.backends import Call, CpuBackend, ReferenceBackend, TritonBackend
from lazygeom.backends import reference
from lazygeom.backends.cpu import kernel as cpu_kernel
from lazygeom.backends.triton import kernel as triton_kernel
from lazygeom.formula import CAT_I, CAT_J, var
from lazygeom.reductions import (INDEX, KINDS, OUTPUTS, RUN_KINDS, SELECTED, SELECTION, SPECS, SUM_LIKE,
                                 SUM_LIKE_TARGETS, VALUE, KindTable, Reduction, kind_spec, selection_kind)

#: the tables the registry replaced, as they were written out before it
OLD_KINDS = ("sum", "lse", "ssmw", "min", "max", "argmin", "argmax", "min_argmin", "max_argmax",
             "kmin", "argkmin", "kmin_argkmin")
OLD_OUTPUTS = {
    "sum": ("value",), "lse": ("value",), "ssmw": ("value",),
    "min": ("value",), "max": ("value",), "argmin": ("index",), "argmax": ("index",),
    "min_argmin": ("value", "index"), "max_argmax": ("value", "index"),
    "kmin": ("value",), "argkmin": ("index",), "kmin_argkmin": ("value", "index"),
}
OLD_SELECTION = {
    "min": ("min", False), "argmin": ("min", False), "min_argmin": ("min", False),
    "max": ("max", False), "argmax": ("max", False), "max_argmax": ("max", False),
    "kmin": ("min", True), "argkmin": ("min", True), "kmin_argkmin": ("min", True),
}
OLD_PAIR = {"min": "min_argmin", "argmin": "min_argmin", "min_argmin": "min_argmin",
            "max": "max_argmax", "argmax": "max_argmax", "max_argmax": "max_argmax",
            "kmin": "kmin_argkmin", "argkmin": "kmin_argkmin", "kmin_argkmin": "kmin_argkmin"}


def test_the_derived_tables_are_the_old_ones():
    assert KINDS == OLD_KINDS
    assert dict(OUTPUTS) == OLD_OUTPUTS
    assert dict(SELECTION) == OLD_SELECTION
    assert {k: s.run for k, s in SPECS.items() if s.selection} == OLD_PAIR
    assert RUN_KINDS == ("sum", "lse", "ssmw", "min_argmin", "max_argmax", "kmin_argkmin")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_consistent_spec(kind):
    spec = kind_spec(kind)
    assert spec.name == kind and spec is SPECS[kind]
    assert spec.outputs and set(spec.outputs) <= {VALUE, INDEX}
    run = SPECS[spec.run]
    assert run.is_run, "a kind runs through a kind that runs itself"
    assert (run.extremum, run.k, run.grad) == (spec.extremum, spec.k, spec.grad)
    assert set(spec.outputs) <= set(run.outputs)
    assert spec.grad == (SELECTED if spec.selection else SUM_LIKE)
    if spec.selection:
        assert spec.empty == (math.inf if spec.extremum == "min" else -math.inf)
        assert spec.is_run == (spec.outputs == (VALUE, INDEX))
        assert selection_kind(spec.extremum, spec.k) is run
    else:
        assert spec.is_run and spec.outputs == (VALUE,)
    assert spec.differentiable == (VALUE in spec.outputs)
    assert spec.weight in ("none", "optional", "required")


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown reduction 'median'"):
        kind_spec("median")
    with pytest.raises(ValueError, match="unknown reduction"):
        Reduction("median", var(0, CAT_I, 1))
    with pytest.raises(ValueError, match="no K-max"):
        selection_kind("max", True)


def test_weights_follow_the_spec():
    f, w = var(0, CAT_I, 1), var(1, CAT_J, 1)
    for kind, spec in SPECS.items():
        if spec.weight == "required":
            with pytest.raises(ValueError, match="needs a weight"):
                Reduction(kind, f)
        else:
            Reduction(kind, f)
        if spec.weight == "none":
            with pytest.raises(ValueError, match="takes no weight"):
                Reduction(kind, f, weight=w)
        else:
            assert Reduction(kind, f, weight=w).formulas == (f, w)


def test_a_kind_table_takes_run_kinds_only():
    with pytest.raises(ValueError, match="not kinds a backend runs"):
        KindTable("test", {"min": 1})
    with pytest.raises(ValueError, match="not kinds a backend runs"):
        KindTable("test", {"median": 1})
    table = KindTable("the test backend", {"sum": 1})
    assert dict(table) == {"sum": 1} and table.hook("sum") == 1
    with pytest.raises(NotImplementedError, match="the test backend does not run 'lse'"):
        table.hook("lse")


@pytest.mark.parametrize("table", [cpu_kernel.TEMPLATES, triton_kernel.TEMPLATES, reference._FOLDS],
                         ids=["cpu", "triton", "reference"])
def test_every_backend_template_covers_every_run_kind(table):
    assert set(table) == set(RUN_KINDS)


def test_every_sum_like_kind_has_a_gradient_target():
    assert set(SUM_LIKE_TARGETS) == {k for k, s in SPECS.items() if s.grad == SUM_LIKE}


@pytest.mark.parametrize("kind", KINDS)
def test_the_generators_refuse_the_kinds_that_run_through_another(kind):
    red = Reduction(kind, var(0, CAT_I, 1), weight=var(1, CAT_J, 1) if SPECS[kind].weight == "required" else None)
    cats, dims = (CAT_I, CAT_J), (1, 1)
    for generate in (cpu_kernel.generate, triton_kernel.generate):
        if SPECS[kind].is_run:
            assert "lg_kernel" in generate(red, cats, dims)
        else:
            with pytest.raises(NotImplementedError, match=f"does not run '{kind}'"):
                generate(red, cats, dims)


@pytest.mark.parametrize("kind", KINDS)
def test_backends_agree_on_the_kinds_they_run(kind, monkeypatch):
    """The compiled backends take the run kinds (genred hands them nothing else); the reference
    backend takes every kind."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # only asks; runs nothing
    weight = var(1, CAT_J, 1) if SPECS[kind].weight == "required" else None
    call = Call(Reduction(kind, var(0, CAT_I, 1), weight=weight), (CAT_I, CAT_J), 3, 4)
    args = [torch.zeros(3, 1), torch.zeros(4, 1)]
    assert ReferenceBackend().supports(call, args)
    assert CpuBackend().supports(call, args) == SPECS[kind].is_run
    reason = TritonBackend().why_not(call, args)
    assert (reason is None) == SPECS[kind].is_run, reason


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_reduction_gives_the_registered_value(kind):
    """Rows outside every block-sparse range: the spec's empty value, and index 0."""
    weight = var(1, CAT_J, 1) if SPECS[kind].weight == "required" else None
    red = Reduction(kind, var(0, CAT_I, 1), weight=weight, K=2)
    i64 = torch.int64
    # one cluster of rows 0-1 over columns 0-3; row 2 in no cluster
    ranges = (torch.tensor([[0, 2]], dtype=i64), torch.tensor([1], dtype=i64), torch.tensor([[0, 4]], dtype=i64),
              torch.tensor([[0, 4]], dtype=i64), torch.tensor([1], dtype=i64), torch.tensor([[0, 2]], dtype=i64))
    call = Call(red, (CAT_I, CAT_J), 3, 4, (), ranges)
    outs = ReferenceBackend().run(call, [torch.ones(3, 1, dtype=torch.float64), torch.ones(4, 1, dtype=torch.float64)])
    assert len(outs) == len(SPECS[kind].outputs)
    for out, what in zip(outs, SPECS[kind].outputs):
        empty = out[2]
        if what == INDEX:
            assert (empty == 0).all()
        elif math.isnan(SPECS[kind].empty):
            assert empty.isnan().all()
        else:
            assert (empty == SPECS[kind].empty).all()
