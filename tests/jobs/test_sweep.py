"""Sweeps: planning on the experiment grid, stable run keys, results.csv, reruns that skip finished runs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mlipdiv.cli import main
from mlipdiv.io.hdf5 import read_hdf5
from mlipdiv.io.metrics import CurvePoint, RunMetrics, SplitErrors
from mlipdiv.jobs.store import RunStore
from mlipdiv.jobs.sweep import RESULT_COLUMNS, SPLITS, plan_sweep, run_sweep, write_results
from mlipdiv.selection import experiment_grid


class CountingTrain:
    """Records each training it is asked for; fails the seeds in ``fail_seeds`` (once each)."""

    def __init__(self, fail_seeds: set[int] = frozenset()):
        self.calls: list[tuple[int, int, int]] = []
        self.fail_seeds = set(fail_seeds)

    def __call__(self, cfg, out_dir, on_progress=None, should_stop=None, resume=False):
        self.calls.append((cfg.split.molecules, cfg.split.conformers_per_molecule, cfg.seed))
        if cfg.seed in self.fail_seeds:
            self.fail_seeds.discard(cfg.seed)
            raise RuntimeError("worker lost")
        err = 1.0 / cfg.split.molecules
        splits = {s: SplitErrors(energy_mae=err, energy_mae_per_atom=err / 9, forces_mae=2 * err, n=4) for s in SPLITS}
        return RunMetrics(cfg.model.name, cfg.split.molecules, cfg.split.conformers_per_molecule, cfg.seed,
                          splits=splits, curve=[CurvePoint(epoch=1)])


def test_plan_covers_the_grid_with_stable_keys(tiny_dataset_path: Path) -> None:
    plan = plan_sweep("fixed-budget", budget=8, points=3, seeds=2, model="schnet", epochs=2,
                      dataset=tiny_dataset_path, options={"hidden": 16})
    assert len(plan.grid) == 3 and all(m * c == 8 for m, c in plan.grid)
    assert [m for m, _ in plan.grid] == sorted((m for m, _ in plan.grid), reverse=True)
    assert len(plan.runs) == 6 and len({r.key for r in plan.runs}) == 6
    assert {r.seed for r in plan.runs} == {0, 1}
    assert all(r.config["hidden"] == 16 and r.config["epochs"] == 2 for r in plan.runs)
    again = plan_sweep("fixed-budget", budget=8, points=3, seeds=2, model="schnet", epochs=2,
                       dataset=tiny_dataset_path, options={"hidden": 16})
    assert [r.key for r in again.runs] == [r.key for r in plan.runs]
    longer = plan_sweep("fixed-budget", budget=8, points=3, seeds=2, model="schnet", epochs=3,
                        dataset=tiny_dataset_path, options={"hidden": 16})
    assert not {r.key for r in longer.runs} & {r.key for r in plan.runs}


def test_rerun_skips_finished_runs_and_retries_failed_ones(tmp_path: Path, tiny_dataset_path: Path) -> None:
    store = RunStore(tmp_path / "home")
    plan = plan_sweep("fixed-budget", budget=8, points=2, seeds=2, model="schnet", epochs=1,
                      dataset=tiny_dataset_path)
    train = CountingTrain(fail_seeds={1})
    runs = run_sweep(plan, store, train_fn=train)
    assert len(train.calls) == 4
    assert sorted(r.status for r in runs) == ["done", "done", "done", "failed"]
    write_results(tmp_path / "out", plan, runs)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == RESULT_COLUMNS and len(rows) == 3 * 4  # the failed run has no rows

    train2 = CountingTrain()
    runs2 = run_sweep(plan, store, train_fn=train2)
    failed = next(r for r in runs if r.status == "failed")
    assert train2.calls == [(failed.config["molecules"], failed.config["conformers_per_molecule"], 1)]
    assert [r.id for r in runs2] == [r.id for r in runs]  # same stored runs, no duplicates
    assert all(r.status == "done" for r in runs2) and len(store.list()) == 4

    third = CountingTrain()
    run_sweep(plan, store, train_fn=third)
    assert third.calls == []
    write_results(tmp_path / "out", plan, runs2)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 4
    for row in rows:
        m = int(row["n_molecules"])
        assert m * int(row["conformers_per_molecule"]) == 8
        assert float(row["energy_mae"]) == pytest.approx(1.0 / m)
        assert row["experiment"] == "fixed-budget" and row["model"] == "schnet" and row["split"] in SPLITS


def test_sweep_cli_with_real_training(tmp_path: Path, tiny_dataset_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    argv = ["sweep", "--experiment", "fixed-molecules", "--molecules", "4", "--points", "2", "--seeds", "1",
            "--model", "schnet", "--epochs", "1", "--hidden", "16", "--dataset", str(tiny_dataset_path),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4
    grid = experiment_grid(read_hdf5(tiny_dataset_path), "fixed-molecules", 2, molecules=4)
    assert {(int(r["n_molecules"]), int(r["conformers_per_molecule"])) for r in rows} == set(grid)
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("energy_mae", "energy_mae_per_atom", "forces_mae"))
    capsys.readouterr()
    assert main(argv) == 0
    assert "2 already done" in capsys.readouterr().out


def test_sweep_cli_refuses_infeasible_requests(tmp_path: Path, tiny_dataset_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    argv = ["sweep", "--experiment", "fixed-budget", "--budget", "100000", "--points", "3", "--dataset",
            str(tiny_dataset_path), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "largest budget" in capsys.readouterr().err


def test_submit_plan_returns_at_once_and_reuses_what_the_store_holds(tmp_path: Path, tiny_dataset_path: Path) -> None:
    from mlipdiv.jobs.manager import JobManager
    from mlipdiv.jobs.sweep import plan_point, submit_plan

    store = RunStore(tmp_path / "home")
    train = CountingTrain(fail_seeds={1})
    manager = JobManager(store, train_fn=train)
    try:
        plan = plan_point(2, 2, seeds=2, model="schnet", epochs=1, dataset=tiny_dataset_path)
        assert plan.grid == [(2, 2)] and len({r.key for r in plan.runs}) == 2
        ids, reused = submit_plan(manager, plan)
        assert reused == 0 and len(ids) == 2
        assert [r.status for r in manager.wait(ids, timeout=60)] == ["done", "failed"]
        again, reused = submit_plan(manager, plan_point(2, 2, seeds=2, model="schnet", epochs=1,
                                                        dataset=tiny_dataset_path))
        assert again == ids and reused == 2  # same settings, same runs: nothing new stored
        assert [r.status for r in manager.wait(ids, timeout=60)] == ["done", "done"]  # the failed one ran again
        assert len(train.calls) == 3
    finally:
        manager.shutdown()


def _sweep_argv(dataset: Path, out: Path, epochs: int) -> list[str]:
    return ["sweep", "--experiment", "fixed-molecules", "--molecules", "2", "--points", "1", "--seeds", "1",
            "--model", "schnet", "--epochs", str(epochs), "--hidden", "16", "--device", "cpu",
            "--dataset", str(dataset), "--out", str(out)]


def test_resume_with_no_more_epochs_leaves_a_done_run_alone(tmp_path: Path, tiny_dataset_path: Path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    argv = _sweep_argv(tiny_dataset_path, tmp_path / "out", 1)
    assert main(argv) == 0
    (run,) = RunStore().list()
    assert run.status == "done"
    capsys.readouterr()
    for epochs, expected in (("0", "--epochs must be at least 1"), ("1", "would train nothing")):
        assert main(["runs", "resume", run.id, "--epochs", epochs]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert main(["runs", "resume", run.id]) == 0
    assert "done already" in capsys.readouterr().out
    after = RunStore().get(run.id)
    assert (after.status, after.config, after.key, after.metrics) == ("done", run.config, run.key, run.metrics)
    assert main(argv) == 0  # the sweep still counts it and reports it
    assert "1 already done" in capsys.readouterr().out
    with open(tmp_path / "out" / "results.csv") as f:
        assert {row["run_id"] for row in csv.DictReader(f)} == {run.id}


def test_a_run_resumed_with_other_epochs_is_not_the_sweeps_run(tmp_path: Path, tiny_dataset_path: Path,
                                                               monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    store = RunStore()
    plan = plan_sweep("fixed-molecules", molecules=2, points=1, seeds=1, model="schnet", epochs=2,
                      dataset=tiny_dataset_path, options={"hidden": 16, "device": "cpu"})
    (item,) = plan.runs
    run, what = store.find_or_create(item.config, item.key)  # a 2-epoch sweep's run, killed before its end
    run = store.claim(run.id)
    store.finish(run.id, run.attempt, "interrupted", error="killed")
    assert main(["runs", "resume", run.id, "--epochs", "1"]) == 0
    resumed = store.get(run.id)
    assert (resumed.status, resumed.n_epochs, resumed.config["epochs"]) == ("done", 1, 1)
    assert resumed.key is not None and resumed.key != item.key
    capsys.readouterr()

    assert main(_sweep_argv(tiny_dataset_path, tmp_path / "out", 2)) == 0
    assert "0 already done" in capsys.readouterr().out
    with open(tmp_path / "out" / "results.csv") as f:
        reported = {row["run_id"] for row in csv.DictReader(f)}
    assert len(reported) == 1 and run.id not in reported  # the 2-epoch result is a 2-epoch run
    assert store.get(reported.pop()).config["epochs"] == 2 and len(store.list()) == 2
