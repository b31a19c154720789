"""The study pipeline (mlipdiv.analysis.study): plans from presets, claims, the report and its figures."""

from __future__ import annotations

import pandas as pd
import pytest

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


# ------------------------------------------------------------------------- issue 16: the report from raw rows


def test_report_regenerates_from_a_folder_of_raw_rows_alone(tmp_path) -> None:
    """Only results.csv (v2 columns, convergence checks included): analysis.json, report.md and the page's
    generated sections come out of it, and every statement follows the numbers."""
    import json

    from mlipdiv.analysis.references import REFERENCE_COLUMNS
    from mlipdiv.analysis.report import PAGE_BEGIN, PAGE_END
    from mlipdiv.analysis.study import analyse

    from synthetic_sweeps import v2_table

    v2_table(seed=1).to_csv(tmp_path / "results.csv", index=False)  # the draw test_fit's acceptance check uses
    pd.DataFrame([(2, 0, 416, 0, 0.7, 11.0), (32, 0, 416, 0, 0.05, 0.05)], columns=list(REFERENCE_COLUMNS)).to_csv(
        tmp_path / "references.csv", index=False)  # shipped beside results.csv: read, never recomputed
    page = tmp_path / "RESULTS.md"
    page.write_text(f"# Results\n\nhand-written protocol\n\n{PAGE_BEGIN}\nstale\n{PAGE_END}\n\ntrailing text\n")
    result = analyse(tmp_path, figures=False, n_boot=20, n_sim=10, page=page)
    assert result["source"] == "results.csv" and set(result["experiments"]["budgets"]) == {128, 512, 2048, 8192}
    stored = json.loads((tmp_path / "analysis.json").read_text())
    # convergence: two points per budget, errors at S and 2S paired over the check's seeds
    conv = stored["convergence"]
    assert {r["budget"] for r in conv} == {128, 512, 2048, 8192}
    assert all(r["check_steps"] == 2 * r["steps"] and r["seeds"] == 3 for r in conv)
    gaps = stored["gap_convergence"]  # per budget: both test splits and their mean, over the check's 3 seeds
    assert sorted(r["budget"] for r in gaps) == sorted(3 * [128, 512, 2048, 8192])
    assert all(r["seeds"] == 3 for r in gaps)
    # counts evaluated are constant per (experiment, sweep, seed, split) in this table
    assert stored["eval_counts"] and all(r["constant"] for r in stored["eval_counts"])
    assert stored["energy"] and all(r["ratio"] < 1 for r in stored["energy"])
    # what ran: runs, converged share and CPU time per (model, experiment, budget), protocol runs only
    table = v2_table(seed=1)
    protocol = table[~table["preset"].str.endswith("-convergence")].drop_duplicates("run_id")
    assert sum(r["runs"] for r in stored["converged"]) == protocol.groupby("experiment")["run_id"].nunique().sum()
    b512 = protocol[(protocol["budget"] == 512) & (protocol["experiment"] == "fixed-budget")]
    row = next(r for r in stored["converged"] if r["sweep"] == "B = 512" and r["experiment"] == "fixed-budget")
    assert row["cpu_hours"] == pytest.approx(b512["seconds"].sum() / 3600)
    assert row["energy_late_gain_median"] == pytest.approx(b512["late_gain_energy"].median())
    fixed_m = protocol[protocol["experiment"] == "fixed-molecules"]  # one row per molecular set, not per M x C
    assert {r["sweep"] for r in stored["converged"] if r["experiment"] == "fixed-molecules"} == {
        f"M = {m}" for m in fixed_m["n_molecules"]}
    assert [r["n_molecules"] for r in stored["references"]] == [2, 32]
    # statements: resolved where the truth is clear, "not resolved" at B = 8192 (3 seeds, a 1.8 meV/Å gap)
    by = {c["budget"]: c for c in stored["comparisons"] if c["quantity"] == "mean"}
    assert by[128]["resolved"] and by[128]["interior"] and "not resolved" in by[8192]["statement"]
    assert stored["abstract"]["balance"]["verdict"] == "agrees where resolved"
    assert stored["abstract"]["datasets"]["verdict"] == "not tested"  # the largest budget x 2 is below QM9
    assert stored["acceptance"]["schnet"]["ok"]
    noise = [f["loo_noise"] for f in stored["acceptance"]["schnet"]["fits"].values()]
    assert all(n["n_sim"] == 10 and 0 < n["expected"] <= n["high"] for n in noise)
    # the synthetic truth improves with the steps: the verdicts say which budgets' errors still move
    length = stored["abstract"]["training_length"]
    assert {b for _, b in length["checked"]} == {128, 512, 2048, 8192}
    moved = {b for _, b in length["errors_move"]}
    assert moved and moved == {r["budget"] for r in conv if not r["below_one_std"]}
    text = page.read_text()
    assert text.startswith("# Results\n\nhand-written protocol") and text.endswith("trailing text\n")
    assert "stale" not in text and text.count(PAGE_BEGIN) == 1
    for heading in ("### Paired comparisons", "### Is the error model consistent", "### Convergence",
                    "### Conformers evaluated", "### Relative energies", "### Element reference energies",
                    "Does the answer move?", "protocol runs (100 %) met the convergence rule", "CPU-hours",
                    "## Against the study's abstract", "*Training length behind these verdicts*",
                    "## Measured tables", "LOO from noise alone (median, 95 %; p)"):
        assert heading in text
    assert (tmp_path / "report.md").read_text() in text


def test_old_tables_still_load_and_say_what_they_lack(tmp_path) -> None:
    from mlipdiv.analysis.study import analyse

    df = results_table()  # today's columns only: no steps, no convergence checks, no relative energies
    df.to_csv(tmp_path / "results.csv", index=False)
    result = analyse(tmp_path, figures=False, n_boot=10, n_sim=10)
    assert result["convergence"] == [] and result["energy"] == [] and result["converged"] == []
    report = (tmp_path / "report.md").read_text()
    assert "No convergence-check runs" in report and "no relative-energy columns" in report


def test_a_page_without_markers_is_refused_not_overwritten(tmp_path) -> None:
    import pytest

    from mlipdiv.analysis.report import PAGE_BEGIN, write_page
    from mlipdiv.errors import MlipdivError

    page = tmp_path / "RESULTS.md"
    page.write_text("# hand-written only\n")
    with pytest.raises(MlipdivError, match="no generated-section markers"):
        write_page(page, "generated")
    assert page.read_text() == "# hand-written only\n"
    fresh = write_page(tmp_path / "new.md", "generated")
    assert fresh.read_text().startswith(PAGE_BEGIN)


def test_learning_curves_export_rows() -> None:
    from mlipdiv.analysis.report import CURVE_COLUMNS, curve_rows
    from mlipdiv.io.metrics import CurvePoint, RunMetrics

    m = RunMetrics(model="schnet", n_molecules=2, conformers_per_molecule=2, seed=0,
                   curve=[CurvePoint(epoch=1, train_loss=0.5, val_energy_mae=0.1, val_forces_mae=0.2),
                          CurvePoint(epoch=2, train_loss=0.4, val_energy_mae=0.09, val_forces_mae=0.15)])
    rows = curve_rows("r1", m)
    assert [tuple(r) for r in rows] == [CURVE_COLUMNS] * 2
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_forces_mae"] == 0.15


def test_study_command_on_raw_rows(tmp_path, capsys) -> None:
    from mlipdiv.analysis.study import main

    from synthetic_sweeps import v2_table

    v2_table().to_csv(tmp_path / "results.csv", index=False)
    assert main(["--analyse-only", "--out", str(tmp_path), "--no-figures", "--n-boot", "10", "--n-sim", "10"]) == 0
    out = capsys.readouterr().out
    assert "protocol runs analysed (from results.csv)" in out and "interior optimum" in out
    assert main(["--analyse-only", "--out", str(tmp_path / "none"), "--no-figures"]) == 2
    assert "no results.csv" in capsys.readouterr().out


@pytest.mark.parametrize("flag", [["--n-sim", "0"], ["--n-boot", "-1"]])
def test_study_command_refuses_impossible_draw_counts(tmp_path, capsys, flag) -> None:
    from mlipdiv.analysis.study import main

    with pytest.raises(SystemExit) as exc:
        main(["--analyse-only", "--out", str(tmp_path), *flag])
    assert exc.value.code == 2 and "--n-sim 1 or more" in capsys.readouterr().err


def test_gap_convergence_tells_a_uniform_gain_from_one_that_moves_the_answer() -> None:
    """Doubling the steps lowers both checked points by 20 meV/Å: every error changes (beyond the seed std) but
    their difference, on which the advice rests, does not. Lowering only the conformer-rich point moves it."""
    from mlipdiv.analysis.report import convergence_rows, gap_convergence_rows

    def table(drop_small_m: float, drop_large_m: float) -> pd.DataFrame:
        rows = []
        for m, c, base, drop in ((4, 32, 150.0, drop_small_m), (128, 1, 200.0, drop_large_m)):
            for seed in range(4):
                for steps, preset in ((1500, "study-b128"), (3000, "study-b128-convergence")):
                    if preset.endswith("convergence") and seed == 3:
                        continue
                    for split, shift in (("test_conformers", 0.0), ("test_molecules", 30.0)):
                        mev = base + shift + 4.0 * seed * (1 if m == 4 else -1) - (drop if steps == 3000 else 0.0)
                        rows.append({"experiment": "fixed-budget", "model": "schnet", "strategy": "random",
                                     "n_molecules": m, "conformers_per_molecule": c, "seed": seed, "split": split,
                                     "forces_mae": mev / 1000, "steps": steps, "preset": preset,
                                     "run_id": f"{m}-{seed}-{steps}"})
        return pd.DataFrame(rows)

    uniform = table(20.0, 20.0)
    assert not any(r["below_one_std"] for r in convergence_rows(uniform))  # every error moved by 20 > std 5
    gaps = gap_convergence_rows(uniform)
    assert {r["split"] for r in gaps} == {"test_conformers", "test_molecules", "mean"}
    for r in gaps:
        assert (r["first_M"], r["last_M"], r["seeds"], r["budget"]) == (4, 128, 3, 128)
        assert r["gap_at_steps"] == pytest.approx(-50.0 + 8.0 * 1, abs=1e-6)  # seeds 0-2: -50 + 8 * seed, mean
        assert r["change"] == pytest.approx(0.0, abs=1e-6) and r["below_one_std"]
        assert r["seed_std"] == pytest.approx(pd.Series([-50.0 + 8 * s for s in range(4)]).std())
    moved = gap_convergence_rows(table(20.0, 0.0))
    assert all(r["change"] == pytest.approx(-20.0) and not r["below_one_std"] for r in moved)


def test_study_preset_group_trains_every_study_preset_once_and_train_only_skips_the_analysis(
        tmp_path, monkeypatch) -> None:
    import mlipdiv.analysis.study as study
    from mlipdiv.presets import STUDY_PRESETS

    asked: list[list[str]] = []
    monkeypatch.setattr(study, "run_presets", lambda names, out, **kw: asked.append(list(names)) or [])
    monkeypatch.setattr(study, "analyse", lambda *a, **kw: pytest.fail("--train-only analysed"))
    argv = ["--preset", "study-b512", "--preset", "study", "--out", str(tmp_path), "--train-only"]
    assert study.main(argv) == 0
    names = [p.name for p in STUDY_PRESETS]
    assert asked == [["study-b512", *[n for n in names if n != "study-b512"]]]
    assert "study-b128" in names and all(n.startswith("study-") for n in names)
    with pytest.raises(SystemExit):
        study.main(["--analyse-only", "--train-only", "--out", str(tmp_path)])


def test_evaluated_counts_are_checked_within_each_sweep_not_across_budgets() -> None:
    """Budgets anchor their unseen conformers on different molecules, so their counts may differ; the points of one
    budget are paired by seed and must share theirs."""
    from mlipdiv.analysis.report import eval_count_rows

    def row(m: int, c: int, n: int, run: str) -> dict:
        return {"experiment": "fixed-budget", "n_molecules": m, "conformers_per_molecule": c, "seed": 0,
                "split": "test_conformers", "n_eval": n, "n_excluded": 0, "run_id": run, "model": "schnet",
                "strategy": "random", "preset": "p", "steps": 100}

    rows = [row(4, 32, 64, "a"), row(128, 1, 64, "b"), row(8, 64, 128, "c"), row(512, 1, 128, "d")]
    counts = eval_count_rows(pd.DataFrame(rows))
    assert [(r["sweep"], r["constant"]) for r in counts] == [("B = 128", True), ("B = 512", True)]
    rows[-1]["n_eval"] = 112  # one point of B = 512 scored on fewer conformers
    counts = eval_count_rows(pd.DataFrame(rows))
    assert [(r["sweep"], r["constant"], r["n_eval_min"], r["n_eval_max"]) for r in counts] == [
        ("B = 128", True, 64, 64), ("B = 512", False, 112, 128)]
