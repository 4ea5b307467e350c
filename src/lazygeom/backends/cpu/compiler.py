"""Compiling generated C++ with the system compiler, and the on-disk cache of kernels.

The cache key covers everything that changes the binary: the source, the scalar type, the
header, the compiler and its version, the flags, and the instruction set of this machine
(``-march=native``). Several processes may compile the same kernel at once: a file lock per key
serialises them, and the library is written under a temporary name and renamed atomically.

Every library is checked before it is handed to ``ctypes.CDLL`` (a truncated one kills the process
with SIGBUS): its record ``lg_<key>.json`` (``{"format": 1, "file": ..., "size": ..., "sha256": ...}``,
written before the library is renamed into place) must match its size and SHA-256. A damaged or
foreign library is compiled again, with one ``RuntimeWarning``. When the cache folder cannot be
written (read-only, permission denied, disk full), the process compiles into a temporary folder of
its own, with one ``RuntimeWarning``; a verified library in a read-only folder loads without writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from ...errors import CompilationError
from ..cache import (MISSING, RECORD_FORMAT, check_entry, fall_back, publish, record_path,  # noqa: F401
                     stand_in, warn_damaged)

HEADER = Path(__file__).with_name("lgmath.hpp")

# No -ffast-math: reductions rely on inf and nan (LogSumExp, min, masks). These flags keep IEEE
# special values while letting the compiler contract multiply-adds and skip errno.
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17",
         "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-Wno-unused-variable", "-Wno-psabi")


@functools.lru_cache(maxsize=None)
def find_compiler() -> Optional[str]:
    """``$CXX``, else g++, else clang++; None when none is found."""
    env = os.environ.get("CXX")
    candidates = [env] if env else ["g++", "clang++"]
    for c in candidates:
        path = shutil.which(c)
        if path:
            return path
    return None


@functools.lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else cxx


@functools.lru_cache(maxsize=None)
def isa_fingerprint() -> str:
    """The CPU model and feature flags (what -march=native compiles for)."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("model name", "flags", "Features")):
                    text += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(source: str, scalar: str, cxx: str) -> str:
    """The name of a compiled kernel in the cache.

    It changes with anything that changes the binary: the source, the scalar type, the header,
    the compiler and its version, the flags and the machine's instruction set.

    Args:
        source: the C++ source.
        scalar: ``"float"`` or ``"double"``.
        cxx: the compiler.

    Returns:
        32 hexadecimal digits.
    """
    h = hashlib.sha256()
    for part in (source, scalar, HEADER.read_text(), cxx, _compiler_version(cxx), " ".join(FLAGS), isa_fingerprint()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


#: the compiler's messages that mean the disk (or quota) is full
_DISK_FULL = {code: os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT)}


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _compile_into(folder: Path, key: str, source: str, scalar: str, cxx: str, verbose: bool) -> Path:
    """Compile into ``folder`` under its lock, unless another process did; the library's path.

    The record is renamed into place before the library: a reader trusts a library only when both
    match, and re-checks under the lock (after the writer) before it compiles again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"lg_{key}.so"
    with open(folder / f"lg_{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problem = check_entry(lib)
        if problem is None:  # another process compiled it while we waited
            return lib
        if problem != MISSING:
            warn_damaged(lib, problem)
        src = folder / f"lg_{key}.cpp"
        tag = f"lg_{key}.{os.getpid()}"
        tmp_src, tmp_lib, tmp_rec = (folder / f"{tag}.cpp", folder / f"{tag}.tmp.so", folder / f"{tag}.tmp.json")
        try:
            _write(tmp_src, source.encode())
            os.replace(tmp_src, src)
            cmd = [cxx, *FLAGS, f"-DLG_DOUBLE={int(scalar == 'double')}", f"-I{HEADER.parent}", str(src),
                   "-o", str(tmp_lib)]
            if verbose:
                print(f"[lazygeom] compiling {src}")
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                output = proc.stdout + proc.stderr
                for code, message in _DISK_FULL.items():
                    if message in output:
                        raise OSError(code, f"{message} (compiling into {folder}): {output.strip()}")
                raise CompilationError(str(src), cmd, output)
            publish(tmp_lib, lib, tmp_rec)
        finally:
            for tmp in (tmp_src, tmp_lib, tmp_rec):
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
    return lib


def build(source: str, scalar: str, cache_dir: str, verbose: bool = False) -> Path:
    """The path of the compiled shared library for ``source``, compiling it if needed.

    A cached library is returned only if it matches its record (:func:`check_entry`); a damaged or
    foreign one is compiled again, with one ``RuntimeWarning``. When the cache folder cannot be
    written, the library is compiled into this process's temporary folder (:func:`fall_back`).

    Args:
        source: the C++ source.
        scalar: ``"float"`` or ``"double"``.
        cache_dir: the cache folder.
        verbose: print the compilations.

    Returns:
        The library's path.

    Raises:
        CompilationError: the compiler failed (its output is in the error).
        OSError: neither the cache folder nor a temporary folder can be written.
    """
    cxx = find_compiler()
    if cxx is None:  # pragma: no cover - the caller checks first
        raise CompilationError("<none>", [], "no C++ compiler found ($CXX, g++, clang++)")
    key = cache_key(source, scalar, cxx)
    folder = Path(cache_dir)
    temp = stand_in(folder)
    lib = folder / f"lg_{key}.so"
    for place in (folder, temp):  # reads only: a verified library in a read-only folder is used as is
        if place is not None and check_entry(place / lib.name) is None:
            return place / lib.name
    if temp is None:
        try:
            return _compile_into(folder, key, source, scalar, cxx, verbose)
        except OSError as err:
            temp = fall_back(folder, err)
    problem = check_entry(lib)
    if problem is None:  # another process repaired it meanwhile
        return lib
    if problem != MISSING and lib.exists():  # damaged, and not rebuilt in place
        warn_damaged(lib, problem)
    try:
        return _compile_into(temp, key, source, scalar, cxx, verbose)
    except OSError as err:
        raise OSError(err.errno, f"lazygeom: cannot build {lib.name} in the kernel cache {folder}, nor in "
                                 f"the temporary folder {temp}: {err}") from err


_LIBRARIES: dict = {}


def load_source(source_file: Path, scalar: str, cache_dir: str, verbose: bool,
                signatures: dict[str, tuple[list, object]]) -> ctypes.CDLL:
    """A fixed C++ source of the package (not generated), compiled once per scalar type and cache folder.

    Args:
        source_file: the source.
        scalar: ``"float"`` or ``"double"``.
        cache_dir: the cache folder.
        verbose: print the compilations.
        signatures: ``{function: (argtypes, restype)}``, set on the loaded functions.

    Returns:
        The loaded library.
    """
    key = (str(source_file), scalar, cache_dir)
    lib = _LIBRARIES.get(key)
    if lib is None:
        lib = ctypes.CDLL(str(build(Path(source_file).read_text(), scalar, cache_dir, verbose)))
        for name, (args, res) in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        _LIBRARIES[key] = lib
    return lib


def cache_entries(cache_dir: str) -> list[Path]:
    """The compiled kernels in the cache folder.

    Args:
        cache_dir: the cache folder.

    Returns:
        Their paths, sorted.
    """
    folder = Path(cache_dir)
    return sorted(p for p in folder.glob("lg_*.so") if ".tmp." not in p.name) if folder.is_dir() else []


def clear_cache(cache_dir: str) -> int:
    """Delete every cached kernel file.

    Args:
        cache_dir: the cache folder.

    Returns:
        The number of files removed.
    """
    folder = Path(cache_dir)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.glob("lg_*"):
        p.unlink(missing_ok=True)
        n += 1
    return n
