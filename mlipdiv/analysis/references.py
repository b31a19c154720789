"""The element-linear energy baseline on unseen molecules, with and without the isolated-atom prior.

Why a table of its own: the study's runs start at M = 4, and each run records only the baseline of its own fit.
Whether the prior (:func:`mlipdiv.training.reference.fit_element_energies`) makes unseen-molecule energies mean
something at M = 2, and changes nothing once the training set determines every element, is a question about the fit
alone. It needs no training: each row is the same split the trainer would make (:func:`mlipdiv.selection.make_split`),
its training compositions fitted both ways, scored on that split's held-out molecules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mlipdiv.io.dataset import Dataset
from mlipdiv.training.reference import (
    composition,
    fit_element_energies,
    level_prior,
    predictable,
    training_elements,
)

__all__ = ["HELD_OUT_SETTINGS", "REFERENCE_COLUMNS", "element_baselines", "reference_summary"]

HELD_OUT_SETTINGS = ("test_molecules", "molecule_split", "conformer_holdout", "test_conformer_fraction",
                     "val_per_molecule", "max_eval_per_molecule")
"""The :class:`~mlipdiv.selection.SplitSpec` fields that fix a seed's held-out sets (a run's config holds them)."""

REFERENCE_COLUMNS = ("n_molecules", "seed", "n_eval", "n_excluded", "mae_prior", "mae_plain")
"""One row per (M, seed): conformers scored and left out (elements the training set lacks), and the per-atom
energy MAE (eV/atom) of the element-linear fit with the isolated-atom prior (nan where the dataset's level of theory
has none: the trainer then fits without it too) and without it (plain least squares)."""


def element_baselines(dataset: Dataset, molecules: Sequence[int] = (2, 4, 8, 32, 128, 512, 1024),
                      seeds: Iterable[int] = range(8), element_prior: str = "auto", **split: Any) -> Any:
    """The rows of :data:`REFERENCE_COLUMNS`, one training set of M molecules (one conformer each) per seed.

    Every M of a seed is scored on the same held-out conformers: the anchors are the seed's ``min(molecules)``
    molecules, as in a study grid starting there. ``split`` sets the held-out sets as
    :class:`~mlipdiv.selection.SplitSpec` fields and ``element_prior`` the prior as training chooses it (the
    study passes its runs' settings); an M beyond the seed's trainable molecules is skipped.
    """
    import pandas as pd

    from mlipdiv.selection import SplitSpec, make_split
    from mlipdiv.selection.splits import reserve

    options = {**split, "anchor_molecules": min(molecules), "conformers_per_molecule": 1}
    rows = []
    for seed in seeds:
        trainable = len(reserve(dataset, SplitSpec(molecules=1, seed=seed, **options)).trainable)
        for m in (m for m in molecules if m <= trainable):
            s = make_split(dataset, SplitSpec(molecules=m, seed=seed, **options), diversity=False)
            elements = training_elements(dataset, s.train)
            train_z, train_e = _arrays(dataset, s.train)
            counts = composition(train_z, elements)
            prior = level_prior(element_prior, dataset.attrs, elements)
            fits = {"plain": fit_element_energies(counts, train_e)}
            if prior is not None:
                fits["prior"] = fit_element_energies(counts, train_e, prior)
            test = predictable(dataset, s.test_molecules, elements)
            test_z, test_e = _arrays(dataset, test)
            n_atoms = np.array([len(z) for z in test_z], dtype=float)
            tc = composition(test_z, elements)
            mae = {k: float(np.mean(np.abs(tc @ fits[k] - test_e) / n_atoms)) if k in fits and len(test) else math.nan
                   for k in ("prior", "plain")}
            excluded = len(s.test_molecules) - len(test) + int(s.counts.get("test_molecules_excluded", 0))
            rows.append({"n_molecules": m, "seed": seed, "n_eval": len(test), "n_excluded": excluded,
                         "mae_prior": mae["prior"], "mae_plain": mae["plain"]})
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))


def _arrays(dataset: Dataset, pairs: Sequence[tuple[str, int]]) -> tuple[list[np.ndarray], np.ndarray]:
    return ([dataset[m].atomic_numbers for m, _ in pairs],
            np.array([dataset[m].energy[c] for m, c in pairs], dtype=np.float64))


def reference_summary(table: Any) -> list[dict[str, Any]]:
    """Per M: mean, smallest and largest (over seeds) per-atom MAE of both fits, in eV/atom, their ratio
    (prior / plain), and the conformers scored per seed (one number when every seed scores as many)."""
    out = []
    for m, g in table.groupby("n_molecules"):
        prior, plain = g["mae_prior"].astype(float), g["mae_plain"].astype(float)
        out.append({"n_molecules": int(m), "seeds": int(g["seed"].nunique()),
                    "prior": float(prior.mean()), "prior_max": float(prior.max()),
                    "plain": float(plain.mean()), "plain_max": float(plain.max()),
                    "ratio": float(prior.mean() / plain.mean()) if plain.mean() else math.nan,
                    "n_eval": sorted({int(n) for n in g["n_eval"]}),
                    "n_excluded": sorted({int(n) for n in g["n_excluded"]})})
    return out
