"""Shared set-up of the Triton backend tests: the interpreter, fixtures, comparisons.

Import it first in a test module (``from triton_testing import ...``), and import the fixture
``triton_mode`` there so that pytest applies it.

Triton decorates its own library (``tl.sum``, ``tl.zeros``...) when ``triton.language`` is first
imported, in the mode ``TRITON_INTERPRET`` says at that moment. So this module sets the variable
*before* importing Triton (nothing in lazygeom imports it earlier: kernels are built at their
first call), restores it, and the fixture ``triton_mode`` sets it again around each test, when
the generated kernel modules are decorated. The rest of the session (the engine suite,
parametrised over ``available_backends()``) does not see the interpreter, so it does not run
its ~1500 backend tests a third time there; ``TRITON_INTERPRET=1`` in the environment makes it
do so (a few more minutes). On a machine with a CUDA device the same tests run the compiled
kernels instead (CPU tensors are copied to the GPU and back).

Tiles are 16 x 16 so that the sizes used in the tests (N, M ~ 10-70) span several row blocks and
column tiles, with ragged edges.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

#: no GPU: interpret (the CI case); with one, run the compiled kernels
INTERPRET = not torch.cuda.is_available()
if INTERPRET and "triton" not in sys.modules:
    _saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        triton = pytest.importorskip("triton")
        import triton.language  # noqa: F401, F811  (decorated now, in interpreter mode)
    finally:
        if _saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _saved
triton = pytest.importorskip("triton")
if INTERPRET and type(triton.language.zeros).__name__ != "InterpretedFunction":
    pytest.skip("triton was imported, in compiled mode, before this file could set TRITON_INTERPRET=1: "
                "run these tests with TRITON_INTERPRET=1 in the environment", allow_module_level=True)

import lazygeom  # noqa: E402  (after the interpreter set-up above)
import lazygeom.backends.policy as B  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("lazygeom-triton"))


@pytest.fixture(autouse=True)
def triton_mode(monkeypatch, cache_dir):
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(B._TRITON, "block_i", 16)
    monkeypatch.setattr(B._TRITON, "block_j", 16)
    # the interpreter evaluates masked-out lanes too (log(0), 0/0...): NumPy would warn
    with np.errstate(all="ignore"), lazygeom.config(cache_dir=cache_dir):
        yield


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double(), ref.detach().double()
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def assert_same(outs, refs, dtype):
    """Values within tolerance (non-finite entries equal), indices equal."""
    outs = outs if isinstance(outs, tuple) else (outs,)
    refs = refs if isinstance(refs, tuple) else (refs,)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == r.dtype, (o.shape, r.shape, o.dtype, r.dtype)
        if not r.is_floating_point():
            assert torch.equal(o, r)
            continue
        fin = torch.isfinite(r)
        assert torch.equal(torch.isfinite(o), fin), "non-finite entries differ"
        assert torch.equal(torch.isnan(o), torch.isnan(r)), "nan entries differ"
        assert torch.equal(o[torch.isinf(r)], r[torch.isinf(r)]), "infinite entries differ"
        if fin.any():
            assert rel_err(o[fin], r[fin]) <= TOL[dtype]


def reduce(kind: str, F, dim: int, backend: str, w=None, K: int = 3, ranges=None):
    """Run reduction ``kind`` of the LazyTensor F over axis ``dim`` (``w``: the weight of lse_w,
    the values of ssmw); returns a tuple or a tensor, as lazygeom does."""
    kw = {"dim": dim, "backend": backend}
    if ranges is not None:
        kw["ranges"] = ranges
    if kind == "sum":
        return F.sum(**kw)
    if kind in ("lse", "lse_w"):
        return F.logsumexp(weight=w if kind == "lse_w" else None, **kw)
    if kind == "ssmw":
        return F.sumsoftmaxweight(w, **kw)
    if kind in ("kmin", "argkmin", "kmin_argkmin"):
        return getattr(F, {"kmin": "Kmin", "argkmin": "argKmin", "kmin_argkmin": "Kmin_argKmin"}[kind])(K, **kw)
    return getattr(F, kind)(**kw)

