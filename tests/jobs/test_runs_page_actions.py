"""The Runs page's bulk actions under ``AppTest``: "Cancel all" cancels every queued run, "Delete" removes a stopped
run (row and folder) and leaves the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlipdiv.jobs.store import RunStore, UnknownRun

APP = str(Path(__file__).resolve().parents[2] / "app.py")
CONFIG = {"model": "schnet", "molecules": 2, "conformers_per_molecule": 2, "epochs": 5}


@pytest.fixture
def home(tmp_path: Path, tiny_dataset_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "tiny.h5"
    shutil.copy(tiny_dataset_path, data)
    monkeypatch.setenv("MLIPDIV_DATASET", str(data))
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLIPDIV_CONCURRENCY", "1")
    return tmp_path / "runs"


def test_cancel_all_then_delete(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    store = RunStore(home)
    # queued in the store only: no worker takes them (a cancel works from any process)
    queued = [store.create({**CONFIG, "seed": s}) for s in (1, 2)]
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="runs_cancel_all").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [store.get(r.id).status for r in queued] == ["cancelled", "cancelled"]
    victim, kept = queued
    at.run()  # the page polls while runs are active; this is its next look
    at.selectbox(key="runs_delete_target").set_value(victim.id)
    at.button(key="runs_delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with pytest.raises(UnknownRun):
        store.get(victim.id)
    assert not victim.run_dir.exists() and kept.run_dir.is_dir()
    assert [r.id for r in store.list()] == [kept.id]
