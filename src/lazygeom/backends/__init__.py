"""Backends and the (small, testable) policy that picks one for a call."""

from __future__ import annotations

from typing import Sequence

from ..config import normalize_backend
from ..errors import BackendUnavailable
from .base import Backend, Call
from .reference import ReferenceBackend

_REFERENCE = ReferenceBackend()


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    return ["reference"]


def select_backend(name: str, args: Sequence) -> Backend:
    """The backend that runs a call, from a requested name and the arguments' device.

    ``"auto"`` (and pykeops' ``"CPU"``) choose the fastest backend available for the data;
    today that is the reference backend everywhere, until the native backends land.
    """
    name = normalize_backend(name)
    if name in ("auto", "cpu_any", "reference"):
        return _REFERENCE
    raise BackendUnavailable(
        f"backend {name!r} is not available in this version of lazygeom; "
        f"available: {available_backends()} (or 'auto')"
    )


__all__ = ["Backend", "Call", "ReferenceBackend", "available_backends", "select_backend"]
