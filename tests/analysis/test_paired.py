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


def _only_best(budget: int, conformers: tuple[int, ...], best_c: int):
    """A budget whose point at ``best_c`` is resolved better than every other point."""
    from mlipdiv.analysis.paired import BudgetComparison, Difference

    ms = [budget // c for c in conformers]
    best = conformers.index(best_c)
    worse = [Difference(m, c, 20.0, 10.0, 30.0, 9.0, 31.0) for i, (m, c) in enumerate(zip(ms, conformers))
             if i != best]
    return BudgetComparison("schnet", "random", budget, MEAN, "meV/Å", list(range(8)), ms, list(conformers),
                            [100.0] * len(ms), [5.0] * len(ms), best, [0.0] * len(ms), worse, 0.95)


def test_a_best_point_at_the_edge_of_its_runs_is_no_shift_of_the_balance() -> None:
    """The best C of a budget at the edge of its grid says only "here or beyond": an edge that moved with the grid
    (C = 32 at B = 128 -> C = 64 at B = 512) or the dataset's molecule cap (C = 2 at M = 1,024) is not a shift;
    an interior best that moves is."""
    def verdict(a, b):
        (claim,) = shift_claims([a, b])
        return claim["shift"], claim["statement"]

    shift, text = verdict(_only_best(128, (1, 4, 16, 32), 32), _only_best(512, (1, 4, 16, 64), 64))
    assert shift == "not resolved" and "the best C of B = 128 is at the edge of the runs" in text
    assert verdict(_only_best(128, (1, 4, 16, 64), 16), _only_best(512, (1, 4, 16, 64), 64))[0] == "more conformers"
    shift, text = verdict(_only_best(512, (1, 4, 16, 64), 1), _only_best(2048, (2, 4, 16, 64), 2))
    assert shift == "not resolved" and "B = 2,048 is at the edge" in text  # C = 2 is all 1,024 molecules allow
    # beyond the cap lie only more molecules: that edge cannot undo a move towards them
    assert verdict(_only_best(512, (1, 4, 16, 64), 4), _only_best(2048, (2, 4, 16, 64), 2))[0] == "more molecules"
    assert verdict(_only_best(512, (1, 4, 16, 64), 16), _only_best(2048, (1, 4, 16, 64), 1))[0] == "more molecules"
