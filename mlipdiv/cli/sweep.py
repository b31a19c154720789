"""``python -m mlipdiv sweep``: every (M, C) point of an experiment x every seed as stored runs, then results.csv."""

from __future__ import annotations

import argparse
import time
from typing import Any

from mlipdiv.names import EXPERIMENTS, TEST_SPLITS
from mlipdiv.units import mev

OPTIONS = ("hidden", "strategy", "device")
"""Training settings given to every run of the sweep (besides dataset, model and epochs)."""

HELP = "train every point x seed of a trade-off experiment (here or on Ray) and write DIR/results.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, choices=list(EXPERIMENTS),
                        help="fixed-budget: M x C = --budget; fixed-molecules: M = --molecules, C = 1, 2, 4, ...")
    parser.add_argument("--budget", type=int, help="training conformers B (fixed-budget)")
    parser.add_argument("--molecules", type=int, help="training molecules M (fixed-molecules)")
    parser.add_argument("--points", type=int, default=5, help="at most this many (M, C) points (default: 5)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..S-1 per point (default: 1)")
    from mlipdiv.cli.options import add_dataclass_arguments
    from mlipdiv.training.config import TrainConfig

    # the training settings a sweep can set (their defaults are TrainConfig's; a sweep trains 30 epochs by default)
    add_dataclass_arguments(parser, TrainConfig, only=("dataset", "model", "epochs", *OPTIONS), defaults={"epochs": 30})
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="local: runs here, --concurrency at once; ray: one Ray task per run")
    parser.add_argument("--concurrency", default=None, metavar="auto|N",
                        help="runs at once with --backend local, each in its own process with the cores split "
                             "between them (default: MLIPDIV_CONCURRENCY or auto: one per core for small CPU "
                             "models, several per GPU by free memory, else one per device)")
    parser.add_argument("--address", help="existing Ray cluster (with --backend ray); default: a local Ray instance")
    parser.add_argument("--out", required=True, help="folder for results.csv and sweep.json")


def run(args: argparse.Namespace) -> int:
    from mlipdiv.errors import InfeasibleRequest
    from mlipdiv.jobs.store import RunStore
    from mlipdiv.jobs.sweep import plan_concurrency, plan_sweep, run_sweep, write_results

    if args.address and args.backend != "ray":
        raise InfeasibleRequest("--address needs --backend ray")
    if args.points < 1 or args.seeds < 1 or args.epochs < 1:
        raise InfeasibleRequest("--points, --seeds and --epochs must be at least 1")
    options: dict[str, Any] = {k: getattr(args, k) for k in OPTIONS}
    plan = plan_sweep(
        args.experiment,
        points=args.points,
        seeds=args.seeds,
        model=args.model,
        epochs=args.epochs,
        budget=args.budget,
        molecules=args.molecules,
        dataset=args.dataset,
        options=options,
    )
    try:
        concurrency = plan_concurrency(plan, args.concurrency)
    except ValueError as exc:
        raise InfeasibleRequest(f"--concurrency: {exc}") from None
    store = RunStore()
    done_before = sum(1 for item in plan.runs if (r := store.find(item.key)) is not None and r.status == "done")
    grid = ", ".join(f"{m}x{c}" for m, c in plan.grid)
    print(
        f"{plan.experiment} sweep on {plan.dataset}: points (M x C) {grid}; seeds {plan.seeds}; "
        f"{len(plan.runs)} runs, {done_before} already done; backend {args.backend}"
        + (f" ({concurrency.describe()})" if args.backend == "local" else "") + f"; store {store.root}",
        flush=True,
    )
    started = time.monotonic()
    finished = 0

    def report(r: Any) -> None:
        nonlocal finished
        finished += 1
        to_run = len(plan.runs) - done_before
        took = f" in {r.finished - r.started:.0f} s" if r.finished and r.started else ""
        line = f"[{finished}/{to_run}] run {r.id} {_label(r.config)}: {r.status}{took}"
        if r.status == "done" and r.metrics:
            splits = r.metrics.get("splits", {})
            line += "".join(
                f"; {s} forces MAE {mev(splits[s]['forces_mae']):.0f} meV/A"
                for s in TEST_SPLITS
                if s in splits and splits[s].get("forces_mae") is not None
            )
        elif r.error:
            line += f" ({r.error})"
        print(line, flush=True)

    runs = run_sweep(plan, store, backend=args.backend, address=args.address, on_finish=report,
                     concurrency=concurrency)
    path = write_results(args.out, plan, runs)
    n_done = sum(r.status == "done" for r in runs)
    print(f"wrote {path}: {n_done} of {len(runs)} runs done ({time.monotonic() - started:.0f} s)")
    return 0 if n_done == len(runs) else 1


def _label(config: dict[str, Any]) -> str:
    return f"M={config.get('molecules')} C={config.get('conformers_per_molecule')} seed={config.get('seed')}"
