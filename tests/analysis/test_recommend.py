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


def test_a_measured_best_the_fit_cannot_reach_is_named() -> None:
    """One point of B = 512 made 60 meV/Å better in every seed: the runs resolve it as best, a smooth error model
    cannot follow, and the recommendation says that it misses this budget (on the measured grid)."""
    from mlipdiv.analysis.fit import fit_results

    from synthetic_sweeps import v2_table

    df = v2_table()
    budget = df["n_molecules"] * df["conformers_per_molecule"]
    fixed = (budget == 512) & (df["experiment"] == "fixed-budget")
    df.loc[fixed & (df["n_molecules"] == 512), "forces_mae"] -= 0.060
    rec = recommend(fit_results(df, model="schnet", strategy="random", n_boot=50), 512, 0.5)
    assert rec.measured["resolved"] and rec.measured["best_M"] == 512
    lo, hi = rec.measured["grid_interval"]
    assert hi < 512 and not rec.measured["contains"]
    assert any("measured best M = 512 lies outside" in n and "misses this budget" in n for n in rec.notes)
    untouched = recommend(fit_results(v2_table(), model="schnet", strategy="random", n_boot=50), 512, 0.5)
    assert untouched.measured["contains"] and not any("misses this budget" in n for n in untouched.notes)
