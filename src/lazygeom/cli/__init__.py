"""The ``lazygeom`` command (:mod:`.main`) and its demo on built-in random data (:mod:`.demo`)."""

from .main import main

__all__ = ["main"]
