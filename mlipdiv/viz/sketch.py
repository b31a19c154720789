"""2D structure sketches for map hovers, drawn by the browser.

A hover has to answer at once, without a round trip to the server. An RDKit SVG per molecule is ~5 KB, so a map of
the default dataset would carry 5 MB of pictures on every redraw; a sketch (RDKit's 2D coordinates in tenths of a
bond unit, the bonds, and labels for the atoms a chemist labels) is ~200 bytes, and ``assets/depict.js`` draws it as
a skeletal formula when the pointer rests on a point. Clicking a point still shows RDKit's full depiction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEPICT_JS", "sketch", "sketches"]

DEPICT_JS = Path(__file__).with_name("assets") / "depict.js"
"""The browser side: finds the maps (Plotly figures whose ``layout.meta`` holds ``"mlipdiv_depict"``) and shows the
hovered point's molecule."""

_SCALE = 10  # coordinates are sent as integers in tenths of RDKit's 2D bond length (1.5)


def sketch(smiles: str) -> dict[str, list[Any]] | None:
    """The 2D sketch of one molecule, or None when RDKit cannot parse ``smiles`` (e.g. imported data without one).

    Returns:
        ``{"l": labels, "x": coords, "b": bonds}``: per heavy atom its label (``""`` for a carbon bonded to others,
        else the element with its hydrogens and charge, e.g. ``"OH"``, ``"NH2"``, ``"N+"``); ``x`` the flattened
        (x, y) of each atom as integers in tenths of a bond; ``b`` flattened (i, j, order) triples of the Kekulé
        structure (order 1, 2 or 3).
    """
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return None
    Chem.Kekulize(mol, clearAromaticFlags=True)
    rdDepictor.SetPreferCoordGen(False)  # RDKit's own layout: deterministic and fast (~1 ms per molecule)
    rdDepictor.Compute2DCoords(mol)
    xy = mol.GetConformer().GetPositions()[:, :2] / 1.5 * _SCALE
    xy[:, 1] *= -1  # screen y grows downwards
    labels = [_label(atom) for atom in mol.GetAtoms()]
    bonds = []
    for bond in mol.GetBonds():
        order = {Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}.get(bond.GetBondType(), 1)
        bonds += [bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), order]
    return {"l": labels, "x": [int(v) for v in np.rint(xy).ravel()], "b": bonds}


def _label(atom: Any) -> str:
    symbol = atom.GetSymbol()
    charge = atom.GetFormalCharge()
    if symbol == "C" and atom.GetDegree() > 0 and charge == 0:
        return ""
    h = atom.GetTotalNumHs()
    text = symbol + ("H" if h == 1 else f"H{h}" if h > 1 else "")
    return text + ("" if charge == 0 else "+" if charge == 1 else "-" if charge == -1 else f"{charge:+d}")


def sketches(dataset: Any) -> dict[str, Any]:
    """What the browser needs to sketch any point of a map of ``dataset``: the dataset's content digest (the browser
    keeps the sketches of a digest, so a page sends them once per session), the conformer offsets (a point's global
    conformer id falls in its molecule's range) and one :func:`sketch` per molecule (None where there is none).
    Computed once per dataset object (about 0.4 s for 1,000 molecules)."""
    from mlipdiv.descriptors import dataset_digest

    def compute() -> dict[str, Any]:
        return {"digest": dataset_digest(dataset), "offsets": [int(v) for v in dataset.conformer_offsets()],
                "sketches": [sketch(m.smiles) for m in dataset]}

    return dataset.memo(("sketches",), compute)
