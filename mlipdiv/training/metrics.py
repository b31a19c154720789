"""Per-split error metrics (units: eV, eV/angstrom), from per-conformer error sums.

Keys: those of :class:`mlipdiv.io.metrics.SplitErrors` (the ``metrics.json`` contract). An empty split gives
``None`` for every error and ``n = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlipdiv.io.metrics import METRIC_KEYS

__all__ = ["METRIC_KEYS", "ConformerErrors", "relative_energy_mae", "summarize"]


@dataclass
class ConformerErrors:
    """Per-conformer predictions and force-error sums of one split (all arrays of length n_conformers).

    Attributes:
        energy_true, energy_pred: total energies, eV.
        n_atoms: atoms per conformer.
        force_abs_sum, force_sq_sum: sum over the conformer's 3 n_atoms force components of |error| and error^2.
        molecule: the molecule id of each conformer (None: unknown, no composition-free energy error).
    """

    energy_true: np.ndarray
    energy_pred: np.ndarray
    n_atoms: np.ndarray
    force_abs_sum: np.ndarray
    force_sq_sum: np.ndarray
    molecule: np.ndarray | None = None

    @property
    def forces_mae_per_conformer(self) -> np.ndarray:
        return self.force_abs_sum / (3.0 * self.n_atoms)


def relative_energy_mae(true: np.ndarray, pred: np.ndarray, molecule: np.ndarray) -> float | None:
    """MAE (eV per molecule) of conformer energies relative to their molecule's mean, prediction and reference
    each centred per molecule; molecules with a single conformer carry no relative information and are skipped.

    Why: per-atom energy errors of unseen molecules are dominated by the element references; this one measures only
    what the geometry explains (the conformer energy differences), so it is comparable across compositions. The
    baseline "predict the molecule's mean" gives ``mean |E - mean_molecule(E)|`` (pass ``pred`` constant per
    molecule).
    """
    _, group, size = np.unique(np.asarray(molecule).astype(str), return_inverse=True, return_counts=True)
    keep = size[group] >= 2
    if not keep.any():
        return None
    n_groups = len(size)

    def centred(x: np.ndarray) -> np.ndarray:
        mean = np.bincount(group, weights=x, minlength=n_groups) / size
        return x - mean[group]

    return float(np.mean(np.abs(centred(pred) - centred(true))[keep]))


def summarize(err: ConformerErrors) -> dict[str, float | int | None]:
    """The metric dictionary of one split."""
    n = len(err.energy_true)
    if n == 0:
        return {**{k: None for k in METRIC_KEYS if k != "n"}, "n": 0}
    rel = None if err.molecule is None else relative_energy_mae(err.energy_true, err.energy_pred, err.molecule)
    de = err.energy_pred - err.energy_true
    components = 3.0 * float(np.sum(err.n_atoms))
    return {
        "energy_mae": float(np.mean(np.abs(de))),
        "energy_mae_per_atom": float(np.mean(np.abs(de) / err.n_atoms)),
        "energy_rmse": float(np.sqrt(np.mean(de**2))),
        "forces_mae": float(np.sum(err.force_abs_sum) / components),
        "forces_rmse": float(np.sqrt(np.sum(err.force_sq_sum) / components)),
        "energy_rel_mae": rel,
        "n": n,
    }
