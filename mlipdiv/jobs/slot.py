"""One job-manager slot's long-lived worker process (``python -m mlipdiv.jobs.worker --serve``).

A slot used to start a process per run and so paid Python, torch and kernel loading (1-3 s) every run, which on a
sweep of short runs was much of what concurrency gained. The process now stays: the slot hands it runs one at a time
over its standard input and reads ``end ID STATUS`` back (see :func:`mlipdiv.jobs.worker.serve`). Its torch thread
count is set once, when it starts. A process that dies (a crash, SIGKILL, out of memory) takes only its current run
with it: that run is marked ``interrupted`` (resumable) and the slot starts a fresh process for the next one.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from mlipdiv.jobs.store import RunStore, interrupted_message

__all__ = ["SlotProcess"]

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between looks at a cancel while a run trains


class SlotProcess:
    """A worker process that trains the runs :meth:`train` gives it, one after another.

    Args:
        store: the run store (its root is passed to the process).
        threads: torch threads of every run in this process.
        env: extra environment (e.g. ``CUDA_VISIBLE_DEVICES`` of the slot's GPU).
        first_log: where the process writes until its first run begins (that run's ``worker.log``), so an import
            error is found beside the run it stopped.
    """

    def __init__(self, store: RunStore, threads: int, env: dict[str, str], first_log: Path):
        self.store = store
        cmd = [sys.executable, "-m", "mlipdiv.jobs.worker", "--serve", "--home", str(store.root),
               "--threads", str(threads)]
        full_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        first_log.parent.mkdir(parents=True, exist_ok=True)
        with open(first_log, "ab") as err:
            self.proc = subprocess.Popen(cmd, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"slot-reader-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _send(self, line: str) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def train(self, run_id: str, stop: threading.Event, interrupted: Callable[[], bool]) -> str | None:
        """Train ``run_id`` in this process and wait for its end; returns its status, or None when the process died
        (the run is then recorded ``interrupted`` here, or ``abandon``-ed when it had not started). ``stop``: cancel
        it (``interrupted()`` true: interrupt it) at its next batch."""
        sent_stop = False
        if self._send(f"run {run_id}"):
            while True:
                if stop.is_set() and not sent_stop:
                    sent_stop = self._send(f"{'interrupt' if interrupted() else 'cancel'} {run_id}")
                try:
                    line = self._lines.get(timeout=POLL)
                except queue.Empty:
                    continue
                if line is None:
                    break  # the process is gone
                verb, _, rest = line.partition(" ")
                ended, _, status = rest.partition(" ")
                if verb == "end" and ended == run_id:
                    return status
        self._died(run_id)
        return None

    def _died(self, run_id: str) -> None:
        code = self.proc.wait()
        run = self.store.get(run_id)
        where = Path(run.run_dir) / "worker.log"
        why = f"its worker process exited with status {code} (see {where})"
        if run.status == "queued":
            self.store.abandon(run_id, f"{why} before it started")
        elif run.status in ("running", "interrupted") and run.pid == self.proc.pid:
            self.store.finish(run_id, run.attempt, "interrupted", error=interrupted_message(run_id, why))
        log.warning("worker process %s of run %s ended: %s", self.proc.pid, run_id, why)

    def close(self, timeout: float | None = None) -> None:
        """Let the process end (it takes no more runs) and wait for it."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()
