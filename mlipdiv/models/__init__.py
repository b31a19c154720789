"""Machine-learning interatomic potentials: interaction graph, architectures behind a registry, energy+forces wrapper.

Attributes load lazily (PEP 562), so ``mlipdiv.models.registry.model_names()`` answers without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Graph": "mlipdiv.models.graph",
    "build_graph": "mlipdiv.models.graph",
    "candidate_pairs": "mlipdiv.models.graph",
    "radius_pairs": "mlipdiv.models.graph",
    "Potential": "mlipdiv.models.potential",
    "build_model": "mlipdiv.models.registry",
    "model_names": "mlipdiv.models.registry",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlipdiv.models' has no attribute {name!r}")
