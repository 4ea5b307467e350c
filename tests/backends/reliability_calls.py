"""The calls of ``test_reliability.py``, imported by its subprocesses too.

A Gaussian sum, a LogSumExp and a K-min (generated kernels), a kNN search at D = 16 (the fused
kernel) and the plan marginals pass, on data from a seed.
"""

from __future__ import annotations

import math

import torch

from lazygeom import Vi, Vj
from lazygeom.backends.base import PairBlocks
from lazygeom.backends.cpu import marginals


def data(n: int, m: int, D: int, seed: int):
    """Points x (n, D), y (m, D) in the unit cube, weights a (n,), b (m, 2) in [0.1, 1.1]."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, D, generator=g), torch.rand(m, D, generator=g)
    return x, y, torch.rand(n, generator=g) + 0.1, torch.rand(m, 2, generator=g) + 0.1


def gauss(n: int, m: int, seed: int = 0, backend: str = "cpu"):
    x, y, _, b = data(n, m, 3, seed)
    return ((-Vi(x).sqdist(Vj(y)) * 8).exp() * Vj(b)).sum(dim=1, backend=backend)


def lse(n: int, m: int, seed: int = 0, backend: str = "cpu"):
    x, y, _, _ = data(n, m, 2, seed)
    return (-Vi(x).sqdist(Vj(y)) * 20).logsumexp(dim=1, backend=backend)


def kmin(n: int, m: int, seed: int = 0, backend: str = "cpu"):
    x, y, _, _ = data(n, m, 3, seed)
    return Vi(x).sqdist(Vj(y)).Kmin_argKmin(4, dim=1, backend=backend)


def knn(n: int, m: int, seed: int = 0, backend: str = "cpu"):
    """The fused kNN kernel (D >= 16)."""
    x, y, _, _ = data(n, m, 16, seed)
    return Vi(x).sqdist(Vj(y)).Kmin_argKmin(5, dim=1, backend=backend)


def _cuts(n: int, size: int) -> torch.Tensor:
    return torch.tensor([[s, min(n, s + size)] for s in range(0, n, size)])


def plan(n: int, m: int, seed: int = 0, mode: int = 1, grad: str = "none"):
    """Plan marginals: row clusters of 50 rows visit every column node of 70 columns; mode 2, a
    self-interaction of x: clusters of 60 rows that are also the nodes, the pairs I <= J."""
    x, y, a, b = data(n, m, 2, seed)
    if mode == 2:
        y, b = x, torch.stack([a, a], 1)
        rows = spans = _cuts(n, 60)
        k = rows.shape[0]
        nodes = torch.cat([torch.arange(c, k) for c in range(k)])
        slices = torch.arange(k, 0, -1).cumsum(0)
    else:
        rows, spans = _cuts(n, 50), _cuts(m, 70)
        k = spans.shape[0]
        nodes = torch.arange(k).repeat(rows.shape[0])
        slices = torch.arange(1, rows.shape[0] + 1) * k
    lo = torch.stack([y[s:e].min(0).values for s, e in spans.tolist()])
    hi = torch.stack([y[s:e].max(0).values for s, e in spans.tolist()])
    blocks = PairBlocks(rows, slices, nodes, spans, lo, hi)
    eps = 0.05
    u, v = 0.01 * x[:, 0], 0.01 * y[:, 1]
    return marginals.plan_marginals(blocks, x, u / eps, a, y, v / eps, b[:, 1], 2, eps, -math.inf, mode, grad)
