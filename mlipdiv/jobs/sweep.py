"""Sweeps: every (M, C) point of a trade-off experiment x every seed, each a stored run, collected in one table.

:func:`plan_sweep` lists the runs (the grid comes from :func:`mlipdiv.selection.experiment_grid`); each run has a
deterministic *key*, a hash of its training config and of the dataset file's bytes, so :func:`run_sweep` can skip
runs the store already holds as ``done`` and continue the others (a stopped run resumes from its checkpoint).
Runs execute here (:class:`~mlipdiv.jobs.manager.JobManager`, as many at once as
:func:`~mlipdiv.jobs.manager.choose_concurrency` says for the plan's model, each in a process of its own) or as Ray
tasks (:mod:`mlipdiv.jobs.ray_backend`). :func:`write_results` writes ``results.csv``: one row per run and split, errors
in eV (per molecule), eV/atom and eV/angstrom, as in ``metrics.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlipdiv.io.atomic import atomic_write_json, atomic_write_text
from mlipdiv.io.table import RESULT_COLUMNS, RunRecord, runs_to_table
from mlipdiv.jobs.manager import CONCURRENCY_ENV, Concurrency, JobManager, choose_concurrency
from mlipdiv.jobs.ray_backend import check_address, run_on_ray
from mlipdiv.jobs.store import ACTIVE, Run, RunStore
from mlipdiv.names import SPLITS  # re-exported: the split names, defined once

__all__ = [
    "RESULT_COLUMNS",
    "SPLITS",
    "SweepRun",
    "SweepPlan",
    "plan_concurrency",
    "plan_point",
    "plan_sweep",
    "submit_plan",
    "run_key",
    "run_sweep",
    "results_rows",
    "write_results",
]

BACKENDS = ("local", "ray")


def file_digest(path: str | Path) -> str:
    """SHA-1 of a file's bytes (a dataset of 100 MB takes a fraction of a second)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def run_key(config: Mapping[str, Any], dataset_digest: str) -> str:
    """Deterministic id of a training: same config on the same dataset bytes, same key."""
    blob = json.dumps({"config": dict(config), "dataset_sha1": dataset_digest}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepRun:
    """One planned run: a grid point and a seed."""

    molecules: int
    conformers_per_molecule: int
    seed: int
    config: dict[str, Any]
    key: str


@dataclass
class SweepPlan:
    """What a sweep trains: ``runs`` are grid points x seeds, most molecules first."""

    experiment: str
    model: str
    dataset: str
    grid: list[tuple[int, int]]
    seeds: list[int]
    runs: list[SweepRun] = field(default_factory=list)


def plan_sweep(
    experiment: str,
    *,
    points: int,
    seeds: int | Sequence[int],
    model: str,
    epochs: int,
    budget: int | None = None,
    molecules: int | None = None,
    dataset: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Plan a sweep.

    Args:
        experiment: ``fixed-budget`` (needs ``budget``) or ``fixed-molecules`` (needs ``molecules``).
        points: at most this many (M, C) points.
        seeds: a count S (seeds 0..S-1) or the seeds themselves; a seed fixes the split, weights and batch order.
        model, epochs: training settings of every run.
        dataset: dataset file; default :func:`mlipdiv.paths.default_dataset`.
        options: further :class:`~mlipdiv.training.TrainConfig` fields for every run (``hidden``, ``device``, ...).

    Raises:
        InfeasibleRequest: the grid has no feasible point (the message gives the largest feasible values).
    """
    from mlipdiv.io.load import load_dataset
    from mlipdiv.selection import experiment_grid

    path, seed_list, base = _base_config(dataset, seeds, model, epochs, options)
    # the grid is planned on the first seed's held-out sets; the other seeds hold out as many molecules
    grid = experiment_grid(load_dataset(path), experiment, points, budget=budget, molecules=molecules,
                           spec=base.split)
    return _plan(experiment, grid, path, seed_list, base)


def plan_point(
    molecules: int,
    conformers_per_molecule: int,
    *,
    seeds: int | Sequence[int],
    model: str,
    epochs: int,
    dataset: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Plan one custom (M, C) point x seeds, keyed like a sweep's runs so the same training is never done twice.
    Feasibility is checked when a run selects its training set."""
    path, seed_list, base = _base_config(dataset, seeds, model, epochs, options)
    return _plan("custom", [(molecules, conformers_per_molecule)], path, seed_list, base)


def _base_config(
    dataset: str | Path | None, seeds: int | Sequence[int], model: str, epochs: int,
    options: Mapping[str, Any] | None,
) -> tuple[Path, list[int], Any]:
    """(dataset path, seeds, the :class:`~mlipdiv.training.TrainConfig` every run of a plan starts from)."""
    from mlipdiv.paths import default_dataset
    from mlipdiv.training import TrainConfig

    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("a sweep needs at least one seed")
    path = Path(dataset if dataset is not None else default_dataset()).resolve()
    base = TrainConfig.from_dict(
        {**dict(options or {}), "dataset": str(path), "model": model, "epochs": epochs, "seed": seed_list[0]}
    )
    return path, seed_list, base


def _plan(experiment: str, grid: Sequence[tuple[int, int]], path: Path, seed_list: list[int], base: Any) -> SweepPlan:
    from mlipdiv.training import TrainConfig

    digest = file_digest(path)
    plan = SweepPlan(experiment, base.model.name, str(path), [(int(m), int(c)) for m, c in grid], seed_list)
    for m, c in plan.grid:
        for seed in seed_list:
            config = base.to_dict() | {"budget": None, "molecules": m, "conformers_per_molecule": c, "seed": seed}
            TrainConfig.from_dict(config)  # a typo in options fails here, not in every run
            plan.runs.append(SweepRun(m, c, seed, config, run_key(config, digest)))
    return plan


def submit_plan(manager: JobManager, plan: SweepPlan) -> tuple[list[str], int]:
    """Queue a plan on a running job manager and return at once (the app's path; :func:`run_sweep` waits).

    Runs the store already holds are reused: done and active ones stay as they are, stopped ones continue from their
    checkpoint. Returns (the plan's run ids in order, how many of them the store already held).
    """
    ids, to_start, _, created = _prepare(manager.store, plan)
    for run_id in to_start:
        manager.enqueue(run_id)
    return [ids[item.key] for item in plan.runs], len(plan.runs) - created


def _prepare(store: RunStore, plan: SweepPlan) -> tuple[dict[str, str], list[str], list[str], int]:
    """Map every planned key to a run id; returns (ids by key, ids to start, ids already active elsewhere, how many
    runs were created).

    Each lookup-and-insert is one transaction on a unique key (:meth:`RunStore.find_or_create`), so two sweeps or
    app sessions submitting the same plan at once share its runs: one of them trains each, the other waits for it.
    """
    ids, to_start, elsewhere, created = {}, [], [], 0
    for item in plan.runs:
        run, what = store.find_or_create(item.config, item.key)
        if what == "created":
            created += 1
        if what in ("created", "requeued"):  # stopped or failed: again, from its checkpoint when it has one
            to_start.append(run.id)
        elif what == "active":
            elsewhere.append(run.id)  # another process trains it right now: wait for it
        ids[item.key] = run.id
    return ids, to_start, elsewhere, created


def plan_concurrency(plan: SweepPlan, requested: str | int | None = None) -> Concurrency:
    """Runs at once and threads per run for ``plan`` (:func:`~mlipdiv.jobs.manager.choose_concurrency` from its
    model, hidden size and device); ``requested``: ``auto`` or a number, default ``MLIPDIV_CONCURRENCY`` or auto."""
    import os

    if requested is None:
        requested = os.environ.get(CONCURRENCY_ENV, "auto")
    config = plan.runs[0].config if plan.runs else {}
    return choose_concurrency(requested, model=config.get("model", plan.model), hidden=config.get("hidden"),
                              device=str(config.get("device", "auto")))


def run_sweep(
    plan: SweepPlan,
    store: RunStore | None = None,
    *,
    backend: str = "local",
    address: str | None = None,
    train_fn: Callable[..., Mapping[str, Any]] | None = None,
    max_concurrent: int | None = None,
    on_finish: Callable[[Run], None] | None = None,
    concurrency: Concurrency | str | int | None = None,
) -> list[Run]:
    """Train every planned run the store does not already hold as ``done``; returns the plan's runs, in order.

    Args:
        plan: from :func:`plan_sweep`.
        store: default ``RunStore()``.
        backend: ``local`` (background threads here) or ``ray`` (one Ray task per run).
        address: Ray cluster address (``ray``); default: a local Ray instance started and stopped here.
        train_fn: training function (tests); default :func:`mlipdiv.training.train`.
        max_concurrent: runs at once for ``local`` (the same as ``concurrency=N``).
        concurrency: for ``local``: a :class:`~mlipdiv.jobs.manager.Concurrency`, ``auto`` or a number of runs at
            once; default :func:`plan_concurrency` (``MLIPDIV_CONCURRENCY`` or auto). Several runs at once train in
            processes of their own, with the cores split between them.
        on_finish: called with each run that this sweep waited for, as it ends.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    store = store if store is not None else RunStore()
    if backend == "ray" and address:
        check_address(address)  # before anything is queued
    ids, to_start, elsewhere, _ = _prepare(store, plan)
    if backend == "ray":
        run_on_ray(store, to_start, address=address, train_fn=train_fn, on_finish=on_finish)
        _wait(store, elsewhere, on_finish)
    else:
        if not isinstance(concurrency, Concurrency):
            concurrency = plan_concurrency(plan, max_concurrent if max_concurrent is not None else concurrency)
        manager = JobManager(store, train_fn=train_fn, concurrency=concurrency)
        try:
            for run_id in to_start:
                manager.enqueue(run_id)
            _wait(store, to_start + elsewhere, on_finish)
        finally:  # Ctrl-C: what runs stops at its next batch as interrupted; a rerun continues it
            manager.shutdown(interrupt=True)
    return [store.get(ids[item.key]) for item in plan.runs]


def _wait(store: RunStore, run_ids: list[str], on_finish: Callable[[Run], None] | None, poll: float = 0.5) -> None:
    waiting = set(run_ids)
    while waiting:
        for run_id in sorted(waiting):
            run = store.get(run_id)
            if run.status not in ACTIVE:
                waiting.discard(run_id)
                if on_finish is not None:
                    on_finish(run)
        if waiting:
            time.sleep(poll)


def results_rows(plan: SweepPlan, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per finished run and split (runs that did not end ``done`` have none), as
    :func:`mlipdiv.io.table.runs_to_table` makes them.

    Raises:
        MetricsError: a done run's stored metrics are not the ``metrics.json`` contract.
    """
    if len(plan.runs) != len(runs):
        raise ValueError(f"{len(runs)} runs for a plan of {len(plan.runs)}")
    records = []
    for run in runs:
        metrics = run.run_metrics() if run.status == "done" else None
        if metrics is not None:
            records.append(RunRecord(run.id, metrics, run.config))
    return runs_to_table(records, plan.experiment)


def write_results(out: str | Path, plan: SweepPlan, runs: Sequence[Run]) -> Path:
    """Write ``out/results.csv`` (and ``out/sweep.json``: the plan and each run's id and status) atomically."""
    out = Path(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(results_rows(plan, runs))
    path = atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_json(
        out / "sweep.json",
        {
            "experiment": plan.experiment,
            "model": plan.model,
            "dataset": plan.dataset,
            "grid": plan.grid,
            "seeds": plan.seeds,
            "runs": [
                {"molecules": i.molecules, "conformers_per_molecule": i.conformers_per_molecule, "seed": i.seed,
                 "key": i.key, "run_id": r.id, "status": r.status, "error": r.error}
                for i, r in zip(plan.runs, runs, strict=True)
            ],
        },
    )
    return path
