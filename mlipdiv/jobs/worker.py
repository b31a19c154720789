"""How one run executes: claim it, keep a heartbeat, stream progress into the store, honour cancel, record the end.

:func:`execute` runs a stored run in the calling thread (the job manager's threads, a Ray task, ``runs resume``).
``python -m mlipdiv.jobs.worker RUN_ID`` runs one in a process of its own, so that killing that process (even with
SIGKILL) loses at most the epoch in progress: the run then reads as ``interrupted`` and resumes from its last
checkpoint (``--threads``: torch threads of the run; SIGUSR1 cancels it, SIGTERM interrupts it).
``python -m mlipdiv.jobs.worker --serve`` is the job manager's long-lived worker of one slot when it trains several
runs at once: it imports torch once and trains the runs its standard input names one after another (:func:`serve`),
so a run no longer pays a process start.

The store object only needs the worker-side methods of :class:`~mlipdiv.jobs.store.RunStore` (``claim``,
``heartbeat``, ``progress``, ``finish``, ``get``), so a Ray task can pass a proxy that forwards them to the driver.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from mlipdiv.errors import MlipdivError, TrainingCancelled
from mlipdiv.io.metrics import CurvePoint, RunMetrics
from mlipdiv.io.rundir import RunDir
from mlipdiv.jobs.store import InvalidTransition, Run, RunStore, interrupted_message, process_owner

__all__ = ["TrainFn", "checkpoint_curve", "curve_entry", "execute", "main", "make_config", "serve"]

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0  # seconds between heartbeats (also how often a cancel from another process is noticed)
PROGRESS_EVERY = 0.5  # seconds between batch-level progress writes (epoch ends are always written)

# what a train_fn returns: the run's metrics (``train`` gives the metrics.json object; RunMetrics is accepted too)
TrainFn = Callable[..., RunMetrics | Mapping[str, Any]]
ProgressFn = Callable[[Any], None]


def _real_train() -> TrainFn:
    from mlipdiv.training import train

    return train


def make_config(config: Mapping[str, Any]) -> Any:
    """A stored config as a :class:`mlipdiv.training.TrainConfig` (raises MlipdivError for a bad option)."""
    from mlipdiv.training import TrainConfig

    return TrainConfig.from_dict(dict(config))


class _Heartbeat(threading.Thread):
    """Writes the run's heartbeat every ``every`` seconds; sets ``stop`` when the store says to stop."""

    def __init__(self, store: Any, run: Run, stop: threading.Event, every: float):
        super().__init__(name=f"heartbeat-{run.id}", daemon=True)
        self.store, self.run_id, self.attempt, self.stop, self.every = store, run.id, run.attempt, stop, every
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(self.every):
            try:
                if not self.store.heartbeat(self.run_id, self.attempt):
                    self.stop.set()
            except Exception as exc:  # noqa: BLE001 - a busy or unreachable store must not kill the training
                log.warning("heartbeat of run %s failed: %s", self.run_id, exc)


def curve_entry(p: Any) -> dict[str, Any] | None:
    """The learning-curve entry (a :class:`~mlipdiv.io.metrics.CurvePoint`, as ``metrics.json``'s ``curve`` holds
    it) of an ``epoch`` progress event."""
    if p.event != "epoch":
        return None
    return CurvePoint(
        epoch=p.epoch, step=getattr(p, "step", None) or None, lr=p.lr, train_loss=p.loss,
        val_energy_mae=p.val_energy_mae, val_forces_mae=p.val_forces_mae,
        seconds=round(p.seconds, 3),
    ).to_dict()


class _ProgressWriter:
    """The ``on_progress`` callback (:class:`mlipdiv.training.Progress` events): epoch ends go to the store at
    once, batches at most every ``every`` seconds. ``also`` sees every event (a console display)."""

    def __init__(self, store: Any, run: Run, stop: threading.Event, every: float, also: ProgressFn | None):
        self.store, self.run_id, self.attempt, self.stop, self.every = store, run.id, run.attempt, stop, every
        self.also = also
        self.last = -float("inf")

    def __call__(self, p: Any) -> None:
        if self.also is not None:
            self.also(p)
        entry = curve_entry(p)
        now = time.monotonic()
        if entry is None and now - self.last < self.every:
            return
        self.last = now
        try:
            keep_going = self.store.progress(
                self.run_id, self.attempt, epoch=p.epoch, batch=p.batch, n_batches=p.batches, n_epochs=p.epochs,
                curve_entry=entry,
            )
        except Exception as exc:  # noqa: BLE001 - a progress write that fails must not kill the training
            log.warning("progress of run %s not stored: %s", self.run_id, exc)
            return
        if not keep_going:
            self.stop.set()


def checkpoint_curve(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The learning curve saved in a run's checkpoint (the epochs a resume will not repeat), or None."""
    path = RunDir(run_dir).checkpoint_path
    if not path.exists():
        return None
    import torch

    try:
        return list(torch.load(path, map_location="cpu", weights_only=True).get("curve", []))
    except Exception:  # noqa: BLE001 - unreadable: training itself reports it when it resumes
        return None


def _message(exc: BaseException) -> str:
    """What a user sees for a failure: our errors speak for themselves, others get their type."""
    if isinstance(exc, MlipdivError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute(
    store: Any,
    run_id: str,
    *,
    train_fn: TrainFn | None = None,
    stop: threading.Event | None = None,
    resume: bool | None = None,
    interrupted: threading.Event | None = None,
    heartbeat_every: float = HEARTBEAT_EVERY,
    progress_every: float = PROGRESS_EVERY,
    also_progress: ProgressFn | None = None,
) -> str:
    """Run the stored run ``run_id`` in this thread, from claim to final status; returns that status.

    Args:
        store: a :class:`RunStore` (or a proxy with its worker-side methods).
        run_id: a ``queued`` (or ``interrupted``) run.
        train_fn: ``train(cfg, out_dir, on_progress=, should_stop=, resume=) -> metrics``; default
            :func:`mlipdiv.training.train`.
        stop: set it to stop the run at its next batch (the job manager's cancel). A cancel requested through the
            store (another process) sets it at the next heartbeat.
        resume: continue from the run folder's checkpoint; default: when there is one.
        interrupted: when this is set together with ``stop`` (SIGTERM, Ctrl-C), the run ends ``interrupted``
            (resumable) rather than ``cancelled``.
        heartbeat_every, progress_every: seconds between heartbeats / batch-level progress writes.
        also_progress: called with every progress event too (the CLI's console display).

    Returns:
        ``done``, ``failed``, ``cancelled`` or ``interrupted``. A stopped run keeps the metrics training gave for it
        (``train`` returning after a stop request, or a :class:`TrainingCancelled` with a ``metrics`` attribute:
        e.g. its best checkpoint evaluated), so a cancelled run shows its errors. Exceptions from training become
        ``failed`` with their message (and ``error.log`` in the run folder); nothing propagates except
        KeyboardInterrupt, after the run is marked ``interrupted``.
    """
    stop = stop if stop is not None else threading.Event()
    interrupted = interrupted if interrupted is not None else threading.Event()
    train_fn = train_fn if train_fn is not None else _real_train()
    run_dir = RunDir(store.get(run_id).run_dir)
    if resume is None:
        resume = run_dir.checkpoint_path.exists()
    # a resumed run shows exactly the checkpoint's epochs: none lost, none to be repeated
    run = store.claim(run_id, curve=checkpoint_curve(run_dir.path) if resume else [], owner=process_owner())
    heart = _Heartbeat(store, run, stop, heartbeat_every)
    heart.start()
    status, error, metrics, curve = "failed", None, None, None
    try:
        cfg = make_config(run.config)
        with RunDir(run.run_dir).lock():  # the lock train() takes too (re-entrant): any train_fn gets one writer
            result = train_fn(
                cfg,
                run.run_dir,
                on_progress=_ProgressWriter(store, run, stop, progress_every, also_progress),
                should_stop=stop.is_set,
                resume=resume,
            )
        metrics = _metrics_dict(result)
        status, curve = "done", metrics.get("curve") if metrics else None
        if stop.is_set():  # training stopped on request and returned what it evaluated (its best checkpoint)
            status = "interrupted" if interrupted.is_set() else "cancelled"
    except TrainingCancelled as exc:
        status = "interrupted" if interrupted.is_set() else "cancelled"
        metrics = _metrics_dict(getattr(exc, "metrics", None))  # a cancelled run's evaluation, when training gives one
        curve = metrics.get("curve") if metrics else None
    except KeyboardInterrupt:
        status, error = "interrupted", interrupted_message(run_id, "stopped by Ctrl-C")
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the training is the run's failure, stored below
        status, error = "failed", _message(exc)
        _write_error_log(run.run_dir, exc)
    finally:
        if status == "interrupted" and error is None:
            error = interrupted_message(run_id, "stopped by a signal or a shutdown")
        heart.finished.set()
        heart.join()
        try:
            store.finish(run_id, run.attempt, status, error=error, metrics=metrics, curve=curve)
        except Exception as exc:  # noqa: BLE001 - the outcome is in the run's folder; the store will call it interrupted
            log.error("could not record the end (%s) of run %s: %s", status, run_id, exc)
    return status


def _metrics_dict(result: RunMetrics | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What training returned as the stored metrics dict (kept whole: the worker does not interpret its fields)."""
    if result is None:
        return None
    return result.to_dict() if isinstance(result, RunMetrics) else dict(result)


def _write_error_log(run_dir: Path, exc: BaseException) -> None:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        RunDir(run_dir).write_error_log(text)
    except OSError:
        pass


class _Current:
    """The run a serving worker trains now, so that a ``cancel ID`` line (read by another thread) reaches it and no
    other: a late cancel of a run that already ended is ignored instead of stopping the next one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.run_id: str | None = None
        self.stop = threading.Event()
        self.interrupted = threading.Event()
        self.closing = False  # SIGTERM: interrupt the current run, take no more

    def begin(self, run_id: str) -> tuple[threading.Event, threading.Event]:
        with self.lock:
            self.run_id, self.stop, self.interrupted = run_id, threading.Event(), threading.Event()
            if self.closing:
                self.interrupted.set()
                self.stop.set()
            return self.stop, self.interrupted

    def signal(self, run_id: str | None, interrupt: bool) -> None:
        """Stop ``run_id`` (None: whichever runs) at its next batch; ``interrupt``: as ``interrupted``."""
        with self.lock:
            if run_id is not None and run_id != self.run_id:
                return
            if interrupt:
                self.interrupted.set()
            self.stop.set()


def _redirect_output(path: Path) -> None:
    """Point this process's stdout and stderr (file descriptors 1 and 2, so C++ and warnings too) at ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def serve(store: Any, commands: TextIO, replies: TextIO, current: _Current | None = None,
          train_fn: TrainFn | None = None) -> int:
    """Train runs one after another in this process, as ``commands`` names them; returns how many it trained.

    The protocol (one line each): ``run ID`` trains a run (its output goes to ``worker.log`` in its folder);
    ``cancel ID`` / ``interrupt ID`` stop that run at its next batch as ``cancelled`` / ``interrupted``; the end of
    ``commands`` ends the process once the current run is over. ``replies`` gets ``ready`` once torch and training are
    imported, then ``end ID STATUS`` after every run. Runs stay independent: each is claimed, seeded and recorded on
    its own, and a failure of one is that run's status, not the process's end.
    """
    current = current if current is not None else _Current()
    train_fn = train_fn if train_fn is not None else _real_train()  # imports torch once, before the first run
    todo: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in commands:
            verb, _, arg = line.strip().partition(" ")
            if verb == "run":
                todo.put(arg)
            elif verb in ("cancel", "interrupt"):
                current.signal(arg or None, interrupt=verb == "interrupt")
        todo.put(None)

    threading.Thread(target=read, name="worker-commands", daemon=True).start()
    replies.write("ready\n")
    replies.flush()
    trained = 0
    while not current.closing:
        try:
            run_id = todo.get(timeout=0.5)
        except queue.Empty:
            continue  # look at ``closing`` again (SIGTERM while idle)
        if run_id is None:
            break
        stop, interrupted = current.begin(run_id)
        status = "failed"
        try:
            _redirect_output(Path(store.get(run_id).run_dir) / "worker.log")
            status = execute(store, run_id, train_fn=train_fn, stop=stop, interrupted=interrupted)
            trained += 1
        except InvalidTransition as exc:  # cancelled or taken by another worker before it started
            status = "skipped"
            log.info("skipping run %s: %s", run_id, exc)
        except Exception:  # noqa: BLE001 - a store problem with this run: say so and take the next one
            log.exception("run %s could not be executed", run_id)
        finally:
            with current.lock:
                current.run_id = None
        print(f"run {run_id}: {status}", flush=True)
        replies.write(f"end {run_id} {status}\n")
        replies.flush()
    return trained


def main(argv: list[str] | None = None) -> int:
    """``python -m mlipdiv.jobs.worker RUN_ID``: run one stored run in this process. SIGTERM/Ctrl-C stop it at the
    next batch as ``interrupted``, SIGUSR1 as ``cancelled``. Exit status 0 when it ends ``done``, 1 otherwise.
    ``--serve`` (no RUN_ID): train runs one after another as standard input names them (see :func:`serve`), the job
    manager's long-lived worker of one slot."""
    parser = argparse.ArgumentParser(prog="python -m mlipdiv.jobs.worker", description=main.__doc__)
    parser.add_argument("run_id", nargs="?")
    parser.add_argument("--home", help="run store folder (default: MLIPDIV_HOME or ./runs)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the run (default: torch's own choice)")
    parser.add_argument("--serve", action="store_true", help="take run ids from standard input, one per line")
    args = parser.parse_args(argv)
    if (args.run_id is None) != args.serve:
        parser.error("give a RUN_ID or --serve, not both")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    current = _Current()
    if args.serve:
        # the replies keep the original stdout; everything printed from here on goes to the run's worker.log
        replies = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
    else:
        current.begin(args.run_id)

    def on_signal(signum: int, frame: Any) -> None:
        current.closing = True
        current.signal(None, interrupt=True)

    def on_cancel(signum: int, frame: Any) -> None:
        current.signal(None, interrupt=False)

    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, on_cancel)
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))  # once: every run of this process trains with it
    store = RunStore(args.home)
    if args.serve:
        serve(store, sys.stdin, replies, current)
        return 0
    status = execute(store, args.run_id, stop=current.stop, interrupted=current.interrupted)
    print(f"run {args.run_id}: {status}")
    return 0 if status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
