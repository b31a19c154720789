"""``runs export`` / ``runs import``: finished runs move between stores, a sweep reuses them, crafted folders are
refused whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlipdiv.cli import main
from mlipdiv.errors import MlipdivError
from mlipdiv.io.rundir import MODEL, PREDICTIONS
from mlipdiv.jobs.store import RunStore
from mlipdiv.jobs.sweep import plan_sweep, run_sweep
from mlipdiv.jobs.transfer import EXPORTED, export_runs, import_runs

PLAN = {"experiment": "fixed-budget", "budget": 8, "points": 2, "seeds": 1, "model": "schnet", "epochs": 1,
        "options": {"hidden": 8}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_dataset_path: Path) -> tuple[Path, Path]:
    """Two really trained runs in a store, exported (the store, the export)."""
    root = tmp_path_factory.mktemp("transfer")
    store = RunStore(root / "home")
    runs = run_sweep(plan_sweep(dataset=tiny_dataset_path, **PLAN), store)
    assert [r.status for r in runs] == ["done", "done"]
    report = export_runs(store, root / "export")
    assert sorted(report.written) == sorted(r.id for r in runs) and not report.skipped
    return root / "home", root / "export"


class NoTraining:
    def __call__(self, *args, **kwargs):
        raise AssertionError("the sweep trained a run the import should have provided")


def test_an_imported_study_is_reused_by_a_sweep_planned_elsewhere(exported, tmp_path: Path, tiny_dataset_path: Path,
                                                                    monkeypatch, capsys) -> None:
    home, dest = exported
    for folder in dest.iterdir():  # what the analysis needs, and nothing of the training's own state
        assert sorted(p.name for p in folder.iterdir()) == sorted(EXPORTED)
    assert export_runs(RunStore(home), dest).unchanged and not export_runs(RunStore(home), dest).written

    # another checkout: the same dataset bytes at another path, a new store
    copy = tmp_path / "elsewhere" / "data.h5"
    copy.parent.mkdir()
    shutil.copy(tiny_dataset_path, copy)
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home2"))
    assert main(["runs", "import", str(dest), "--dataset", str(copy)]) == 0
    assert "imported 2 runs" in capsys.readouterr().out
    store = RunStore(tmp_path / "home2")
    plan = plan_sweep(dataset=copy, **PLAN)
    runs = run_sweep(plan, store, train_fn=NoTraining())
    original = RunStore(home)
    for run in runs:
        assert run.status == "done" and run.config["dataset"] == str(copy.resolve())
        assert run.run_metrics() == original.get(run.id).run_metrics()
    assert main(["runs", "import", str(dest), "--dataset", str(copy)]) == 0  # twice: nothing new
    assert "imported 0 runs" in capsys.readouterr().out and len(store.list()) == 2
    again = export_runs(store, dest)  # the next sitting ships what it adds: the moved runs are the same runs
    assert sorted(again.unchanged) == sorted(r.id for r in runs) and not again.written


def test_runs_of_other_dataset_bytes_keep_their_key(exported, tmp_path: Path) -> None:
    _, dest = exported
    other = tmp_path / "other.h5"
    other.write_bytes(b"not the dataset the runs trained on")
    store = RunStore(tmp_path / "home")
    report = import_runs(store, dest, dataset=other)
    assert len(report.added) == 2 and not report.rebased
    for run in store.list():
        assert run.config["dataset"] != str(other.resolve())


def _craft(dest: Path, tmp_path: Path, how: str) -> Path:
    src = tmp_path / f"crafted-{how}"
    folder = sorted(dest.iterdir())[0]
    shutil.copytree(folder, src / folder.name)
    run = src / folder.name
    if how == "link":
        (run / "metrics.json").unlink()
        (run / "metrics.json").symlink_to("/etc/passwd")
    elif how == "extra":
        (run / "notes.txt").write_text("hello")
    elif how == "pickle":
        np.savez(run / PREDICTIONS, allow_pickle=True, split=np.array([object()], dtype=object))
    elif how == "metrics":
        (run / "metrics.json").write_text(json.dumps({"model": "schnet"}))
    elif how == "renamed":
        run.rename(src / "20990101-000000-abcdef")
    elif how == "fifo":  # opening it for reading must not block the import
        (run / "summary.json").unlink()
        os.mkfifo(run / "summary.json")
    elif how == "weights":
        (run / MODEL).write_bytes(b"\x80\x04cos\nsystem\n.")  # a pickle that would call os.system
    return src


@pytest.mark.parametrize("how", ["link", "extra", "pickle", "metrics", "renamed", "weights", "fifo"])
def test_a_crafted_folder_is_skipped_whole_and_named(exported, tmp_path: Path, how: str) -> None:
    _, dest = exported
    src = _craft(dest, tmp_path, how)
    store = RunStore(tmp_path / "home")
    report = import_runs(store, src)
    assert not report.added and len(report.skipped) == 1, report
    assert store.list() == [] and not [p for p in store.root.iterdir() if p.is_dir()]


def test_a_file_swapped_for_a_link_after_the_checks_does_not_get_in(exported, tmp_path: Path, monkeypatch) -> None:
    """The checks read the store's own copy: a source file replaced by a link to a server file once it was checked
    (a race an attacker can win) changes nothing of what is imported."""
    import mlipdiv.jobs.transfer as transfer

    _, dest = exported
    src = tmp_path / "src"
    shutil.copytree(dest, src)
    secret = tmp_path / "secret.txt"
    secret.write_text("server secret")
    checked = transfer._checked_folder

    def check_then_swap(folder: Path, run_id: str):
        marker = checked(folder, run_id)
        for name in ("summary.json", PREDICTIONS):
            (src / run_id / name).unlink()
            (src / run_id / name).symlink_to(secret)
        return marker

    monkeypatch.setattr(transfer, "_checked_folder", check_then_swap)
    store = RunStore(tmp_path / "home")
    report = import_runs(store, src)
    assert len(report.added) == 2 and not report.skipped
    for run in store.list():
        for name in ("summary.json", PREDICTIONS):
            assert (dest / run.id / name).read_bytes() == (store.root / run.id / name).read_bytes()
            assert not (store.root / run.id / name).is_symlink()


def test_export_never_replaces_other_bytes_without_overwrite(exported, tmp_path: Path) -> None:
    home, dest = exported
    copy = tmp_path / "export"
    shutil.copytree(dest, copy)
    changed = sorted(copy.iterdir())[0] / "summary.json"
    changed.write_text("{}")
    with pytest.raises(MlipdivError, match="--overwrite"):
        export_runs(RunStore(home), copy)
    assert changed.read_text() == "{}"
    report = export_runs(RunStore(home), copy, overwrite=True, weights=True)
    assert len(report.written) == 2 and changed.read_text() != "{}"
    assert (changed.parent / MODEL).is_file()
    store = RunStore(tmp_path / "home")
    assert len(import_runs(store, copy).added) == 2  # weights load with weights_only
