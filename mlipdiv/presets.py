"""Experiment presets: the study's two experiments sized for a laptop CPU, for the project's docs, and for a GPU or a
Ray cluster.

A preset is one experiment (``fixed-budget`` or ``fixed-molecules``) with its budget or molecule count, the number of
(M, C) points, seeds, model(s), selection strategy(ies), epochs and model size. Every model x strategy combination
is one sweep (:func:`mlipdiv.jobs.sweep.plan_sweep`). Two options shape a fixed-molecules grid:
``max_conformers_per_molecule`` drops points with larger C, and ``match_steps`` gives every run about as many
optimiser steps as the largest training set gets in ``epochs`` epochs (a run on M x C conformers trains for
``epochs x max(M x C) / (M x C)`` epochs), so that C is not confounded with training length. In a fixed-budget
experiment every point has the same training-set size, so ``match_steps`` changes nothing there. Run one with
``python -m mlipdiv.analysis.study --preset NAME --out DIR``; the app's one-click buttons use the ``laptop-*`` ones.

Times are what the presets were sized for (see each ``expected``); ``docs-*`` are exactly what ``docs/RESULTS.md``
reports, so its tables can be reproduced with one command each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlipdiv.errors import MlipdivError
from mlipdiv.names import Experiment

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """One experiment: its grid, seeds, models and strategies, and ``template``, the
    :class:`~mlipdiv.training.TrainConfig` settings (by key, e.g. ``{"hidden": 64}``) every run shares; a setting the
    template does not name keeps TrainConfig's default, so no default is repeated here."""

    name: str
    description: str
    experiment: str
    points: int
    seeds: int
    models: tuple[str, ...]
    epochs: int
    budget: int | None = None
    molecules: int | None = None
    strategies: tuple[str, ...] = ("random",)
    template: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "local"
    expected: str = ""
    max_conformers_per_molecule: int | None = None
    match_steps: bool = False

    def options(self, strategy: str) -> dict[str, Any]:
        """:class:`~mlipdiv.training.TrainConfig` settings shared by every run of the preset (besides model, epochs)."""
        return {**self.template, "strategy": strategy}

    def config(self, model: str | None = None, strategy: str | None = None) -> Any:
        """The :class:`~mlipdiv.training.TrainConfig` of the preset's runs (before the grid sets M and C)."""
        from mlipdiv.training.config import TrainConfig

        return TrainConfig.from_dict({**self.options(strategy or self.strategies[0]),
                                      "model": model or self.models[0], "epochs": self.epochs})

    def sweeps(self) -> list[dict[str, Any]]:
        """One keyword set for :func:`~mlipdiv.jobs.sweep.plan_sweep` per model x strategy."""
        return [
            {
                "experiment": self.experiment,
                "points": self.points,
                "seeds": self.seeds,
                "model": model,
                "epochs": self.epochs,
                "budget": self.budget,
                "molecules": self.molecules,
                "options": self.options(strategy),
            }
            for model in self.models
            for strategy in self.strategies
        ]

    def epochs_for(self, n_train: int, largest: int) -> int:
        """Epochs of a run on ``n_train`` conformers when the largest training set of the grid is ``largest``."""
        if not self.match_steps or n_train >= largest:
            return self.epochs
        return int(round(self.epochs * largest / n_train))

    @property
    def n_runs(self) -> int:
        return self.points * self.seeds * len(self.models) * len(self.strategies)

    def describe(self) -> str:
        size = f"B = {self.budget}" if self.experiment == Experiment.FIXED_BUDGET else f"M = {self.molecules}"
        model = self.config().model
        return (
            f"{self.name}: {self.experiment} ({size}), {self.points} points x {self.seeds} seeds x "
            f"{'/'.join(self.models)} x {'/'.join(self.strategies)} = {self.n_runs} runs, {self.epochs} epochs, "
            f"hidden {model.hidden}, {model.interactions} interactions; {self.expected}"
        )


# CPU-sized: small model, 2 validation conformers per training molecule (validation runs every epoch)
_SMALL = {"hidden": 64, "interactions": 2, "patience": 10, "device": "cpu", "val_per_molecule": 2}
# GPU-sized: the default model, larger batches, more patience
_GPU = {"batch_size": 32, "patience": 30}

LAPTOP_TIME = "both laptop presets: 3 min on an idle 2-core CPU, 6 min on a busy one (2 runs at once; README)"
"""Measured with concurrency ``auto`` (2 runs x 1 thread): 101 s + 71 s of training idle, 6.3 min at load 4-6."""

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # The laptop presets are the SchNet part of the docs presets (same runs), so docs/RESULTS.md times them.
        Preset("laptop-fixed-budget", "Fixed budget of 128 conformers, from many molecules to many conformers each",
               Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet",), epochs=10, budget=128,
               expected=LAPTOP_TIME, template=_SMALL),
        Preset("laptop-fixed-molecules", "8 molecules, 1 to 16 conformers each, equal optimiser steps",
               Experiment.FIXED_MOLECULES, points=4, seeds=3, models=("schnet",), epochs=10, molecules=8,
               max_conformers_per_molecule=16, match_steps=True, expected=LAPTOP_TIME, template=_SMALL),
        # docs/RESULTS.md: the two experiments with two architectures, and random vs diverse selection (SchNet)
        Preset("docs-fixed-budget", "docs/RESULTS.md: B = 128, SchNet and PaiNN, random selection",
               Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet", "painn"), epochs=10, budget=128,
               expected="measured time in docs/RESULTS.md", template=_SMALL),
        Preset("docs-fixed-molecules", "docs/RESULTS.md: M = 8, C = 1..16, SchNet and PaiNN, equal optimiser steps",
               Experiment.FIXED_MOLECULES, points=4, seeds=3, models=("schnet", "painn"), epochs=10, molecules=8,
               max_conformers_per_molecule=16, match_steps=True, expected="measured time in docs/RESULTS.md",
               template=_SMALL),
        Preset("docs-diverse", "docs/RESULTS.md: B = 128 with diverse (max-min) selection, SchNet",
               Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet",), epochs=10, budget=128,
               strategies=("diverse",), expected="measured time in docs/RESULTS.md", template=_SMALL),
        Preset("docs-fixed-budget-512", "docs/RESULTS.md: B = 512 (does the balance move with budget?)",
               Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet", "painn"), epochs=10, budget=512,
               expected="measured time in docs/RESULTS.md", template=_SMALL),
        Preset("gpu-fixed-budget", "Fixed budget of 4096 conformers on a GPU, three architectures",
               Experiment.FIXED_BUDGET, points=6, seeds=5, models=("schnet", "painn", "mace"), epochs=200, budget=4096,
               strategies=("random", "diverse"), expected="sized for one GPU (hours on a CPU)", template=_GPU),
        Preset("gpu-fixed-molecules", "128 molecules, C from 1 up, on a GPU, equal optimiser steps",
               Experiment.FIXED_MOLECULES, points=6, seeds=5, models=("schnet", "painn", "mace"), epochs=200,
               molecules=128, match_steps=True, expected="sized for one GPU (hours on a CPU)", template=_GPU),
        Preset("ray-fixed-budget", "Fixed budget of 4096 conformers as Ray tasks on a cluster",
               Experiment.FIXED_BUDGET, points=8, seeds=5, models=("schnet", "painn", "mace"), epochs=300, budget=4096,
               strategies=("random", "diverse"), backend="ray", expected="one Ray task per run (GPU or CPU share)",
               template=_GPU),
        Preset("ray-fixed-molecules", "128 molecules, C from 1 up, as Ray tasks on a cluster, equal optimiser steps",
               Experiment.FIXED_MOLECULES, points=8, seeds=5, models=("schnet", "painn", "mace"), epochs=300,
               molecules=128,
               strategies=("random", "diverse"), match_steps=True, backend="ray",
               expected="one Ray task per run (GPU or CPU share)", template=_GPU),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise MlipdivError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
