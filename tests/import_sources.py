"""Small files in other programs' layouts, written here (never downloaded) for the import tests.

Geometries are real RDKit conformers (ETKDG + MMFF) with seeded thermal noise; the ethanol MD frames carry real
GFN2-xTB labels, the other files arbitrary but consistent numbers: the import is about faithful conversion. Each
builder returns what it wrote in the file's own units, so a test can compare the imported dataset against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlipdiv.units import ANGSTROM_PER_BOHR, EV_PER_HARTREE, EV_PER_KCAL_PER_MOL


def conformers(smiles: str, n: int, seed: int = 0, noise: float = 0.03, parents: int = 2):
    """(atomic numbers, (n, n_atoms, 3) angstrom): ``parents`` embedded conformers with thermal noise around them."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=parents, randomSeed=seed))
    AllChem.MMFFOptimizeMoleculeConfs(mol)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    rng = np.random.default_rng(seed)
    base = [mol.GetConformer(c).GetPositions() for c in cids]
    pos = np.array([base[i % len(base)] + rng.normal(0.0, noise, base[0].shape) for i in range(n)])
    return z, pos


def fake_labels(z: np.ndarray, pos: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Consistent arbitrary labels in eV and eV/angstrom: a per-element sum plus a distance term."""
    rng = np.random.default_rng(seed)
    e = -10.0 * z.sum() + np.array([np.linalg.norm(p - p.mean(0)) for p in pos]) + rng.normal(0, 0.01, len(pos))
    return e, rng.normal(0.0, 0.5, pos.shape)


def xtb_labels(z: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from mlipdiv.data.oracle import GFN2xTB

    oracle = GFN2xTB()
    labels = [oracle(z, p) for p in pos]
    return np.array([lab.energy for lab in labels]), np.array([lab.forces for lab in labels])


def ethanol_md_db(path: Path, n: int = 24) -> dict:
    """schnetpack's layout: ``data={"energy": [E], "forces": F}`` in kcal/mol and kcal/mol/Ang, units in the
    metadata (``_property_unit_dict``, ``_distance_unit``), as its ethanol MD test data."""
    from ase import Atoms
    from ase.db import connect

    z, pos = conformers("CCO", n, seed=1, parents=3)
    e, f = xtb_labels(z, pos)
    e_kcal, f_kcal = e / EV_PER_KCAL_PER_MOL, f / EV_PER_KCAL_PER_MOL
    with connect(str(path)) as db:
        for p, ek, fk in zip(pos, e_kcal, f_kcal):
            db.write(Atoms(numbers=z, positions=p), data={"energy": np.array([ek]), "forces": fk})
    db = connect(str(path))
    db.metadata = {"_property_unit_dict": {"energy": "kcal/mol", "forces": "kcal/mol/Ang"}, "_distance_unit": "Ang",
                   "atomrefs": {}}
    return {"z": z, "positions": pos, "energy": e_kcal, "forces": f_kcal}


QM9_SMILES = ["C", "CC", "CCO", "CC=O", "C#N", "CN", "CCC", "OCO", "CC#C", "NC=O", "COC", "c1ccoc1"]


def qm9_like_db(path: Path, smiles: list[str] = QM9_SMILES) -> dict:
    """One relaxed geometry per molecule, no forces, several energies per row (``energy_U0``, ``energy_U``, in eV
    as schnetpack's QM9 stores them), plus a ``smiles`` key-value pair."""
    from ase import Atoms
    from ase.db import connect

    out: dict = {"energy": {}, "smiles": smiles}
    with connect(str(path)) as db:
        for i, smi in enumerate(smiles):
            z, pos = conformers(smi, 1, seed=i, noise=0.0, parents=1)
            e, _ = fake_labels(z, pos, seed=i)
            out["energy"][smi] = float(e[0])
            db.write(Atoms(numbers=z, positions=pos[0]), key_value_pairs={"smiles": smi},
                     data={"energy_U0": np.array([e[0]]), "energy_U": np.array([e[0] + 0.1]), "homo": -0.3})
    return out


def extxyz_file(path: Path) -> dict:
    """``ase.io.write`` of frames with a SinglePointCalculator (eV, eV/angstrom): 3 molecules x 4 conformers, and
    one more ethanol frame with its atoms in another order."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames, energies = [], {}
    for k, smi in enumerate(["CCO", "CC(=O)O", "c1ccccc1O"]):
        z, pos = conformers(smi, 4, seed=k)
        e, f = fake_labels(z, pos, seed=k)
        energies[smi] = list(e)
        for p, ei, fi in zip(pos, e, f):
            atoms = Atoms(numbers=z, positions=p)
            atoms.calc = SinglePointCalculator(atoms, energy=float(ei), forces=fi)
            frames.append(atoms)
    z, pos = conformers("CCO", 1, seed=7, parents=1)
    order = np.roll(np.arange(len(z)), 3)
    e, f = fake_labels(z, pos, seed=7)
    atoms = Atoms(numbers=z[order], positions=pos[0][order])
    atoms.calc = SinglePointCalculator(atoms, energy=float(e[0]), forces=f[0][order])
    frames.append(atoms)
    energies["CCO"].append(float(e[0]))
    write(path, frames, format="extxyz")
    return {"energy": energies, "reordered_energy": float(e[0])}


SPICE_SMILES = {"CCO": "[C:1]([C:2]([O:3][H:9])([H:7])[H:8])([H:4])([H:5])[H:6]", "CC=O": None, "CN": None,
                "CC(=O)[O-]": None}


def spice_h5(path: Path, n: int = 5) -> dict:
    """SPICE layout: a group per molecule with ``atomic_numbers``, ``conformations`` (bohr), ``dft_total_energy``
    and ``formation_energy`` (hartree), ``dft_total_gradient`` (hartree/bohr), ``smiles``, each with a ``units``
    attribute as SPICE writes them; one charged molecule (acetate)."""
    import h5py

    out: dict = {}
    with h5py.File(path, "w") as f:
        for k, (smi, mapped) in enumerate(SPICE_SMILES.items()):
            z, pos = conformers(smi, n, seed=k)
            e, forces = fake_labels(z, pos, seed=k)
            g = f.create_group(smi.replace("/", "_"))
            g.create_dataset("atomic_numbers", data=z.astype(np.int16))
            g.create_dataset("conformations", data=(pos / ANGSTROM_PER_BOHR).astype(np.float32)).attrs["units"] = \
                "bohr"
            g.create_dataset("dft_total_energy", data=e / EV_PER_HARTREE).attrs["units"] = "hartree"
            g.create_dataset("formation_energy", data=e / EV_PER_HARTREE + 1.0).attrs["units"] = "hartree"
            grad = -forces / (EV_PER_HARTREE / ANGSTROM_PER_BOHR)
            g.create_dataset("dft_total_gradient", data=grad.astype(np.float32)).attrs["units"] = "hartree/bohr"
            g.create_dataset("smiles", data=[(mapped or smi).encode()], dtype=h5py.string_dtype())
            g.create_dataset("subset", data=[b"test"], dtype=h5py.string_dtype())
            out[smi] = {"energy_hartree": e / EV_PER_HARTREE, "positions_bohr": (pos / ANGSTROM_PER_BOHR)
                        .astype(np.float32), "gradient": grad.astype(np.float32)}
    return out


def ani_h5(path: Path, n: int = 6) -> dict:
    """ANI-1x layout: groups by formula (C2H6O holds two isomers, ethanol and dimethyl ether), ``coordinates`` in
    angstrom, ``wb97x_dz.energy`` (hartree) and ``wb97x_dz.forces`` (hartree/angstrom), ``ccsd(t)_cbs.energy`` with
    NaN where not computed."""
    import h5py

    out: dict = {}
    groups = {"C2H6O": ["CCO", "COC"], "C2H4O": ["CC=O"]}
    with h5py.File(path, "w") as f:
        for k, (name, smiles) in enumerate(groups.items()):
            zs, ps, es, fs = [], [], [], []
            for j, smi in enumerate(smiles):
                z, pos = conformers(smi, n, seed=10 * k + j)
                e, forces = fake_labels(z, pos, seed=10 * k + j)
                if zs and not np.array_equal(np.sort(zs[0]), np.sort(z)):
                    raise AssertionError("isomers must share a formula")
                order = np.argsort(z, kind="stable")  # one atom order per group, as in ANI-1x
                zs.append(z[order]), ps.append(pos[:, order]), es.append(e), fs.append(forces[:, order])
            z = zs[0]
            assert all(np.array_equal(z, x) for x in zs)
            e = np.concatenate(es) / EV_PER_HARTREE
            g = f.create_group(name)
            g.create_dataset("atomic_numbers", data=z.astype(np.uint8))
            g.create_dataset("coordinates", data=np.concatenate(ps).astype(np.float32))
            g.create_dataset("wb97x_dz.energy", data=e)
            g.create_dataset("wb97x_dz.forces", data=np.concatenate(fs) / EV_PER_HARTREE)
            cc = e - 0.01
            cc[::2] = np.nan
            g.create_dataset("ccsd(t)_cbs.energy", data=cc)
            out[name] = {"energy_hartree": e, "ccsd": cc}
    return out


def rmd17_npz(path: Path, n: int = 20) -> dict:
    """rMD17 layout: ``nuclear_charges``, ``coords`` (angstrom), ``energies`` and ``forces`` in kcal/mol(/angstrom);
    malonaldehyde frames."""
    z, pos = conformers("O=CCC=O", n, seed=3)
    e, f = fake_labels(z, pos, seed=3)
    data = {"nuclear_charges": z, "coords": pos, "energies": e / EV_PER_KCAL_PER_MOL,
            "forces": f / EV_PER_KCAL_PER_MOL, "old_indices": np.arange(n), "old_energies": e}
    np.savez(path, **data)
    return data
