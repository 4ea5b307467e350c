"""Exceptions raised by lazygeom."""


class LazyGeomError(Exception):
    """Base class of lazygeom's own errors."""


class BackendUnavailable(LazyGeomError, RuntimeError):
    """The requested backend cannot run here (not built, no compiler, no GPU...)."""


class CompilationError(LazyGeomError, RuntimeError):
    """A generated kernel failed to compile.

    Attributes:
        source_path: the generated source file.
        command: the compiler's command line.
        output: what the compiler printed.
    """

    def __init__(self, source_path: str, command: list[str], output: str) -> None:
        self.source_path = source_path
        self.command = command
        self.output = output
        super().__init__(
            f"compilation of {source_path} failed:\n  {' '.join(command)}\n{output.strip()}"
        )


class ConvergenceWarning(RuntimeWarning):
    """An iterative solver stopped at ``maxiter`` before reaching its tolerance."""
