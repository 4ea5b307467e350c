"""Machine facts for the demo: physical memory and the process' peak resident memory (Linux)."""

from __future__ import annotations

import os
import re
from typing import Optional



def machine_ram_bytes() -> Optional[int]:
    """Total physical memory (``MemTotal`` of /proc/meminfo, else ``sysconf``), or None."""
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"MemTotal:\s+(\d+)\s+kB", f.read())
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"{field}:\s+(\d+)\s+kB", f.read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def reset_peak_rss() -> Optional[int]:
    """Reset the process' peak RSS (Linux ``clear_refs``); return the current RSS in bytes, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _status_kb("VmRSS")
    return None if rss is None else rss * 1024


def peak_rss() -> Optional[int]:
    """The process' peak RSS in bytes since the last reset (``VmHWM``), or None."""
    hwm = _status_kb("VmHWM")
    return None if hwm is None else hwm * 1024


def gb(n_bytes: float) -> str:
    """A byte count in decimal gigabytes, e.g. ``"40.0 GB"``.

    Args:
        n_bytes: the number of bytes.
    """
    return f"{n_bytes / 1e9:.1f} GB"


__all__ = ["gb", "machine_ram_bytes", "peak_rss", "reset_peak_rss"]
