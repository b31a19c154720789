"""2D sketches for map hovers (mlipdiv.viz.sketch): what the browser draws must be the molecule's structure."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from mlipdiv.viz.sketch import sketch, sketches


def bond_lengths(sk: dict) -> np.ndarray:
    xy = np.asarray(sk["x"], dtype=float).reshape(-1, 2)
    b = np.asarray(sk["b"]).reshape(-1, 3)
    return np.linalg.norm(xy[b[:, 0]] - xy[b[:, 1]], axis=1)


@pytest.mark.parametrize("smiles", ["c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C#CC[N+](C)(C)C", "OS(=O)(=O)c1ccc(Cl)cc1F"])
def test_a_sketch_holds_every_heavy_atom_and_bond_of_the_kekule_structure(smiles):
    mol = Chem.MolFromSmiles(smiles)
    sk = sketch(smiles)
    assert len(sk["l"]) == mol.GetNumAtoms() and len(sk["x"]) == 2 * mol.GetNumAtoms()
    assert len(sk["b"]) == 3 * mol.GetNumBonds()
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    # the sum of bond orders is the Kekulé structure's (an aromatic ring is drawn with alternating double bonds)
    assert sum(sk["b"][2::3]) == sum(int(b.GetBondTypeAsDouble()) for b in kekule.GetBonds())
    # a 2D layout, not a collapsed one: every bond about one unit (10 tenths) long
    assert np.allclose(bond_lengths(sk), 10, atol=1.5)


def test_labels_name_heteroatoms_with_their_hydrogens_and_charge_and_leave_chain_carbons_bare():
    assert sketch("c1ccccc1O")["l"] == ["", "", "", "", "", "", "OH"]
    assert sketch("C[N+](C)(C)C")["l"] == ["", "N+", "", "", ""]
    assert sketch("NC=O")["l"] == ["NH2", "", "O"]
    assert sketch("C")["l"] == ["CH4"]  # a lone carbon is labelled


def test_unparsable_smiles_give_no_sketch():
    assert sketch("not a molecule") is None and sketch("") is None


def test_sketches_map_every_conformer_to_its_molecule(tiny_dataset):
    data = sketches(tiny_dataset)
    offsets = data["offsets"]
    assert len(data["sketches"]) == len(tiny_dataset) and len(offsets) == len(tiny_dataset) + 1
    assert offsets[-1] == sum(m.n_conformers for m in tiny_dataset)
    for i, m in enumerate(tiny_dataset):
        assert offsets[i + 1] - offsets[i] == m.n_conformers
        assert len(data["sketches"][i]["l"]) == Chem.MolFromSmiles(m.smiles).GetNumAtoms()
    assert sketches(tiny_dataset) is data  # once per dataset object
