"""The two experiments of the study as grids of (M, C) points, every point feasible on the given data.

* ``fixed-budget``: M x C = B for every point. Candidates are the divisors M of B with M <= trainable molecules and
  C = B / M <= the conformers available to M molecules; at most ``points`` of them are kept, roughly evenly spaced
  in log M and always including both ends. Ordered from most molecules to most conformers per molecule.
* ``fixed-molecules``: M fixed, C = 1, 2, 4, ... up to the most conformers M molecules allow; when that is more
  than ``points`` values, an evenly spaced subset (in log C) that keeps 1 and the largest.

All points of a grid share the held-out sets (see :mod:`mlipdiv.selection.splits`), so they are scored on the same
test data.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from mlipdiv.errors import InfeasibleRequest, InvalidSetting, UnknownName
from mlipdiv.io.dataset import Dataset
from mlipdiv.names import EXPERIMENTS, Experiment
from mlipdiv.selection.splits import SplitSpec, reserve

__all__ = ["EXPERIMENTS", "Experiment", "default_budget", "experiment_grid", "spread"]


def experiment_grid(
    dataset: Dataset,
    experiment: str,
    points: int = 5,
    budget: int | None = None,
    molecules: int | None = None,
    spec: SplitSpec | None = None,
) -> list[tuple[int, int]]:
    """(M, C) points of an experiment.

    Args:
        dataset: the data the points must be feasible on.
        experiment: ``"fixed-budget"`` (needs ``budget``) or ``"fixed-molecules"`` (needs ``molecules``).
        points: at most this many points (>= 1).
        budget: B for fixed-budget.
        molecules: M for fixed-molecules.
        spec: hold-out settings (seed, test fractions, ...); M, C and budget in it are ignored.

    Raises:
        InfeasibleRequest: no feasible point, with the largest feasible values.
    """
    if not (isinstance(points, numbers.Integral) and points >= 1):
        raise InvalidSetting.out_of_range("points", points, "a whole number of at least 1")
    spec = spec if spec is not None else SplitSpec()
    res = reserve(dataset, spec)
    n_train = len(res.trainable)
    best_b, best_m, best_c = res.max_budget()
    if experiment == Experiment.FIXED_BUDGET:
        if budget is None or budget < 1:
            raise InvalidSetting("the fixed-budget experiment needs a budget of at least 1", "budget")
        feasible = [
            (m, budget // m)
            for m in range(min(budget, n_train), 0, -1)
            if budget % m == 0 and budget // m <= res.max_conformers(m)
        ]
        if not feasible:
            raise InfeasibleRequest(
                f"no way to train on {budget} conformers: at most {n_train} molecules can be trained on and the "
                f"largest budget is {best_b} ({best_m} molecules x {best_c})"
            )
        return spread(feasible, points, key=lambda p: p[0])
    if experiment == Experiment.FIXED_MOLECULES:
        if molecules is None or molecules < 1:
            raise InvalidSetting("the fixed-molecules experiment needs a number of molecules", "molecules")
        if molecules > n_train:
            raise InfeasibleRequest(
                f"{molecules} molecules requested but at most {n_train} can be trained on "
                f"({len(res.test_molecules)} of {len(dataset)} are held out as test molecules)"
            )
        max_c = res.max_conformers(molecules)
        if max_c < 1:
            raise InfeasibleRequest(f"no conformers left to train {molecules} molecules on")
        powers = [(molecules, 2**k) for k in range(int(np.log2(max_c)) + 1)]
        return spread(powers, points, key=lambda p: p[1])
    raise UnknownName("experiment", experiment, EXPERIMENTS, field="experiment")


def spread(
    candidates: list[tuple[int, int]], k: int, key: Callable[[tuple[int, int]], float]
) -> list[tuple[int, int]]:
    """At most ``k`` of ``candidates`` (kept in their order), roughly evenly spaced in log(key), ends included."""
    if len(candidates) <= k:
        return list(candidates)
    logs = np.log([key(p) for p in candidates])
    chosen: set[int] = set()
    for target in np.linspace(logs[0], logs[-1], k):
        free = [i for i in range(len(candidates)) if i not in chosen]
        chosen.add(min(free, key=lambda i: (abs(logs[i] - target), i)))
    return [candidates[i] for i in sorted(chosen)]


def default_budget(dataset: Dataset, spec: SplitSpec | None = None, largest: int = 256) -> int:
    """The first budget in ``largest``, ``largest/2``, ... (down to 4) whose fixed-budget grid has at least three
    points, else the largest budget the data allows (at least 1): a starting budget whose trade-off slider is worth
    moving, and small enough to train in minutes."""
    spec = spec if spec is not None else SplitSpec()
    best = reserve(dataset, spec).max_budget()[0]
    budget = largest
    while budget >= 4:
        if budget <= best:
            try:
                if len(experiment_grid(dataset, Experiment.FIXED_BUDGET, 64, budget=budget, spec=spec)) >= 3:
                    return budget
            except InfeasibleRequest:
                pass
        budget //= 2
    return max(best, 1)
