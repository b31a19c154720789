"""The job manager: background training threads behind a queue, with a concurrency limit.

One manager per server process (the app keeps it in ``st.cache_resource``); every browser session submits to the
same one, so two sessions pressing Train at once queue two runs instead of oversubscribing the CPU. Runs live in
the :class:`~mlipdiv.jobs.store.RunStore`, not in a session: a closed tab changes nothing, and a page reads
progress from the store. Nothing here calls Streamlit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlipdiv.jobs.store import ACTIVE, InvalidTransition, Run, RunStore
from mlipdiv.jobs.worker import TrainFn, execute, make_config

__all__ = ["JobManager", "config_dict", "cpu_count", "default_concurrency"]

log = logging.getLogger(__name__)


def default_concurrency() -> int:
    """One run per device: the number of CUDA GPUs, or 1 on a CPU-only machine."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def config_dict(config: Any) -> dict[str, Any]:
    """A training config (a ``TrainConfig`` or a mapping) as plain JSON types, paths as strings."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # TrainConfig: its flat form
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


@dataclasses.dataclass
class _Control:
    """How a manager stops one of its runs: ``stop`` at the next batch; ``interrupted`` too for a shutdown."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    interrupted: threading.Event = dataclasses.field(default_factory=threading.Event)


class JobManager:
    """Runs stored training runs in ``max_concurrent`` background threads, first come first served.

    Args:
        store: where runs live; default ``RunStore()`` (``MLIPDIV_HOME``).
        train_fn: the training function; default :func:`mlipdiv.training.train` (tests inject others).
        max_concurrent: runs trained at once; default :func:`default_concurrency` (one per device).
        torch_threads: torch intra-op threads for this process; default: the CPU cores shared between the
            concurrent runs (all of them for one run at a time).
    """

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        train_fn: TrainFn | None = None,
        max_concurrent: int | None = None,
        torch_threads: int | None = None,
    ):
        self.store = store if store is not None else RunStore()
        self.train_fn = train_fn
        self.max_concurrent = max_concurrent if max_concurrent is not None else default_concurrency()
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._torch_threads = torch_threads or max(1, cpu_count() // self.max_concurrent)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._controls: dict[str, _Control] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(slot,), name=f"mlipdiv-job-{slot}", daemon=True)
            for slot in range(self.max_concurrent)
        ]
        for t in self._threads:
            t.start()

    def __repr__(self) -> str:
        return f"JobManager({self.store!r}, max_concurrent={self.max_concurrent})"

    # -- submitting ----------------------------------------------------------------------------------------------

    def submit(self, config: Any, key: str | None = None) -> Run:
        """Store a new ``queued`` run for ``config`` (a ``TrainConfig`` or a dict of its fields) and queue it.

        Returns at once; the run starts when a slot is free. An invalid option raises here, before anything is
        stored.
        """
        if self._closed:
            raise RuntimeError("this JobManager is shut down")
        config = config_dict(config)
        make_config(config)
        run = self.store.create(config, key=key)
        self.enqueue(run.id)
        return run

    def enqueue(self, run_id: str) -> None:
        """Queue an existing ``queued`` run of the store (e.g. one :meth:`RunStore.requeue` put back)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this JobManager is shut down")
            self._controls[run_id] = _Control()
        self._queue.put(run_id)

    def resume(self, run_id: str, epochs: int | None = None) -> Run:
        """Queue a stopped run again; it continues from its last checkpoint (``epochs``: a new total)."""
        config = None
        if epochs is not None:
            config = {**self.store.get(run_id).config, "epochs": int(epochs)}
        run = self.store.requeue(run_id, config)
        self.enqueue(run_id)
        return run

    def cancel(self, run_id: str) -> Run:
        """Cancel a queued run now, or a running one at its next batch (wherever it runs)."""
        with self._lock:
            control = self._controls.get(run_id)
        if control is not None:
            control.stop.set()  # our own thread stops at its next batch without waiting for a heartbeat
        return self.store.request_cancel(run_id)

    # -- watching ------------------------------------------------------------------------------------------------

    def wait(self, run_ids: Iterable[str], timeout: float | None = None, poll: float = 0.1) -> list[Run]:
        """Block until every run in ``run_ids`` has left ``queued``/``running``; returns them.

        Raises:
            TimeoutError: some are still active after ``timeout`` seconds.
        """
        ids = list(run_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            runs = [self.store.get(i) for i in ids]
            if not any(r.status in ACTIVE for r in runs):
                return runs
            if deadline is not None and time.monotonic() > deadline:
                active = [f"{r.id} ({r.status})" for r in runs if r.status in ACTIVE]
                raise TimeoutError(f"runs still active after {timeout} s: {', '.join(active)}")
            time.sleep(poll)

    def shutdown(self, interrupt: bool = True, timeout: float | None = None) -> None:
        """Stop taking work. ``interrupt``: stop running runs at their next batch as ``interrupted`` (resumable);
        otherwise let them and the queue finish. Waits up to ``timeout`` seconds for the threads."""
        with self._lock:
            self._closed = True
            controls = list(self._controls.values())
        if interrupt:
            while True:  # what has not started stays resumable
                try:
                    run_id = self._queue.get_nowait()
                except queue.Empty:
                    break
                if run_id is not None:
                    self.store.abandon(run_id, "the job manager shut down before it started")
            for control in controls:
                control.interrupted.set()
                control.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    # -- the worker threads --------------------------------------------------------------------------------------

    def _work(self, slot: int) -> None:
        configured = False
        while True:
            run_id = self._queue.get()
            if run_id is None:
                return
            with self._lock:
                control = self._controls.setdefault(run_id, _Control())
            try:
                if control.stop.is_set():
                    continue  # cancelled while queued: the store says so already
                if not configured:
                    self._configure_torch(slot)
                    configured = True
                execute(
                    self.store, run_id, train_fn=self.train_fn, stop=control.stop, interrupted=control.interrupted
                )
            except InvalidTransition as exc:  # cancelled or taken over by someone else before it started
                log.info("skipping run %s: %s", run_id, exc)
            except Exception:  # execute records training errors itself; this is a store problem
                log.exception("run %s could not be executed", run_id)
            finally:
                with self._lock:
                    self._controls.pop(run_id, None)

    def _configure_torch(self, slot: int) -> None:
        import torch

        if torch.get_num_threads() != self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            torch.cuda.set_device(slot % torch.cuda.device_count())
