"""The lowering shared by the C++ and Triton code generators (``lazygeom.backends.lowering``).

Text only: nothing here compiles or runs a kernel, and Triton need not be installed. The
recorded sources pin the generated text, which names the kernels in the on-disk caches: a change
there must be deliberate (then update the records here, and say so in the change).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from lazygeom.backends import lowering
from lazygeom.backends.cpu import kernel as cpu_kernel
from lazygeom.backends.cpu.render import CPP, NONPOSITIVE_ARG
from lazygeom.backends.cpu.render import render as cpp_render
from lazygeom.backends.triton import kernel as triton_kernel
from lazygeom.backends.triton.dot import find_terms, render_terms
from lazygeom.backends.triton.render import TRITON
from lazygeom.backends.triton.render import render as triton_render
from lazygeom.formula import CAT_I, CAT_J, CAT_P, all_ops, composites, const, make, node, var
from lazygeom.reductions import Reduction

#: per op: argument dims and attrs (one configuration each)
OPS = {
    **{op: ((3,), ()) for op in ("neg", "exp", "log", "sqrt", "rsqrt", "abs", "sign", "step", "round", "floor",
                                 "relu", "sin", "cos", "tanh", "asin", "acos", "atan", "square", "inv", "log1p",
                                 "xlogx", "sinxdivx")},
    "pow": ((3,), (3,)), "add": ((3, 1), ()), "sub": ((1, 3), ()), "mul": ((3, 3), ()), "div": ((3, 3), ()),
    "atan2": ((3, 3), ()), "min2": ((3, 3), ()), "max2": ((1, 3), ()), "ifelse": ((3, 1, 3), ()),
    "sum": ((4,), ()), "bcast": ((1,), (3,)), "dot": ((3, 3), ()), "vmax": ((4,), ()), "vmin": ((4,), ()),
    "vargmax": ((4,), ()), "vargmin": ((4,), ()), "onehot": ((1,), (4,)), "extract": ((5,), (1, 3)),
    "pad": ((2,), (1, 5)), "concat": ((2, 3), ()), "matvecmult": ((6, 3), ()), "vecmatmult": ((2, 6), ()),
    "tensorprod": ((2, 3), ()),
}

_DEFINED = re.compile(r"^(?:const vec )?t(\d+)(?:_\w+)?\s*=")


def _defined(statements: list[str]) -> set[int]:
    """The nodes (by number k of their temporaries t{k}...) that statements define."""
    return {int(m.group(1)) for s in statements if (m := _DEFINED.match(s))}


def _op_formula(op: str, layout: str):
    """``op`` of fresh variables: i- and j-variables alternating ("ij"), a parameter first ("pj"),
    or i-variables and parameters only ("pi")."""
    dims, attrs = OPS[op]
    cats = {"ij": [CAT_I if k % 2 == 0 else CAT_J for k in range(len(dims))],
            "pj": [CAT_P] + [CAT_J] * (len(dims) - 1),
            "pi": [CAT_P] + [CAT_I] * (len(dims) - 1)}[layout]
    f = node(op, *(var(k, c, d) for k, (c, d) in enumerate(zip(cats, dims))), attrs=attrs)
    # used again through a constant: temporaries of temporaries, and a shared node
    return node("mul", f, node("add", f, const(2.5, f.dim))), CAT_J in cats


def test_every_op_has_a_case_and_a_snippet_on_both_backends():
    ops = set(all_ops()) - {"var", "const"}
    assert set(OPS) == ops, "an op has no case here"
    assert set(CPP) == ops and set(TRITON) == ops


def test_both_backends_share_the_vector_snippets():
    """Sums, dot products, extraction, matrix products... are written once, in lowering.SHARED."""
    assert {"sum", "dot", "bcast", "extract", "concat", "matvecmult", "vecmatmult", "tensorprod"} <= set(
        lowering.SHARED)
    for op, snippet in lowering.SHARED.items():
        assert CPP[op] is snippet and TRITON[op] is snippet, op


@pytest.mark.parametrize("layout", ["ij", "pj", "pi"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_lowers_with_the_same_hoisting_on_both_backends(op, layout):
    """One walk: node k is t{k} in both languages, before the loop over j in both or in neither,
    and a formula without j-variables is hoisted whole."""
    f, has_j = _op_formula(op, layout)
    cpp, tri = cpp_render([f]), triton_render([f])
    assert len(cpp.outputs[0]) == len(tri.outputs[0]) == f.dim
    before = _defined(cpp.hoisted) | _defined(tri.hoisted)
    inside = _defined(cpp.body) | _defined(tri.body)
    assert not before & inside, f"nodes {before & inside} hoisted by one backend only"
    if has_j:
        assert inside, "nothing depends on j"
    else:
        assert not cpp.body and not tri.body
    # without hoisting, nothing that depends on an i-variable is left before the loop
    reload = triton_render([f], hoist_i=False)
    assert not any("rows" in s for s in reload.hoisted)


def _x_p_y():
    x, y, p = var(0, CAT_I, 2), var(1, CAT_J, 2), var(2, CAT_P, 1)
    # exp(p * sum(x_i)) * y_j[1] + 2.5: an i-only subtree, a parameter, an extraction, a constant
    return node("add", node("mul", node("exp", node("mul", node("sum", x), p)), node("extract", y, attrs=(1, 1))),
                const(2.5))


def test_cpp_lowering_is_recorded():
    """i-variables and parameters are broadcasts (no temporary), constants literals; extract copies."""
    assert cpp_render([_x_p_y()]) == (
        ["const vec t1_0 = (bc(a0[0]) + bc(a0[1]));",
         "const vec t3_0 = (t1_0 * bc(a2[0]));",
         "const vec t4_0 = v_exp(t3_0);"],
        ["const vec t5_0 = vload(a1 + 0 * njp + j);",
         "const vec t5_1 = vload(a1 + 1 * njp + j);",
         "const vec t6_0 = t5_1;",
         "const vec t7_0 = (t4_0 * t6_0);",
         "const vec t9_0 = (t7_0 + bc((scalar)2.5));"],
        [["t9_0"]],
    )


def test_triton_lowering_is_recorded():
    """Loads are tiles; a constant is one shared [1, 1] tile; names pass through extract."""
    i_load = "tl.load(a0 + {} * nil + rows, mask=rmask, other=0.0).to(CT)[:, None]"
    j_load = "tl.load(a1 + {} * njl + cols, mask=cmask, other=0.0).to(CT)[None, :]"
    assert triton_render([_x_p_y()]) == (
        [f"t0_0 = {i_load.format(0)}",
         f"t0_1 = {i_load.format(1)}",
         "t1_0 = (t0_0 + t0_1)",
         "t2_0 = tl.load(a2 + 0 + tl.zeros([1, 1], tl.int32)).to(CT)",
         "t3_0 = (t1_0 * t2_0)",
         "t4_0 = tl.exp(t3_0)",
         "t8 = tl.full([1, 1], 2.5, CT)"],
        [f"t5_0 = {j_load.format(0)}",
         f"t5_1 = {j_load.format(1)}",
         "t7_0 = (t4_0 * t5_1)",
         "t9_0 = (t7_0 + t8)"],
        [["t9_0"]],
    )


def test_cpp_uses_the_cheaper_exp_where_the_sign_analysis_allows():
    x, y, p = var(0, CAT_I, 3), var(1, CAT_J, 3), var(2, CAT_P, 1)
    gauss = make("exp", make("neg", composites.sqdist(x, y)))
    scaled = make("exp", make("neg", make("mul", composites.sqdist(x, y), p)))  # the sign of p is unknown
    assert "v_exp_nonpos" in "\n".join(cpp_render([gauss]).body)
    assert "v_exp_nonpos" not in "\n".join(cpp_render([scaled]).body)
    assert set(NONPOSITIVE_ARG) <= set(CPP)
    assert "exp_nonpos" not in "\n".join(triton_render([gauss]).body)  # C++ only


def test_nodes_computed_elsewhere_prune_what_lies_below():
    """Triton's tl.dot tiles stand for their node; its operands are lowered only if used elsewhere."""
    x, y = var(0, CAT_I, 16), var(1, CAT_J, 16)
    d2 = composites.sqdist(x, y)
    alone = make("exp", make("neg", d2))
    hoisted, loop, tiles = render_terms(find_terms([alone]))
    low = triton_render([alone], tiles=tiles)
    assert not low.hoisted and len(low.body) == 2  # neg and exp of the tile: no load of x or y
    assert "dT0" in low.body[0]
    both = make("add", alone, make("sum", make("mul", x, y)))  # x and y are needed again
    _, _, tiles = render_terms(find_terms([both]))
    low = triton_render([both], tiles=tiles)
    assert any("a0 +" in s for s in low.hoisted) and any("a1 +" in s for s in low.body)


def test_an_op_without_snippet_is_an_error():
    dialect = lowering.Dialect(name="Test", snippets={}, load=lambda *a: "v", constant=lambda *a: ([], ["c"]),
                               assign="{name} = {expr}")
    with pytest.raises(NotImplementedError, match="Test renderer has no snippet for op 'exp'"):
        lowering.lower([make("exp", var(0, CAT_I, 1))], dialect)


# --- the generated kernels, pinned ----------------------------------------------------------------

def _cases():
    x, y, p = var(0, CAT_I, 3), var(1, CAT_J, 3), var(2, CAT_P, 1)
    b, v = var(3, CAT_J, 1), var(3, CAT_J, 2)
    gauss = make("exp", make("neg", make("mul", composites.sqdist(x, y), p)))
    cats = (CAT_I, CAT_J, CAT_P, CAT_J)
    return {
        "sum": (Reduction("sum", make("mul", gauss, b)), cats, (3, 3, 1, 1)),
        "lse_w": (Reduction("lse", make("neg", composites.sqdist(x, y)), weight=b), cats, (3, 3, 1, 1)),
        "ssmw": (Reduction("ssmw", gauss, weight=v), cats, (3, 3, 1, 2)),
        "max_argmax": (Reduction("max_argmax", make("sub", x, y)), (CAT_I, CAT_J), (3, 3)),
        "kmin_argkmin": (Reduction("kmin_argkmin", composites.sqdist(x, y), K=3), (CAT_I, CAT_J), (3, 3)),
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: sha256 prefixes of the generated sources (C++: dense and per-range; Triton: component-wise). The
#: C++ ones are those of the renderers before the shared lowering, but for the template's row range
#: ``[row0, row1)`` (chunked, interruptible calls: the formula code is unchanged); the Triton ones
#: differ from theirs by the docstrings of the lgmath helpers pasted into every module.
RECORDED = {
    "kmin_argkmin": ("22a881d24d819750", "8fe1e918727bb203", "98057a83de1369b0"),
    "lse_w": ("3e6a94edc3012ff4", "f75fef3309a6b1bd", "02555d600eca691a"),
    "max_argmax": ("929b2964932c2e7e", "bdb70d066b12c3be", "03a8ed9f5341b0a8"),
    "ssmw": ("6a1689314f1fd096", "bd30b896cf594c4e", "563e23f6ce24dfcd"),
    "sum": ("3c4be3acbc2d09bf", "9e295cb14be1ac98", "9821a27be1653908"),
}


@pytest.mark.parametrize("name", sorted(_cases()))
def test_generated_sources_are_recorded(name):
    red, cats, dims = _cases()[name]
    got = (_digest(cpu_kernel.generate(red, cats, dims)), _digest(cpu_kernel.generate(red, cats, dims, True)),
           _digest(triton_kernel.generate(red, cats, dims)))
    assert got == RECORDED[name], "the generated source changed (and with it the kernels' cache names)"


def test_dot_tiles_source_is_recorded():
    x, y = var(0, CAT_I, 32), var(1, CAT_J, 32)
    red = Reduction("kmin_argkmin", composites.sqdist(x, y), K=4)
    assert _digest(triton_kernel.generate(red, (CAT_I, CAT_J), (32, 32), dot_terms=True)) == "8ca1bbaf37301e90"
