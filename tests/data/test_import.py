"""The import pipeline: molecules, conformers and units of each format (energies to 1e-6 relative), identity,
families, skipped entries, the report, and that a failed import leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from import_sources import ani_h5, conformers, ethanol_md_db, extxyz_file, fake_labels, qm9_like_db, rmd17_npz, spice_h5
from mlipdiv.data.importing import bond_graphs, families, import_dataset, report_path
from mlipdiv.errors import DatasetError, MlipdivError
from mlipdiv.io.hdf5 import read_hdf5
from mlipdiv.io.sources import SourceOptions
from mlipdiv.units import ANGSTROM_PER_BOHR, EV_PER_HARTREE, EV_PER_KCAL_PER_MOL


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.fixture(scope="module")
def ethanol_db(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("src") / "md_ethanol.db"
    return path, ethanol_md_db(path, n=12)


def test_ase_db_md_frames_in_kcal_per_mol(ethanol_db, tmp_path: Path) -> None:
    src, written = ethanol_db
    result = import_dataset(src, tmp_path / "eth.h5")
    ds = read_hdf5(tmp_path / "eth.h5")
    assert len(ds) == 1 and ds[0].smiles == "CCO" and ds[0].n_conformers == 12
    assert _rel(ds[0].energy, written["energy"] * EV_PER_KCAL_PER_MOL) < 1e-6
    np.testing.assert_allclose(ds[0].forces, written["forces"] * EV_PER_KCAL_PER_MOL, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds[0].positions, written["positions"], atol=1e-5)
    assert ds.has_forces and ds.level_of_theory == "unknown"
    assert list(ds[0].method) == ["import"] * 12 and (ds[0].temperature == 0).all()
    report = json.loads(report_path(tmp_path / "eth.h5").read_text())
    assert report == result.report == json.loads(ds.attrs["import_report"])
    assert report["units"]["energy"] == "kcal/mol" and report["units"]["from"] == "file"
    assert any("kcal/mol -> eV" in c for c in report["units"]["conversions"])
    assert report["molecules"] == 1 and report["conformers"] == 12 and report["elements"] == ["H", "C", "O"]
    assert report["families"]["total"] == len(np.unique(ds[0].parent)) >= 1
    assert "RMSD" in ds.attrs["family_method"]


def test_qm9_like_db_without_forces(tmp_path: Path) -> None:
    written = qm9_like_db(tmp_path / "qm9.db")
    import_dataset(tmp_path / "qm9.db", tmp_path / "qm9.h5", options=SourceOptions(energy_key="energy_U0"),
                   level_of_theory="B3LYP/6-31G(2df,p)")
    ds = read_hdf5(tmp_path / "qm9.h5")
    assert len(ds) == len(written["smiles"]) and ds.n_conformers == len(written["smiles"])
    assert not ds.has_forces and ds.level_of_theory == "B3LYP/6-31G(2df,p)"
    for m in ds:
        assert (m.forces == 0).all()
    # identity from the geometry; the file's SMILES agrees with it (checked, counted)
    report = json.loads(ds.attrs["import_report"])
    assert report["identity"]["source_smiles_checked"] == len(written["smiles"])
    assert report["identity"]["source_smiles_disagree"] == 0
    energies = {m.smiles: m.energy[0] for m in ds}
    from rdkit import Chem

    for smi, e in written["energy"].items():
        assert _rel(energies[Chem.CanonSmiles(smi, useChiral=0)], e) < 1e-12


def test_extxyz_groups_by_connectivity_and_maps_atom_orders(tmp_path: Path) -> None:
    written = extxyz_file(tmp_path / "mace.xyz")
    result = import_dataset(tmp_path / "mace.xyz", tmp_path / "x.h5")
    ds = read_hdf5(tmp_path / "x.h5")
    assert sorted(m.smiles for m in ds) == ["CC(=O)O", "CCO", "Oc1ccccc1"]
    eth = next(m for m in ds if m.smiles == "CCO")
    assert eth.n_conformers == 5  # the frame with its atoms in another order joined the molecule ...
    assert result.report["identity"]["reordered_graphs"] == 1
    assert _rel(eth.energy, written["energy"]["CCO"]) < 1e-12
    # ... mapped onto the first frame's atom order: the same bond graph in the same atom numbering
    graphs = bond_graphs(eth.atomic_numbers, eth.positions.astype(float))
    assert (graphs == graphs[0]).all()


def test_spice_h5(tmp_path: Path) -> None:
    written = spice_h5(tmp_path / "spice.h5")
    result = import_dataset(tmp_path / "spice.h5", tmp_path / "s.h5", level_of_theory="wB97M-D3BJ/def2-TZVPPD")
    ds = read_hdf5(tmp_path / "s.h5")
    assert sorted(m.smiles for m in ds) == ["CC=O", "CCO", "CN"]  # acetate skipped: charged
    skipped = result.report["skipped"]
    assert skipped["by_reason"] == {"charged": 5} and "formal charge -1" in skipped["entries"][0]["reason"]
    eth = next(m for m in ds if m.smiles == "CCO")
    assert _rel(eth.energy, written["CCO"]["energy_hartree"] * EV_PER_HARTREE) < 1e-6
    np.testing.assert_allclose(eth.positions, written["CCO"]["positions_bohr"] * ANGSTROM_PER_BOHR, atol=1e-5)
    assert result.report["identity"]["source_smiles_checked"] == 3
    assert result.report["identity"]["source_smiles_disagree"] == 0  # the mapped SMILES compared without maps


def test_spice_smiles_disagreeing_with_the_geometry_is_reported(tmp_path: Path) -> None:
    import h5py

    spice_h5(tmp_path / "spice.h5")
    with h5py.File(tmp_path / "spice.h5", "a") as f:
        del f["CN"]["smiles"]
        f["CN"].create_dataset("smiles", data=[b"CO"], dtype=h5py.string_dtype())
    report = import_dataset(tmp_path / "spice.h5", tmp_path / "s.h5").report
    assert report["identity"]["source_smiles_disagree"] == 1
    assert report["identity"]["disagreements"][0] == {"entry": "group '/CN' conformer 0", "file": "CO",
                                                      "perceived": "CN"}


def test_ani_h5_separates_isomers_of_one_formula_group(tmp_path: Path) -> None:
    written = ani_h5(tmp_path / "ani.h5")
    import_dataset(tmp_path / "ani.h5", tmp_path / "a.h5", options=SourceOptions(energy_key="wb97x_dz.energy"))
    ds = read_hdf5(tmp_path / "a.h5")
    assert sorted(m.smiles for m in ds) == ["CC=O", "CCO", "COC"]
    assert [m.n_conformers for m in ds if m.smiles in ("CCO", "COC")] == [6, 6]
    assert ds.level_of_theory == "wb97x_dz" and ds.has_forces
    got = np.sort(np.concatenate([m.energy for m in ds if m.smiles in ("CCO", "COC")]))
    assert _rel(got, np.sort(written["C2H6O"]["energy_hartree"] * EV_PER_HARTREE)) < 1e-6
    # the coupled-cluster energies: NaN = not computed, skipped with that reason
    report = import_dataset(tmp_path / "ani.h5", tmp_path / "cc.h5",
                            options=SourceOptions(energy_key="ccsd(t)_cbs.energy")).report
    assert report["conformers"] == 9 and report["skipped"]["conformers"] == 9 and not report["forces"]


def test_rmd17_npz(tmp_path: Path) -> None:
    data = rmd17_npz(tmp_path / "rmd17_malonaldehyde.npz")
    import_dataset(tmp_path / "rmd17_malonaldehyde.npz", tmp_path / "m.h5", level_of_theory="PBE/def2-SVP")
    ds = read_hdf5(tmp_path / "m.h5")
    assert len(ds) == 1 and ds[0].smiles == "O=CCC=O" and ds[0].n_conformers == 20
    assert _rel(ds[0].energy, data["energies"] * EV_PER_KCAL_PER_MOL) < 1e-6
    np.testing.assert_allclose(ds[0].forces, data["forces"] * EV_PER_KCAL_PER_MOL, rtol=1e-5, atol=1e-6)


def test_families_follow_rmsd_not_file_order() -> None:
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolTransforms

    mol = Chem.AddHs(Chem.MolFromSmiles("CCCCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    conf = mol.GetConformer()
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    rng = np.random.default_rng(0)
    parents = []
    for angle in (180.0, 60.0, -60.0):  # anti and the two gauche butyl chains: distinct conformers
        rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, angle)
        parents.append(conf.GetPositions())
    pos = np.array([parents[i % 3] + rng.normal(0, 0.02, parents[0].shape) for i in range(12)])
    parent = families(z, pos)
    assert len(np.unique(parent)) == 3
    for k in range(3):  # thermal noise (0.02 angstrom) is far below the 0.3 angstrom threshold
        assert len(np.unique(parent[k::3])) == 1
    assert (families(z, pos[:1]) == [0]).all()


def test_duplicates_and_periodic_entries_are_skipped_and_listed(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    z, pos = conformers("CCO", 3, seed=0)
    e, f = fake_labels(z, pos)
    frames = []
    for p, ei, fi in [*zip(pos, e, f), (pos[1], e[1], f[1])]:
        a = Atoms(numbers=z, positions=p)
        a.calc = SinglePointCalculator(a, energy=float(ei), forces=fi)
        frames.append(a)
    box = Atoms(numbers=z, positions=pos[0], cell=[10, 10, 10], pbc=True)
    box.calc = SinglePointCalculator(box, energy=float(e[0]), forces=f[0])
    frames.append(box)
    write(tmp_path / "d.xyz", frames, format="extxyz")
    report = import_dataset(tmp_path / "d.xyz", tmp_path / "d.h5").report
    assert report["conformers"] == 3
    reasons = {s["entry"]: s["reason"] for s in report["skipped"]["entries"]}
    assert reasons["frame 3"] == "duplicate geometry: the same as frame 1"
    assert reasons["frame 4"].startswith("periodic")


def test_failures_leave_nothing_and_never_overwrite(tmp_path: Path) -> None:
    data = rmd17_npz(tmp_path / "m.npz")
    data["forces"][3, 2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **data)
    with pytest.raises(DatasetError, match=r"nan.npz: frame 3: forces hold NaN or infinity; remove or fix"):
        import_dataset(tmp_path / "nan.npz", tmp_path / "out.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "nan.npz"]  # no dataset, report or temp file
    import_dataset(tmp_path / "m.npz", tmp_path / "out.h5")
    before = (tmp_path / "out.h5").read_bytes()
    with pytest.raises(MlipdivError, match="already exists; choose another --out or pass --overwrite"):
        import_dataset(tmp_path / "m.npz", tmp_path / "out.h5")
    with pytest.raises(DatasetError):  # a failing re-import with overwrite keeps the old file
        import_dataset(tmp_path / "nan.npz", tmp_path / "out.h5", overwrite=True)
    assert (tmp_path / "out.h5").read_bytes() == before
    import_dataset(tmp_path / "m.npz", tmp_path / "out.h5", overwrite=True)


def test_an_interrupted_import_restarts_cleanly(tmp_path: Path, monkeypatch) -> None:
    import os
    import time

    rmd17_npz(tmp_path / "m.npz")
    stale = tmp_path / ".out.h5.abc123.tmp"  # what a killed write leaves (atomic_path's temporary name)
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    import mlipdiv.data.importing as imp

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imp, "write_hdf5", boom)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(tmp_path / "m.npz", tmp_path / "out.h5")
    monkeypatch.undo()
    assert not (tmp_path / "out.h5").exists()
    import_dataset(tmp_path / "m.npz", tmp_path / "out.h5")
    assert read_hdf5(tmp_path / "out.h5").n_conformers == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "out.h5", "out.h5.import.json"]


def test_bad_input_messages(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atom = Atoms("Ar", positions=[[0, 0, 0]])
    atom.calc = SinglePointCalculator(atom, energy=-1.0, forces=np.zeros((1, 3)))
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.calc = SinglePointCalculator(water, energy=-2.0, forces=np.zeros((3, 3)))
    write(tmp_path / "one.xyz", [water, atom], format="extxyz")
    with pytest.raises(DatasetError, match=r"one.xyz: frame 1: a molecule of one atom.*remove single atoms"):
        import_dataset(tmp_path / "one.xyz", tmp_path / "o.h5")
    charged = water.copy()
    charged.info["charge"] = 1
    charged.calc = SinglePointCalculator(charged, energy=-2.0, forces=np.zeros((3, 3)))
    write(tmp_path / "ion.xyz", [charged], format="extxyz")
    with pytest.raises(DatasetError, match=r"ion.xyz: nothing to import: every entry was skipped \(reasons: charged"):
        import_dataset(tmp_path / "ion.xyz", tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()
