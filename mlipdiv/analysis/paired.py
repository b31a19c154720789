"""Paired, seed-resampled comparisons of the (M, C) points of one budget: what the runs can and cannot resolve.

Why paired: for one seed every point of an experiment is scored on the same held-out conformers, and the seed also
fixes the split, so a seed whose test set is hard raises every point alike. Differences between points of the same
seed cancel that shared part; comparing means over seeds as if they were independent would not.

How: the values form a table ``points x seeds`` (the seeds every point of the budget has). One bootstrap draw
resamples the seeds with replacement and applies the same resample to every point (seeds resampled jointly), so a
draw's means of all points, its best point and every difference between points come from the same seeds. For the
difference between a point and the best point the interval is the *expanded percentile* bootstrap interval
(Hesterberg 2015, "What teachers should know about the bootstrap": the percentile interval is too narrow for few
samples, so its tail probability is taken at ``Phi(sqrt(n/(n-1)) t_{n-1})`` instead of the nominal one). With 3
seeds no bootstrap can reach beyond the range of the 3 paired differences, so a difference counts as *resolved* only
when that interval and the paired t interval (n - 1 degrees of freedom) both exclude 0; otherwise the point is
"plausibly best" and the best point is **not resolved at this budget**. Each interval is for one pair at the stated
level, not corrected for the number of pairs.

Claims built on it (:func:`budget_claims`, :func:`shift_claims`): the best point of a budget is resolved when every
other point is resolved worse; an interior optimum is claimed when the best point lies strictly inside the
budget's M range and is resolved better than both ends; a shift of the balance between two budgets is claimed when
their sets of plausibly best C (conformers per molecule) do not overlap and neither set sits on the edge of its grid
on the side facing the other (there the optimum may lie beyond the runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlipdiv.names import Experiment, SplitName
from mlipdiv.units import EV_TO_MEV

__all__ = [
    "MEAN",
    "BudgetComparison",
    "Difference",
    "budget_claims",
    "compare_points",
    "interval",
    "seed_table",
    "shift_claims",
]

MEAN = "mean"  # the quantity "mean of the two test splits" (weight 0.5), beside the two splits themselves
_SPLITS = (SplitName.TEST_MOLECULES, SplitName.TEST_CONFORMERS)


def interval(per_seed: np.ndarray, draws: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """``(low, high, t_low, t_high)``: the expanded percentile bootstrap interval of the mean of ``per_seed`` from
    its bootstrap ``draws``, and the paired t interval, both at ``level``."""
    from scipy.stats import norm, t

    n = len(per_seed)
    if n < 2:
        return (math.nan,) * 4
    tq = float(t.ppf(0.5 + level / 2, n - 1))
    tail = float(norm.sf(math.sqrt(n / (n - 1)) * tq))
    low, high = (float(v) for v in np.quantile(draws, [tail, 1 - tail]))
    half = tq * float(np.std(per_seed, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(per_seed))
    return low, high, mean - half, mean + half


@dataclass
class Difference:
    """One point minus the best point of its budget (positive: the point is worse), in the quantity's unit."""

    n_molecules: int
    conformers_per_molecule: int
    mean: float
    low: float
    high: float
    t_low: float
    t_high: float

    @property
    def resolved(self) -> bool:
        """Both intervals exclude 0 on the same side."""
        return bool((self.low > 0 and self.t_low > 0) or (self.high < 0 and self.t_high < 0))

    def as_dict(self) -> dict[str, Any]:
        return {"M": self.n_molecules, "C": self.conformers_per_molecule, "diff": self.mean, "low": self.low,
                "high": self.high, "t_low": self.t_low, "t_high": self.t_high, "resolved": self.resolved}


@dataclass
class BudgetComparison:
    """The points of one budget (one model, strategy and quantity) compared with the best, paired by seed."""

    model: str
    strategy: str
    budget: int
    quantity: str  # a test split or MEAN
    unit: str
    seeds: list[int]
    M: list[int]
    C: list[int]
    means: list[float]
    stds: list[float]
    best: int  # index of the lowest mean
    p_best: list[float]  # share of bootstrap draws in which each point is the best
    differences: list[Difference]  # every point but the best, in point order
    level: float
    notes: list[str] = field(default_factory=list)

    @property
    def best_M(self) -> int:
        return self.M[self.best]

    @property
    def best_C(self) -> int:
        return self.C[self.best]

    @property
    def plausible(self) -> list[int]:
        """Indices of the points not resolved worse than the best (the best included)."""
        out = [self.best]
        out += [self._index(d) for d in self.differences if not d.resolved]
        return sorted(out)

    def _index(self, d: Difference) -> int:
        return next(i for i, (m, c) in enumerate(zip(self.M, self.C))
                    if m == d.n_molecules and c == d.conformers_per_molecule)

    @property
    def resolved(self) -> bool:
        """The best point is resolved better than every other point."""
        return len(self.seeds) >= 2 and all(d.resolved for d in self.differences)

    @property
    def interior(self) -> bool | None:
        """True: an interior optimum resolved against both ends; False: the best is at an end or an end is not
        resolved worse; None: fewer than 3 points."""
        if len(self.M) < 3:
            return None
        lo, hi = int(np.argmin(self.M)), int(np.argmax(self.M))
        if self.best in (lo, hi):
            return False
        ends = [d for d in self.differences if self._index(d) in (lo, hi)]
        return all(d.resolved and d.mean > 0 for d in ends)

    def statement(self) -> str:
        """One sentence that says what the numbers resolve, and no more."""
        pct = f"{100 * self.level:.0f} %"
        what = self.quantity.replace("_", " ") if self.quantity != MEAN else "mean of both test splits"
        sel = "" if self.strategy == "random" else f", {self.strategy} selection"
        head = f"{self.model}{sel}, B = {self.budget:,}, {what} ({len(self.seeds)} seeds)"
        if len(self.seeds) < 2:
            return f"{head}: not resolved at this budget (fewer than 2 seeds common to all points)"
        best = f"M = {self.best_M}, C = {self.best_C} ({self.means[self.best]:.1f} {self.unit})"
        if self.resolved:
            worst_gap = min(self.differences, key=lambda d: d.mean)
            where = "an interior optimum" if self.interior else "the best point, at the edge of the runs"
            return (f"{head}: {best} is {where}; every other point is worse, by at least {worst_gap.mean:.1f} "
                    f"[{worst_gap.low:.1f}, {worst_gap.high:.1f}] {self.unit} (paired {pct} interval, "
                    f"M = {worst_gap.n_molecules})")
        tied = [f"M = {self.M[i]}" for i in self.plausible if i != self.best]
        close = min((d for d in self.differences if not d.resolved), key=lambda d: abs(d.mean))
        extra = ""
        if self.interior:
            extra = "; the optimum is interior (both ends are resolved worse)"
        return (f"{head}: not resolved at this budget: lowest mean at {best}, but {', '.join(tied)} cannot be "
                f"told apart from it (e.g. M = {close.n_molecules}: {close.mean:+.1f} [{close.low:.1f}, "
                f"{close.high:.1f}] {self.unit}, paired {pct} bootstrap interval; t interval [{close.t_low:.1f}, "
                f"{close.t_high:.1f}]){extra}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "strategy": self.strategy, "budget": self.budget, "quantity": self.quantity,
            "unit": self.unit, "seeds": self.seeds, "level": self.level,
            "points": [{"M": m, "C": c, "mean": mu, "std": sd, "p_best": p}
                       for m, c, mu, sd, p in zip(self.M, self.C, self.means, self.stds, self.p_best)],
            "best": {"M": self.best_M, "C": self.best_C}, "resolved": self.resolved, "interior": self.interior,
            "plausible_M": [self.M[i] for i in self.plausible],
            "plausible_C": [self.C[i] for i in self.plausible],
            "differences": [d.as_dict() for d in self.differences], "statement": self.statement(),
            "notes": self.notes,
        }


def compare_points(values: np.ndarray, n_boot: int = 4000, level: float = 0.95, seed: int = 0
                   ) -> tuple[int, list[float], list[tuple[float, float, float, float, float]]]:
    """Compare the rows of ``values`` (points x seeds, paired by column): the best row, each row's share of draws
    in which it is best, and for every row ``(mean diff, low, high, t_low, t_high)`` against the best."""
    values = np.asarray(values, float)
    n_points, n = values.shape
    means = values.mean(axis=1)
    best = int(np.argmin(means))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # one resample of the seeds per draw, shared by all points
    draws = values[:, idx].mean(axis=2).T  # n_boot x n_points
    p_best = np.bincount(np.argmin(draws, axis=1), minlength=n_points) / n_boot
    out = []
    for i in range(n_points):
        per_seed = values[i] - values[best]
        low, high, t_low, t_high = interval(per_seed, draws[:, i] - draws[:, best], level)
        out.append((float(per_seed.mean()), low, high, t_low, t_high))
    return best, [float(p) for p in p_best], out


def seed_table(rows: Any, quantity: str, metric: str = "forces_mae") -> Any:
    """A ``(M, C) x seed`` table of one budget's rows in meV units; ``quantity`` MEAN averages the two test splits
    of the same run (both must be there)."""
    import pandas as pd

    d = rows.assign(value=rows[metric].astype(float) * EV_TO_MEV)
    if quantity == MEAN:
        d = d[d["split"].isin(_SPLITS)]
        piv = d.pivot_table(index=["n_molecules", "conformers_per_molecule", "seed"], columns="split",
                            values="value", aggfunc="mean")
        if not all(s in piv.columns for s in _SPLITS):
            return pd.DataFrame()
        d = piv[list(_SPLITS)].dropna().mean(axis=1).rename("value").reset_index()
    else:
        d = d[d["split"] == quantity]
    return d.pivot_table(index=["n_molecules", "conformers_per_molecule"], columns="seed", values="value",
                         aggfunc="mean")


def budget_claims(df: Any, *, metric: str = "forces_mae", quantities: tuple[str, ...] = (*_SPLITS, MEAN),
                  n_boot: int = 4000, level: float = 0.95) -> list[BudgetComparison]:
    """Paired comparisons for every (model, strategy, budget, quantity) of the fixed-budget rows of ``df`` (give
    protocol runs only: a convergence run would count as another seed)."""
    fb = df[df["experiment"] == Experiment.FIXED_BUDGET]
    fb = fb.assign(budget=fb["n_molecules"] * fb["conformers_per_molecule"])
    unit = {"forces_mae": "meV/Å", "energy_mae_per_atom": "meV/atom", "energy_mae": "meV",
            "energy_rel_mae": "meV"}.get(metric, "meV")
    out = []
    for (model, strategy, budget), g in fb.groupby(["model", "strategy", "budget"]):
        for q in quantities:
            table = seed_table(g, q, metric)
            if table.empty or len(table) < 2:
                continue
            notes = []
            complete = table.dropna(axis=1)  # the seeds every point has
            if complete.shape[1] < table.shape[1]:
                notes.append(f"{table.shape[1] - complete.shape[1]} seed(s) missing at some point: left out of "
                             "the pairing")
            values = complete.to_numpy(float)
            seeds = [int(s) for s in complete.columns]
            M = [int(m) for m, _ in complete.index]
            C = [int(c) for _, c in complete.index]
            stds = [float(v.std(ddof=1)) if len(v) > 1 else math.nan for v in values]
            if len(seeds) >= 2:
                best, p_best, diffs = compare_points(values, n_boot, level)
            else:
                best, p_best = int(np.argmin(values.mean(axis=1))) if len(seeds) else 0, [math.nan] * len(M)
                diffs = [(math.nan,) * 5] * len(M)
            out.append(BudgetComparison(
                model=str(model), strategy=str(strategy), budget=int(budget), quantity=q, unit=unit, seeds=seeds,
                M=M, C=C, means=[float(v) for v in values.mean(axis=1)] if len(seeds) else [math.nan] * len(M),
                stds=stds, best=best, p_best=p_best,
                differences=[Difference(M[i], C[i], *diffs[i]) for i in range(len(M)) if i != best],
                level=level, notes=notes,
            ))
    return out


def shift_claims(comparisons: list[BudgetComparison]) -> list[dict[str, Any]]:
    """Between consecutive budgets of one model, strategy and quantity: does the balance (C at the optimum)
    move? Claimed only when the two budgets' sets of plausibly best C do not overlap, and neither set is open
    towards the other: a set that holds its grid's edge (the most conformers tried, or the fewest above C = 1) only
    says the optimum is there *or beyond*, so two edges that moved with the grid are not a shift of the balance."""
    out = []
    keyed: dict[tuple[str, str, str], list[BudgetComparison]] = {}
    for c in comparisons:
        keyed.setdefault((c.model, c.strategy, c.quantity), []).append(c)
    for (model, strategy, quantity), cs in sorted(keyed.items()):
        cs = sorted(cs, key=lambda c: c.budget)
        for a, b in zip(cs, cs[1:]):
            ca = sorted({a.C[i] for i in a.plausible})
            cb = sorted({b.C[i] for i in b.plausible})
            (a_low, a_high), (b_low, b_high) = _open_ends(a, ca), _open_ends(b, cb)
            if max(ca) < min(cb) and not (a_high or b_low):
                verdict, text = "more conformers", "the balance moves to more conformers per molecule"
            elif max(cb) < min(ca) and not (a_low or b_high):
                verdict, text = "more molecules", "the balance moves to fewer conformers per molecule (more molecules)"
            elif max(ca) < min(cb) or max(cb) < min(ca):  # apart, but an optimum may lie beyond its edge
                up = max(ca) < min(cb)
                edges = [x for x, is_open in ((a, a_high if up else a_low), (b, b_low if up else b_high)) if is_open]
                verdict = "not resolved"
                text = ("not resolved: the best C of " + " and ".join(f"B = {x.budget:,}" for x in edges)
                        + " is at the edge of the runs, so the optimum may lie beyond them")
            else:
                verdict, text = "not resolved", "not resolved: the plausibly best C overlap"
            out.append({
                "model": model, "strategy": strategy, "quantity": quantity, "budgets": [a.budget, b.budget],
                "best_C": [a.best_C, b.best_C], "best_M": [a.best_M, b.best_M],
                "plausible_C": [ca, cb], "shift": verdict,
                "statement": (f"{model}, {quantity.replace('_', ' ')}: B = {a.budget:,} → {b.budget:,}: best C "
                              f"{a.best_C} → {b.best_C} (plausibly best C {_set(ca)} → {_set(cb)}): {text}"),
            })
    return out


def _open_ends(c: BudgetComparison, plausible_C: list[int]) -> tuple[bool, bool]:
    """Whether the budget's optimum may lie below (fewer conformers, more molecules) or above (more conformers)
    every C its runs tried: the plausibly best C hold the grid's edge and the edge is not C = 1 or M = 1."""
    grid = sorted(set(c.C))
    return plausible_C[0] == grid[0] and grid[0] > 1, plausible_C[-1] == grid[-1] and grid[-1] < c.budget


def _set(values: list[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"
