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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from mlipdiv.analysis.fit import SPLITS, ErrorFit, ExtrapolationError
from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.names import SplitName

__all__ = ["Prediction", "Recommendation", "budget_grid", "candidates", "optimum_path", "recommend"]


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

