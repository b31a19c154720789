"""``python -m mlipdiv budget``: JSON that parses with the promised keys, readable text, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlipdiv.cli import main

from synthetic_sweeps import flat, results_table, v2_table


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    results_table().to_csv(d / "results.csv", index=False)
    return d


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main(["budget", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_budget_json_has_the_recommendation(sweep_dir: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_json(capsys, "--results", str(sweep_dir), "--budget", "512", "--weight", "0.7", "--atoms", "18")
    assert {"n_molecules", "conformers_per_molecule", "predicted", "fits", "budget_conformers", "cost"} <= set(out)
    assert out["n_molecules"] * out["conformers_per_molecule"] <= 512
    for split in ("test_molecules", "test_conformers"):
        p = out["predicted"][split]
        assert p["low"] <= p["mean"] <= p["high"] and p["unit"] == "meV/Å"
        f = out["fits"][split]
        assert set(f["params"]) == set(f["stderr"])
        assert {k for k in f["params"] if not k.startswith("f@")} <= {"E_inf", "a", "alpha", "b", "beta"}
        assert {"r2", "rmse", "loo_rmse", "M_range", "C_range", "components", "acceptance"} <= set(f)
        assert sum(c["weight"] for c in f["components"]) == pytest.approx(1.0)
    assert out["verdict"] in ("resolved", "not resolved")  # the synthetic sweep measured B = 512
    assert out["allowed_budgets"][0] <= 512 <= out["allowed_budgets"][1]
    assert out["cost"]["cpu_hours"] > 0 and out["model"] == "schnet"


def test_budget_in_cpu_hours_converts_through_the_cost_model(sweep_dir: Path, capsys) -> None:
    from mlipdiv.analysis.cost import xtb_cost_model

    hours = xtb_cost_model().cpu_hours_for(512, 18)
    out = run_json(capsys, "--results", str(sweep_dir), "--budget", str(hours), "--unit", "cpu-hours", "--atoms", "18")
    assert out["budget_conformers"] == 512 and out["unit"] == "cpu-hours"
    assert out["cost"]["cpu_hours"] <= hours * (1 + 1e-9)


def test_budget_text_output(sweep_dir: Path, capsys) -> None:
    assert main(["budget", "--results", str(sweep_dir), "--budget", "512", "--atoms", "18"]) == 0
    text = capsys.readouterr().out
    assert "n_molecules =" in text and "conformers_per_molecule =" in text and "test_molecules" in text
    assert "leave-one-out" in text


def test_known_datasets_json(capsys) -> None:
    rows = run_json(capsys, "--known-datasets")
    assert len(rows) >= 14
    for r in rows:
        assert {"name", "n_molecules", "n_conformers", "conformers_per_molecule", "level_of_theory", "source"} <= set(r)
    assert main(["budget", "--known-datasets"]) == 0
    assert "SPICE" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "10000000"], "Run a sweep"),
        (["--budget", "512", "--weight", "2"], "weight"),
        (["--budget", "-3"], "positive"),
        (["--budget", "512", "--qm", "dft"], "--dft-factor"),
        (["--budget", "512", "--model", "painn"], "no runs with model"),
        (["--budget", "1e300", "--allow-extrapolation"], "more than 1e+10"),
        (["--budget", "1e300", "--unit", "cpu-hours", "--allow-extrapolation"], "pays for more than 1e+10 conformers"),
        (["--budget", "1e20", "--allow-extrapolation"], "more than 1e+10"),
        (["--budget", "nan"], "positive"),
        (["--budget", "512", "--max-factor", "nan"], "--max-factor"),
        (["--budget", "512", "--max-molecules", "0"], "--max-molecules must be at least 1"),
        (["--budget", "512", "--qm", "dft", "--dft-factor", "nan"], "--dft-factor must be a positive number"),
        (["--budget", "512", "--atoms", "nan"], "--atoms must be a positive number"),
    ],
)
def test_refusals_are_clear(sweep_dir: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["budget", "--results", str(sweep_dir), "--atoms", "18", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_missing_results_dir(tmp_path: Path, capsys) -> None:
    assert main(["budget", "--results", str(tmp_path / "nowhere"), "--budget", "10"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_module_entry_point(sweep_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlipdiv", "budget", "--results", str(sweep_dir), "--budget", "256", "--atoms", "18",
         "--json"], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(out.stdout)["n_molecules"] >= 1


@pytest.fixture(scope="module")
def study_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A v2 study table with a clear optimum and one whose truth is flat along each budget."""
    out = {}
    for name, table in (("clear", v2_table()), ("flat", v2_table(flat(), flat(), seed=3))):
        d = tmp_path_factory.mktemp(name)
        table.to_csv(d / "results.csv", index=False)
        out[name] = d
    return out


def test_budget_at_a_measured_budget_says_resolved_or_not(study_dirs, capsys) -> None:
    clear = run_json(capsys, "--results", str(study_dirs["clear"]), "--budget", "128", "--atoms", "18")
    assert clear["verdict"] == "resolved" and clear["measured"]["best_M"] == 32
    lo, hi = clear["n_molecules_range"]
    assert lo <= clear["measured"]["best_M"] <= hi  # the interval contains the measured best M
    # and on the measured grid: the fit's best of the measured points and its bootstrap range, as RESULTS.md checks
    glo, ghi = clear["measured"]["grid_interval"]
    assert clear["measured"]["contains"] and glo <= 32 <= ghi and clear["measured"]["fitted_grid_best_M"] == 32
    flat_out = run_json(capsys, "--results", str(study_dirs["flat"]), "--budget", "128", "--atoms", "18")
    assert flat_out["verdict"] == "not resolved" and flat_out["resolved"] is False
    assert "not resolved at this budget" in flat_out["measured"]["statement"]
    assert main(["budget", "--results", str(study_dirs["flat"]), "--budget", "128", "--atoms", "18"]) == 0
    text = capsys.readouterr().out
    assert "not resolved at this budget" in text and "acceptance:" in text and "budgets the fits may advise" in text
    assert "the fit's best of the measured points: M = " in text


def test_budget_form_choices_are_the_fits_forms() -> None:
    from mlipdiv.analysis import fit
    from mlipdiv.cli import budget

    assert budget.FORMS == tuple(fit.FORMS)


def test_budget_form_choice(study_dirs, capsys) -> None:
    out = run_json(capsys, "--results", str(study_dirs["clear"]), "--budget", "512", "--atoms", "18", "--form",
                   "full+steps")
    assert all(len(f["components"]) == 1 and "S0" in f for f in out["fits"].values())


def test_without_model_each_model_answers_from_its_own_fit(tmp_path, capsys) -> None:
    """The study's results hold two models: ``budget`` without ``--model`` answers for each (as issue 16's check
    runs it); a model without runs near the budget says why, and the other still answers."""
    import pandas as pd

    both = pd.concat([v2_table(model="schnet"), v2_table(model="painn", seed=1)])
    both.to_csv(tmp_path / "results.csv", index=False)
    out = run_json(capsys, "--results", str(tmp_path), "--budget", "128", "--atoms", "18")
    assert sorted(out["models"]) == ["painn", "schnet"]
    for model, answer in out["models"].items():
        assert answer["model"] == model and answer["measured"]["best_M"] >= 1
        lo, hi = answer["n_molecules_range"]
        assert lo <= answer["n_molecules"] <= hi
    alone = run_json(capsys, "--results", str(tmp_path), "--budget", "128", "--atoms", "18", "--model", "painn")
    assert alone["n_molecules"] == out["models"]["painn"]["n_molecules"]  # the same fit as with --model
    # painn only up to B = 512: at 8,192 it cannot advise (beyond its runs), schnet still does
    budget = both["n_molecules"] * both["conformers_per_molecule"]
    part = both[(both["model"] == "schnet") | (budget <= 512)]
    part.to_csv(tmp_path / "results.csv", index=False)
    out = run_json(capsys, "--results", str(tmp_path), "--budget", "8192", "--atoms", "18")
    assert "error" in out["models"]["painn"] and "n_molecules" in out["models"]["schnet"]
    assert main(["budget", "--results", str(tmp_path), "--budget", "8192", "--atoms", "18"]) == 0
    text = capsys.readouterr().out
    assert "=== painn ===\nno advice:" in text and "=== schnet ===" in text and "recommended:" in text
