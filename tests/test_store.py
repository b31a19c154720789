"""The run store: WAL SQLite, explicit status transitions, attempt ownership, interrupted detection, atomic files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlipdiv.jobs.atomic import atomic_write, atomic_write_json
from mlipdiv.jobs.store import InvalidTransition, RunStore, UnknownRun
from mlipdiv.paths import PROJECT_ROOT

CONFIG = {"model": "schnet", "molecules": 4, "conformers_per_molecule": 2, "epochs": 3, "seed": 0}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


def test_life_cycle_and_transitions(store: RunStore) -> None:
    run = store.create(CONFIG, key="k")
    assert run.status == "queued" and run.run_dir.is_dir() and run.n_epochs == 3 and run.config == CONFIG
    run = store.claim(run.id, curve=[])
    assert (run.status, run.attempt) == ("running", 1)
    with pytest.raises(InvalidTransition, match="running"):
        store.claim(run.id)
    with pytest.raises(InvalidTransition, match="running"):
        store.requeue(run.id)
    assert store.progress(run.id, 1, epoch=1, batch=2, n_batches=4, n_epochs=3)
    assert store.get(run.id).fraction == pytest.approx(0.5 / 3)
    assert store.finish(run.id, 1, "done", metrics={"splits": {}}, curve=[{"epoch": 1}])
    run = store.get(run.id)
    assert (run.status, run.metrics, run.curve, run.fraction) == ("done", {"splits": {}}, [{"epoch": 1}], 1.0)
    with pytest.raises(InvalidTransition, match="already done"):
        store.request_cancel(run.id)
    assert store.find("k").id == run.id and store.find("other") is None
    with pytest.raises(UnknownRun):
        store.get("nope")
    con_mode = store._read("PRAGMA journal_mode")[0][0]
    assert con_mode == "wal"


def test_curve_entries_replace_repeated_epochs(store: RunStore) -> None:
    run = store.claim(store.create(CONFIG).id, curve=[])
    for epoch in (1, 2, 3):
        store.progress(run.id, run.attempt, epoch=epoch, curve_entry={"epoch": epoch, "loss": epoch})
    store.progress(run.id, run.attempt, epoch=2, curve_entry={"epoch": 2, "loss": 20})  # e.g. a redone epoch
    assert store.get(run.id).curve == [{"epoch": 1, "loss": 1}, {"epoch": 2, "loss": 20}]


def test_cancel_queued_now_running_by_flag(store: RunStore) -> None:
    queued = store.create(CONFIG)
    assert store.request_cancel(queued.id).status == "cancelled"
    running = store.claim(store.create(CONFIG).id)
    assert store.heartbeat(running.id, running.attempt) is True
    assert store.request_cancel(running.id).cancel_requested
    assert store.heartbeat(running.id, running.attempt) is False  # the owner is told to stop
    assert store.finish(running.id, running.attempt, "cancelled")
    assert store.get(running.id).status == "cancelled"


def test_stale_attempt_cannot_overwrite_a_resumed_run(store: RunStore) -> None:
    run = store.claim(store.create(CONFIG).id)
    old = run.attempt
    store.finish(run.id, old, "interrupted")
    store.requeue(run.id, {**CONFIG, "epochs": 5})
    new = store.claim(run.id, curve=None)
    assert new.attempt == old + 1 and new.n_epochs == 5 and new.config["epochs"] == 5
    assert store.heartbeat(run.id, old) is False
    assert store.finish(run.id, old, "failed", error="late") is False
    assert store.get(run.id).status == "running"


def test_stale_heartbeat_reads_as_interrupted_and_a_late_heartbeat_revives(tmp_path: Path) -> None:
    store = RunStore(tmp_path, stale_after=0.2)
    run = store.claim(store.create(CONFIG).id)
    assert store.get(run.id).status == "running"
    time.sleep(0.3)
    got = store.get(run.id)
    assert got.status == "interrupted" and "no heartbeat" in got.error
    assert RunStore(tmp_path).get(run.id).status == "interrupted"  # persisted, not just computed
    assert store.heartbeat(run.id, run.attempt)  # the owner was only asleep
    assert RunStore(tmp_path).get(run.id).status == "running"


def test_dead_process_reads_as_interrupted(store: RunStore) -> None:
    run = store.create(CONFIG)
    code = f"from mlipdiv.jobs.store import RunStore; RunStore({str(store.root)!r}).claim({run.id!r})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
    got = store.get(run.id)
    assert got.status == "interrupted"
    assert "is gone" in got.error and str(got.pid) in got.error
    assert [r.id for r in store.list("interrupted")] == [run.id]
    assert store.list("running") == []


def test_many_writers_and_readers(store: RunStore) -> None:
    errors: list[BaseException] = []
    created: list[str] = []
    lock = threading.Lock()

    def write() -> None:
        try:
            for _ in range(15):
                run = store.claim(store.create(CONFIG).id)
                for epoch in (1, 2, 3):
                    store.progress(run.id, run.attempt, epoch=epoch, curve_entry={"epoch": epoch})
                store.finish(run.id, run.attempt, "done", metrics={"ok": True})
                with lock:
                    created.append(run.id)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(40):
                for r in store.list():
                    assert r.status in ("queued", "running", "done")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = store.list()
    assert len(runs) == len(set(created)) == 90
    assert all(r.status == "done" and [e["epoch"] for e in r.curve] == [1, 2, 3] for r in runs)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a.json", {"v": 1})

    def torn(f) -> None:
        f.write(b'{"v": 2')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, torn)
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary file left behind


def test_runs_cli_list_show_cancel(tmp_path: Path, monkeypatch, capsys) -> None:
    from mlipdiv.cli import main

    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    store = RunStore()
    queued = store.create(CONFIG)
    done = store.claim(store.create(CONFIG).id)
    store.finish(done.id, done.attempt, "done", metrics={"splits": {"test_molecules": {
        "energy_mae": 0.5, "energy_mae_per_atom": 0.05, "forces_mae": 0.25, "n": 8}}})
    capsys.readouterr()

    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"], r["epoch"], r["config"]) for r in listed] == [
        (queued.id, "queued", 0, CONFIG), (done.id, "done", 0, CONFIG)]
    assert main(["runs", "show", done.id]) == 0
    shown = capsys.readouterr().out
    assert "test_molecules" in shown and "250.00" in shown  # forces MAE in meV/A
    assert main(["runs", "cancel", queued.id]) == 0
    assert store.get(queued.id).status == "cancelled"
    assert main(["runs", "cancel", done.id]) == 2
    assert "already done" in capsys.readouterr().err
    assert main(["runs", "show", "no-such-run"]) == 2
