"""The HDF5 container: round trip, ids, and clear errors for files that are not ours or are damaged."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from mlipdiv.errors import DatasetError
from mlipdiv.io.hdf5 import read_hdf5, write_hdf5


def test_round_trip_keeps_every_array(tiny_dataset, tmp_path: Path) -> None:
    out = write_hdf5(tiny_dataset, tmp_path / "copy.h5")
    again = read_hdf5(out)
    assert again.ids == tiny_dataset.ids
    for a, b in zip(again, tiny_dataset):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.energy, b.energy)  # float64 survives exactly
        np.testing.assert_array_equal(a.forces, b.forces)
        np.testing.assert_array_equal(a.parent, b.parent)
        assert list(a.method) == list(b.method)
    with h5py.File(out) as f:
        assert f.attrs["format"] == "mlipdiv" and f.attrs["version"] == 1
        assert f.attrs["energy_unit"] == "eV" and f.attrs["force_unit"] == "eV/angstrom"


def test_global_ids_invert(tiny_dataset) -> None:
    offsets = tiny_dataset.conformer_offsets()
    assert offsets[-1] == tiny_dataset.n_conformers
    mol = tiny_dataset[3]
    gid = tiny_dataset.global_id(mol.id, 2)
    assert tiny_dataset.locate(gid) == (mol.id, 2)


def test_select_keeps_requested_pairs(tiny_dataset) -> None:
    m0, m1 = tiny_dataset.ids[:2]
    sub = tiny_dataset.select([(m0, 1), (m1, 0), (m0, 3)])
    assert sub.ids == [m0, m1]
    np.testing.assert_array_equal(sub[m0].energy, tiny_dataset[m0].energy[[1, 3]])


def test_truncated_file_is_a_clear_error(tiny_dataset_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.h5"
    broken.write_bytes(tiny_dataset_path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="broken.h5"):
        read_hdf5(broken)


def test_foreign_hdf5_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not an mlipdiv dataset"):
        read_hdf5(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        read_hdf5(tmp_path / "nope.h5")


@pytest.mark.parametrize("kind", ["external storage", "external link", "virtual dataset"])
def test_hdf5_that_pulls_in_other_files_is_refused(kind: str, tmp_path: Path) -> None:
    """Issue 13.1: a crafted file whose ``method`` bytes live in another file is refused, the secret never shown."""
    from malformed import CASES, SECRET_MARK, write_secret

    build = next(b for name, b, _ in CASES if name == kind)
    path = build(tmp_path, write_secret(tmp_path))
    with h5py.File(path) as f:  # followed, the object does deliver the other file's bytes
        assert SECRET_MARK.encode() in f["mol_000000000002"]["method"][()].tobytes()
    with pytest.raises(DatasetError) as info:
        read_hdf5(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "/mol_000000000002/method" in message and "rebuild" in message
    assert SECRET_MARK not in message and "\n" not in message


def test_soft_link_is_refused_before_it_is_followed(tmp_path: Path) -> None:
    from malformed import soft_link, write_secret

    with pytest.raises(DatasetError, match="/mol_000000000002/energy.* is an external or soft link"):
        read_hdf5(soft_link(tmp_path, write_secret(tmp_path)))


def test_write_hdf5_checks_first_and_leaves_no_temporary_file(tiny_dataset, tmp_path: Path) -> None:
    """Issue 13.11: a bad id (set after construction) is refused before any file exists; a failed write cleans up."""
    from mlipdiv.io.dataset import Dataset

    for bad in (".", "..", "a/b", ""):
        mol = tiny_dataset[0].subset([0, 1])
        mol.id = bad
        with pytest.raises(DatasetError, match="safe name|empty molecule id"):
            write_hdf5(Dataset([mol]), tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []
    bad_attr = Dataset([tiny_dataset[0]], attrs={"level_of_theory": np.zeros((2, 2, 2, 2), dtype=object)})
    with pytest.raises(TypeError):
        write_hdf5(bad_attr, tmp_path / "y.h5")  # h5py cannot store an object array
    assert list(tmp_path.iterdir()) == []


def test_molecule_checks_run_on_construction(tiny_dataset) -> None:
    """Issue 13.10/11: every Molecule, whoever builds it, holds real elements and finite, sane numbers."""
    from mlipdiv.io.dataset import Molecule

    m = tiny_dataset[0]
    fields = {k: getattr(m, k) for k in ("positions", "energy", "forces", "parent", "temperature", "method")}
    Molecule(id=m.id, smiles=m.smiles, atomic_numbers=m.atomic_numbers, **fields)
    for z, message in ((0, "atomic number 0"), (119, "atomic number 119")):
        bad_z = m.atomic_numbers.copy()
        bad_z[0] = z
        with pytest.raises(DatasetError, match=message):
            Molecule(id=m.id, smiles=m.smiles, atomic_numbers=bad_z, **fields)
    with pytest.raises(DatasetError, match="no conformers"):
        m.subset([])
    far = {**fields, "positions": fields["positions"] + 2e4}
    with pytest.raises(DatasetError, match="beyond"):
        Molecule(id=m.id, smiles=m.smiles, atomic_numbers=m.atomic_numbers, **far)
