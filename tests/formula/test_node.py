"""Properties of the IR node: hash-consing, structural keys, immutability, validation, pickling,
and the layer rule that the formula package needs neither torch nor numpy."""

from __future__ import annotations

import copy
import gc
import pickle
import re
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

import lazygeom.formula as LF
from lazygeom.formula import CAT_I, CAT_J, CAT_P, const, make, node, var

SRC = Path(LF.__file__).resolve().parents[1]  # .../src/lazygeom

# A formula touching every kind of node field: categories, attrs of several types, constants,
# shared sub-expressions. Built from source text so that a subprocess can build it too.
FORMULA_SRC = """
x, y, p = var(0, CAT_I, 3), var(1, CAT_J, 3), var(2, CAT_P, 1)
d = node("sub", x, y)
f = node("mul", node("exp", node("neg", node("dot", d, d))), node("pow", p, attrs=(3,)))
f = node("concat", f, node("extract", node("add", d, const(0.5)), attrs=(1, 2)))
"""


def build():
    ns = {"var": var, "node": node, "const": const, "CAT_I": CAT_I, "CAT_J": CAT_J, "CAT_P": CAT_P}
    exec(FORMULA_SRC, ns)
    return ns["f"]


# Loads lazygeom.formula alone: a bare parent package bypasses lazygeom/__init__.py (the torch
# front end), which keeps the subprocesses fast and shows that the IR stands on its own.
FORMULA_ONLY = f"""
import sys, types
pkg = types.ModuleType("lazygeom")
pkg.__path__ = [{str(SRC)!r}]
sys.modules["lazygeom"] = pkg
"""


def run_python(code: str, env_extra: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter with only lazygeom.formula importable; its stdout."""
    import os

    env = dict(os.environ, **(env_extra or {}))
    res = subprocess.run([sys.executable, "-c", FORMULA_ONLY + code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, f"subprocess failed:\n{res.stderr}"
    return res.stdout.strip()


# --- hash-consing and keys ---------------------------------------------------------------------


def test_same_structure_is_same_object():
    f, g = build(), build()
    assert f is g
    x = var(0, CAT_I, 3)
    assert node("exp", x) is node("exp", var(0, CAT_I, 3))
    assert make("exp", x) is node("exp", x)
    assert const(2.0) is const(2)  # integral floats are stored as ints: one constant, not two
    assert node("pow", x, attrs=[2]) is node("pow", x, attrs=(2,))


def test_shared_subexpressions_are_shared():
    f = build()
    subs = [n for n in f.walk() if n.op == "sub"]
    assert len(subs) == 1  # d appears three times, interned once
    assert len(list(f.walk())) == len({id(n) for n in f.walk()})


def test_key_equal_for_equal_formulas_even_after_collection():
    f = build()
    key, ref = f.key, weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None  # the rebuilt formula below is a new object, not a cached one
    assert build().key == key
    assert isinstance(key, str) and len(key) >= 16


def test_keys_differ_for_different_formulas():
    x3, y3 = var(0, CAT_I, 3), var(1, CAT_J, 3)
    variants = [
        var(0, CAT_I, 3), var(0, CAT_J, 3), var(0, CAT_P, 3), var(1, CAT_I, 3), var(0, CAT_I, 2),
        const(1), const(1, 3), const(2), const(0.5), const(-1),
        node("add", x3, y3), node("add", y3, x3), node("sub", x3, y3), node("mul", x3, y3),
        node("exp", x3), node("log", x3), node("pow", x3, attrs=(2,)), node("pow", x3, attrs=(3,)),
        node("extract", x3, attrs=(0, 2)), node("extract", x3, attrs=(1, 2)),
        node("pad", x3, attrs=(0, 5)), node("pad", x3, attrs=(1, 5)),
        node("exp", node("exp", x3)), node("concat", x3, y3), node("concat", y3, x3),
        build(),
    ]
    keys = [v.key for v in variants]
    assert len(set(keys)) == len(variants) == 26
    assert len({id(v) for v in variants}) == len(variants)


def test_intern_table_does_not_keep_formulas_alive():
    f = node("sinxdivx", node("atan", var(7, CAT_J, 11)))
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_key_stable_across_processes(seed):
    code = (
        "from lazygeom.formula import var, node, const, CAT_I, CAT_J, CAT_P\n"
        + FORMULA_SRC
        + "print(f.key)\n"
    )
    out = run_python(code, {"PYTHONHASHSEED": seed})
    assert out == build().key


# --- immutability ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["op", "args", "attrs", "dim", "_key", "new_field"])
def test_nodes_are_immutable(field):
    f = build()
    before = (f.op, f.args, f.attrs, f.dim, f.key)
    with pytest.raises(AttributeError):
        setattr(f, field, 0)
    if field != "new_field":
        with pytest.raises(AttributeError):
            delattr(f, field)
    assert (f.op, f.args, f.attrs, f.dim, f.key) == before


def test_replace_builds_a_new_validated_node():
    x = var(0, CAT_I, 5)
    e = node("extract", x, attrs=(1, 2))
    e2 = e.replace(attrs=(2, 3))
    assert e2 is node("extract", x, attrs=(2, 3)) and e2.dim == 3 and e.dim == 2
    assert e.replace(op="pad", attrs=(0, 7)).dim == 7
    with pytest.raises(ValueError, match=r"\[4:7\].*dimension 5"):
        e.replace(attrs=(4, 3))


# --- validation --------------------------------------------------------------------------------

x3, y2, s1 = var(0, CAT_I, 3), var(1, CAT_J, 2), var(2, CAT_P, 1)

DIM_ERRORS = [
    ("add", (x3, y2), (), ("3", "2")),
    ("mul", (y2, x3), (), ("3", "2")),
    ("ifelse", (s1, x3, y2), (), ("3", "2")),
    ("dot", (x3, y2), (), ("3", "2")),
    ("dot", (const(0, 3), y2), (), ("3", "2")),  # a simplification rule must not hide the error
    ("mul", (const(0, 3), y2), (), ("3", "2")),
    ("extract", (x3,), (2, 2), ("2:4", "3")),
    ("extract", (const(1, 3),), (2, 5), ("2:7", "3")),
    ("pad", (x3,), (1, 3), ("3", "1")),
    ("pad", (const(0, 3),), (2, 4), ("3", "4")),
    ("bcast", (x3,), (5,), ("3",)),
    ("bcast", (const(1, 3),), (5,), ("3",)),
    ("onehot", (y2,), (4,), ("2",)),
    ("matvecmult", (var(3, CAT_I, 5), y2), (), ("5", "2")),
    ("vecmatmult", (y2, var(3, CAT_I, 5)), (), ("5", "2")),
]


@pytest.mark.parametrize("build_fn", [node, make], ids=["node", "make"])
@pytest.mark.parametrize("op,args,attrs,dims", DIM_ERRORS, ids=[f"{e[0]}{i}" for i, e in enumerate(DIM_ERRORS)])
def test_dimension_errors_name_the_dims(build_fn, op, args, attrs, dims):
    with pytest.raises(ValueError) as info:
        build_fn(op, *args, attrs=attrs)
    msg = str(info.value)
    for d in dims:
        assert re.search(rf"(?<![0-9]){re.escape(d)}(?![0-9])", msg), f"{d!r} not in {msg!r}"


@pytest.mark.parametrize("build_fn", [node, make], ids=["node", "make"])
def test_arity_and_type_errors(build_fn):
    with pytest.raises(TypeError, match="2 argument"):
        build_fn("add", x3)
    with pytest.raises(TypeError, match="1 argument"):
        build_fn("exp", x3, x3)
    with pytest.raises(TypeError, match="Nodes"):
        build_fn("add", x3, 1.0)
    with pytest.raises(KeyError, match="no_such_op"):
        build_fn("no_such_op", x3)


# --- pickling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_formula",
    [lambda: var(0, CAT_I, 3), lambda: const(0.25, 4), lambda: node("pow", var(0, CAT_J, 2), attrs=(-2,)), build],
    ids=["var", "const", "pow", "compound"],
)
def test_pickle_round_trip(make_formula):
    f = make_formula()
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        g = pickle.loads(pickle.dumps(f, protocol=protocol))
        assert g is f
    assert copy.copy(f) is f and copy.deepcopy(f) is f


def test_pickle_across_processes():
    f = build()
    code = (
        "import pickle, sys\n"
        f"f = pickle.loads({pickle.dumps(f)!r})\n"
        "print(f.key, f.dim, len(list(f.walk())))\n"
    )
    assert run_python(code).split() == [f.key, str(f.dim), str(len(list(f.walk())))]


# --- layering ----------------------------------------------------------------------------------


def test_formula_package_imports_neither_torch_nor_numpy():
    """lazygeom.formula, loaded alone (see FORMULA_ONLY), brings no torch, numpy or other layer."""
    code = """
import lazygeom.formula as F
from lazygeom.formula import composites
f = composites.sqdist(F.var(0, F.CAT_I, 3), F.var(1, F.CAT_J, 3))
F.vjp(f, [F.var(0, F.CAT_I, 3)], F.const(1))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy")))
print(sorted(m for m in sys.modules if m.startswith("lazygeom.") and not m.startswith("lazygeom.formula")))
"""
    assert run_python(code).splitlines() == ["[]", "[]"]


def test_formula_modules_import_only_the_standard_library_and_each_other():
    allowed_roots = set(sys.stdlib_module_names) | {"__future__"}
    files = sorted((SRC / "formula").glob("*.py"))
    assert len(files) >= 8
    pattern = re.compile(r"^\s*(?:from\s+(\.*)([\w.]*)\s+import|import\s+([\w.]+))", re.M)
    for path in files:
        for dots, mod, plain in pattern.findall(path.read_text()):
            if dots:
                assert dots == ".", f"{path.name}: imports outside the formula layer: from {dots}{mod}"
                continue
            root = (mod or plain).split(".")[0]
            assert root in allowed_roots, f"{path.name}: imports {root!r}"
