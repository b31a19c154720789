"""Process liveness through psutil: a zombie is dead, a reused pid is not the claimed process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlipdiv.jobs.store import _proc_start, pid_alive


def test_proc_start_is_the_kernel_start_token() -> None:
    pid = os.getpid()
    token = _proc_start(pid)
    if Path(f"/proc/{pid}/stat").exists():  # the string earlier versions stored: rows they wrote still match
        assert token == Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert pid_alive(pid, token) and pid_alive(pid)
    assert not pid_alive(pid, "not-" + str(token))  # same pid, another start: a reused pid


def test_zombie_and_gone_processes_are_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:  # exits, not yet reaped: a zombie
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid) and _proc_start(child.pid) is None
