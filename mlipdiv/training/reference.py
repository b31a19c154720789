"""Per-element reference energies: ``E ~ sum_elements count_e * E_e``, fitted on the training split only.

The models learn what is left. The same fit (with zero forces) is the baseline "model that learns nothing
geometric" every metric is shown beside.

Why a prior: a small training set often cannot separate the elements (two molecules give two equations for four
element energies), and a plain minimum-norm least-squares solution then puts hundreds of eV on one element and
nothing on another, so every unseen molecule's energy is off by eV per atom. With ``prior`` (the isolated-atom
energies of the level of theory, :func:`mlipdiv.data.oracle.isolated_atom_energy`) the fit is the prior plus a
ridge-regularised correction: directions the data determine are fitted as before, the undetermined ones stay at
the prior.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def fit_element_energies(
    counts: np.ndarray, energies: np.ndarray, prior: np.ndarray | None = None, ridge: float = 1e-6
) -> np.ndarray:
    """Element energies (eV) from a composition matrix and total energies.

    Without ``prior``: least squares (minimum norm if singular). With ``prior`` (one energy per column): ``prior +
    delta`` where ``delta`` minimises ``|counts @ (prior + delta) - energies|^2 + lam |delta|^2``, ``lam = ridge x
    trace(counts^T counts)``: negligible where the data determine an element, decisive where they do not.
    """
    if len(energies) == 0:
        raise ValueError("cannot fit element energies on an empty training set")
    y = np.asarray(energies, dtype=np.float64)
    if prior is None:
        solution, *_ = np.linalg.lstsq(counts, y, rcond=None)
        return solution
    prior = np.asarray(prior, dtype=np.float64)
    gram = counts.T @ counts
    lam = ridge * max(float(np.trace(gram)), 1.0)
    delta = np.linalg.solve(gram + lam * np.eye(len(prior)), counts.T @ (y - counts @ prior))
    return prior + delta


def level_prior(choice: str, attrs: Mapping[str, Any], elements: Sequence[int]) -> np.ndarray | None:
    """The prior of :func:`fit_element_energies` (eV per element) for a dataset with ``attrs``: isolated GFN2-xTB
    atoms with ``choice="atoms"``, or with ``"auto"`` when the dataset's level of theory is GFN2-xTB (another level
    of theory has other atomic energies, so its fit stays plain least squares); None for ``"none"``."""
    if choice == "none" or (choice == "auto" and "gfn2" not in str(attrs.get("level_of_theory", "")).lower()):
        return None
    from mlipdiv.data.oracle import OracleFailure, isolated_atom_energy

    try:
        return np.array([isolated_atom_energy(int(z)) for z in elements])
    except OracleFailure:  # an element GFN2-xTB does not cover (Z > 86): no prior, the model check speaks next
        return None


def training_elements(dataset: Any, pairs: Sequence[tuple[str, int]]) -> list[int]:
    """The atomic numbers present in the training ``pairs`` (sorted): the elements the model and the references know."""
    return sorted({int(z) for m in {m for m, _ in pairs} for z in dataset[m].atomic_numbers})


def predictable(dataset: Any, pairs: Sequence[tuple[str, int]], elements: Sequence[int]) -> list[tuple[str, int]]:
    """The ``pairs`` whose molecule holds only ``elements`` (the others cannot be predicted: they are excluded and
    counted)."""
    allowed = set(int(e) for e in elements)
    return [p for p in pairs if set(np.unique(dataset[p[0]].atomic_numbers).tolist()) <= allowed]
