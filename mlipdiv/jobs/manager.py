"""The job manager: background training slots behind a queue, with a concurrency limit.

One manager per server process (the app keeps it in ``st.cache_resource``); every browser session submits to the
same one, so two sessions pressing Train at once queue two runs instead of oversubscribing the CPU. Runs live in
the :class:`~mlipdiv.jobs.store.RunStore`, not in a session: a closed tab changes nothing, and a page reads
progress from the store. Nothing here calls Streamlit.

How many runs train at once is :func:`choose_concurrency`'s answer (``auto`` or a number: ``MLIPDIV_CONCURRENCY``,
``sweep --concurrency``). With more than one run at once, each real training runs in a process of its own
(a slot's long-lived ``python -m mlipdiv.jobs.worker --serve``, :mod:`mlipdiv.jobs.slot`) with its own torch
thread count, so runs neither share the GIL nor a process-global thread setting, a run pays no process start, and
one that fails, is cancelled or crashes leaves the others running.
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

from mlipdiv.jobs.slot import SlotProcess
from mlipdiv.jobs.store import ACTIVE, InvalidTransition, Run, RunStore
from mlipdiv.jobs.worker import TrainFn, execute, make_config

__all__ = ["Concurrency", "JobManager", "choose_concurrency", "config_dict", "cpu_count"]

log = logging.getLogger(__name__)

CONCURRENCY_ENV = "MLIPDIV_CONCURRENCY"
"""Environment variable: ``auto`` (default) or the number of runs trained at once by a job manager."""
SMALL_MODELS = ("schnet", "painn")
"""Models whose runs are small enough, at ``hidden`` <= :data:`SMALL_HIDDEN`, to share a device with others."""
SMALL_HIDDEN = 128
CPU_RUN_BYTES = 600 * 2**20
"""Host memory one small CPU run in its own process needs (torch itself, the dataset, the model): a bound on runs."""
GPU_RUN_BYTES = 1536 * 2**20
"""GPU memory one small run needs (its CUDA context, model, batches): a bound on runs per GPU."""
MAX_RUNS_PER_GPU = 4
SLOT_IDLE = 300.0
"""Seconds a slot's worker process waits for its next run before it ends (a sweep keeps it busy; the app between
clicks gives the memory back)."""


@dataclasses.dataclass(frozen=True)
class Concurrency:
    """How many runs train at once (``runs``), with how many torch threads each (``threads``), on ``device``
    (``cpu`` or ``cuda``); ``auto``: chosen by :func:`choose_concurrency` rather than set; ``reason``: why."""

    runs: int
    threads: int
    device: str = "cpu"
    auto: bool = True
    reason: str = ""

    def describe(self) -> str:
        """E.g. ``2 runs at once × 1 thread (auto)``."""
        runs = f"{self.runs} run{'s' if self.runs != 1 else ''} at once"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        where = " on GPU" if self.device == "cuda" else ""
        return f"{runs}{where} × {threads} ({'auto' if self.auto else 'set'})"


def _parse_requested(requested: str | int | None) -> tuple[int, int | None] | None:
    """None for ``auto``, else (runs at once, torch threads per run or None: the cores shared between the runs).

    ``"N"`` sets the runs; ``"NxT"`` also the threads: ``1x1`` on a machine busy with other work, where a run's
    second thread waits on a core that another process holds (a tiny run trained 90x slower with 2 threads at load 6).
    """
    if requested is None or (isinstance(requested, str) and requested.strip().lower() in ("", "auto")):
        return None
    text = requested.strip().lower() if isinstance(requested, str) else requested
    runs_text, sep, threads_text = text.partition("x") if isinstance(text, str) else (text, "", "")
    try:
        n = int(runs_text)
        threads = int(threads_text) if sep else None
    except (TypeError, ValueError):
        raise ValueError(f"concurrency must be 'auto', a whole number of runs or RUNSxTHREADS (e.g. 1x1), not "
                         f"{requested!r}") from None
    if isinstance(requested, bool) or n < 1 or (threads is not None and threads < 1):
        raise ValueError(f"concurrency must be 'auto' or at least 1, not {requested!r}")
    return n, threads


def _host_free_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpus() -> tuple[int, int | None]:
    """(CUDA devices, free bytes on the emptiest one, None when unknown)."""
    import torch

    if not torch.cuda.is_available():
        return 0, None
    n = torch.cuda.device_count()
    try:
        free = min(torch.cuda.mem_get_info(i)[0] for i in range(n))
    except Exception:  # noqa: BLE001 - an old driver: fall back to one run per GPU
        free = None
    return n, free


def choose_concurrency(
    requested: str | int | None = "auto",
    *,
    model: str | None = None,
    hidden: int | None = None,
    device: str = "auto",
    cores: int | None = None,
    gpus: int | None = None,
    gpu_free_bytes: int | None = None,
    host_free_bytes: int | None = None,
    load: float | None = None,
) -> Concurrency:
    """How many runs to train at once, and torch threads per run, for runs of ``model`` at ``hidden`` on ``device``.

    ``auto`` (``requested`` None or ``"auto"``): on a CPU with at least 2 cores, small runs (schnet/painn,
    hidden <= 128; ``model`` None counts as small) train one per core with 1 thread each, as far as the free host
    memory allows: one run rarely scales beyond a core or two (SchNet: 461 conformers/s on 1 thread, about 700 on 2),
    so separate runs raise runs per hour. Larger runs train one at a time on every core. On GPUs small runs train
    several per GPU as free memory allows (up to :data:`MAX_RUNS_PER_GPU`), larger ones one per GPU. A number sets
    the runs at once; the cores are then split between them, unless ``RUNSxTHREADS`` sets the threads too. Unknown
    machine facts are read from this machine.

    ``auto`` also leaves out the cores other work keeps busy (``load``: the 1-minute load average, read when None):
    a run's threads are split over the free cores only, since a thread that waits on a core another process holds
    slows its whole run (a tiny run trained 90x slower with 2 threads than with 1 at load 6 on 2 cores). The load is
    read once, when the manager or sweep starts.
    """
    cores = cores if cores is not None else cpu_count()
    cores = max(1, cores)
    asked = _parse_requested(requested)
    if gpus is None:
        gpus, detected_free = (0, None) if device == "cpu" else _gpus()
        gpu_free_bytes = gpu_free_bytes if gpu_free_bytes is not None else detected_free
    on_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    kind = "cuda" if on_gpu else "cpu"
    if asked is not None:
        n, threads = asked
        return Concurrency(n, threads or max(1, cores // n), kind, auto=False, reason="set")
    free, busy_note = _free_cores(cores, load)
    small = (model is None or model in SMALL_MODELS) and (hidden is None or hidden <= SMALL_HIDDEN)
    if on_gpu:
        gpus = max(1, gpus)
        if not small:
            runs, reason = gpus, "one large run per GPU"
        elif gpu_free_bytes is None:
            runs, reason = gpus, "GPU memory unknown: one run per GPU"
        else:
            per_gpu = max(1, min(MAX_RUNS_PER_GPU, gpu_free_bytes // GPU_RUN_BYTES))
            runs, reason = per_gpu * gpus, f"{per_gpu} small runs per GPU by free memory"
        return Concurrency(runs, max(1, free // runs), kind, reason=reason + busy_note)
    if not small:
        return Concurrency(1, free, kind, reason="a large model uses every free core" + busy_note)
    if cores < 2:
        return Concurrency(1, 1, kind, reason="one core")
    host_free = host_free_bytes if host_free_bytes is not None else _host_free_bytes()
    runs = cores if host_free is None else max(1, min(cores, host_free // CPU_RUN_BYTES))
    reason = "small runs: one per core" if runs == cores else "small runs: as many as free memory allows"
    return Concurrency(runs, max(1, free // runs), kind, reason=reason + busy_note)


def _free_cores(cores: int, load: float | None) -> tuple[int, str]:
    """(cores that other work does not keep busy, at least 1; a note for the reason when some are busy)."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not available on this platform: count every core as free
            load = 0.0
    busy = min(cores - 1, int(max(0.0, load)))
    return cores - busy, (f"; {busy} of {cores} cores busy with other work (load {load:.1f})" if busy else "")


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
    """Runs stored training runs in ``concurrency.runs`` background slots, first come first served.

    Args:
        store: where runs live; default ``RunStore()`` (``MLIPDIV_HOME``).
        train_fn: the training function; default :func:`mlipdiv.training.train` (tests inject others).
        max_concurrent: runs trained at once (the same as ``concurrency=N``).
        torch_threads: torch intra-op threads per run; default: the cores shared between the concurrent runs.
        concurrency: a :class:`Concurrency`, ``"auto"`` or a number; default ``MLIPDIV_CONCURRENCY`` or ``auto``
            (:func:`choose_concurrency` for small runs on the default device).
        processes: train runs in one long-lived worker process per slot (:mod:`mlipdiv.jobs.slot`); default: when
            more than one run trains at once and ``train_fn`` is the real one.
    """

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        train_fn: TrainFn | None = None,
        max_concurrent: int | None = None,
        torch_threads: int | None = None,
        concurrency: Concurrency | str | int | None = None,
        processes: bool | None = None,
    ):
        self.store = store if store is not None else RunStore()
        self.train_fn = train_fn
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if not isinstance(concurrency, Concurrency):
            if max_concurrent is not None:
                concurrency = max_concurrent
            elif concurrency is None:
                concurrency = os.environ.get(CONCURRENCY_ENV, "auto")
            concurrency = choose_concurrency(concurrency)
        if torch_threads:
            concurrency = dataclasses.replace(concurrency, threads=torch_threads)
        self.concurrency = concurrency
        self.max_concurrent = concurrency.runs
        self._torch_threads = concurrency.threads
        self.processes = processes if processes is not None else (train_fn is None and self.max_concurrent > 1)
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
        run = self.store.request_cancel(run_id)  # first: a run our thread stops at once must not read as ended
        with self._lock:
            control = self._controls.get(run_id)
        if control is not None:
            control.stop.set()  # our own thread stops at its next batch without waiting for a heartbeat
        return run

    def cancel_all(self) -> list[Run]:
        """Cancel every queued and running run of the store (queued ones first, so no slot starts one of them while
        the running ones stop); returns the runs as the cancel left them. Runs that ended meanwhile are skipped."""
        active = self.store.list(status=list(ACTIVE))
        out = []
        for run in sorted(active, key=lambda r: r.status != "queued"):
            try:
                out.append(self.cancel(run.id))
            except InvalidTransition:
                continue
        return out

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
        worker: SlotProcess | None = None
        try:
            while True:
                try:
                    run_id = self._queue.get(timeout=SLOT_IDLE if worker is not None else None)
                except queue.Empty:  # idle for a while: give the worker's memory back until the next run
                    assert worker is not None
                    worker.close()
                    worker = None
                    continue
                if run_id is None:
                    return
                with self._lock:
                    control = self._controls.setdefault(run_id, _Control())
                try:
                    if control.stop.is_set():
                        continue  # cancelled while queued: the store says so already
                    if self.processes:
                        worker = self._run_in_worker(worker, run_id, slot, control)
                        continue
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
        finally:
            if worker is not None:
                worker.close()

    def _run_in_worker(
        self, worker: SlotProcess | None, run_id: str, slot: int, control: _Control
    ) -> SlotProcess | None:
        """Train ``run_id`` in the slot's long-lived worker process (started now if it has none or it died); a
        cancel reaches it as ``cancel ID``, a shutdown as ``interrupt ID``. Returns the worker to keep (None: it
        died with this run; the next run starts a fresh one)."""
        if worker is None or not worker.alive():
            env: dict[str, str] = {}
            gpus = self._gpu_count()
            if gpus > 1:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            first_log = Path(self.store.get(run_id).run_dir) / "worker.log"
            worker = SlotProcess(self.store, self._torch_threads, env, first_log)
        status = worker.train(run_id, control.stop, control.interrupted.is_set)
        return worker if status is not None else None

    @staticmethod
    def _gpu_count() -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def _configure_torch(self, slot: int) -> None:
        import torch

        if torch.get_num_threads() != self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            torch.cuda.set_device(slot % torch.cuda.device_count())
