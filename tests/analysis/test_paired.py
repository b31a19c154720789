"""Paired, seed-resampled comparisons within a budget (mlipdiv.analysis.paired) on synthetic studies whose truth is
known: flat (nothing to resolve) and with a clear interior optimum."""

from __future__ import annotations

import numpy as np

from mlipdiv.analysis.fit import protocol_rows
from mlipdiv.analysis.paired import MEAN, budget_claims, compare_points, interval, shift_claims

from synthetic_sweeps import BUDGET_SEEDS, flat, true_best_m, v2_table  # tests/ is on sys.path


def _mean_claims(df):
    return {c.budget: c for c in budget_claims(protocol_rows(df), n_boot=2000) if c.quantity == MEAN}


def test_flat_truth_is_not_resolved_at_any_budget() -> None:
    f = flat()
    claims = _mean_claims(v2_table(f, f, seed=3))
    assert sorted(claims) == [128, 512, 2048, 8192]
    for budget, c in claims.items():
        assert len(c.seeds) == BUDGET_SEEDS[budget]  # >= 8 at B <= 512, 3 above; convergence runs left out
        assert not c.resolved and len(c.plausible) >= 2
        assert "not resolved at this budget" in c.statement()
        assert c.interior is False or not c.resolved


def test_clear_optimum_is_resolved_and_found() -> None:
    claims = _mean_claims(v2_table(seed=0))
    for budget in (128, 512):
        c = claims[budget]
        assert c.resolved and c.interior, c.statement()
        assert c.best_M == true_best_m(budget)
        assert all(d.mean > 0 and d.low > 0 for d in c.differences)  # every other point is worse
        assert "interior optimum" in c.statement()


def test_pairing_removes_the_shared_seed_effect() -> None:
    """A seed effect ten times the run noise hides a 3 meV/Å difference from unpaired means but not from pairs."""
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 30, size=8)
    values = np.array([100 + shared + rng.normal(0, 1, 8), 103 + shared + rng.normal(0, 1, 8)])
    best, p_best, diffs = compare_points(values, n_boot=2000)
    assert best == 0 and p_best[0] > 0.95
    mean, low, high, t_low, t_high = diffs[1]
    assert 0 < low < mean < high and t_low > 0
    unpaired_se = np.sqrt(values[0].var(ddof=1) / 8 + values[1].var(ddof=1) / 8)
    assert unpaired_se > mean  # unpaired, the difference would be within one standard error


def test_three_seeds_of_one_sign_are_not_enough_when_the_spread_is_wide() -> None:
    """With 3 seeds a bootstrap never leaves the range of the data: the paired t interval must agree too."""
    per_seed = np.array([1.0, 20.0, 40.0])
    rng = np.random.default_rng(0)
    draws = per_seed[rng.integers(0, 3, size=(4000, 3))].mean(axis=1)
    low, high, t_low, t_high = interval(per_seed, draws)
    assert low > 0 and t_low < 0  # bootstrap alone would resolve it; t does not
    values = np.array([[100.0, 100.0, 100.0], 100.0 + per_seed])
    _, _, diffs = compare_points(values, n_boot=4000)
    from mlipdiv.analysis.paired import Difference

    assert not Difference(1, 1, *diffs[1]).resolved


def test_shift_of_the_balance_is_claimed_only_when_resolved() -> None:
    claims = budget_claims(protocol_rows(v2_table(seed=0)), n_boot=2000)
    shifts = {tuple(s["budgets"]): s for s in shift_claims(claims) if s["quantity"] == MEAN}
    # the true best C is 4 at B = 128 and 512 and 16 at 2048: one resolved shift, one that is no shift at all
    assert shifts[(512, 2048)]["shift"] == "more conformers"
    assert shifts[(128, 512)]["shift"] == "not resolved"
    f = flat()
    flat_shifts = shift_claims(budget_claims(protocol_rows(v2_table(f, f, seed=3)), n_boot=2000))
    assert all(s["shift"] == "not resolved" for s in flat_shifts if s["quantity"] == MEAN)
