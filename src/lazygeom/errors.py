"""Exceptions raised by lazygeom."""


class LazyGeomError(Exception):
    """Base class of lazygeom's own errors."""


class BackendUnavailable(LazyGeomError, RuntimeError):
    """The requested backend cannot run here (not built, no compiler, no GPU...)."""
