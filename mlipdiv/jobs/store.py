"""The run store: one SQLite database (WAL mode) plus one folder per run, under :func:`mlipdiv.paths.home`.

Layout::

    MLIPDIV_HOME/
        runs.db                  # this table; WAL mode, so readers never block the writer
        <run id>/                # the run's folder: config.json, checkpoint.pt, metrics.json, predictions (training)

Every call opens its own short-lived connection, so a store object can be shared by threads and survives ``fork``;
SQLite serializes writers (``BEGIN IMMEDIATE`` plus a busy timeout) while any number of readers proceed.

Status life cycle (anything else raises :class:`InvalidTransition`)::

    queued --claim--> running --finish--> done | failed | cancelled
      |                  |
      |                  +--(process gone or heartbeat stale)--> interrupted --requeue--> queued
      +--cancel--> cancelled --requeue--> queued      failed|done --requeue--> queued

A worker owns a run for one *attempt* (a counter bumped by every claim). Its heartbeats, progress and final status
carry that attempt number and are ignored once another attempt owns the run, so a stale worker can never overwrite
a resumed one. A run whose owner is gone (its process is dead on this host, or its heartbeat is older than
``stale_after`` seconds) is marked ``interrupted`` the next time anyone reads it; if the owner was only asleep (a
laptop lid closed), its next heartbeat marks it ``running`` again.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlipdiv.errors import MlipdivError
from mlipdiv.paths import home

__all__ = [
    "STATUSES",
    "ACTIVE",
    "Run",
    "RunStore",
    "UnknownRun",
    "InvalidTransition",
    "new_run_id",
    "pid_alive",
    "process_owner",
    "format_time",
    "interrupted_message",
]

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
DB_NAME = "runs.db"
SCHEMA_VERSION = 1
DEFAULT_STALE_AFTER = 60.0  # seconds without a heartbeat before a running run counts as interrupted

# Which statuses each transition may start from.
_CLAIMABLE = ("queued", "interrupted")
_REQUEUEABLE = ("interrupted", "cancelled", "failed", "done")
_FINAL = ("done", "failed", "cancelled", "interrupted")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id               TEXT PRIMARY KEY,
    key              TEXT,
    config           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    epoch            INTEGER NOT NULL DEFAULT 0,
    n_epochs         INTEGER,
    batch            INTEGER NOT NULL DEFAULT 0,
    n_batches        INTEGER,
    created          REAL NOT NULL,
    started          REAL,
    finished         REAL,
    heartbeat        REAL,
    error            TEXT,
    metrics          TEXT,
    curve            TEXT NOT NULL DEFAULT '[]',
    run_dir          TEXT NOT NULL,
    host             TEXT,
    pid              INTEGER,
    proc_start       TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (key);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


class UnknownRun(MlipdivError):
    """No run has this id."""


class InvalidTransition(MlipdivError):
    """The run's status does not allow what was asked (e.g. cancelling a finished run)."""


def new_run_id() -> str:
    """A short id that sorts by creation time: ``YYYYMMDD-HHMMSS-xxxxxx`` (UTC, 6 random hex digits)."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a live process from a later one that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """Whether process ``pid`` on this host is alive (a zombie counts as dead; so does a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return proc_start is None or fields[19] == proc_start


_HOST = socket.gethostname()


def interrupted_message(run_id: str, reason: str) -> str:
    """The error text of an interrupted run: why, and how to continue it."""
    return f"interrupted: {reason}; continue it with `python -m mlipdiv runs resume {run_id}`"


def process_owner() -> dict[str, Any]:
    """This process as a run's owner: ``host``, ``pid`` and ``proc_start`` (pass it along when claiming by proxy)."""
    pid = os.getpid()
    return {"host": _HOST, "pid": pid, "proc_start": _proc_start(pid)}


@dataclass
class Run:
    """One row of the store, decoded. Times are Unix seconds (``None`` until they happen)."""

    id: str
    key: str | None
    config: dict[str, Any]
    status: str
    epoch: int
    n_epochs: int | None
    batch: int
    n_batches: int | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    error: str | None
    metrics: dict[str, Any] | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path = Path()
    host: str | None = None
    pid: int | None = None
    proc_start: str | None = None
    attempt: int = 0
    cancel_requested: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
        d["curve"] = json.loads(d["curve"]) if d["curve"] else []
        d["run_dir"] = Path(d["run_dir"])
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ACTIVE

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (1.0 once done). ``epoch`` counts from 1 and is the epoch in progress; ``batch`` is
        its last finished batch (``n_batches`` once the epoch is over)."""
        if self.status == "done":
            return 1.0
        if not self.n_epochs or self.epoch < 1:
            return 0.0
        within = self.batch / self.n_batches if self.n_batches else 1.0
        return min(1.0, (self.epoch - 1 + within) / self.n_epochs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``run_dir`` as a string)."""
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


class RunStore:
    """SQLite-backed store of runs; safe to share between threads and processes on one host.

    Args:
        root: folder holding ``runs.db`` and the run folders; default :func:`mlipdiv.paths.home`.
        stale_after: seconds without a heartbeat after which a running run is reported ``interrupted``
            (``MLIPDIV_STALE_AFTER`` overrides the default of 60).
        busy_timeout: seconds a writer waits for the lock before giving up.
    """

    def __init__(self, root: str | Path | None = None, stale_after: float | None = None, busy_timeout: float = 30.0):
        self.root = Path(root if root is not None else home()).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DB_NAME
        if stale_after is None:
            stale_after = float(os.environ.get("MLIPDIV_STALE_AFTER", DEFAULT_STALE_AFTER))
        self.stale_after = stale_after
        self.busy_timeout = busy_timeout
        con = self._connect()
        try:
            con.execute("PRAGMA journal_mode=WAL")
            with self._transaction(con):
                if con.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        finally:
            con.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- connections ---------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    @staticmethod
    @contextmanager
    def _transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        con.execute("BEGIN IMMEDIATE")  # take the write lock now: no deadlock upgrading a read lock later
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            with self._transaction(con):
                yield con
        finally:
            con.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run:
        """The run ``run_id`` (reconciled: a dead owner shows as ``interrupted``). Raises :class:`UnknownRun`."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"no run {run_id!r} in {self.root} (see `python -m mlipdiv runs list`)")
        return self._reconcile([Run.from_row(rows[0])])[0]

    def list(self, status: str | Sequence[str] | None = None, key: str | None = None) -> list[Run]:
        """All runs, oldest first, optionally only those with a status (or statuses) and/or a config key."""
        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if key is not None:
            where.append("key = ?")
            params.append(key)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, id"
        runs = self._reconcile([Run.from_row(r) for r in self._read(sql, params)])
        if status is not None:  # reconciling may have moved some out of the asked statuses
            runs = [r for r in runs if r.status in statuses]
        return runs

    def find(self, key: str) -> Run | None:
        """The newest run with config key ``key``, or ``None``."""
        runs = self.list(key=key)
        return runs[-1] if runs else None

    def owner_gone(self, run: Run, now: float | None = None) -> str | None:
        """Why ``run``'s owner is gone (a sentence), or ``None`` while it may still be alive."""
        if run.status not in ACTIVE:
            return None
        now = time.time() if now is None else now
        if run.host == _HOST and run.pid is not None and not pid_alive(run.pid, run.proc_start):
            return f"process {run.pid} on {run.host} is gone"
        if run.status == "running":
            beat = run.heartbeat if run.heartbeat is not None else run.started or run.created
            if now - beat > self.stale_after:
                return f"no heartbeat from process {run.pid} on {run.host} for {now - beat:.0f} s"
        return None

    def _reconcile(self, runs: list[Run]) -> list[Run]:
        now = time.time()
        out = []
        for run in runs:
            reason = self.owner_gone(run, now)
            if reason is not None:
                with self._write() as con:
                    con.execute(
                        "UPDATE runs SET status = 'interrupted', finished = ?, error = ? "
                        "WHERE id = ? AND status = ? AND attempt = ? AND heartbeat IS ?",
                        (now, interrupted_message(run.id, reason), run.id, run.status, run.attempt, run.heartbeat),
                    )
                    run = Run.from_row(con.execute("SELECT * FROM runs WHERE id = ?", (run.id,)).fetchone())
            out.append(run)
        return out

    # -- writing -------------------------------------------------------------------------------------------------

    def create(self, config: Mapping[str, Any], key: str | None = None, n_epochs: int | None = None) -> Run:
        """Add a ``queued`` run owned by this process and make its folder."""
        while True:  # ids made in the same second differ in 24 random bits; a clash just draws again
            run_id = new_run_id()
            run_dir = self.root / run_id
            try:
                run_dir.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                continue
        if n_epochs is None and isinstance(config.get("epochs"), int):
            n_epochs = config["epochs"]
        with self._write() as con:
            con.execute(
                "INSERT INTO runs (id, key, config, status, n_epochs, created, run_dir, host, pid, proc_start) "
                "VALUES (:id, :key, :config, 'queued', :n_epochs, :created, :run_dir, :host, :pid, :proc_start)",
                {
                    "id": run_id,
                    "key": key,
                    "config": json.dumps(dict(config), sort_keys=True),
                    "n_epochs": n_epochs,
                    "created": time.time(),
                    "run_dir": str(run_dir),
                    **process_owner(),
                },
            )
        return self.get(run_id)

    def _load(self, con: sqlite3.Connection, run_id: str) -> Run:
        row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in {self.root} (see `python -m mlipdiv runs list`)")
        return Run.from_row(row)

    def claim(
        self,
        run_id: str,
        curve: Sequence[Mapping[str, Any]] | None = None,
        owner: Mapping[str, Any] | None = None,
    ) -> Run:
        """Make a process the owner of a ``queued`` (or ``interrupted``) run and mark it ``running``.

        Returns the run with its new ``attempt``, the token later writes must carry. ``curve``: the learning curve
        to start from (``[]`` for a fresh start, the checkpoint's epochs for a resume; None keeps the stored one);
        epoch and batch follow from it. ``owner``: the :func:`process_owner` of the process that will train it
        (default: this one; a Ray task claims through an actor in another process).
        """
        now = time.time()
        values: dict[str, Any] = {"now": now, "id": run_id, **(owner or process_owner())}
        sets = ""
        if curve is not None:
            sets = ", curve = :curve, epoch = :epoch, batch = coalesce(n_batches, 0)"
            values.update(curve=json.dumps(list(curve)), epoch=int(curve[-1]["epoch"]) if curve else 0)
        with self._write() as con:
            run = self._load(con, run_id)
            if run.status not in _CLAIMABLE:
                raise InvalidTransition(f"run {run_id} is {run.status}; only a queued run can start")
            con.execute(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started = :now, heartbeat = :now, "
                "finished = NULL, error = NULL, cancel_requested = 0, host = :host, pid = :pid, "
                f"proc_start = :proc_start{sets} WHERE id = :id",
                values,
            )
            return self._load(con, run_id)

    def _owned_update(
        self, run_id: str, attempt: int, values: Mapping[str, Any], curve_entry: Mapping[str, Any] | None = None
    ) -> bool:
        """Set ``values`` (and merge ``curve_entry``) while attempt ``attempt`` still owns the run.

        Returns whether the owner should carry on: False once a cancel was requested or another attempt owns the
        run. An ``interrupted`` run whose owner writes again was only asleep (a laptop lid closed, a long pause):
        it is marked ``running`` again.
        """
        values = dict(values)
        with self._write() as con:
            row = con.execute(
                "SELECT status, attempt, cancel_requested, curve FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None or row["attempt"] != attempt or row["status"] not in ("running", "interrupted"):
                return False
            if row["status"] == "interrupted":
                values.update(status="running", finished=None, error=None)
            if curve_entry is not None:
                # an epoch seen again (a resume from an older checkpoint) replaces itself and everything after it
                curve = [e for e in json.loads(row["curve"]) if e.get("epoch", -1) < curve_entry["epoch"]]
                values["curve"] = json.dumps([*curve, dict(curve_entry)])
            sets = ", ".join(f"{name} = :{name}" for name in values)
            con.execute(f"UPDATE runs SET {sets} WHERE id = :id", {**values, "id": run_id})
            return not row["cancel_requested"]

    def heartbeat(self, run_id: str, attempt: int) -> bool:
        """Record that attempt ``attempt`` is alive. False: stop (cancel requested, or the run is no longer ours)."""
        return self._owned_update(run_id, attempt, {"heartbeat": time.time()})

    def progress(
        self,
        run_id: str,
        attempt: int,
        *,
        epoch: int | None = None,
        batch: int | None = None,
        n_batches: int | None = None,
        n_epochs: int | None = None,
        curve_entry: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store live progress (only the fields given) and count as a heartbeat.

        ``curve_entry`` is one epoch of the learning curve (a dict with an ``epoch`` key); it replaces any entries
        of that epoch or later, so a resumed run never shows an epoch twice. Returns like :meth:`heartbeat`.
        """
        values: dict[str, Any] = {"heartbeat": time.time()}
        for name, value in (("epoch", epoch), ("batch", batch), ("n_batches", n_batches), ("n_epochs", n_epochs)):
            if value is not None:
                values[name] = int(value)
        return self._owned_update(run_id, attempt, values, curve_entry)

    def finish(
        self,
        run_id: str,
        attempt: int,
        status: str,
        *,
        error: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        curve: Sequence[Mapping[str, Any]] | None = None,
    ) -> bool:
        """Final status of attempt ``attempt`` (``done``, ``failed``, ``cancelled`` or ``interrupted``).

        Ignored (returns False) when another attempt owns the run by now.
        """
        if status not in _FINAL:
            raise ValueError(f"finish status must be one of {_FINAL}, not {status!r}")
        sets = ["status = :status", "finished = :now", "heartbeat = :now", "error = :error", "cancel_requested = 0"]
        params: dict[str, Any] = {"status": status, "now": time.time(), "error": error}
        if metrics is not None:
            sets.append("metrics = :metrics")
            params["metrics"] = json.dumps(metrics)
        if curve is not None:
            sets.append("curve = :curve")
            params["curve"] = json.dumps(list(curve))
        with self._write() as con:
            cur = con.execute(
                f"UPDATE runs SET {', '.join(sets)} WHERE id = :id AND attempt = :attempt "
                "AND status IN ('running', 'interrupted')",
                {**params, "id": run_id, "attempt": attempt},
            )
            return cur.rowcount == 1

    def request_cancel(self, run_id: str) -> Run:
        """Cancel a run: a queued (or interrupted) one at once, a running one at its owner's next batch."""
        with self._write() as con:
            run = self._load(con, run_id)
            if run.status in ("queued", "interrupted"):
                con.execute(
                    "UPDATE runs SET status = 'cancelled', finished = ?, error = NULL WHERE id = ?",
                    (time.time(), run_id),
                )
            elif run.status == "running":
                con.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
            else:
                raise InvalidTransition(
                    f"run {run_id} is already {run.status}; only a queued or running run can be cancelled"
                )
        return self.get(run_id)

    def abandon(self, run_id: str, reason: str) -> bool:
        """Mark a ``queued`` run that will not be started after all as ``interrupted`` (resumable)."""
        with self._write() as con:
            cur = con.execute(
                "UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE id = ? AND status = 'queued'",
                (time.time(), interrupted_message(run_id, reason), run_id),
            )
            return cur.rowcount == 1

    def requeue(self, run_id: str, config: Mapping[str, Any] | None = None) -> Run:
        """Put a finished, failed, cancelled or interrupted run back in the queue (for resume), owned by this
        process; ``config`` replaces its config (e.g. more epochs)."""
        with self._write() as con:
            run = self._load(con, run_id)
            if run.status not in _REQUEUEABLE:
                raise InvalidTransition(
                    f"run {run_id} is {run.status}; only an interrupted, cancelled, failed or done run can resume"
                )
            params: dict[str, Any] = {"id": run_id, **process_owner()}
            sets = "status = 'queued', finished = NULL, error = NULL, cancel_requested = 0, heartbeat = NULL"
            sets += ", host = :host, pid = :pid, proc_start = :proc_start"
            if config is not None:
                sets += ", config = :config"
                params["config"] = json.dumps(dict(config), sort_keys=True)
                if isinstance(config.get("epochs"), int):
                    sets += ", n_epochs = :n_epochs"
                    params["n_epochs"] = config["epochs"]
            con.execute(f"UPDATE runs SET {sets} WHERE id = :id", params)
        return self.get(run_id)


def format_time(ts: float | None) -> str:
    """Unix seconds as local ``YYYY-MM-DD HH:MM:SS`` ('-' for None)."""
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
