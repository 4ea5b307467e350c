"""The package's layers and the direction of imports (docs/architecture.md, section 1).

Read from the source with ``ast`` (every ``import``, also those inside functions, which would
otherwise hide a cycle): nothing here imports the package.

- ``formula`` and ``reductions`` import neither torch nor NumPy;
- a module imports only from its own layer or the layers below it;
- ``backends`` import no domain package, and domain packages reach a backend only through
  ``lazygeom.backends`` (its policy and its data types), never a concrete one;
- no import cycles between subpackages (top-level ones, and those inside a domain package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lazygeom.formula as LF

SRC = Path(LF.__file__).resolve().parents[1]  # .../src/lazygeom

#: the layers from the bottom up; a module may import its own layer and those before it.
#: settings and errors sit beside the stack (anyone may import them); the package root and the
#: pykeops-named shims (lazygeom.numpy, lazygeom.cluster) re-export from above.
LAYERS = [
    {"formula"},
    {"reductions"},
    {"backends"},
    {"sparse"},
    {"lazy"},
    {"linalg"},
    {"ot", "ml", "shapes", "dask"},
    {"cli"},
]
ANYWHERE = {"settings", "errors"}
FRONT = {"__init__", "numpy", "cluster"}
DOMAINS = {"sparse", "lazy", "linalg", "ot", "ml", "shapes", "dask"}
#: what a domain package may import from lazygeom.backends: the package itself (its policy and
#: data types), never a concrete backend
BACKEND_ENTRY = {"lazygeom.backends", "lazygeom.backends.policy", "lazygeom.backends.base"}
NO_ARRAYS = {"formula", "reductions"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """The absolute names of the modules ``path`` imports (``from x import y``: ``x`` and ``x.y``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}
IMPORTS = {m: _imports(p) for m, p in MODULES.items()}


def _part(module: str, depth: int = 1) -> str:
    """``lazygeom.ot.solver.loop`` -> ``ot`` (depth 1), ``ot.solver`` (depth 2)."""
    return ".".join(module.split(".")[1: 1 + depth])


def _internal(imports: list[str]) -> list[str]:
    """The imports of lazygeom modules (``from . import x`` of a name that is not a module: its package)."""
    out = []
    for m in imports:
        if not m.startswith("lazygeom"):
            continue
        while m not in MODULES and "." in m:
            m = m.rsplit(".", 1)[0]
        out.append(m)
    return out


def _layer(top: str) -> int | None:
    for k, layer in enumerate(LAYERS):
        if top in layer:
            return k
    return None


def test_every_top_level_part_has_a_place():
    tops = {_part(m) for m in MODULES if m != "lazygeom"}
    placed = set().union(*LAYERS) | ANYWHERE | FRONT
    assert tops <= placed, f"place these in LAYERS: {sorted(tops - placed)}"


@pytest.mark.parametrize("top", sorted(NO_ARRAYS))
def test_ir_layers_import_no_array_library(top):
    bad = [(m, i) for m, imps in IMPORTS.items() if _part(m) == top
           for i in imps if i.split(".")[0] in ("torch", "numpy")]
    assert not bad, f"{top} must not import torch or numpy: {bad}"


def test_imports_go_down_the_layers():
    bad = []
    for m, imps in IMPORTS.items():
        own = _layer(_part(m))
        if own is None:  # settings, errors, the package root and the shims
            continue
        for i in _internal(imps):
            target = _layer(_part(i))
            if target is not None and target > own:
                bad.append(f"{m} -> {i}")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_backends_import_no_domain_package():
    bad = [f"{m} -> {i}" for m, imps in IMPORTS.items() if _part(m) == "backends"
           for i in _internal(imps) if _part(i) in DOMAINS | {"cli"}]
    assert not bad, "\n".join(bad)


def test_domains_reach_backends_only_through_the_policy():
    bad = [f"{m} -> {i}" for m, imps in IMPORTS.items() if _part(m) in DOMAINS
           for i in _internal(imps) if _part(i) == "backends" and i not in BACKEND_ENTRY]
    assert not bad, "domain packages must use lazygeom.backends.policy:\n" + "\n".join(bad)


def _cycles(depth: int, within: str | None = None) -> list[list[str]]:
    """Cycles of the import graph between the parts of the given depth (inside ``within``)."""
    graph: dict[str, set[str]] = {}
    for m, imps in IMPORTS.items():
        if m == "lazygeom" or (within and _part(m) != within):
            continue
        a = _part(m, depth)
        for i in _internal(imps):
            if within and _part(i) != within:
                continue
            b = _part(i, depth)
            if i != "lazygeom" and b != a and b.count(".") == a.count("."):
                graph.setdefault(a, set()).add(b)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


def test_no_cycles_between_subpackages():
    assert not _cycles(1), _cycles(1)


@pytest.mark.parametrize("domain", ["ot", "backends"])
def test_no_cycles_between_the_subpackages_of_a_package(domain):
    cycles = [c for c in _cycles(2, domain) if all(f"lazygeom.{n}" in PACKAGES for n in c)]
    assert not cycles, cycles


def test_the_layering_test_sees_violations():
    """The checks above run on real data: the graph has edges, and a made-up upward import is found."""
    assert any(_part(i) == "lazy" for i in _internal(IMPORTS["lazygeom.ot.plans"]))
    assert _layer("ot") > _layer("lazy") > _layer("backends")
    IMPORTS["lazygeom.formula.node"].append("lazygeom.ot")
    try:
        with pytest.raises(AssertionError):
            test_imports_go_down_the_layers()
    finally:
        IMPORTS["lazygeom.formula.node"].pop()
