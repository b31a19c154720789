"""Runs that outlive a browser tab: the run store, the job manager, sweeps.

- :mod:`mlipdiv.jobs.store`: :class:`~mlipdiv.jobs.store.RunStore`, SQLite (WAL) plus a folder per run.
- :mod:`mlipdiv.io.atomic`: temp-file-and-rename writes for checkpoints and JSON.
- :mod:`mlipdiv.jobs.worker`: how one run executes (heartbeat, live progress, cancel, resume); also
  ``python -m mlipdiv.jobs.worker RUN_ID`` to run one in its own process.
- :mod:`mlipdiv.jobs.manager`: :class:`~mlipdiv.jobs.manager.JobManager`, a queue of background threads with a
  concurrency limit (the app keeps one per server process).
- :mod:`mlipdiv.jobs.sweep`: plans a trade-off grid x seeds, runs it (here or on Ray), writes ``results.csv``.
- :mod:`mlipdiv.jobs.repair` / :mod:`mlipdiv.jobs.transfer`: rebuild the table from the run folders; move finished
  runs between stores (``runs export`` / ``runs import``).

Nothing here imports torch or streamlit at import time.
"""

from mlipdiv.jobs.manager import JobManager
from mlipdiv.jobs.store import Run, RunStore

__all__ = ["JobManager", "Run", "RunStore"]
