"""Diversity measures: Vendi score limits, Tanimoto, scaffolds, Kabsch RMSD, per-molecule conformational spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlipdiv.descriptors import tanimoto_similarity
from mlipdiv.diversity import (
    conformational_diversity,
    molecule_conformational_diversity,
    murcko_scaffold,
    pairwise_rmsd,
    structural_diversity,
    training_set_diversity,
    vendi_score,
)
from mlipdiv.io.dataset import Dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_vendi_counts_orthogonal_items_and_merges_identical_ones(n: int) -> None:
    assert vendi_score(np.eye(n)) == pytest.approx(n)
    assert vendi_score(np.ones((n, n))) == pytest.approx(1.0)


def test_vendi_of_groups_and_empty() -> None:
    groups = np.kron(np.eye(3), np.ones((4, 4)))  # 3 groups of 4 identical items
    assert vendi_score(groups) == pytest.approx(3.0)
    assert vendi_score(np.zeros((0, 0))) == 0.0
    partial = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert 1.0 < vendi_score(partial) < 2.0


def test_tanimoto() -> None:
    a = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.uint8)
    sim = tanimoto_similarity(a)
    assert sim[0, 1] == 1.0 and sim[0, 2] == 0.0 and sim[0, 3] == pytest.approx(1 / 3)
    assert sim[4, 4] == 1.0 and sim[4, 0] == 0.0
    np.testing.assert_allclose(sim, sim.T)


def test_scaffolds() -> None:
    assert murcko_scaffold("CCO") == ""  # every acyclic molecule shares the empty scaffold
    assert murcko_scaffold("Oc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCc1ccccc1CC1CC1") == murcko_scaffold("c1ccccc1CC1CC1")


def test_structural_diversity(tiny_dataset: Dataset) -> None:
    full = structural_diversity(tiny_dataset)
    assert full["n_molecules"] == 10 and full["n_scaffolds"] == 2  # acyclic + benzene (phenol)
    assert 1.0 < full["tanimoto_vendi"] <= 10.0 and 0.0 < full["mean_tanimoto_distance"] <= 1.0
    one = structural_diversity(tiny_dataset, tiny_dataset.ids[:1])
    assert one == {"n_molecules": 1, "n_scaffolds": 1, "mean_tanimoto_distance": 0.0, "tanimoto_vendi": 1.0}


def test_kabsch_rmsd_ignores_rigid_motion_and_matches_svd() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 9, 3))
    moved = x[0] @ random_rotation(rng).T + np.array([3.0, -1.0, 2.0])
    assert pairwise_rmsd(np.stack([x[0], moved]))[0] == pytest.approx(0.0, abs=1e-6)
    mirror = x[0] * np.array([1.0, 1.0, -1.0])  # a reflection is not a rotation: RMSD stays > 0
    assert pairwise_rmsd(np.stack([x[0], mirror]))[0] > 0.1
    # reference: explicit Kabsch superposition
    c = x - x.mean(axis=1, keepdims=True)
    ref = []
    for i, j in zip(*np.triu_indices(6, 1)):
        u, _, vt = np.linalg.svd(c[i].T @ c[j])
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1.0, 1.0, d]) @ vt
        ref.append(np.sqrt(np.mean(np.sum((c[i] @ rot - c[j]) ** 2, axis=1))))
    np.testing.assert_allclose(pairwise_rmsd(x), ref, atol=1e-6)


def test_molecule_conformational_diversity(tiny_dataset: Dataset) -> None:
    mol = tiny_dataset[0]
    same = molecule_conformational_diversity(mol, [0, 0, 0])
    assert same["vendi"] == pytest.approx(1.0) and same["rmsd_spread"] == pytest.approx(0.0, abs=1e-6)
    assert same["energy_range"] == 0.0 and same["families"] == 1
    every = molecule_conformational_diversity(mol)
    assert 1.0 < every["vendi"] <= mol.n_conformers and every["rmsd_spread"] > 0
    assert every["energy_range"] == pytest.approx(mol.energy.max() - mol.energy.min())
    assert every["families"] == len(np.unique(mol.parent))
    assert molecule_conformational_diversity(mol, [])["conformers"] == 0


def test_summary_over_a_training_set(tiny_dataset: Dataset) -> None:
    a, b = tiny_dataset.ids[:2]
    pairs = [(a, 0), (a, 5), (b, 1)]
    summary, per = conformational_diversity(tiny_dataset, pairs)
    assert set(per) == {a, b} and per[b]["vendi"] == pytest.approx(1.0)
    assert summary["mean_vendi"] == pytest.approx((per[a]["vendi"] + 1.0) / 2)
    measures = training_set_diversity(tiny_dataset, pairs)
    assert measures["structural"]["n_molecules"] == 2
    assert {"mean_vendi", "mean_rmsd_spread", "mean_energy_range", "mean_families"} <= set(
        measures["conformational"]
    )


def test_dataset_table_is_cached(tiny_dataset: Dataset, tmp_path: Path) -> None:
    from mlipdiv import descriptors
    from mlipdiv.diversity import TABLE_COLUMNS, dataset_conformational_table

    descriptors._MEMORY.clear()  # another test (the app's Dataset page) may have computed it for the same content
    table = dataset_conformational_table(tiny_dataset)
    assert table.shape == (len(tiny_dataset), len(TABLE_COLUMNS))
    mol = tiny_dataset[4]
    expected = molecule_conformational_diversity(mol)
    np.testing.assert_allclose(table[4], [expected[c] for c in TABLE_COLUMNS])
    assert list((tmp_path / "cache" / "descriptors").glob("conformational-*.npy"))
    descriptors._MEMORY.clear()
    np.testing.assert_array_equal(dataset_conformational_table(tiny_dataset), table)
