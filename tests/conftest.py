"""Shared fixtures of the engine tests: every reduction test runs on every available backend."""

from __future__ import annotations

import zlib

import pytest
import torch

import lazygeom.backends


def pytest_configure(config):
    config.addinivalue_line("markers", "default_tiles: run with the backend's own tile sizes (large inputs)")


@pytest.fixture(params=lazygeom.backends.available_backends())
def backend(request) -> str:
    """The name of a backend that can run here; passed as ``backend=`` to every reduction."""
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def rng(request) -> torch.Generator:
    """A generator seeded from the test's id: fresh data per test, reproducible per test."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g
