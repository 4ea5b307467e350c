"""Backends and the (small, testable) policy that picks one for a call."""

from __future__ import annotations

import warnings
from typing import Sequence

from ..settings import normalize_backend
from ..errors import BackendUnavailable
from .base import Backend, Call
from .cpu import CpuBackend
from .reference import ReferenceBackend

_REFERENCE = ReferenceBackend()
_CPU = CpuBackend()


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    return ["reference"] + (["cpu"] if CpuBackend.available() else [])


def _warn_no_compiler() -> None:
    warnings.warn(
        "lazygeom: no C++ compiler found (set $CXX, or install g++ or clang++); "
        "falling back to the pure-PyTorch reference backend, which is much slower",
        RuntimeWarning,
        stacklevel=4,
    )


def select_backend(name: str, call: Call, args: Sequence) -> Backend:
    """The backend that runs ``call``, from a requested name and the arguments.

    - ``"reference"``: the pure-PyTorch oracle, always.
    - ``"cpu"``: the compiled C++ backend; an error if it cannot run this call.
    - ``"auto"`` and pykeops' ``"CPU"``: the compiled backend for CPU tensors in float32/float64
      when a compiler is present (else the reference backend, with one warning); the reference
      backend for other devices and dtypes until the GPU backend lands.
    - ``"triton"`` (pykeops' ``"GPU"``): not available yet.
    """
    name = normalize_backend(name)
    if name == "reference":
        return _REFERENCE
    if name == "cpu":
        if not CpuBackend.available():
            raise BackendUnavailable("backend 'cpu' needs a C++ compiler ($CXX, g++ or clang++); none was found")
        if not _CPU.supports(call, args):
            dtypes = sorted({str(a.dtype) for a in args})
            devices = sorted({str(a.device) for a in args})
            raise BackendUnavailable(
                f"backend 'cpu' runs float32/float64 CPU tensors; got dtypes {dtypes} on devices {devices}"
            )
        return _CPU
    if name in ("auto", "cpu_any"):
        on_cpu = all(getattr(a, "device", None) is None or a.device.type == "cpu" for a in args)
        if on_cpu and _CPU.supports(call, args):
            if CpuBackend.available():
                return _CPU
            _warn_no_compiler()
        return _REFERENCE
    # the config has already turned pykeops' "GPU" into "triton": name both for the user
    what = "the GPU backend 'triton' (pykeops: 'GPU')" if name == "triton" else f"backend {name!r}"
    raise BackendUnavailable(
        f"{what} is not available in this version of lazygeom; "
        f"available: {available_backends()} (or 'auto')"
    )


__all__ = ["Backend", "Call", "CpuBackend", "ReferenceBackend", "available_backends", "select_backend"]
