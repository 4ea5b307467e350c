"""Property tests (hypothesis): invariances of the Sinkhorn divergence and the other losses."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazygeom.ot import SamplesLoss

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def measures(draw, max_n=10):
    """Two random weighted clouds in 1..3D (seeded from hypothesis, float64)."""
    seed = draw(st.integers(0, 2**31 - 1))
    n, m, d = draw(st.integers(1, max_n)), draw(st.integers(1, max_n)), draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    y = torch.randn(m, d, generator=g, dtype=torch.float64) * scale + 0.3
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return a / a.sum(), x, b / b.sum(), y


losses = st.sampled_from([
    dict(loss="sinkhorn", p=2), dict(loss="sinkhorn", p=1), dict(loss="sinkhorn", p=2, reach=0.5),
    dict(loss="sinkhorn", p=2, debias=False), dict(loss="hausdorff", p=2), dict(loss="energy"),
    dict(loss="gaussian"), dict(loss="laplacian"),
])


@SETTINGS
@given(m=measures(), kw=losses, blur=st.sampled_from([0.05, 0.3, 1.0]), data=st.data())
def test_permutation_invariance(m, kw, blur, data):
    a, x, b, y = m
    p = torch.randperm(len(a), generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    loss = SamplesLoss(blur=blur, **kw)
    assert float(loss(a[p], x[p], b, y)) == pytest.approx(float(loss(a, x, b, y)), rel=1e-9, abs=1e-12)


@SETTINGS
@given(m=measures(), kw=losses, blur=st.sampled_from([0.05, 0.3, 1.0]))
def test_symmetry(m, kw, blur):
    a, x, b, y = m
    loss = SamplesLoss(blur=blur, **kw)
    assert float(loss(a, x, b, y)) == pytest.approx(float(loss(b, y, a, x)), rel=1e-9, abs=1e-12)


@SETTINGS
@given(m=measures(), p=st.sampled_from([1, 2]), blur=st.sampled_from([0.05, 0.3, 1.0]),
       shift=st.floats(-10, 10), backend=st.sampled_from(["tensorized", "online"]))
def test_translation_invariance_of_the_debiased_divergence(m, p, blur, shift, backend):
    """S(α + t, β + t) = S(α, β): the cost depends on x − y only, and so does the schedule."""
    a, x, b, y = m
    t = torch.full((x.shape[1],), shift, dtype=torch.float64)
    loss = SamplesLoss(p=p, blur=blur, backend=backend)
    S = float(loss(a, x, b, y))
    assert float(loss(a, x + t, b, y + t)) == pytest.approx(S, rel=1e-7, abs=1e-10)


@SETTINGS
@given(m=measures(), kw=losses)
def test_nonnegative_and_zero_on_the_diagonal(m, kw):
    a, x, b, y = m
    loss = SamplesLoss(blur=0.2, **kw)
    if kw.get("debias", True):
        assert float(loss(a, x, b, y)) >= -1e-10
        assert abs(float(loss(a, x, a, x))) < 1e-10
