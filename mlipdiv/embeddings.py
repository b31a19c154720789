"""Maps of a dataset: one point per molecule (structures), one per conformer (local atomic environments), and
one molecule's conformers on their own.

* ``structures``: UMAP of :func:`mlipdiv.descriptors.molecule_fingerprints` (Morgan, radius 2, 2048 bits), metric
  ``jaccard`` by default (1 - Tanimoto on bit vectors).
* ``conformers``: UMAP of :func:`mlipdiv.descriptors.environment_descriptors` (each conformer's atom-averaged SOAP
  vector within the models' 5 A cutoff, reduced to its principal components), metric ``euclidean`` by default. Row
  ``g`` is the conformer with global id ``g``. Neighbours on it have similar local environments, which is what a
  potential with a cutoff sees; a molecule's conformers spread along the directions their geometry changes.
* :func:`molecule_conformer_map`: one molecule's conformers placed by classical multidimensional scaling of their
  pairwise RMSD, so a distance on it approximates an RMSD in angstrom and parent families separate.

Large maps are fitted on a fixed-seed sample of :attr:`MapParams.sample` points and the others are placed among
their nearest fitted neighbours in chunks (:func:`compute_map`): on the shipped 105,000 conformers this is what
makes a new setting take a minute instead of ten, and it gives progress and a place to stop between chunks
(:class:`MapBuild`).
:func:`estimate_seconds` predicts the time from the point count and the seconds per point measured on this machine
by the last computation (kept in ``umap/timing.json`` of the cache).

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.descriptors import save_array
from mlipdiv.errors import MlipdivError
from mlipdiv.io.dataset import Dataset, Molecule

__all__ = [
    "DEFAULT_METRICS",
    "FIT_SAMPLE",
    "KINDS",
    "METRICS",
    "MIN_UMAP_POINTS",
    "EmbeddingMap",
    "MapBuild",
    "MapCancelled",
    "MapParams",
    "background_status",
    "build_map",
    "cached_map",
    "compute_map",
    "estimate_seconds",
    "is_cached",
    "molecule_conformer_map",
    "running_build",
    "start_background_build",
]

KINDS = ("structures", "conformers")
DEFAULT_METRICS = {"structures": "jaccard", "conformers": "euclidean"}
METRICS = {
    "structures": ("jaccard", "dice", "cosine", "euclidean"),
    "conformers": ("euclidean", "manhattan", "cosine", "correlation"),
}
MIN_UMAP_POINTS = 8
FIT_SAMPLE = 10_000  # maps with more points are fitted on this many and the rest placed by transform
_CHUNK = 5_000  # points placed per transform call: one progress step, and where a cancel takes effect
_VERSION = 3  # bump when the map definition changes: old files are then ignored (2: SOAP, sampling; 3: PCA init)
_LOCK = threading.Lock()  # one UMAP at a time in a process (numba compilation and 2 cores do not share well)


@dataclass(frozen=True)
class MapParams:
    """UMAP settings of one map.

    Attributes:
        kind: ``"structures"`` or ``"conformers"``.
        n_neighbors: local neighbourhood size (2-200); larger keeps more global structure.
        min_dist: how tightly points may pack (0-0.99).
        metric: distance on the descriptor (see :data:`METRICS`); ``None`` means the kind's default.
        seed: UMAP random state (fixed, so a map is reproducible), also that of the fitting sample.
        sample: fit on at most this many points (a seeded random sample) and place the others with ``transform``;
            0 fits on all points.
    """

    kind: str = "conformers"
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str | None = None
    seed: int = 0
    sample: int = FIT_SAMPLE

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
        if int(self.sample) != 0 and int(self.sample) < 100:
            raise ValueError(f"sample must be 0 (fit on all points) or at least 100, not {self.sample}")

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


class MapCancelled(MlipdivError):
    """A map computation stopped on request (nothing was written)."""


def _descriptors(dataset: Dataset, kind: str, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    from mlipdiv.descriptors import environment_descriptors, molecule_fingerprints

    if kind == "structures":
        return np.asarray(molecule_fingerprints(dataset), dtype=np.float32)
    return np.asarray(environment_descriptors(dataset, progress=progress), dtype=np.float32)


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


Report = Callable[[int, int, str], None]  # (done, total, message)


def _import_umap() -> Any:
    """umap, a heavy import (numba): only when a map is computed. (Its coloured error messages are off: see
    :mod:`mlipdiv`.)"""
    import umap

    return umap


def compute_map(
    x: np.ndarray,
    params: MapParams,
    report: Report | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, str]:
    """2D coordinates of the rows of ``x``: UMAP, or PCA below :data:`MIN_UMAP_POINTS` rows. No caching.

    With more rows than ``params.sample``, UMAP is fitted on a seeded sample and each other row is placed at the
    weighted mean of its ``n_neighbors`` nearest fitted rows (in the map's metric), in chunks of 5,000;
    ``report(done, total, message)`` is called after the fit and after each chunk
    (``done`` counts points), and ``should_stop()`` is asked before each chunk (:class:`MapCancelled`).
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n < MIN_UMAP_POINTS:
        return _pca2(x), "pca"
    umap = _import_umap()

    def stop() -> None:
        if should_stop is not None and should_stop():
            raise MapCancelled("map computation cancelled")

    sample = int(params.sample)
    fit_rows = np.arange(n) if sample == 0 or n <= sample else np.sort(
        np.random.default_rng(params.seed).choice(n, sample, replace=False))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*inverse_transform will be unavailable.*")  # we never invert
        warnings.filterwarnings("ignore", message=".*not fully connected.*")  # small or clustered data: harmless
        # sklearn's spectral initialisation falls back from ARPACK to LOBPCG on large maps and says so: harmless
        warnings.filterwarnings("ignore", module="sklearn.manifold._spectral_embedding")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        reducer = umap.UMAP(
            n_neighbors=min(int(params.n_neighbors), len(fit_rows) - 1),
            min_dist=float(params.min_dist),
            metric=params.metric,
            random_state=params.seed,
            n_components=2,
            low_memory=True,
            # each molecule's conformers form a graph component of their own, on which the default spectral start
            # fails and falls back to random: islands then lie anywhere. Starting from the descriptor's principal
            # components puts similar molecules' islands near each other.
            init="pca",
            n_jobs=1,  # a fixed random_state makes UMAP single-threaded anyway; saying so silences its warning
        )
        stop()
        coords = np.zeros((n, 2), dtype=np.float32)
        coords[fit_rows] = reducer.fit_transform(x[fit_rows])
        if report is not None:
            report(len(fit_rows), n, f"fitted on {len(fit_rows):,} points")
        rest = np.setdiff1d(np.arange(n), fit_rows)
        if len(rest):
            neighbours = _neighbour_index(x[fit_rows], params)
        for lo in range(0, len(rest), _CHUNK):
            stop()
            rows = rest[lo : lo + _CHUNK]
            coords[rows] = _place(neighbours, x[rows], coords[fit_rows])
            if report is not None:
                report(len(fit_rows) + lo + len(rows), n, f"placed {lo + len(rows):,} of {len(rest):,} other points")
    return coords, "umap"


def _neighbour_index(x_fit: np.ndarray, params: MapParams) -> Any:
    from sklearn.neighbors import NearestNeighbors

    k = min(int(params.n_neighbors), len(x_fit))
    metric = str(params.metric)
    data = x_fit.astype(bool) if metric in ("jaccard", "dice") else x_fit
    return NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(data)


def _place(index: Any, x_new: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Positions of new points: the inverse-distance-weighted mean of their nearest fitted points' positions.

    This is where UMAP's own ``transform`` starts before it refines; refining was not worth its cost here (its
    first call spent 380 s compiling and indexing on the 2-core machine, on 10,000 fitted SOAP vectors).
    """
    data = x_new.astype(bool) if index.metric in ("jaccard", "dice") else x_new
    dist, idx = index.kneighbors(data)
    w = 1.0 / np.maximum(dist, 1e-6)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, fitted[idx]).astype(np.float32)


def _pca2(x: np.ndarray) -> np.ndarray:
    out = np.zeros((len(x), 2), dtype=np.float32)
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:2].T
    out[:, : proj.shape[1]] = proj
    return out


def cached_map(
    dataset: Dataset,
    params: MapParams,
    use_disk: bool = True,
    report: Report | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EmbeddingMap:
    """The map of ``dataset`` with ``params``: read from disk when there, else computed and saved (atomically).

    Args:
        dataset: the dataset.
        params: map settings.
        use_disk: read and write the disk cache (off in tests that measure the computation).
        report, should_stop: progress and cancellation, see :func:`compute_map` (descriptors first report
            ``(0, n, "descriptors ...")``).
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
        n = len(global_ids)

        def descriptor_progress(done: int, total: int) -> None:
            if report is not None:
                report(0, n, f"descriptors: {done} of {total} molecules")

        x = _descriptors(dataset, params.kind, descriptor_progress)
        start = time.perf_counter()
        was_warm = _UMAP_WARM.is_set()
        coords, method = compute_map(x, params, report, should_stop)
        seconds = time.perf_counter() - start
        if method == "umap":
            _UMAP_WARM.set()
            _record_timing(params, n, seconds, startup=not was_warm)
        if use_disk:
            save_array(path, coords)
    return EmbeddingMap(coords, global_ids, molecule_index, params, method, seconds, False)


# ------------------------------------------------------------------------------------------------ time estimates

_UMAP_WARM = threading.Event()  # set once UMAP has run in this process (numba compiled)
# Seconds measured on the 2-core development machine (busy with other work) with the default settings; the first
# computation on a machine replaces them with its own (umap/timing.json under the cache).
_DEFAULT_TIMING = {
    "startup": 25.0,  # numba compilation, once per process
    "structures": {"fit": 1.0e-2, "transform": 5.0e-3},  # seconds per point (2,048-bit fingerprints, jaccard)
    "conformers": {"fit": 3.0e-3, "transform": 1.0e-3},  # seconds per point (48 SOAP components, euclidean)
}


def _timing_path() -> Path:
    from mlipdiv.paths import cache_dir

    return cache_dir() / "umap" / "timing.json"


def _timing() -> dict[str, Any]:
    try:
        measured = json.loads(_timing_path().read_text())
    except (OSError, ValueError):
        measured = {}
    return {**_DEFAULT_TIMING, **{k: v for k, v in measured.items() if k in _DEFAULT_TIMING}}


def _startup_seconds() -> float:
    return float(_timing()["startup"])


def _split_counts(n: int, params: MapParams) -> tuple[int, int]:
    fit = n if params.sample == 0 or n <= params.sample else int(params.sample)
    return fit, n - fit


def _record_timing(params: MapParams, n: int, seconds: float, startup: bool = False) -> None:
    """Remember what a computation just measured: with UMAP already warm, the seconds per point (fit and transform
    share one scale factor); on the first UMAP of a process, the start-up (the time beyond the per-point part)."""
    from mlipdiv.io.atomic import atomic_write_text

    timing = _timing()
    per = dict(timing[params.kind])
    fit, rest = _split_counts(n, params)
    predicted = per["fit"] * fit + per["transform"] * rest
    if predicted <= 0 or seconds <= 0:
        return
    if startup:
        timing["startup"] = max(seconds - predicted, 0.0)
    else:
        scale = seconds / predicted
        timing[params.kind] = {"fit": per["fit"] * scale, "transform": per["transform"] * scale}
    try:
        atomic_write_text(_timing_path(), json.dumps(timing, indent=1))
    except OSError:
        pass  # a read-only cache only costs a less accurate estimate


def estimate_seconds(n_points: int, params: MapParams, descriptors_ready: bool = True) -> float:
    """Expected seconds to compute a map of ``n_points`` points with ``params`` in this process.

    Seconds per point fitted and per point placed by ``transform``, as measured by the last map of this kind on
    this machine (defaults measured on the development machine until then), plus numba's start-up when UMAP has
    not run in this process yet. ``descriptors_ready=False`` adds the SOAP descriptors (about 1.3 ms per
    conformer).
    """
    if n_points < MIN_UMAP_POINTS:
        return 0.0
    timing = _timing()
    per = timing[params.kind]
    fit, rest = _split_counts(n_points, params)
    seconds = per["fit"] * fit + per["transform"] * rest
    if not _UMAP_WARM.is_set():
        seconds += float(timing["startup"])
    if not descriptors_ready and params.kind == "conformers":
        seconds += 1.3e-3 * n_points
    return float(seconds)


# ------------------------------------------------------------------------------------------------ builds


class MapBuild:
    """One map computed in a daemon thread, with progress a page can poll and a cancel.

    Attributes:
        params: the map's settings.
        n_points: points of the map.
        estimate: seconds expected when it started (:func:`estimate_seconds`).
        status: ``"running"``, ``"done"``, ``"cancelled"`` or ``"failed"``.
        done, total, message: progress (points placed, all points, what it is doing).
        error: the failure's message.
        started: ``time.time()`` at the start.
    """

    def __init__(self, dataset: Dataset, params: MapParams, estimate: float):
        self.params, self.estimate = params, float(estimate)
        self.n_points = len(_index(dataset, params.kind)[0])
        self.status, self.done, self.total, self.message = "running", 0, self.n_points, "starting"
        self.error: str | None = None
        self.result: EmbeddingMap | None = None
        self.started = time.time()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(dataset,), name="mlipdiv-map", daemon=True)
        self._thread.start()

    def _report(self, done: int, total: int, message: str) -> None:
        self.done, self.total, self.message = int(done), int(total), message

    def _run(self, dataset: Dataset) -> None:
        try:
            self.result = cached_map(dataset, self.params, report=self._report, should_stop=self._cancel.is_set)
            self.status = "done"
        except MapCancelled:
            self.status = "cancelled"
        except Exception as exc:  # noqa: BLE001 - shown in the page, never re-raised in a thread nobody joins
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"

    def cancel(self) -> None:
        """Stop before the next step (the fit itself, when running, finishes first)."""
        self._cancel.set()

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


_BUILDS: dict[str, MapBuild] = {}
_BUILDS_LOCK = threading.Lock()


def build_map(dataset: Dataset, params: MapParams) -> MapBuild:
    """The running or finished :class:`MapBuild` of this map (shared by every session of the process), or a new
    one. A cancelled or failed build is replaced by a new one, and so is a finished one whose file is gone (the
    cache was cleared, or ``MLIPDIV_CACHE`` points elsewhere now): the Embeddings page, which reruns until the
    file is there, would otherwise rerun forever on a build that will not write it again."""
    from mlipdiv.descriptors import dataset_digest

    key = f"{dataset_digest(dataset)}-{params.kind}-{params.key()}"
    with _BUILDS_LOCK:
        old = _BUILDS.get(key)
        if old is not None and (old.status == "running" or (old.status == "done" and is_cached(dataset, params))):
            return old
        n = len(_index(dataset, params.kind)[0])
        build = MapBuild(dataset, params, estimate_seconds(n, params, descriptors_ready=False))
        _BUILDS[key] = build
        return build


def running_build(dataset: Dataset, params: MapParams) -> MapBuild | None:
    """The build of this map, if one was started in this process (running, done, cancelled or failed)."""
    from mlipdiv.descriptors import dataset_digest

    with _BUILDS_LOCK:
        return _BUILDS.get(f"{dataset_digest(dataset)}-{params.kind}-{params.key()}")


# ------------------------------------------------------------------------------------------------ one molecule


def molecule_conformer_map(molecule: Molecule) -> tuple[np.ndarray, float]:
    """One molecule's conformers in 2D: classical MDS of their pairwise RMSD (all atoms, angstrom).

    Classical (Torgerson) scaling places the points so that map distances approximate the RMSDs as well as two
    axes can, so a distance on this map reads as an RMSD in angstrom (at most about the true one), and the thermal
    samples of one relaxed conformer (a parent family) sit together, apart from the other families. All atoms, not
    only heavy ones: many families differ by where a hydrogen points (an OH or NH2 rotamer), and on the shipped
    dataset all-atom RMSD separates families better (first 300 molecules with several families: the two closest
    family centres lie more than twice a family's mean spread apart in 97 % of molecules, 81 % with heavy atoms).
    Instant (no UMAP): 100 conformers take milliseconds.

    Returns:
        ``(coords, kept)``: (n_conf, 2) angstrom, and the share of the spread (sum of squared RMSDs) that the two
        axes keep, in [0, 1].
    """
    from mlipdiv.diversity import pairwise_rmsd

    pos = np.asarray(molecule.positions, dtype=np.float64)
    n = len(pos)
    if n < 3:
        coords = np.zeros((n, 2))
        if n == 2:
            coords[1, 0] = float(pairwise_rmsd(pos)[0])
        return coords, 1.0
    d2 = np.zeros((n, n))
    i, j = np.triu_indices(n, 1)
    d2[i, j] = d2[j, i] = pairwise_rmsd(pos) ** 2
    centre = np.eye(n) - 1.0 / n
    b = -0.5 * centre @ d2 @ centre
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    top = np.maximum(values[:2], 0.0)
    coords = vectors[:, :2] * np.sqrt(top)
    positive = values[values > 0].sum()
    kept = float(top.sum() / positive) if positive > 0 else 1.0
    return coords, kept


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
                build = build_map(dataset, p)  # the page finds this build and shows its progress
                build.join()
                if build.status != "done":
                    raise RuntimeError(build.error or f"the {p.kind} map was {build.status}")
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
