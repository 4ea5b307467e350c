"""Fixtures of the optimal-transport tests (helpers are in ot_helpers.py)."""

from __future__ import annotations

import zlib

import pytest
import torch

from ot_helpers import SOLVERS



@pytest.fixture(autouse=True)
def one_thread():
    """Run on one thread. These are correctness tests of small problems: on a busy 2-core machine
    two OpenMP threads can make a 300 x 300 logsumexp 80x slower, and results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gen(request) -> torch.Generator:
    """A generator seeded from the test id: fresh data per test, reproducible per test."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g


@pytest.fixture(params=SOLVERS)
def solver(request) -> str:
    """An OT backend: dense torch or LazyTensor reductions."""
    return request.param


