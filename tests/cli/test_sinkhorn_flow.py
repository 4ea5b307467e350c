"""The gradient-flow part of ``lazygeom demo`` (lazygeom.cli.sinkhorn_flow)."""

from __future__ import annotations

import sys

import torch

from lazygeom.cli.sinkhorn_flow import crescent, heart, sinkhorn_flow_part


def test_shapes_are_sampled_where_documented():
    g = torch.Generator().manual_seed(0)
    c, h = crescent(500, g), heart(500, g)
    assert c.shape == h.shape == (500, 2)
    assert 0.04 <= float(c[:, 0].min()) and float(c[:, 0].max()) <= 0.46
    assert 0.54 <= float(h[:, 0].min()) and float(h[:, 0].max()) <= 0.96
    # the crescent's hollow: nothing inside the removed disk
    assert not (((c - torch.tensor([0.25 + 0.2 * 0.45, 0.5])) ** 2).sum(1) < (0.2 * 0.8) ** 2).any()


def test_flow_reaches_the_target_and_saves_a_figure(tmp_path):
    out = []
    path = tmp_path / "flow.png"
    res = sinkhorn_flow_part(n_points=120, steps=10, lr=0.5, figure=str(path), say=out.append)
    assert res.ok and res.losses[-1] < 0.05 * res.losses[0]
    assert res.solver == "tensorized" and res.engine == "torch"  # 120 x 120 <= TENSORIZED_MAX_ENTRIES
    assert len(res.losses) == 11 and len(res.step_seconds) == 10
    text = "\n".join(out)
    assert "ms per step" in text and "OK" in text
    if res.figure is not None:  # matplotlib is an optional dependency
        assert path.exists() and path.stat().st_size > 10_000


def test_flow_without_matplotlib_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import raises ImportError
    out = []
    res = sinkhorn_flow_part(n_points=50, steps=2, lr=0.5, say=out.append)
    assert res.figure is None
    assert any("matplotlib is not installed" in line for line in out)
