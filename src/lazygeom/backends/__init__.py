"""Backends evaluate reduction calls; :mod:`.policy` decides which one runs and which fast paths apply."""

from __future__ import annotations

from .base import Backend, Call
from .cpu import CpuBackend
from .policy import CAPABILITIES, available_backends, capability, select_backend
from .reference import ReferenceBackend
from .triton import TritonBackend

__all__ = ["Backend", "CAPABILITIES", "Call", "CpuBackend", "ReferenceBackend", "TritonBackend",
           "available_backends", "capability", "select_backend"]
