"""A two-point sweep on a local Ray instance, real training, results in the same store and table."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from mlipdiv.jobs.store import RunStore  # noqa: E402
from mlipdiv.jobs.sweep import plan_sweep, run_sweep, write_results  # noqa: E402
from mlipdiv.paths import PROJECT_ROOT  # noqa: E402


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, kernel start time) of every live (non-zombie) process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                out[int(entry.name)] = (int(fields[1]), fields[19])
    return out


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root``."""
    procs, found, frontier = _processes(), {}, {root}
    while frontier:
        frontier = {p for p, (pp, _) in procs.items() if pp in frontier and p not in found}
        found.update((p, procs[p][1]) for p in frontier)
    return found


def _survivors(tracked: dict[int, str], timeout: float = 60.0) -> list[str]:
    """The tracked processes still alive after up to ``timeout`` seconds (their command lines)."""
    deadline = time.monotonic() + timeout
    while True:
        procs = _processes()
        alive = [p for p, start in tracked.items() if p in procs and procs[p][1] == start]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    out = []
    for p in alive:
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:100].decode()
            out.append(f"{p}: {cmdline}")
        except OSError:
            pass
    return out


def train_noting_pid(cfg, out_dir, **kwargs):
    """The real training, leaving behind which process ran it."""
    from mlipdiv.training import train

    Path(out_dir, "pid.txt").write_text(str(os.getpid()))
    return train(cfg, out_dir, **kwargs)


@pytest.mark.slow
def test_two_point_sweep_on_local_ray(tmp_path: Path, tiny_dataset_path: Path) -> None:
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this module
    store = RunStore(tmp_path / "home")
    plan = plan_sweep("fixed-budget", budget=8, points=2, seeds=1, model="schnet", epochs=2,
                      dataset=tiny_dataset_path, options={"hidden": 16, "interactions": 1})
    assert len(plan.runs) == 2
    before = _descendants(os.getpid())
    runs = run_sweep(plan, store, backend="ray", train_fn=train_noting_pid)
    assert not ray.is_initialized()  # the local instance it started is gone again
    started = {p: s for p, s in _descendants(os.getpid()).items() if p not in before}
    assert _survivors(started) == []  # ... with all of its processes, agents included
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    for r in runs:  # owned by the Ray worker that trained it (so its death would read as interrupted)
        assert r.pid == int((r.run_dir / "pid.txt").read_text()) != os.getpid()
    assert all([e["epoch"] for e in r.curve] == [1, 2] and (r.run_dir / "metrics.json").exists() for r in runs)
    write_results(tmp_path / "out", plan, runs)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 and {r["run_id"] for r in rows} == {r.id for r in runs}

    again = run_sweep(plan, store, backend="ray")  # nothing left to do
    assert [r.id for r in again] == [r.id for r in runs] and len(store.list()) == 2


DRIVER = """
from mlipdiv.jobs.ray_backend import init_ray
import ray
init_ray()
print(ray.get(ray.remote(lambda: "ready").remote()), flush=True)
import time
time.sleep(600)
"""


@pytest.mark.slow
def test_no_ray_process_outlives_a_killed_driver() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    tracked: dict[int, str] = {}
    try:
        assert driver.stdout.readline().strip() == "ready"
        tracked = _descendants(driver.pid)
        assert len(tracked) >= 4  # gcs, raylet, agents, a worker (and the reaper)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    left = _survivors(tracked)
    for line in left:  # do not leave them to the next test either
        os.kill(int(line.split(":")[0]), signal.SIGKILL)
    assert left == []
