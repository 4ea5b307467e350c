"""Every import path that README, docs and pykeops/GeomLoss users rely on keeps working."""

from __future__ import annotations

import importlib

import pytest

#: (module, names): what user code imports, with the pykeops / GeomLoss name it replaces
PUBLIC = [
    ("lazygeom", ["LazyTensor", "Vi", "Vj", "Pm", "ifelse", "maximum", "minimum", "config", "get_config",
                  "Config", "LazyGeomError", "BackendUnavailable", "CompilationError", "__version__"]),
    ("lazygeom.numpy", ["LazyTensor", "Vi", "Vj", "Pm", "ifelse", "maximum", "minimum"]),  # pykeops.numpy
    ("lazygeom.cluster", ["grid_cluster", "sort_clusters", "cluster_ranges", "cluster_centroids",  # .cluster
                          "cluster_ranges_centroids", "from_matrix", "from_pairs", "swap_axes", "check_ranges",
                          "dense_mask"]),
    ("lazygeom.sparse", ["grid_cluster", "from_matrix", "from_pairs", "check_ranges", "kd_paths"]),
    ("lazygeom.linalg", ["solve", "aslinearoperator", "ConvergenceWarning"]),
    ("lazygeom.ot", ["SamplesLoss", "sinkhorn", "sinkhorn_loop", "SinkhornResult", "transport_plan",
                     "barycentric_map", "epsilon_schedule", "max_diameter", "ground_cost", "OnlineSoftmin",
                     "TensorizedSoftmin"]),  # geomloss
    ("lazygeom.backends", ["available_backends", "select_backend", "capability", "Call", "Backend"]),
    ("lazygeom.formula", ["Node", "var", "const", "make", "vjp"]),
    ("lazygeom.reductions", ["Reduction"]),
    ("lazygeom.cli", ["main"]),
]


@pytest.mark.parametrize("module, names", PUBLIC, ids=[m for m, _ in PUBLIC])
def test_public_names_import(module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_the_same_objects_under_every_name():
    import lazygeom
    import lazygeom.cluster
    import lazygeom.lazy
    import lazygeom.numpy
    import lazygeom.sparse

    assert lazygeom.LazyTensor is lazygeom.lazy.LazyTensor
    assert lazygeom.numpy.LazyTensor is not lazygeom.LazyTensor  # the NumPy twin
    assert issubclass(lazygeom.numpy.LazyTensor, lazygeom.LazyTensor)
    assert lazygeom.cluster.from_matrix is lazygeom.sparse.from_matrix


def test_ot_sinkhorn_is_the_function():
    """``lazygeom.ot.sinkhorn`` is the solver, not a submodule (no subpackage may shadow it)."""
    import lazygeom.ot

    assert callable(lazygeom.ot.sinkhorn) and not isinstance(lazygeom.ot.sinkhorn, type(lazygeom.ot))


def test_command_entry_point():
    """``pyproject.toml`` points the ``lazygeom`` command at ``lazygeom.cli:main``."""
    from lazygeom.cli import main

    assert main(["--version"]) == 0
