"""The backend policy: which backend runs a reduction, and which optional fast paths apply.

Everything that chooses between implementations asks here, so that the choice is made in one
place and tested on its own:

- :func:`select_backend` picks the backend of one reduction call;
- :func:`capability` hands a domain package (``ot``, ``sparse``, and next ``ml``, ``shapes``) an
  optional fast path of the backend that would run its tensors (``"plan_marginals"``: both
  marginals of an entropic plan in one pass; ``"pair_sorting"``: compiled bookkeeping of
  cluster-pair lists; ``"fused_knn"``: the fused K-nearest-neighbour kernel), or None, in which
  case the caller runs its portable torch version. Domain packages never import a concrete
  backend.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

from ..errors import BackendUnavailable
from ..settings import get_config, normalize_backend
from .base import Backend, Call
from .cpu import CpuBackend
from .reference import ReferenceBackend
from .triton import TritonBackend

#: the optional capabilities a backend may offer (see :meth:`CpuBackend.capability`)
CAPABILITIES = ("plan_marginals", "pair_sorting", "fused_knn")

_REFERENCE = ReferenceBackend()
_CPU = CpuBackend()
_TRITON = TritonBackend()


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    return (["reference"] + (["cpu"] if CpuBackend.available() else [])
            + (["triton"] if TritonBackend.available() else []))


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
    - ``"auto"``: Triton for CUDA tensors when it is installed (else the reference backend);
      for CPU tensors, as pykeops' ``"CPU"``.
    - pykeops' ``"CPU"``: the compiled backend for CPU tensors in float32/float64 when a compiler
      is present (else the reference backend, with one warning); the reference backend otherwise.
    - ``"triton"`` (pykeops' ``"GPU"``): the Triton backend; CPU tensors are copied to the GPU and
      back, or run in Triton's interpreter when ``TRITON_INTERPRET=1`` (tests).

    Args:
        name: the requested backend (a name of :data:`lazygeom.settings.BACKENDS`, pykeops'
            ``"CPU"``/``"GPU"`` included).
        call: the reduction call.
        args: its tensors, in the call's layout.

    Returns:
        The backend object that runs the call.

    Raises:
        BackendUnavailable: the requested backend cannot run here or cannot run this call.
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
    if name == "triton":
        if not TritonBackend.available():
            raise BackendUnavailable(
                "the GPU backend 'triton' (pykeops: 'GPU') is not available here: it needs the triton "
                "package and a CUDA device (or TRITON_INTERPRET=1 to run it, slowly, on CPU tensors); "
                f"available: {available_backends()} (or 'auto')"
            )
        reason = _TRITON.why_not(call, args)
        if reason is not None:
            raise BackendUnavailable(f"backend 'triton' cannot run {call.describe()}: {reason}")
        return _TRITON
    on_cuda = any(getattr(a, "device", None) is not None and a.device.type == "cuda" for a in args)
    if name == "auto" and on_cuda and TritonBackend.available() and _TRITON.supports(call, args):
        return _TRITON
    if name in ("auto", "cpu_any"):
        on_cpu = all(getattr(a, "device", None) is None or a.device.type == "cpu" for a in args)
        if on_cpu and _CPU.supports(call, args):
            if CpuBackend.available():
                return _CPU
            _warn_no_compiler()
        return _REFERENCE
    raise BackendUnavailable(f"backend {name!r} is not available; available: {available_backends()} (or 'auto')")


def capability(name: str, *tensors: Any, backend: Optional[str] = None) -> Optional[Any]:
    """The implementation of an optional fast path for these tensors, or None.

    Args:
        name: one of :data:`CAPABILITIES`.
        *tensors: the tensors the fast path would read (their device and dtype decide).
        backend: the engine backend requested by the caller; None: the configured one
            (``lazygeom.config``). ``"reference"`` asks for the portable torch paths: None.

    Returns:
        The backend's implementation (a module-like object whose functions the caller knows from
        the capability's contract), or None when no backend that may run these tensors offers it.
    """
    if name not in CAPABILITIES:
        raise ValueError(f"unknown capability {name!r}; expected one of {CAPABILITIES}")
    requested = normalize_backend(backend) if backend else get_config().backend
    if requested not in ("auto", "cpu", "cpu_any"):
        return None
    if not CpuBackend.available() or any(getattr(t, "device", None) is not None and t.device.type != "cpu"
                                         for t in tensors):
        return None
    return _CPU.capability(name, tensors)


__all__ = ["CAPABILITIES", "Backend", "Call", "available_backends", "capability", "select_backend"]
