"""Configuration: the context manager nests and restores, the environment fills what it leaves
unset, pykeops backend names are accepted, and unknown names are rejected."""

from __future__ import annotations

import threading

import pytest
import torch

import lazygeom
from lazygeom import BackendUnavailable, Vi, Vj, get_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("LAZYGEOM_BACKEND", "LAZYGEOM_CACHE_DIR", "LAZYGEOM_VERBOSE"):
        monkeypatch.delenv(var, raising=False)


def _F():
    return (-Vi(torch.rand(4, 2, dtype=torch.float64)).sqdist(Vj(torch.rand(6, 2, dtype=torch.float64)))).exp()


def test_default_is_auto():
    assert get_config().backend == "auto"
    assert get_config().verbose is False
    assert get_config().cache_dir


def test_context_nests_and_restores():
    assert get_config().backend == "auto"
    with lazygeom.config(backend="reference") as c1:
        assert c1.backend == "reference" and get_config().backend == "reference"
        with lazygeom.config(verbose=True) as c2:
            # inner blocks change only what they name
            assert c2.backend == "reference" and c2.verbose is True
            with lazygeom.config(backend="auto"):
                assert get_config().backend == "auto"
            assert get_config().backend == "reference"
        assert get_config().verbose is False
    assert get_config().backend == "auto"


def test_context_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with lazygeom.config(backend="reference"):
            raise RuntimeError("boom")
    assert get_config().backend == "auto"


def test_context_is_thread_local():
    seen = []
    with lazygeom.config(backend="reference"):
        t = threading.Thread(target=lambda: seen.append(get_config().backend))
        t.start()
        t.join()
    assert seen == ["auto"]


def test_environment_is_used_without_context(monkeypatch, tmp_path):
    monkeypatch.setenv("LAZYGEOM_BACKEND", "reference")
    monkeypatch.setenv("LAZYGEOM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LAZYGEOM_VERBOSE", "1")
    cfg = get_config()
    assert (cfg.backend, cfg.cache_dir, cfg.verbose) == ("reference", str(tmp_path), True)
    with lazygeom.config(backend="auto"):  # a context wins over the environment
        assert get_config().backend == "auto"
    assert get_config().backend == "reference"


def test_environment_backend_reaches_reductions(monkeypatch):
    F = _F()
    ref = F.sum(dim=1, backend="reference")
    monkeypatch.setenv("LAZYGEOM_BACKEND", "GPU")
    with pytest.raises(BackendUnavailable, match="GPU"):
        F.sum(dim=1)
    with lazygeom.config(backend="reference"):
        torch.testing.assert_close(F.sum(dim=1), ref)
    # an explicit backend= wins over both
    torch.testing.assert_close(F.sum(dim=1, backend="reference"), ref)


def test_environment_unknown_backend(monkeypatch):
    monkeypatch.setenv("LAZYGEOM_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        get_config()


@pytest.mark.parametrize("alias", ["CPU", "ref"])
def test_pykeops_aliases_run(alias):
    F = _F()
    ref = F.sum(dim=1, backend="reference")
    torch.testing.assert_close(F.sum(dim=1, backend=alias), ref, rtol=1e-12, atol=0)
    with lazygeom.config(backend=alias):
        torch.testing.assert_close(F.sum(dim=1), ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("alias", ["GPU", "gpu"])
def test_gpu_alias_is_unavailable_clearly(alias):
    F = _F()
    with lazygeom.config(backend=alias):  # accepted as a name...
        with pytest.raises(BackendUnavailable, match=r"GPU.*not available.*available: \["):
            F.sum(dim=1)  # ...but there is no GPU backend to run it
    with pytest.raises(BackendUnavailable, match="GPU"):
        F.sum(dim=1, backend=alias)
    assert issubclass(BackendUnavailable, RuntimeError)


@pytest.mark.parametrize("name", ["cuda", "keops", "", "Auto"])
def test_unknown_backend_names(name):
    with pytest.raises(ValueError, match="unknown backend"):
        with lazygeom.config(backend=name):
            pass  # pragma: no cover
    assert get_config().backend == "auto"


def test_unknown_setting():
    with pytest.raises(TypeError, match=r"unknown lazygeom setting\(s\) \['tile'\]"):
        with lazygeom.config(tile=3):
            pass  # pragma: no cover


def test_available_backends_run():
    """Every advertised backend runs a reduction and agrees with the reference."""
    F = _F()
    ref = F.sum(dim=1, backend="reference")
    names = lazygeom.backends.available_backends()
    assert "reference" in names
    for name in names:
        torch.testing.assert_close(F.sum(dim=1, backend=name), ref, rtol=1e-12, atol=0)


def test_config_is_frozen():
    cfg = get_config()
    with pytest.raises(Exception):
        cfg.backend = "reference"
