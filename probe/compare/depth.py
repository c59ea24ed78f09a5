"""Relative depth, ``layer / L``: the one axis on which models of different depth are compared
(0 = the embedding output, 1 = the last layer)."""
from __future__ import annotations

import numpy as np

from ..errors import ProbeError


def relative_depth(n_layers: int) -> np.ndarray:
    """``[L + 1]`` relative depths ``layer / L`` of a model whose last layer is ``L``.

    >>> relative_depth(4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if n_layers < 1:
        raise ProbeError(f"a model needs at least one transformer layer, got L = {n_layers}")
    return np.arange(n_layers + 1) / n_layers


def nearest_layer(depth: float, n_layers: int, *, fusable: bool = False) -> int:
    """The layer whose relative depth is nearest ``depth`` (ties: the lower layer);
    ``fusable`` keeps it below L (DLFA fuses a lower layer with the last one).

    >>> nearest_layer(0.5, 12), nearest_layer(0.5, 6), nearest_layer(1.0, 4, fusable=True)
    (6, 3, 3)
    """
    if not 0 <= depth <= 1:
        raise ProbeError(f"relative depth must be in [0, 1], got {depth}")
    top = n_layers - 1 if fusable else n_layers
    return int(min(range(top + 1), key=lambda l: (abs(l / n_layers - depth), l)))
