"""The training loop's parts: prepare, take_step, train_one_epoch, the Checkpoint round trip, and the benchmark
timing the trainer's own step."""

from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

import pytest
import torch

from mlipdiv.errors import TrainingError
from mlipdiv.training import TrainConfig
from mlipdiv.training import trainer as trainer_module
from mlipdiv.training.trainer import Checkpoint, Diverged, TrainState, evaluate, prepare, take_step, train_one_epoch

CPU = torch.device("cpu")


@pytest.fixture
def cfg(tiny_dataset_path: Path) -> TrainConfig:
    return TrainConfig.from_flat(dataset=str(tiny_dataset_path), budget=8, molecules=4, model="schnet", hidden=16,
                                 interactions=1, epochs=2, batch_size=4, device="cpu")


def _weights(setup) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in setup.pot.model.state_dict().items()}


def test_checkpoint_round_trip_continues_bit_identically(cfg: TrainConfig, tmp_path: Path) -> None:
    setup = prepare(cfg, CPU)
    state = TrainState()
    loss = train_one_epoch(setup, cfg, 1)
    state.step = setup.steps_per_epoch
    state.record(state.step, 1, evaluate(setup, cfg).loss, setup.pot)
    state.curve.append({"step": state.step, "epoch": 1, "train_loss": loss})
    Checkpoint.capture(cfg, state, setup, 1.5).save(tmp_path / "checkpoint.pt")

    loaded = Checkpoint.load(tmp_path / "checkpoint.pt", cfg)
    assert (loaded.state.step, loaded.state.best_step, loaded.state.best_epoch, loaded.state.curve,
            loaded.state.history, loaded.seconds) == (state.step, state.step, 1, state.curve, state.history, 1.5)
    assert loaded.state.best_val == state.best_val and loaded.config == cfg.to_dict()

    fresh = prepare(cfg, CPU)  # the untrained model: restore must bring back every state
    restored = loaded.restore(fresh)
    assert restored.epoch(fresh.steps_per_epoch) == 1
    for k, v in _weights(setup).items():
        assert torch.equal(v, fresh.pot.model.state_dict()[k]), k
    assert fresh.scheduler.state_dict() == setup.scheduler.state_dict()
    assert train_one_epoch(fresh, cfg, 2) == train_one_epoch(setup, cfg, 2)  # and the next epoch is the same
    for k, v in _weights(setup).items():
        assert torch.equal(v, fresh.pot.model.state_dict()[k]), k

    with pytest.raises(TrainingError, match="hidden: 16 -> 32"):
        Checkpoint.load(tmp_path / "checkpoint.pt", cfg.replace(hidden=32))
    Checkpoint.load(tmp_path / "checkpoint.pt", cfg.replace(epochs=5, device="auto"))  # free to change


def test_take_step_refuses_a_non_finite_loss_before_the_update(cfg: TrainConfig, monkeypatch) -> None:
    setup = prepare(cfg, CPU)
    batch = setup.packed["train"].batch(torch.arange(4))
    step = take_step(setup.pot, setup.optimizer, batch, cfg, setup.scheduler)
    assert step.loss.ndim == 0 and torch.isfinite(step.loss) and torch.isfinite(step.grad_norm)
    before = _weights(setup)
    real = trainer_module.compute_loss
    monkeypatch.setattr(trainer_module, "compute_loss", lambda *a: real(*a) * float("nan"))
    with pytest.raises(Diverged, match="non-finite loss"):
        take_step(setup.pot, setup.optimizer, batch, cfg, setup.scheduler)
    assert all(torch.equal(v, setup.pot.model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(Diverged, match="non-finite loss at epoch 3, batch 1"):
        train_one_epoch(setup, cfg, 3)


def _bench_args(tiny_dataset_path: Path) -> argparse.Namespace:
    from mlipdiv.bench.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--dataset", str(tiny_dataset_path), "--hidden", "16", "--interactions", "1",
                              "--batch-size", "4", "--device", "cpu", "--steps", "1", "--warmup", "0"])


def test_benchmark_times_the_trainers_step(tiny_dataset_path: Path, tiny_dataset, monkeypatch) -> None:
    from mlipdiv.bench import train as bench

    args = _bench_args(tiny_dataset_path)
    assert (args.batch_size, args.hidden, args.cutoff) == (4, 16, 5.0)  # flags from TrainConfig, cutoff its default
    calls = []
    real = trainer_module.take_step

    def counted(*a, **kw):
        calls.append(a[3])  # the config
        return real(*a, **kw)

    monkeypatch.setattr(trainer_module, "take_step", counted)
    for name in ("schnet", "mace"):
        step = bench.ours(name, tiny_dataset, bench._pairs(tiny_dataset, 16), args, CPU)
        step(0)
        step(1)
    assert len(calls) == 4 and calls[0].model.name == "schnet" and calls[2].model.name == "mace"
    assert calls[0].optim.batch_size == 4 and calls[0].optim.lr == 1e-4

    # and imports nothing private from the library
    tree = ast.parse(inspect.getsource(bench))
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               for a in n.names if a.name.startswith("_") and (n.module or "").startswith("mlipdiv")]
    assert not private
