"""The ``lazygeom`` command, run in-process."""

from __future__ import annotations

import pytest
import torch

import lazygeom
from lazygeom import cli
from lazygeom.cli import demo


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert lazygeom.__version__ in capsys.readouterr().out


def test_backends_lists_reference(capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "available" in out


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) != 0
    assert cli.main(["no-such-command"]) != 0


@pytest.mark.parametrize("backend", [None, "reference"])
def test_demo_quick(capsys, backend):
    argv = ["demo", "--quick"] + ([] if backend is None else ["--backend", backend])
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for word in ("Euclidean", "Manhattan", "cosine", "hyperbolic", "Gaussian kernel product"):
        assert word in out, word
    assert "FAIL" not in out
    assert "all checks passed" in out
    assert "GB" in out and "RAM" in out  # the dense-memory explanation


def test_failed_check_gives_nonzero_exit(monkeypatch, capsys):
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: False)
    assert cli.main(["demo", "--quick"]) == 1


def _scores(rows=20, M=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, M, generator=g, dtype=torch.float64)


def test_check_knn_accepts_exact_answer():
    S = _scores()
    v, k = S.topk(5, dim=1, largest=False)
    res = demo.check_knn(v.float(), k, S, 5)
    assert res.ok and res.index_agreement == 1.0


def test_check_knn_rejects_wrong_indices():
    S = _scores()
    v, k = S.topk(5, dim=1, largest=False)
    wrong = k.clone()
    wrong[3, 2] = S[3].argmax()  # the farthest point instead of the third nearest
    res = demo.check_knn(v.float(), wrong, S, 5)
    assert not res.ok and res.max_choice_error > 1e-3


def test_check_knn_rejects_wrong_values():
    S = _scores()
    v, k = S.topk(5, dim=1, largest=False)
    res = demo.check_knn((v * 1.01).float(), k, S, 5)
    assert not res.ok


def test_dense_gaussian_rows_matches_full_matrix():
    g = torch.Generator().manual_seed(1)
    x, y, b = torch.rand(7, 3, generator=g), torch.rand(50, 3, generator=g), torch.randn(50, 2, generator=g)
    out, mag = demo.dense_gaussian_rows(x, y, b, sigma=0.3, chunk=16)
    K = torch.exp(-((x[:, None, :].double() - y[None, :, :].double()) ** 2).sum(-1) / (2 * 0.3**2))
    torch.testing.assert_close(out, K @ b.double())
    torch.testing.assert_close(mag, K @ b.double().abs())


def test_machine_ram_is_positive():
    ram = demo.machine_ram_bytes()
    assert ram is None or ram > 2**20


def test_cache_info_reports_damaged_kernels(tmp_path, monkeypatch, capsys):
    import hashlib
    import json

    from lazygeom.backends.cpu import compiler

    good, bad = tmp_path / f"lg_{'a' * 32}.so", tmp_path / f"lg_{'b' * 32}.so"
    for lib in (good, bad):
        lib.write_bytes(b"a library")
        record = {"format": compiler.RECORD_FORMAT, "file": lib.name, "size": 9,
                  "sha256": hashlib.sha256(b"a library").hexdigest()}
        compiler.record_path(lib).write_text(json.dumps(record))
    bad.write_bytes(b"a lib")  # truncated
    monkeypatch.setenv("LAZYGEOM_CACHE_DIR", str(tmp_path))
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "compiled kernels: 2" in out and "damaged kernels: 1" in out
    assert bad.name in out and "truncated" in out and good.name not in out
