"""Rows for the app's tables (display units), and molecule search by text or SMARTS substructure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlipdiv.style import mev

__all__ = ["conformer_rows", "molecule_rows", "relative_energies", "search_molecules"]


def molecule_rows(dataset: Any, depictions: bool = True) -> list[dict[str, Any]]:
    """One row per molecule: depiction (SVG data URI), name, SMILES, atoms, conformers, parent families, energy
    range (meV), id. ``depictions=False`` leaves the image column empty (fast, for tests)."""
    from mlipdiv.viz.molview import depiction_data_uri

    rows = []
    for i, m in enumerate(dataset):
        rows.append({
            "index": i,
            "structure": depiction_data_uri(m.smiles) if depictions else "",
            "name": m.name or "",
            "smiles": m.smiles,
            "atoms": int(m.n_atoms),
            "heavy atoms": int(np.count_nonzero(m.atomic_numbers > 1)),
            "conformers": int(m.n_conformers),
            "families": int(len(np.unique(m.parent))),
            "energy range (meV)": float(mev(m.energy.max() - m.energy.min())) if m.n_conformers else 0.0,
            "id": m.id,
        })
    return rows


def search_molecules(rows: Sequence[dict[str, Any]], query: str) -> tuple[list[dict[str, Any]], str]:
    """Rows matching ``query``: a case-insensitive substring of name, SMILES or id, or else a SMARTS substructure.

    Returns:
        ``(rows, how)``: ``how`` is ``"all"``, ``"text"``, ``"smarts"`` or ``"none"`` (nothing matched, or an
        invalid SMARTS when no text matched).
    """
    q = (query or "").strip()
    if not q:
        return list(rows), "all"
    low = q.lower()
    hits = [r for r in rows if low in r["name"].lower() or low in r["smiles"].lower() or low in r["id"].lower()]
    if hits:
        return hits, "text"
    from rdkit import Chem, rdBase

    rdBase.DisableLog("rdApp.*")
    pattern = Chem.MolFromSmarts(q)
    if pattern is None:
        return [], "none"
    found = []
    for r in rows:
        mol = Chem.MolFromSmiles(r["smiles"])
        if mol is not None and mol.HasSubstructMatch(pattern):
            found.append(r)
    return found, "smarts" if found else "none"


def relative_energies(energies: np.ndarray) -> np.ndarray:
    """Energies relative to the lowest one (same unit); empty stays empty."""
    e = np.asarray(energies, dtype=np.float64)
    return e - e.min() if e.size else e


def conformer_rows(molecule: Any) -> list[dict[str, Any]]:
    """One row per conformer of a molecule: index, energy above the lowest (meV), family, how it was made, T (K),
    largest force (meV/Å)."""
    rel = mev(relative_energies(molecule.energy))
    fmax = np.linalg.norm(molecule.forces, axis=-1).max(axis=-1) if molecule.n_conformers else np.zeros(0)
    return [
        {
            "conformer": j,
            "energy above lowest (meV)": float(rel[j]),
            "family": int(molecule.parent[j]),
            "made by": str(molecule.method[j]),
            "temperature (K)": float(molecule.temperature[j]),
            "largest force (meV/Å)": float(mev(fmax[j])),
        }
        for j in range(molecule.n_conformers)
    ]
