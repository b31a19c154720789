"""Descriptors: invariance to rigid motions and atom permutations, fixed length, on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlipdiv import descriptors as D
from mlipdiv.errors import DatasetError
from mlipdiv.io.dataset import Dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))
    D._MEMORY.clear()
    return tmp_path / "cache"


def transformed(z: np.ndarray, pos: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random proper rotation, a translation and a random atom permutation of ``(z, pos)``."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    q = q if np.linalg.det(q) > 0 else -q
    perm = rng.permutation(len(z))
    return z[perm], (pos @ q.T + rng.normal(size=3) * 5.0)[..., perm, :]


@pytest.mark.parametrize("fn", [D.distance_descriptor, D.conformer_features, D.coulomb_spectrum, D.soap_average])
def test_3d_descriptors_are_invariant(tiny_dataset: Dataset, fn) -> None:
    mol = tiny_dataset[2]
    for seed in range(3):
        z, pos = transformed(mol.atomic_numbers, mol.positions, seed)
        np.testing.assert_allclose(fn(z, pos), fn(mol.atomic_numbers, mol.positions), rtol=1e-4, atol=1e-5)
    # and they do see a change of geometry
    assert not np.allclose(fn(mol.atomic_numbers, mol.positions[0]), fn(mol.atomic_numbers, mol.positions[1]))


def test_distance_descriptor_layout() -> None:
    z = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    # pairs grouped (H,H) then (H,O); within a group increasing r (decreasing 1/r)
    np.testing.assert_allclose(D.distance_descriptor(z, pos), [np.sqrt(5), 1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(D.distance_descriptor(z, pos, inverse=True), [1 / np.sqrt(5), 1.0, 0.5], rtol=1e-6)
    assert D.conformer_features(z, pos).shape == (3,)  # fewer than three heavy atoms: all atoms
    z4 = np.array([6, 6, 8, 1])
    pos4 = np.array([[0.0, 0, 0], [1.5, 0, 0], [2.0, 1.2, 0], [-1.0, 0, 0]])
    np.testing.assert_allclose(D.conformer_features(z4, pos4), D.distance_descriptor(z4[:3], pos4[:3]))


def test_coulomb_spectrum_is_padded() -> None:
    z = np.array([6, 1])
    out = D.coulomb_spectrum(z, np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]]), size=5)
    assert out.shape == (5,) and np.all(out[2:] == 0) and out[0] > out[1]
    with pytest.raises(ValueError):
        D.coulomb_spectrum(z, np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], size=1)


def test_dataset_descriptors_and_disk_cache(tiny_dataset: Dataset, _private_cache: Path) -> None:
    x = D.conformer_descriptors(tiny_dataset)
    assert x.shape == (tiny_dataset.n_conformers, max(m.n_atoms for m in tiny_dataset)) and x.dtype == np.float32
    start = tiny_dataset.conformer_offsets()[3]
    mol = tiny_dataset[3]
    np.testing.assert_allclose(x[start], D.coulomb_spectrum(mol.atomic_numbers, mol.positions[0], x.shape[1]))
    fps = D.molecule_fingerprints(tiny_dataset)
    assert fps.shape == (len(tiny_dataset), D.FP_BITS) and set(np.unique(fps)) <= {0, 1}
    files = sorted(p.name for p in (_private_cache / "descriptors").glob("*.npy"))
    assert len(files) == 2 and all(D.dataset_digest(tiny_dataset) in f for f in files)
    D._MEMORY.clear()
    np.testing.assert_array_equal(D.conformer_descriptors(tiny_dataset), x)  # read back from disk
    assert not x.flags.writeable


def test_digest_follows_content(tiny_dataset: Dataset) -> None:
    digest = D.dataset_digest(tiny_dataset)
    assert D.dataset_digest(tiny_dataset) == digest
    sub = tiny_dataset.select([(m, 0) for m in tiny_dataset.ids])
    assert D.dataset_digest(sub) != digest  # a subset never reads the full set's cache


def test_bad_smiles_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match="cannot parse"):
        D.morgan_fingerprints(["C1CC"])


def test_soap_average_is_unit_length_and_shared_across_molecules(tiny_dataset: Dataset) -> None:
    species = sorted({int(z) for m in tiny_dataset for z in m.atomic_numbers})
    a = D.soap_average(tiny_dataset[0].atomic_numbers, tiny_dataset[0].positions, species)
    b = D.soap_average(tiny_dataset[1].atomic_numbers, tiny_dataset[1].positions[0], species)
    assert a.shape[0] == tiny_dataset[0].n_conformers and a.shape[1] == b.shape[0]
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_environment_descriptors_keep_molecules_apart_and_are_cached(tiny_dataset: Dataset, _private_cache) -> None:
    seen = []
    x = D.environment_descriptors(tiny_dataset, progress=lambda done, total: seen.append((done, total)))
    assert x.shape == (tiny_dataset.n_conformers, D.SOAP_COMPONENTS) and np.isfinite(x).all()
    assert seen[-1] == (len(tiny_dataset), len(tiny_dataset))
    # a conformer's nearest neighbour (local environments) is another conformer of the same molecule
    molecule = np.repeat(np.arange(len(tiny_dataset)), [m.n_conformers for m in tiny_dataset])
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (molecule[d.argmin(1)] == molecule).mean() > 0.95
    # the kept components hold the distances: compare with the full vectors
    species = sorted({int(z) for m in tiny_dataset for z in m.atomic_numbers})
    full = np.concatenate([D.soap_average(m.atomic_numbers, m.positions, species) for m in tiny_dataset])
    i, j = np.triu_indices(len(full), 1)
    kept, true = np.linalg.norm(x[i] - x[j], axis=1), np.linalg.norm(full[i] - full[j], axis=1)
    assert np.corrcoef(kept, true)[0, 1] > 0.99
    assert list(_private_cache.glob("descriptors/soap*.npy"))
    D._MEMORY.clear()
    np.testing.assert_array_equal(D.environment_descriptors(tiny_dataset), x)  # read back from disk
