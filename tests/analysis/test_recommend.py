"""Budget recommendations (mlipdiv.analysis.recommend) from fits of synthetic sweeps with a known optimum."""

from __future__ import annotations

import pytest

from mlipdiv.analysis.fit import ExtrapolationError
from mlipdiv.analysis.recommend import candidates, recommend

from synthetic_sweeps import CONFORMERS, MOLECULES  # tests/ is on sys.path (pytest.ini: pythonpath)


def test_recommendation_respects_budget_and_weight(fits) -> None:
    chosen = {}
    for w in (0.0, 0.5, 1.0):
        rec = recommend(fits, 512, w)
        assert rec.n_molecules * rec.conformers_per_molecule <= 512
        assert rec.n_molecules * (rec.conformers_per_molecule + 1) > 512  # uses the budget
        for split in ("test_molecules", "test_conformers"):
            p = rec.predicted[split]
            assert p["low"] <= p["mean"] <= p["high"] and p["unit"] == "meV/Å"
        chosen[w] = rec.n_molecules
    # favouring unseen molecules moves the optimum to more molecules
    assert chosen[0.0] < chosen[0.5] < chosen[1.0]
    # the true surfaces' optimum at W = 1 is "as many molecules as the data support"
    assert chosen[1.0] == 512


def test_recommendation_matches_true_optimum(fits) -> None:
    M, C = candidates(512)
    truth = 0.5 * MOLECULES(M, C) + 0.5 * CONFORMERS(M, C)
    rec = recommend(fits, 512, 0.5)
    best = truth.min()
    got = 0.5 * MOLECULES(rec.n_molecules, rec.conformers_per_molecule) + 0.5 * CONFORMERS(
        rec.n_molecules, rec.conformers_per_molecule)
    assert got <= best * 1.02


def test_recommendation_refuses_budget_far_outside(fits) -> None:
    with pytest.raises(ExtrapolationError, match="Run a sweep"):
        recommend(fits, 10_000_000, 0.5)
    rec = recommend(fits, 10_000_000, 0.5, allow_extrapolation=True)
    assert rec.extrapolated
    with pytest.raises(Exception, match="weight"):
        recommend(fits, 512, 1.5)
