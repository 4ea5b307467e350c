"""Which lazygeom engine backend runs a soft-min operator's reductions, for the results' record.

The reductions of :class:`lazygeom.ot.solver.softmin.OnlineSoftmin` and of the multiscale operator
each ask :func:`lazygeom.backends.select_backend` for a backend, from the requested name (or the
configured one) and their tensors' dtype and device. :func:`engine_for` asks the same function the
same question for a LogSumExp reduction between the two point clouds, without running anything,
so that a :class:`lazygeom.ot.SinkhornResult` can say what ran: "cpu", "reference" or "triton".
The tensorized solver runs dense torch operations: its engine is :data:`DENSE`.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from ...backends import Call, select_backend
from ...formula import CAT_I, CAT_J, make, var
from ...reductions import Reduction
from ...settings import get_config

#: the engine of the tensorized solver and of the dense kernel norms: torch's own operations
DENSE = "torch"


def engine_for(requested: Optional[str], rows: torch.Tensor, cols: torch.Tensor) -> str:
    """The name of the engine backend that runs a LogSumExp reduction over these point clouds.

    Args:
        requested: the engine backend asked for (None: the configured one, :func:`lazygeom.config`).
        rows: ``(..., N, D)`` the points of the output rows.
        cols: ``(..., M, D)`` the points reduced over.

    Returns:
        The backend's name, e.g. "cpu", "reference" or "triton".

    Raises:
        lazygeom.BackendUnavailable: the requested backend cannot run these tensors (as the
            reductions themselves would).
    """
    D = rows.shape[-1]
    x, y = rows.detach().reshape(-1, D), cols.detach().reshape(-1, D)
    formula = make("sub", var(0, CAT_I, D), var(1, CAT_J, D))  # any formula of both clouds
    call = Call(Reduction("lse", formula), (CAT_I, CAT_J), int(rows.shape[-2]), int(cols.shape[-2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing compiler: the reductions warn themselves
        return select_backend(requested or get_config().backend, call, (x, y)).name


__all__ = ["DENSE", "engine_for"]
