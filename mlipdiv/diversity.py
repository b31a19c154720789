"""Diversity measures of a training set: structural (between molecules) and conformational (within a molecule).

Structural, over the set's molecules:
    ``n_molecules``; ``n_scaffolds`` (distinct Bemis-Murcko scaffolds, all acyclic molecules sharing the empty
    scaffold); ``mean_tanimoto_distance`` (mean of 1 - Tanimoto over distinct pairs of Morgan fingerprints,
    radius 2, 2048 bits); ``tanimoto_vendi`` (Vendi score of the Tanimoto kernel, between 1 and n_molecules).

Conformational, for each molecule over its conformers in the set, then averaged over the set's molecules:
    ``vendi`` -- Vendi score of an RBF kernel on :func:`mlipdiv.descriptors.conformer_features` (sorted heavy-atom
    distances), ``k(x, y) = exp(-|x - y|^2 / (2 d l^2))`` with ``d`` the descriptor length (so ``|x - y| / sqrt(d)``
    is the RMS change of an interatomic distance) and ``l = CONFORMER_LENGTH_SCALE`` = 0.1 angstrom. On the
    shipped kind of data (GFN2-xTB, normal-mode sampling at 300 K) two thermal samples of one relaxed conformer
    differ by ~0.07 angstrom RMS (similarity ~0.8) and two distinct parents by ~0.18 angstrom (similarity ~0.2).
    On ``data/default.h5``, all 100 conformers of a molecule score 1.8 on average with one parent, 2.6 with two,
    4.3 with three and 8.5 with four. Between 1 and the number of conformers.
    ``rmsd_spread`` -- mean pairwise RMSD (angstrom) of heavy atoms (all atoms when fewer than three are heavy)
    after optimal superposition (Kabsch), atoms in their stored order (no symmetry search).
    ``energy_range`` -- max - min energy (eV).
    ``families`` -- number of distinct parent conformers (torsional minima) the conformers come from.

The Vendi score (Friedman & Dieng, TMLR 2023) of n items with similarity kernel K (K_ii = 1) is the exponential of
the Shannon entropy of the eigenvalues of K / n: n for n orthogonal items, 1 for n identical ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mlipdiv.descriptors import (
    cached_array,
    conformer_features,
    molecule_fingerprints,
    single_threaded_blas,
    tanimoto_similarity,
)
from mlipdiv.io.dataset import Dataset, Molecule

__all__ = [
    "CONFORMER_LENGTH_SCALE",
    "TABLE_COLUMNS",
    "conformer_kernel",
    "conformational_diversity",
    "dataset_conformational_table",
    "molecule_conformational_diversity",
    "murcko_scaffold",
    "pairwise_rmsd",
    "structural_diversity",
    "training_set_diversity",
    "vendi_score",
]

CONFORMER_LENGTH_SCALE = 0.1  # angstrom, RMS change per heavy-atom pair distance (see the module doc)


def vendi_score(kernel: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K / n) for an (n, n) similarity matrix with unit diagonal.

    Returns n for orthogonal items (identity kernel), 1 for identical items (all-ones kernel), 0 for no items.
    """
    k = np.asarray(kernel, dtype=np.float64)
    n = len(k)
    if n == 0:
        return 0.0
    lam = np.linalg.eigvalsh((k + k.T) / (2 * n))
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


# ------------------------------------------------------------------------------------------------ structural


@lru_cache(maxsize=100_000)
def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES (RDKit); ``""`` for acyclic molecules (they share the empty scaffold)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def structural_diversity(dataset: Dataset, molecule_ids: Iterable[str] | None = None) -> dict[str, float]:
    """Structural diversity of a set of molecules of ``dataset`` (all of them by default).

    Returns:
        ``n_molecules``, ``n_scaffolds``, ``mean_tanimoto_distance``, ``tanimoto_vendi`` (see the module doc).
    """
    ids = list(dict.fromkeys(dataset.ids if molecule_ids is None else molecule_ids))
    n = len(ids)
    if n == 0:
        return {"n_molecules": 0, "n_scaffolds": 0, "mean_tanimoto_distance": 0.0, "tanimoto_vendi": 0.0}
    fps = molecule_fingerprints(dataset)[[dataset.index_of(i) for i in ids]]
    with single_threaded_blas():
        sim = tanimoto_similarity(fps)
        vendi = vendi_score(sim)
    mean_dist = float((1.0 - sim)[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0
    return {
        "n_molecules": n,
        "n_scaffolds": len({murcko_scaffold(dataset[i].smiles) for i in ids}),
        "mean_tanimoto_distance": mean_dist,
        "tanimoto_vendi": vendi,
    }


# ------------------------------------------------------------------------------------------------ conformational


def conformer_kernel(descriptors: np.ndarray, length_scale: float = CONFORMER_LENGTH_SCALE) -> np.ndarray:
    """RBF kernel between conformers of one molecule from their (n, d) :func:`conformer_features`."""
    x = np.asarray(descriptors, dtype=np.float64)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0) / max(x.shape[1], 1)
    np.fill_diagonal(d2, 0.0)
    return np.exp(-d2 / (2.0 * length_scale**2))


def pairwise_rmsd(positions: np.ndarray) -> np.ndarray:
    """RMSD (same units as ``positions``) of every pair i < j after optimal superposition (Kabsch).

    Args:
        positions: (n_conf, n_atoms, 3), atoms in the same order in every conformer.

    Returns:
        (n_conf * (n_conf - 1) / 2,) in ``np.triu_indices(n_conf, 1)`` order.
    """
    x = np.asarray(positions, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    i, j = np.triu_indices(len(x), 1)
    if len(i) == 0:
        return np.zeros(0)
    xt = x.transpose(2, 0, 1)  # (3, n_conf, n_atoms)
    h = np.matmul(xt[:, None], xt[None].swapaxes(-1, -2))[:, :, i, j].transpose(2, 0, 1)  # (pairs, 3, 3)
    s = np.linalg.svd(h, compute_uv=False)  # LAPACK; 3x3 closed forms left ~1e-3 A of round-off for twins
    s[:, 2] *= np.where(_det3(h) < 0, -1.0, 1.0)  # a reflection is not a rotation: flip the smallest
    sq = np.sum(x * x, axis=(1, 2))
    return np.sqrt(np.maximum(sq[i] + sq[j] - 2.0 * s.sum(axis=1), 0.0) / x.shape[1])


def _det3(a: np.ndarray) -> np.ndarray:
    return (
        a[:, 0, 0] * (a[:, 1, 1] * a[:, 2, 2] - a[:, 1, 2] * a[:, 2, 1])
        - a[:, 0, 1] * (a[:, 1, 0] * a[:, 2, 2] - a[:, 1, 2] * a[:, 2, 0])
        + a[:, 0, 2] * (a[:, 1, 0] * a[:, 2, 1] - a[:, 1, 1] * a[:, 2, 0])
    )


def molecule_conformational_diversity(
    molecule: Molecule, conformers: Sequence[int] | np.ndarray | None = None
) -> dict[str, float]:
    """Conformational diversity of some conformers (all by default) of one molecule (see the module doc)."""
    idx = np.arange(molecule.n_conformers) if conformers is None else np.asarray(conformers, dtype=np.int64)
    if len(idx) == 0:
        return {"conformers": 0, "vendi": 0.0, "rmsd_spread": 0.0, "energy_range": 0.0, "families": 0}
    if len(idx) == 1:  # one conformer is one distinct structure: the C = 1 end of a trade-off, without the algebra
        return {"conformers": 1, "vendi": 1.0, "rmsd_spread": 0.0, "energy_range": 0.0, "families": 1}
    pos = molecule.positions[idx]
    heavy = molecule.atomic_numbers > 1
    rmsd = pairwise_rmsd(pos[:, heavy] if heavy.sum() >= 3 else pos)
    energy = molecule.energy[idx]
    return {
        "conformers": len(idx),
        "vendi": vendi_score(conformer_kernel(conformer_features(molecule.atomic_numbers, pos))),
        "rmsd_spread": float(rmsd.mean()) if len(rmsd) else 0.0,
        "energy_range": float(energy.max() - energy.min()),
        "families": len(np.unique(molecule.parent[idx])),
    }


def conformational_diversity(
    dataset: Dataset, pairs: Iterable[tuple[str, int]] | None = None
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per-molecule conformational diversity of ``(molecule_id, conformer_index)`` pairs (all by default).

    Returns:
        ``(summary, per_molecule)``: ``summary`` holds the mean over molecules of ``vendi``, ``rmsd_spread``
        (angstrom), ``energy_range`` (eV) and ``families`` as ``mean_vendi``, ``mean_rmsd_spread``,
        ``mean_energy_range``, ``mean_families``; ``per_molecule`` maps each id to its own values.
    """
    if pairs is None:  # the whole set: from the on-disk cache after the first time
        table = dataset_conformational_table(dataset)
        per = {m.id: {c: (int(v) if c in ("conformers", "families") else float(v)) for c, v in zip(TABLE_COLUMNS, row)}
               for m, row in zip(dataset, table)}
    else:
        groups: dict[str, list[int]] = {}
        for mol_id, conf in pairs:
            groups.setdefault(str(mol_id), []).append(int(conf))
        with single_threaded_blas():
            per = {m: molecule_conformational_diversity(dataset[m], sorted(c)) for m, c in groups.items()}
    keys = ("vendi", "rmsd_spread", "energy_range", "families")
    summary = {f"mean_{k}": float(np.mean([v[k] for v in per.values()])) if per else 0.0 for k in keys}
    return summary, per


TABLE_COLUMNS = ("conformers", "vendi", "rmsd_spread", "energy_range", "families")


def dataset_conformational_table(dataset: Dataset, cache: bool = True) -> np.ndarray:
    """Conformational diversity of every molecule over all its conformers, cached like the descriptors.

    Returns:
        (n_molecules, 5) float64 in dataset order, columns :data:`TABLE_COLUMNS`. About 6 CPU seconds for 1000
        molecules x 100 conformers the first time (pairwise RMSD dominates), instant from the cache.
    """

    def compute() -> np.ndarray:
        with single_threaded_blas():
            rows = [molecule_conformational_diversity(m) for m in dataset]
        return np.array([[r[c] for c in TABLE_COLUMNS] for r in rows], dtype=np.float64).reshape(-1, 5)

    return cached_array(f"conformational-l{CONFORMER_LENGTH_SCALE}", dataset, compute, cache)


def training_set_diversity(dataset: Dataset, pairs: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Structural and conformational diversity of a training set, as stored in a split file."""
    ids = list(dict.fromkeys(str(m) for m, _ in pairs))
    conformational, _ = conformational_diversity(dataset, pairs)
    return {
        "structural": structural_diversity(dataset, ids),
        "conformational": {
            **conformational,
            "kernel": f"rbf on sorted heavy-atom distances, length scale {CONFORMER_LENGTH_SCALE} angstrom (RMS)",
        },
    }
