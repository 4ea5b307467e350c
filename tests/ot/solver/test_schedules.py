"""The ε-schedule and the default diameter."""

from __future__ import annotations

import math

import pytest
import torch

from lazygeom.ot import epsilon_schedule, max_diameter


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("diameter,blur,scaling", [(2.0, 0.05, 0.5), (1.0, 0.01, 0.9), (3.0, 1.0, 0.7),
                                                   (1.0, 0.125, 0.5)])
def test_schedule_goes_from_diameter_to_blur(p, diameter, blur, scaling):
    eps = epsilon_schedule(p, diameter, blur, scaling)
    assert eps[0] == pytest.approx(diameter**p)
    assert eps[-1] == blur**p  # exactly
    assert all(e1 < e0 for e0, e1 in zip(eps, eps[1:])), eps  # strictly decreasing: no repeats
    ratios = [e1 / e0 for e0, e1 in zip(eps, eps[1:])]
    assert all(r >= scaling**p * (1 - 1e-12) for r in ratios)  # never a bigger step than scaling^p
    # one value per factor scaling between diameter and blur, plus the end point
    assert len(eps) == math.ceil(math.log(diameter / blur) / math.log(1 / scaling) - 1e-9) + 1


def test_schedule_of_unit_cube_example():
    eps = epsilon_schedule(2, 3**0.5, 0.05, 0.5)
    assert len(eps) == 7  # documented in the module


@pytest.mark.parametrize("diameter", [0.0, 0.01, 0.05])
def test_small_diameter_gives_one_value(diameter):
    assert epsilon_schedule(2, diameter, 0.05, 0.5) == (0.05**2,)


@pytest.mark.parametrize("kwargs", [dict(blur=0.0), dict(blur=-1.0), dict(scaling=1.0), dict(scaling=0.0),
                                    dict(diameter=float("nan")), dict(diameter=-1.0), dict(blur=float("inf"))])
def test_schedule_rejects_bad_arguments(kwargs):
    args = dict(p=2, diameter=1.0, blur=0.1, scaling=0.5) | kwargs
    with pytest.raises(ValueError):
        epsilon_schedule(**args)


def test_max_diameter_is_the_joint_bounding_box_diagonal():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.5]])
    y = torch.tensor([[0.5, 2.0], [-1.0, 1.0]])
    assert max_diameter(x, y) == pytest.approx(math.hypot(2.0, 2.0))
    assert max_diameter(x[None], y[None]) == pytest.approx(math.hypot(2.0, 2.0))  # batched
    assert max_diameter(torch.ones(1, 3), torch.ones(1, 3)) == 0.0
