"""Model registry: a name maps to a builder ``hparams -> torch.nn.Module``.

Every model takes a :class:`~mlipdiv.models.graph.Graph` and returns one energy per molecule, shape
``(num_graphs,)``; forces come from autograd in :class:`~mlipdiv.models.potential.Potential`. Adding an architecture
is a module ``mlipdiv/models/<name>.py`` whose builder is decorated by :func:`register`, plus its name in
``BUILTIN``. Modules are imported on first use, so listing the names imports neither torch nor PyG.

``hparams`` always holds ``hidden``, ``interactions``, ``cutoff`` (angstrom), ``elements`` (atomic numbers the model
is trained for) and ``avg_num_neighbors``; a builder fills in its own extra defaults, and the full dictionary (plain
JSON types) is saved with the weights so the model can be rebuilt exactly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlipdiv.errors import MlipdivError

if TYPE_CHECKING:
    import torch

Builder = Callable[[dict[str, Any]], "torch.nn.Module"]
BUILTIN = ("schnet", "painn", "mace")  # listing order; each is the module mlipdiv.models.<name>


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    lr: float  # recommended peak learning rate (AdamW, batch 16, forces in the loss)
    defaults: dict[str, Any]
    builder: Builder


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, description: str, lr: float, **defaults: Any) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` with its recommended learning rate and hyperparameter defaults."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY[name] = ModelSpec(name, description, lr, dict(defaults), builder)
        return builder

    return wrap


def model_names() -> list[str]:
    """Model names: the built-in ones, then any registered elsewhere."""
    return list(dict.fromkeys([*BUILTIN, *_REGISTRY]))


def get_spec(name: str) -> ModelSpec:
    if name in BUILTIN and name not in _REGISTRY:
        importlib.import_module(f"mlipdiv.models.{name}")  # registers it (heavy dependencies load in the builder)
    if name not in _REGISTRY:
        raise MlipdivError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return _REGISTRY[name]


def complete_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with the model's own defaults filled in (explicit values win)."""
    return {**get_spec(name).defaults, **hparams}


def build_model(name: str, hparams: dict[str, Any]) -> torch.nn.Module:
    """Build an untrained model; ``hparams`` must be complete (see :func:`complete_hparams`)."""
    return get_spec(name).builder(complete_hparams(name, hparams))
