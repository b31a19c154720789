"""A two-point sweep on a local Ray instance, real training, results in the same store and table."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from mlipdiv.jobs.store import RunStore  # noqa: E402
from mlipdiv.jobs.sweep import plan_sweep, run_sweep, write_results  # noqa: E402


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
    runs = run_sweep(plan, store, backend="ray", train_fn=train_noting_pid)
    assert not ray.is_initialized()  # the local instance it started is gone again
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
