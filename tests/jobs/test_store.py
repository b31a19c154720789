"""The run store: WAL SQLite, explicit status transitions, attempt ownership, interrupted detection, atomic files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlipdiv.io.atomic import atomic_write, atomic_write_json
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


# ------------------------------------------------------------------------------ one run per key, under concurrency


def _nine_point_plan():
    from mlipdiv.jobs.sweep import SweepPlan, SweepRun

    grid = [(m, c) for m in (2, 4, 8) for c in (1, 2, 3)]
    runs = [SweepRun(m, c, 0, {**CONFIG, "molecules": m, "conformers_per_molecule": c}, f"key-{m}-{c}")
            for m, c in grid]
    return SweepPlan("custom", "schnet", "unused.h5", grid, [0], runs)


def _submit_after(root: str, barrier, results) -> None:
    """One 'sweep' process: plan, wait for the others, then map the plan onto the store at the same moment."""
    from mlipdiv.jobs.sweep import _prepare

    store = RunStore(root)
    plan = _nine_point_plan()
    barrier.wait(timeout=60)
    ids, to_start, elsewhere, created = _prepare(store, plan)
    results.put((sorted(ids.values()), created))


def test_concurrent_sweeps_share_one_run_per_plan_point(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    root = tmp_path / "home"
    RunStore(root)
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_submit_after, args=(str(root), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = RunStore(root)
    runs = store.list()
    assert len(runs) == 9 and len({r.key for r in runs}) == 9
    assert all(ids == sorted(r.id for r in runs) for ids, _ in got)  # every sweep got the same runs
    assert sum(created for _, created in got) == 9
    assert len([p for p in root.iterdir() if p.is_dir()]) == 9  # no stray folders either


def test_keys_are_unique(store: RunStore) -> None:
    from mlipdiv.jobs.store import DuplicateKey

    first, what = store.find_or_create(CONFIG, "k")
    assert what == "created"
    with pytest.raises(DuplicateKey, match=first.id):
        store.create(CONFIG, key="k")
    assert store.find_or_create(CONFIG, "k") == (store.get(first.id), "active")
    assert len(store.list()) == 1 and len([p for p in store.root.iterdir() if p.is_dir()]) == 1


def _old_store(root: Path, rows: list[tuple[str, str | None, str, float]]) -> None:
    """A schema-1 store as mlipdiv wrote it before keys were unique: absolute run folders, no unique index."""
    import sqlite3

    root.mkdir(parents=True)
    con = sqlite3.connect(root / "runs.db")
    con.executescript(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, key TEXT, config TEXT NOT NULL, status TEXT NOT NULL, "
        "epoch INTEGER NOT NULL DEFAULT 0, n_epochs INTEGER, batch INTEGER NOT NULL DEFAULT 0, n_batches INTEGER, "
        "created REAL NOT NULL, started REAL, finished REAL, heartbeat REAL, error TEXT, metrics TEXT, "
        "curve TEXT NOT NULL DEFAULT '[]', run_dir TEXT NOT NULL, host TEXT, pid INTEGER, proc_start TEXT, "
        "attempt INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0);"
        "CREATE INDEX runs_key ON runs (key); PRAGMA user_version=1;"
    )
    for run_id, key, status, created in rows:
        (root / run_id).mkdir()
        con.execute("INSERT INTO runs (id, key, config, status, created, run_dir) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, key, json.dumps(CONFIG), status, created, str(root / run_id)))
    con.commit()
    con.close()


def test_migration_keeps_the_best_of_duplicate_keys_and_makes_folders_relative(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    original = tmp_path / "original"
    _old_store(original, [("a", "k", "failed", 1.0), ("b", "k", "done", 2.0), ("c", "k", "failed", 3.0),
                          ("d", "j", "done", 4.0), ("e", None, "done", 5.0)])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # a copied MLIPDIV_HOME, opened for the first time
    store = RunStore(copy)
    assert {r.id: r.key for r in store.list()} == {"a": None, "b": "k", "c": None, "d": "j", "e": None}
    assert store.find("k").id == "b"
    assert all(r.run_dir == copy / r.id for r in store.list())  # not the original's folders
    con = sqlite3.connect(copy / "runs.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert {row[0] for row in con.execute("SELECT run_dir FROM runs")} == set("abcde")
    con.close()
    store.requeue("a")
    store.claim("a")
    assert RunStore(original, readonly=True).get("a").status == "failed"  # the original was not touched
    with pytest.raises(sqlite3.IntegrityError):
        with store._write() as con:
            con.execute("UPDATE runs SET key = 'k' WHERE id = 'a'")


# ------------------------------------------------------------------------------------- damaged, lost, read-only


def _done_run(store: RunStore, config: dict | None = None, key: str | None = None):
    """A finished run with a run folder as training leaves it (config.json, metrics.json)."""
    run = store.claim(store.create(config or CONFIG, key=key).id)
    metrics = {"splits": {"test_molecules": {"energy_mae": 0.5, "energy_mae_per_atom": 0.05, "forces_mae": 0.25,
                                             "n": 8}}, "curve": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}
    atomic_write_json(run.run_dir / "config.json", run.config)
    atomic_write_json(run.run_dir / "metrics.json", metrics)
    store.finish(run.id, run.attempt, "done", metrics=metrics, curve=metrics["curve"])
    return store.get(run.id)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_store_is_reported_in_one_line_left_unchanged_and_repaired(
    damage: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    from mlipdiv.cli import main
    from mlipdiv.jobs.store import StoreError

    home = tmp_path / "home"
    monkeypatch.setenv("MLIPDIV_HOME", str(home))
    store = RunStore()
    done = _done_run(store, key="k-done")
    for i in range(40):  # enough rows for a multi-page table
        store.create({**CONFIG, "seed": i}, key=f"k{i}")
    failed = store.claim(store.create(CONFIG).id)
    atomic_write_json(failed.run_dir / "config.json", failed.config)
    (failed.run_dir / "error.log").write_text("Traceback ...\nValueError: boom\n")
    store.finish(failed.id, failed.attempt, "failed", error="ValueError: boom")
    db = home / "runs.db"
    data = db.read_bytes()
    assert len(data) > 3 * 4096
    db.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"these are my notes, not a database\n" * 9)
    before = db.read_bytes()
    capsys.readouterr()

    for argv in (["runs", "list"], ["runs", "show", done.id], ["runs", "resume", done.id]):
        assert main(argv) == 2
        err = _one_line_error(capsys)
        assert f"{db} is not a SQLite database" in err and "runs repair" in err
    with pytest.raises(StoreError):
        RunStore()
    assert db.read_bytes() == before and sorted(p.name for p in home.iterdir() if p.is_file()) == ["runs.db"]

    assert main(["runs", "repair"]) == 0
    out = capsys.readouterr().out
    kept = [p for p in home.iterdir() if p.name.startswith("runs.db.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == before and str(kept[0]) in out  # the user's file, aside
    repaired = RunStore()
    runs = {r.id: r for r in repaired.list()}
    assert len(runs) == 42
    assert runs[done.id].status == "done" and runs[done.id].metrics == done.metrics
    assert runs[failed.id].status == "failed" and "boom" in runs[failed.id].error
    assert repaired.find("k-done").id == done.id and repaired.find("k7").status == "interrupted"
    assert main(["runs", "list"]) == 0


def test_an_emptied_store_says_so_and_repair_rebuilds_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from mlipdiv.cli import main

    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    store = RunStore()
    done = _done_run(store, key="k")
    store.db_path.write_bytes(b"")
    capsys.readouterr()
    assert main(["runs", "list"]) == 0
    captured = capsys.readouterr()
    assert "no runs" in captured.out and "1 run folders" in captured.err and "runs repair" in captured.err
    assert main(["runs", "show", done.id]) == 2
    assert "runs repair" in capsys.readouterr().err
    assert main(["runs", "repair"]) == 0
    assert "added 1 runs" in capsys.readouterr().out
    assert not [p for p in store.root.iterdir() if "damaged" in p.name]  # an empty table is not damage
    again = RunStore().get(done.id)
    assert (again.status, again.key, again.metrics) == ("done", "k", done.metrics)


def test_a_read_only_store_can_be_listed_and_shown(tmp_path: Path, monkeypatch, capsys) -> None:
    import os
    import stat

    from mlipdiv.cli import main
    from mlipdiv.jobs import store as store_module

    home = tmp_path / "home"
    monkeypatch.setenv("MLIPDIV_HOME", str(home))
    store = RunStore()
    done = _done_run(store)
    running = store.claim(store.create(CONFIG).id)  # its owner (us) is alive, but reads as gone below
    monkeypatch.setattr(store_module, "pid_alive", lambda pid, start=None: False)
    files = sorted(p.name for p in home.iterdir() if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in home.rglob("*")}
    for p in [*home.rglob("*"), home]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    if os.geteuid() == 0:  # root writes anyway: make the store see the folder as it would be for anyone else
        monkeypatch.setattr(store_module, "_writable", lambda path: False)
    try:
        capsys.readouterr()
        assert main(["runs", "list"]) == 0
        out = capsys.readouterr().out
        assert done.id in out and running.id in out and "interrupted" in out
        assert main(["runs", "show", done.id]) == 0
        assert "test_molecules" in capsys.readouterr().out
        assert main(["runs", "cancel", running.id]) == 2
        assert "read-only" in _one_line_error(capsys)
        assert sorted(p.name for p in home.iterdir() if p.is_file()) == files
        assert {p: p.stat().st_mtime_ns for p in home.rglob("*")} == stamps  # nothing was written
    finally:
        for p in [home, *home.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_a_run_folder_deleted_behind_the_store_is_not_done(store: RunStore, monkeypatch, capsys) -> None:
    import shutil

    from mlipdiv.cli import main

    kept, lost = _done_run(store, key="kept"), _done_run(store, key="lost")
    shutil.rmtree(lost.run_dir)
    gone = store.get(lost.id)
    assert gone.status == "failed" and "missing" in gone.error and f"runs resume {lost.id}" in gone.error
    assert [r.id for r in store.list(status="done")] == [kept.id]
    assert [r.id for r in store.list(status="failed")] == [lost.id]
    run, what = store.find_or_create(CONFIG, "lost")  # a sweep trains it again
    assert (run.id, what, run.status) == (lost.id, "requeued", "queued")
    monkeypatch.setenv("MLIPDIV_HOME", str(store.root))
    assert main(["runs", "list"]) == 0
    assert "done" in capsys.readouterr().out.split(kept.id)[1].splitlines()[0]


def test_delete_removes_a_stopped_run_and_its_folder_and_refuses_an_active_one(store: RunStore) -> None:
    run = store.create(CONFIG, key="k")
    (run.run_dir / "model.pt").write_bytes(b"weights")
    with pytest.raises(InvalidTransition, match="cancel it"):
        store.delete(run.id)  # queued
    run = store.claim(run.id, curve=[])
    with pytest.raises(InvalidTransition, match="running; cancel it"):
        store.delete(run.id)
    assert store.get(run.id).status == "running" and (run.run_dir / "model.pt").exists()  # nothing removed
    store.finish(run.id, run.attempt, "cancelled")
    other = store.create({**CONFIG, "seed": 1})
    deleted = store.delete(run.id)
    assert deleted.id == run.id and not run.run_dir.exists()
    with pytest.raises(UnknownRun):
        store.get(run.id)
    assert [r.id for r in store.list()] == [other.id] and other.run_dir.is_dir()
    assert store.find("k") is None  # its key is free: a sweep trains that config again
    with pytest.raises(UnknownRun):
        store.delete(run.id)


def test_delete_leaves_a_folder_outside_the_store(store: RunStore, tmp_path: Path) -> None:
    outside = tmp_path / "mine"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    run = store.create(CONFIG)
    with store._write() as con:  # a run whose folder the user chose elsewhere
        con.execute("UPDATE runs SET run_dir = ?, status = 'failed' WHERE id = ?", (str(outside), run.id))
    store.delete(run.id)
    assert (outside / "keep.txt").read_text() == "mine"
    assert store.list() == []


def test_sub_epoch_curve_points_are_kept_and_a_repeated_step_replaces_what_follows(store: RunStore) -> None:
    run = store.claim(store.create(CONFIG).id, curve=[])
    for step, epoch in ((10, 1), (20, 1), (30, 2), (40, 2)):
        store.progress(run.id, run.attempt, epoch=epoch, curve_entry={"epoch": epoch, "step": step})
    assert [e["step"] for e in store.get(run.id).curve] == [10, 20, 30, 40]
    store.progress(run.id, run.attempt, epoch=1, curve_entry={"epoch": 1, "step": 20})  # resumed from step 20
    assert [e["step"] for e in store.get(run.id).curve] == [10, 20]
