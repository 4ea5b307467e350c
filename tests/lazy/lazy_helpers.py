"""Dense PyTorch references for the engine tests (the N-by-M matrix is materialised here only).

Layouts follow pykeops: i-variables ``(*b, N, 1, D)``, j-variables ``(*b, 1, M, D)``; a dense
formula is ``(*b, N, M, E)``. A reduction over i (``dim=0`` in lazygeom's axis convention, tensor
axis -3) gives ``(*b, M, E)``, over j (axis -2) ``(*b, N, E)``; K-selections give
``(*b, rows, K)`` for scalar formulas and ``(*b, rows, K, E)`` otherwise.
"""

from __future__ import annotations

import pytest
import torch

from lazygeom import LazyTensor, Pm

#: relative (normwise) tolerance of a float result against the float64 dense reference
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}

#: batch shapes (of the i-side data, of the j-side data), broadcasting included
BATCHES = {
    "none": ((), ()),
    "B": ((2,), (2,)),
    "B_vs_1": ((2,), (1,)),
    "1_vs_B": ((1,), (3,)),
    "B_vs_none": ((2,), ()),
    "2d_bcast": ((2, 1), (1, 3)),
}


def lazy_dim(nbatch: int, over: int) -> int:
    """The pykeops ``dim=`` reducing over i (over=0) or j (over=1) with ``nbatch`` batch dims."""
    return nbatch + over


def axis(over: int) -> int:
    """The dense tensor axis reduced over: -3 (i) or -2 (j)."""
    return -3 if over == 0 else -2


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| (normwise: robust for entries near zero)."""
    out, ref = out.detach().double(), ref.detach().double()
    scale = ref.abs().max().clamp_min(1e-300)
    return float((out - ref).abs().max() / scale)


def assert_rel(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype = torch.float64, factor: float = 1.0):
    """Same shape, finite where the reference is, and relative error within the dtype's tolerance."""
    assert tuple(out.shape) == tuple(ref.shape), f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.equal(torch.isfinite(out), torch.isfinite(ref)), "non-finite entries differ"
    fin = torch.isfinite(ref)
    if fin.any():
        err = rel_err(out[fin], ref[fin])
        assert err <= TOL[dtype] * factor, f"relative error {err:.3e} > {TOL[dtype] * factor:.1e}"
    inf = ~fin
    if inf.any():
        assert torch.equal(out[inf].double(), ref[inf].double()), "infinite entries differ"


# --- dense reductions ------------------------------------------------------------------------


def _rows_last(t: torch.Tensor, r: int) -> torch.Tensor:
    """(*b, N, K, E) from a tensor sorted along axis r (a K-axis in place of the reduced one)."""
    return t.movedim(-3, -2) if r == -3 else t


def dense_reduce(kind: str, F: torch.Tensor, over: int, K: int = 1, w: torch.Tensor | None = None):
    """Reference of a reduction of the dense formula ``F`` (``(*b, N, M, E)``).

    ``w`` is the weight formula (lse: positive weights; ssmw: the values V), dense and broadcastable.
    Returns a tuple like lazygeom (one or two tensors).
    """
    r = axis(over)
    E = F.shape[-1] if w is None else max(F.shape[-1], w.shape[-1])
    if kind == "sum":
        return (F.sum(r),)
    if kind == "lse":
        S = F if w is None else F + torch.log(w)
        return (torch.logsumexp(S.expand(*S.shape[:-1], E), r),)
    if kind == "ssmw":
        P = torch.softmax(F.expand(*F.shape[:-1], E), r)
        return ((P * w).sum(r),)
    desc = kind.startswith("max") or kind == "argmax"
    srt = torch.sort(F, dim=r, descending=desc, stable=True)  # stable: ties -> first index
    if kind in ("min", "max", "argmin", "argmax", "min_argmin", "max_argmax"):
        v, k = srt.values.select(r, 0), srt.indices.select(r, 0)
        return {"min": (v,), "max": (v,), "argmin": (k,), "argmax": (k,)}.get(kind, (v, k))
    v = _rows_last(srt.values.narrow(r, 0, K), r)
    k = _rows_last(srt.indices.narrow(r, 0, K), r)
    if F.shape[-1] == 1:
        v, k = v.squeeze(-1), k.squeeze(-1)
    return {"kmin": (v,), "argkmin": (k,), "kmin_argkmin": (v, k)}[kind]


def lazy_reduce(kind: str, F, over: int, backend: str, K: int = 1, w=None):
    """Run the lazygeom reduction ``kind`` on the LazyTensor ``F``; returns a tuple."""
    dim = lazy_dim(F.nbatchdims, over)
    if kind == "sum":
        out = F.sum(dim=dim, backend=backend)
    elif kind == "lse":
        out = F.logsumexp(dim=dim, weight=w, backend=backend)
    elif kind == "ssmw":
        out = F.sumsoftmaxweight(w, dim=dim, backend=backend)
    elif kind in ("kmin", "argkmin", "kmin_argkmin"):
        name = {"kmin": "Kmin", "argkmin": "argKmin", "kmin_argkmin": "Kmin_argKmin"}[kind]
        out = getattr(F, name)(K, dim=dim, backend=backend)
    else:
        out = getattr(F, kind)(dim=dim, backend=backend)
    return out if isinstance(out, tuple) else (out,)


def check_indices(idx: torch.Tensor, ref_idx: torch.Tensor, F: torch.Tensor, over: int, K: int | None,
                  dtype: torch.dtype, exact: bool):
    """Indices are int64 and select the reference's values.

    With ``exact`` (float64 data, or data without near-ties) the indices must be equal; otherwise
    the dense values at the returned indices must equal the dense extremal values, which tolerates
    swaps of near-equal candidates caused by float32 rounding.
    """
    assert idx.dtype == torch.int64
    assert not idx.requires_grad
    assert tuple(idx.shape) == tuple(ref_idx.shape)
    if exact:
        assert torch.equal(idx, ref_idx)
        return
    r = axis(over)
    n_red = F.shape[r]
    assert int(idx.min()) >= 0 and int(idx.max()) < n_red
    picked, want = (_gather(F, idx, over, K), _gather(F, ref_idx, over, K))
    assert_rel(picked, want, dtype)


def _gather(F: torch.Tensor, idx: torch.Tensor, over: int, K: int | None) -> torch.Tensor:
    """Dense values F at reduced-axis indices ``idx`` (layout of the lazygeom outputs)."""
    r = axis(over)
    Fr = F.movedim(r, -2)  # (*b, rows, n_red, E)
    E = F.shape[-1]
    if K is None:
        i2 = idx.unsqueeze(-2)  # (*b, rows, 1, E)
    else:
        i2 = idx if idx.ndim == F.ndim else idx.unsqueeze(-1)  # (*b, rows, K, E)
    shape = torch.broadcast_shapes(Fr.shape[:-2], i2.shape[:-2])
    Fr = Fr.expand(*shape, *Fr.shape[-2:])
    i2 = i2.expand(*shape, *i2.shape[-2:])
    out = torch.gather(Fr, -2, i2.expand(*i2.shape[:-1], E))
    if K is None:
        return out.squeeze(-2)
    return out if idx.ndim == F.ndim else out.squeeze(-1)


def small_tiles(monkeypatch, backend: str, elements: int = 64):
    """Force several i- and j-tiles in the reference backend, to exercise the streaming code."""
    if backend == "reference":
        import lazygeom.backends.policy as B

        monkeypatch.setattr(B._REFERENCE, "tile_elements", elements)


def randn(*shape, dtype=torch.float64, gen=None, requires_grad=False) -> torch.Tensor:
    t = torch.randn(*shape, dtype=torch.float64, generator=gen).to(dtype)
    return t.requires_grad_(requires_grad)


def rand(*shape, dtype=torch.float64, gen=None, low=0.0, high=1.0, requires_grad=False) -> torch.Tensor:
    t = (low + (high - low) * torch.rand(*shape, dtype=torch.float64, generator=gen)).to(dtype)
    return t.requires_grad_(requires_grad)


def batch_param(name: str):
    return pytest.param(BATCHES[name], id=name)


ALL_BATCHES = [batch_param(k) for k in BATCHES]


# --- formulas used by several test files (lazy=True: a LazyTensor; else dense torch) ---------


def scalar_formula(x, y, p, lazy: bool):
    """0.5 |x - y|^2 + sin(<p x, y>): real values of both signs, dimension 1."""
    if lazy:
        x, y, P = LazyTensor(x), LazyTensor(y), Pm(p)
        return (x - y).sqnorm2() * 0.5 + ((x * P) | y).sin()
    return 0.5 * ((x - y) ** 2).sum(-1, keepdim=True) + ((x * p) * y).sum(-1, keepdim=True).sin()


def vector_formula(x, y, p, lazy: bool):
    """|x - y| * p + cos(y): dimension D, coordinatewise different minimisers."""
    if lazy:
        x, y, P = LazyTensor(x), LazyTensor(y), Pm(p)
        return (x - y).abs() * P + y.cos()
    return (x - y).abs() * p + y.cos()


FORMULAS = {"scalar": scalar_formula, "vector": vector_formula}
