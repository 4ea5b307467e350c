"""Explicit configuration: a frozen :class:`Config` and the :func:`config` context manager.

Resolution order for each setting: the innermost active ``with lazygeom.config(...)`` block, then
the environment (``LAZYGEOM_BACKEND``, ``LAZYGEOM_CACHE_DIR``, ``LAZYGEOM_VERBOSE``,
``LAZYGEOM_PROGRESS``), then the default.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

BACKENDS = ("auto", "reference", "cpu", "triton")
#: pykeops spellings accepted for compatibility
BACKEND_ALIASES = {"CPU": "cpu_any", "GPU": "triton", "gpu": "triton", "ref": "reference"}


@dataclass(frozen=True)
class Config:
    """Settings of lazygeom.

    Attributes:
        backend: "auto" (the best available for the data's device), "reference", "cpu" or
            "triton"; the pykeops names "CPU" and "GPU" are accepted.
        cache_dir: folder of compiled kernels.
        verbose: print what is compiled and which backend runs.
        progress: print a one-line progress report (to stderr, updated as chunks of rows complete:
            fraction done, elapsed time, ETA) for compiled CPU reductions, kNN searches and plan
            marginal passes expected to take more than a few seconds; off by default.
    """

    backend: Optional[str] = None
    cache_dir: Optional[str] = None
    verbose: Optional[bool] = None
    progress: Optional[bool] = None

    def resolved(self) -> "Config":
        """This config with every unset field filled from the environment or the defaults."""
        backend = self.backend or os.environ.get("LAZYGEOM_BACKEND") or "auto"
        cache = self.cache_dir or os.environ.get("LAZYGEOM_CACHE_DIR") or _default_cache(
            os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))
        verbose = self.verbose
        if verbose is None:
            verbose = _env_flag("LAZYGEOM_VERBOSE")
        progress = self.progress
        if progress is None:
            progress = _env_flag("LAZYGEOM_PROGRESS")
        return Config(backend=normalize_backend(backend), cache_dir=cache, verbose=verbose, progress=progress)


def _env_flag(name: str) -> bool:
    """An on/off environment variable: unset, empty, "0" and "false" are off."""
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


@functools.lru_cache(maxsize=8)
def _default_cache(xdg_cache_home: Optional[str], home: Optional[str]) -> str:
    """``$XDG_CACHE_HOME/lazygeom``, else ``~/.cache/lazygeom``.

    Cached on the variables it reads, because every reduction resolves the config (Path.home()
    costs tens of microseconds).
    """
    return str(Path(xdg_cache_home if xdg_cache_home is not None else Path.home() / ".cache") / "lazygeom")


def normalize_backend(name: str) -> str:
    """Canonical backend name (pykeops aliases resolved).

    Args:
        name: a backend name or a pykeops alias ("CPU", "GPU").

    Returns:
        One of :data:`BACKENDS`, or "cpu_any" (pykeops' "CPU": the compiled CPU backend, else the
        reference one).

    Raises:
        ValueError: naming the accepted values, for an unknown name.
    """
    name = BACKEND_ALIASES.get(name, name)
    if name not in BACKENDS + ("cpu_any",):
        raise ValueError(
            f"unknown backend {name!r}; expected one of {BACKENDS} or a pykeops alias {tuple(BACKEND_ALIASES)}"
        )
    return name


_CURRENT: contextvars.ContextVar[Config] = contextvars.ContextVar("lazygeom_config", default=Config())


def get_config() -> Config:
    """The active configuration, fully resolved."""
    return _CURRENT.get().resolved()


@contextlib.contextmanager
def config(**settings: Any) -> Iterator[Config]:
    """Temporarily change settings (see :class:`Config`); nests, thread- and task-local.

    Args:
        **settings: new values of :class:`Config` fields (``backend``, ``cache_dir``, ``verbose``,
            ``progress``); None keeps the enclosing value.

    Returns:
        A context manager that yields the resolved configuration in force inside the block.

    Raises:
        TypeError: for an unknown setting.
        ValueError: for an unknown backend name.

    Example:
        >>> with lazygeom.config(backend="reference"):
        ...     out = (x_i - y_j).sqnorm2().sum(dim=1)
    """
    unknown = set(settings) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise TypeError(f"unknown lazygeom setting(s) {sorted(unknown)}")
    if settings.get("backend") is not None:
        normalize_backend(settings["backend"])
    token = _CURRENT.set(dataclasses.replace(_CURRENT.get(), **settings))
    try:
        yield get_config()
    finally:
        _CURRENT.reset(token)
