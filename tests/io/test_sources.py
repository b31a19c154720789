"""Source readers: each format's layout, key detection and unit conversion at the boundary, and its refusals."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources import SourceOptions, detect_format, open_source
from mlipdiv.units import (
    ANGSTROM_PER_BOHR,
    EV_PER_HARTREE,
    EV_PER_KCAL_PER_MOL,
    EV_PER_KJ_PER_MOL,
    energy_unit,
    length_unit,
)

from import_sources import ani_h5, extxyz_file, qm9_like_db, rmd17_npz, spice_h5


def _blocks(path: Path, **kw):
    src = open_source(path, **kw)
    return src, list(src.blocks())


def test_unit_factors_agree_with_ase_and_parse_other_spellings() -> None:
    import ase.units as u

    # ASE uses CODATA 2014, mlipdiv 2018: they agree to ~1e-8
    assert EV_PER_KCAL_PER_MOL == pytest.approx(u.kcal / u.mol, rel=1e-7)
    assert EV_PER_KJ_PER_MOL == pytest.approx(u.kJ / u.mol, rel=1e-7)
    assert EV_PER_HARTREE == pytest.approx(u.Hartree, rel=1e-7)
    assert ANGSTROM_PER_BOHR == pytest.approx(u.Bohr, rel=1e-7)
    assert energy_unit("Hartree") == energy_unit("Ha") == "hartree"
    assert energy_unit("kcal/mol") == "kcal/mol" and length_unit("Ang") == length_unit("Å") == "angstrom"
    with pytest.raises(ValueError, match="unknown energy unit"):
        energy_unit("Rydberg")


def test_detect_format_by_suffix_and_content(tmp_path: Path) -> None:
    spice_h5(tmp_path / "a.h5")
    ani_h5(tmp_path / "b.hdf5")
    rmd17_npz(tmp_path / "c.npz")
    extxyz_file(tmp_path / "d.xyz")
    qm9_like_db(tmp_path / "e.db", smiles=["CC"])
    assert [detect_format(tmp_path / n) for n in ("a.h5", "b.hdf5", "c.npz", "d.xyz", "e.db")] == \
        ["spice-h5", "ani-h5", "npz", "extxyz", "ase-db"]
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DatasetError, match=r"notes.txt: unknown format .*--format"):
        detect_format(tmp_path / "notes.txt")


def test_spice_converts_bohr_hartree_and_negates_the_gradient(tmp_path: Path) -> None:
    written = spice_h5(tmp_path / "s.h5")
    src, blocks = _blocks(tmp_path / "s.h5")
    assert (src.format, src.energy_key, src.forces_key, src.units.origin) == \
        ("spice-h5", "dft_total_energy", "dft_total_gradient", "file")
    by_name = {b.name: b for b in blocks}
    ref = written["CCO"]
    b = by_name["CCO"]
    np.testing.assert_allclose(b.energy / EV_PER_HARTREE, ref["energy_hartree"], rtol=1e-12)
    np.testing.assert_allclose(b.positions, ref["positions_bohr"].astype(np.float64) * ANGSTROM_PER_BOHR, rtol=1e-12)
    np.testing.assert_allclose(b.forces, -ref["gradient"].astype(np.float64) * EV_PER_HARTREE / ANGSTROM_PER_BOHR,
                               rtol=1e-12)
    assert b.smiles.startswith("[C:1]")
    # the formation energy on request
    src, blocks = _blocks(tmp_path / "s.h5", options=SourceOptions(energy_key="formation_energy"))
    assert {b.name: b for b in blocks}["CCO"].energy[0] / EV_PER_HARTREE == pytest.approx(
        ref["energy_hartree"][0] + 1.0, rel=1e-12)


def test_spice_mixed_units_and_contradicting_flag(tmp_path: Path) -> None:
    spice_h5(tmp_path / "s.h5")
    with pytest.raises(DatasetError, match="--energy-unit kcal/mol contradicts the file"):
        open_source(tmp_path / "s.h5", options=SourceOptions(energy_unit="kcal/mol"))
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f["CN"]["dft_total_energy"].attrs["units"] = "kcal/mol"
    with pytest.raises(DatasetError, match=r"s.h5: group '/CN': mixed units.*convert the file"):
        _blocks(tmp_path / "s.h5")


def test_hdf5_links_are_refused_before_reading(tmp_path: Path) -> None:
    spice_h5(tmp_path / "s.h5")
    (tmp_path / "secret.h5").write_bytes(b"")
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f["CCO"]["leak"] = h5py.ExternalLink("secret.h5", "/x")
    with pytest.raises(DatasetError, match=r"object '/CCO/leak' is an external or soft link.*import again"):
        open_source(tmp_path / "s.h5", format="spice-h5")


def test_ani_needs_a_named_energy_and_skips_uncomputed_conformers(tmp_path: Path) -> None:
    written = ani_h5(tmp_path / "a.h5")
    with pytest.raises(DatasetError, match=r"several keys could hold the energy: .*wb97x_dz.energy.*--energy-key"):
        open_source(tmp_path / "a.h5")
    src, blocks = _blocks(tmp_path / "a.h5", options=SourceOptions(energy_key="wb97x_dz.energy"))
    assert src.forces_key == "wb97x_dz.forces" and src.level_of_theory == "wb97x_dz"
    b = {b.name: b for b in blocks}["C2H6O"]
    np.testing.assert_allclose(b.energy / EV_PER_HARTREE, written["C2H6O"]["energy_hartree"], rtol=1e-12)
    src, blocks = _blocks(tmp_path / "a.h5", options=SourceOptions(energy_key="ccsd(t)_cbs.energy"))
    assert src.forces_key is None
    b = {b.name: b for b in blocks}["C2H6O"]
    assert len(b.energy) == 6 and len(b.skipped) == 6 and "NaN: not computed" in b.skipped[0][1]


def test_npz_is_kcal_per_mol_by_default(tmp_path: Path) -> None:
    data = rmd17_npz(tmp_path / "m.npz")
    src, (b,) = _blocks(tmp_path / "m.npz")
    assert src.units.energy == "kcal/mol" and src.units.origin == "format default"
    np.testing.assert_allclose(b.energy, data["energies"] * EV_PER_KCAL_PER_MOL, rtol=1e-12)
    np.testing.assert_allclose(b.forces, data["forces"] * EV_PER_KCAL_PER_MOL, rtol=1e-12)
    src, (b,) = _blocks(tmp_path / "m.npz", options=SourceOptions(energy_unit="kJ/mol"))
    np.testing.assert_allclose(b.energy, data["energies"] * EV_PER_KJ_PER_MOL, rtol=1e-12)


def test_ase_db_key_detection(tmp_path: Path) -> None:
    qm9_like_db(tmp_path / "q.db", smiles=["CC", "CO"])
    with pytest.raises(DatasetError, match=r"q.db: row 1: several keys could hold the energy: 'energy_U0', "
                                           r"'energy_U'; name one with --energy-key"):
        open_source(tmp_path / "q.db")
    with pytest.raises(DatasetError, match=r"row 1: no energy 'U0' \(keys: .*energy_U0.*\); name an existing key"):
        open_source(tmp_path / "q.db", options=SourceOptions(energy_key="U0"))
    src, blocks = _blocks(tmp_path / "q.db", options=SourceOptions(energy_key="energy_U0"))
    assert src.forces_key is None and [b.smiles for b in blocks] == ["CC", "CO"]


def test_ase_db_mixed_units_in_metadata(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.db import connect

    with connect(str(tmp_path / "m.db")) as db:
        db.write(Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
                 data={"energy": np.array([-1.0]), "forces": np.zeros((3, 3))})
    connect(str(tmp_path / "m.db")).metadata = {"_property_unit_dict": {"energy": "kcal/mol", "forces": "eV/Ang"}}
    with pytest.raises(DatasetError, match=r"m.db: mixed units: energy 'energy' in kcal/mol but forces 'forces' in "
                                           r"eV/Ang; convert"):
        open_source(tmp_path / "m.db")


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(DatasetError, match=r"bad.db: not a readable ASE database"):
        open_source(tmp_path / "bad.db")
    spice_h5(tmp_path / "s.h5")
    data = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"cut.h5: not a readable HDF5 file"):
        open_source(tmp_path / "cut.h5")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DatasetError, match=r"bad.npz: not a readable .npz file"):
        open_source(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="no such file"):
        open_source(tmp_path / "nope.xyz")
