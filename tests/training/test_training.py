"""Training: overfitting, the run folder contract, determinism, resume, cancellation and the NaN guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlipdiv.errors import TrainingCancelled, TrainingError
from mlipdiv.training import Progress, TrainConfig, train
from mlipdiv.training import trainer as trainer_module
from mlipdiv.training.metrics import METRIC_KEYS

SPLITS = ["train", "val", "test_conformers", "test_molecules"]


@pytest.fixture
def cfg(tiny_dataset_path: Path) -> TrainConfig:
    """8 molecules x 2 conformers of the tiny set, a small SchNet, CPU."""
    return TrainConfig.from_flat(
        dataset=str(tiny_dataset_path), budget=16, molecules=8, model="schnet", hidden=32, interactions=2,
        epochs=3, batch_size=8, device="cpu", eval_batch_size=64,
    )


def _without_seconds(metrics: dict) -> dict:
    out = json.loads(json.dumps(metrics))
    out.pop("seconds")
    for row in out["curve"]:
        row.pop("seconds")
    return out


def test_run_folder_contract(cfg: TrainConfig, tmp_path: Path) -> None:
    events: list[Progress] = []
    metrics = train(cfg, tmp_path, on_progress=events.append)
    assert set(metrics) == {"version", "model", "n_molecules", "conformers_per_molecule", "seed", "device", "seconds",
                            "splits", "baselines", "curve", "steps_run", "epochs_run", "best_step", "best_epoch",
                            "converged", "excluded"}
    assert (metrics["steps_run"], metrics["epochs_run"]) == (6, 3) and 1 <= metrics["best_epoch"] <= 3
    assert metrics["best_epoch"] == (metrics["best_step"] + 1) // 2 and isinstance(metrics["converged"], bool)
    assert (metrics["model"], metrics["n_molecules"], metrics["conformers_per_molecule"]) == ("schnet", 8, 2)
    assert metrics["device"] == "cpu"
    for table in ("splits", "baselines"):
        assert list(metrics[table]) == SPLITS
        for m in metrics[table].values():
            assert tuple(m) == METRIC_KEYS and m["n"] > 0
    assert metrics["splits"]["train"]["n"] == 16
    # a short run validates after every step (about 25 points per run, at least one per epoch): sub-epoch points
    assert [c["epoch"] for c in metrics["curve"]] == [1, 1, 2, 2, 3, 3]
    assert [c["step"] for c in metrics["curve"]] == [1, 2, 3, 4, 5, 6]
    assert set(metrics["curve"][0]) == {"step", "epoch", "lr", "train_loss", "val_energy_mae", "val_forces_mae",
                                        "seconds"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg

    # the baseline is the element-linear fit with zero forces
    f = metrics["baselines"]["train"]
    assert f["forces_mae"] > 0.1 and f["energy_mae"] > 0

    # progress: 2 batches per epoch, each followed by its validation ("epoch" event)
    kinds = [(e.event, e.epoch, e.batch, e.step) for e in events]
    assert kinds[:3] == [("batch", 1, 1, 1), ("epoch", 1, 1, 1), ("batch", 1, 2, 2)] and len(events) == 12
    assert events[1].val_forces_mae == metrics["curve"][0]["val_forces_mae"]

    pred = np.load(tmp_path / "predictions.npz")
    assert set(pred.files) >= {"mol_id", "conf_idx", "split", "E_true", "E_pred", "n_atoms", "forces_mae"}
    for name in ("val", "test_conformers", "test_molecules"):
        rows = pred["split"] == name
        assert rows.sum() == metrics["splits"][name]["n"]
        assert np.mean(np.abs(pred["E_pred"][rows] - pred["E_true"][rows])) == pytest.approx(
            metrics["splits"][name]["energy_mae"]
        )
        assert np.mean(np.abs(pred["E_baseline"][rows] - pred["E_true"][rows])) == pytest.approx(
            metrics["baselines"][name]["energy_mae"]
        )
    assert "train" not in set(pred["split"])

    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert model["name"] == "schnet" and model["hparams"]["elements"] == sorted(model["hparams"]["elements"])


def test_overfits_a_tiny_set(cfg: TrainConfig, tmp_path: Path) -> None:
    cfg = cfg.replace(budget=8, molecules=4, epochs=40, batch_size=4, lr=5e-3, hidden=48, warmup_epochs=2)
    metrics = train(cfg, tmp_path)
    losses = [c["train_loss"] for c in metrics["curve"]]
    assert min(losses[-5:]) < losses[0] / 20
    train_err, base = metrics["splits"]["train"], metrics["baselines"]["train"]
    assert train_err["forces_mae"] < 0.3 * base["forces_mae"]
    assert train_err["energy_mae"] < base["energy_mae"]


def test_same_seed_same_metrics(cfg: TrainConfig, tmp_path: Path) -> None:
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert _without_seconds(a) == _without_seconds(b)
    c = train(cfg.replace(seed=1), tmp_path / "c")
    assert _without_seconds(c)["splits"] != _without_seconds(a)["splits"]


def test_should_stop_cancels_within_one_batch_and_resume_continues(cfg: TrainConfig, tmp_path: Path) -> None:
    full = train(cfg, tmp_path / "full")

    events: list[Progress] = []
    with pytest.raises(TrainingCancelled, match="steps 1-2 are saved") as cancelled:
        train(cfg, tmp_path / "run", on_progress=events.append,
              should_stop=lambda: len([e for e in events if e.event == "batch"]) >= 3)
    assert [(e.event, e.epoch, e.batch) for e in events][-1] == ("batch", 2, 1)  # no batch ran after the request
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 2
    # the cancelled run's best weights (of steps 1-2) are scored on every split, and nothing is written for them
    partial = cancelled.value.metrics
    assert partial is not None and partial["steps_run"] == 3 and partial["best_step"] in (1, 2)
    assert partial["splits"]["test_molecules"]["n"] == full["splits"]["test_molecules"]["n"]
    assert not (tmp_path / "run" / "metrics.json").exists()

    resumed_events: list[Progress] = []
    resumed = train(cfg, tmp_path / "run", on_progress=resumed_events.append, resume=True)
    assert [c["step"] for c in resumed["curve"]] == [1, 2, 3, 4, 5, 6]
    assert resumed_events[0].epoch == 2 and resumed_events[0].batch == 1 and resumed_events[0].step == 3
    # the interrupted-and-resumed run is the uninterrupted one
    assert _without_seconds(resumed) == _without_seconds(full)

    # resuming a finished run re-evaluates without training; a changed configuration is refused
    again = train(cfg, tmp_path / "run", resume=True)
    assert _without_seconds(again) == _without_seconds(full)
    longer = train(cfg.replace(epochs=4), tmp_path / "run", resume=True)  # more epochs: only the new one runs
    assert [c["epoch"] for c in longer["curve"]] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert longer["curve"][:6] == resumed["curve"]
    with pytest.raises(TrainingError, match="lr"):
        train(cfg.replace(lr=1e-4), tmp_path / "run", resume=True)
    with pytest.raises(TrainingError, match="does not exist"):
        train(cfg, tmp_path / "nothing", resume=True)


def test_nan_guard_keeps_last_good_checkpoint(cfg: TrainConfig, tmp_path: Path, monkeypatch) -> None:
    real = trainer_module.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss  # epoch 2, batch 2

    monkeypatch.setattr(trainer_module, "compute_loss", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 2, batch 2.*step 3\) is kept"):
        train(cfg, tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and all(torch.isfinite(v).all() for v in saved["model"].values())
    assert not (tmp_path / "model.pt").exists()


def test_huge_learning_rate_is_stopped_clearly(cfg: TrainConfig, tmp_path: Path) -> None:
    """The NaN guard behind the range checks: a divergence they cannot foresee still ends in a clear message."""
    diverging = cfg.replace(grad_clip=1e30, epochs=4, warmup_epochs=0)
    diverging.optim.lr = 1e12  # past validate(), which refuses lr > 1 at construction
    with pytest.raises(TrainingError, match="non-finite .* Try a lower --lr"):
        train(diverging, tmp_path)


@pytest.mark.parametrize("model", ["painn", "mace"])
def test_every_model_trains(model: str, cfg: TrainConfig, tmp_path: Path) -> None:
    metrics = train(cfg.replace(model=model, epochs=2, hidden=16, interactions=1 if model == "mace" else 2), tmp_path)
    assert metrics["model"] == model and len(metrics["curve"]) == metrics["steps_run"] == 4
    assert all(np.isfinite(c["train_loss"]) for c in metrics["curve"])
    assert metrics["curve"][-1]["train_loss"] < metrics["curve"][0]["train_loss"] * 1.5


def test_device_choice_is_explicit_about_a_missing_gpu() -> None:
    import torch

    from mlipdiv.errors import MlipdivError
    from mlipdiv.training.trainer import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda" and resolve_device("cuda").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(MlipdivError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_element_beyond_the_model_table_is_refused_by_name(cfg: TrainConfig, tmp_path: Path) -> None:
    """Fm (Z=100) is an element, but SchNet's and PaiNN's tables stop at Z=99: one message, not an IndexError."""
    from dataclasses import replace as with_fields

    from mlipdiv.errors import MlipdivError
    from mlipdiv.io.dataset import Dataset
    from mlipdiv.io.hdf5 import read_hdf5, write_hdf5

    ds = read_hdf5(cfg.dataset)
    mols = []
    for m in ds.molecules:
        z = m.atomic_numbers.copy()
        z[-1] = 100
        mols.append(with_fields(m, atomic_numbers=z))
    path = write_hdf5(Dataset(mols, attrs=dict(ds.attrs)), tmp_path / "fm.h5")
    for model in ("schnet", "painn"):
        with pytest.raises(MlipdivError, match=rf"model {model} supports atomic numbers 1..99 only; the data has Fm "
                                               r"\(Z=100\): .* or use --model mace"):
            train(cfg.replace(dataset=str(path), model=model, epochs=1), tmp_path / model)


def test_molecules_beyond_the_training_size_limit_are_refused(cfg: TrainConfig, tmp_path: Path, monkeypatch) -> None:
    from mlipdiv.limits import MAX_ATOMS_TRAIN
    from mlipdiv.training import data as data_module

    assert 100 <= MAX_ATOMS_TRAIN <= 2000  # the documented limit (README, Limits)
    monkeypatch.setattr(data_module, "MAX_ATOMS_TRAIN", 5)  # every molecule of the tiny set is larger
    with pytest.raises(TrainingError, match=r"molecule \S+ \(\S+\) has \d+ atoms; training takes at most 5 atoms"):
        train(cfg, tmp_path)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("lr", 1e6, "--lr"),
        ("lr", 0.0, "--lr"),
        ("lr", float("nan"), "--lr"),
        ("cutoff", 1e-9, "--cutoff"),
        ("cutoff", 50.0, "--cutoff"),
        ("energy_weight", -1.0, "--energy-weight"),
        ("forces_weight", float("inf"), "--forces-weight"),
        ("weight_decay", -1e-3, "--weight-decay"),
        ("grad_clip", 0.0, "--grad-clip"),
        ("batch_size", 0, "--batch-size"),
        ("batch_size", 2.5, "--batch-size"),
        ("epochs", 0, "--epochs"),
        ("hidden", 0, "--hidden"),
        ("interactions", 0, "--interactions"),
        ("test_molecules", float("nan"), "--test-molecules"),
        ("val_per_molecule", -1, "--val-per-molecule"),
    ],
)
def test_config_refuses_out_of_range_values(cfg: TrainConfig, field: str, value: object, flag: str) -> None:
    from mlipdiv.cli import user_message
    from mlipdiv.errors import InvalidSetting

    with pytest.raises(InvalidSetting, match=rf"^{field} ") as info:  # the library names the field ...
        cfg.replace(**{field: value})
    assert info.value.field == field and user_message(info.value).startswith(f"{flag} ")  # ... the CLI its flag
    with pytest.raises(InvalidSetting, match=rf"^{field} "):  # a config.json written by hand is checked the same way
        TrainConfig.from_dict({**cfg.to_dict(), field: value})


def test_config_range_edges_and_weights(cfg: TrainConfig) -> None:
    from mlipdiv.errors import InvalidSetting

    for ok in ({"lr": 1.0}, {"lr": None}, {"cutoff": 1.0}, {"cutoff": 20.0}, {"energy_weight": 0.0},
               {"forces_weight": 0.0}, {"grad_clip": float("inf")}, {"test_molecules": 0}, {"test_molecules": 2}):
        cfg.replace(**ok)
    with pytest.raises(InvalidSetting, match="both 0"):
        cfg.replace(energy_weight=0.0, forces_weight=0.0)


def test_train_cli_prints_one_line_for_out_of_range_values(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    from mlipdiv.cli import main

    base = ["train", "--dataset", str(tiny_dataset_path), "--budget", "16", "--molecules", "8", "--model", "schnet",
            "--epochs", "1", "--out", str(tmp_path / "run")]
    for extra, flag in ((["--lr", "1e6"], "--lr"), (["--cutoff", "1e-9"], "--cutoff"),
                        (["--energy-weight", "-1"], "--energy-weight"),
                        (["--test-molecules", "nan"], "--test-molecules")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} ") and err.count("\n") == 1
    assert not (tmp_path / "run" / "model.pt").exists()


# ------------------------------------------------------------------ train --out: foreign folders and one writer

LOCK_HOLDER = """
import sys
from mlipdiv.io.runlock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def _train_argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(dataset), "--budget", "8", "--molecules", "4", "--model", "schnet",
            "--hidden", "16", "--interactions", "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
            "--quiet", "--out", str(out), *extra]


def test_train_refuses_a_foreign_out_folder_and_keeps_its_files(tiny_dataset_path: Path, tmp_path: Path,
                                                                 capsys) -> None:
    from mlipdiv.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.pt").write_text("my own model")
    (out / "notes.txt").write_text("keep me")
    assert main(_train_argv(tiny_dataset_path, out)) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err and len(err.strip().splitlines()) == 1
    assert (out / "model.pt").read_text() == "my own model" and sorted(p.name for p in out.iterdir()) == [
        "model.pt", "notes.txt"]  # untouched: not even a lock file

    assert main(_train_argv(tiny_dataset_path, out, "--overwrite")) == 0
    assert (out / "metrics.json").exists() and (out / "notes.txt").read_text() == "keep me"
    assert (out / "model.pt").read_bytes() != b"my own model"

    again = tmp_path / "run"
    assert main(_train_argv(tiny_dataset_path, again)) == 0
    assert main(_train_argv(tiny_dataset_path, again)) == 0  # its own run folder, same config: accepted
    assert main(_train_argv(tiny_dataset_path, again, "--resume", "--epochs", "2")) == 0  # resume still works
    assert json.loads((again / "metrics.json").read_text())["curve"][-1]["epoch"] == 2
    capsys.readouterr()
    assert main(_train_argv(tiny_dataset_path, again, "--seed", "1")) == 2  # another config's results
    assert "another configuration" in capsys.readouterr().err


def test_train_out_that_cannot_be_a_folder_is_one_line(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    from mlipdiv.cli import main

    (tmp_path / "afile").write_text("mine")
    for out, fragment in ((tmp_path / "afile", "is a file, not a run folder"),
                          (tmp_path / "afile" / "run", "afile/run"),
                          (Path("/proc/mlipdiv-test-run"), "/proc/mlipdiv-test-run")):
        assert main(_train_argv(tiny_dataset_path, out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_run_folder_has_one_writer(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    import subprocess
    import sys
    import threading

    from mlipdiv.cli import main
    from mlipdiv.io.runlock import RunFolderBusy, run_lock
    from mlipdiv.paths import PROJECT_ROOT

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            with run_lock(out):
                pass
        assert main(_train_argv(tiny_dataset_path, out)) == 2
        err = capsys.readouterr().err
        assert f"{out} is being written by another process (pid {holder.pid})" in err and "--out" in err
        assert not (out / "metrics.json").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with run_lock(out):  # released with its process
        with run_lock(out):  # re-entrant in one thread (the store's worker, then train())
            pass
        refused: list[BaseException] = []

        def other_thread() -> None:
            try:
                with run_lock(out):
                    pass
            except RunFolderBusy as exc:
                refused.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert len(refused) == 1
    with run_lock(out):  # and free again
        pass


def test_steps_set_the_training_length_whatever_the_training_set_size(cfg: TrainConfig, tmp_path: Path) -> None:
    """``steps`` counts optimiser steps: a run of 5 steps on 2 batches per epoch ends inside epoch 3, validates on
    its own cadence (``eval_every``) and at the last step, and an interrupted one resumes to the same result."""
    short = cfg.replace(steps=5, eval_every=2)
    full = train(short, tmp_path / "full")
    assert (full["steps_run"], full["epochs_run"]) == (5, 3)
    assert [c["step"] for c in full["curve"]] == [2, 4, 5] and [c["epoch"] for c in full["curve"]] == [1, 2, 3]
    assert full["best_step"] in (2, 4, 5) and full["excluded"]["train"] == 0

    events: list[Progress] = []
    with pytest.raises(TrainingCancelled):
        train(short, tmp_path / "run", on_progress=events.append,
              should_stop=lambda: len([e for e in events if e.event == "batch"]) >= 3)
    resumed = train(short, tmp_path / "run", resume=True)
    assert _without_seconds(resumed) == _without_seconds(full)
    # the same steps on a training set twice the size: the same number of steps, fewer epochs
    twice = train(short.replace(budget=32, molecules=8), tmp_path / "twice")
    assert (twice["steps_run"], twice["epochs_run"]) == (5, 2)


def test_convergence_rule_reads_the_validation_force_error() -> None:
    from mlipdiv.io.metrics import CurvePoint, forces_converged, late_gain

    def curve(forces, energy=lambda s: 1.0):
        return [CurvePoint(epoch=s, step=s, val_forces_mae=forces(s), val_energy_mae=energy(s))
                for s in range(10, 101, 10)]

    flat = curve(lambda s: 1.0 + 0.001 * (100 - s) / 100)  # the last quarter gains 0.03 %
    falling = curve(lambda s: 2.0 - s / 100)  # still falling fast at the end
    assert forces_converged(flat, 100) and not forces_converged(falling, 100)
    assert late_gain(falling, 100) == pytest.approx(1.3 / 1.0 - 1)  # best of steps <= 75: 1.3; at the end: 1.0
    # energies still falling do not change the flag; late_gain says by how much they fell
    energy_falling = curve(lambda s: 1.0, energy=lambda s: 2.0 - s / 100)
    assert forces_converged(energy_falling, 100)
    assert late_gain(energy_falling, 100, "val_energy_mae") == pytest.approx(0.3)
    assert not forces_converged(curve(lambda s: 1.0)[-1:], 100)  # nothing validated before the last quarter
