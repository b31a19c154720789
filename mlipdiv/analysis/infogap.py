"""A model-free information gap between a test set and a training set: QUESTS differential entropy dH.

QUESTS (Schwalbe-Koda, Hamel, Sadigh, Zhou, Lordi, "Model-free quantification of completeness, uncertainties, and
outliers in atomistic machine learning using information theory", Nat. Commun. 16, 4014 (2025), arXiv:2404.12367)
describes every atom by its local environment and estimates how much information a test environment y adds to a
reference set X with a Gaussian kernel density::

    dH(y | X) = -log sum_i exp(-|y - x_i|^2 / (2 h^2))

dH > 0 means no training environment lies within about one bandwidth of y (the kernel sum is below one): the test
environment is new information, an extrapolation; dH << 0 means it is well covered. We report, per test set, the
fraction of test atoms with dH > 0, the mean and median dH, and the mean over conformers of their largest atomic
dH, so that they can be set beside the model's errors to see whether the gap predicts them.

Descriptor (QUESTS' default, element-agnostic): for each atom, its k = 32 nearest neighbours within a 5 A cutoff;
``x1`` = the cutoff-weighted inverse distances w(r_ij)/r_ij sorted from nearest, ``x2`` = the sorted mean over
neighbours of the weighted inverse neighbour-neighbour distances sqrt(w_ij w_il)/r_jl, w(r) = (1 - (r/r_c)^2)^2;
zero-padded when a molecule has fewer than k + 1 atoms. Bandwidth h = 0.015 (QUESTS' default, 1/angstrom).

Backends: ``quests`` (the ``quests`` package, numba-compiled; used when importable) or ``numpy`` (our own
vectorised implementation of the same descriptor and kernel sum; tests check it matches the package). ``auto``
picks ``quests`` when installed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import MlipdivError
from mlipdiv.names import SplitName

__all__ = [
    "DEFAULT_BANDWIDTH",
    "GapCache",
    "GapReport",
    "atom_descriptors",
    "delta_entropy",
    "gap_for_run",
    "information_gap",
    "structures_from_pairs",
]

DEFAULT_K = 32
DEFAULT_CUTOFF = 5.0
DEFAULT_BANDWIDTH = 0.015
_EPS = 1e-15
_LOG_TINY = float(np.log(np.finfo(float).tiny))  # exp() below it is subnormal or zero

Structure = tuple[np.ndarray, np.ndarray]  # (atomic_numbers (n,), positions (n, 3) angstrom)


def _backend(name: str) -> str:
    if name == "auto":
        try:
            import quests  # noqa: F401

            return "quests"
        except ImportError:
            return "numpy"
    if name not in ("quests", "numpy"):
        raise MlipdivError(f"unknown information-gap backend {name!r}; use auto, quests or numpy")
    return name


# ---------------------------------------------------------------------------------------------- descriptors


def _cutoff(r: np.ndarray, rc: float) -> np.ndarray:
    z = np.minimum(r, rc) / rc
    return (1 - z**2) ** 2


def _descriptor_numpy(positions: np.ndarray, k: int, cutoff: float) -> np.ndarray:
    """QUESTS x1 || x2 for one non-periodic structure: (n_atoms, 2k - 1)."""
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    dm = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    jmax = min(k, n - 1)
    nb = np.argsort(dm, axis=1, kind="stable")[:, 1 : jmax + 1]  # (n, jmax), nearest first, self excluded
    rows = np.arange(n)[:, None]
    r = dm[rows, nb]
    w = _cutoff(r + 1e-16, cutoff)
    x1 = np.zeros((n, k))
    x1[:, :jmax] = w / (r + 1e-16)
    pair = np.sqrt(w[:, :, None] * w[:, None, :]) / (dm[nb[:, :, None], nb[:, None, :]] + _EPS)
    idx = np.arange(jmax)
    pair[:, idx, idx] = 0.0
    full = np.zeros((n, k, k))
    full[:, :jmax, :jmax] = pair
    col = np.sort(full, axis=2).sum(axis=1) / k  # (n, k): per sorted position, mean over neighbours
    x2 = col[:, 1:][:, ::-1]
    return np.concatenate([x1, x2], axis=1)


def atom_descriptors(
    structures: Sequence[Structure], k: int = DEFAULT_K, cutoff: float = DEFAULT_CUTOFF, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom QUESTS descriptors of every structure.

    Returns:
        ``(X, owner)``: X (n_atoms_total, 2k - 1) float64, owner (n_atoms_total,) index of each atom's structure.
    """
    if not structures:
        raise MlipdivError("no structures to describe")
    owner = np.concatenate([np.full(len(z), i) for i, (z, _) in enumerate(structures)])
    if _backend(backend) == "quests":
        from ase import Atoms
        from quests.descriptor import get_descriptors

        atoms = [Atoms(numbers=np.asarray(z), positions=np.asarray(p, dtype=np.float64)) for z, p in structures]
        return np.asarray(get_descriptors(atoms, k=k, cutoff=cutoff)), owner
    return np.concatenate([_descriptor_numpy(p, k, cutoff) for _, p in structures]), owner


# ------------------------------------------------------------------------------------------ kernel density


def _kernel_sum_numpy(y: np.ndarray, x: np.ndarray, h: float, batch: int = 4096) -> np.ndarray:
    """sum_i exp(-|y_j - x_i|^2 / (2 h^2)) for every row of ``y``, a block of rows at a time.

    Exponents below log(tiny) (a third of the pairs of a study's run) are set to -inf before ``np.exp``: it
    computes their subnormal or underflowing terms up to 100x slower than normal ones, and none of those terms can
    change a sum that :func:`delta_entropy` does not already clamp to ``tiny``. Two blocks are reused in place, in
    the plain expression's order: fresh ones cost a page fault per 4 KiB.
    """
    out = np.zeros(len(y))
    x_sq = (x**2).sum(1)
    y_sq = (y**2).sum(1)
    cross = np.empty((min(batch, len(y)), len(x)))
    d2 = np.empty_like(cross)
    for i in range(0, len(y), batch):
        n = min(batch, len(y) - i)
        c, d = cross[:n], d2[:n]
        np.matmul(y[i : i + n], x.T, out=c)
        c *= 2
        np.add(y_sq[i : i + n, None], x_sq[None], out=d)
        d -= c
        np.maximum(d, 0.0, out=d)
        d *= -0.5
        d /= h**2
        np.copyto(d, -np.inf, where=d < _LOG_TINY)
        out[i : i + n] = np.exp(d, out=d).sum(1)
    return out


def delta_entropy(y: np.ndarray, x: np.ndarray, h: float = DEFAULT_BANDWIDTH, backend: str = "auto") -> np.ndarray:
    """dH(y_j | X) for every row of ``y`` (nats); capped at ~690 where no reference point is anywhere near."""
    y, x = np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(x, dtype=np.float64)
    if _backend(backend) == "quests":
        from quests.entropy import kernel_sum

        p = np.asarray(kernel_sum(y, x, h=h))
    else:
        p = _kernel_sum_numpy(y, x, h)
    return -np.log(np.maximum(p, np.finfo(float).tiny))


# ------------------------------------------------------------------------------------------------- reports


@dataclass
class GapReport:
    """Information gap of one test set relative to one training set."""

    n_test_atoms: int
    n_train_atoms: int
    frac_extrapolative: float  # share of test atoms with dH > 0
    dH_mean: float
    dH_median: float
    dH_conformer_max_mean: float  # mean over test conformers of their largest atomic dH
    per_conformer_max: np.ndarray
    bandwidth: float
    backend: str

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "per_conformer_max"}
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}


GapKey = tuple[Any, ...]


class GapCache(MutableMapping[GapKey, GapReport]):
    """A memo for :func:`gap_for_run` that also keeps every report on disk, one JSON file per key, so that an
    analysis rerun after more runs finished, or after an interruption, computes only the gaps it has not computed
    before: the kernel sums of one B = 8,192 run take minutes of CPU.

    The keys hold (molecule id, conformer index) digests, which mean something only on one dataset, so the file
    names include the dataset's content digest. An unreadable file counts as missing and is recomputed.
    """

    def __init__(self, folder: str | Path, dataset_digest: str) -> None:
        self._folder = Path(folder)
        self._dataset = dataset_digest
        self._memory: dict[GapKey, GapReport] = {}

    def _path(self, key: GapKey) -> Path:
        name = hashlib.sha256(f"{self._dataset}\n{key!r}".encode()).hexdigest()[:32]
        return self._folder / f"{name}.json"

    def __getitem__(self, key: GapKey) -> GapReport:
        if key in self._memory:
            return self._memory[key]
        try:
            stored = json.loads(self._path(key).read_text())
            stored["per_conformer_max"] = np.asarray(stored["per_conformer_max"], dtype=np.float64)
            report = GapReport(**stored)
        except (OSError, ValueError, TypeError, KeyError):
            raise KeyError(key) from None
        self._memory[key] = report
        return report

    def __setitem__(self, key: GapKey, report: GapReport) -> None:
        from mlipdiv.io.atomic import atomic_write_json

        self._memory[key] = report
        try:
            atomic_write_json(self._path(key), {**report.as_dict(),
                                                "per_conformer_max": report.per_conformer_max.tolist()}, indent=None)
        except OSError:
            pass  # a read-only or full folder only costs a recomputation next time

    def __delitem__(self, key: GapKey) -> None:
        self._memory.pop(key, None)
        self._path(key).unlink(missing_ok=True)

    def __iter__(self) -> Iterator[GapKey]:
        return iter(self._memory)  # the files cannot be turned back into keys

    def __len__(self) -> int:
        return len(self._memory)


def information_gap(
    train: Sequence[Structure],
    test: Sequence[Structure],
    *,
    h: float = DEFAULT_BANDWIDTH,
    k: int = DEFAULT_K,
    cutoff: float = DEFAULT_CUTOFF,
    backend: str = "auto",
    max_train_atoms: int | None = 60_000,
    seed: int = 0,
) -> GapReport:
    """dH of every atom of ``test`` relative to all atoms of ``train``, summarised (see :class:`GapReport`).

    ``max_train_atoms`` subsamples the reference atoms uniformly (seeded) above that size to bound time and memory;
    a subsample can only raise dH, never lower it.
    """
    name = _backend(backend)
    x, _ = atom_descriptors(train, k, cutoff, name)
    y, owner = atom_descriptors(test, k, cutoff, name)
    if max_train_atoms is not None and len(x) > max_train_atoms:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_train_atoms, replace=False))]
    dh = delta_entropy(y, x, h, name)
    per_conf = np.full(len(test), -np.inf)
    np.maximum.at(per_conf, owner, dh)
    return GapReport(
        n_test_atoms=len(y),
        n_train_atoms=len(x),
        frac_extrapolative=float(np.mean(dh > 0)),
        dH_mean=float(np.mean(dh)),
        dH_median=float(np.median(dh)),
        dH_conformer_max_mean=float(np.mean(per_conf)),
        per_conformer_max=per_conf,
        bandwidth=h,
        backend=name,
    )


def structures_from_pairs(dataset: Any, pairs: Iterable[Sequence[Any]]) -> list[Structure]:
    """``(atomic_numbers, positions)`` of the ``(molecule_id, conformer_index)`` pairs of a split."""
    out = []
    for mol_id, conf in pairs:
        mol = dataset[str(mol_id)]
        out.append((mol.atomic_numbers, mol.positions[int(conf)]))
    return out


def _pairs_key(pairs: Iterable[Sequence[Any]]) -> str:
    """A digest of ``(molecule_id, conformer_index)`` pairs, in their order (the reports' per-conformer order)."""
    h = hashlib.sha256()
    for mol_id, conf in pairs:
        h.update(f"{mol_id}\x00{int(conf)}\n".encode())
    return h.hexdigest()


def gap_for_run(
    run_dir: Any, dataset: Any = None, *, memo: MutableMapping[GapKey, GapReport] | None = None, **kwargs: Any
) -> dict[str, GapReport]:
    """Information gap of each evaluated split of a finished run relative to its training set.

    The gap depends on the structures only, not on the model, so ``memo`` (a dict or a :class:`GapCache` kept
    across the calls of one analysis, on one dataset) reuses the report of an identical (training set, test set,
    settings): the runs of two models on one split have the same gaps, and the kernel sums are the slowest part of
    a study's analysis.
    """
    from mlipdiv.analysis.domain import load_run

    dataset, split, preds = load_run(run_dir, dataset)
    train_pairs = split[SplitName.TRAIN]
    kwargs["backend"] = _backend(kwargs.get("backend", "auto"))  # the key names the backend that computes
    train_key, settings = _pairs_key(train_pairs), tuple(sorted(kwargs.items()))
    train: list[Structure] | None = None
    out: dict[str, GapReport] = {}
    for name in (SplitName.VAL, SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES):
        rows = preds["split"] == name
        if not rows.any():
            continue
        test_pairs = list(zip(preds["mol_id"][rows], preds["conf_idx"][rows]))
        key = (train_key, _pairs_key(test_pairs), settings)
        if memo is not None and key in memo:
            out[name] = memo[key]
            continue
        if train is None:
            train = structures_from_pairs(dataset, train_pairs)
        out[name] = information_gap(train, structures_from_pairs(dataset, test_pairs), **kwargs)
        if memo is not None:
            memo[key] = out[name]
    return out
