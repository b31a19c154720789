"""Science that used to live in the pages: the starting budget of the Trade-off page."""

from __future__ import annotations

from mlipdiv.names import Experiment
from mlipdiv.selection import SplitSpec, default_budget, experiment_grid, reserve


def test_default_budget_gives_a_slider_worth_moving(tiny_dataset) -> None:
    spec = SplitSpec(seed=0)
    budget = default_budget(tiny_dataset, spec)
    best = reserve(tiny_dataset, spec).max_budget()[0]
    assert 1 <= budget <= max(best, 1)
    grid = experiment_grid(tiny_dataset, Experiment.FIXED_BUDGET, 64, budget=budget, spec=spec)
    assert len(grid) >= 3 or budget == max(best, 1)
    # the first power of two from 256 down with a three-point grid: no larger one qualified
    for b in (256, 128, 64, 32, 16, 8, 4):
        if budget < b <= best:
            assert len(experiment_grid(tiny_dataset, Experiment.FIXED_BUDGET, 64, budget=b, spec=spec)) < 3

def test_default_budget_falls_back_to_the_largest_feasible(tiny_dataset) -> None:
    spec = SplitSpec(seed=0)
    assert default_budget(tiny_dataset, spec, largest=2) == max(reserve(tiny_dataset, spec).max_budget()[0], 1)
