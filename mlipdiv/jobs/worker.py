"""How one run executes: claim it, keep a heartbeat, stream progress into the store, honour cancel, record the end.

:func:`execute` runs a stored run in the calling thread (the job manager's threads, a Ray task, ``runs resume``).
``python -m mlipdiv.jobs.worker RUN_ID`` runs one in a process of its own, so that killing that process (even with
SIGKILL) loses at most the epoch in progress: the run then reads as ``interrupted`` and resumes from its last
checkpoint. The job manager starts one such process per run when it trains several at once (``--threads``: torch
threads of the run; SIGUSR1 cancels it, SIGTERM interrupts it).

The store object only needs the worker-side methods of :class:`~mlipdiv.jobs.store.RunStore` (``claim``,
``heartbeat``, ``progress``, ``finish``, ``get``), so a Ray task can pass a proxy that forwards them to the driver.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlipdiv.errors import MlipdivError, TrainingCancelled
from mlipdiv.io.metrics import CurvePoint, RunMetrics
from mlipdiv.io.rundir import RunDir
from mlipdiv.jobs.store import Run, RunStore, interrupted_message, process_owner

__all__ = ["TrainFn", "checkpoint_curve", "curve_entry", "execute", "main", "make_config"]

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
        ``done``, ``failed``, ``cancelled`` or ``interrupted``. Exceptions from training become ``failed`` with
        their message (and ``error.log`` in the run folder); nothing propagates except KeyboardInterrupt, after the
        run is marked ``interrupted``.
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
        metrics = result.to_dict() if isinstance(result, RunMetrics) else dict(result)
        status, curve = "done", metrics.get("curve")
    except TrainingCancelled:
        status = "interrupted" if interrupted.is_set() else "cancelled"
        if status == "interrupted":
            error = interrupted_message(run_id, "stopped by a signal or a shutdown")
    except KeyboardInterrupt:
        status, error = "interrupted", interrupted_message(run_id, "stopped by Ctrl-C")
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the training is the run's failure, stored below
        status, error = "failed", _message(exc)
        _write_error_log(run.run_dir, exc)
    finally:
        heart.finished.set()
        heart.join()
        try:
            store.finish(run_id, run.attempt, status, error=error, metrics=metrics, curve=curve)
        except Exception as exc:  # noqa: BLE001 - the outcome is in the run's folder; the store will call it interrupted
            log.error("could not record the end (%s) of run %s: %s", status, run_id, exc)
    return status


def _write_error_log(run_dir: Path, exc: BaseException) -> None:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        RunDir(run_dir).write_error_log(text)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m mlipdiv.jobs.worker RUN_ID``: run one stored run in this process. SIGTERM/Ctrl-C stop it at the
    next batch as ``interrupted``, SIGUSR1 as ``cancelled``. Exit status 0 when it ends ``done``, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m mlipdiv.jobs.worker", description=main.__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--home", help="run store folder (default: MLIPDIV_HOME or ./runs)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the run (default: torch's own choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop, interrupted = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        interrupted.set()
        stop.set()

    def on_cancel(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, on_cancel)
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    status = execute(RunStore(args.home), args.run_id, stop=stop, interrupted=interrupted)
    print(f"run {args.run_id}: {status}")
    return 0 if status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
