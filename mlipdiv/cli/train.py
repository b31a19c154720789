"""``python -m mlipdiv train``: train an MLIP on an M x C split and write a run folder (metrics, model, predictions)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mlipdiv.io.metrics import RunMetrics
from mlipdiv.units import mev

if TYPE_CHECKING:  # imported when used: torch and tqdm stay out of the CLI's start-up
    from tqdm import tqdm

    from mlipdiv.training.trainer import Progress

HELP = "train an interatomic potential (energy + forces) on an M x C split and report per-split errors"
REQUIRED = ("model", "epochs")
"""Settings a run must name (their defaults serve the library, not a command line)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~mlipdiv.training.TrainConfig` setting (``--model`` and ``--epochs`` without a default:
    a run names them), and the command's own."""
    from mlipdiv.cli.options import add_dataclass_arguments
    from mlipdiv.training.config import TrainConfig

    parser.add_argument("--list-models", action="store_true", help="print the available model names and exit")
    add_dataclass_arguments(parser, TrainConfig, required=REQUIRED)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is much faster when "
                        "other processes share the cores)")
    parser.add_argument("--out", help="run folder to write (config.json, metrics.json, model.pt, predictions.npz)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into an --out that holds other files (those training writes are replaced)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from mlipdiv.errors import MlipdivError

    if args.list_models:
        from mlipdiv.models.registry import model_names

        print("\n".join(model_names()))
        return 0
    length = args.epochs if args.epochs is not None else args.steps  # how long: epochs, or optimiser steps
    missing = [flag for flag, value in (("--model", args.model), ("--epochs or --steps", length), ("--out", args.out))
               if value is None]
    if missing:
        raise MlipdivError(f"train needs {', '.join(missing)} (see python -m mlipdiv train --help)")

    from mlipdiv.cli.options import from_args
    from mlipdiv.training import TrainConfig, train

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise MlipdivError("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    if args.epochs is None:  # a run of --steps: epochs follow from the steps, the setting keeps its default
        del args.epochs
    cfg = from_args(TrainConfig, args)
    from mlipdiv.models.registry import get_spec

    get_spec(cfg.model.name)  # unknown names fail before the data is loaded
    from mlipdiv.io.rundir import RunDir, check_run_folder

    # before anything is written: a user's folder is never touched without --overwrite (train() locks the folder)
    check_run_folder(args.out, cfg.to_dict(), overwrite=args.overwrite, resume=args.resume)
    bar = None if args.quiet else _ProgressBar()
    try:
        metrics = train(cfg, args.out, on_progress=bar, resume=args.resume)
    finally:
        if bar is not None:
            bar.close()
    print(report(RunMetrics.from_dict(metrics, RunDir(args.out).metrics_path), args.out))
    return 0


class _ProgressBar:
    """tqdm bar over all steps of the run; the postfix shows the last loss and validation errors (meV units)."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        total = p.steps or p.epochs * p.batches
        bar = self.bar
        if bar is None:
            done = p.step - 1 if p.step else (p.epoch - 1) * p.batches
            bar = self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, initial=done)
        if p.event == "batch":
            bar.update(1)
            bar.set_description(f"epoch {p.epoch}/{p.epochs}")
            bar.set_postfix_str(f"loss {p.loss:.4g}" + self._val, refresh=False)
        else:
            if p.val_forces_mae is not None:
                self._val = f", val E {mev(p.val_energy_mae):.0f} meV, F {mev(p.val_forces_mae):.0f} meV/A"
            bar.set_postfix_str(f"loss {p.loss:.4g}" + self._val)

    _val = ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report(metrics: RunMetrics, out: str) -> str:
    """A table of the per-split errors next to the baseline (meV per molecule, meV/atom and meV/A)."""
    lines = [
        f"{metrics.model}: {metrics.n_molecules} molecules x {metrics.conformers_per_molecule} conformers, "
        f"seed {metrics.seed}, {metrics.device}, {metrics.seconds:.0f} s -> {out}",
        f"{'split':<16}{'n':>6}{'E MAE meV':>12}{'baseline':>10}{'meV/atom':>10}{'F MAE meV/A':>13}{'baseline':>10}",
    ]
    for name, m in metrics.splits.items():
        b = metrics.baselines[name]
        if not m.n:
            lines.append(f"{name:<16}{0:>6}  (empty)")
            continue
        lines.append(
            f"{name:<16}{m.n:>6}{mev(m.energy_mae):>12.1f}{mev(b.energy_mae):>10.1f}"
            f"{mev(m.energy_mae_per_atom):>10.2f}{mev(m.forces_mae):>13.1f}{mev(b.forces_mae):>10.1f}"
        )
    return "\n".join(lines)
