"""Rows for the app's tables (display units), and molecule search by text or SMARTS substructure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlipdiv.style import mev

__all__ = ["conformer_rows", "display_name", "formula", "molecule_rows", "plain_note", "relative_energies",
           "search_molecules", "with_depictions"]


def formula(atomic_numbers: Any) -> str:
    """Hill formula (C first, then H, then the rest alphabetically): ``C7H8O``; what a person searches for."""
    from collections import Counter

    from ase.data import chemical_symbols

    counts = Counter(chemical_symbols[int(z)] for z in np.asarray(atomic_numbers).ravel())
    order = (["C", "H"] if "C" in counts else []) + sorted(k for k in counts if "C" not in counts or k not in "CH")
    return "".join(f"{el}{counts[el] if counts[el] > 1 else ''}" for el in order if el in counts)


def display_name(row: dict[str, Any]) -> str:
    """How a molecule is named in the app: its formula and the source's name (``C7H8O · NCI 30``), or its SMILES
    when the source gives no name."""
    return f"{row['formula']} · {row['name'] or row['smiles']}"


def molecule_rows(dataset: Any, depictions: bool = True) -> list[dict[str, Any]]:
    """One row per molecule: depiction (SVG data URI), formula, name, SMILES, atoms, conformers, parent families,
    energy range (meV), id. ``depictions=False`` leaves the image column empty (fast: the Dataset page draws only
    the rows it shows, see :func:`with_depictions`)."""
    from mlipdiv.viz.molview import depiction_data_uri

    rows = []
    for i, m in enumerate(dataset):
        rows.append({
            "index": i,
            "structure": depiction_data_uri(m.smiles) if depictions else "",
            "formula": formula(m.atomic_numbers),
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


def with_depictions(rows: Sequence[dict[str, Any]], draw: Any = None) -> list[dict[str, Any]]:
    """Copies of ``rows`` with their ``structure`` depiction drawn (``draw(smiles)``: default
    :func:`mlipdiv.viz.molview.depiction_data_uri`), for the few rows a page shows."""
    if draw is None:
        from mlipdiv.viz.molview import depiction_data_uri as draw
    return [{**r, "structure": r.get("structure") or draw(r["smiles"])} for r in rows]


def search_molecules(rows: Sequence[dict[str, Any]], query: str) -> tuple[list[dict[str, Any]], str]:
    """Rows matching ``query``: a case-insensitive substring of name, formula, SMILES or id (an exact formula such
    as ``C6H6O`` matches that formula only), or else a SMARTS substructure.

    Returns:
        ``(rows, how)``: ``how`` is ``"all"``, ``"text"``, ``"smarts"`` or ``"none"`` (nothing matched, or an
        invalid SMARTS when no text matched).
    """
    q = (query or "").strip()
    if not q:
        return list(rows), "all"
    exact = [r for r in rows if r.get("formula") == q]
    if exact:
        return exact, "text"
    low = q.lower()
    hits = [r for r in rows if any(low in str(r.get(k, "")).lower() for k in ("name", "formula", "smiles", "id"))]
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


# ------------------------------------------------------------------------------------------------ plain language

FORM_WORDS = {  # the error models of mlipdiv.analysis.fit, as the Budget page names them
    "average": "average of the models: each one below weighted by how well it fits for its number of parameters "
               "(Akaike weights), as the budget command and docs/RESULTS.md answer",
    "full": "full model: a floor plus one term falling with M and one with C",
    "no_floor": "no floor: one term falling with M and one with C, no lowest reachable error",
    "total": "total only: the error depends on the total number of conformers M × C, not on how it is split",
    "either": "either resource: a floor plus the two terms in parallel, so the error follows the more plentiful of "
              "M and C (more molecules barely help once C is large, and the other way round)",
    "either_no_floor": "either resource, no floor: the two terms in parallel, no lowest reachable error",
    "either_limited": "either resource, with a limit on what other molecules teach: as 'either resource', but more "
                      "molecules lower the error only down to a level, below which only a molecule's own conformers "
                      "help",
    "either_limited_no_floor": "either resource with a limit, no floor: as the one above, no lowest reachable error",
}
SPLIT_WORDS = {"test_molecules": "Unseen molecules", "test_conformers": "Unseen conformers", "val": "Validation"}
AICC = ("AICc, a score of fit that charges for every extra parameter (the corrected Akaike information criterion; "
        "differences above 2 count)")


def plain_note(note: str) -> str:
    """A fit or recommendation note of :mod:`mlipdiv.analysis` in words a first-time user reads: no command-line
    flags, split and form names spelled out, AICc explained."""
    import re

    text = note.strip()
    m = re.match(r"^(test_molecules|test_conformers|val): (.*)$", text, re.S)
    prefix = ""
    if m:
        prefix, text = f"{SPLIT_WORDS[m.group(1)]}: ", m.group(2)
    m = re.match(r"AICc prefers the '(\w+)' form over '(\w+)' by ([\d.]+)(.*)$", text, re.S)
    if m:
        better, worse, by, rest = m.groups()
        text = (f"a simpler error model, \"{FORM_WORDS.get(better, better)}\", describes these runs better than "
                f"\"{FORM_WORDS.get(worse, worse)}\" (by {by} in {AICC}){rest}. You can choose it under "
                "Error model")
    text = re.sub(r"\s*\(or use --form total, 3 parameters\)",
                  " (or choose the error model \"total only\", 3 parameters)", text)
    text = re.sub(r"--form (\w+)", lambda g: f"the error model \"{g.group(1)}\"", text)
    text = re.sub(r"choose one with --(\w+)", r"choose one \1", text)
    text = re.sub(r"\s*\(infinite covariance\)", "", text)
    text = text.replace("allow extrapolation explicitly", "switch on \"Answer beyond the fitted range\"")
    if "AICc" in text and "Akaike" not in text:
        text = text.replace("AICc", AICC, 1)
    text = text[:1].upper() + text[1:] if not prefix else text
    return prefix + text.rstrip(".") + "."
