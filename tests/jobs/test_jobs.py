"""The job manager and the worker: background runs, cancel, failure, concurrency, kill -9 and resume.

Most tests inject a scripted training function (same contract as :func:`mlipdiv.training.train`) to control
timing; the manager test and the kill -9 test run the real training on the tiny dataset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlipdiv.cli import main
from mlipdiv.errors import MlipdivError, TrainingCancelled, TrainingError
from mlipdiv.jobs.manager import JobManager
from mlipdiv.jobs.store import RunStore
from mlipdiv.jobs.worker import execute
from mlipdiv.paths import PROJECT_ROOT
from mlipdiv.training import Progress

CONFIG = {"dataset": "unused.h5", "molecules": 4, "conformers_per_molecule": 2, "hidden": 16, "epochs": 3}


class ScriptedTrain:
    """A training function with the real contract whose pace and failures the test decides."""

    def __init__(self, batches: int = 5, batch_seconds: float = 0.01, fail_at: int | None = None):
        self.batches, self.batch_seconds, self.fail_at = batches, batch_seconds, fail_at
        self.lock = threading.Lock()
        self.steps: dict[str, int] = {}
        self.active = 0
        self.max_active = 0

    def __call__(self, cfg: Any, out_dir: Path, on_progress=None, should_stop=None, resume=False) -> dict:
        name = Path(out_dir).name
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            curve = []
            for epoch in range(1, cfg.optim.epochs + 1):
                for batch in range(1, self.batches + 1):
                    time.sleep(self.batch_seconds)
                    with self.lock:
                        self.steps[name] = self.steps.get(name, 0) + 1
                    if self.fail_at is not None and epoch == self.fail_at:
                        raise ValueError(f"boom in epoch {epoch}")
                    on_progress(Progress("batch", epoch, cfg.optim.epochs, batch, self.batches, 1.0, 1e-3, 0.0))
                    if should_stop():
                        raise TrainingCancelled("stopped")
                curve.append({"epoch": epoch, "lr": 1e-3, "train_loss": 1.0 / epoch, "val_energy_mae": 0.1,
                              "val_forces_mae": 0.2, "seconds": 0.0})
                on_progress(Progress("epoch", epoch, cfg.optim.epochs, self.batches, self.batches, 1.0 / epoch, 1e-3,
                                     0.0, 0.1, 0.2, epoch))
            return {"splits": {"train": {"energy_mae": 0.1, "energy_mae_per_atom": 0.01, "forces_mae": 0.2}},
                    "curve": curve}
        finally:
            with self.lock:
                self.active -= 1


def _wait_for(predicate, timeout: float = 20.0, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


def test_cancel_stops_within_one_batch(store: RunStore) -> None:
    train = ScriptedTrain(batches=1000, batch_seconds=0.02)
    manager = JobManager(store, train_fn=train, max_concurrent=1)
    run = manager.submit(CONFIG)
    _wait_for(lambda: store.get(run.id).batch >= 3)
    with train.lock:
        steps_at_cancel = train.steps[run.id]
        manager.cancel(run.id)
    (final,) = manager.wait([run.id], timeout=10)
    assert final.status == "cancelled" and final.error is None
    assert train.steps[run.id] - steps_at_cancel <= 1
    assert final.batch >= 3 and final.finished is not None
    manager.shutdown()


def test_cancel_from_another_process_is_noticed_by_heartbeat(store: RunStore) -> None:
    train = ScriptedTrain(batches=1000, batch_seconds=0.01)
    run = store.create(CONFIG)
    worker = threading.Thread(target=execute, args=(store, run.id), kwargs={"train_fn": train, "heartbeat_every": 0.05})
    worker.start()
    _wait_for(lambda: store.get(run.id).status == "running")
    RunStore(store.root).request_cancel(run.id)  # what `runs cancel ID` does from a shell
    worker.join(10)
    assert store.get(run.id).status == "cancelled"


def test_failure_is_recorded_with_its_message(store: RunStore) -> None:
    manager = JobManager(store, train_fn=ScriptedTrain(fail_at=2), max_concurrent=1)
    run = manager.submit(CONFIG)
    (final,) = manager.wait([run.id], timeout=10)
    assert final.status == "failed"
    assert final.error == "ValueError: boom in epoch 2"
    assert "boom in epoch 2" in (final.run_dir / "error.log").read_text()
    assert [e["epoch"] for e in final.curve] == [1]  # what it reached stays visible

    def diverge(cfg, out_dir, on_progress=None, should_stop=None, resume=False):
        raise TrainingError("training diverged: non-finite loss at epoch 1, batch 1")

    manager2 = JobManager(store, train_fn=diverge, max_concurrent=1)
    (final,) = manager2.wait([manager2.submit(CONFIG).id], timeout=10)
    assert (final.status, final.error) == ("failed", "training diverged: non-finite loss at epoch 1, batch 1")
    manager.shutdown()
    manager2.shutdown()


def test_two_threads_submitting_at_once_share_one_slot(store: RunStore) -> None:
    train = ScriptedTrain(batches=5, batch_seconds=0.01)
    manager = JobManager(store, train_fn=train, max_concurrent=1)
    barrier = threading.Barrier(2)
    ids: list[str] = []

    def session() -> None:
        barrier.wait()
        ids.append(manager.submit(CONFIG).id)

    sessions = [threading.Thread(target=session) for _ in range(2)]
    for t in sessions:
        t.start()
    for t in sessions:
        t.join()
    runs = manager.wait(ids, timeout=20)
    assert len(set(ids)) == 2
    assert [r.status for r in runs] == ["done", "done"]
    assert train.max_active == 1  # never two trainings at once on one device
    assert all([e["epoch"] for e in r.curve] == [1, 2, 3] and r.epoch == 3 for r in runs)
    assert all(train.steps[r.id] == 15 for r in runs)
    manager.shutdown()


def test_invalid_options_are_refused_before_anything_is_stored(store: RunStore) -> None:
    manager = JobManager(store, train_fn=ScriptedTrain(), max_concurrent=1)
    with pytest.raises(MlipdivError, match="unknown training options: hiden"):
        manager.submit({**CONFIG, "hiden": 16})
    with pytest.raises(MlipdivError, match="epochs must be at least 1"):
        manager.submit({**CONFIG, "epochs": 0})
    assert store.list() == []
    manager.shutdown()


def test_shutdown_leaves_runs_resumable(store: RunStore) -> None:
    manager = JobManager(store, train_fn=ScriptedTrain(batches=1000, batch_seconds=0.01), max_concurrent=1)
    first, second = manager.submit(CONFIG), manager.submit(CONFIG)
    _wait_for(lambda: store.get(first.id).batch >= 1)
    manager.shutdown(interrupt=True, timeout=10)
    assert [store.get(r.id).status for r in (first, second)] == ["interrupted", "interrupted"]


def test_manager_runs_real_training_and_resume_extends_it(
    store: RunStore, tiny_dataset_path: Path, monkeypatch, capsys
) -> None:
    manager = JobManager(store)
    config = {**CONFIG, "dataset": str(tiny_dataset_path), "epochs": 2, "interactions": 1}
    (final,) = manager.wait([manager.submit(config).id], timeout=120)
    manager.shutdown()
    assert final.status == "done", final.error
    assert [e["epoch"] for e in final.curve] == [1, 2]
    assert set(final.metrics["splits"]) >= {"train", "val", "test_conformers", "test_molecules"}
    assert (final.run_dir / "metrics.json").exists() and (final.run_dir / "checkpoint.pt").exists()

    monkeypatch.setenv("MLIPDIV_HOME", str(store.root))
    assert main(["runs", "resume", final.id, "--epochs", "3"]) == 0
    assert "epoch 3/3" in capsys.readouterr().out
    longer = store.get(final.id)
    assert (longer.status, longer.n_epochs, longer.config["epochs"]) == ("done", 3, 3)
    assert [e["epoch"] for e in longer.curve] == [1, 2, 3]
    assert longer.curve[:2] == final.curve  # the first two epochs were not trained again


@pytest.mark.slow
def test_kill_9_then_resume_gives_an_unbroken_curve(tmp_path: Path, tiny_dataset_path: Path) -> None:
    home = tmp_path / "home"
    store = RunStore(home)
    epochs = 6
    config = {
        "dataset": str(tiny_dataset_path), "molecules": 6, "conformers_per_molecule": 4, "hidden": 16,
        "interactions": 1, "batch_size": 8, "epochs": epochs, "patience": epochs,
    }
    run = store.create(config)
    env = {**os.environ, "MLIPDIV_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mlipdiv.jobs.worker", run.id], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # 3 steps per epoch, a validation after every step (a short run): 4 points means epoch 2 has begun
        _wait_for(lambda: len(store.get(run.id).curve) >= 4 or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, "the training process ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed = store.get(run.id)
    assert killed.status == "interrupted" and "is gone" in killed.error
    assert 4 <= len(killed.curve) < 3 * epochs

    done = subprocess.run([sys.executable, "-m", "mlipdiv", "runs", "resume", run.id], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = store.get(run.id)
    assert final.status == "done" and final.attempt == 2
    # every epoch once or more (validation may run within an epoch), in order, no point twice
    assert sorted({e["epoch"] for e in final.curve}) == list(range(1, epochs + 1))
    keys = [(e["epoch"], e.get("step") or 0) for e in final.curve]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert final.metrics["curve"] == final.curve
    assert f"epoch {epochs}/{epochs}" in done.stdout and "epoch 1/" not in done.stdout  # nothing redone


def test_the_worker_takes_the_run_folder_lock(store: RunStore) -> None:
    holder_code = ("import sys\nfrom mlipdiv.io.runlock import run_lock\nwith run_lock(sys.argv[1]):\n"
                   "    print('locked', flush=True)\n    sys.stdin.read()\n")
    run = store.create(CONFIG)
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(run.run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    train = ScriptedTrain()
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert execute(store, run.id, train_fn=train) == "failed"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    failed = store.get(run.id)
    assert f"being written by another process (pid {holder.pid})" in failed.error and train.steps == {}


class EvaluatingCancel(ScriptedTrain):
    """Training that, once stopped, evaluates what it has and hands the metrics back on the exception (the shape the
    trainer's cancel path gives) or by returning them."""

    def __init__(self, by_return: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.by_return = by_return

    def __call__(self, cfg: Any, out_dir: Path, on_progress=None, should_stop=None, resume=False) -> dict:
        try:
            return super().__call__(cfg, out_dir, on_progress, should_stop, resume)
        except TrainingCancelled as exc:
            metrics = {"splits": {"val": {"energy_mae": 0.5, "forces_mae": 0.7}}, "curve": [{"epoch": 1, "step": 3}],
                       "stopped": "cancelled", "best_epoch": 1}
            if self.by_return:
                return metrics
            exc.metrics = metrics  # type: ignore[attr-defined]
            raise


@pytest.mark.parametrize("by_return", [False, True])
def test_a_cancelled_run_keeps_the_metrics_training_evaluated(store: RunStore, by_return: bool) -> None:
    manager = JobManager(store, train_fn=EvaluatingCancel(by_return, batches=1000, batch_seconds=0.01),
                         max_concurrent=1)
    try:
        run = manager.submit(CONFIG)
        _wait_for(lambda: store.get(run.id).batch >= 2)
        manager.cancel(run.id)
        (final,) = manager.wait([run.id], timeout=10)
    finally:
        manager.shutdown()
    assert final.status == "cancelled" and final.error is None
    assert final.metrics is not None and final.metrics["splits"]["val"]["forces_mae"] == 0.7
    assert final.metrics["stopped"] == "cancelled" and final.curve == [{"epoch": 1, "step": 3}]


def test_cancel_all_stops_queued_and_running_runs(store: RunStore) -> None:
    train = ScriptedTrain(batches=2, batch_seconds=0.01)
    manager = JobManager(store, train_fn=train, max_concurrent=1)
    try:
        finished = manager.submit({**CONFIG, "epochs": 1})
        manager.wait([finished.id], timeout=10)
        train.batches = 1000
        runs = [manager.submit(CONFIG) for _ in range(3)]
        _wait_for(lambda: store.get(runs[0].id).status == "running")
        cancelled = manager.cancel_all()
        finals = manager.wait([r.id for r in runs], timeout=10)
    finally:
        manager.shutdown()
    assert sorted(r.id for r in cancelled) == sorted(r.id for r in runs)
    assert [r.status for r in finals] == ["cancelled"] * 3
    assert store.get(finished.id).status == "done"  # a finished run is not touched
    assert not any(train.steps.get(r.id) for r in runs[1:])  # the queued ones never started
