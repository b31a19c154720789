"""The study pipeline (mlipdiv.analysis.study): plans from presets, claims, the report and its figures."""

from __future__ import annotations

import pandas as pd

from synthetic_sweeps import results_table  # tests/ is on sys.path (pytest.ini: pythonpath)


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
