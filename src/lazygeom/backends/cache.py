"""The on-disk cache's safety: verified entries, and a fallback folder when the cache cannot be written.

Every compiled library ``lg_<key>.so`` has a record ``lg_<key>.json`` (``{"format": 1, "file": ...,
"size": ..., "sha256": ...}``) written and renamed into place before the library; a library is
handed to ``ctypes.CDLL`` only if it matches its record (a truncated one would kill the process with
SIGBUS): a damaged or foreign entry is built again, with one ``RuntimeWarning`` (:func:`check_entry`,
:func:`warn_damaged`). Each library is verified once per process (its file identity is remembered).
When a cache folder cannot be written (read-only, permission denied, disk full), the process
writes to a temporary folder of its own, removed at exit, with one ``RuntimeWarning``
(:func:`fall_back`). Used by the CPU compiler (:mod:`.cpu.compiler`) and the Triton module files.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union


#: the version of the records ``lg_<key>.json``
RECORD_FORMAT = 1
#: what :func:`check_entry` says of a library that is not there
MISSING = "missing"
#: ... and of a library without a record (written by an older lazygeom, or another program)
_NO_RECORD = "no record (a file lazygeom did not write, or an interrupted write)"

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
        return _NO_RECORD
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

    Entries without a record are what a lazygeom older than the records left in the cache: one
    warning per folder covers them all (an upgrade would otherwise warn once per kernel).

    Args:
        lib: the entry's path.
        reason: what is wrong with it (:func:`check_entry`'s answer).
        what: what it is, for the message.
    """
    key = (str(Path(lib).parent), _NO_RECORD) if reason == _NO_RECORD else (str(lib), reason)
    if key in _WARNED:
        return
    _WARNED.add(key)
    also = (f"; the same for the other {what}s without a record in {Path(lib).parent} (`lazygeom cache clear` "
            f"empties it)" if reason == _NO_RECORD else "")
    warnings.warn(f"lazygeom: not loading the {what} {lib}: {reason}; it is built again{also}", RuntimeWarning,
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


def publish(tmp_lib: Path, lib: Path, tmp_rec: Path) -> None:
    """Move a freshly compiled library into the cache with its record (under the caller's lock).

    The record is renamed into place before the library, so that a reader never trusts a library
    without a matching record; the library is then known to be verified in this process.

    Args:
        tmp_lib: the compiled library, under a temporary name in the cache folder.
        lib: its name in the cache, ``lg_<key>.so``.
        tmp_rec: a temporary name for the record, in the cache folder.
    """
    with open(tmp_lib, "rb") as fh:
        sig = _signature(os.fstat(fh.fileno()))
        digest = hashlib.sha256(fh.read()).hexdigest()
    record = {"format": RECORD_FORMAT, "file": lib.name, "size": sig[2], "sha256": digest}
    with open(tmp_rec, "wb") as fh:
        fh.write((json.dumps(record) + "\n").encode())
    os.replace(tmp_rec, record_path(lib))
    os.replace(tmp_lib, lib)
    _VERIFIED[str(lib)] = sig  # a rename keeps the inode and the mtime


__all__ = ["MISSING", "RECORD_FORMAT", "check_entry", "fall_back", "publish", "record_path", "stand_in",
           "warn_damaged"]
