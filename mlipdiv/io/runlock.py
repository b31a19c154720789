"""One writer per run folder: an exclusive ``flock`` on ``RUN/.lock`` for as long as a process trains into it.

Why a lock: two ``train --out DIR`` (or a ``train`` and a store worker) writing the same folder would each finish
"successfully" with one result silently surviving. The kernel drops a ``flock`` when its process dies (even by
SIGKILL), so a crash never leaves a stale lock; the lock file itself stays (removing it would race with a process
about to lock it) and holds the pid of the last holder, for the message.

The lock is re-entrant within one thread (the store worker locks the folder, then :func:`mlipdiv.training.train`
locks it again) but not across threads or processes. Standard library only: training, the store's worker and the
CLI all import it without importing each other. Which files a run folder holds, and whether a folder may be
trained into, is :mod:`mlipdiv.io.rundir`'s business.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlipdiv.errors import MlipdivError

__all__ = ["LOCK_NAME", "ForeignFolder", "RunFolderBusy", "busy_error", "lock_holder", "run_lock"]

LOCK_NAME = ".lock"


class RunFolderBusy(MlipdivError):
    """Another process (or thread) is writing this run folder."""


class ForeignFolder(MlipdivError):
    """The folder holds files that are not a run of this configuration (refused without ``--overwrite``)."""


_held: dict[Path, tuple[int, int, int]] = {}  # folder -> (thread ident, depth, fd)
_held_guard = threading.Lock()


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def busy_error(run_dir: Path, who: str) -> RunFolderBusy:
    return RunFolderBusy(f"{run_dir} is being written by another process ({who}); wait for it or choose another --out")


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder ``run_dir`` (created when missing) exclusively until the block ends.

    Raises:
        RunFolderBusy: another process or thread holds it (one line naming the folder and the holder's pid).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    me = threading.get_ident()
    with _held_guard:
        held = _held.get(key)
        if held is not None:
            if held[0] != me:
                raise busy_error(run_dir, f"pid {os.getpid()}, another thread")
            _held[key] = (me, held[1] + 1, held[2])
    if held is not None:  # re-entered by the thread that holds it
        try:
            yield run_dir
        finally:
            with _held_guard:
                t, depth, fd = _held[key]
                _held[key] = (t, depth - 1, fd)
        return

    lock_path = run_dir / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy_error(run_dir, _holder(lock_path)) from None
    except BaseException:
        os.close(fd)
        raise
    with _held_guard:
        if key in _held:  # another thread of ours got there between our check and flock (flock is per open file)
            os.close(fd)
            raise busy_error(run_dir, f"pid {os.getpid()}, another thread")
        _held[key] = (me, 1, fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        with _held_guard:
            _held.pop(key, None)
        os.close(fd)  # releases the flock


def lock_holder(run_dir: Path) -> str | None:
    """The holder (``pid N``) when some process holds ``run_dir``'s lock right now, else None. Creates nothing."""
    lock_path = run_dir / LOCK_NAME
    if not lock_path.exists():
        return None
    with _held_guard:
        if run_dir.resolve() in _held:
            return f"pid {os.getpid()}"
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(lock_path)
    finally:
        os.close(fd)
    return None
