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

import atexit
import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union

from ...errors import CompilationError

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


#: the version of the records ``lg_<key>.json``
RECORD_FORMAT = 1
#: what :func:`check_entry` says of a library that is not there
MISSING = "missing"

#: path -> (device, inode, size, mtime) of the libraries this process verified: checked once
_VERIFIED: dict[str, tuple[int, int, int, int]] = {}
#: (path, reason) of the damaged entries this process warned about: one warning each
_WARNED: set[tuple[str, str]] = set()
#: cache folder -> the temporary folder this process writes to instead (see :func:`fall_back`)
_FALLBACKS: dict[str, Path] = {}
#: this process's temporary folder: {"pid": ..., "path": ...} (a forked child makes its own)
_TEMP: dict = {}


def record_path(lib: Union[str, Path]) -> Path:
    """The record of a cached library: ``lg_<key>.json`` beside ``lg_<key>.so``.

    Args:
        lib: the library's path.

    Returns:
        The record's path.
    """
    return Path(lib).with_suffix(".json")


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _read_record(lib: Path) -> Union[dict, str]:
    """The library's record, or why there is none that can be used."""
    try:
        text = record_path(lib).read_text()
    except FileNotFoundError:
        return "no record (a file lazygeom did not write, or an interrupted write)"
    except (OSError, UnicodeDecodeError) as err:
        return f"unreadable record ({err})"
    try:
        rec = json.loads(text)
        fields = rec["format"], rec["file"], int(rec["size"]), str(rec["sha256"])
    except (ValueError, KeyError, TypeError):
        return "malformed record"
    if fields[0] != RECORD_FORMAT or fields[1] != lib.name:
        return f"record of another file or format ({fields[1]!r}, format {fields[0]!r})"
    return rec


def check_entry(lib: Union[str, Path]) -> Optional[str]:
    """Why a cached library cannot be loaded; None when it matches its record.

    A library verified once by this process, and unchanged since (same inode, size and mtime), is
    not hashed again.

    Args:
        lib: the library's path.

    Returns:
        None when its size and SHA-256 match its record; :data:`MISSING` when there is no such
        file; else the reason (no record, size or content differing from the record, unreadable).
    """
    lib = Path(lib)
    try:
        with open(lib, "rb") as fh:
            sig = _signature(os.fstat(fh.fileno()))
            if _VERIFIED.get(str(lib)) == sig:
                return None
            rec = _read_record(lib)
            if isinstance(rec, str):
                return rec
            if sig[2] != int(rec["size"]):
                return f"{sig[2]} bytes where its record says {int(rec['size'])} (truncated or overwritten)"
            if hashlib.sha256(fh.read()).hexdigest() != rec["sha256"]:
                return "its content does not match the SHA-256 of its record"
    except FileNotFoundError:
        return MISSING
    except OSError as err:
        return f"unreadable ({err})"
    _VERIFIED[str(lib)] = sig
    return None


def warn_damaged(lib: Path, reason: str, what: str = "cached kernel") -> None:
    """Warn that a cache entry is damaged and built again: one ``RuntimeWarning`` per entry and reason, per process.

    Args:
        lib: the entry's path.
        reason: what is wrong with it (:func:`check_entry`'s answer).
        what: what it is, for the message.
    """
    if (str(lib), reason) in _WARNED:
        return
    _WARNED.add((str(lib), reason))
    warnings.warn(f"lazygeom: not loading the {what} {lib}: {reason}; it is built again", RuntimeWarning,
                  stacklevel=4)


def _temp_folder() -> Path:
    """This process's temporary cache folder, created on first use and removed at exit."""
    if _TEMP.get("pid") != os.getpid():  # first use, or a forked child: a folder of its own
        path = Path(tempfile.mkdtemp(prefix="lazygeom-cache-"))
        _TEMP.update(pid=os.getpid(), path=path)
        atexit.register(_remove_temp_folder, os.getpid(), path)
    return _TEMP["path"]


def _remove_temp_folder(pid: int, path: Path) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the handler
        shutil.rmtree(path, ignore_errors=True)


def stand_in(folder: Union[str, Path]) -> Optional[Path]:
    """The temporary folder this process writes to instead of ``folder``, if it had to.

    Args:
        folder: a cache folder.

    Returns:
        The temporary folder, or None when ``folder`` was writable so far (or this process is a
        forked child that has not needed a temporary folder of its own yet).
    """
    return _FALLBACKS.get(str(folder)) if _TEMP.get("pid") == os.getpid() else None


def fall_back(folder: Union[str, Path], error: OSError) -> Path:
    """Stop writing to ``folder`` in this process; write to a temporary folder instead.

    The temporary folder is this process's own (``lazygeom-cache-*`` in the system's temporary
    folder), removed when the process exits; kernels compiled there are compiled again by the next
    process. One ``RuntimeWarning`` per cache folder names the folder and the error.

    Args:
        folder: the cache folder that could not be written.
        error: why (``PermissionError``, ``OSError(ENOSPC)``...).

    Returns:
        The temporary folder.

    Raises:
        OSError: the temporary folder cannot be created either (the message names both).
    """
    try:
        temp = _temp_folder()
    except OSError as err:
        raise OSError(err.errno, f"lazygeom: cannot write to the kernel cache {folder} ({error}), nor create a "
                                 f"temporary folder ({err})") from error
    warned = str(folder) in _FALLBACKS  # by this process, or by its parent before a fork
    _FALLBACKS[str(folder)] = temp
    if not warned:
        warnings.warn(f"lazygeom: cannot write to the kernel cache {folder} ({error}); this process writes its "
                      f"kernels to the temporary folder {temp} instead (removed at exit)", RuntimeWarning,
                      stacklevel=3)
    return temp


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
            with open(tmp_lib, "rb") as fh:
                sig = _signature(os.fstat(fh.fileno()))
                digest = hashlib.sha256(fh.read()).hexdigest()
            record = {"format": RECORD_FORMAT, "file": lib.name, "size": sig[2], "sha256": digest}
            _write(tmp_rec, (json.dumps(record) + "\n").encode())
            os.replace(tmp_rec, record_path(lib))
            os.replace(tmp_lib, lib)
        finally:
            for tmp in (tmp_src, tmp_lib, tmp_rec):
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        _VERIFIED[str(lib)] = sig  # a rename keeps the inode and the mtime
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
