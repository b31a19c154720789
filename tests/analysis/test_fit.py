"""Error-model fits of sweep results and the extrapolation guard (mlipdiv.analysis.fit) -- on synthetic data
whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
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


@pytest.mark.parametrize("terms", [("floor", "M", "C"), ("M", "C"), ("floor", "MC"), ("floor", "MorC"), ("MorC",),
                                   ("floor", "MorCT"), ("MorCT",), ("floor", "M"), ("C",)])
@pytest.mark.parametrize("steps", ["", "S", "power"])
def test_every_forms_jacobian_matches_its_central_differences(terms: tuple[str, ...], steps: str) -> None:
    """curve_fit gets the analytic Jacobian (Form.jac): a wrong column would fit silently worse, not fail."""
    from mlipdiv.analysis.fit import _form, _with_step_power

    rng = np.random.default_rng(len(terms))
    knots = (0.25, 0.5, 1.0, 4.0)
    form = {"": _form(terms), "S": _form((*terms, "S"), knots, 1500.0),
            "power": _with_step_power(_form(terms))}[steps]
    # step counts on the knots, between them and beyond both ends (where F(S) is flat)
    x = np.vstack([rng.uniform(0.05, 20, 16), rng.uniform(0.05, 20, 16),
                   np.r_[knots, 0.35, 0.7, 2.0, 0.1, 9.0, rng.uniform(0.1, 9, 7)]])
    for _ in range(4):
        theta = rng.uniform(0.2, 2.0, len(form.params))
        eps = 1e-6 * np.eye(len(theta))
        numeric = np.column_stack([(form.func(x, *(theta + e)) - form.func(x, *(theta - e))) / 2e-6 for e in eps])
        assert form.jac(x, *theta) == pytest.approx(numeric, rel=1e-6, abs=1e-7)


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
    # every form with at most 5 parameters (either_limited has 6)
    assert set(f.aicc_by_form) == {"full", "no_floor", "total", "either", "either_no_floor", "either_limited_no_floor"}
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


# ------------------------------------------------------------------------------------ issue 16: model checks


def test_nested_form_replaces_a_floor_on_its_bound() -> None:
    """A surface whose best floor would be negative: the full form's E_inf lands on its bound 0, so the nested
    no_floor form is reported instead, with finite standard errors and a note that says why."""
    M = np.array([m for m, _ in GRID], float)
    C = np.array([c for _, c in GRID], float)
    truth = lambda m, c: 40.0 * (m / 64) ** -0.6 + 30.0 * (c / 8) ** -0.5 - 3.0  # noqa: E731
    rng = np.random.default_rng(0)
    values = [truth(m, c) + rng.normal(0, 0.5, 4) for m, c in zip(M, C)]
    pts = Points(M, C, np.array([v.mean() for v in values]), np.array([v.std(ddof=1) for v in values]),
                 np.full(len(M), 4), values)
    f = fit_error_model(pts, form="full", n_boot=0)
    (comp,) = f.components
    assert comp.form.name == "no_floor" and "E_inf" not in f.params
    assert all(np.isfinite(v) for v in f.stderr.values())
    assert any("E_inf" in w and "nested form" in w for w in f.warnings)


def test_aicc_comes_from_the_weighted_residuals() -> None:
    from mlipdiv.analysis.fit import _aicc

    df = results_table(noise=0.05)
    pts = aggregate(df, "test_molecules", "forces_mae", 1000.0)
    pts.std[:3] *= 20  # three noisy points: weights differ a lot between points
    f = fit_error_model(pts, form="full", n_boot=0, compare=False)
    (comp,) = f.components
    sem = pts.std / np.sqrt(pts.n)
    sigma = np.maximum(sem, np.median(sem))
    resid = pts.mean - f.evaluate(pts.M, pts.C)
    chi2 = float(np.sum((resid / sigma) ** 2))
    assert comp.chi2 == pytest.approx(chi2, rel=1e-6)
    k = len(comp.theta)
    assert comp.aicc == pytest.approx(_aicc(chi2, len(pts), k), rel=1e-9)
    assert comp.aicc != pytest.approx(_aicc(float(resid @ resid), len(pts), k), rel=1e-3)


def test_model_average_uses_akaike_weights_and_the_steps_term() -> None:
    from synthetic_sweeps import v2_table

    fits = fit_results(v2_table(), n_boot=0)
    f = fits["test_molecules"]
    weights = [c.weight for c in f.components]
    assert sum(weights) == pytest.approx(1.0) and len(f.components) >= 1
    aicc = np.array([c.aicc for c in f.components])
    expected = np.exp(-0.5 * (aicc - aicc.min()))
    assert np.allclose(weights, expected / expected.sum(), atol=1e-3 / len(weights))
    assert any("S" in c.form.terms for c in f.components)  # the budgets' steps differ: the steps term is a candidate
    for g in fits.values():  # the truth scales each budget by (S/3200)^-0.1: the free levels find it
        top = max((c for c in g.components if "S" in c.form.terms), key=lambda c: c.weight).params
        assert [top["f@400"], top["f@800"], top["f@1600"]] == pytest.approx(
            [(s / 3200) ** -0.1 for s in (400, 800, 1600)], rel=0.1)
        assert top["f@400"] > top["f@800"] > top["f@1600"] > 1.0
        # and the power-of-S forms (the floor unscaled) find errors that fall with the steps on both routes
        power = [c.params for c in g.components if c.form.name.endswith("+steps-power")]
        assert power and all(0.0 < p[k] < 0.5 for p in power for k in ("gamma", "delta"))
    assert f.steps_for(512)[0] == pytest.approx(800) and f.steps_for(1024)[0] == pytest.approx(800 * 2**0.5)
    assert f.steps_for(100_000)[0] == pytest.approx(3200)  # steps are never extrapolated
    # predictions are the weighted average of the components
    x = f._x(np.array([64.0]), np.array([8.0]))
    manual = sum(c.weight * c.form.func(x, *c.theta)[0] for c in f.components)
    assert f.evaluate(64, 8)[0] == pytest.approx(manual)


def test_acceptance_passes_on_well_specified_data_and_fails_on_misspecified() -> None:
    from mlipdiv.analysis.fit import acceptance
    from mlipdiv.analysis.recommend import interval_checks

    from synthetic_sweeps import v2_table

    # acceptance is a statistical check: a correct model misses +-1 SE at some budget by chance (3 of 40 budget
    # checks over five draws of this table), and at B = 8,192 the measured best of one draw is M = 128 by noise;
    # this draw passes both with margin (|mean residual| <= 0.62 SE)
    good = fit_results(v2_table(seed=1), n_boot=40)
    for f in good.values():
        a = acceptance(f)
        assert [b["budget"] for b in a["budgets"]] == [128, 512, 2048, 8192]
        assert a["residuals_ok"] and a["loo_ok"] and a["ok"], a
    checks = interval_checks(good)
    assert [c["budget"] for c in checks] == [128, 512, 2048, 8192]
    assert all(c["contains"] for c in checks), checks
    # per-budget errors the model cannot express (e.g. training length that changes with the budget, unrecorded)
    bad = fit_results(v2_table(offsets={128: 25, 512: -25, 2048: 25, 8192: -25}, record_steps=False), n_boot=0)
    for f in bad.values():
        a = acceptance(f)
        assert not a["ok"] and not a["residuals_ok"] and not a["loo_ok"]
        assert any(not b["ok"] for b in a["budgets"])
        assert "acceptance" in f.as_dict()


def test_convergence_runs_are_left_out_of_the_fit() -> None:
    from mlipdiv.analysis.fit import protocol_rows

    from synthetic_sweeps import v2_table

    df = v2_table()
    main = protocol_rows(df)
    assert not main["preset"].str.endswith("-convergence").any() and len(main) < len(df)
    # without the preset column the longer run of a repeated point is the check
    assert len(protocol_rows(df.drop(columns="preset"))) == len(main)
    pts = aggregate(main[main.model == "schnet"], "test_molecules", "forces_mae", 1000.0)
    at = (pts.M == 32) & (pts.C == 4)
    assert pts.n[at][0] == 8 and set(pts.S[at]) == {400.0}


def test_fixed_budget_runs_at_two_budgets_are_fitted_alone() -> None:
    """The fixed-molecules runs are left out when two budgets tell M from C; one budget's line keeps them."""
    from mlipdiv.analysis.fit import fitted_rows

    from synthetic_sweeps import v2_table

    kw = {"budgets": {128: 400, 512: 800}, "seeds": {128: 3, 512: 3}, "convergence": False}
    both = v2_table(**kw)
    assert set(fitted_rows(both)["experiment"]) == {"fixed-budget"}
    fits = fit_results(both, n_boot=0, splits=["test_molecules"])
    alone = fit_results(v2_table(**kw, fixed_molecules=False), n_boot=0, splits=["test_molecules"])
    pts = fits["test_molecules"].points
    assert set(np.round(pts.M * pts.C)) == {128, 512} and len(pts) == len(alone["test_molecules"].points)
    assert fits["test_molecules"].predict(64, 4)["mean"][0] == pytest.approx(
        alone["test_molecules"].predict(64, 4)["mean"][0])
    one = results_table()  # one fixed-budget line (B = 512) and fixed-molecules runs off it
    assert len(fitted_rows(one)) == len(one)


def test_a_run_shared_by_the_two_experiments_counts_in_each(tmp_path) -> None:
    """The fixed-budget point (8, 64) of B = 512 is the fixed-molecules point C = 64 of M = 8: one config, one run,
    a row in each experiment's table. Read back (a folder of sweeps, or an upload), the fixed-budget point keeps
    every seed; it once lost the shared ones, so the `budget` verb fitted fewer seeds than the study's page. Here the
    shared point is (8, 16) of B = 128."""
    from mlipdiv.analysis.fit import fitted_rows, load_results, read_results_upload

    from synthetic_sweeps import v2_table

    df = v2_table(budgets={128: 400, 512: 800}, seeds={128: 3, 512: 3}, convergence=False)
    fb = df[(df.experiment == "fixed-budget") & (df.n_molecules == 8) & (df.conformers_per_molecule == 16)]
    shared = fb.assign(experiment="fixed-molecules", preset="m8")  # the same runs, as the other sweep lists them
    for name, part in (("b512", df), ("m8", shared)):
        (tmp_path / name).mkdir()
        part.to_csv(tmp_path / name / "results.csv", index=False)
    both = pd.concat([df, shared], ignore_index=True)
    for table in (load_results(tmp_path), read_results_upload("results.csv", both.to_csv(index=False).encode())):
        assert len(table) == len(both)
        pts = aggregate(fitted_rows(table[table.model == "schnet"]), "test_molecules", "forces_mae", 1000.0)
        at = (pts.M == 8) & (pts.C == 16)
        assert list(pts.n[at]) == [3]


# ------------------------------------------------------------------------ the parallel-routes form ("either")


def _points(truth, noise: float = 0.5, seeds: int = 4) -> Points:
    M = np.array([m for m, _ in GRID], float)
    C = np.array([c for _, c in GRID], float)
    rng = np.random.default_rng(1)
    values = [truth(m, c) + rng.normal(0, noise, seeds) for m, c in zip(M, C)]
    return Points(M, C, np.array([v.mean() for v in values]), np.array([v.std(ddof=1) for v in values]),
                  np.full(len(M), seeds), values)


def test_either_form_wins_where_the_error_follows_the_more_plentiful_resource() -> None:
    """Errors of unseen conformers that fall with M at C = 1 but hardly with M once C is large: the additive form
    cannot bend that way (residuals far beyond the noise); the average picks ``either`` and reproduces the surface."""
    def truth(m: float, c: float) -> float:
        u, v = 300.0 * (m / 64) ** -0.5, 120.0 * (c / 8) ** -0.6
        return 20.0 + u * v / (u + v)

    pts = _points(truth)
    additive = fit_error_model(pts, n_boot=0, form="full")
    avg = fit_error_model(pts, n_boot=0)
    weights = {c.form.name: c.weight for c in avg.components}
    assert weights.get("either", 0.0) > 0.9, weights
    assert avg.rmse < 1.0 and additive.rmse > 3.0  # noise 0.5 per seed
    for m, c in [(100, 5), (30, 10), (400, 1.5), (64, 8)]:
        assert avg.predict(m, c)["mean"][0] == pytest.approx(truth(m, c), rel=0.03)


def test_either_with_one_route_that_never_limits_becomes_that_single_term() -> None:
    """Data from the M power law alone: asked for ``either``, the fit reports the nested molecules-only form (the C
    route's parameters would be unidentified), with a note that says why."""
    pts = _points(lambda m, c: 25.0 + 200.0 * (m / 64) ** -0.6, noise=0.2)
    f = fit_error_model(pts, n_boot=0, form="either")
    (comp,) = f.components
    assert comp.form.name == "molecules_only" and set(f.params) == {"E_inf", "a", "alpha"}
    assert any("never limited the error" in w for w in f.warnings)
    assert f.params["alpha"] == pytest.approx(0.6, abs=0.05)


def test_limited_either_wins_where_other_molecules_teach_only_so_much() -> None:
    """The molecules route levels off at a_inf (more molecules stop helping a molecule's own unseen conformers):
    ``either`` bends too far (residuals beyond the noise), the average picks ``either_limited`` and recovers the
    limit; on data without a limit, ``either_limited`` nests back to ``either`` and says why."""
    def truth(m: float, c: float) -> float:
        u, v = 80.0 + 300.0 * (m / 64) ** -0.8, 120.0 * (c / 8) ** -0.6
        return 20.0 + u * v / (u + v)

    pts = _points(truth)
    plain = fit_error_model(pts, n_boot=0, form="either")
    avg = fit_error_model(pts, n_boot=0)
    assert {c.form.name: c.weight for c in avg.components}.get("either_limited", 0.0) > 0.9
    assert avg.rmse < 0.5 and plain.rmse > 1.0  # noise 0.5 per seed, 4 seeds
    assert avg.params["a_inf"] == pytest.approx(80.0, rel=0.1) and avg.params["E_inf"] == pytest.approx(20.0, abs=3)
    for m, c in [(100, 5), (30, 10), (400, 1.5), (64, 8)]:
        assert avg.predict(m, c)["mean"][0] == pytest.approx(truth(m, c), rel=0.01)

    def unlimited(m: float, c: float) -> float:
        u, v = 300.0 * (m / 64) ** -0.5, 120.0 * (c / 8) ** -0.6
        return 20.0 + u * v / (u + v)

    f = fit_error_model(_points(unlimited), n_boot=0, form="either_limited")
    assert [c.form.name for c in f.components] == ["either"] and "a_inf" not in f.params
    assert any("limit a_inf sat on 0" in w for w in f.warnings)


def test_step_power_form_scales_each_route_and_drops_an_exponent_on_its_bound() -> None:
    """``+steps-power``: the M route times (S/S0)^-gamma, the C route times (S/S0)^-delta, the floor unscaled. Data
    where longer training helps only the molecules route: delta lands on 0 and the nested form without it is
    reported, with a note that says why."""
    from mlipdiv.analysis.fit import form_by_name

    form = form_by_name("full+steps-power")
    assert form.name == "full+steps-power" and form.params == ("E_inf", "a", "alpha", "b", "beta", "gamma", "delta")
    x = np.array([[2.0], [0.5], [4.0]])
    expected = 10.0 + 30.0 * 2.0**-0.5 * 4.0**-0.2 + 20.0 * 0.5**-0.4 * 4.0**-0.1
    assert form.func(x, 10.0, 30.0, 0.5, 20.0, 0.4, 0.2, 0.1)[0] == pytest.approx(expected)
    either = form_by_name("either+steps-power")
    u, v = 30.0 * 2.0**-0.5 * 4.0**-0.2, 20.0 * 0.5**-0.4 * 4.0**-0.1
    assert either.func(x, 10.0, 30.0, 0.5, 20.0, 0.4, 0.2, 0.1)[0] == pytest.approx(10.0 + u * v / (u + v))
    assert form_by_name("total+steps-power").params == ("E_inf", "a", "alpha", "gamma")  # one route, one exponent

    M = np.array([m for m, _ in GRID], float)
    C = np.array([c for _, c in GRID], float)
    S = np.array([400.0, 800.0, 1600.0] * len(GRID))[: len(GRID)]
    truth = 20.0 + 100.0 * (M / 64) ** -0.5 * (S / 800) ** -0.3 + 50.0 * (C / 8) ** -0.5
    rng = np.random.default_rng(2)
    values = [t + rng.normal(0, 0.3, 4) for t in truth]
    pts = Points(M, C, np.array([v.mean() for v in values]), np.array([v.std(ddof=1) for v in values]),
                 np.full(len(M), 4), values, S=S)
    f = fit_error_model(pts, form="full+steps-power", n_boot=0)
    (comp,) = f.components
    assert "SM" in comp.form.terms and "SC" not in comp.form.terms and "delta" not in f.params
    assert f.params["gamma"] == pytest.approx(0.3, abs=0.05)
    assert any("step exponent delta sat on 0" in w for w in f.warnings)
    with pytest.raises(Exception, match="unknown error-model form 'either\\+steps-powr'"):
        fit_error_model(pts, form="either+steps-powr")
    # an either fit whose C route never limits becomes the M term, and keeps that route's step exponent
    # (this draw: on some draws the optimiser instead parks the C route at a huge constant, beta = 0)
    truth = 25.0 + 200.0 * (M / 64) ** -0.6 * (S / 800) ** -0.3
    rng = np.random.default_rng(1)
    values = [t + rng.normal(0, 0.2, 4) for t in truth]
    pts = Points(M, C, np.array([v.mean() for v in values]), np.array([v.std(ddof=1) for v in values]),
                 np.full(len(M), 4), values, S=S)
    (comp,) = fit_error_model(pts, form="either+steps-power", n_boot=0).components
    assert comp.form.name == "molecules_only+steps-power" and comp.params["gamma"] == pytest.approx(0.3, abs=0.05)


def test_loo_calibration_separates_seed_noise_from_a_wrong_model() -> None:
    """The leave-one-out RMSE that seed noise alone gives when the fit is the truth: a well-specified fit's measured
    LOO RMSE lies inside that distribution, a misspecified one's (per-budget offsets the model cannot express) far
    above it."""
    from mlipdiv.analysis.fit import loo_calibration

    from synthetic_sweeps import v2_table

    kw = {"budgets": {128: 400, 512: 800, 2048: 1600}, "convergence": False, "fixed_molecules": False}
    (good,) = fit_results(v2_table(seed=1, **kw), n_boot=0, splits=["test_conformers"]).values()
    (bad,) = fit_results(v2_table(offsets={128: 25, 512: -25, 2048: 25}, record_steps=False, **kw), n_boot=0,
                         splits=["test_conformers"]).values()
    g, b = loo_calibration(good, n_sim=20), loo_calibration(bad, n_sim=20)
    assert g["n_sim"] == b["n_sim"] == 20
    assert g["consistent"] and g["p_value"] >= 0.05 and good.loo_rmse < 2 * g["high"]
    assert not b["consistent"] and b["p_value"] == 0.0 and bad.loo_rmse > 3 * b["high"]
