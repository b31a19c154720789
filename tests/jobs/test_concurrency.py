"""Several runs at once: choose_concurrency's rule, runs in worker processes that stay independent, and results
bit-identical to the same run trained alone with the same thread count."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from mlipdiv.jobs.manager import Concurrency, JobManager, choose_concurrency
from mlipdiv.jobs.store import ACTIVE, RunStore

GIB = 2**30
CONFIG = {"molecules": 4, "conformers_per_molecule": 2, "hidden": 16, "interactions": 1, "epochs": 2,
          "device": "cpu", "model": "schnet"}


# -- the rule ---------------------------------------------------------------------------------------------------------


def test_small_cpu_runs_take_one_core_each() -> None:
    c = choose_concurrency("auto", model="schnet", hidden=64, device="cpu", cores=2, gpus=0, host_free_bytes=8 * GIB)
    assert (c.runs, c.threads, c.device, c.auto) == (2, 1, "cpu", True)
    assert c.describe() == "2 runs at once × 1 thread (auto)"
    c = choose_concurrency(None, model="painn", hidden=128, device="auto", cores=8, gpus=0, host_free_bytes=64 * GIB)
    assert (c.runs, c.threads) == (8, 1)


def test_large_models_or_one_core_train_one_at_a_time() -> None:
    for model, hidden in (("mace", 64), ("schnet", 256)):
        c = choose_concurrency("auto", model=model, hidden=hidden, device="cpu", cores=4, gpus=0,
                               host_free_bytes=64 * GIB, load=0.0)
        assert (c.runs, c.threads) == (1, 4)
    c = choose_concurrency("auto", model="schnet", hidden=64, device="cpu", cores=1, gpus=0)
    assert (c.runs, c.threads) == (1, 1)
    assert c.describe() == "1 run at once × 1 thread (auto)"


def test_free_host_memory_bounds_cpu_runs() -> None:
    c = choose_concurrency("auto", model="schnet", hidden=64, device="cpu", cores=8, gpus=0, host_free_bytes=GIB,
                           load=0.0)
    assert (c.runs, c.threads) == (1, 8)
    c = choose_concurrency("auto", model="schnet", hidden=64, device="cpu", cores=8, gpus=0,
                           host_free_bytes=int(2.5 * GIB), load=0.0)
    assert (c.runs, c.threads) == (4, 2)


def test_auto_threads_leave_out_the_cores_other_work_keeps_busy() -> None:
    large = choose_concurrency("auto", model="mace", device="cpu", cores=4, gpus=0, host_free_bytes=64 * GIB, load=3.2)
    assert (large.runs, large.threads) == (1, 1) and "3 of 4 cores busy" in large.reason
    bound = choose_concurrency("auto", model="schnet", hidden=64, device="cpu", cores=8, gpus=0, host_free_bytes=GIB,
                               load=6.0)
    assert (bound.runs, bound.threads) == (1, 2)
    idle = choose_concurrency("auto", model="mace", device="cpu", cores=4, gpus=0, load=0.7)
    assert idle.threads == 4 and "busy" not in idle.reason
    assert choose_concurrency("auto", model="mace", device="cpu", cores=2, gpus=0, load=40.0).threads == 1
    assert choose_concurrency("1", model="mace", device="cpu", cores=4, gpus=0, load=3.2).threads == 4  # set is set


def test_gpu_runs_by_free_memory() -> None:
    small = choose_concurrency("auto", model="schnet", hidden=128, device="auto", cores=16, gpus=1,
                               gpu_free_bytes=100 * GIB, load=0.0)
    assert (small.runs, small.threads, small.device) == (4, 4, "cuda")
    assert small.describe() == "4 runs at once on GPU × 4 threads (auto)"
    tight = choose_concurrency("auto", model="schnet", hidden=128, device="cuda", cores=16, gpus=2,
                               gpu_free_bytes=2 * GIB)
    assert tight.runs == 2  # one per GPU
    large = choose_concurrency("auto", model="mace", hidden=128, device="cuda", cores=16, gpus=2,
                               gpu_free_bytes=100 * GIB)
    assert large.runs == 2
    unknown = choose_concurrency("auto", model="schnet", device="cuda", cores=16, gpus=1, gpu_free_bytes=None)
    assert unknown.runs == 1


def test_a_number_overrides_and_splits_the_cores() -> None:
    c = choose_concurrency("3", model="mace", hidden=256, device="cpu", cores=8, gpus=0)
    assert (c.runs, c.threads, c.auto) == (3, 2, False)
    assert c.describe() == "3 runs at once × 2 threads (set)"
    assert choose_concurrency(1, device="cpu", cores=2, gpus=0) == Concurrency(1, 2, "cpu", auto=False, reason="set")
    assert choose_concurrency(" 1X1 ", device="cpu", cores=2, gpus=0) == Concurrency(1, 1, "cpu", auto=False,
                                                                                     reason="set")
    assert choose_concurrency("2x3", device="cpu", cores=2, gpus=0).threads == 3  # set means set
    for bad in ("0", "many", -1, True, "1x0", "1x", "x2", "1x1x1"):
        with pytest.raises(ValueError):
            choose_concurrency(bad, device="cpu", cores=2, gpus=0)


def test_manager_takes_the_environment_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLIPDIV_CONCURRENCY", "3")
    manager = JobManager(RunStore(tmp_path / "home"), train_fn=lambda *a, **k: {})
    try:
        assert (manager.max_concurrent, manager.concurrency.auto, manager.processes) == (3, False, False)
    finally:
        manager.shutdown()
    manager = JobManager(RunStore(tmp_path / "home"), max_concurrent=2, torch_threads=1)
    try:
        assert (manager.max_concurrent, manager.concurrency.threads, manager.processes) == (2, 1, True)
    finally:
        manager.shutdown()


# -- runs in processes ------------------------------------------------------------------------------------------------


def _wait_for(predicate: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_failed_or_cancelled_run_leaves_the_others_running(tmp_path: Path, tiny_dataset_path: Path) -> None:
    store = RunStore(tmp_path / "home")
    manager = JobManager(store, concurrency=Concurrency(3, 1, auto=False), processes=True)
    base = {**CONFIG, "dataset": str(tiny_dataset_path)}
    try:
        long = manager.submit({**base, "epochs": 500, "patience": 1000})
        failing = store.create({**base, "molecules": 10_000})  # infeasible: fails when it selects its training set
        manager.enqueue(failing.id)
        good = manager.submit(base)
        _wait_for(lambda: store.get(long.id).status == "running" and store.get(long.id).epoch >= 1)
        manager.cancel(long.id)
        finals = manager.wait([long.id, failing.id, good.id], timeout=300)
    finally:
        manager.shutdown(timeout=60)
    assert [r.status for r in finals] == ["cancelled", "failed", "done"], [r.error for r in finals]
    assert (good.run_dir / "metrics.json").exists()


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics without its timings (wall times differ run to run; nothing else may)."""
    out = {k: v for k, v in metrics.items() if k != "seconds"}
    out["curve"] = [{k: v for k, v in e.items() if k != "seconds"} for e in metrics.get("curve", [])]
    return out


def test_concurrent_runs_are_bit_identical_to_the_run_alone(tmp_path: Path, tiny_dataset_path: Path) -> None:
    """Same config, 1 torch thread each: alone, then four on two slots (two per long-lived worker process). (Results
    may depend on the thread count - a reduction split differently rounds differently - so it is held the same.)"""
    config = {**CONFIG, "dataset": str(tiny_dataset_path), "epochs": 3}
    alone_store, together_store = RunStore(tmp_path / "alone"), RunStore(tmp_path / "together")
    alone = JobManager(alone_store, concurrency=Concurrency(1, 1, auto=False), processes=True)
    try:
        (ref,) = alone.wait([alone.submit(config).id], timeout=300)
    finally:
        alone.shutdown()
    # two slots, four runs: each slot's long-lived process trains two, the second right after another run
    together = JobManager(together_store, concurrency=Concurrency(2, 1, auto=False), processes=True)
    try:
        runs = together.wait([together.submit(config).id for _ in range(4)], timeout=300)
    finally:
        together.shutdown()
    assert ref.status == "done" and [r.status for r in runs] == ["done"] * 4, [r.error for r in runs]
    assert len({r.pid for r in runs}) == 2  # one process per slot, not per run
    for run in runs:
        assert run.status not in ACTIVE
        assert _comparable(run.metrics) == _comparable(ref.metrics)
        assert (run.run_dir / "model.pt").read_bytes() == (ref.run_dir / "model.pt").read_bytes()


def test_a_crashed_worker_process_loses_only_its_run(tmp_path: Path, tiny_dataset_path: Path) -> None:
    """SIGKILL the slot's process mid-run: that run reads interrupted (resumable), the next one trains in a fresh
    process, and a cancel of a run that already ended does not stop the next run of the same process."""
    store = RunStore(tmp_path / "home")
    manager = JobManager(store, concurrency=Concurrency(1, 1, auto=False), processes=True)
    base = {**CONFIG, "dataset": str(tiny_dataset_path)}
    try:
        first = manager.submit({**base, "epochs": 1})
        (first,) = manager.wait([first.id], timeout=300)
        with pytest.raises(Exception, match="already done"):
            manager.cancel(first.id)  # too late: refused, and nothing reaches the process's next run
        victim = manager.submit({**base, "epochs": 500, "patience": 1000})
        after = manager.submit(base)
        _wait_for(lambda: store.get(victim.id).status == "running" and store.get(victim.id).epoch >= 1)
        pid = store.get(victim.id).pid
        assert pid == first.pid  # the same long-lived process took the next run
        os.kill(pid, signal.SIGKILL)
        finals = manager.wait([victim.id, after.id], timeout=300)
    finally:
        manager.shutdown(timeout=60)
    assert [r.status for r in finals] == ["interrupted", "done"], [r.error for r in finals]
    assert "worker process exited" in (finals[0].error or "") and "runs resume" in (finals[0].error or "")
    assert finals[1].pid != pid
