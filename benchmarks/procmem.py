"""Peak resident memory of the current process, from /proc (Linux), for the benchmark workers.

``tracemalloc`` does not see torch's allocations and ``ru_maxrss`` includes imports and inputs:
instead a worker resets its high-water mark (``/proc/self/clear_refs``) just before a call and
reads ``VmHWM`` after it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional


def status_bytes(field: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``...) in bytes, or None."""
    try:
        m = re.search(rf"{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
