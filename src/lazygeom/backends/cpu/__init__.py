"""Native CPU backend: C++ generated from the IR, compiled with the system compiler."""

from .backend import CpuBackend
from .compiler import cache_entries, clear_cache, find_compiler

__all__ = ["CpuBackend", "cache_entries", "clear_cache", "find_compiler"]
