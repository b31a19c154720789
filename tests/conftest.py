"""Shared fixtures: tiny, real datasets (RDKit conformers + GFN2-xTB labels) made in a second or two.

The tiny set is built directly (embed, perturb, label) rather than with ``generate`` so that tests of later steps
(splits, training, app) do not depend on the whole generation pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_SMILES = ["CCO", "CC(=O)O", "Oc1ccccc1", "CCN", "CC(C)O", "OCCO", "CCCl", "CC(F)F", "CC=O", "NC=O"]


def make_tiny_dataset(
    path: Path, smiles: list[str] = TINY_SMILES, parents: int = 3, samples: int = 3, seed: int = 0
) -> Path:
    """Write an mlipdiv HDF5 file: each molecule has ``parents`` embedded conformers x (1 + ``samples``)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from mlipdiv.data.oracle import GFN2xTB
    from mlipdiv.io.dataset import Dataset, Molecule, molecule_id
    from mlipdiv.io.hdf5 import write_hdf5

    rng = np.random.default_rng(seed)
    oracle = GFN2xTB()
    molecules = []
    for smi in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        cids = AllChem.EmbedMultipleConfs(mol, numConfs=parents, randomSeed=seed)
        AllChem.MMFFOptimizeMoleculeConfs(mol)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        pos, parent, temp, method = [], [], [], []
        for p, cid in enumerate(cids):
            base = mol.GetConformer(cid).GetPositions()
            pos.append(base)
            parent.append(p), temp.append(0.0), method.append("relaxed")
            for _ in range(samples):
                pos.append(base + rng.normal(0.0, 0.05, base.shape))
                parent.append(p), temp.append(300.0), method.append("nms")
        labels = [oracle(z, x) for x in pos]
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(smi), isomericSmiles=False)
        molecules.append(
            Molecule(
                id=molecule_id(canonical),
                smiles=canonical,
                atomic_numbers=z,
                positions=np.array(pos),
                energy=np.array([lab.energy for lab in labels]),
                forces=np.array([lab.forces for lab in labels]),
                parent=np.array(parent),
                temperature=np.array(temp),
                method=np.array(method),
            )
        )
    return write_hdf5(Dataset(molecules, attrs={"level_of_theory": "GFN2-xTB", "command": "tests"}), path)


@pytest.fixture(scope="session")
def tiny_dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 molecules x 12 conformers (3 parent families of 4), real GFN2-xTB labels. Read-only: copy to modify."""
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_dataset_path: Path):
    from mlipdiv.io.hdf5 import read_hdf5

    return read_hdf5(tiny_dataset_path)
