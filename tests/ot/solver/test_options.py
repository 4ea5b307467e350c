"""SinkhornOptions: one checked, immutable value; errors name the argument; the entry points build it."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from lazygeom.ot import SamplesLoss, SinkhornOptions, barycentric_map, sinkhorn, transport_plan
from lazygeom.ot.solver.schedules import epsilon_schedule

from ot_helpers import cloud


@pytest.mark.parametrize("kwargs, name", [
    (dict(p=0), "p"),
    (dict(p=3), "p"),
    (dict(p="2"), "p"),
    (dict(blur=0), "blur"),
    (dict(blur=-0.1), "blur"),
    (dict(blur=float("inf")), "blur"),
    (dict(blur="0.05"), "blur"),
    (dict(reach=0), "reach"),
    (dict(reach=-1.0), "reach"),
    (dict(diameter=-1.0), "diameter"),
    (dict(diameter=float("nan")), "diameter"),
    (dict(scaling=0), "scaling"),
    (dict(scaling=1), "scaling"),
    (dict(scaling=1.5), "scaling"),
    (dict(backend="keops"), "backend"),
    (dict(backend="multiscale", p=2, cost=lambda x, y: ((x - y) ** 2).sum(-1)), "multiscale"),
    (dict(extra_iterations=-1), "extra_iterations"),
    (dict(extra_iterations=2.5), "extra_iterations"),
    (dict(truncate=0), "truncate"),
    (dict(truncate="5"), "truncate"),
    (dict(truncate=True), "truncate"),
    (dict(cluster_scale=-1.0), "cluster_scale"),
    (dict(cluster_scale=0), "cluster_scale"),
    (dict(labels=torch.zeros(3, dtype=torch.int64)), "labels"),
    (dict(labels=(torch.zeros(3), torch.zeros(3)), backend="online"), "labels"),
    (dict(engine_backend="keops"), "engine_backend"),
])
def test_bad_values_raise_errors_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SinkhornOptions(**kwargs)


def test_a_formula_string_cost_is_a_type_error():
    with pytest.raises(TypeError, match="cost"):
        SinkhornOptions(cost="SqDist(X,Y)")
    with pytest.raises(TypeError, match="cost"):
        SinkhornOptions(cost=3.0)


def test_defaults_are_the_functions_defaults():
    """The dataclass's defaults are sinkhorn()'s, so that a call without options is the default options."""
    params = inspect.signature(sinkhorn).parameters
    for field in dataclasses.fields(SinkhornOptions):
        if field.name in params:
            assert field.default == params[field.name].default, field.name
    assert {f.name for f in dataclasses.fields(SinkhornOptions)} - set(params) == {"engine_backend"}


def test_immutable_and_compared_by_value():
    o = SinkhornOptions(blur=0.1, reach=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.blur = 0.2
    assert o == SinkhornOptions(blur=0.1, reach=0.5) and hash(o) == hash(SinkhornOptions(blur=0.1, reach=0.5))
    assert o != SinkhornOptions(blur=0.1) and o != SinkhornOptions(blur=0.1, reach=0.5, debias=False)
    assert SinkhornOptions(truncate=5) == SinkhornOptions(truncate=5.0)  # numbers are stored as floats
    assert SinkhornOptions(blur=np.float32(0.5)).blur == 0.5 and isinstance(SinkhornOptions(blur=1).blur, float)
    assert len({o, SinkhornOptions(blur=0.1, reach=0.5), SinkhornOptions()}) == 2
    lab = (torch.tensor([0, 1, 1]), torch.tensor([2, 2]))
    same = (torch.tensor([0, 1, 1]), torch.tensor([2, 2]))  # other tensors, same labels
    assert SinkhornOptions(labels=lab) == SinkhornOptions(labels=list(same))
    assert SinkhornOptions(labels=lab) != SinkhornOptions(labels=(lab[0], torch.tensor([2, 3])))
    assert hash(SinkhornOptions(labels=lab)) == hash(SinkhornOptions(labels=same))
    assert SinkhornOptions() != "options"


def test_replace_checks_again():
    o = SinkhornOptions()
    o2 = o.replace(blur=0.01, backend="online")
    assert (o2.blur, o2.backend) == (0.01, "online") and o.blur == 0.05
    with pytest.raises(ValueError, match="scaling"):
        o.replace(scaling=2.0)


def test_derived_values(gen):
    o = SinkhornOptions(p=1, blur=0.1, reach=0.3, scaling=0.5, extra_iterations=3)
    assert o.eps == pytest.approx(0.1) and o.rho == pytest.approx(0.3)
    assert SinkhornOptions(blur=0.1, reach=0.3).rho == pytest.approx(0.09) and SinkhornOptions().rho is None
    assert o.ground_cost().p == 1 and SinkhornOptions(cost=lambda x, y: x).ground_cost().p is None
    assert o.multiscale_ok and not SinkhornOptions(cost=lambda x, y: x).multiscale_ok
    x, y = cloud(gen, 10, 2), cloud(gen, 12, 2)
    assert o.replace(diameter=2.0).schedule(x, y) == epsilon_schedule(1, 2.0, 0.1, 0.5) + (0.1,) * 3


def test_the_entry_points_check_through_the_options():
    x, y = torch.rand(5, 2), torch.rand(6, 2)
    for fn in (sinkhorn, transport_plan, barycentric_map):
        with pytest.raises(ValueError, match="scaling"):
            fn(x, y, scaling=1.0)
        with pytest.raises(ValueError, match="reach"):
            fn(x, y, reach=0)
    with pytest.raises(ValueError, match="truncate"):
        sinkhorn(x, y, truncate=-1)
    with pytest.raises(ValueError, match="cluster_scale"):
        SamplesLoss(cluster_scale=0.0)


def test_samples_loss_holds_one_options_value():
    """The GeomLoss attributes read the module's options; setting one replaces them, checked."""
    loss = SamplesLoss("sinkhorn", p=1, blur=0.1, reach=0.5, scaling=0.7, truncate=4, debias=False, backend="online")
    assert loss.options == SinkhornOptions(p=1, blur=0.1, reach=0.5, scaling=0.7, truncate=4, debias=False,
                                           backend="online")
    assert (loss.p, loss.blur, loss.reach, loss.scaling, loss.truncate, loss.debias, loss.backend) == \
        (1, 0.1, 0.5, 0.7, 4.0, False, "online")
    before = loss.options
    loss.blur = 0.05
    assert loss.options == before.replace(blur=0.05) and before.blur == 0.1
    with pytest.raises(ValueError, match="blur"):
        loss.blur = 0
    assert loss.blur == 0.05  # a refused value leaves the options as they were


def test_a_cost_module_is_a_submodule():
    """As when SamplesLoss stored ``self.cost``: a cost that is a torch module is registered."""

    class Cost(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x_i, y_j):
            return ((x_i - y_j) ** 2).sum(-1) * self.scale

    cost = Cost()
    loss = SamplesLoss(cost=cost)
    assert loss.cost is cost and list(loss.state_dict()) == ["cost.scale"]
    loss.cost = None
    assert loss.cost is None and list(loss.state_dict()) == []
    loss.cost = cost
    assert list(loss.parameters()) == [cost.scale]
