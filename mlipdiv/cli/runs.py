"""``python -m mlipdiv runs list [--json] | show ID | cancel ID | resume ID [--epochs E] | repair | export DEST |
import SRC``: the run store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlipdiv.units import mev

HELP = "list, inspect, cancel or resume stored training runs (store: MLIPDIV_HOME, default ./runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    p = sub.add_parser("list", help="one line per run, oldest first")
    p.add_argument("--json", action="store_true", help="a JSON list: id, status, epoch, config and more per run")
    p.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    p = sub.add_parser("show", help="everything about one run")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="the whole run record as JSON")
    p = sub.add_parser("cancel", help="cancel a queued run now, a running one at its next batch")
    p.add_argument("id")
    p = sub.add_parser("resume", help="continue a stopped run from its last checkpoint, here, until it ends")
    p.add_argument("id")
    p.add_argument("--epochs", type=int, help="new total number of epochs (default: the run's own)")
    sub.add_parser("repair", help="rebuild the run table from the run folders (a damaged runs.db is kept aside as "
                   "runs.db.damaged-<time>)")
    p = sub.add_parser("export", help="copy every finished run to DEST/<id>/ (results, split, predictions; no "
                       "checkpoint): commit or copy them, then `runs import` them into another store")
    p.add_argument("dest")
    p.add_argument("--weights", action="store_true", help="include model.pt (the runs can then serve as calculators)")
    p.add_argument("--overwrite", action="store_true", help="replace run folders in DEST that hold other files")
    p = sub.add_parser("import", help="add the run folders `runs export` wrote to this store (sweeps of the same "
                       "plan then reuse them)")
    p.add_argument("src")
    p.add_argument("--dataset", help="the local copy of the runs' dataset (default: the shipped one); runs whose key "
                   "proves the same bytes are moved onto it")


def run(args: argparse.Namespace) -> int:
    from mlipdiv.jobs.store import RunStore

    if args.action == "repair":
        return _repair(args)
    store = RunStore()
    actions = {"list": _list, "show": _show, "cancel": _cancel, "resume": _resume, "export": _export,
               "import": _import}
    return actions[args.action](store, args)


def _export(store: Any, args: argparse.Namespace) -> int:
    from mlipdiv.jobs.transfer import export_runs

    report = export_runs(store, args.dest, weights=args.weights, overwrite=args.overwrite)
    print(f"exported {len(report.written)} finished runs to {report.dest}"
          + (f"; {len(report.unchanged)} were there already" if report.unchanged else ""))
    for line in report.skipped:
        print(f"skipped {line}")
    return 0


def _import(store: Any, args: argparse.Namespace) -> int:
    from mlipdiv.jobs.transfer import import_runs

    report = import_runs(store, args.src, dataset=args.dataset)
    print(f"imported {len(report.added)} runs into {report.root}"
          + (f" ({len(report.rebased)} moved onto the local dataset)" if report.rebased else "")
          + (f"; {len(report.present)} were there already" if report.present else ""))
    for line in report.skipped:
        print(f"skipped {line}")
    return 1 if report.skipped else 0


def _repair(args: argparse.Namespace) -> int:
    from mlipdiv.jobs.repair import repair_store

    report = repair_store()
    if report.moved_to is not None:
        print(f"{report.root / 'runs.db'} was damaged ({report.damage}); kept it as {report.moved_to}")
    counts: dict[str, int] = {}
    for status in report.added.values():
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"added {len(report.added)} runs from their folders to {report.root / 'runs.db'}"
          + (f" ({summary})" if summary else ""))
    for line in report.skipped:
        print(f"skipped {line}")
    return 0


def _unlisted_note(store: Any) -> str | None:
    folders = store.unlisted_folders()
    if not folders:
        return None
    return (f"{len(folders)} run folders in {store.root} are not in its table (runs.db lost or emptied?); "
            "`python -m mlipdiv runs repair` adds them back")


def _short(config: dict[str, Any]) -> tuple[str, str, str]:
    m, c, b = config.get("molecules"), config.get("conformers_per_molecule"), config.get("budget")
    size = f"{m}x{c}" if m and c else f"B={b} M={m}" if b else "-"
    return str(config.get("model", "-")), size, str(config.get("seed", "-"))


def _progress(r: Any) -> str:
    if r.n_epochs is None:
        return "-"
    return f"{r.epoch}/{r.n_epochs} {100 * r.fraction:3.0f}%"


def _list(store: Any, args: argparse.Namespace) -> int:
    from mlipdiv.jobs.store import format_time

    runs = store.list(status=args.status)
    if args.json:
        keys = ("id", "status", "epoch", "n_epochs", "batch", "n_batches", "config", "created", "started",
                "finished", "error", "run_dir", "host", "pid", "key")
        print(json.dumps([{k: v for k, v in r.to_dict().items() if k in keys} for r in runs], indent=2))
        return 0
    note = _unlisted_note(store)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    rows = [("ID", "STATUS", "PROGRESS", "MODEL", "MxC", "SEED", "CREATED", "NOTE")]
    for r in runs:
        note = (r.error or "").splitlines()[0][:60] if r.error else ("cancel requested" if r.cancel_requested else "")
        rows.append((r.id, r.status, _progress(r), *_short(r.config), format_time(r.created), note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _show(store: Any, args: argparse.Namespace) -> int:
    from mlipdiv.jobs.store import format_time

    r = store.get(args.id)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(f"run       {r.id}  ({r.status})")
    print(f"progress  epoch {_progress(r)}" + (f", batch {r.batch}/{r.n_batches}" if r.n_batches else ""))
    print(f"created   {format_time(r.created)}   started {format_time(r.started)}   finished {format_time(r.finished)}")
    print(f"heartbeat {format_time(r.heartbeat)}   host {r.host}   pid {r.pid}   attempt {r.attempt}")
    print(f"folder    {r.run_dir}")
    if r.error:
        print(f"error     {r.error}")
    print("config    " + ", ".join(f"{k}={v}" for k, v in sorted(r.config.items())))
    if r.curve:
        last = r.curve[-1]
        loss = last.get("train_loss")
        print(
            f"curve     {len(r.curve)} epochs; last: epoch {last.get('epoch')}"
            + (f", train loss {loss:.4g}" if isinstance(loss, (int, float)) else "")
            + _mae_text(last.get("val_energy_mae"), last.get("val_forces_mae"), "val")
        )
    if r.metrics and "splits" in r.metrics:
        print("metrics   split             energy MAE (meV/atom)   forces MAE (meV/A)   n")
        for split, m in r.metrics["splits"].items():
            e, f = m.get("energy_mae_per_atom"), m.get("forces_mae")
            e_txt = f"{mev(e):10.2f}" if e is not None else "-"
            f_txt = f"{mev(f):10.2f}" if f is not None else "-"
            print(f"          {split:<17} {e_txt:>21}   {f_txt:>18}   {m.get('n', '-')}")
    return 0


def _mae_text(energy: float | None, forces: float | None, label: str) -> str:
    parts = []
    if energy is not None:
        parts.append(f"{label} energy MAE {mev(energy):.1f} meV")
    if forces is not None:
        parts.append(f"{label} forces MAE {mev(forces):.1f} meV/A")
    return (", " + ", ".join(parts)) if parts else ""


def _cancel(store: Any, args: argparse.Namespace) -> int:
    r = store.request_cancel(args.id)
    if r.status == "cancelled":
        print(f"run {r.id} cancelled")
    else:
        print(f"run {r.id}: cancel requested; its process ({r.host}, pid {r.pid}) stops it within a few seconds")
    return 0


def _resume(store: Any, args: argparse.Namespace) -> int:
    import signal
    import threading

    from mlipdiv.errors import MlipdivError
    from mlipdiv.jobs.worker import execute, make_config

    # everything is checked before the store changes: a refused resume leaves the run exactly as it was
    if args.epochs is not None and args.epochs < 1:
        raise MlipdivError(f"--epochs must be at least 1, not {args.epochs}; run {args.id} is unchanged")
    run = store.get(args.id)
    before = run.config.get("epochs")
    if run.status == "done" and isinstance(before, int):
        if args.epochs is None:
            print(f"run {run.id} is done already ({before} epochs); nothing to resume (give --epochs more than "
                  f"{before} to train it further)")
            return 0
        if args.epochs <= before:
            raise MlipdivError(f"run {run.id} is done, trained for {before} epochs; --epochs {args.epochs} would "
                               f"train nothing: give more than {before}; the run is unchanged")
    config = {**run.config, "epochs": args.epochs} if args.epochs is not None else None
    if config is not None:
        make_config(config)
    run = store.requeue(run.id, config)
    stop, interrupted = threading.Event(), threading.Event()

    def on_term(signum: int, frame: Any) -> None:  # `kill` stops it like Ctrl-C: resumable, not cancelled
        interrupted.set()
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)

    def show(p: Any) -> None:
        if p.event == "epoch":
            print(
                f"epoch {p.epoch}/{p.epochs}  train loss {p.loss:.4g}"
                + _mae_text(p.val_energy_mae, p.val_forces_mae, "val")
                + f"  ({p.seconds:.0f} s)",
                flush=True,
            )

    print(f"resuming run {run.id} in {run.run_dir}", flush=True)
    try:
        status = execute(store, run.id, stop=stop, interrupted=interrupted, also_progress=show)
    finally:
        signal.signal(signal.SIGTERM, previous)
    final = store.get(run.id)
    if status == "done":
        print(f"run {run.id}: done")
        return 0
    print(f"run {run.id}: {status}" + (f" ({final.error})" if final.error else ""), file=sys.stderr)
    return 1
