"""RunMetrics (the metrics.json contract) and runs_to_table (the one results-row builder)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlipdiv.errors import DatasetError
from mlipdiv.io.metrics import METRICS_VERSION, CurvePoint, MetricsError, RunMetrics, SplitErrors
from mlipdiv.io.rundir import RunDir
from mlipdiv.io.table import (
    EXTRA_COLUMNS,
    RESULT_COLUMNS,
    RunRecord,
    extra_columns,
    runs_to_table,
)


def _metrics(m: int = 8, c: int = 2, seed: int = 0) -> RunMetrics:
    err = SplitErrors(0.1, 0.01, 0.12, 0.2, 0.25, 4)
    return RunMetrics(
        "schnet", m, c, seed, device="cpu", seconds=1.5,
        splits={"train": err, "val": err, "test_conformers": replace(err, forces_mae=0.3),
                "test_molecules": replace(err, forces_mae=0.4)},
        baselines={s: SplitErrors(1.0, 0.1, 1.2, 2.0, 2.5, 4) for s in ("train", "val", "test_conformers",
                                                                       "test_molecules")},
        curve=[CurvePoint(1, 1e-3, 0.5, 0.1, 0.2, 0.7), CurvePoint(2, 5e-4, 0.4, None, None, 1.4)],
    )


def test_round_trip() -> None:
    m = _metrics()
    text = m.to_json()
    assert json.loads(text)["version"] == METRICS_VERSION
    assert RunMetrics.from_json(text) == m
    assert RunMetrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def _as_version_1(d: dict) -> dict:
    """What a version 1 file held: no training length, no composition-free energy error, no curve steps."""
    for key in ("version", "steps_run", "epochs_run", "best_step", "best_epoch", "converged", "excluded"):
        d.pop(key, None)
    for table in ("splits", "baselines"):
        for errors in d[table].values():
            errors.pop("energy_rel_mae")
    for point in d["curve"]:
        point.pop("step")
    return d


def test_version_absent_is_version_1() -> None:
    d = _as_version_1(_metrics().to_dict())
    assert RunMetrics.from_dict(d) == _metrics()
    d["version"] = 1
    assert RunMetrics.from_dict(d) == _metrics()
    d["steps_run"] = 5  # a version 2 key in a version 1 file is not understood
    with pytest.raises(MetricsError, match="unknown steps_run"):
        RunMetrics.from_dict(d)


def test_version_3_round_trips_the_training_length() -> None:
    m = replace(_metrics(), steps_run=40, epochs_run=5, best_step=32, best_epoch=4, converged=True,
                excluded={"test_molecules": 3},
                splits={**_metrics().splits, "val": replace(_metrics().splits["val"], energy_rel_mae=0.05)},
                curve=[replace(c, step=8 * c.epoch) for c in _metrics().curve])
    assert RunMetrics.from_json(m.to_json()) == m


def test_a_version_2_flag_is_recomputed_with_the_force_rule() -> None:
    """Version 2 judged convergence by the validation loss; read today, its flag is the force-MAE rule's."""
    still_falling = [replace(c, step=10 * (i + 1), val_forces_mae=1.0 - 0.1 * i)
                     for i, c in enumerate(_metrics().curve)]  # 2 points: the last (step 20) gains 11 %
    m = replace(_metrics(), steps_run=20, epochs_run=2, best_step=20, best_epoch=2, converged=True,
                curve=still_falling)
    d = m.to_dict()
    assert RunMetrics.from_dict(d).converged is True  # version 3: the file's own flag
    d["version"] = 2
    assert RunMetrics.from_dict(d).converged is False


@pytest.mark.parametrize("damage, words", [
    (lambda d: d.update(version=4), "version 4"),
    (lambda d: d.update(converged="yes"), "converged"),
    (lambda d: d.update(version="1"), "version '1'"),
    (lambda d: d.pop("splits"), "missing splits"),
    (lambda d: d.update(extra=1), "unknown extra"),
    (lambda d: d.update(n_molecules="8"), "n_molecules"),
    (lambda d: d.update(seed=True), "seed"),
    (lambda d: d.update(seconds=None), "seconds"),
    (lambda d: d.update(curve={}), "curve"),
    (lambda d: d["splits"].update(test_atoms=d["splits"]["val"]), "unknown split test_atoms"),
    (lambda d: d["splits"]["val"].pop("n"), "splits.val: missing n"),
    (lambda d: d["baselines"]["val"].update(forces_mae="x"), "baselines.val.forces_mae"),
    (lambda d: d["curve"][0].pop("lr"), "curve[0]: missing lr"),
    (lambda d: d["curve"].append(3), "curve[2]"),
])
def test_rejects_what_it_does_not_understand(damage, words: str) -> None:
    d = _metrics().to_dict()
    damage(d)
    with pytest.raises(MetricsError, match="some/metrics.json") as info:
        RunMetrics.from_dict(d, "some/metrics.json")
    assert words in str(info.value)
    assert isinstance(info.value, DatasetError)


@pytest.mark.parametrize("text", [b"", b"{", b"[1, 2]", b"null", b"\xff\xfe", b'"metrics"'])
def test_rejects_garbage(tmp_path: Path, text: bytes) -> None:
    run = RunDir(tmp_path)
    run.metrics_path.write_bytes(text)
    with pytest.raises(MetricsError, match=str(run.metrics_path)):
        run.read_metrics()


def test_reads_what_training_writes_and_what_the_old_code_wrote(tiny_dataset_path: Path, tmp_path: Path) -> None:
    from mlipdiv.training import TrainConfig, train

    cfg = TrainConfig.from_flat(dataset=str(tiny_dataset_path), budget=8, molecules=4, model="schnet", hidden=16,
                      interactions=1, epochs=1, batch_size=8, device="cpu", eval_batch_size=64)
    returned = train(cfg, tmp_path)
    run = RunDir(tmp_path)
    metrics = run.read_metrics()
    assert metrics.to_dict() == returned == json.loads(run.metrics_path.read_text())
    assert (metrics.model, metrics.n_molecules, metrics.conformers_per_molecule) == ("schnet", 4, 2)
    assert [c.epoch for c in metrics.curve] == [1]
    # the code before RunMetrics wrote the same object without "version"
    old = _as_version_1(json.loads(run.metrics_path.read_text()))
    run.metrics_path.write_text(json.dumps(old, indent=2) + "\n")
    assert run.read_metrics().splits.keys() == metrics.splits.keys()
    assert run.read_metrics().steps_run is None and run.read_metrics().version == METRICS_VERSION


# --------------------------------------------------------------------------------------------- results rows


def _legacy_sweep_rows(experiment: str, runs: list) -> list[dict]:
    """What jobs/sweep.py wrote per run before runs_to_table (plan values are the run's config)."""
    rows = []
    for run in runs:
        splits = run.metrics.get("splits", {})
        for split in ("train", "val", "test_conformers", "test_molecules"):
            if split not in splits:
                continue
            m = splits[split]
            rows.append({"experiment": experiment, "n_molecules": run.config["molecules"],
                         "conformers_per_molecule": run.config["conformers_per_molecule"],
                         "seed": run.config["seed"], "model": run.config["model"], "split": split,
                         "energy_mae": m.get("energy_mae"), "energy_mae_per_atom": m.get("energy_mae_per_atom"),
                         "forces_mae": m.get("forces_mae"), "run_id": run.id})
    return rows


def _run(run_id: str, m: int, c: int, seed: int) -> SimpleNamespace:
    metrics = _metrics(m, c, seed)
    config = {"model": "schnet", "molecules": m, "conformers_per_molecule": c, "seed": seed, "strategy": "maxmin"}
    return SimpleNamespace(id=run_id, status="done", config=config, metrics=metrics.to_dict(), created=0.0)


def test_runs_to_table_is_what_the_sweep_wrote() -> None:
    runs = [_run("a", 8, 2, 0), _run("b", 4, 4, 1)]
    records = [RunRecord(r.id, RunMetrics.from_dict(r.metrics), r.config) for r in runs]
    rows = runs_to_table(records, "fixed-budget")
    assert rows == _legacy_sweep_rows("fixed-budget", runs)
    assert all(tuple(r) == RESULT_COLUMNS for r in rows)
    study = runs_to_table(records, "x", ("test_molecules",), study=True)
    assert [(r["budget"], r["strategy"], r["split"]) for r in study] == [(16, "maxmin", "test_molecules")] * 2


def test_the_three_tables_agree() -> None:
    from mlipdiv.viz import live

    runs = [_run("a", 8, 2, 0), _run("b", 4, 4, 1), SimpleNamespace(id="c", status="running", config={},
                                                                    metrics=None, created=0.0)]
    study = live.study_rows(runs, experiment="fixed-budget")
    sweep_like = runs_to_table([RunRecord(r.id, RunMetrics.from_dict(r.metrics), r.config) for r in runs[:2]],
                               "fixed-budget", ("test_conformers", "test_molecules"))
    assert [{k: r[k] for k in RESULT_COLUMNS} for r in study] == sweep_like
    extra = extra_columns(RunMetrics.from_dict(runs[0].metrics), "test_molecules")
    assert tuple(extra) == EXTRA_COLUMNS
    assert {k: extra[k] for k in EXTRA_COLUMNS[:4]} == {"baseline_forces_mae": 2.0,
                                                         "baseline_energy_mae_per_atom": 0.1, "seconds": 1.5,
                                                         "n_eval": 4}
    assert all(math.isnan(extra[k]) for k in EXTRA_COLUMNS[4:])  # a version 1 run: no training length
    longer = replace(RunMetrics.from_dict(runs[0].metrics), steps_run=40, epochs_run=5, best_step=32, best_epoch=4,
                     converged=True, excluded={"test_molecules": 3})
    extra = extra_columns(longer, "test_molecules", {"steps": 40})
    assert (extra["steps"], extra["steps_run"], extra["best_step"], extra["converged"], extra["n_excluded"]) == (
        40, 40, 32, True, 3)
    assert all(math.isnan(v) for v in extra_columns(None, "val").values())
