"""Extended XYZ: HDF5 <-> extxyz round trip with the REF_ keys, import of outside data, the convert verb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlipdiv.cli import main
from mlipdiv.errors import DatasetError
from mlipdiv.io.dataset import molecule_id
from mlipdiv.io.extxyz import read_extxyz, write_extxyz
from mlipdiv.io.hdf5 import read_hdf5


def _same(a, b, atol: float = 1e-6) -> None:
    assert a.ids == b.ids
    for x, y in zip(a, b):
        assert x.smiles == y.smiles
        np.testing.assert_array_equal(x.atomic_numbers, y.atomic_numbers)
        np.testing.assert_allclose(x.positions, y.positions, atol=atol)  # 8 decimals in the text file
        np.testing.assert_allclose(x.forces, y.forces, atol=atol)
        np.testing.assert_array_equal(x.energy, y.energy)  # written with full float64 precision
        np.testing.assert_array_equal(x.parent, y.parent)
        np.testing.assert_array_equal(x.temperature, y.temperature)
        assert list(x.method) == list(y.method)


def test_hdf5_extxyz_round_trip(tiny_dataset, tmp_path: Path) -> None:
    from ase.io import read

    path = write_extxyz(tiny_dataset, tmp_path / "all.xyz")
    frames = read(path, index=":")
    assert len(frames) == tiny_dataset.n_conformers
    first = frames[0]
    m0 = tiny_dataset[0]
    # the keys MACE/NequIP configs point at; ASE >= 3.23 leaves REF_ keys alone
    assert first.info["REF_energy"] == m0.energy[0]
    assert first.arrays["REF_forces"].shape == (m0.n_atoms, 3)
    assert {"mol_id", "smiles", "conf_id", "parent", "temperature", "method"} <= set(first.info)
    assert first.info["mol_id"] == m0.id and first.info["conf_id"] == 0
    again = read_extxyz(path)
    assert again.level_of_theory == tiny_dataset.level_of_theory
    _same(tiny_dataset, again)


def test_export_of_a_selection(tiny_dataset, tmp_path: Path) -> None:
    pairs = [(tiny_dataset[2].id, 5), (tiny_dataset[0].id, 1), (tiny_dataset[2].id, 0)]
    back = read_extxyz(write_extxyz(tiny_dataset, tmp_path / "sel.xyz", pairs=pairs))
    assert back.ids == [tiny_dataset[2].id, tiny_dataset[0].id]
    assert back[0].n_conformers == 2 and back[1].n_conformers == 1
    np.testing.assert_array_equal(back[0].energy, tiny_dataset[2].energy[[5, 0]])


def test_outside_data_is_grouped_by_perceived_smiles(tiny_dataset, tmp_path: Path) -> None:
    """Frames from elsewhere: plain energy/forces keys, no mol_id, molecules interleaved."""
    from ase import Atoms
    from ase.io import write

    frames = []
    for j in range(3):
        for m in list(tiny_dataset)[:2]:
            a = Atoms(numbers=m.atomic_numbers, positions=m.positions[j])
            a.info["energy"] = float(m.energy[j])
            a.arrays["forces"] = m.forces[j].astype(float)
            frames.append(a)
    write(tmp_path / "outside.extxyz", frames, format="extxyz")
    ds = read_extxyz(tmp_path / "outside.extxyz")
    assert [m.smiles for m in ds] == [tiny_dataset[0].smiles, tiny_dataset[1].smiles]
    assert ds.ids == [molecule_id(tiny_dataset[0].smiles), molecule_id(tiny_dataset[1].smiles)]
    assert all(m.n_conformers == 3 for m in ds) and set(ds[0].method) == {"import"}
    np.testing.assert_array_equal(ds[1].energy, tiny_dataset[1].energy[:3])


def test_unlabelled_or_broken_extxyz_is_a_clear_error(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.io import write

    write(tmp_path / "nolabel.xyz", [Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]])], format="extxyz")
    with pytest.raises(DatasetError, match="frame 0 has no energy"):
        read_extxyz(tmp_path / "nolabel.xyz")
    (tmp_path / "junk.xyz").write_text("3\nnot really\nH 0 0\n")
    with pytest.raises(DatasetError, match="junk.xyz"):
        read_extxyz(tmp_path / "junk.xyz")


def test_convert_verb_and_import_through_generate(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    xyz, h5 = tmp_path / "t.extxyz", tmp_path / "back.h5"
    assert main(["convert", str(tiny_dataset_path), str(xyz)]) == 0
    assert main(["convert", str(xyz), str(h5)]) == 0
    _same(read_hdf5(tiny_dataset_path), read_hdf5(h5))
    assert main(["convert", str(xyz), str(h5)]) == 2 and "already exists" in capsys.readouterr().err
    imported = tmp_path / "imported.h5"
    assert main(["generate", "--from-extxyz", str(xyz), "--out", str(imported)]) == 0
    _same(read_hdf5(tiny_dataset_path), read_hdf5(imported))


def test_periodic_extxyz_is_refused_with_the_reason(tiny_dataset, tmp_path: Path) -> None:
    """Issue 13.12: Lattice/pbc frames used to be imported as isolated molecules."""
    from ase import Atoms
    from ase.io import write

    m = tiny_dataset[0]
    a = Atoms(numbers=m.atomic_numbers, positions=m.positions[0], cell=[12.0, 12.0, 12.0], pbc=True)
    a.info["REF_energy"] = float(m.energy[0])
    a.arrays["REF_forces"] = m.forces[0].astype(float)
    write(tmp_path / "bulk.extxyz", [a], format="extxyz")
    with pytest.raises(DatasetError, match="frame 0 is periodic.*mlipdiv trains on isolated molecules"):
        read_extxyz(tmp_path / "bulk.extxyz")


def test_convert_output_problems_are_messages(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    """Issue 13.13: OUT that is a folder, lies under a file, or cannot be written: a message, nothing written."""
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    (tmp_path / "dir.h5").mkdir()
    for target, message in ((tmp_path / "dir.h5", "is a folder"), (a_file / "x.h5", "is a file, not a folder"),
                            (Path("/proc/mlipdiv-test.h5"), "cannot write in /proc")):
        assert main(["convert", str(tiny_dataset_path), str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.h5", "f.txt"]


def test_a_dataset_without_forces_is_written_without_them_and_reads_back_so(tiny_dataset, tmp_path: Path) -> None:
    """An energy-only dataset (an import without forces) used to be written with zero REF_forces, which MACE or
    NequIP, and our own reader, would have taken for labels."""
    from dataclasses import replace

    from ase.io import read, write

    energy_only = replace(tiny_dataset, attrs={**tiny_dataset.attrs, "has_forces": 0})
    out = write_extxyz(energy_only, tmp_path / "energies.extxyz")
    frames = read(out, index=":", format="extxyz")
    assert all("REF_forces" not in a.arrays and "forces" not in a.arrays for a in frames)
    back = read_extxyz(out)
    assert not back.has_forces and back.n_conformers == tiny_dataset.n_conformers
    assert all(not m.forces.any() for m in back)
    np.testing.assert_array_equal(back[0].energy, tiny_dataset[0].energy)
    assert read_extxyz(write_extxyz(tiny_dataset, tmp_path / "full.extxyz")).has_forces

    write(tmp_path / "mixed.extxyz", [frames[0], *read(tmp_path / "full.extxyz", index="1:2", format="extxyz")],
          format="extxyz")
    with pytest.raises(DatasetError, match="frame 0 has no forces .* but frame 1 has: every frame needs them"):
        read_extxyz(tmp_path / "mixed.extxyz")
