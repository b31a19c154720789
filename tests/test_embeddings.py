"""UMAP maps: computed once per dataset and parameters, stored on disk, read back instantly; built in background."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlipdiv import embeddings
from mlipdiv.embeddings import MapParams


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_params_are_validated_and_keyed():
    assert MapParams("structures").metric == "jaccard"
    assert MapParams("conformers").metric == "euclidean"
    assert MapParams("conformers", 15).key() != MapParams("conformers", 16).key()
    for bad in ({"kind": "atoms"}, {"kind": "structures", "metric": "haversine"}, {"n_neighbors": 1},
                {"min_dist": 1.0}):
        with pytest.raises(ValueError):
            MapParams(**bad)


def test_tiny_sets_fall_back_to_pca(tiny_dataset, cache):
    small = tiny_dataset.select([(tiny_dataset[i].id, 0) for i in range(5)])
    m = embeddings.cached_map(small, MapParams("structures"))
    assert m.method == "pca" and m.coords.shape == (5, 2)
    assert list(m.global_ids) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_map_is_computed_once_then_read_from_disk(tiny_dataset, cache):
    params = MapParams("conformers", n_neighbors=10, min_dist=0.2)
    assert not embeddings.is_cached(tiny_dataset, params)
    first = embeddings.cached_map(tiny_dataset, params)
    assert first.method == "umap" and not first.from_cache
    assert first.coords.shape == (tiny_dataset.n_conformers, 2) and np.isfinite(first.coords).all()
    assert list(first.global_ids) == list(range(tiny_dataset.n_conformers))
    assert embeddings.is_cached(tiny_dataset, params)
    start = time.perf_counter()
    again = embeddings.cached_map(tiny_dataset, params)
    assert time.perf_counter() - start < 0.5 and again.from_cache
    np.testing.assert_array_equal(again.coords, first.coords)
    # molecules sit together: each conformer's nearest neighbour on the map is mostly of the same molecule
    d = np.linalg.norm(first.coords[:, None] - first.coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    same = first.molecule_index[d.argmin(1)] == first.molecule_index
    assert same.mean() > 0.8
    structures = embeddings.cached_map(tiny_dataset, MapParams("structures", n_neighbors=5))
    assert structures.coords.shape == (len(tiny_dataset), 2)
    assert list(structures.global_ids) == list(tiny_dataset.conformer_offsets()[:-1])


@pytest.mark.slow
def test_background_build_fills_the_cache(tiny_dataset_path, tiny_dataset, cache):
    params = [MapParams("structures", n_neighbors=4)]
    key = embeddings.start_background_build(tiny_dataset_path, params)
    assert embeddings.start_background_build(tiny_dataset_path, params) == key  # once per process and file
    deadline = time.time() + 120
    while embeddings.background_status(tiny_dataset_path)["status"] == "running" and time.time() < deadline:
        time.sleep(0.2)
    state = embeddings.background_status(tiny_dataset_path)
    assert state["status"] == "done", state
    assert state["done"] == ["structures"]
    assert embeddings.is_cached(tiny_dataset, params[0])


def test_background_build_of_a_missing_file_reports_failure(tmp_path, cache):
    path = tmp_path / "missing.h5"
    embeddings.start_background_build(path)
    deadline = time.time() + 10
    while embeddings.background_status(path)["status"] == "running" and time.time() < deadline:
        time.sleep(0.05)
    state = embeddings.background_status(path)
    assert state["status"] == "failed" and "no such file" in state["error"]
    assert embeddings.background_status(tmp_path / "never-started.h5") is None


def test_maps_shipped_in_data_umap_are_used(tiny_dataset, tmp_path, monkeypatch):
    import shutil

    import mlipdiv.paths

    small = tiny_dataset.select([(tiny_dataset[i].id, 0) for i in range(5)])
    params = MapParams("structures")
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "first"))
    made = embeddings.cached_map(small, params)
    shipped = tmp_path / "data" / "umap"
    shipped.mkdir(parents=True)
    for f in (tmp_path / "first" / "umap").glob("*.npy"):
        shutil.copy(f, shipped / f.name)
    monkeypatch.setattr(mlipdiv.paths, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "empty"))
    assert embeddings.is_cached(small, params)
    again = embeddings.cached_map(small, params)
    assert again.from_cache
    np.testing.assert_array_equal(again.coords, made.coords)
    assert not (tmp_path / "empty" / "umap").exists()  # nothing recomputed or copied
