"""What colours and labels the points of the UMAP maps: split membership, molecule, energy, a run's error.

Arrays are indexed like the map's points: per molecule (dataset order) for the structure map, per global conformer
id (:meth:`mlipdiv.io.dataset.Dataset.conformer_offsets`) for the conformer map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlipdiv.names import SPLITS, SplitName
from mlipdiv.units import mev

__all__ = [
    "MAX_MAP_POINTS",
    "SPLIT_KEYS",
    "conformer_energies",
    "conformer_split_labels",
    "display_subset",
    "hover_texts",
    "molecule_split_labels",
    "per_molecule_mean",
    "prediction_errors",
]

SPLIT_KEYS = SPLITS


def _pairs(split: Any, key: str) -> list[tuple[str, int]]:
    value = split.get(key, []) if isinstance(split, Mapping) else getattr(split, key, [])
    return [(str(m), int(c)) for m, c in value]


def conformer_split_labels(dataset: Any, split: Any) -> np.ndarray:
    """Per global conformer id: ``train``, ``val``, ``test_conformers``, ``test_molecules`` or ``unused``.

    Args:
        dataset: the dataset the split was made on.
        split: a :class:`mlipdiv.selection.Split` or its dict (pairs of ``(molecule_id, conformer_index)``).
    """
    offsets = dataset.conformer_offsets()
    labels = np.full(int(offsets[-1]), "unused", dtype=object)
    for key in SPLIT_KEYS:
        for mol_id, conf in _pairs(split, key):
            if mol_id in dataset:
                labels[offsets[dataset.index_of(mol_id)] + conf] = key
    return labels


def molecule_split_labels(dataset: Any, split: Any) -> np.ndarray:
    """Per molecule: ``train`` (some conformers trained on), ``test_molecules`` (held out) or ``unused``."""
    labels = np.full(len(dataset), "unused", dtype=object)
    for key in (SplitName.TEST_MOLECULES, SplitName.TRAIN):
        for mol_id, _ in _pairs(split, key):
            if mol_id in dataset:
                labels[dataset.index_of(mol_id)] = key
    return labels


def hover_texts(dataset: Any, kind: str) -> list[str]:
    """Hover text per point: the molecule's name and SMILES (structures) or its name, else SMILES, with the
    conformer index and its energy above the molecule's lowest in meV (conformers)."""
    out: list[str] = []
    for m in dataset:
        if kind == "structures":
            title = f"<b>{m.name}</b> {m.smiles}" if m.name else f"<b>{m.smiles}</b>"
            out.append(f"{title}<br>{m.n_atoms} atoms, {m.n_conformers} conformers")
        else:  # many points: keep the text short (it travels to the browser with every redraw)
            rel = mev(m.energy - m.energy.min())
            title = f"<b>{m.name or m.smiles}</b>"
            out += [f"{title}<br>conformer {j}: {rel[j]:.0f} meV above lowest" for j in range(m.n_conformers)]
    return out


def conformer_energies(dataset: Any, per_atom: bool = False) -> np.ndarray:
    """Per global conformer id: energy above its molecule's lowest conformer (eV, or eV/atom)."""
    parts = []
    for m in dataset:
        rel = m.energy - m.energy.min() if m.n_conformers else m.energy
        parts.append(rel / m.n_atoms if per_atom else rel)
    return np.concatenate(parts) if parts else np.zeros(0)


def prediction_errors(dataset: Any, predictions: Mapping[str, np.ndarray], key: str = "forces_mae") -> np.ndarray:
    """Per global conformer id: a run's per-conformer error from its ``predictions.npz`` (NaN where the run has no
    prediction, e.g. training conformers).

    Args:
        dataset: the dataset the run was trained on.
        predictions: arrays ``mol_id``, ``conf_idx`` and ``key`` (``forces_mae`` in eV/angstrom, or
            ``energy_abs_error`` computed by the caller).
        key: which per-conformer value to place.
    """
    offsets = dataset.conformer_offsets()
    out = np.full(int(offsets[-1]), np.nan)
    values = np.asarray(predictions[key], dtype=np.float64)
    for mol_id, conf, value in zip(predictions["mol_id"], predictions["conf_idx"], values):
        mol_id = str(mol_id)
        if mol_id in dataset:
            out[offsets[dataset.index_of(mol_id)] + int(conf)] = value
    return out


def per_molecule_mean(values: np.ndarray, molecule_index: np.ndarray, n_molecules: int) -> np.ndarray:
    """Per molecule: the mean of ``values`` (one per conformer, NaN = not evaluated) over its evaluated conformers;
    NaN for a molecule with none, so the structure map greys it out instead of calling it perfect.

    Args:
        values: per conformer, e.g. :func:`prediction_errors`.
        molecule_index: per conformer, the index of its molecule (0 .. n_molecules - 1).
        n_molecules: number of molecules (length of the result).
    """
    values = np.asarray(values, dtype=np.float64)
    molecule_index = np.asarray(molecule_index)
    out = np.full(n_molecules, np.nan)
    for i in np.unique(molecule_index[np.isfinite(values)]):
        out[i] = np.nanmean(values[molecule_index == i])
    return out


MAX_MAP_POINTS = 20_000  # points drawn per map at most: beyond this the browser and the websocket slow down


def display_subset(n: int, priority: np.ndarray | None = None, cap: int = MAX_MAP_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of the points to draw when a map has more than ``cap`` points (the map itself is computed on all).

    Points flagged in ``priority`` (e.g. the conformers of the chosen split, or those a run was evaluated on) are
    kept first; the remaining places go to a fixed-seed random sample of the others, so every region of the map
    stays represented in proportion. Sorted; all indices when ``n <= cap``.
    """
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    flagged = np.flatnonzero(priority) if priority is not None else np.zeros(0, dtype=np.int64)
    if len(flagged) >= cap:
        return np.sort(rng.choice(flagged, cap, replace=False))
    others = np.setdiff1d(np.arange(n), flagged)
    fill = rng.choice(others, cap - len(flagged), replace=False)
    return np.sort(np.concatenate([flagged, fill]))
