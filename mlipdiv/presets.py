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
    grid: tuple[int, ...] = ()  # the exact points: M values (fixed budget) or C values (fixed molecules)

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
        cfg = self.config()
        length = f"{cfg.optim.steps} steps" if cfg.optim.steps else f"{self.epochs} epochs"
        return (
            f"{self.name}: {self.experiment} ({size}), {self.points} points x {self.seeds} seeds x "
            f"{'/'.join(self.models)} x {'/'.join(self.strategies)} = {self.n_runs} runs, {length}, "
            f"hidden {cfg.model.hidden}, {cfg.model.interactions} interactions; {self.expected}"
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


# ------------------------------------------------------------------------------------------------- the study
#
# The protocol of docs/RESULTS.md (issue 16): every run trains a fixed number of optimiser steps that depends on the
# budget only (within a budget every point trains as long; the convergence presets train two points per budget twice
# as long to show that it is enough), never stops early, and is scored on evaluation sets that do not move between
# the points of one seed (anchors: the smallest M of the grid, see mlipdiv.selection.splits). 26 held-out molecules
# leave 1,024 trainable ones, so B = 8,192 has four points (M = 128 ... 1,024) on the shipped dataset.

_STUDY = {"hidden": 32, "interactions": 2, "device": "cpu", "val_per_molecule": 2, "test_molecules": 26,
          "max_eval_per_molecule": 16, "patience": 0}
STUDY_STEPS = {128: 1500, 512: 6000, 2048: 24000, 8192: 96000}
"""Optimiser steps per budget (batches of 16, 32, 32, 32 conformers: 188, 375, 375 and 375 epochs); the
fixed-molecules grids use a budget's steps (M = 8 those of B = 512, its largest set; M = 64 those of B = 2,048, 188
epochs of its largest set of 4,096). Chosen by the convergence checks (twice the steps
must change the error by less than one seed std), each try on SchNet:

- B = 128: 1,000 steps of 8 left 35 % of the runs short of the per-run rule as it then read (validation loss still
  falling > 5 % in the last quarter; the rule now reads the force MAE); 1,500 steps of 16 pass (a step of 32
  conformers costs only about twice one of 8 on a CPU: the per-step overhead dominates small models, so larger
  batches buy most of the difference).
- B = 512: 1,500 steps changed by more than one seed std when doubled (unseen molecules at (512, 1): -14 meV/Å
  against a std of 8), so 3,000; and 3,000 did too (unseen conformers at (8, 64): -11.5 against a std of 9.2, eight
  seeds), so 6,000.
- B = 2,048: 3,000 steps changed by -12 meV/Å on both splits at (1,024, 2) when doubled (seed 0), so 6,000; 6,000
  changed by -11 / -15 at (1,024, 2) and -11 / +19 at (32, 64) (unseen conformers / molecules, against seed stds of
  7.3 / 7.2 and 8.1 / 38.4), so 12,000; 12,000 to 24,000 changed by -7 / -5 at (1,024, 2) and -8 / +31 at (32, 64),
  each within one seed std (7.3 / 7.2, 8.1 / 38.4), so 12,000. With the protocol's three seeds those stds are
  6.3 / 11.3 and 8.4 / 40.4, and (1,024, 2)'s -6.8 exceeds 6.3 on one seed, so the check has three seeds. On three
  seeds it still does: -7.1 / -6.2 at (1,024, 2) against 6.3 / 11.3, and -8.4 / +31 at (32, 64) against 8.4 / 40.4,
  so 24,000. (At (32, 64) the unseen-molecule error grows with the steps, 205, 224, 255: few molecules trained longer
  fit their own conformers better and other molecules worse.)
- B = 8,192: 24,000 steps (twice B = 2,048's) changed by -6.2 / -4.1 at (128, 64) and -7.0 / -7.4 at (1,024, 8)
  when doubled (seed 0), against seed stds of 5.1 / 8.2 and 4.0 / 9.5 (3 seeds): unseen conformers moved by more
  than one std at both points (the gap between them by 0.8), so 48,000. 48,000 to 96,000 changed by -5.0 / +7.4 at
  (128, 64) and -5.6 / -3.5 at (1,024, 8) (seed 0) against 48,000-step seed stds of 4.8 / 12.0 and 3.7 / 9.0: unseen
  conformers again moved by more than one std at both points (the gap between them by 0.5), so 96,000.

Whether the steps suffice is what the ``-convergence`` presets measure (docs/RESULTS.md)."""
_STUDY_BATCH = {128: 16, 512: 32, 2048: 32, 8192: 32}
STUDY_TIME = ("the whole study (study-* presets): about 73 CPU-hours (37 h on 2 cores), estimated from measured step "
              "times; run it in the background and rerun after interruptions (finished runs are reused)")


def _batch(budget: int) -> dict[str, int]:
    """The batch size of a budget's runs, when it is not TrainConfig's default (templates repeat no default)."""
    from mlipdiv.training.config import OptimConfig

    size = _STUDY_BATCH[budget]
    return {} if size == OptimConfig.batch_size else {"batch_size": size}


def _study(budget: int, grid: tuple[int, ...], seeds: int, models: tuple[str, ...], steps_factor: int = 1,
           suffix: str = "", description: str = "") -> Preset:
    template = {**_STUDY, "steps": STUDY_STEPS[budget] * steps_factor, **_batch(budget), "anchor_molecules": min(grid)}
    return Preset(f"study-b{budget}{suffix}", description or f"docs/RESULTS.md: fixed budget B = {budget}",
                  Experiment.FIXED_BUDGET, points=len(grid), seeds=seeds, models=models, epochs=1, budget=budget,
                  grid=grid, template=template, expected=STUDY_TIME)


def _study_molecules(molecules: int, grid: tuple[int, ...], seeds: int, steps_of: int,
                     models: tuple[str, ...] = ("schnet", "painn")) -> Preset:
    template = {**_STUDY, "steps": STUDY_STEPS[steps_of], **_batch(steps_of), "anchor_molecules": molecules}
    return Preset(f"study-m{molecules}", f"docs/RESULTS.md: {molecules} molecules, C = {'/'.join(map(str, grid))}, "
                  "equal optimiser steps", Experiment.FIXED_MOLECULES, points=len(grid), seeds=seeds,
                  models=models, epochs=1, molecules=molecules, grid=grid, template=template,
                  expected=STUDY_TIME)


_BOTH = ("schnet", "painn")
STUDY_PRESETS = (
    _study(128, (4, 8, 32, 128), 8, _BOTH),
    _study(512, (8, 32, 128, 512), 8, _BOTH),
    _study(2048, (32, 128, 512, 1024), 3, _BOTH),
    _study(8192, (128, 256, 512, 1024), 3, ("schnet",)),
    _study_molecules(8, (1, 4, 16, 64), 3, steps_of=512),
    _study_molecules(64, (1, 4, 16, 64), 3, steps_of=2048, models=("schnet",)),
    # convergence: two points per budget (the ends of the grid), SchNet, twice the steps, the first seeds
    *(_study(b, (g[0], g[-1]), seeds, ("schnet",), steps_factor=2, suffix="-convergence",
             description=f"docs/RESULTS.md: B = {b} at twice the steps (is the protocol converged?)")
      for b, g, seeds in ((128, (4, 128), 3), (512, (8, 512), 3), (2048, (32, 1024), 3), (8192, (128, 1024), 1))),
)
# the same protocol on a GPU: budgets of 32,768 and 131,072 conformers need a dataset of >= 2,048 / 4,096 trainable
# molecules with >= 64 conformers each (``generate`` or ``import``); the default model, CUDA
_GPU_STUDY = {**{k: v for k, v in _STUDY.items() if k not in ("hidden", "interactions", "device")},
              "batch_size": 64, "test_molecules": 0.05}  # the default model on the default device
GPU_STUDY_PRESETS = (
    Preset("gpu-b32768", "fixed budget B = 32,768 on a GPU, the study's protocol (steps, anchors, no early stop)",
           Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet", "painn", "mace"), epochs=1, budget=32768,
           grid=(512, 1024, 2048, 4096), expected="sized for one GPU (about a day on a CPU)",
           template={**_GPU_STUDY, "steps": 24000, "anchor_molecules": 512}),
    Preset("gpu-b131072", "fixed budget B = 131,072 on a GPU, the study's protocol",
           Experiment.FIXED_BUDGET, points=4, seeds=3, models=("schnet", "painn", "mace"), epochs=1, budget=131072,
           grid=(2048, 4096, 8192, 16384), expected="sized for one GPU (needs a dataset of >= 16,384 molecules)",
           template={**_GPU_STUDY, "steps": 48000, "anchor_molecules": 2048}),
)
PRESETS.update({p.name: p for p in (*STUDY_PRESETS, *GPU_STUDY_PRESETS)})


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise MlipdivError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
