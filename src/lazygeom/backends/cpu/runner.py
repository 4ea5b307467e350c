"""How the compiled entry points run: their threads after a fork, chunks of rows, progress.

**Forked children.** The kernels' OpenMP runtime is torch's libgomp (one copy per process). It
keeps a pool of worker threads per calling thread; a child forked after a parallel region
inherits the pool's bookkeeping but not its threads, and its next region with more than one
thread waits forever for them (torch's own parallel ops as well as these kernels). So in a child
forked from a process that had loaded this module (``os.fork``, multiprocessing's ``fork`` start
method, ``torch.utils.data.DataLoader`` workers, the children of a ``forkserver`` whose server
loaded it), every compiled entry point runs on the calling thread (one thread, which never
touches the pool), and torch's intra-op threads are set to 1, as the DataLoader does in its
workers; the user does nothing. The module is loaded with the backends, by any reduction (not by
a bare ``import lazygeom``). Fresh processes (``spawn``, a ``forkserver``'s server) keep their
full thread count. A forked child that raises torch's thread count again gets torch's behaviour
for torch's own ops; the compiled entry points stay on one thread.

**Interruption.** Python runs its signal handlers between bytecodes, not during a ctypes call,
so Ctrl-C would wait for the end of a whole reduction. :func:`run_chunks` cuts a long call into
chunks of rows of about :data:`CHUNK_SECONDS` of work each (sized from the number of pairs, then
from the speed measured on the previous chunk) and calls the kernel once per chunk; between two
chunks the interpreter runs its handlers, so ``KeyboardInterrupt`` is raised within about a
chunk's time. Between chunks no OpenMP region is open and nothing is locked: the next call runs
normally. Small calls stay one call. Python threads may run reductions concurrently: each call
owns its buffers, and each calling thread has its own OpenMP team.

**Progress.** With ``lazygeom.config(progress=True)`` (or ``LAZYGEOM_PROGRESS=1``), a call
expected to take more than :data:`PROGRESS_SECONDS` prints one line to stderr, rewritten after
each chunk: the fraction of rows done, the elapsed time and an estimate of the time left.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, Union

import torch

from ...settings import get_config

#: seconds of work per chunk: the delay of Ctrl-C, and the step of progress reports. Each chunk
#: starts an OpenMP team (about 10-50 µs), negligible at this size.
CHUNK_SECONDS = 0.05
#: the first guess of a kernel's speed, in weighted pairs per second and thread (each chunk's
#: measured speed then sizes the next)
PAIRS_PER_SECOND = 2e9
#: with progress reports on, calls expected to take longer than this (seconds) print one
PROGRESS_SECONDS = 2.0

_forked = False


def _after_fork_in_child() -> None:
    """In a forked child: one thread for the compiled kernels, and for torch's intra-op ops."""
    global _forked
    _forked = True
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_after_fork_in_child)


def in_forked_child() -> bool:
    """Whether this process was forked from one that had imported this module.

    Returns:
        True in such a child (and its own children).
    """
    return _forked


def threads() -> int:
    """The threads of a compiled entry point: torch's intra-op count, 1 in a forked child.

    Returns:
        The ``num_threads`` of the kernels' OpenMP regions.
    """
    return 1 if _forked else max(1, torch.get_num_threads())


Cost = Union[float, torch.Tensor]


def run_chunks(fn: Callable[[int, int], object], n: int, cost: Cost, nthreads: int, quantum: int = 1,
               label: str = "kernel", unit: str = "rows") -> None:
    """Call ``fn(i0, i1)`` on consecutive ranges of items (rows, clusters) that cover ``[0, n)``.

    A call whose cost is below two chunks' worth is one range ``[0, n)``; a longer one is cut into
    chunks of about :data:`CHUNK_SECONDS`, multiples of ``quantum`` items (the last one shorter),
    so that signal handlers (Ctrl-C) run in between and progress can be reported.

    Args:
        fn: runs the items ``[i0, i1)``.
        n: the number of items.
        cost: the weighted pairs of one item (all items alike), or a cumulative ``(n + 1,)``
            tensor of the weighted pairs of the items before each (starting at 0).
        nthreads: the threads ``fn`` runs on (they scale the first guess of the speed).
        quantum: chunks hold a multiple of this many items (e.g. whole blocks for every thread).
        label: what the progress line names.
        unit: what the items are, in the progress line.
    """
    cum = cost if isinstance(cost, torch.Tensor) else None
    total = float(cum[-1]) if cum is not None else float(cost) * n
    budget = PAIRS_PER_SECOND * max(1, nthreads) * CHUNK_SECONDS
    if n <= quantum or total <= 2 * budget:
        fn(0, n)
        return
    show = get_config().progress
    start = time.perf_counter()
    printed = False
    i0, done, chunks = 0, 0.0, 0
    try:
        while i0 < n:
            i1 = _chunk_end(i0, n, cum, cost, budget, quantum)
            part = float(cum[i1] - cum[i0]) if cum is not None else float(cost) * (i1 - i0)
            t0 = time.perf_counter()
            fn(i0, i1)
            t1 = time.perf_counter()
            i0, done, chunks = i1, done + part, chunks + 1
            if part > 0 and t1 - t0 > 1e-4:  # the next chunk from this one's speed (at most x4)
                budget = min(part / (t1 - t0) * CHUNK_SECONDS, 4 * budget)
            elapsed = t1 - start
            if show and i0 < n and done > 0 and elapsed * total / done > PROGRESS_SECONDS:
                _report(f"{label}: {100 * i0 / n:5.1f}% of {n} {unit} ({chunks} chunks), {elapsed:.1f} s elapsed, "
                        f"ETA {elapsed * (total - done) / done:.1f} s")
                printed = True
        if printed:
            _report(f"{label}: 100.0% of {n} {unit} ({chunks} chunks), {time.perf_counter() - start:.1f} s\n")
    finally:
        if printed and i0 < n:  # interrupted (or failed): end the progress line
            sys.stderr.write("\n")
            sys.stderr.flush()


def _chunk_end(i0: int, n: int, cum: Optional[torch.Tensor], cost: Cost, budget: float, quantum: int) -> int:
    """The end of the chunk that starts at ``i0``: about ``budget`` of cost, whole quanta."""
    if cum is not None:
        target = cum[i0] + budget
        i1 = int(torch.searchsorted(cum, target.reshape(1), right=True)[0]) - 1
    else:
        i1 = i0 + int(budget / max(float(cost), 1e-300))
    q = max(1, -(-(i1 - i0) // quantum))  # whole quanta, at least one
    return min(n, i0 + q * quantum)


def _report(text: str) -> None:
    """Rewrite the progress line (a carriage return, then the text padded over a longer previous one)."""
    sys.stderr.write(f"\r[lazygeom] {text:<78}" if not text.endswith("\n") else f"\r[lazygeom] {text}")
    sys.stderr.flush()
