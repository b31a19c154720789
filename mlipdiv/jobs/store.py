"""The run store: one SQLite database (WAL mode) plus one folder per run, under :func:`mlipdiv.paths.home`.

Layout::

    MLIPDIV_HOME/
        runs.db                  # this table; WAL mode, so readers never block the writer
        <run id>/                # the run's folder (mlipdiv.io.rundir.RunDir): written by training, plus run.json

Every call opens its own short-lived connection, so a store object can be shared by threads and survives ``fork``;
SQLite serializes writers (``BEGIN IMMEDIATE`` plus a busy timeout) while any number of readers proceed.

A run's *key* (a sweep's hash of its config and dataset) is unique: :meth:`RunStore.find_or_create` looks it up and
inserts in one transaction, so two sweeps (or two app sessions) submitting one plan share its runs. Run folders are
stored relative to the store's root, so a copied ``MLIPDIV_HOME`` works on its own copy. A read-only
``MLIPDIV_HOME`` opens read-only (listing and showing work; changes raise :class:`StoreError`). A damaged
``runs.db`` raises a one-line :class:`StoreError` and is left as it is; ``python -m mlipdiv runs repair``
(:mod:`mlipdiv.jobs.repair`) moves it aside and rebuilds the table from the run folders.

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

import builtins
import hashlib
import json
import os
import secrets
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from mlipdiv.errors import MlipdivError
from mlipdiv.io.metrics import RunMetrics
from mlipdiv.io.rundir import RunDir
from mlipdiv.names import ACTIVE_STATUSES, FINAL_STATUSES, Status
from mlipdiv.names import STATUSES as _STATUSES
from mlipdiv.paths import home

__all__ = [
    "STATUSES",
    "ACTIVE",
    "Run",
    "RunStore",
    "UnknownRun",
    "InvalidTransition",
    "StoreError",
    "DuplicateKey",
    "resumed_key",
    "run_marker",
    "new_run_id",
    "pid_alive",
    "process_owner",
    "format_time",
    "interrupted_message",
]

STATUSES = _STATUSES  # mlipdiv.names.Status: the values of the status column
ACTIVE = ACTIVE_STATUSES
DB_NAME = "runs.db"
SCHEMA_VERSION = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_STALE_AFTER = 60.0  # seconds without a heartbeat before a running run counts as interrupted

# Which statuses each transition may start from.
_CLAIMABLE = (Status.QUEUED, Status.INTERRUPTED)
_REQUEUEABLE = (Status.INTERRUPTED, Status.CANCELLED, Status.FAILED, Status.DONE)
_FINAL = FINAL_STATUSES

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id               TEXT PRIMARY KEY,
    key              TEXT,
    config           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ({", ".join(repr(str(s)) for s in STATUSES)})),
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
CREATE UNIQUE INDEX IF NOT EXISTS runs_key_unique ON runs (key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


class UnknownRun(MlipdivError):
    """No run has this id."""


class InvalidTransition(MlipdivError):
    """The run's status does not allow what was asked (e.g. cancelling a finished run)."""


class StoreError(MlipdivError):
    """The store cannot be used as asked: ``runs.db`` is damaged or foreign, or the store is read-only."""


class DuplicateKey(StoreError):
    """A run with this key exists already (keys are unique; see :meth:`RunStore.find_or_create`)."""


def resumed_key(key: str, epochs: int) -> str:
    """The key of run ``key`` after a resume to a new total of ``epochs``.

    Such a run trained its first epochs on the old schedule, so it is neither the old config's run nor a fresh run of
    the new one: its key must match no planned run (a later sweep then trains the planned config itself instead of
    counting this one as done).
    """
    blob = json.dumps({"resumed": key, "epochs": int(epochs)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _portable(run_dir: str, run_id: str, root: Path) -> str:
    """How a run folder is stored: relative to the root when it lies under it (or is a copied store's ``<id>``)."""
    path = Path(run_dir)
    if not path.is_absolute():
        return run_dir
    try:
        return str(path.relative_to(root))
    except ValueError:
        pass
    if path.name == run_id:  # made by this store before it was copied or moved: its folder is the copy's <id>
        return run_id
    return run_dir


def new_run_id() -> str:
    """A short id that sorts by creation time: ``YYYYMMDD-HHMMSS-xxxxxx`` (UTC, 6 random hex digits)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _start_token(created: float) -> str:
    """A process's start time as stored in ``proc_start``: clock ticks since boot, the string earlier versions read
    from ``/proc/<pid>/stat``, so rows written by them still match."""
    return str(round((created - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid``, to tell a live process from a later one that reused its pid (None: unknown)."""
    try:
        return _start_token(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError):
        return None


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """Whether process ``pid`` on this host is alive (a zombie counts as dead; so does a reused pid)."""
    try:
        proc = psutil.Process(pid)
        status, created = proc.status(), proc.create_time()
    except psutil.ZombieProcess:
        return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may not look at it
    if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
        return False
    return proc_start is None or _start_token(created) == proc_start


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
    def from_row(cls, row: sqlite3.Row, root: Path) -> Run:
        """Decode a row; ``run_dir`` comes out absolute (stored relative to ``root``)."""
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
        d["curve"] = json.loads(d["curve"]) if d["curve"] else []
        d["run_dir"] = root / _portable(d["run_dir"], d["id"], root)
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ACTIVE

    @property
    def folder(self) -> RunDir:
        """The run's folder, through which its files are read."""
        return RunDir(self.run_dir)

    def run_metrics(self) -> RunMetrics | None:
        """``metrics`` decoded (None while the run has none).

        Raises:
            MetricsError: the stored metrics are not the ``metrics.json`` contract (names the run).
        """
        if not self.metrics:
            return None
        return RunMetrics.from_dict(self.metrics, f"metrics of run {self.id}")

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
        readonly: open without writing anything (listing and showing work; changes raise :class:`StoreError`).
            Default: read-only exactly when the folder or ``runs.db`` cannot be written.

    Raises:
        StoreError: ``runs.db`` is not a (whole) SQLite database, or was made by a newer mlipdiv.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        stale_after: float | None = None,
        busy_timeout: float = 30.0,
        readonly: bool | None = None,
    ):
        self.root = Path(root if root is not None else home()).resolve()
        self.db_path = self.root / DB_NAME
        if stale_after is None:
            stale_after = float(os.environ.get("MLIPDIV_STALE_AFTER", DEFAULT_STALE_AFTER))
        self.stale_after = stale_after
        self.busy_timeout = busy_timeout
        self._uri: str | None = None  # the read-only connection string, once chosen
        if readonly is None:
            readonly = not self._can_write()
        self.readonly = readonly
        self._check_file()
        if not readonly:
            try:
                self._open_for_writing()
            except StoreError as exc:
                if "read-only" not in str(exc):
                    raise
                self.readonly = True  # e.g. a read-only mount that os.access did not see
        if self.readonly:
            self._check_readable()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r}{', readonly=True' if self.readonly else ''})"

    # -- opening -------------------------------------------------------------------------------------------------

    def _can_write(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return _writable(self.root) and (not self.db_path.exists() or _writable(self.db_path))

    def _damaged(self, why: str) -> StoreError:
        return StoreError(
            f"{self.db_path} is not a SQLite database ({why}); run `python -m mlipdiv runs repair` to move it aside "
            "and rebuild the store from the run folders"
        )

    def _check_file(self, retries: int = 3) -> None:
        """Refuse a foreign or truncated ``runs.db`` before SQLite touches it (so it stays exactly as it is)."""
        for attempt in range(retries):
            try:
                size = self.db_path.stat().st_size
                with open(self.db_path, "rb") as f:
                    head = f.read(100)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StoreError(f"cannot read {self.db_path} ({exc.strerror}); check its permissions") from exc
            if size == 0:  # a new store in WAL mode, before its first checkpoint (or an emptied one: see list)
                return
            if not head.startswith(_SQLITE_MAGIC):
                raise self._damaged("it does not start with the SQLite header")
            if len(head) < 100:
                why = f"it is truncated to {size} bytes"
            else:
                page_size = int.from_bytes(head[16:18], "big")
                page_size = 65536 if page_size == 1 else page_size
                pages = int.from_bytes(head[28:32], "big")
                header_valid = head[24:28] == head[92:96]
                if not (header_valid and pages and size < pages * page_size):
                    return
                why = f"it is truncated: {size} bytes where its header promises {pages * page_size}"
            if attempt + 1 < retries:  # a checkpoint of another process may be growing the file right now
                time.sleep(0.1)
        raise self._damaged(why)

    def _open_for_writing(self) -> None:
        """Create or migrate the schema (one transaction)."""
        con = self._connect()
        try:
            with _translated(self):
                con.execute("PRAGMA journal_mode=WAL")
                with self._transaction(con):
                    version = con.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise StoreError(
                            f"{self.db_path} was written by a newer mlipdiv (schema {version}, this one reads up to "
                            f"{SCHEMA_VERSION}); update mlipdiv"
                        )
                    if version < SCHEMA_VERSION:
                        _migrate(con, version)
                    self._relativize(con)
        finally:
            con.close()

    def _relativize(self, con: sqlite3.Connection) -> None:
        """Store run folders under the root relative to it (stores from before schema 2, or copied ones)."""
        for row in con.execute("SELECT id, run_dir FROM runs WHERE run_dir LIKE '/%'").fetchall():
            portable = _portable(row["run_dir"], row["id"], self.root)
            if portable != row["run_dir"]:
                con.execute("UPDATE runs SET run_dir = ? WHERE id = ?", (portable, row["id"]))

    def _check_readable(self) -> None:
        if not self.db_path.exists():
            return
        con = self._connect()
        con.close()

    # -- connections ---------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        with _translated(self):
            if self.readonly:
                con = self._connect_readonly()
            else:
                con = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None)
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                con.execute("PRAGMA synchronous=NORMAL")
        con.row_factory = sqlite3.Row
        return con

    def _connect_readonly(self) -> sqlite3.Connection:
        """``mode=ro``, or ``immutable=1`` when there is no ``-wal`` file (all is in ``runs.db``, and opening a WAL
        database even read-only creates ``-wal``/``-shm`` files) or WAL cannot be read (no ``-shm`` in a read-only
        folder)."""
        base = "file:" + quote(str(self.db_path))
        candidates = [f"{base}?mode=ro", f"{base}?mode=ro&immutable=1"]
        if not Path(f"{self.db_path}-wal").exists():
            candidates.reverse()
        if self._uri:
            candidates = [self._uri]
        error: sqlite3.Error | None = None
        for uri in candidates:
            con = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None)
            try:
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                con.close()
                error = exc
                if not _is_open_error(exc):
                    raise
                continue
            self._uri = uri
            return con
        assert error is not None
        raise error

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
        if self.readonly:
            raise StoreError(
                f"the run store {self.root} is read-only; listing and showing runs work, changing them needs a "
                "writable MLIPDIV_HOME"
            )
        con = self._connect()
        try:
            with _translated(self), self._transaction(con):
                yield con
        finally:
            con.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        if self.readonly and not self.db_path.exists():
            return []  # a read-only folder without a store: no runs
        con = self._connect()
        try:
            with _translated(self):
                return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def _run(self, row: sqlite3.Row) -> Run:
        return Run.from_row(row, self.root)

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run:
        """The run ``run_id`` (reconciled: a dead owner shows as ``interrupted``). Raises :class:`UnknownRun`."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise self._unknown(run_id)
        return self._reconcile([self._run(rows[0])])[0]

    def _unknown(self, run_id: str) -> UnknownRun:
        folder = self.root / run_id
        if run_id and RunDir(folder).is_run_folder():
            return UnknownRun(
                f"no run {run_id!r} in the table of {self.root}, but its folder is there; "
                "`python -m mlipdiv runs repair` adds it back"
            )
        return UnknownRun(f"no run {run_id!r} in {self.root} (see `python -m mlipdiv runs list`)")

    def list(self, status: str | Sequence[str] | None = None, key: str | None = None) -> list[Run]:
        """All runs, oldest first, optionally only those with a status (or statuses) and/or a config key."""
        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
            if "failed" in statuses and "done" not in statuses:  # a done run whose folder is gone reads as failed
                where[-1] = f"status IN ({', '.join('?' * (len(statuses) + 1))})"
                params.append("done")
        if key is not None:
            where.append("key = ?")
            params.append(key)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, id"
        runs = self._reconcile([self._run(r) for r in self._read(sql, params)])
        if status is not None:  # reconciling may have moved some out of the asked statuses
            runs = [r for r in runs if r.status in statuses]
        return runs

    def find(self, key: str) -> Run | None:
        """The run with config key ``key``, or ``None``."""
        runs = self.list(key=key)
        return runs[-1] if runs else None

    def unlisted_folders(self) -> builtins.list[Path]:
        """Run folders under the root that the table does not know (a lost or emptied ``runs.db``: see repair);
        hidden folders (an interrupted import's staging) are not runs."""
        known = {r["id"] for r in self._read("SELECT id FROM runs")}
        try:
            entries = sorted(self.root.iterdir())
        except OSError:
            return []
        return [p for p in entries if p.is_dir() and p.name not in known and not p.name.startswith(".")
                and RunDir(p).is_run_folder()]

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

    def _reconcile(self, runs: builtins.list[Run]) -> builtins.list[Run]:
        now = time.time()
        out = []
        for run in runs:
            reason = self.owner_gone(run, now)
            if reason is not None:
                if self.readonly:  # say what it is without storing it
                    run.status, run.finished, run.error = "interrupted", now, interrupted_message(run.id, reason)
                else:
                    with self._write() as con:
                        run = self._reconcile_in(con, run, reason, now)
            out.append(_folder_checked(run))
        return out

    def _reconcile_in(self, con: sqlite3.Connection, run: Run, reason: str, now: float) -> Run:
        con.execute(
            "UPDATE runs SET status = 'interrupted', finished = ?, error = ? "
            "WHERE id = ? AND status = ? AND attempt = ? AND heartbeat IS ?",
            (now, interrupted_message(run.id, reason), run.id, run.status, run.attempt, run.heartbeat),
        )
        return self._load(con, run.id)

    # -- writing -------------------------------------------------------------------------------------------------

    def create(self, config: Mapping[str, Any], key: str | None = None, n_epochs: int | None = None) -> Run:
        """Add a ``queued`` run owned by this process and make its folder.

        Raises:
            DuplicateKey: a run with ``key`` exists (use :meth:`find_or_create` to share it).
        """
        with self._write() as con:
            return self._insert(con, config, key, n_epochs)

    def _insert(self, con: sqlite3.Connection, config: Mapping[str, Any], key: str | None, n_epochs: int | None) -> Run:
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
        try:
            con.execute(
                "INSERT INTO runs (id, key, config, status, n_epochs, created, run_dir, host, pid, proc_start) "
                "VALUES (:id, :key, :config, 'queued', :n_epochs, :created, :run_dir, :host, :pid, :proc_start)",
                {
                    "id": run_id,
                    "key": key,
                    "config": json.dumps(dict(config), sort_keys=True),
                    "n_epochs": n_epochs,
                    "created": time.time(),
                    "run_dir": run_id,
                    **process_owner(),
                },
            )
        except sqlite3.IntegrityError as exc:
            run_dir.rmdir()
            other = con.execute("SELECT id FROM runs WHERE key = ?", (key,)).fetchone()
            raise DuplicateKey(
                f"the store {self.root} already has run {other['id'] if other else '?'} with key {key}"
            ) from exc
        run = self._load(con, run_id)
        _write_marker(run)
        return run

    def find_or_create(self, config: Mapping[str, Any], key: str) -> tuple[Run, str]:
        """The run with ``key``, made ready to train when it must be, in ONE transaction (so concurrent sweeps on
        one store share their runs instead of each adding its own).

        Returns:
            (run, what): ``created`` (a new queued run), ``requeued`` (it had stopped or failed, or its folder is
            gone: queued again, to continue from its checkpoint when it has one), ``active`` (queued or running in
            some process: wait for it) or ``done``.
        """
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
            if row is None:
                return self._insert(con, config, key, None), "created"
            run = self._run(row)
            reason = self.owner_gone(run, now)
            if reason is not None:
                run = self._reconcile_in(con, run, reason, now)
            run = _folder_checked(run)
            if run.status in ACTIVE:
                return run, "active"
            if run.status == "done":
                return run, "done"
            self._requeue_in(con, run, None)
            return self._load(con, run.id), "requeued"

    def _load(self, con: sqlite3.Connection, run_id: str) -> Run:
        row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._unknown(run_id)
        return self._run(row)

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
                # a point seen again (a resume from an older checkpoint) replaces itself and everything after it;
                # points within an epoch (a ``step`` each) are told apart by their step
                curve = [e for e in json.loads(row["curve"]) if _before(e, curve_entry)]
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
        metrics: RunMetrics | Mapping[str, Any] | None = None,
        curve: Sequence[Mapping[str, Any]] | None = None,
    ) -> bool:
        """Final status of attempt ``attempt`` (``done``, ``failed``, ``cancelled`` or ``interrupted``).

        ``metrics`` is stored as JSON (the table keeps what it is given; readers decode it with
        :meth:`Run.run_metrics`).

        Ignored (returns False) when another attempt owns the run by now.
        """
        if status not in _FINAL:
            raise ValueError(f"finish status must be one of {', '.join(_FINAL)}, not {status!r}")
        sets = ["status = :status", "finished = :now", "heartbeat = :now", "error = :error", "cancel_requested = 0"]
        params: dict[str, Any] = {"status": status, "now": time.time(), "error": error}
        if metrics is not None:
            sets.append("metrics = :metrics")
            params["metrics"] = json.dumps(metrics.to_dict() if isinstance(metrics, RunMetrics) else metrics)
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

    def delete(self, run_id: str) -> Run:
        """Remove a run that is not active: its row, and its folder when that lies in this store's root.

        A folder elsewhere (a run made with an explicit folder) is left where it is: the store only deletes what it
        made. Returns the run as it was.

        Raises:
            InvalidTransition: the run is queued or running (cancel it first); nothing is removed.
            UnknownRun: no run has this id.
        """
        with self._write() as con:
            run = self._load(con, run_id)
            reason = self.owner_gone(run)
            if reason is not None:
                run = self._reconcile_in(con, run, reason, time.time())
            if run.status in ACTIVE:
                raise InvalidTransition(
                    f"run {run_id} is {run.status}; cancel it and wait until it has stopped before deleting it"
                )
            if run.status == "interrupted" and run.host == _HOST and run.pid and pid_alive(run.pid, run.proc_start):
                raise InvalidTransition(
                    f"run {run_id} is interrupted but its process {run.pid} is still alive and may write to its "
                    "folder; cancel it or wait for that process to end before deleting it"
                )
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        folder = run.run_dir
        if folder.is_dir() and folder.resolve().is_relative_to(self.root) and folder.resolve() != self.root:
            shutil.rmtree(folder, ignore_errors=True)
        return run

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
        process; ``config`` replaces its config (e.g. more epochs).

        Nothing is stored when the request is refused: ``epochs`` below 1, or a ``done`` run asked for no more
        epochs than it was trained for (it would train nothing). A new ``epochs`` also gives the run a new key
        (:func:`resumed_key`), so a later sweep of the original config does not count it as that config's run.

        Raises:
            InvalidTransition: the run is active, or done and not asked for more epochs.
            StoreError: ``epochs`` is not an integer of at least 1.
        """
        if config is not None and "epochs" in config:
            epochs = config["epochs"]
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise StoreError(f"epochs must be an integer of at least 1, not {epochs!r}; run {run_id} is unchanged")
        with self._write() as con:
            run = _folder_checked(self._load(con, run_id))
            self._requeue_in(con, run, config)
        return self.get(run_id)

    def _requeue_in(self, con: sqlite3.Connection, run: Run, config: Mapping[str, Any] | None) -> None:
        if run.status not in _REQUEUEABLE:
            raise InvalidTransition(
                f"run {run.id} is {run.status}; only an interrupted, cancelled, failed or done run can resume"
            )
        params: dict[str, Any] = {"id": run.id, **process_owner()}
        sets = "status = 'queued', finished = NULL, error = NULL, cancel_requested = 0, heartbeat = NULL"
        sets += ", host = :host, pid = :pid, proc_start = :proc_start"
        key = run.key
        if config is not None:
            epochs, before = config.get("epochs"), run.config.get("epochs")
            if run.status == "done" and isinstance(epochs, int) and isinstance(before, int) and epochs <= before:
                raise InvalidTransition(
                    f"run {run.id} is done, trained for {before} epochs; resuming it with {epochs} would train "
                    f"nothing (ask for more than {before}); the run is unchanged"
                )
            sets += ", config = :config"
            params["config"] = json.dumps(dict(config), sort_keys=True)
            if isinstance(epochs, int):
                sets += ", n_epochs = :n_epochs"
                params["n_epochs"] = epochs
            if key is not None and isinstance(epochs, int) and epochs != before:
                key = resumed_key(key, epochs)
                taken = con.execute("SELECT id FROM runs WHERE key = ? AND id != ?", (key, run.id)).fetchone()
                sets += ", key = :key"
                params["key"] = None if taken else key
        con.execute(f"UPDATE runs SET {sets} WHERE id = :id", params)
        if config is not None:
            _write_marker(self._load(con, run.id))


def _before(entry: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether curve point ``entry`` comes before ``new`` (by ``step`` where both have one, else by ``epoch``)."""
    if entry.get("step") is not None and new.get("step") is not None:
        return bool(entry["step"] < new["step"])
    return bool(entry.get("epoch", -1) < new["epoch"])


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (tests patch it: root may write anywhere)."""
    return os.access(path, os.W_OK)


def _is_open_error(exc: sqlite3.Error) -> bool:
    return "unable to open" in str(exc)


@contextmanager
def _translated(store: RunStore) -> Iterator[None]:
    """SQLite errors a user can act on as one-line :class:`StoreError`; a busy store and bugs pass through."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise
        if "readonly" in text or "read-only" in text:
            raise StoreError(
                f"the run store {store.root} is read-only ({text}); listing and showing runs work, changing them "
                "needs a writable MLIPDIV_HOME"
            ) from exc
        if "not a database" in text or "malformed" in text or "corrupt" in text or "disk image" in text:
            raise store._damaged(text) from exc
        if _is_open_error(exc):
            raise StoreError(
                f"cannot open {store.db_path} ({text}); check that the folder exists and is readable"
            ) from exc
        raise


def _folder_checked(run: Run) -> Run:
    """A ``done`` run whose folder is gone reads as ``failed`` (not stored: a folder on an unmounted disk comes back).

    Its model and predictions are lost, so it is not a result any more; resuming (or a sweep) trains it again.
    """
    if run.status == "done" and not run.run_dir.is_dir():
        run.status = "failed"
        run.error = (
            f"its run folder {run.run_dir} is missing (moved or deleted behind the store); the results are gone: "
            f"`python -m mlipdiv runs resume {run.id}` trains it again"
        )
    return run


def run_marker(run: Run) -> dict[str, Any]:
    """``RUN/run.json``'s content: what the table knows of a run that its folder does not (`runs repair`, export)."""
    return {"id": run.id, "key": run.key, "config": run.config, "created": run.created}


def _write_marker(run: Run) -> None:
    """Write :func:`run_marker` into the run's folder, for `runs repair`."""
    try:
        run.folder.write_marker(run_marker(run))
    except OSError:  # the table is what counts; repair falls back to config.json
        pass


def _migrate(con: sqlite3.Connection, version: int) -> None:
    """Bring the schema from ``version`` to :data:`SCHEMA_VERSION` (inside the caller's transaction).

    0 (a new store): create the table. 1 -> 2: keys become unique. Where older concurrent sweeps stored several runs
    of one key, the best one keeps it (``done`` before any other status, then the newest) and the others lose their
    key: they stay in the table, listed and resumable, but no sweep counts them any more. Run folders stored as
    absolute paths become relative to the store's root (done on every writable open, see ``_relativize``).
    """
    if version == 0:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
    if version == 1:
        dupes = con.execute("SELECT key FROM runs WHERE key IS NOT NULL GROUP BY key HAVING count(*) > 1").fetchall()
        for (key,) in dupes:
            rows = con.execute(
                "SELECT id FROM runs WHERE key = ? ORDER BY status = 'done' DESC, created DESC, id DESC", (key,)
            ).fetchall()
            con.executemany("UPDATE runs SET key = NULL WHERE id = ?", [(r[0],) for r in rows[1:]])
        con.execute("DROP INDEX IF EXISTS runs_key")
        con.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_key_unique ON runs (key) WHERE key IS NOT NULL")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def format_time(ts: float | None) -> str:
    """Unix seconds as local ``YYYY-MM-DD HH:MM:SS`` ('-' for None)."""
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
