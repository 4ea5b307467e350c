"""The on-disk kernel cache heals itself: a damaged or foreign entry is built again (one warning),
never loaded; a cache folder that cannot be written (read-only, disk full) gives way to a
temporary folder (one warning); concurrent processes leave one valid entry.

Loading a damaged library can kill the interpreter (SIGBUS on a truncated one), so those runs
happen in subprocesses (:data:`SCRIPT`), on copies of a cache built once for the module.
"""

from __future__ import annotations

import builtins
import errno
import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import lazygeom
import lazygeom.backends.policy
from lazygeom import Vi, Vj
from lazygeom.backends.cpu import backend as cpu_backend
from lazygeom.backends import cache as disk_cache
from lazygeom.backends.cpu import compiler
from lazygeom.backends.triton import backend as triton_backend

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")

#: ``python -c SCRIPT cache_dir backend formulas [start_at]``: runs the formulas (comma-separated
#: names of FORMULAS) and prints their largest errors and lazygeom's warnings as JSON
SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np, torch, lazygeom
    from lazygeom import Vi, Vj
    cache, backend, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    if len(sys.argv) > 4:  # start together with the other processes
        time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
    torch.manual_seed(0)
    x, y, b = torch.randn(30, 3), torch.randn(40, 3), torch.randn(40, 1)
    d2 = torch.cdist(x, y) ** 2
    FORMULAS = {
        "gauss": (lambda: (-Vi(x).sqdist(Vj(y))).exp() * Vj(b), torch.exp(-d2) @ b),
        "cauchy": (lambda: (1 / (1 + Vi(x).sqdist(Vj(y)))) * Vj(b), (1 / (1 + d2)) @ b),
        "laplace": (lambda: (-Vi(x).sqdist(Vj(y)).sqrt()).exp() * Vj(b), torch.exp(-d2.sqrt()) @ b),
    }
    errors = []
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        with lazygeom.config(cache_dir=cache):
            for name in names:
                F, ref = FORMULAS[name]
                errors.append(float((F().sum(dim=1, backend=backend) - ref).abs().max()))
    print(json.dumps({"errors": errors,
                      "warnings": [str(w.message) for w in caught if str(w.message).startswith("lazygeom:")]}))
    """
)


def _start(cache: Path, backend: str = "cpu", formulas: str = "gauss", start_at: float | None = None,
           interpret: bool = False, read_only_mount: bool = False) -> subprocess.Popen:
    env = dict(os.environ)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    args = [sys.executable, "-c", SCRIPT, str(cache), backend, formulas]
    if start_at is not None:
        args.append(str(start_at))
    if read_only_mount:  # in a mount namespace of its own, where the cache is mounted read-only
        args = ["unshare", "-m", "sh", "-c", f'{_RO_MOUNT} && shift && exec "$@"', "sh", str(cache), *args]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_RO_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"'


@functools.lru_cache(maxsize=None)
def _read_only_mounts() -> bool:
    """Whether this process can mount a folder read-only in a namespace of its own (root, and allowed)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        cmd = ["unshare", "-m", "sh", "-c", f'{_RO_MOUNT} && ! touch "$1/x" 2>/dev/null', "sh", d]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"the process failed (status {proc.returncode}, -7 is SIGBUS):\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert all(e < 1e-4 for e in result["errors"]), result
    return result


def _run(cache: Path, **kw) -> dict:
    return _result(_start(cache, **kw))


def _entries(cache: Path) -> list[Path]:
    libs = compiler.cache_entries(str(cache))
    assert not list(cache.glob("*.tmp*")), "temporary files were left behind"
    return libs


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A cache holding the Gaussian kernel sum's library, written by a process of its own."""
    cache = tmp_path_factory.mktemp("pristine") / "cache"
    assert _run(cache)["warnings"] == []
    assert len(_entries(cache)) == 1
    return cache


@pytest.fixture
def cache(pristine, tmp_path) -> Path:
    """A copy of the pristine cache, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "cache"))


def _truncate(lib: Path) -> None:
    os.truncate(lib, lib.stat().st_size // 2)


def _garbage(lib: Path) -> None:  # same size: only the hash tells
    lib.write_bytes(os.urandom(lib.stat().st_size))


def _no_record(lib: Path) -> None:
    compiler.record_path(lib).unlink()


def _bad_record(lib: Path) -> None:
    compiler.record_path(lib).write_text("{")


@pytest.mark.parametrize("damage, reason", [(_truncate, "truncated"), (_garbage, "SHA-256"),
                                             (_no_record, "no record"), (_bad_record, "malformed record")],
                         ids=["truncated", "garbage", "no-record", "bad-record"])
def test_a_damaged_library_is_rebuilt_with_one_warning(cache, damage, reason):
    (lib,) = _entries(cache)
    damage(lib)
    assert compiler.check_entry(lib) is not None
    (message,) = _run(cache)["warnings"]
    assert lib.name in message and reason in message and "built again" in message
    assert _entries(cache) == [lib] and compiler.check_entry(lib) is None
    assert _run(cache)["warnings"] == []  # healed


def test_concurrent_processes_compile_one_valid_entry(tmp_path):
    start = time.time() + 4  # after the imports: all compile at once
    procs = [_start(tmp_path, start_at=start) for _ in range(4)]
    assert all(_result(p)["warnings"] == [] for p in procs)
    (lib,) = _entries(tmp_path)
    assert compiler.check_entry(lib) is None


def test_concurrent_processes_rebuild_a_damaged_entry_once(cache):
    (lib,) = _entries(cache)
    _truncate(lib)
    start = time.time() + 4
    procs = [_start(cache, start_at=start) for _ in range(4)]
    messages = [m for p in procs for m in _result(p)["warnings"]]
    assert len(messages) == 1 and lib.name in messages[0]  # the others waited for its rebuild
    assert _entries(cache) == [lib] and compiler.check_entry(lib) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod (the monkeypatched tests cover it)")
def test_read_only_folder(cache):
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    cache.chmod(0o555)
    try:
        result = _run(cache, formulas="gauss,cauchy,laplace")
    finally:
        cache.chmod(0o755)
    (message,) = result["warnings"]  # the misses fell back; the verified hit loaded as is
    assert str(cache) in message and "temporary folder" in message
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before


@pytest.mark.skipif(not _read_only_mounts(), reason="cannot mount a folder read-only here (needs root and unshare)")
def test_read_only_mount(cache):
    """A really read-only folder, for root too (EROFS): the verified hit loads, misses fall back."""
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    (message,) = _result(_start(cache, formulas="gauss,cauchy", read_only_mount=True))["warnings"]
    assert str(cache) in message and "Read-only file system" in message and "temporary folder" in message
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    (lib,) = _entries(cache)
    _truncate(lib)  # damaged and read-only: not loaded, compiled in the temporary folder
    messages = _result(_start(cache, read_only_mount=True))["warnings"]
    assert len(messages) == 2 and any(lib.name in m and "truncated" in m for m in messages)


# --- in this process: writes refused by monkeypatching ----------------------------------------


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A fresh per-process cache state, a fresh CPU backend, temporary folders under tmp_path."""
    monkeypatch.setattr(disk_cache, "_VERIFIED", {}, raising=False)
    monkeypatch.setattr(disk_cache, "_WARNED", set(), raising=False)
    monkeypatch.setattr(disk_cache, "_FALLBACKS", {}, raising=False)
    monkeypatch.setattr(disk_cache, "_TEMP", {}, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(lazygeom.backends.policy, "_CPU", cpu_backend.CpuBackend())


def _refuse_writes(monkeypatch, folder: Path, error: OSError) -> list:
    """Make every write into ``folder`` (open for writing, rename into it, mkdir) raise ``error``."""
    attempts: list = []
    real_open, real_replace, real_mkdir = builtins.open, os.replace, os.mkdir
    root = folder.resolve()

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).resolve().is_relative_to(root)

    def refuse(path):
        attempts.append(str(path))
        raise type(error)(error.errno, error.strerror, str(path))

    def fake_open(file, mode="r", *a, **k):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def fake_replace(src, dst, *a, **k):
        if inside(dst):
            refuse(dst)
        return real_replace(src, dst, *a, **k)

    def fake_mkdir(path, *a, **k):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "replace", fake_replace)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return attempts


def _sums(folder: Path, formulas: list[str]) -> list[str]:
    """Run the formulas in this process, check them, return lazygeom's warnings."""
    torch.manual_seed(0)
    x, y, b = torch.randn(30, 3), torch.randn(40, 3), torch.randn(40, 1)
    d2 = torch.cdist(x, y) ** 2
    cases = {
        "gauss": (lambda: (-Vi(x).sqdist(Vj(y))).exp() * Vj(b), torch.exp(-d2) @ b),
        "cauchy": (lambda: (1 / (1 + Vi(x).sqdist(Vj(y)))) * Vj(b), (1 / (1 + d2)) @ b),
        "laplace": (lambda: (-Vi(x).sqdist(Vj(y)).sqrt()).exp() * Vj(b), torch.exp(-d2.sqrt()) @ b),
    }
    with warnings.catch_warnings(record=True) as caught, lazygeom.config(cache_dir=str(folder)):
        warnings.simplefilter("always")
        for name in formulas:
            F, ref = cases[name]
            assert torch.allclose(F().sum(dim=1, backend="cpu"), ref, atol=1e-4)
    return [str(w.message) for w in caught if str(w.message).startswith("lazygeom:")]


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EROFS, "Read-only file system")], ids=["EACCES", "EROFS"])
def test_unwritable_folder_falls_back_to_a_temporary_folder(cache, fresh, monkeypatch, error):
    before = sorted(p.name for p in cache.iterdir())
    attempts = _refuse_writes(monkeypatch, cache, error)
    assert _sums(cache, ["gauss"]) == [] and attempts == []  # verified: loaded without any write
    (message,) = _sums(cache, ["cauchy", "laplace"])  # two misses, one warning
    assert str(cache) in message and error.strerror in message and "temporary folder" in message
    temp = compiler.stand_in(cache)
    assert temp is not None and len(compiler.cache_entries(str(temp))) == 2
    assert sorted(p.name for p in cache.iterdir()) == before
    monkeypatch.setattr(lazygeom.backends.policy, "_CPU", cpu_backend.CpuBackend())
    assert _sums(cache, ["cauchy", "gauss"]) == []  # found in the temporary folder


def test_damaged_entry_in_an_unwritable_folder(cache, fresh, monkeypatch):
    (lib,) = _entries(cache)
    os.truncate(lib, 0)  # empty: even the old code failed cleanly here (no SIGBUS)
    _refuse_writes(monkeypatch, cache, PermissionError(errno.EACCES, "Permission denied"))
    messages = _sums(cache, ["gauss"])
    assert len(messages) == 2  # the damage, and the fall-back
    assert any(lib.name in m and "truncated" in m for m in messages)
    assert any(str(cache) in m and "temporary folder" in m for m in messages)


def test_full_disk_falls_back_to_a_temporary_folder(tmp_path, fresh, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    _refuse_writes(monkeypatch, folder, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    (message,) = _sums(folder, ["gauss", "cauchy"])
    assert str(folder) in message and os.strerror(errno.ENOSPC) in message
    assert compiler.cache_entries(str(folder)) == []


def test_compiler_reporting_a_full_disk_falls_back(tmp_path, fresh, monkeypatch):
    folder = tmp_path / "cache"
    real_run = compiler.subprocess.run

    def full(cmd, *a, **k):
        if str(folder) in cmd[-1]:  # the output file
            return subprocess.CompletedProcess(cmd, 1, "", "ld: final link failed: No space left on device\n")
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(compiler.subprocess, "run", full)
    (message,) = _sums(folder, ["gauss"])
    assert str(folder) in message and "No space left on device" in message
    assert compiler.cache_entries(str(folder)) == []


def test_no_writable_folder_at_all_is_a_clear_error(tmp_path, fresh, monkeypatch):
    folder = tmp_path / "cache"
    _refuse_writes(monkeypatch, folder, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def no_temp(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", no_temp)
    with pytest.raises(OSError, match=f"kernel cache {re.escape(str(folder))}.*No space left on device"):
        _sums(folder, ["gauss"])


def test_a_library_is_hashed_once_per_process(tmp_path, fresh, monkeypatch):
    assert _sums(tmp_path / "cache", ["gauss"]) == []
    (lib,) = _entries(tmp_path / "cache")
    read = []
    real = disk_cache._read_record
    monkeypatch.setattr(disk_cache, "_read_record", lambda p: read.append(p) or real(p))
    assert compiler.check_entry(lib) is None and read == []  # verified when written
    os.utime(lib, ns=(time.time_ns(), time.time_ns() + 10**9))  # changed on disk: checked again
    assert compiler.check_entry(lib) is None and read == [lib]


# --- Triton module files -----------------------------------------------------------------------


SOURCE = "X = 1\n"


def _name(source: str) -> str:
    return f"lgt_{hashlib.blake2b(source.encode(), digest_size=16).hexdigest()}.py"


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_triton_module_file_is_written_again(tmp_path, fresh, damage):
    path = triton_backend.write_source(SOURCE, tmp_path)
    assert path == tmp_path / _name(SOURCE) and path.read_text() == SOURCE
    path.write_text(SOURCE[:3] if damage == "truncated" else "X = 2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert triton_backend.write_source(SOURCE, tmp_path) == path
        assert triton_backend.write_source(SOURCE, tmp_path) == path
    assert path.read_text() == SOURCE
    (w,) = caught
    assert issubclass(w.category, RuntimeWarning) and path.name in str(w.message)


def test_triton_module_file_in_an_unwritable_folder(tmp_path, fresh, monkeypatch):
    folder = tmp_path / "triton"
    present = triton_backend.write_source(SOURCE, folder)
    attempts = _refuse_writes(monkeypatch, folder, PermissionError(errno.EACCES, "Permission denied"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert triton_backend.write_source(SOURCE, folder) == present and attempts == []
        other = triton_backend.write_source("X = 3\n", folder)
        assert triton_backend.write_source("X = 4\n", folder).parent == other.parent
    assert other.parent == compiler.stand_in(folder) and other.read_text() == "X = 3\n"
    (w,) = caught
    assert str(folder) in str(w.message) and "Permission denied" in str(w.message)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_triton_module_is_regenerated_under_the_interpreter(tmp_path, damage):
    cache = tmp_path / "cache"
    assert _run(cache, backend="triton", interpret=True)["warnings"] == []
    (path,) = (cache / "triton").glob("lgt_*.py")
    source = path.read_text()
    path.write_text(source[: len(source) // 2] if damage == "truncated" else "lg_kernel = None\n")
    (message,) = _run(cache, backend="triton", interpret=True)["warnings"]
    assert path.name in message and "built again" in message
    assert path.read_text() == source and not list((cache / "triton").glob("*.tmp"))


def test_a_forked_child_falls_back_to_a_folder_of_its_own(tmp_path, fresh):
    folder = tmp_path / "cache"
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.warns(RuntimeWarning, match="temporary folder"):
        parent = compiler.fall_back(folder, error)
    assert compiler.stand_in(folder) == parent
    disk_cache._TEMP["pid"] = -1  # as seen from a child forked after the fall-back: not its folder
    assert compiler.stand_in(folder) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its parent warned already
        child = compiler.fall_back(folder, error)
    assert child != parent and compiler.stand_in(folder) == child and child.is_dir()


def test_entries_without_a_record_warn_once_per_folder(tmp_path, fresh):
    """What an older lazygeom left (libraries without records): one warning per folder, each rebuilt;
    a damaged library with a record still gets a warning of its own."""
    folder = tmp_path / "cache"
    assert _sums(folder, ["gauss", "cauchy", "laplace"]) == []
    libs = _entries(folder)
    assert len(libs) == 3
    for lib in libs:
        compiler.record_path(lib).unlink()
    # (no truncation here: this process has the libraries mapped)
    compiler.record_path(libs[0]).write_text(json.dumps({"format": 1, "file": libs[0].name, "size": 1,
                                                         "sha256": "0" * 64}))
    disk_cache._VERIFIED.clear()
    cpu = cpu_backend.CpuBackend()  # no kernel in memory: every call looks in the folder
    lazygeom.backends.policy._CPU, saved = cpu, lazygeom.backends.policy._CPU
    try:
        messages = _sums(folder, ["gauss", "cauchy", "laplace"])
    finally:
        lazygeom.backends.policy._CPU = saved
    no_record = [m for m in messages if "no record" in m]
    assert len(no_record) == 1 and "without a record" in no_record[0] and len(messages) == 2
    assert all(compiler.check_entry(lib) is None for lib in _entries(folder))
