"""UMAP maps: computed once per dataset and parameters, stored on disk, read back instantly; built in background."""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def test_conformer_map_is_environment_based_and_versioned():
    assert MapParams("conformers").sample == embeddings.FIT_SAMPLE
    assert MapParams("conformers").key() != MapParams("conformers", sample=0).key()
    with pytest.raises(ValueError):
        MapParams("conformers", sample=5)


def _family_gap(coords, parent):
    """(closest distance between two family centres) / (mean distance of a conformer to its family's centre)."""
    families = np.unique(parent)
    centres = np.array([coords[parent == f].mean(0) for f in families])
    spread = np.mean([np.linalg.norm(coords[parent == f] - c, axis=1).mean() for f, c in zip(families, centres)])
    between = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(families), 1)]
    return between.min() / spread


def test_molecule_map_separates_families(tiny_dataset):
    from mlipdiv.io.dataset import Molecule

    # three distinct geometries of one molecule (hydrogens moved; three atoms moved), each with 0.02 A thermal
    # noise around it: three families
    mol = tiny_dataset[0]
    rng = np.random.default_rng(0)
    base = mol.positions[0]
    shapes = [base, base.copy(), base.copy()]
    shapes[1][mol.atomic_numbers == 1] += 0.4 * rng.normal(size=((mol.atomic_numbers == 1).sum(), 3))
    shapes[2][:3] += 0.3 * rng.normal(size=(3, 3))
    pos = np.concatenate([s + 0.02 * rng.normal(size=(12, *base.shape)) for s in shapes])
    parent = np.repeat(np.arange(3), 12)
    fake = Molecule(id="m", smiles=mol.smiles, atomic_numbers=mol.atomic_numbers, positions=pos,
                    energy=np.zeros(36), forces=np.zeros_like(pos), parent=parent,
                    method=np.array(["x"] * 36, dtype=object), temperature=np.zeros(36))
    coords, kept = embeddings.molecule_conformer_map(fake)
    assert coords.shape == (36, 2) and kept > 0.8
    assert _family_gap(coords, parent) > 3
    shuffled = rng.permutation(parent)  # the same measure says "not separated" for families that are not real
    assert _family_gap(coords, shuffled) < 1


def test_molecule_map_distances_read_as_rmsd(tiny_dataset):
    from mlipdiv.diversity import pairwise_rmsd

    for mol in tiny_dataset:
        coords, kept = embeddings.molecule_conformer_map(mol)
        assert coords.shape == (mol.n_conformers, 2) and 0 < kept <= 1
        rmsd = pairwise_rmsd(mol.positions)
        i, j = np.triu_indices(mol.n_conformers, 1)
        on_map = np.linalg.norm(coords[i] - coords[j], axis=1)
        assert np.corrcoef(rmsd, on_map)[0, 1] > 0.7, mol.smiles
        assert (on_map <= rmsd + 0.02).mean() > 0.95  # a projection only shortens distances (up to round-off)


@pytest.mark.slow
def test_large_maps_fit_a_sample_place_the_rest_report_progress_and_cancel():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, size=(200, 8)) for c in (0.0, 5.0, 10.0)]).astype(np.float32)
    params = MapParams("conformers", n_neighbors=10, sample=200)
    steps = []
    coords, method = embeddings.compute_map(x, params, report=lambda d, n, m: steps.append((d, n)))
    assert method == "umap" and coords.shape == (600, 2) and np.isfinite(coords).all()
    assert steps[0] == (200, 600) and steps[-1] == (600, 600)
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    # placed points land beside the fitted points of their own cluster
    cluster = np.repeat(np.arange(3), 200)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (cluster[d.argmin(1)] == cluster).mean() > 0.95
    calls = []
    with pytest.raises(embeddings.MapCancelled):
        embeddings.compute_map(x, params, report=lambda d, n, m: calls.append(d), should_stop=lambda: bool(calls))
    assert calls == [200]  # stopped after the fit, before placing the rest


@pytest.mark.slow
def test_estimate_follows_the_measured_time_and_builds_run_in_background(tiny_dataset, cache):
    params = MapParams("conformers", n_neighbors=6)
    n = tiny_dataset.n_conformers
    assert embeddings.estimate_seconds(10 * n, params) > embeddings.estimate_seconds(n, params) > 0
    build = embeddings.build_map(tiny_dataset, params)
    assert embeddings.build_map(tiny_dataset, params) is build  # one build per map, shared
    assert embeddings.running_build(tiny_dataset, params) is build
    build.join(300)
    assert build.status == "done", build.error
    assert build.done == build.total == n and embeddings.is_cached(tiny_dataset, params)
    assert (cache / "umap" / "timing.json").exists()
    # once UMAP is warm, the measured seconds per point drive the estimate (no start-up added)
    second = embeddings.build_map(tiny_dataset, MapParams("conformers", n_neighbors=7))
    second.join(300)
    assert second.status == "done", second.error
    estimate = embeddings.estimate_seconds(n, MapParams("conformers", n_neighbors=8))
    assert estimate == pytest.approx(second.result.seconds, rel=0.05)


def test_a_cancelled_build_is_reported_and_replaced(tiny_dataset, cache, monkeypatch):
    def stop_at_once(x, params, report=None, should_stop=None):
        raise embeddings.MapCancelled("map computation cancelled")

    monkeypatch.setattr(embeddings, "compute_map", stop_at_once)
    params = MapParams("structures", n_neighbors=3)
    build = embeddings.build_map(tiny_dataset, params)
    build.join(60)
    assert build.status == "cancelled" and not embeddings.is_cached(tiny_dataset, params)
    monkeypatch.setattr(embeddings, "compute_map", lambda x, params, report=None, should_stop=None:
                        (np.zeros((len(x), 2), dtype=np.float32), "pca"))
    again = embeddings.build_map(tiny_dataset, params)
    assert again is not build
    again.join(60)
    assert again.status == "done" and embeddings.is_cached(tiny_dataset, params)


@pytest.mark.parametrize("how", ["cleared", "moved"])
def test_a_finished_build_whose_file_is_gone_is_built_again(tiny_dataset, cache, monkeypatch, how):
    """The cache cleared while the server runs, or another ``MLIPDIV_CACHE`` in the same process (an earlier app
    test's: builds are shared by the process). The Embeddings page waits for the map's file, so the finished build
    that wrote it elsewhere must not be handed out again: the page reran forever (a CI hang of test_app.py)."""
    monkeypatch.setattr(embeddings, "compute_map", lambda x, params, report=None, should_stop=None:
                        (np.zeros((len(x), 2), dtype=np.float32), "pca"))
    params = MapParams("structures", n_neighbors=11 if how == "cleared" else 12)  # no other test builds these
    first = embeddings.build_map(tiny_dataset, params)
    first.join(60)
    assert first.status == "done" and embeddings.is_cached(tiny_dataset, params)
    assert embeddings.build_map(tiny_dataset, params) is first  # its file is there: nothing to do
    if how == "cleared":
        for f in (cache / "umap").glob("*.npy"):
            f.unlink()
    else:
        monkeypatch.setenv("MLIPDIV_CACHE", str(cache.parent / "another-cache"))
    again = embeddings.build_map(tiny_dataset, params)
    assert again is not first
    again.join(60)
    assert again.status == "done" and embeddings.is_cached(tiny_dataset, params)


def _fresh_python(script: str) -> list[str]:
    """The stdout lines of ``script`` in a fresh interpreter without the user's NUMBA_ settings: numba reads them
    once, at its first import, so only a new process shows what importing mlipdiv sets."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                         cwd=Path(embeddings.__file__).parents[1])
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@pytest.mark.parametrize("route", ["umap", "dscribe.descriptors", "quests.descriptor"])
def test_numba_never_colours_however_it_is_first_imported(route: str) -> None:
    """numba colours its error messages with colorama, whose init/deinit reassign ``sys.stderr`` process-wide (and
    numba builds such messages while compiling). Maps and descriptors are computed in background threads, so that
    once sent another thread's output (a CLI's one-line error under test) to a stale stream. numba reads its setting
    at its first import, which may come through umap (maps), dscribe (SOAP, via sparse) or quests (the information
    gap): importing mlipdiv first must be enough for each."""
    script = (
        "import importlib, sys, mlipdiv\n"
        f"importlib.import_module({route!r})\n"
        "print('numba' in sys.modules)\n"  # the route itself imported numba
        "from numba.core import errors\n"
        "print(type(errors.termcolor()).__name__)\n"
    )
    assert _fresh_python(script)[-2:] == ["True", "NOPColorScheme"]


def test_computing_a_map_never_reassigns_sys_stderr():
    """The assignments themselves, counted while a map is computed in a fresh interpreter."""
    script = (
        "import sys, types\n"
        "sets = []\n"
        "class Spy(types.ModuleType):\n"
        "    def __setattr__(self, name, value):\n"
        "        if name in ('stdout', 'stderr'): sets.append(name)\n"
        "        super().__setattr__(name, value)\n"
        "sys.__class__ = Spy\n"
        "import numpy as np\n"
        "from mlipdiv.embeddings import MapParams, compute_map\n"
        "x = np.random.default_rng(0).normal(size=(40, 3))\n"
        "compute_map(x, MapParams(kind='structures'))\n"
        "print(len(sets))\n"
    )
    assert _fresh_python(script)[-1] == "0"
