"""Applicability domain: error against distance to the training set, and a threshold beyond which not to trust.

Distance: for each conformer, the Euclidean distance to its nearest training conformer in a fixed-length invariant
3D descriptor, by default :func:`mlipdiv.descriptors.conformer_descriptors` (the sorted Coulomb-matrix eigenvalue
spectrum, zero-padded; one length for every molecule, so conformers of different molecules compare). Composition
and geometry both move it, so unseen molecules are usually further than unseen conformers of trained molecules.

Two thresholds, both reported:

* ``percentile`` (the one to deploy; needs no labels): the q-th percentile (default 95) of the validation
  conformers' distances to the training set. Validation data are drawn like training data, so ~5% of
  in-distribution structures are flagged by construction, and anything further than that is out of domain.
* ``error`` (a diagnostic; needs labels): the smallest distance bin edge beyond which the binned mean error exceeds
  ``k`` times the in-distribution error (the validation mean error; default k = 2). ``None`` when no bin does.

A structure is *flagged* when its distance exceeds the deployed (percentile) threshold. The report gives, per
test split, the flagged fraction and the mean error of flagged and unflagged structures, which says whether the
threshold separates the structures the model gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import MlipdivError
from mlipdiv.io.rundir import RunDir
from mlipdiv.names import EVAL_SPLITS, TEST_SPLITS, SplitName
from mlipdiv.units import mev

__all__ = [
    "DomainReport",
    "applicability_domain",
    "domain_for_run",
    "error_threshold",
    "nn_distances",
    "percentile_threshold",
]


def nn_distances(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Euclidean distance from every row of ``query`` to its nearest row of ``reference`` (a k-d tree: exact, and
    without the n_query x n_reference distance matrix)."""
    from scipy.spatial import cKDTree

    ref = np.asarray(reference, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if len(ref) == 0:
        raise MlipdivError("the training set is empty: no distances to it")
    if len(q) == 0:
        return np.empty(0)
    distances, _ = cKDTree(ref.reshape(len(ref), -1)).query(q.reshape(len(q), -1), k=1)
    return np.asarray(distances, dtype=np.float64)


def percentile_threshold(reference_distances: np.ndarray, q: float = 95.0) -> float:
    """The ``q``-th percentile of in-distribution (validation) distances to the training set."""
    d = np.asarray(reference_distances, float)
    if d.size == 0:
        raise MlipdivError("no in-distribution distances to calibrate the threshold on")
    return float(np.percentile(d, q))


def error_threshold(
    distances: np.ndarray, errors: np.ndarray, reference_error: float, k: float = 2.0, n_bins: int = 10,
    min_count: int = 5,
) -> float | None:
    """Lower edge of the first distance bin (quantile bins) whose mean error exceeds ``k`` x ``reference_error``.

    Bins with fewer than ``min_count`` structures are skipped. ``None`` when no bin exceeds it.
    """
    d, e = np.asarray(distances, float), np.asarray(errors, float)
    if d.size == 0:
        return None
    edges = np.unique(np.quantile(d, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, len(edges) - 2)
    for b in range(len(edges) - 1):
        sel = which == b
        if sel.sum() >= min_count and e[sel].mean() > k * reference_error:
            return float(edges[b])
    return None


@dataclass
class DomainReport:
    """Distances and errors per split, the thresholds, and how well the deployed one separates errors."""

    threshold: float
    percentile: float
    error_threshold: float | None
    k: float
    reference_error: float
    distances: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for split, d in self.distances.items():
            e = self.errors.get(split)
            flagged = d > self.threshold
            row = {"n": int(d.size), "flagged_fraction": float(flagged.mean()) if d.size else float("nan"),
                   "median_distance": float(np.median(d)) if d.size else float("nan")}
            if e is not None and d.size:
                row["error_flagged"] = float(e[flagged].mean()) if flagged.any() else float("nan")
                row["error_unflagged"] = float(e[~flagged].mean()) if (~flagged).any() else float("nan")
                if d.size > 2 and np.std(d) > 0 and np.std(e) > 0:
                    from scipy.stats import spearmanr

                    row["spearman_distance_error"] = float(spearmanr(d, e).statistic)
            out[split] = row
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "percentile": self.percentile,
            "error_threshold": self.error_threshold,
            "k": self.k,
            "reference_error": self.reference_error,
            "splits": self.summary(),
        }


def applicability_domain(
    train: np.ndarray,
    reference: np.ndarray,
    tests: dict[str, np.ndarray],
    *,
    reference_errors: np.ndarray | None = None,
    test_errors: dict[str, np.ndarray] | None = None,
    percentile: float = 95.0,
    k: float = 2.0,
) -> DomainReport:
    """Distances of ``reference`` (validation) and each test set's descriptors to ``train``, and the thresholds.

    Args:
        train: (n_train, d) descriptors of the training conformers.
        reference: (n_val, d) descriptors of in-distribution conformers (the validation split).
        tests: split name -> (n, d) descriptors.
        reference_errors: per-conformer errors on ``reference`` (for the error-based threshold).
        test_errors: split name -> per-conformer errors.
        percentile: q of the deployed threshold.
        k: error multiple of the diagnostic threshold.
    """
    ref_d = nn_distances(train, reference)
    thr = percentile_threshold(ref_d, percentile)
    distances = {SplitName.VAL: ref_d, **{s: nn_distances(train, x) for s, x in tests.items()}}
    errors: dict[str, np.ndarray] = {}
    ref_err = float("nan")
    err_thr = None
    if reference_errors is not None:
        errors[SplitName.VAL] = np.asarray(reference_errors, float)
        ref_err = float(np.mean(errors[SplitName.VAL]))
    if test_errors:
        errors.update({s: np.asarray(e, float) for s, e in test_errors.items()})
    if errors and np.isfinite(ref_err):
        all_d = np.concatenate([distances[s] for s in errors])
        all_e = np.concatenate([errors[s] for s in errors])
        err_thr = error_threshold(all_d, all_e, ref_err, k)
    return DomainReport(thr, percentile, err_thr, k, ref_err, distances, errors)


# ------------------------------------------------------------------------------------------- finished runs


def load_run(run_dir: str | Path, dataset: Any = None) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """A finished run's dataset, split and per-conformer predictions (read through :class:`RunDir`)."""
    from mlipdiv.io.load import load_dataset

    run = RunDir(run_dir)
    missing = run.missing(run.split_path, run.predictions_path, run.config_path)
    if missing:
        raise MlipdivError(f"{run.path}: not a finished run (missing {', '.join(missing)})")
    split = run.read_split()
    if dataset is None:
        dataset = load_dataset(run.read_config().get("dataset"))
    return dataset, split, run.read_predictions()


def global_ids(dataset: Any, mol_ids: Any, conf_idx: Any) -> np.ndarray:
    """Global conformer ids (rows of dataset-wide descriptor arrays) of ``(molecule_id, conformer_index)`` pairs."""
    offsets = dataset.conformer_offsets()
    return np.array([offsets[dataset.index_of(str(m))] + int(c) for m, c in zip(mol_ids, conf_idx)], dtype=np.int64)


def domain_for_run(
    run_dir: str | Path, dataset: Any = None, *, percentile: float = 95.0, k: float = 2.0
) -> DomainReport:
    """Applicability domain of a finished run: distances in the Coulomb-spectrum descriptor, force MAE per conformer
    (meV/Å), threshold from its validation conformers."""
    from mlipdiv.descriptors import conformer_descriptors

    dataset, split, preds = load_run(run_dir, dataset)
    desc = conformer_descriptors(dataset)
    train_pairs = split[SplitName.TRAIN]
    train = desc[global_ids(dataset, [p[0] for p in train_pairs], [p[1] for p in train_pairs])]
    rows = {s: preds["split"] == s for s in EVAL_SPLITS}
    x = {s: desc[global_ids(dataset, preds["mol_id"][r], preds["conf_idx"][r])] for s, r in rows.items()}
    err = {s: mev(preds["forces_mae"][r]) for s, r in rows.items()}
    return applicability_domain(
        train, x[SplitName.VAL], {s: x[s] for s in TEST_SPLITS},
        reference_errors=err[SplitName.VAL], test_errors={s: err[s] for s in TEST_SPLITS},
        percentile=percentile, k=k,
    )
