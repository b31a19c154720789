"""Runs as Ray tasks: one GPU each when the cluster has GPUs, otherwise one CPU each.

By default a local Ray instance is started for the sweep and stopped after it (no dashboard, a small object store,
all of this machine's cores); ``address`` joins an existing cluster instead (``ray start --head`` elsewhere).

Store writes do not go to SQLite from the tasks: a small actor pinned to the driver's node owns the
:class:`~mlipdiv.jobs.store.RunStore` and the tasks call it for claim, heartbeat, progress and the final status.
SQLite's WAL mode needs every writer on one host (it does not work over a network filesystem), so this keeps the
store correct on a multi-node cluster. Each task writes its run folder (checkpoint, metrics, predictions) under the
same ``MLIPDIV_HOME`` path on the node that ran it: on a multi-node cluster make that path (and the dataset path) a
shared filesystem so the driver sees the artefacts too; the table itself needs only the store.

Orphans: Ray ties its own processes to the driver (the raylet dies with it), but its per-node agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) notice the raylet's death and then hang in their exit instead
of ending (Ray 2.60; neither can be switched off: the raylet needs the runtime-env agent to start workers, and
``include_dashboard=False`` still starts a minimal dashboard agent). So a local instance gets a *reaper*: a small
standard-library process in a session of its own that keeps a list of the processes the driver started since, and
when the driver ends (normally, by a signal or by SIGKILL: its pipe to the reaper closes) terminates whichever of
them are still alive a few seconds later. The driver also shuts Ray down on SIGTERM and SIGHUP, not only on exit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlipdiv.errors import MlipdivError
from mlipdiv.jobs.manager import cpu_count
from mlipdiv.jobs.store import Run, RunStore
from mlipdiv.paths import PROJECT_ROOT

__all__ = ["run_on_ray", "init_ray", "shutdown_ray", "check_address", "task_resources"]

log = logging.getLogger(__name__)

OBJECT_STORE_BYTES = 100 * 1024**2  # runs exchange only small dicts; Ray's minimum is 75 MiB
_STORE_METHODS = ("get", "claim", "heartbeat", "progress", "finish")


class StoreService:
    """The actor behind the tasks' store calls: one process, one writer."""

    def __init__(self, root: str, stale_after: float):
        self.store = RunStore(root, stale_after=stale_after)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in _STORE_METHODS:
            raise AttributeError(method)
        return getattr(self.store, method)(*args, **kwargs)


class StoreProxy:
    """What a task passes to :func:`~mlipdiv.jobs.worker.execute` as its store: forwards calls to the actor."""

    def __init__(self, actor: Any):
        self.actor = actor

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in _STORE_METHODS:
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            import ray

            return ray.get(self.actor.call.remote(method, *args, **kwargs))

        return call


def _train_task(actor: Any, run_id: str, train_fn: Callable[..., Mapping[str, Any]] | None) -> str:
    """Body of the Ray task: one run, torch threads matched to the CPUs Ray gave it."""
    import ray
    import torch

    from mlipdiv.jobs.worker import execute

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return execute(StoreProxy(actor), run_id, train_fn=train_fn)


# The reaper (run as `python -c`, standard library only). argv: driver pid, grace seconds. It lists the driver's
# descendants every half second (those it had already are not Ray's), and once its stdin closes (the driver shut
# Ray down, exited, or was killed) it gives them `grace` seconds to end, then SIGTERM, then SIGKILL. A pid is only
# signalled while its kernel start time is the one recorded, so a reused pid is never hit.
_REAPER = r"""
import os, select, signal, sys, time
driver, grace, me = int(sys.argv[1]), float(sys.argv[2]), os.getpid()

def table():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(name)] = (int(fields[1]), fields[19], fields[0])
    return out

def descendants():
    procs, found, frontier = table(), {}, {driver}
    while frontier:
        frontier = {p for p, (pp, _, _) in procs.items() if pp in frontier and p not in found and p != me}
        found.update((p, procs[p][1]) for p in frontier)
    return found

def alive(tracked):
    procs = table()
    return [p for p, start in tracked.items() if p in procs and procs[p][1] == start and procs[p][2] not in "ZX"]

before = set(descendants())
tracked = {}
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    if select.select([sys.stdin], [], [], 0.5)[0] and not os.read(sys.stdin.fileno(), 4096):
        break
    tracked.update((p, s) for p, s in descendants().items() if p not in before)
for sig, wait in ((None, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
    if sig is not None:
        for p in alive(tracked):
            try:
                os.kill(p, sig)
            except OSError:
                pass
    deadline = time.monotonic() + wait
    while alive(tracked) and time.monotonic() < deadline:
        time.sleep(0.2)
"""

REAPER_GRACE = 5.0  # seconds Ray's processes get to end by themselves before the reaper terminates them
_reaper: subprocess.Popen | None = None


def _start_reaper() -> None:
    """Start the reaper (see the module docstring) before Ray starts, so it can tell Ray's processes apart."""
    global _reaper
    if not sys.platform.startswith("linux") or (_reaper is not None and _reaper.poll() is None):
        return
    _reaper = reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(REAPER_GRACE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    if reaper.stdout is not None:  # always, with stdout=PIPE
        reaper.stdout.readline()  # "ready": it knows what the driver had before Ray


def _stop_reaper() -> None:
    """Tell the reaper that Ray is shut down: it cleans up whatever does not end by itself, then exits."""
    global _reaper
    if _reaper is not None:
        if _reaper.stdin is not None:  # always, with stdin=PIPE
            _reaper.stdin.close()
        _reaper = None  # not waited for: it outlives us by design when an agent hangs


def shutdown_ray() -> None:
    """``ray.shutdown()``, then let the reaper remove the agents that Ray leaves behind."""
    import ray

    try:
        ray.shutdown()
    finally:
        _stop_reaper()


def init_ray(address: str | None = None) -> None:
    """Connect to ``address``, or start a quiet local instance sized to this machine (with a reaper for the
    processes Ray leaves behind; stop it with :func:`shutdown_ray`)."""
    import ray

    pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        check_address(address)
        # the cluster's nodes get this package from here; the dataset path must exist on them
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(PROJECT_ROOT / "mlipdiv")]}, **common)
        except (ConnectionError, RuntimeError) as exc:
            raise MlipdivError(
                f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}. Is `ray start --head` "
                "running there (and, if it uses token authentication, is RAY_AUTH_TOKEN set here)?"
            ) from exc
    else:
        _start_reaper()
        ray.init(
            num_cpus=cpu_count(),
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
            **common,
        )


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` where nothing listens (Ray itself retries for many minutes)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise MlipdivError(
            f"cannot reach the Ray cluster at {address} ({exc}); start one with `ray start --head` there, "
            "or leave out --address for a local Ray instance"
        ) from exc


def task_resources() -> dict[str, float]:
    """One GPU per task when the cluster has any, otherwise one CPU."""
    import ray

    return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}


def run_on_ray(
    store: RunStore,
    run_ids: Sequence[str],
    *,
    address: str | None = None,
    train_fn: Callable[..., Mapping[str, Any]] | None = None,
    on_finish: Callable[[Run], None] | None = None,
) -> list[Run]:
    """Train the queued runs ``run_ids`` as Ray tasks and wait for all of them; returns them as stored.

    A Ray instance this call started is shut down at the end; one that was already running is left alone. On
    Ctrl-C the tasks are cancelled (they stop at their next batch as ``interrupted``) and KeyboardInterrupt
    propagates.
    """
    if not run_ids:
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started_here = not ray.is_initialized()
    if started_here:
        init_ray(address)
    restore = _stop_on_signals() if started_here else {}
    try:
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        actor = (
            ray.remote(StoreService)
            .options(num_cpus=0, scheduling_strategy=here)
            .remote(str(store.root), store.stale_after)
        )
        task = ray.remote(_train_task).options(max_retries=0, **task_resources())
        refs = {task.remote(actor, run_id, train_fn): run_id for run_id in run_ids}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                run_id = refs[done[0]]
                try:
                    ray.get(done[0])
                except ray.exceptions.RayError as exc:  # the worker died: the store reads it as interrupted
                    log.error("Ray task for run %s failed: %s", run_id, exc)
                if on_finish is not None:
                    on_finish(store.get(run_id))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            raise
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)
        if started_here:
            shutdown_ray()
    return [store.get(run_id) for run_id in run_ids]


def _stop_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGHUP stop the sweep like Ctrl-C (tasks cancelled, Ray shut down) instead of killing the driver
    past its ``finally``. Returns the handlers to restore (none when not in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
