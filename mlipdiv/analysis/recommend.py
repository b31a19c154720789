"""Budget advice: the molecules x conformers-per-molecule split of a QM budget that minimises predicted error.

For a budget of N conformers and a weight W in [0, 1] between structural generalization (error on
``test_molecules``) and conformational generalization (error on ``test_conformers``), the objective is::

    J(M, C) = W * E_test_molecules(M, C) + (1 - W) * E_test_conformers(M, C),   subject to M * C <= N

with both errors from the fitted error models (:mod:`mlipdiv.analysis.fit`), in the same unit, unnormalised: a
weight of 0.5 is the plain mean of the two errors. Because both fitted errors decrease in M and in C, the optimum
uses the whole budget, so candidates are every C with M = floor(N / C). Candidates further outside the fitted
(M, C) region than the fits' ``max_factor`` are not considered (unless extrapolation is allowed, and then they are
marked), and a budget with no admissible candidate is refused with the range the data support.

Intervals: the predicted errors at the optimum carry the fits' bootstrap intervals; the bootstrap draws of the two
splits resample the same seeds (same random stream, same runs), so pairing them gives a joint draw, and the spread of
the optimum over those draws is reported as ``n_molecules_range``.

At a budget the runs measured, the measured points are also compared directly, paired by seed
(:mod:`mlipdiv.analysis.paired`, weighted like the objective): ``resolved`` says whether the measured best point is
told apart from every other point of that budget (``False``: "not resolved at this budget"; ``None``: no runs at
this budget). :func:`interval_checks` asks whether the recommended-M interval contains the measured best M at every
measured budget, one of the acceptance checks of the error model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from mlipdiv.analysis.fit import SPLITS, ErrorFit, ExtrapolationError
from mlipdiv.analysis.paired import compare_points
from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.names import SplitName

__all__ = [
    "Prediction",
    "Recommendation",
    "allowed_budgets",
    "budget_grid",
    "candidates",
    "interval_checks",
    "measured_comparison",
    "optimum_path",
    "recommend",
]


class Prediction(TypedDict):
    """A fit's predicted error at the optimum with its interval, in ``unit``."""

    mean: float
    low: float
    high: float
    unit: str


@dataclass
class Recommendation:
    budget: int
    weight: float
    n_molecules: int
    conformers_per_molecule: int
    predicted: dict[str, Prediction]
    objective: float
    level: float
    n_molecules_range: tuple[int, int] | None
    extrapolated: bool
    table: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resolved: bool | None = None  # the measured points of this budget, paired by seed (None: none measured)
    measured: dict[str, Any] | None = None
    allowed: tuple[int, int] | None = None  # budgets (conformers) the guard admits

    @property
    def verdict(self) -> str:
        """"resolved", "not resolved" (at a measured budget whose best point is not told apart) or "fitted only"."""
        return {True: "resolved", False: "not resolved", None: "fitted only"}[self.resolved]

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_conformers": self.budget,
            "weight": self.weight,
            "n_molecules": self.n_molecules,
            "conformers_per_molecule": self.conformers_per_molecule,
            "n_conformers": self.n_molecules * self.conformers_per_molecule,
            "predicted": self.predicted,
            "objective": self.objective,
            "interval_level": self.level,
            "n_molecules_range": list(self.n_molecules_range) if self.n_molecules_range else None,
            "extrapolated": self.extrapolated,
            "resolved": self.resolved,
            "verdict": self.verdict,
            "measured": self.measured,
            "allowed_budgets": list(self.allowed) if self.allowed else None,
            "notes": self.notes,
        }


def candidates(budget: int, max_molecules: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Allocations using the budget: each C (every integer up to 256, then log-spaced) with M = floor(N / C)."""
    if budget < 1:
        raise MlipdivError(f"the budget must be at least one conformer, got {budget}")
    c = np.unique(np.concatenate([np.arange(1, min(budget, 256) + 1), np.round(np.geomspace(1, budget, 400))]))
    m = budget // c
    if max_molecules is not None:
        m = np.minimum(m, max_molecules)
    keep = m >= 1
    pairs = np.unique(np.column_stack([m[keep], c[keep]]), axis=0)
    return pairs[:, 0].astype(float), pairs[:, 1].astype(float)


def _check_fits(fits: dict[str, ErrorFit]) -> None:
    missing = [s for s in SPLITS if s not in fits]
    if missing:
        raise MlipdivError(f"a recommendation needs error models for both test splits; missing {', '.join(missing)}")
    units = {fits[s].unit for s in SPLITS}
    if len(units) > 1:
        raise MlipdivError(f"the two splits were fitted in different units ({', '.join(units)})")


def recommend(
    fits: dict[str, ErrorFit],
    budget: int,
    weight: float = 0.5,
    *,
    max_molecules: int | None = None,
    allow_extrapolation: bool = False,
    level: float = 0.9,
) -> Recommendation:
    """The admissible M x C <= ``budget`` minimising the weighted predicted error (see module docstring)."""
    _check_fits(fits)
    if not 0.0 <= weight <= 1.0:
        raise InvalidSetting(f"weight must lie in [0, 1] (1 = only unseen molecules matter), got {weight}", "weight")
    budget = int(budget)
    M, C = candidates(budget, max_molecules)
    f_mol, f_conf = fits[SplitName.TEST_MOLECULES], fits[SplitName.TEST_CONFORMERS]
    factor = np.array([max(f_mol.extrapolation(m, c), f_conf.extrapolation(m, c)) for m, c in zip(M, C)])
    limit = min(f_mol.max_factor, f_conf.max_factor) * (1 + 1e-9)
    ok = np.ones_like(factor, bool) if allow_extrapolation else factor <= limit
    if not ok.any():
        mc = f_mol.points.M * f_mol.points.C
        raise ExtrapolationError(
            f"no allocation of {budget} conformers lies within a factor {limit:.3g} of the (M, C) region the error "
            f"models were fitted on (their runs used {mc.min():g} to {mc.max():g} conformers, M "
            f"{f_mol.points.M.min():g}..{f_mol.points.M.max():g}, C {f_mol.points.C.min():g}..{f_mol.points.C.max():g})"
            f". Run a sweep at this budget, or allow extrapolation explicitly."
        )
    M, C, factor = M[ok], C[ok], factor[ok]
    e_mol = f_mol.evaluate(M, C)
    e_conf = f_conf.evaluate(M, C)
    obj = weight * e_mol + (1 - weight) * e_conf
    i = int(np.argmin(obj))
    m_best, c_best = M[i], C[i]

    predicted: dict[str, Prediction] = {}
    for split, fit in fits.items():
        if split not in SPLITS:
            continue
        p = fit.predict(m_best, c_best, allow_extrapolation=True, level=level)
        predicted[split] = {
            "mean": float(p["mean"][0]),
            "low": float(p["low"][0]),
            "high": float(p["high"][0]),
            "unit": fit.unit,
        }

    # spread of the optimum over paired bootstrap draws
    m_range = None
    s_mol, s_conf = f_mol.parameter_samples(), f_conf.parameter_samples()
    if s_mol is not None and s_conf is not None:
        n = min(len(s_mol), len(s_conf))
        best_m = []
        for t_mol, t_conf in zip(s_mol[:n], s_conf[:n]):
            o = weight * f_mol.evaluate(M, C, t_mol) + (1 - weight) * f_conf.evaluate(M, C, t_conf)
            best_m.append(M[int(np.argmin(o))])
        q = (1 - level) / 2
        m_range = (int(np.quantile(best_m, q)), int(np.quantile(best_m, 1 - q)))

    notes = []
    if factor[i] > 1 + 1e-9:
        notes.append(f"the optimum lies a factor {factor[i]:.2f} outside the fitted region (within the allowed "
                     f"{limit:.3g}): treat it as an extrapolation")
    edge = "most molecules" if i == int(np.argmax(M)) else ("most conformers" if i == int(np.argmax(C)) else "")
    if edge and len(M) > 1:
        notes.append(f"the optimum sits at the admissible edge ({edge}); the true optimum may lie beyond the runs")
    for fit in (f_mol, f_conf):
        notes += [f"{fit.split}: {w}" for w in fit.warnings]
    measured = measured_comparison(fits, budget, weight, level=0.95)
    if measured is not None:
        notes.insert(0, measured["statement"])
        measured.update(_grid_check(fits, measured, weight, level))
        grid = measured["grid_interval"]
        if grid:
            notes.insert(1, f"the fit's best of the measured points: M = {measured['fitted_grid_best_M']:,} (M "
                            f"{grid[0]:,}..{grid[1]:,} in {100 * level:.0f}% of refits to resampled seeds), which "
                            f"{'holds' if measured['contains'] else 'does not hold'} the measured best M = "
                            f"{measured['best_M']:,}")
        if measured["resolved"] and grid and not measured["contains"]:
            notes.append(f"the measured best M = {measured['best_M']} lies outside the range {grid[0]}..{grid[1]} "
                         "of the fit's best among the measured points: the error model misses this budget")
    table = [
        {"n_molecules": float(m), "conformers_per_molecule": float(c), SplitName.TEST_MOLECULES: float(a),
         SplitName.TEST_CONFORMERS: float(b), "objective": float(o), "extrapolation": float(f)}
        for m, c, a, b, o, f in zip(M, C, e_mol, e_conf, obj, factor)
    ]
    return Recommendation(
        budget=budget,
        weight=float(weight),
        n_molecules=int(m_best),
        conformers_per_molecule=int(c_best),
        predicted=predicted,
        objective=float(obj[i]),
        level=level,
        n_molecules_range=m_range,
        extrapolated=bool(factor[i] > 1 + 1e-9),
        table=table,
        notes=notes,
        resolved=None if measured is None else bool(measured["resolved"]),
        measured=measured,
        allowed=allowed_budgets(fits),
    )


def optimum_path(
    fits: dict[str, ErrorFit], budgets: Any, weight: float = 0.5, *, allow_extrapolation: bool = False
) -> list[Recommendation]:
    """The recommendation for each budget (refused budgets are skipped), for drawing the optimum on a map."""
    out = []
    for b in budgets:
        try:
            out.append(recommend(fits, int(b), weight, allow_extrapolation=allow_extrapolation))
        except ExtrapolationError:
            continue
    return out


def budget_grid(fits: dict[str, ErrorFit], n: int = 25) -> np.ndarray:
    """Budgets (conformers) spanning the fitted runs, a factor ``max_factor`` either side (for optimum paths)."""
    f = fits[SplitName.TEST_MOLECULES]
    mc = f.points.M * f.points.C
    lo, hi = mc.min() / f.max_factor, mc.max() * f.max_factor
    return np.unique(np.round(np.geomspace(max(lo, 1), hi, n))).astype(int)



def allowed_budgets(fits: dict[str, ErrorFit]) -> tuple[int, int]:
    """The budgets (conformers) whose allocations can lie within the guard: the fitted runs' M x C range widened
    by ``max_factor`` each way (the same span as :func:`budget_grid`)."""
    f = fits[SplitName.TEST_MOLECULES]
    mc = f.points.M * f.points.C
    return max(int(np.ceil(mc.min() / f.max_factor)), 1), int(np.floor(mc.max() * f.max_factor))


def _seed_objective(fits: dict[str, ErrorFit], budget: int, weight: float) -> tuple[list[tuple[int, int]], Any]:
    """The measured fixed-budget points of ``budget`` and their weighted objective per seed (points x seeds), on
    the seeds both splits have at every point."""
    per: dict[str, dict[tuple[int, int], dict[int, float]]] = {}
    for split in SPLITS:
        p = fits[split].points
        idx = p.budget_points().get(int(budget), np.array([], int))
        if p.seeds is None or len(idx) < 2:
            return [], None
        per[split] = {}
        for i in idx:
            key = (int(p.M[i]), int(p.C[i]))
            per[split].setdefault(key, {}).update(dict(zip((int(s) for s in p.seeds[i]), p.values[i])))
    keys = sorted(set(per[SPLITS[0]]) & set(per[SPLITS[1]]))
    if len(keys) < 2:
        return [], None
    seeds = sorted(set.intersection(*(set(per[s][k]) for s in SPLITS for k in keys)))
    w = {SplitName.TEST_MOLECULES: weight, SplitName.TEST_CONFORMERS: 1 - weight}
    table = np.array([[sum(w[s] * per[s][k][seed] for s in SPLITS) for seed in seeds] for k in keys])
    return keys, table


def measured_comparison(fits: dict[str, ErrorFit], budget: int, weight: float = 0.5, level: float = 0.95,
                        n_boot: int = 4000) -> dict[str, Any] | None:
    """At a measured budget: the measured points compared with the best, paired by seed (None when the runs have
    fewer than two points there)."""
    keys, table = _seed_objective(fits, budget, weight)
    if table is None:
        return None
    unit = fits[SplitName.TEST_MOLECULES].unit
    n = table.shape[1]
    head = f"measured at B = {budget:,} (W = {weight:g}, {n} seeds)"
    means = table.mean(axis=1)
    if n < 2:
        i = int(np.argmin(means))
        return {"budget": int(budget), "best_M": keys[i][0], "best_C": keys[i][1], "resolved": False,
                "plausible_M": [k[0] for k in keys], "seeds": n, "points": [],
                "statement": f"{head}: not resolved at this budget (fewer than 2 seeds common to all points)"}
    best, p_best, diffs = compare_points(table, n_boot, level)
    resolved_each = [(lo > 0 and tl > 0) or (hi < 0 and th < 0) for _, lo, hi, tl, th in diffs]
    others = [i for i in range(len(keys)) if i != best]
    resolved = all(resolved_each[i] for i in others)
    plausible = sorted([keys[best][0]] + [keys[i][0] for i in others if not resolved_each[i]])
    points = [{"M": k[0], "C": k[1], "mean": float(means[i]), "diff": diffs[i][0], "low": diffs[i][1],
               "high": diffs[i][2], "resolved": bool(resolved_each[i]) if i != best else None,
               "p_best": p_best[i]} for i, k in enumerate(keys)]
    bm, bc = keys[best]
    if resolved:
        gap = min(others, key=lambda i: diffs[i][0])
        text = (f"{head}: best M = {bm}, C = {bc} ({means[best]:.1f} {unit}), better than every other point "
                f"(closest M = {keys[gap][0]}: {diffs[gap][0]:+.1f} [{diffs[gap][1]:.1f}, {diffs[gap][2]:.1f}] "
                f"{unit}, paired {100 * level:.0f} % interval)")
    else:
        text = (f"{head}: not resolved at this budget: lowest mean at M = {bm}, C = {bc} ({means[best]:.1f} {unit}), "
                f"but M = {', '.join(str(m) for m in plausible if m != bm)} cannot be told apart from it "
                f"(paired {100 * level:.0f} % intervals include 0)")
    return {"budget": int(budget), "best_M": bm, "best_C": bc, "resolved": bool(resolved), "plausible_M": plausible,
            "seeds": n, "points": points, "statement": text}


def _grid_best_range(fits: dict[str, ErrorFit], keys: list[tuple[int, int]], weight: float, level: float
                     ) -> tuple[int, tuple[int, int] | None]:
    """The fitted best among the measured points ``keys`` and its range over the paired bootstrap draws."""
    M = np.array([k[0] for k in keys], float)
    C = np.array([k[1] for k in keys], float)
    f_mol, f_conf = fits[SplitName.TEST_MOLECULES], fits[SplitName.TEST_CONFORMERS]
    best = int(M[int(np.argmin(weight * f_mol.evaluate(M, C) + (1 - weight) * f_conf.evaluate(M, C)))])
    s_mol, s_conf = f_mol.parameter_samples(), f_conf.parameter_samples()
    if s_mol is None or s_conf is None:
        return best, None
    picks = [M[int(np.argmin(weight * f_mol.evaluate(M, C, a) + (1 - weight) * f_conf.evaluate(M, C, b)))]
             for a, b in zip(s_mol, s_conf)]
    q = (1 - level) / 2
    return best, (int(np.quantile(picks, q, method="nearest")), int(np.quantile(picks, 1 - q, method="nearest")))


def _grid_check(fits: dict[str, ErrorFit], measured: dict[str, Any], weight: float, level: float) -> dict[str, Any]:
    """The fit's answer on the measured grid of a budget (see :func:`interval_checks`): its best point among the
    measured ones, that pick's range over the bootstrap, and whether the range holds the measured best M."""
    keys = [(p["M"], p["C"]) for p in measured["points"]]
    if len(keys) < 2:
        return {"fitted_grid_best_M": None, "grid_interval": None, "contains": False, "consistent": False}
    grid_best, rng = _grid_best_range(fits, keys, weight, level)
    contains = bool(rng is not None and rng[0] <= measured["best_M"] <= rng[1])
    consistent = contains or (not measured["resolved"] and grid_best in measured["plausible_M"])
    return {"fitted_grid_best_M": grid_best, "grid_interval": list(rng) if rng else None, "contains": contains,
            "consistent": bool(consistent)}


def interval_checks(fits: dict[str, ErrorFit], weight: float = 0.5, level: float = 0.9) -> list[dict[str, Any]]:
    """At every measured budget: does the recommended-M interval contain the measured best M?

    The runs measure a coarse grid of M (a factor 4 apart), and a continuous optimum between two grid points
    contains neither, so the interval is taken on the measured grid: the fitted best among the measured points over
    the paired bootstrap draws (``grid_interval``; ``contains``). The continuous recommendation and its interval are
    reported beside it. ``consistent`` also accepts a measured best that is itself not resolved when the fitted
    grid best is one of the points the runs cannot tell apart from it.
    """
    out = []
    for budget in sorted(fits[SplitName.TEST_MOLECULES].points.budget_points()):
        measured = measured_comparison(fits, budget, weight, n_boot=1000)
        if measured is None:
            continue
        row: dict[str, Any] = {"budget": budget, "measured_best_M": measured["best_M"],
                               "measured_resolved": measured["resolved"], "plausible_M": measured["plausible_M"]}
        try:
            rec = recommend(fits, budget, weight, level=level)
            row.update(recommended_M=rec.n_molecules,
                       interval=list(rec.n_molecules_range) if rec.n_molecules_range else None)
        except MlipdivError as exc:
            row.update(recommended_M=None, interval=None, why=str(exc))
        out.append({**row, **_grid_check(fits, measured, weight, level)})
    return out
