"""Results rows from finished runs: the one definition of a row of ``results.csv``.

Why here: a sweep writes ``results.csv`` (:mod:`mlipdiv.jobs.sweep`), the app tabulates the store's runs
(:mod:`mlipdiv.viz.live`) and the study adds baselines to the sweeps' tables (:mod:`mlipdiv.analysis.study`);
when each built its rows on its own, the three tables could drift apart. All of them import this bottom-layer
module, which works on plain records (run id, configuration, :class:`~mlipdiv.io.metrics.RunMetrics`) and so
needs neither the store nor the training code.

Units as in ``metrics.json``: eV per molecule, eV/atom, eV/angstrom; ``seconds`` of training wall time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlipdiv.io.metrics import SPLITS, RunMetrics, late_gain

__all__ = ["EXTRA_COLUMNS", "RESULT_COLUMNS", "STUDY_COLUMNS", "RunRecord", "extra_columns", "runs_to_table"]

# the columns of a sweep's results.csv, in order (the docs' and the analysis' tables depend on them)
RESULT_COLUMNS = (
    "experiment",
    "n_molecules",
    "conformers_per_molecule",
    "seed",
    "model",
    "split",
    "energy_mae",
    "energy_mae_per_atom",
    "forces_mae",
    "run_id",
)
STUDY_COLUMNS = ("budget", "strategy")  # what the app's study tables add (M x C, the selection strategy)
EXTRA_COLUMNS = (  # the study's: baselines, training time and length, what was scored
    "baseline_forces_mae", "baseline_energy_mae_per_atom", "seconds", "n_eval",
    "energy_rel_mae", "baseline_energy_rel_mae", "n_excluded",
    "steps", "steps_run", "epochs_run", "best_step", "best_epoch", "converged", "late_gain_forces", "late_gain_energy",
)


@dataclass(frozen=True)
class RunRecord:
    """A finished run as the tables see it: its id, its training configuration and what it measured."""

    run_id: str
    metrics: RunMetrics
    config: Mapping[str, Any] = field(default_factory=dict)


def runs_to_table(
    records: Iterable[RunRecord],
    experiment: str,
    splits: Sequence[str] = SPLITS,
    *,
    study: bool = False,
) -> list[dict[str, Any]]:
    """One row per record and split (in ``splits`` order; splits a run has no errors for give no row).

    Columns: :data:`RESULT_COLUMNS`, plus :data:`STUDY_COLUMNS` with ``study``. ``experiment`` labels every row
    (a run does not record which experiment it belongs to).
    """
    rows = []
    for rec in records:
        m = rec.metrics
        for split in splits:
            s = m.split(split)
            if s is None:
                continue
            row = {
                "experiment": experiment,
                "n_molecules": m.n_molecules,
                "conformers_per_molecule": m.conformers_per_molecule,
                "seed": m.seed,
                "model": m.model,
                "split": split,
                "energy_mae": s.energy_mae,
                "energy_mae_per_atom": s.energy_mae_per_atom,
                "forces_mae": s.forces_mae,
                "run_id": rec.run_id,
            }
            if study:
                row["budget"] = m.n_molecules * m.conformers_per_molecule
                row["strategy"] = rec.config.get("strategy", "random")
            rows.append(row)
    return rows


def extra_columns(
    metrics: RunMetrics | None, split: str, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The study's :data:`EXTRA_COLUMNS` of one run and split: the no-geometry baseline's errors, the
    composition-free energy error (model and baseline), the training time and length (``steps``: the configured
    optimiser steps, from ``config``; ``converged``: the trainer's rule; ``late_gain_*``: what the last quarter of steps
    gained on the validation error, :func:`~mlipdiv.io.metrics.late_gain`), the conformers evaluated and those of the
    split's pool left out (NaN where the run has none; training length NaN for version 1 metrics)."""
    base = metrics.baselines.get(split) if metrics is not None else None
    errs = metrics.split(split) if metrics is not None else None

    def num(x: float | None) -> float:
        return math.nan if x is None else x

    steps = (config or {}).get("steps")
    converged = metrics.converged if metrics is not None else None

    def gain(key: str) -> float:
        if metrics is None or metrics.steps_run is None:
            return math.nan
        return num(late_gain(metrics.curve, metrics.steps_run, key))

    return {
        "baseline_forces_mae": num(base.forces_mae if base else None),
        "baseline_energy_mae_per_atom": num(base.energy_mae_per_atom if base else None),
        "seconds": num(metrics.seconds if metrics is not None else None),
        "n_eval": num(errs.n if errs else None),
        "energy_rel_mae": num(errs.energy_rel_mae if errs else None),
        "baseline_energy_rel_mae": num(base.energy_rel_mae if base else None),
        "n_excluded": num(metrics.excluded.get(split) if metrics is not None and metrics.excluded else None),
        "steps": num(steps),
        "steps_run": num(metrics.steps_run if metrics is not None else None),
        "epochs_run": num(metrics.epochs_run if metrics is not None else None),
        "best_step": num(metrics.best_step if metrics is not None else None),
        "best_epoch": num(metrics.best_epoch if metrics is not None else None),
        "converged": math.nan if converged is None else converged,
        "late_gain_forces": gain("val_forces_mae"),
        "late_gain_energy": gain("val_energy_mae"),
    }
