"""Per-split error metrics (units: eV, eV/angstrom), from per-conformer error sums.

Keys: those of :class:`mlipdiv.io.metrics.SplitErrors` (the ``metrics.json`` contract). An empty split gives
``None`` for every error and ``n = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlipdiv.io.metrics import METRIC_KEYS

__all__ = ["METRIC_KEYS", "ConformerErrors", "summarize"]


@dataclass
class ConformerErrors:
    """Per-conformer predictions and force-error sums of one split (all arrays of length n_conformers).

    Attributes:
        energy_true, energy_pred: total energies, eV.
        n_atoms: atoms per conformer.
        force_abs_sum, force_sq_sum: sum over the conformer's 3 n_atoms force components of |error| and error^2.
    """

    energy_true: np.ndarray
    energy_pred: np.ndarray
    n_atoms: np.ndarray
    force_abs_sum: np.ndarray
    force_sq_sum: np.ndarray

    @property
    def forces_mae_per_conformer(self) -> np.ndarray:
        return self.force_abs_sum / (3.0 * self.n_atoms)


def summarize(err: ConformerErrors) -> dict[str, float | int | None]:
    """The metric dictionary of one split."""
    n = len(err.energy_true)
    if n == 0:
        return {**{k: None for k in METRIC_KEYS[:-1]}, "n": 0}
    de = err.energy_pred - err.energy_true
    components = 3.0 * float(np.sum(err.n_atoms))
    return {
        "energy_mae": float(np.mean(np.abs(de))),
        "energy_mae_per_atom": float(np.mean(np.abs(de) / err.n_atoms)),
        "energy_rmse": float(np.sqrt(np.mean(de**2))),
        "forces_mae": float(np.sum(err.force_abs_sum) / components),
        "forces_rmse": float(np.sqrt(np.sum(err.force_sq_sum) / components)),
        "n": n,
    }
