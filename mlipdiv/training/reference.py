"""Per-element reference energies: ``E ~ sum_elements count_e * E_e``, fitted by linear least squares.

Fitted on the training split only; the models learn what is left. The same fit (with zero forces) is the baseline
"model that learns nothing geometric" every metric is shown beside.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def composition(atomic_numbers: Sequence[np.ndarray], elements: Sequence[int]) -> np.ndarray:
    """(n_conformers, n_elements) count of each element in each conformer."""
    column = {int(e): k for k, e in enumerate(elements)}
    out = np.zeros((len(atomic_numbers), len(elements)), dtype=np.float64)
    for row, z in enumerate(atomic_numbers):
        values, counts = np.unique(z, return_counts=True)
        for e, c in zip(values, counts):
            out[row, column[int(e)]] = c
    return out


def fit_element_energies(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Least-squares element energies (eV) from a composition matrix and total energies (minimum norm if singular)."""
    if len(energies) == 0:
        raise ValueError("cannot fit element energies on an empty training set")
    solution, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    return solution
