"""The ``lazygeom`` command: argument parsing only (the work is in :mod:`lazygeom.cli.demo`).

Subcommands:
    demo      kNN with four metrics and a Gaussian kernel product, checked against dense torch,
              and a Sinkhorn gradient flow between two shapes (saves a figure)
    backends  list the backends and whether they can run here
    cache     info | clear: the on-disk cache of compiled kernels
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="lazygeom", description="Geometric data analysis at scale with symbolic matrices.")
    p.add_argument("--version", action="version", version=f"lazygeom {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="kNN with four metrics and a kernel product beyond dense memory, checked")
    size = d.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    size.add_argument("--full", action="store_true",
                      help="kernel product at N = M = 100,000 (a dense matrix would need 40 GB; minutes)")
    d.add_argument("--kernel-n", type=int, metavar="N", help="N = M of the kernel product (overrides the preset)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the data (default 0)")
    d.add_argument("--backend", default=None, help="lazygeom backend (default: the configured one, 'auto')")
    d.add_argument("--figure", default=None, metavar="PATH",
                   help="where to save the gradient flow's figure (default: in the temporary folder; '' for none)")

    sub.add_parser("backends", help="list the backends and whether they are available here")

    c = sub.add_parser("cache", help="the on-disk cache of compiled kernels")
    c.add_argument("action", choices=("info", "clear"),
                   help="info: folder, kernels, size and damaged ones; clear: delete them")
    return p


def _demo(args: argparse.Namespace) -> int:
    from ..settings import config
    from .demo import DEFAULT, FULL, QUICK, run_demo

    sizes = QUICK if args.quick else FULL if args.full else DEFAULT
    if args.kernel_n is not None:
        if args.kernel_n < 1:
            raise SystemExit("lazygeom demo: --kernel-n must be positive")
        sizes = dataclasses.replace(sizes, kernel_n=args.kernel_n,
                                    kernel_check=min(sizes.kernel_check, args.kernel_n))
    with config(backend=args.backend):
        ok = run_demo(sizes, seed=args.seed, figure=args.figure)
    return 0 if ok else 1


def _backends(args: argparse.Namespace) -> int:
    from ..backends import available_backends
    from ..settings import BACKENDS, get_config

    avail = available_backends()
    for name in BACKENDS:
        if name != "auto":
            print(f"{name:<10} {'available' if name in avail else 'not available'}")
    print(f"configured backend: {get_config().backend!r} "
          f"('auto' picks the fastest available backend for each call's device and dtype)")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from ..backends.cpu import compiler
    from ..settings import get_config

    folder = get_config().cache_dir
    libs = compiler.cache_entries(folder)
    if args.action == "clear":
        print(f"removed {compiler.clear_cache(folder)} file(s) from {folder}")
        return 0
    size = sum(p.stat().st_size for p in libs)
    damaged = [(p, why) for p in libs if (why := compiler.check_entry(p)) not in (None, compiler.MISSING)]
    print(f"cache folder: {folder} (set LAZYGEOM_CACHE_DIR or lazygeom.config(cache_dir=...) to move it)")
    print(f"compiled kernels: {len(libs)}, {size / 2**20:.1f} MiB")
    if damaged:
        print(f"damaged kernels: {len(damaged)} (never loaded: compiled again at their next use)")
        for p, why in damaged:
            print(f"  {p.name}: {why}")
    print(f"compiler: {compiler.find_compiler() or 'none found'}; instruction set key {compiler.isa_fingerprint()}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``lazygeom`` command.

    Args:
        argv: the command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success (also for ``--help`` and ``--version``), 1 when a demo check
        failed, 2 for a usage error (argparse's status) or no command.

    Raises:
        SystemExit: with a message, for ``demo --kernel-n`` below 1.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: return their status
        return exc.code if isinstance(exc.code, int) else 1
    if args.command == "demo":
        return _demo(args)
    if args.command == "backends":
        return _backends(args)
    if args.command == "cache":
        return _cache(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
