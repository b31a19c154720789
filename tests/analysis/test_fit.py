"""Budget analysis: error-model fits, the extrapolation guard, recommendations, cost model, known datasets,
applicability domain and information gap -- on synthetic data whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlipdiv.analysis.cost import fit_power_law, xtb_cost_model
from mlipdiv.analysis.domain import applicability_domain, error_threshold, nn_distances
from mlipdiv.analysis.fit import (
    ExtrapolationError,
    Points,
    aggregate,
    fit_error_model,
    fit_results,
    hull_distance,
)
from mlipdiv.analysis.infogap import atom_descriptors, delta_entropy, information_gap
from mlipdiv.analysis.known_datasets import KNOWN_DATASETS, known_datasets, on_map
from mlipdiv.analysis.recommend import candidates, recommend

from synthetic_sweeps import CONFORMERS, GRID, MOLECULES, results_table  # tests/ is on sys.path (pytest rootdir insertion)


@pytest.fixture(scope="module")
def fits():
    return fit_results(results_table(), n_boot=60)


# ------------------------------------------------------------------------------------------------- fits


def test_fit_recovers_known_parameters(fits) -> None:
    f = fits["test_molecules"]
    assert f.form == "full" and f.unit == "meV/Å"
    assert f.params["alpha"] == pytest.approx(0.6, abs=0.15)
    assert f.r2 > 0.97 and f.loo_rmse < 3.0
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
    with pytest.raises(Exception, match="parameters but only"):
        fit_results(results_table(grid=GRID[:3]))


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


# ------------------------------------------------------------------------------------------ recommendation


def test_recommendation_respects_budget_and_weight(fits) -> None:
    chosen = {}
    for w in (0.0, 0.5, 1.0):
        rec = recommend(fits, 512, w)
        assert rec.n_molecules * rec.conformers_per_molecule <= 512
        assert rec.n_molecules * (rec.conformers_per_molecule + 1) > 512  # uses the budget
        for split in ("test_molecules", "test_conformers"):
            p = rec.predicted[split]
            assert p["low"] <= p["mean"] <= p["high"] and p["unit"] == "meV/Å"
        chosen[w] = rec.n_molecules
    # favouring unseen molecules moves the optimum to more molecules
    assert chosen[0.0] < chosen[0.5] < chosen[1.0]
    # the true surfaces' optimum at W = 1 is "as many molecules as the data support"
    assert chosen[1.0] == 512


def test_recommendation_matches_true_optimum(fits) -> None:
    M, C = candidates(512)
    truth = 0.5 * MOLECULES(M, C) + 0.5 * CONFORMERS(M, C)
    rec = recommend(fits, 512, 0.5)
    best = truth.min()
    got = 0.5 * MOLECULES(rec.n_molecules, rec.conformers_per_molecule) + 0.5 * CONFORMERS(
        rec.n_molecules, rec.conformers_per_molecule)
    assert got <= best * 1.02


def test_recommendation_refuses_budget_far_outside(fits) -> None:
    with pytest.raises(ExtrapolationError, match="Run a sweep"):
        recommend(fits, 10_000_000, 0.5)
    rec = recommend(fits, 10_000_000, 0.5, allow_extrapolation=True)
    assert rec.extrapolated
    with pytest.raises(Exception, match="weight"):
        recommend(fits, 512, 1.5)


# ------------------------------------------------------------------------------------------------ cost


def test_cost_model_monotone_and_units_consistent() -> None:
    model = xtb_cost_model()
    assert model.p > 0 and model.c > 0 and model.meta["machine"]["cpu"]
    sizes = np.array([5, 10, 20, 40, 80])
    t = model.seconds_per_conformer(sizes)
    assert np.all(np.diff(t) > 0)
    hours = model.cpu_hours_for(10_000, 20)
    assert model.conformers_for(hours, 20) == 10_000
    assert model.cpu_hours_for(model.conformers_for(3.0, 20), 20) == pytest.approx(3.0, rel=1e-3)
    # several molecule sizes: the mean per-conformer cost
    assert model.mean_seconds([10, 30]) == pytest.approx((model.seconds_per_conformer(10) +
                                                          model.seconds_per_conformer(30)) / 2)
    dft = model.scaled(factor=1000.0, exponent=3.0, n_ref=20)
    assert dft.seconds_per_conformer(20) == pytest.approx(1000 * model.seconds_per_conformer(20))
    assert dft.seconds_per_conformer(40) == pytest.approx(8 * dft.seconds_per_conformer(20))
    assert dft.conformers_for(1.0, 20) < model.conformers_for(1.0, 20)


def test_power_law_fit_recovers_exponent() -> None:
    n = np.array([5, 10, 20, 40, 80.0])
    c, p, r2 = fit_power_law(n, 2e-5 * n**2.5)
    assert p == pytest.approx(2.5) and c == pytest.approx(2e-5) and r2 == pytest.approx(1.0)


# --------------------------------------------------------------------------------------- known datasets


def test_known_datasets_complete_with_sources() -> None:
    names = {d.name for d in KNOWN_DATASETS}
    expected = {"ANI-1", "GEOM", "Molecule3D", "nablaDFT", "OrbNet Denali", "PCQM B3LYP", "QMugs", "QM7-X", "SPICE",
                "SN2RXN", "Transition1x", "tmQM", "QM9", "rMD17"}
    assert expected <= names
    for d in KNOWN_DATASETS:
        assert d.source and "(20" in d.source and ("doi:" in d.source or "arXiv:" in d.source), d.name
        assert d.level_of_theory and d.n_conformers > 0
        if d.n_molecules is None:
            assert d.conformers_per_molecule is None  # Transition1x: organised by reactions
            continue
        ratio = d.n_conformers / d.n_molecules
        # published ratios are rounded (QM7-X 603.6 -> 603, SN2RXN 11,608 -> 11,600)
        assert abs(d.conformers_per_molecule - ratio) <= max(1.0, 0.01 * ratio), d.name
    assert "Transition1x" not in {d.name for d in on_map()}
    rows = known_datasets()
    assert {"name", "n_molecules", "n_conformers", "conformers_per_molecule", "level_of_theory", "source"} <= set(rows[0])


# ------------------------------------------------------------------------------------ applicability domain


def test_domain_threshold_flags_far_points() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (400, 6))
    val = rng.normal(0, 1, (100, 6))
    near = rng.normal(0, 1, (100, 6))
    far = rng.normal(0, 1, (100, 6)) + 8.0
    err = lambda x: 1.0 + nn_distances(train, x) ** 2  # noqa: E731 - error grows with distance
    rep = applicability_domain(train, val, {"test_conformers": near, "test_molecules": far},
                               reference_errors=err(val), test_errors={"test_conformers": err(near),
                                                                        "test_molecules": err(far)})
    s = rep.summary()
    assert s["test_molecules"]["flagged_fraction"] == 1.0
    assert s["test_conformers"]["flagged_fraction"] < 0.2
    assert s["val"]["flagged_fraction"] == pytest.approx(0.05, abs=0.02)  # 95th percentile by construction
    assert rep.error_threshold is not None and rep.error_threshold < nn_distances(train, far).min()
    assert s["test_molecules"]["error_flagged"] > 2 * s["val"]["error_unflagged"]


def test_error_threshold_none_when_error_flat() -> None:
    d = np.linspace(0, 10, 200)
    assert error_threshold(d, np.ones_like(d), 1.0, k=2.0) is None
    assert error_threshold(d, 1 + (d > 5) * 5.0, 1.0, k=2.0) == pytest.approx(5.0, abs=1.0)


# ---------------------------------------------------------------------------------------- information gap


def _structures(rng, n, scale=1.0, noise=0.03):
    base = np.array([[0, 0, 0], [1.5, 0, 0], [2.2, 1.3, 0], [3.7, 1.3, 0.2], [-0.5, 1.0, 0.1], [-0.4, -1.0, 0]])
    z = np.array([6, 6, 6, 8, 1, 1])
    return [(z, base * scale + rng.normal(0, noise, base.shape)) for _ in range(n)]


def test_infogap_larger_for_shifted_distribution() -> None:
    rng = np.random.default_rng(0)
    train = _structures(rng, 40)
    same = _structures(rng, 20)
    shifted = _structures(rng, 20, scale=1.25)
    g_same = information_gap(train, same, backend="numpy")
    g_shift = information_gap(train, shifted, backend="numpy")
    assert g_shift.dH_mean > g_same.dH_mean + 1.0
    assert g_shift.frac_extrapolative >= g_same.frac_extrapolative
    # the training set relative to itself is fully covered
    self_gap = information_gap(train, train, backend="numpy")
    assert self_gap.frac_extrapolative == 0.0


def test_numpy_descriptor_matches_quests_package() -> None:
    pytest.importorskip("quests")
    rng = np.random.default_rng(1)
    s = _structures(rng, 3) + [(np.full(40, 6), rng.normal(0, 3.0, (40, 3)))]  # also more atoms than k = 32
    x_np, owner = atom_descriptors(s, backend="numpy")
    x_q, _ = atom_descriptors(s, backend="quests")
    np.testing.assert_allclose(x_np, x_q, atol=1e-10)
    assert owner.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 40
    y, x = x_np[:10], x_np[10:]
    np.testing.assert_allclose(delta_entropy(y, x, backend="numpy"), delta_entropy(y, x, backend="quests"), atol=1e-8)


# ------------------------------------------------------------------------------------------ presets and study


def test_presets_make_valid_training_configs() -> None:
    from mlipdiv.presets import PRESETS
    from mlipdiv.training import TrainConfig

    assert {"laptop-fixed-budget", "laptop-fixed-molecules", "gpu-fixed-budget", "ray-fixed-budget"} <= set(PRESETS)
    for p in PRESETS.values():
        assert (p.budget is not None) == (p.experiment == "fixed-budget")
        assert (p.molecules is not None) == (p.experiment == "fixed-molecules")
        for kw in p.sweeps():
            TrainConfig.from_dict({**kw["options"], "model": kw["model"], "epochs": kw["epochs"]})
    laptop = PRESETS["laptop-fixed-molecules"]
    assert laptop.epochs_for(8, 128) == laptop.epochs * 16 and laptop.epochs_for(128, 128) == laptop.epochs


def test_shape_plan_caps_spreads_matches_steps_and_orders_by_seed(tmp_path) -> None:
    from mlipdiv.analysis.study import shape_plan
    from mlipdiv.jobs.sweep import SweepPlan, SweepRun
    from mlipdiv.presets import Preset

    data = tmp_path / "d.h5"
    data.write_bytes(b"not really a dataset, but bytes to hash")
    grid = [(8, 2**k) for k in range(7)]  # C = 1 .. 64
    runs = [SweepRun(m, c, s, {"epochs": 10, "molecules": m, "conformers_per_molecule": c, "seed": s}, f"k{c}-{s}")
            for m, c in grid for s in (0, 1)]
    plan = SweepPlan("fixed-molecules", "schnet", str(data), grid, [0, 1], runs)
    preset = Preset("t", "", "fixed-molecules", points=4, seeds=2, models=("schnet",), epochs=10, molecules=8,
                    max_conformers_per_molecule=16, match_steps=True)
    shaped = shape_plan(plan, preset)
    assert shaped.grid == [(8, 1), (8, 2), (8, 8), (8, 16)]
    assert [r.seed for r in shaped.runs] == [0] * 4 + [1] * 4  # every point once before any point twice
    epochs = {r.conformers_per_molecule: r.config["epochs"] for r in shaped.runs}
    assert epochs == {1: 160, 2: 80, 8: 20, 16: 10}  # same optimiser steps as the largest set
    keys = {r.conformers_per_molecule: r.key for r in shaped.runs if r.seed == 0}
    assert keys[16] == "k16-0" and keys[1] != "k1-0"  # a changed config gets a new key


def test_claims_and_report_from_a_study_table() -> None:
    from mlipdiv.analysis.study import claims, markdown_table, summary_table

    df = results_table()
    df["strategy"] = "random"
    df["baseline_forces_mae"] = 0.5
    df["baseline_energy_mae_per_atom"] = 0.05
    df["seconds"] = 10.0
    df["n_eval"] = 100
    c = claims(df)
    points = c["unseen_molecules_harder"]["points"]
    assert len(points) == 6 and c["unseen_molecules_harder"]["all"] == all(p["molecules_harder"] for p in points)
    m, cc = 16, 32  # at the fewest molecules the surfaces make unseen molecules the harder split
    assert next(p for p in points if p["M"] == m and p["C"] == cc)["molecules_harder"]
    (balance,) = c["balance_fixed_budget"]
    assert balance["best_M_test_molecules"] == 512  # unseen molecules: as many molecules as possible
    table = markdown_table(summary_table(df), "fixed-budget")
    assert table.count("\n") == 1 + 6 and "± " in table


def test_pipeline_cost_reproduces_the_measured_generation_cost() -> None:
    from mlipdiv.analysis.cost import pipeline_cost_model

    model, xtb = pipeline_cost_model(), xtb_cost_model()
    gen = xtb.meta["dataset_generation"]
    assert model.seconds_per_conformer(gen["mean_atoms"]) == pytest.approx(gen["cpu_seconds_per_stored_conformer"])
    assert model.p == pytest.approx(xtb.p) and model.seconds_per_conformer(20) > xtb.seconds_per_conformer(20)


def test_two_budgets_are_kept_apart_in_claims_and_figures() -> None:
    from mlipdiv.analysis.figures import study_figure
    from mlipdiv.analysis.study import claims

    second = [(128, 1), (32, 4), (8, 16)]  # B = 128, sharing M = 128 and M = 32 with no point of B = 512
    df = pd.concat([results_table(), results_table(grid=second, seed=1).assign(experiment="fixed-budget")])
    df = df.assign(strategy="random", baseline_forces_mae=0.5, baseline_energy_mae_per_atom=0.05, seconds=10.0,
                   n_eval=100)
    balance = {b["budget"]: b for b in claims(df)["balance_fixed_budget"]}
    assert sorted(balance) == [128, 512]
    assert balance[128]["best_M_test_molecules"] == 128 and balance[512]["best_M_test_molecules"] == 512
    fig = study_figure(df, "fixed-budget")
    lines = {t.name: list(t.x) for t in fig.data}
    assert lines["unseen molecules · random · B = 128"] == [8, 32, 128]
    assert lines["unseen molecules · random · B = 512"] == [16, 32, 64, 128, 256, 512]


def test_plan_preset_is_what_the_study_and_the_app_queue(tiny_dataset_path) -> None:
    from mlipdiv.analysis.study import plan_preset
    from mlipdiv.presets import Preset

    preset = Preset("t", "", "fixed-molecules", points=2, seeds=1, models=("schnet", "painn"), epochs=3, molecules=2,
                    max_conformers_per_molecule=2, match_steps=True)
    plans = plan_preset(preset, tiny_dataset_path)
    assert [p.model for p in plans] == ["schnet", "painn"]
    for plan in plans:
        assert plan.grid == [(2, 1), (2, 2)]  # capped at C = 2 although the data allow more
        assert {r.conformers_per_molecule: r.config["epochs"] for r in plan.runs} == {1: 6, 2: 3}
