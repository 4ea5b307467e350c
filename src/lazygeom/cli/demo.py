"""What ``lazygeom demo`` runs: kNN with four metrics, and a kernel product too big for dense torch.

Every result is checked against dense PyTorch (float64) on a random subsample of rows; a failed
check makes :func:`run_demo` return False (and the command exit with a non-zero status).

The two parts are plain functions (:func:`knn_part`, :func:`kernel_part`) that take their sizes,
a seed and a ``say`` callback (``print`` by default), and return immutable result records.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..lazy.lazytensor import LazyTensor, Vi, Vj
from .machine import gb, machine_ram_bytes, peak_rss, reset_peak_rss

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoSizes:
    """Problem sizes of one demo run."""

    knn_n: int  # query points
    knn_m: int  # database points
    knn_d: int  # dimension
    k: int  # neighbours
    knn_check: int  # query rows checked densely
    kernel_n: Optional[int]  # N = M of the kernel product; None: chosen from a timed calibration run
    kernel_check: int  # rows checked densely
    kernel_d: int = 3
    kernel_budget_s: float = 40.0  # time budget of the kernel product when kernel_n is None
    ot_points: int = 2_000  # points per shape of the Sinkhorn gradient flow (lazygeom.ot.demo)
    ot_steps: int = 50  # its gradient steps (time 5 in all)


QUICK = DemoSizes(knn_n=300, knn_m=2_000, knn_d=50, k=10, knn_check=100, kernel_n=4_000, kernel_check=50,
                  ot_points=200, ot_steps=20)
#: the kernel size is picked to fit a time budget: N = M = 100,000 with a fast backend, less with the
#: pure-PyTorch reference backend (about a minute in all on 2 CPU cores)
DEFAULT = DemoSizes(knn_n=2_000, knn_m=20_000, knn_d=50, k=10, knn_check=200, kernel_n=None, kernel_check=100)
#: the kernel product at N = M = 100,000, where a dense N x M float32 matrix needs 40 GB
FULL = DemoSizes(knn_n=2_000, knn_m=20_000, knn_d=50, k=10, knn_check=200, kernel_n=100_000, kernel_check=100)


# --------------------------------------------------------------------------------------------
# part (a): k nearest neighbours with four metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A kNN metric: a lazy score to minimise, the same score densely, and the score -> distance map."""

    name: str
    formula: str
    lazy: Callable[[LazyTensor, LazyTensor], LazyTensor]
    dense: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    to_distance: Callable[[torch.Tensor], torch.Tensor]
    shown: str = "distance"  # what to_distance gives, for the printout
    data: Callable[[torch.Tensor], torch.Tensor] = lambda x: x


def _half_space(x: torch.Tensor) -> torch.Tensor:
    """Points of the upper half-space model: the last coordinate made positive."""
    x = x.clone()
    x[:, -1] = torch.exp(0.5 * x[:, -1])
    return x


def _sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, y).square()


METRICS = (
    Metric("Euclidean", "((x_i - y_j) ** 2).sum(-1)",
           lambda x, y: ((x - y) ** 2).sum(-1), _sqdist, torch.sqrt),
    Metric("Manhattan", "(x_i - y_j).abs().sum(-1)",
           lambda x, y: (x - y).abs().sum(-1), lambda x, y: torch.cdist(x, y, p=1), lambda s: s),
    Metric("cosine similarity", "-(x_i.normalize() | y_j.normalize()), i.e. argKmax of the cosine",
           lambda x, y: -(x.normalize() | y.normalize()),
           lambda x, y: -(torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T),
           lambda s: -s, shown="cosine similarity"),
    Metric("hyperbolic (upper half-space)",
           "((x_i - y_j) ** 2).sum(-1) / (x_i[-1] * y_j[-1]), monotone in d = arcosh(1 + score / 2)",
           lambda x, y: ((x - y) ** 2).sum(-1) / (x[..., -1] * y[..., -1]),
           lambda x, y: _sqdist(x, y) / (x[:, -1:] * y[:, -1:].T),
           lambda s: torch.acosh(1 + s / 2), shown="hyperbolic distance",
           data=_half_space),
)


@dataclass(frozen=True)
class KnnCheck:
    """Comparison of lazy K-nearest neighbours with dense top-K on some query rows."""

    max_value_error: float  # relative, lazy Kmin values vs dense top-K values
    max_choice_error: float  # relative: dense scores of the lazy indices vs dense top-K values
    index_agreement: float  # fraction of (query, rank) with identical indices (ties may swap)
    ok: bool


def check_knn(values: torch.Tensor, indices: torch.Tensor, dense_scores: torch.Tensor, K: int,
              rtol: float = 1e-4) -> KnnCheck:
    """Check lazy ``(values, indices)`` (rows, K) against dense scores (rows, M), float64.

    Indices are compared through their scores, so that near-ties resolved differently in float32
    do not count as errors; the exact index agreement is reported alongside.

    Args:
        values: the lazy K smallest scores of the checked rows, sorted.
        indices: their indices.
        dense_scores: the dense scores of the checked rows against every point.
        K: the number of neighbours.
        rtol: the relative tolerance of the value and choice errors.
    """
    ref_v, ref_k = dense_scores.topk(K, dim=1, largest=False, sorted=True)
    scale = ref_v.abs().amax().clamp_min(1e-30)
    chosen = dense_scores.gather(1, indices.long()).sort(dim=1).values
    value_err = ((values.double() - ref_v).abs().amax() / scale).item()
    choice_err = ((chosen - ref_v).abs().amax() / scale).item()
    agree = (indices.long() == ref_k).double().mean().item()
    ok = math.isfinite(value_err) and value_err <= rtol and choice_err <= rtol
    return KnnCheck(value_err, choice_err, agree, ok)


@dataclass(frozen=True)
class KnnResult:
    """One metric of part (a): its time and its check."""

    metric: str
    seconds: float
    dense_check_seconds: float
    check: KnnCheck
    nearest: float  # median over queries of the nearest neighbour's distance (or similarity)


def knn_part(sizes: DemoSizes, seed: int = 0, say: Say = print) -> list[KnnResult]:
    """K nearest neighbours of ``knn_n`` queries among ``knn_m`` points, with every metric.

    Args:
        sizes: the problem sizes.
        seed: the random seed of the data.
        say: where the report goes, line by line.
    """
    N, M, D, K = sizes.knn_n, sizes.knn_m, sizes.knn_d, sizes.k
    say(f"(a) {K} nearest neighbours: {N:,} queries x {M:,} points in dimension {D} (float32), "
        f"checked against dense torch (float64) on {sizes.knn_check} random queries")
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(N, D, generator=g)
    y0 = torch.randn(M, D, generator=g)
    rows = torch.randperm(N, generator=g)[: sizes.knn_check]
    results = []
    for metric in METRICS:
        x, y = metric.data(x0), metric.data(y0)
        t0 = time.perf_counter()
        metric.lazy(Vi(x[:16]), Vj(y[: 4 * K])).Kmin_argKmin(K, dim=1)  # first call: compilation, if any
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        values, indices = metric.lazy(Vi(x), Vj(y)).Kmin_argKmin(K, dim=1)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = metric.dense(x[rows].double(), y.double())
        check = check_knn(values[rows], indices[rows], dense, K)
        dense_seconds = time.perf_counter() - t0
        nearest = metric.to_distance(values[:, 0].double()).median().item()
        res = KnnResult(metric.name, seconds, dense_seconds, check, nearest)
        results.append(res)
        err = max(check.max_value_error, check.max_choice_error)
        say(f"  {metric.name}: {metric.formula}")
        say(f"      {seconds:.2f} s ({N * M / seconds / 1e6:.1f} M pairs/s; first call on a small slice "
            f"{setup:.2f} s); check {'OK' if check.ok else 'FAIL'}: "
            f"max rel. error {err:.1e}, same indices {100 * check.index_agreement:.2f}% "
            f"(dense check {dense_seconds:.2f} s); median nearest {metric.shown} {nearest:.4g}")
    return results


# --------------------------------------------------------------------------------------------
# part (b): a Gaussian kernel product beyond dense memory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelResult:
    """Part (b): the size, time, memory and check of the kernel product."""

    n: int
    seconds: float
    dense_bytes: int  # one dense N x M float32 matrix
    ram_bytes: Optional[int]
    lazy_peak_bytes: Optional[int]  # growth of the peak resident memory during the lazy reduction
    max_error: float  # relative to sum_j |K_ij b_j|, on the checked rows
    ok: bool

    @property
    def dense_fits(self) -> Optional[bool]:
        """Whether a dense N x M float32 matrix fits in RAM (None: RAM size unknown)."""
        return None if self.ram_bytes is None else self.dense_bytes <= self.ram_bytes


def dense_gaussian_rows(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, sigma: float,
                        chunk: int = 16_384) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K @ b, |K| @ |b|)`` for the rows x (float64), streaming over chunks of columns.

    Args:
        x: (n, D) the rows' points.
        y: (M, D) the columns' points.
        b: (M, E) the vector.
        sigma: the Gaussian kernel's width.
        chunk: the number of columns per chunk.
    """
    x, y, b = x.double(), y.double(), b.double()
    out = torch.zeros(x.shape[0], b.shape[1], dtype=torch.float64)
    mag = torch.zeros_like(out)
    for j0 in range(0, y.shape[0], chunk):
        Kc = torch.exp(-torch.cdist(x, y[j0:j0 + chunk]).square() / (2 * sigma**2))
        out += Kc @ b[j0:j0 + chunk]
        mag += Kc @ b[j0:j0 + chunk].abs()
    return out, mag


def _gaussian_product(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    K_ij = (-((Vi(x) - Vj(y)) ** 2).sum(-1) / (2 * sigma**2)).exp()
    return K_ij @ b


def choose_kernel_n(budget_s: float, sigma: float, say: Say = print, n_max: int = 100_000,
                    n_cal: int = 10_000, step: int = 5_000) -> int:
    """N = M for the kernel product, from the throughput measured at ``N = M = n_cal``.

    ``n_max`` (where a dense matrix needs 40 GB) when it should take at most ``1.5 * budget_s``
    seconds; otherwise the largest multiple of ``step`` that should take about ``budget_s``.

    Args:
        budget_s: the time budget in seconds.
        sigma: the Gaussian kernel's width.
        say: where the report goes.
        n_max: the largest N.
        n_cal: N = M of the calibration run.
        step: N is rounded down to a multiple of it.
    """
    g = torch.Generator().manual_seed(12345)
    x, b = torch.rand(n_cal, 3, generator=g), torch.randn(n_cal, 1, generator=g)
    _gaussian_product(x[:64], x[:64], b[:64], sigma)  # first call: compilation, if any
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        _gaussian_product(x, x, b, sigma)
        best = min(best, time.perf_counter() - t0)
    rate = n_cal**2 / best
    if n_max**2 / rate <= 1.5 * budget_s:
        n = n_max
    else:
        n = int(max(step, math.isqrt(int(rate * budget_s)) // step * step))
    say(f"  calibration: {rate / 1e9:.3f} G pairs/s at N = M = {n_cal:,}, so N = M = {n:,} "
        f"(expected {n * n / rate:.0f} s)")
    return n


def kernel_part(sizes: DemoSizes, seed: int = 0, say: Say = print, sigma: float = 0.05,
                rtol: float = 1e-5) -> KernelResult:
    """Gaussian kernel product ``a_i = sum_j exp(-|x_i - y_j|^2 / 2 sigma^2) b_j``, N = M.

    Args:
        sizes: the problem sizes (``kernel_n`` None: chosen by :func:`choose_kernel_n`).
        seed: the random seed of the data.
        say: where the report goes.
        sigma: the kernel's width.
        rtol: the tolerance of the check, relative to ``sum_j |K_ij b_j|``.
    """
    say(f"(b) Gaussian kernel product a = K @ b with K_ij = exp(-|x_i - y_j|^2 / (2*{sigma}^2)), "
        f"points in dimension {sizes.kernel_d} (float32)")
    N = M = sizes.kernel_n if sizes.kernel_n is not None else choose_kernel_n(sizes.kernel_budget_s, sigma, say)
    D = sizes.kernel_d
    dense_bytes = 4 * N * M
    ram = machine_ram_bytes()
    if ram is not None:
        n_min = math.isqrt(ram // 4) + 1
        verdict = "more than" if dense_bytes > ram else "less than"
        say(f"  N = M = {N:,}: a dense N x M float32 matrix needs 4*N*M = {gb(dense_bytes)}, {verdict} this "
            f"machine's {gb(ram)} of RAM (MemTotal; dense stops fitting at N = M >= {n_min:,})")
        if dense_bytes > ram:
            say("  so dense torch (torch.cdist(x, y) and friends) cannot even allocate K here; lazygeom never "
                "stores it: it streams over tiles of j")
    else:
        say(f"  N = M = {N:,}: a dense N x M float32 matrix needs 4*N*M = {gb(dense_bytes)} (RAM size unknown)")
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(N, D, generator=g)
    y = torch.rand(M, D, generator=g)
    b = torch.randn(M, 1, generator=g)
    _gaussian_product(x[:64], y[:64], b[:64], sigma)  # first call: compilation, if any
    base = reset_peak_rss()
    t0 = time.perf_counter()
    a = _gaussian_product(x, y, b, sigma)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    lazy_peak = peak - base if base is not None and peak is not None else None

    rows = torch.randperm(N, generator=g)[: sizes.kernel_check]
    t0 = time.perf_counter()
    ref, mag = dense_gaussian_rows(x[rows], y, b, sigma)
    dense_seconds = time.perf_counter() - t0
    err = ((a[rows].double() - ref).abs() / mag.clamp_min(1e-30)).amax().item()
    ok = math.isfinite(err) and err <= rtol and bool(torch.isfinite(a).all())
    mem = (f"; the process' peak resident memory grew by {lazy_peak / 1e6:.1f} MB during the call"
           if lazy_peak is not None else "")
    say(f"  lazygeom: {seconds:.2f} s ({N * M / seconds / 1e9:.3f} G pairs/s); inputs and output take "
        f"{(x.numel() + y.numel() + b.numel() + a.numel()) * 4 / 1e6:.1f} MB{mem}")
    say(f"  check: {'OK' if ok else 'FAIL'}, max error {err:.1e} relative to sum_j |K_ij b_j| on "
        f"{rows.numel()} random rows x all {M:,} columns (dense float64 in column chunks, {dense_seconds:.2f} s)")
    res = KernelResult(N, seconds, dense_bytes, ram, lazy_peak, err, ok)
    if ram is not None and res.dense_fits:
        n_big = max(100_000, -(-n_min // 5_000) * 5_000)
        est = seconds * (n_big / N) ** 2
        why = ", chosen to keep the demo short with this backend" if sizes.kernel_n is None else ""
        say(f"  note: a dense matrix would still fit at this N{why}; `lazygeom demo --kernel-n {n_big}` "
            f"(dense: {gb(4 * n_big**2)}) should take about {est:.0f} s")
    return res


# --------------------------------------------------------------------------------------------


def run_demo(sizes: DemoSizes = DEFAULT, seed: int = 0, say: Say = print, figure: Optional[str] = None) -> bool:
    """Run the parts (kNN, kernel product, Sinkhorn gradient flow); True when every check passed.

    Args:
        sizes: the problem sizes.
        seed: the random seed of the data.
        say: where the report goes.
        figure: where the gradient flow's PNG goes (default: the temporary folder; "" for none).
    """
    from .sinkhorn_flow import sinkhorn_flow_part

    from .. import __version__
    from ..backends import available_backends
    from ..settings import get_config

    t0 = time.perf_counter()
    say(f"lazygeom {__version__} demo: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"backend {get_config().backend!r} (available: {', '.join(available_backends())})")
    knn = knn_part(sizes, seed, say)
    kernel = kernel_part(sizes, seed, say)
    flow = sinkhorn_flow_part(sizes.ot_points, sizes.ot_steps, lr=5.0 / sizes.ot_steps, seed=seed, figure=figure,
                              say=say)
    ok = all(r.check.ok for r in knn) and kernel.ok and flow.ok
    failed = [r.metric for r in knn if not r.check.ok] + ([] if kernel.ok else ["kernel product"])
    failed += [] if flow.ok else ["Sinkhorn gradient flow"]
    say(f"total {time.perf_counter() - t0:.1f} s: " + ("all checks passed" if ok else f"FAILED: {', '.join(failed)}"))
    return ok
