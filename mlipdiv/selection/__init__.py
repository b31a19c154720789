"""Training-set selection: leak-free seeded splits, the trade-off experiments' (M, C) grids, selection strategies.

``make_split(dataset, SplitSpec(budget=512, molecules=64, seed=0))`` gives a :class:`Split` with exactly 64 x 8
training conformers and held-out sets that do not depend on M or C; ``experiment_grid`` lists the (M, C) points of
the fixed-budget and fixed-molecules experiments. See :mod:`mlipdiv.selection.splits` for the exact semantics.
"""

from mlipdiv.selection.experiments import EXPERIMENTS, default_budget, experiment_grid
from mlipdiv.selection.splits import (
    Reservation,
    Split,
    SplitSpec,
    anchors,
    load_split,
    make_split,
    reserve,
    resolve_point,
)
from mlipdiv.selection.strategies import STRATEGIES, Strategy, get_strategy, register

__all__ = [
    "EXPERIMENTS",
    "STRATEGIES",
    "Reservation",
    "Split",
    "SplitSpec",
    "Strategy",
    "anchors",
    "default_budget",
    "experiment_grid",
    "get_strategy",
    "load_split",
    "make_split",
    "register",
    "reserve",
    "resolve_point",
]
