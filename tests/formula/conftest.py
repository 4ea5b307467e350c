"""Fixtures of the formula-layer tests (pure IR plus the reference backend, no compiler)."""

from __future__ import annotations

import zlib

import pytest
import torch


@pytest.fixture
def gen(request) -> torch.Generator:
    """A torch generator seeded from the test id: fresh data per test, reproducible per test."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g
