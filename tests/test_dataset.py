"""The HDF5 container: round trip, ids, and clear errors for files that are not ours or are damaged."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from mlipdiv.data.dataset import read_hdf5, write_hdf5
from mlipdiv.errors import DatasetError


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
