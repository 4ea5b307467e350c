"""Triton backend: kernels generated from the IR for CUDA GPUs (or Triton's interpreter on a CPU).

Importing this package does not import Triton: that happens when a first kernel is built.
"""

from .backend import TritonBackend, interpreting

__all__ = ["TritonBackend", "interpreting"]
