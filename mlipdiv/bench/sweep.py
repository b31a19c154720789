"""Sweep throughput: runs per hour of a fixed small plan with concurrency off (one run at a time on every core) and
on (``auto`` or ``--concurrency N``: several runs at once, each in its own process), side by side.

The plan is a preset's (default ``laptop-fixed-budget``: 4 points x 3 seeds of SchNet, hidden 64, 10 epochs), each
sweep into a temporary run store of its own, so nothing is reused between the two and nothing stays behind.
``--seeds``, ``--points``, ``--epochs`` and ``--budget`` shrink it for a quick look (the figures then describe that
smaller plan). ``--device cuda`` trains the same plan on the GPU (runs per GPU chosen by free memory).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

HELP = "runs per hour of a small sweep (a laptop preset) with concurrency off and on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="laptop-fixed-budget", help="the plan (default: laptop-fixed-budget)")
    parser.add_argument("--dataset", help="dataset file (default: the bundled one)")
    parser.add_argument("--device", help="cpu or cuda (default: the preset's, cpu for the laptop presets)")
    parser.add_argument("--concurrency", default="auto", metavar="auto|N",
                        help="the 'on' setting (default: auto); 'off' is always 1 run at a time")
    parser.add_argument("--seeds", type=int, help="seeds per point (default: the preset's)")
    parser.add_argument("--points", type=int, help="(M, C) points (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the preset's)")
    parser.add_argument("--budget", type=int, help="training conformers of a fixed-budget preset (default: its own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _preset(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from mlipdiv.presets import get_preset

    preset = get_preset(args.preset)
    changes: dict[str, Any] = {k: getattr(args, k) for k in ("seeds", "points", "epochs", "budget")
                               if getattr(args, k) is not None}
    if args.device:
        changes["template"] = {**preset.template, "device": args.device}
    return replace(preset, **changes)


def _time_sweeps(plans: list[Any], root: Path, concurrency: Any) -> dict[str, Any]:
    from mlipdiv.jobs.store import RunStore
    from mlipdiv.jobs.sweep import run_sweep

    store = RunStore(root)
    started = time.monotonic()
    runs = [r for plan in plans for r in run_sweep(plan, store, concurrency=concurrency)]
    seconds = time.monotonic() - started
    done = sum(r.status == "done" for r in runs)
    return {"concurrency": concurrency.describe(), "runs_at_once": concurrency.runs,
            "threads_per_run": concurrency.threads, "runs": len(runs), "done": done, "seconds": round(seconds, 1),
            "runs_per_hour": round(3600 * done / seconds, 1) if seconds > 0 else None}


def run(args: argparse.Namespace) -> int:
    from mlipdiv.analysis.study import plan_preset
    from mlipdiv.errors import InfeasibleRequest
    from mlipdiv.jobs.sweep import plan_concurrency

    preset = _preset(args)
    plans = plan_preset(preset, args.dataset)
    if not plans or not plans[0].runs:
        raise InfeasibleRequest("the plan has no runs")
    try:
        on = plan_concurrency(plans[0], args.concurrency)
    except ValueError as exc:
        raise InfeasibleRequest(f"--concurrency: {exc}") from None
    off = plan_concurrency(plans[0], 1)
    result: dict[str, Any] = {"preset": preset.name, "plan": preset.describe(),
                              "runs": sum(len(p.runs) for p in plans), "device": on.device}
    with tempfile.TemporaryDirectory(prefix="mlipdiv-bench-sweep-") as tmp:
        result["off"] = _time_sweeps(plans, Path(tmp) / "off", off)
        result["on"] = _time_sweeps(plans, Path(tmp) / "on", on)
    a, b = result["off"]["runs_per_hour"], result["on"]["runs_per_hour"]
    result["ratio"] = round(b / a, 2) if a and b else None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["plan"])
        for name in ("off", "on"):
            r = result[name]
            print(f"concurrency {name:<3}: {r['runs_per_hour']:>7.1f} runs/hour ({r['done']}/{r['runs']} done in "
                  f"{r['seconds']:.0f} s; {r['concurrency']})")
        print(f"ratio          : {result['ratio']} x (on / off)")
    return 0 if result["off"]["done"] == result["on"]["done"] == result["runs"] else 1
