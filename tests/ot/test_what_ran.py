"""Results record what ran: the solver ("auto"'s choice or the one asked for), the ε-schedule, the
engine backend of the reductions, the one-pass steps; SamplesLoss keeps its last call's record."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import lazygeom
from lazygeom.backends import available_backends
from lazygeom.ot import SamplesLoss, SinkhornOptions, sinkhorn
from lazygeom.ot._inputs import parse_measures
from lazygeom.ot.losses.registry import LOSSES
from lazygeom.ot.solve import solve_measures
from lazygeom.ot.solver.softmin import TENSORIZED_MAX_ENTRIES

from ot_helpers import cloud

#: the engine of LazyTensor reductions on CPU tensors under the default configuration
COMPILED = "cpu" if "cpu" in available_backends() else "reference"


def sizes_around_the_dense_limit() -> tuple[int, int]:
    """N x N just at and just above TENSORIZED_MAX_ENTRIES cost entries."""
    n = math.isqrt(TENSORIZED_MAX_ENTRIES)
    return n, n + 1


def test_auto_picks_tensorized_for_tiny_and_online_for_medium_problems(gen):
    small, medium = sizes_around_the_dense_limit()
    assert small * small <= TENSORIZED_MAX_ENTRIES < medium * medium
    tiny = sinkhorn(cloud(gen, small, 3), cloud(gen, small, 3), blur=0.3)
    assert (tiny.solver, tiny.engine, tiny.one_pass_steps) == ("tensorized", "torch", 0)
    res = sinkhorn(cloud(gen, medium, 3), cloud(gen, medium, 3), blur=0.3)
    assert res.solver == "online" and res.engine == COMPILED
    assert res.eps_history[-1] == pytest.approx(0.09) and res.n_iter == len(res.eps_history)
    # a batch counts: B·N·M entries
    n = 110
    assert n * n <= TENSORIZED_MAX_ENTRIES < 3 * n * n
    assert sinkhorn(cloud(gen, n, 2), cloud(gen, n, 2), blur=0.3).solver == "tensorized"
    assert sinkhorn(cloud(gen, 3, n, 2), cloud(gen, 3, n, 2), blur=0.3).solver == "online"


@pytest.mark.parametrize("backend", ["tensorized", "online"])
def test_explicit_requests_are_recorded(gen, backend):
    x, y = cloud(gen, 20, 2), cloud(gen, 30, 2)
    assert sinkhorn(x, y, backend=backend).solver == backend
    small, medium = sizes_around_the_dense_limit()
    xm, ym = cloud(gen, medium, 2), cloud(gen, medium, 2)
    for name in LOSSES:
        loss = SamplesLoss(name, backend=backend)
        loss(x, y)
        assert loss.last_run.solver == backend and loss.last_run.loss == name
        assert loss.last_run.engine == ("torch" if backend == "tensorized" else COMPILED)
    loss = SamplesLoss(backend=backend)
    loss(xm, ym)  # above the dense limit: still the solver asked for
    assert loss.last_run.solver == backend and loss.last_run.sizes == (1, medium, medium)


def test_one_pass_steps_and_the_configured_engine(gen):
    x, y = cloud(gen, 40, 2), cloud(gen, 50, 2)
    res = sinkhorn(x, y, backend="online", blur=0.1, scaling=0.5, diameter=1.6)
    # per step one update of each pair (xy, xx, yy), the final ones included, when the pass applies
    steps = 3 * (res.n_iter - 1 + 1)
    assert res.one_pass_steps == (steps if COMPILED == "cpu" else 0)
    with lazygeom.config(backend="reference"):
        ref = sinkhorn(x, y, backend="online", blur=0.1, scaling=0.5, diameter=1.6)
    assert ref.engine == "reference" and ref.one_pass_steps == 0
    torch.testing.assert_close(ref.f, res.f)  # same values through either engine
    m = parse_measures((x, y), "test")
    opt = SinkhornOptions(backend="online", blur=0.1, diameter=1.6, engine_backend="reference")
    assert solve_measures(m, opt).engine == "reference"


def test_samples_loss_records_its_last_call(gen):
    loss = SamplesLoss(blur=0.2, scaling=0.5, diameter=1.6)
    assert loss.last_run is None
    x, y = cloud(gen, 10, 2), cloud(gen, 12, 2)
    S = loss(x, y)
    assert isinstance(S, torch.Tensor) and S.shape == ()  # the GeomLoss API: a tensor
    run = loss.last_run
    res = sinkhorn(x, y, blur=0.2, scaling=0.5, diameter=1.6)
    assert (run.loss, run.solver, run.engine, run.sizes) == ("sinkhorn", "tensorized", "torch", (1, 10, 12))
    assert run.eps_history == res.eps_history and run.residual == res.residual and run.n_iter == res.n_iter
    assert run.seconds >= 0
    kernel = SamplesLoss("gaussian", blur=0.5)
    kernel(x, y)
    assert kernel.last_run.eps_history == () and kernel.last_run.residual is None and kernel.last_run.n_iter == 0


def test_the_loss_table_names_samples_loss_arguments():
    params = set(inspect.signature(SamplesLoss).parameters)
    assert set(LOSSES) == {"sinkhorn", "hausdorff", "energy", "gaussian", "laplacian"}
    for name, kind in LOSSES.items():
        assert set(kind.reads) <= params, name
        assert ("multiscale" in kind.solvers) == (name == "sinkhorn")
        assert ("kernel" in kind.reads) == (name in ("energy", "gaussian", "laplacian"))


def test_a_multiscale_request_for_another_loss_is_refused():
    for name in LOSSES:
        if name != "sinkhorn":
            with pytest.raises(ValueError, match="multiscale"):
                SamplesLoss(name, backend="multiscale")
