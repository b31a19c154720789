"""RunDir: the run folder's file names, atomic readers/writers, its lock, and check_run_folder."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mlipdiv.io.metrics import RunMetrics, SplitErrors
from mlipdiv.io.rundir import ForeignFolder, RunDir, RunFolderBusy, check_run_folder
from mlipdiv.io.runlock import LOCK_NAME


def test_paths_are_the_documented_names(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    names = {
        "config_path": "config.json", "split_path": "split.json", "checkpoint_path": "checkpoint.pt",
        "model_path": "model.pt", "predictions_path": "predictions.npz", "metrics_path": "metrics.json",
        "summary_path": "summary.json", "marker_path": "run.json", "error_log_path": "error.log",
        "lock_path": LOCK_NAME,
    }
    for attr, name in names.items():
        assert getattr(run, attr) == tmp_path / "r" / name
    assert Path(run) == tmp_path / "r"
    assert not run.is_run_folder() and not run.has_checkpoint()


def test_writers_are_atomic_and_readers_give_back_what_was_written(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    metrics = RunMetrics("painn", 4, 2, 1, splits={"val": SplitErrors(0.1, 0.01, 0.1, 0.2, 0.3, 3)})
    run.write_config({"model": "painn", "hidden": (16, 16)})
    run.write_metrics(metrics)
    run.write_summary({"best_epoch": 2})
    run.write_marker({"id": "x"})
    run.write_split('{"train": []}\n')
    run.write_predictions({"mol_id": np.array(["a", "b"]), "forces_mae": np.array([0.1, 0.2])})
    assert run.read_config() == {"model": "painn", "hidden": [16, 16]}
    assert run.read_metrics() == metrics
    assert run.read_summary() == {"best_epoch": 2} and run.read_marker() == {"id": "x"}
    assert run.read_split() == {"train": []}
    pred = run.read_predictions(("forces_mae",))
    assert list(pred) == ["forces_mae"] and pred["forces_mae"].tolist() == [0.1, 0.2]
    assert run.is_run_folder()
    # nothing but the files themselves: no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["config.json", "metrics.json", "summary.json", "run.json", "split.json", "predictions.npz"])


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_summary({"best_epoch": 1})
    with pytest.raises(TypeError):
        run.write_summary({"best_epoch": object()})
    assert run.read_summary() == {"best_epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_clear_training_outputs_keeps_everything_else(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for name in RunDir.TRAINING_OUTPUTS + ("config.json", "run.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    run.clear_training_outputs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.txt", "run.json"]


def test_lock_is_exclusive_across_threads_and_reentrant_within_one(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "new")
    errors: list[RunFolderBusy] = []

    def other() -> None:
        try:
            with RunDir(tmp_path / "new").lock():
                pass
        except RunFolderBusy as exc:
            errors.append(exc)

    with run.lock() as held:
        assert held is run and run.lock_path.exists()
        with run.lock():  # the store's worker, then train()
            pass
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with pytest.raises(RunFolderBusy, match="new"):
            check_run_folder(run.path, {})
    assert len(errors) == 1 and isinstance(errors[0], RunFolderBusy)
    with run.lock():  # released
        pass


def test_check_run_folder(tmp_path: Path) -> None:
    config = {"model": "schnet", "seed": 0}
    check_run_folder(tmp_path / "missing", config)
    run = RunDir(tmp_path / "run")
    run.write_config(config)
    (run.path / "metrics.json").write_text("{}")
    check_run_folder(run.path, config)  # the same run again: nothing is lost
    with pytest.raises(ForeignFolder, match="another configuration"):
        check_run_folder(run.path, {**config, "seed": 1})
    check_run_folder(run.path, {**config, "seed": 1}, overwrite=True)
    with pytest.raises(ForeignFolder, match="no checkpoint.pt"):
        check_run_folder(run.path, config, resume=True)
    run.checkpoint_path.write_bytes(b"x")
    check_run_folder(run.path, config, resume=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.pt").write_text("mine")
    with pytest.raises(ForeignFolder, match="not a training run"):
        check_run_folder(tmp_path / "mine", config)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ForeignFolder, match="is a file"):
        check_run_folder(tmp_path / "file", config, overwrite=True)
