"""Model registry: a name maps to a builder ``hparams -> torch.nn.Module``.

Every model takes a :class:`~mlipdiv.models.graph.Graph` and returns one energy per molecule, shape
``(num_graphs,)``; forces come from autograd in :class:`~mlipdiv.models.potential.Potential`. Adding an architecture
is a module ``mlipdiv/models/<name>.py`` whose builder is decorated by :func:`register`, plus its name in
``BUILTIN``. Modules are imported on first use, so listing the names imports neither torch nor PyG.

Each model declares the largest atomic number its element table holds (``max_z``, from :mod:`mlipdiv.limits`);
:func:`check_elements` refuses data beyond it with a message before anything is built or trained.

``hparams`` always holds ``hidden``, ``interactions``, ``cutoff`` (angstrom), ``elements`` (atomic numbers the model
is trained for) and ``avg_num_neighbors``; a builder fills in its own extra defaults, and the full dictionary (plain
JSON types) is saved with the weights so the model can be rebuilt exactly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlipdiv.errors import MlipdivError, UnknownName
from mlipdiv.limits import MAX_Z
from mlipdiv.registry import Registry

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
    max_z: int = MAX_Z  # largest atomic number the model's element table holds


def _load_builtin(name: str) -> None:
    """Import a built-in model's module on first use; importing registers it (heavy dependencies load in the
    builder)."""
    if name in BUILTIN:
        importlib.import_module(f"mlipdiv.models.{name}")


_REGISTRY: Registry[ModelSpec] = Registry("model", loader=_load_builtin)


def register(
    name: str, description: str, lr: float, max_z: int = MAX_Z, **defaults: Any
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` with its recommended learning rate, the largest atomic number
    its element table holds, and its hyperparameter defaults."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY.register(name, ModelSpec(name, description, lr, dict(defaults), builder, max_z))
        return builder

    return wrap


def model_names() -> list[str]:
    """Model names: the built-in ones, then any registered elsewhere."""
    return list(dict.fromkeys([*BUILTIN, *_REGISTRY.names()]))


def get_spec(name: str) -> ModelSpec:
    """The model called ``name``; :class:`~mlipdiv.errors.UnknownName` (listing :func:`model_names`) if none."""
    try:
        return _REGISTRY.get(name)
    except UnknownName:  # list the built-ins not imported yet too
        raise UnknownName("model", name, model_names()) from None


def check_elements(name: str, elements: Any) -> None:
    """Refuse atomic numbers outside model ``name``'s element table, naming them (otherwise: an IndexError deep in
    the embedding lookup, mid-training)."""
    max_z = get_spec(name).max_z
    bad = sorted({int(z) for z in elements if not 1 <= int(z) <= max_z})
    if bad:
        from ase.data import chemical_symbols

        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}" for z in bad)
        hint = "remove the molecules that contain them" + (
            f", or use --model mace (up to Z={MAX_Z})" if max_z < MAX_Z and all(1 <= z <= MAX_Z for z in bad) else ""
        )
        raise MlipdivError(f"model {name} supports atomic numbers 1..{max_z} only; the data has {names}: {hint}")


def complete_hparams(name: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with the model's own defaults filled in (explicit values win)."""
    return {**get_spec(name).defaults, **hparams}


def build_model(name: str, hparams: dict[str, Any]) -> torch.nn.Module:
    """Build an untrained model; ``hparams`` must be complete (see :func:`complete_hparams`)."""
    return get_spec(name).builder(complete_hparams(name, hparams))
