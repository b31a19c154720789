"""UMAP maps of a dataset: one point per molecule (structures) and one per conformer (3D geometry).

* ``structures``: UMAP of :func:`mlipdiv.descriptors.molecule_fingerprints` (Morgan, radius 2, 2048 bits), metric
  ``jaccard`` by default (1 - Tanimoto on bit vectors).
* ``conformers``: UMAP of :func:`mlipdiv.descriptors.conformer_descriptors` (sorted Coulomb-matrix eigenvalues, one
  length for every molecule), metric ``euclidean`` by default. Row ``g`` is the conformer with global id ``g``.

A map is computed once per (dataset content, kind, parameters) and stored as ``.npy`` under
:func:`mlipdiv.paths.cache_dir` ``/umap``; the key uses :func:`mlipdiv.descriptors.dataset_digest`, so an edited
dataset never reads a stale map and a restart reads the file in milliseconds. UMAP's first call in a process
compiles numba code (about 25 s on a 2-core machine): :func:`start_background_build` computes the default maps of a
dataset in a daemon thread when the app starts, so they are ready (or nearly) by the time a user opens the page.

Datasets too small for UMAP (fewer than :data:`MIN_UMAP_POINTS` points) get their first two principal components
instead, flagged in :attr:`EmbeddingMap.method`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.descriptors import save_array
from mlipdiv.io.dataset import Dataset

__all__ = [
    "DEFAULT_METRICS",
    "KINDS",
    "METRICS",
    "MIN_UMAP_POINTS",
    "EmbeddingMap",
    "MapParams",
    "background_status",
    "cached_map",
    "compute_map",
    "is_cached",
    "start_background_build",
]

KINDS = ("structures", "conformers")
DEFAULT_METRICS = {"structures": "jaccard", "conformers": "euclidean"}
METRICS = {
    "structures": ("jaccard", "dice", "cosine", "euclidean"),
    "conformers": ("euclidean", "manhattan", "cosine", "correlation"),
}
MIN_UMAP_POINTS = 8
_VERSION = 1  # bump when the map definition changes: old files are then ignored
_LOCK = threading.Lock()  # one UMAP at a time in a process (numba compilation and 2 cores do not share well)


@dataclass(frozen=True)
class MapParams:
    """UMAP settings of one map.

    Attributes:
        kind: ``"structures"`` or ``"conformers"``.
        n_neighbors: local neighbourhood size (2-200); larger keeps more global structure.
        min_dist: how tightly points may pack (0-0.99).
        metric: distance on the descriptor (see :data:`METRICS`); ``None`` means the kind's default.
        seed: UMAP random state (fixed, so a map is reproducible).
    """

    kind: str = "conformers"
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.metric is None:
            object.__setattr__(self, "metric", DEFAULT_METRICS[self.kind])
        if self.metric not in METRICS[self.kind]:
            raise ValueError(
                f"metric {self.metric!r} is not offered for {self.kind}; choose one of {METRICS[self.kind]}"
            )
        if not 2 <= int(self.n_neighbors) <= 200:
            raise ValueError(f"n_neighbors must be between 2 and 200, not {self.n_neighbors}")
        if not 0.0 <= float(self.min_dist) < 1.0:
            raise ValueError(f"min_dist must be in [0, 1), not {self.min_dist}")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "v": _VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EmbeddingMap:
    """A computed map.

    Attributes:
        coords: (n, 2) float32.
        global_ids: (n,) global conformer id of each point (a structure map uses each molecule's first conformer).
        molecule_index: (n,) index of each point's molecule in the dataset.
        params: the settings used.
        method: ``"umap"`` or ``"pca"`` (too few points for UMAP).
        seconds: time it took to compute (0 when read from disk).
        from_cache: read from disk.
    """

    coords: np.ndarray
    global_ids: np.ndarray
    molecule_index: np.ndarray
    params: MapParams
    method: str
    seconds: float
    from_cache: bool


def _descriptors(dataset: Dataset, kind: str) -> np.ndarray:
    from mlipdiv.descriptors import conformer_descriptors, molecule_fingerprints

    if kind == "structures":
        return np.asarray(molecule_fingerprints(dataset), dtype=np.float32)
    return np.asarray(conformer_descriptors(dataset), dtype=np.float32)


def _index(dataset: Dataset, kind: str) -> tuple[np.ndarray, np.ndarray]:
    offsets = dataset.conformer_offsets()
    if kind == "structures":
        return offsets[:-1].copy(), np.arange(len(dataset), dtype=np.int64)
    counts = np.diff(offsets)
    return np.arange(offsets[-1], dtype=np.int64), np.repeat(np.arange(len(dataset), dtype=np.int64), counts)


def _name(dataset: Dataset, params: MapParams) -> str:
    from mlipdiv.descriptors import dataset_digest

    return f"{params.kind}-{dataset_digest(dataset)}-{params.key()}.npy"


def _path(dataset: Dataset, params: MapParams) -> Path:
    """Where a computed map is written (the cache)."""
    from mlipdiv.paths import cache_dir

    return cache_dir() / "umap" / _name(dataset, params)


def _found(dataset: Dataset, params: MapParams) -> Path | None:
    """An existing file of the map: in the cache, else among the maps shipped in ``data/umap`` (read-only)."""
    from mlipdiv.paths import DATA_DIR

    name = _name(dataset, params)
    for path in (_path(dataset, params).parent / name, DATA_DIR / "umap" / name):
        if path.exists():
            return path
    return None


def is_cached(dataset: Dataset, params: MapParams) -> bool:
    """Whether the map is on disk (opening the page will then be instant)."""
    return _found(dataset, params) is not None


def compute_map(x: np.ndarray, params: MapParams) -> tuple[np.ndarray, str]:
    """2D coordinates of the rows of ``x``: UMAP, or PCA below :data:`MIN_UMAP_POINTS` rows. No caching."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n < MIN_UMAP_POINTS:
        return _pca2(x), "pca"
    import umap  # heavy import (numba); only when a map is really computed

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inverse_transform will be unavailable.*")  # we never invert
        warnings.filterwarnings("ignore", message=".*not fully connected.*")  # small or clustered data: harmless
        # sklearn's spectral initialisation falls back from ARPACK to LOBPCG on large maps and says so: harmless
        warnings.filterwarnings("ignore", module="sklearn.manifold._spectral_embedding")
        reducer = umap.UMAP(
            n_neighbors=min(int(params.n_neighbors), n - 1),
            min_dist=float(params.min_dist),
            metric=params.metric,
            random_state=params.seed,
            n_components=2,
            low_memory=True,
            n_jobs=1,  # a fixed random_state makes UMAP single-threaded anyway; saying so silences its warning
        )
        coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float32), "umap"


def _pca2(x: np.ndarray) -> np.ndarray:
    out = np.zeros((len(x), 2), dtype=np.float32)
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:2].T
    out[:, : proj.shape[1]] = proj
    return out


def cached_map(dataset: Dataset, params: MapParams, use_disk: bool = True) -> EmbeddingMap:
    """The map of ``dataset`` with ``params``: read from disk when there, else computed and saved (atomically).

    Args:
        dataset: the dataset.
        params: map settings.
        use_disk: read and write the disk cache (off in tests that measure the computation).
    """
    global_ids, molecule_index = _index(dataset, params.kind)
    path = _path(dataset, params)

    def from_disk() -> EmbeddingMap | None:
        found = _found(dataset, params) if use_disk else None
        if found is None:
            return None
        try:
            coords = np.load(found, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable file: recompute and overwrite
        if coords.shape != (len(global_ids), 2):
            return None
        method = "umap" if len(global_ids) >= MIN_UMAP_POINTS else "pca"
        return EmbeddingMap(coords, global_ids, molecule_index, params, method, 0.0, True)

    found = from_disk()
    if found is not None:
        return found
    with _LOCK:  # a second caller waits for the first and then reads its file instead of computing it again
        found = from_disk()
        if found is not None:
            return found
        start = time.perf_counter()
        coords, method = compute_map(_descriptors(dataset, params.kind), params)
        seconds = time.perf_counter() - start
        if use_disk:
            save_array(path, coords)
    return EmbeddingMap(coords, global_ids, molecule_index, params, method, seconds, False)


# Background builds by dataset path: their state ("running", "done" or "failed", maps done, error, seconds).
_BACKGROUND: dict[str, dict[str, Any]] = {}
_BACKGROUND_LOCK = threading.Lock()


def start_background_build(dataset_path: str | Path | None = None, params: list[MapParams] | None = None) -> str:
    """Compute the default maps of a dataset in a daemon thread, once per process and dataset path.

    Returns at once. Safe to call on every page load: later calls for the same path do nothing. The thread never
    touches Streamlit; :func:`background_status` reports its state.

    Args:
        dataset_path: the dataset file; ``None`` means :func:`mlipdiv.paths.default_dataset`.
        params: maps to build (default: both kinds with default settings).

    Returns:
        The key under which :func:`background_status` reports (the resolved path).
    """
    from mlipdiv.paths import default_dataset

    path = Path(dataset_path) if dataset_path is not None else default_dataset()
    key = str(path.resolve())
    todo = params if params is not None else [MapParams(kind) for kind in KINDS]
    with _BACKGROUND_LOCK:
        if key in _BACKGROUND:
            return key
        state: dict[str, Any] = {"status": "running", "done": [], "error": None, "seconds": 0.0}
        _BACKGROUND[key] = state

    def work() -> None:
        from mlipdiv.io.load import load_dataset

        start = time.perf_counter()
        try:
            dataset = load_dataset(path)
            for p in todo:
                cached_map(dataset, p)
                state["done"].append(p.kind)
            state["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - background thread: reported in the page, maps then computed on demand
            state["status"] = "failed"
            state["error"] = f"{type(exc).__name__}: {exc}"
        state["seconds"] = time.perf_counter() - start

    threading.Thread(target=work, name="mlipdiv-umap", daemon=True).start()
    return key


def background_status(dataset_path: str | Path | None = None) -> dict[str, Any] | None:
    """State of the background build for a dataset path (``None`` if none was started in this process)."""
    from mlipdiv.paths import default_dataset

    path = Path(dataset_path) if dataset_path is not None else default_dataset()
    with _BACKGROUND_LOCK:
        state = _BACKGROUND.get(str(path.resolve()))
        return dict(state) if state is not None else None


def main(argv: list[str] | None = None) -> int:
    """``python -m mlipdiv.embeddings [--dataset D] [--out DIR]``: compute the default maps of a dataset now.

    ``--out data/umap`` also puts them where the app looks for maps shipped with the repository, so a fresh clone
    opens the Embeddings page without computing anything.
    """
    import argparse
    import shutil

    from mlipdiv.io.load import load_dataset

    parser = argparse.ArgumentParser(prog="python -m mlipdiv.embeddings", description=main.__doc__)
    parser.add_argument("--dataset", help="dataset file (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="also copy the maps into this folder (e.g. data/umap)")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset)
    for kind in KINDS:
        params = MapParams(kind)
        m = cached_map(dataset, params)
        where = _found(dataset, params)
        how = f"read from {where}" if m.from_cache else f"computed in {m.seconds:.0f} s"
        print(f"{kind}: {len(m.coords)} points, {how}")
        if args.out is not None and where is not None and where.resolve() != (args.out / where.name).resolve():
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(where, args.out / where.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
