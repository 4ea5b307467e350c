"""The ``lazygeom`` command."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    print("lazygeom: the demo is not written yet", file=sys.stderr)
    return 1
