"""Error-model fits of sweep results and the extrapolation guard (mlipdiv.analysis.fit) -- on synthetic data
whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlipdiv.analysis.fit import ExtrapolationError, Points, aggregate, fit_error_model, fit_results, hull_distance

from synthetic_sweeps import (  # tests/ is on sys.path (pytest.ini: pythonpath)
    CONFORMERS,
    GRID,
    MOLECULES,
    results_table,
)


def test_fit_recovers_known_parameters(fits) -> None:
    f = fits["test_molecules"]
    assert f.form == "average" and f.unit == "meV/Å"
    assert f.params["alpha"] == pytest.approx(0.6, abs=0.15)
    assert f.r2 > 0.97 and f.loo_rmse < 4.0
    g = fits["test_conformers"]
    assert g.params["beta"] == pytest.approx(0.6, abs=0.15)
    # the fitted surfaces reproduce the true ones inside the data, within a few percent
    for m, c in [(100, 5), (30, 10), (400, 1.2), (64, 8)]:
        assert f.predict(m, c)["mean"][0] == pytest.approx(MOLECULES(m, c), rel=0.04)
        assert g.predict(m, c)["mean"][0] == pytest.approx(CONFORMERS(m, c), rel=0.04)
    # each split is sensitive to the resource that drives it
    assert f.params["a"] > f.params["b"] and g.params["b"] > g.params["a"]
    # intervals bracket the best fit and carry parameter uncertainty
    p = f.predict(100, 5)
    assert p["low"][0] <= p["mean"][0] <= p["high"][0] and p["high"][0] > p["low"][0]
    assert all(np.isfinite(v) and v > 0 for v in f.stderr.values())


def test_exact_data_is_fitted_exactly() -> None:
    M = np.array([m for m, _ in GRID], float)
    C = np.array([c for _, c in GRID], float)
    y = MOLECULES(M, C)
    pts = Points(M, C, y, np.zeros_like(y), np.ones_like(y, dtype=int), [np.array([v]) for v in y])
    f = fit_error_model(pts, n_boot=0)
    assert f.rmse < 1e-3 * y.mean()
    assert f.params["alpha"] == pytest.approx(0.6, abs=0.01) and f.params["beta"] == pytest.approx(0.5, abs=0.02)


def test_aggregate_means_over_seeds() -> None:
    df = results_table(seeds=3)
    pts = aggregate(df, "test_molecules", "forces_mae", 1000.0)
    assert len(pts) == len(GRID) and set(pts.n) == {3}
    row = df[(df.split == "test_molecules") & (df.n_molecules == 64) & (df.conformers_per_molecule == 8)]
    i = int(np.flatnonzero((pts.M == 64) & (pts.C == 8))[0])
    assert pts.mean[i] == pytest.approx(1000 * row.forces_mae.mean())
    assert pts.std[i] == pytest.approx(1000 * row.forces_mae.std(ddof=1))


def test_too_few_points_is_refused() -> None:
    with pytest.raises(Exception, match="distinct points were run"):
        fit_results(results_table(grid=GRID[:3]))
    with pytest.raises(Exception, match="parameters but only"):
        fit_results(results_table(grid=GRID[:4]), form="full")


def test_unknown_form_is_refused() -> None:
    pts = aggregate(results_table(), "test_molecules", "forces_mae", 1000.0)
    with pytest.raises(Exception, match="unknown error-model form 'bogus'"):
        fit_error_model(pts, form="bogus")


def test_interpolating_fit_is_flagged_and_forms_compared() -> None:
    """As many points as parameters: no leave-one-out, a warning; the alternative forms are still scored."""
    pick = [0, 2, 5, 6, 9]  # both experiments' lines, exact values of a surface with a floor: nothing on a bound
    M = np.array([GRID[i][0] for i in pick], float)
    C = np.array([GRID[i][1] for i in pick], float)
    y = MOLECULES(M, C)
    few = Points(M, C, y, np.full(5, 0.5), np.full(5, 3), [np.array([v - 0.5, v, v + 0.5]) for v in y])
    f = fit_error_model(few, n_boot=0, form="full")
    assert f.components[0].form.name == "full"
    assert math.isnan(f.loo_rmse) and f.bootstrap is None
    assert any("the fit interpolates" in w for w in f.warnings)
    assert set(f.aicc_by_form) == {"full", "no_floor", "total"}
    assert set(fit_error_model(few, n_boot=0, form="full", compare=False).aicc_by_form) == {"full"}


# ------------------------------------------------------------------------------------------------ guard


def test_hull_distance_inside_outside_and_collinear() -> None:
    square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    assert hull_distance(square, np.array([0.5, 0.5])) == 0.0
    assert hull_distance(square, np.array([2.0, 0.5])) == pytest.approx(1.0)
    line = np.array([[0, 0], [1, 1], [2, 2]], float)
    assert hull_distance(line, np.array([1.0, 1.0])) == pytest.approx(0.0, abs=1e-12)
    assert hull_distance(line, np.array([0.0, 2.0])) == pytest.approx(math.sqrt(2))
    assert hull_distance(line, np.array([3.0, 3.0])) == pytest.approx(math.sqrt(2))


def test_extrapolation_guard_refuses_far_points(fits) -> None:
    f = fits["test_molecules"]
    f.predict(700, 1)  # 1.4x beyond the largest M: within the default factor 2
    with pytest.raises(ExtrapolationError, match="outside"):
        f.predict(5000, 1)
    with pytest.raises(ExtrapolationError):
        f.predict(64, 1000)
    forced = f.predict(5000, 1, allow_extrapolation=True)
    assert forced["extrapolated"][0] and forced["extrapolation"][0] > 5
    # a fit on one experiment only (a line in log M, log C) refuses points off that line
    one_line = fit_results(results_table(grid=GRID[:6]), n_boot=0)["test_molecules"]
    one_line.predict(100, 5.12)
    with pytest.raises(ExtrapolationError):
        one_line.predict(64, 64)
