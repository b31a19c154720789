"""``runs repair``: rebuild the run table from the run folders, after ``runs.db`` was damaged, emptied or lost.

Every run folder holds what its row needs: ``run.json`` (id, key, config, creation time; written by the store),
``config.json`` (written by training), and ``metrics.json`` once it finished. A damaged ``runs.db`` is never deleted:
it is moved aside as ``runs.db.damaged-<time>`` (with its ``-wal``/``-shm`` files, so SQLite tools can still open
it) and a new one is built. A healthy store keeps its rows and gets the folders it does not list added back.

Stop the app and any sweep using the store first: a run that is training while the table is rebuilt is listed as
interrupted (resume it afterwards).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlipdiv.io.rundir import RunDir
from mlipdiv.jobs.store import DB_NAME, RunStore, StoreError, interrupted_message
from mlipdiv.paths import home

__all__ = ["RepairReport", "folder_record", "insert_records", "repair_store"]


@dataclass
class RepairReport:
    """What :func:`repair_store` did: where the damaged table went, which runs it added, which folders it skipped."""

    root: Path
    moved_to: Path | None = None
    damage: str | None = None
    added: dict[str, str] = field(default_factory=dict)  # run id -> status
    skipped: list[str] = field(default_factory=list)  # "folder: why"


def _damage(root: Path) -> str | None:
    """Why the store at ``root`` cannot be used as it is, or None when it is healthy."""
    try:
        store = RunStore(root, readonly=False)
        result = store._read("PRAGMA quick_check")
    except StoreError as exc:
        if "read-only" in str(exc):
            raise
        return str(exc)
    text = "; ".join(str(r[0]) for r in result)
    return None if text == "ok" else f"quick_check: {text[:200]}"


def _move_aside(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = root / f"{DB_NAME}.damaged-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = root / f"{DB_NAME}.damaged-{stamp}-{n}"
    os.rename(root / DB_NAME, target)
    for suffix in ("-wal", "-shm"):  # SQLite finds them by name: keep them beside the copy
        side = root / f"{DB_NAME}{suffix}"
        if side.exists():
            os.rename(side, Path(f"{target}{suffix}"))
    return target


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _created(folder: Path, marker: dict[str, Any] | None) -> float:
    if marker and isinstance(marker.get("created"), (int, float)):
        return float(marker["created"])
    try:  # ids start with their UTC creation time
        return datetime.strptime(folder.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return folder.stat().st_mtime


def _recomputed_key(config: dict[str, Any]) -> str | None:
    """The key a sweep gives this config (None when its dataset file is gone: no sweep can plan it then)."""
    from mlipdiv.jobs.sweep import file_digest, run_key

    dataset = config.get("dataset")
    if not dataset or not Path(dataset).is_file():
        return None
    return run_key(config, file_digest(dataset))


def folder_record(folder: Path) -> dict[str, Any] | str:
    """The row a run folder stands for, or why it is not one."""
    run = RunDir(folder)
    marker = _read_json(run.marker_path)
    marker = marker if isinstance(marker, dict) else None
    config = marker.get("config") if marker else None
    if not isinstance(config, dict):
        config = _read_json(run.config_path)
    if not isinstance(config, dict):
        return f"no {run.marker_path.name} or {run.config_path.name}"
    # run.json holds the key the store gave it (a resumed run's differs from its config's); else recompute it
    key = marker.get("key") if marker else _recomputed_key(config)
    created = _created(folder, marker)
    epochs = config.get("epochs") if isinstance(config.get("epochs"), int) else None
    row: dict[str, Any] = {
        "id": folder.name, "key": key, "config": json.dumps(config, sort_keys=True), "epoch": 0,
        "n_epochs": epochs, "created": created, "finished": None, "error": None, "metrics": None, "curve": "[]",
        "run_dir": folder.name,
    }
    # copied into the row as the folder holds it (the table stores JSON; readers decode it with Run.run_metrics)
    metrics = _read_json(run.metrics_path)
    if isinstance(metrics, dict):
        curve = metrics.get("curve") if isinstance(metrics.get("curve"), list) else []
        row.update(status="done", metrics=json.dumps(metrics), curve=json.dumps(curve),
                   epoch=int(curve[-1].get("epoch", len(curve))) if curve else 0,
                   finished=run.metrics_path.stat().st_mtime)
    elif run.error_log_path.exists():
        log_name = run.error_log_path.name
        lines = [ln for ln in run.read_error_log().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"see {log_name}"
        row.update(status="failed", finished=run.error_log_path.stat().st_mtime,
                   error=f"training failed: {last} (rebuilt from {folder.name}/{log_name})")
    else:
        row.update(status="interrupted", error=interrupted_message(
            folder.name, "rebuilt by `runs repair` from a folder without results"))
    return row


def repair_store(root: str | Path | None = None) -> RepairReport:
    """Rebuild ``root``'s run table from its run folders (see the module docstring).

    Raises:
        StoreError: the store is read-only.
    """
    root = Path(root if root is not None else home()).resolve()
    if not root.is_dir():
        raise StoreError(f"{root} is not a folder; set MLIPDIV_HOME to the run store to repair")
    report = RepairReport(root)
    damage = _damage(root) if (root / DB_NAME).exists() else None
    if damage is not None:
        report.damage = damage
        report.moved_to = _move_aside(root)
    store = RunStore(root, readonly=False)
    records = []
    for folder in store.unlisted_folders() + _unmarked(store):
        rec = folder_record(folder)
        if isinstance(rec, str):
            report.skipped.append(f"{folder.name}: {rec}")
        else:
            records.append(rec)
    report.added.update(insert_records(store, records))
    return report


def insert_records(store: RunStore, records: list[dict[str, Any]]) -> dict[str, str]:
    """Add rows made by :func:`folder_record` to the table; returns run id -> status.

    One run per key: the best keeps it (done first, then the newest), as the schema migration does; the others are
    added without a key (listed, but no sweep takes them for its run).
    """
    added = {}
    records = sorted(records, key=lambda r: (r["status"] != "done", -r["created"]))
    with store._write() as con:
        taken = {r[0] for r in con.execute("SELECT key FROM runs WHERE key IS NOT NULL")}
        for rec in records:
            if rec["key"] in taken:
                rec["key"] = None
            elif rec["key"] is not None:
                taken.add(rec["key"])
            con.execute(
                "INSERT INTO runs (id, key, config, status, epoch, n_epochs, created, finished, error, metrics, "
                "curve, run_dir) VALUES (:id, :key, :config, :status, :epoch, :n_epochs, :created, :finished, "
                ":error, :metrics, :curve, :run_dir)",
                rec,
            )
            added[rec["id"]] = rec["status"]
    return added


def _unmarked(store: RunStore) -> list[Path]:
    """Folders that look like run ids but hold neither marker nor config (a run that never started): skipped, named."""
    known = {r["id"] for r in store._read("SELECT id FROM runs")}
    out = []
    for p in sorted(store.root.iterdir()):
        if (p.is_dir() and p.name not in known and len(p.name) == 22 and p.name[8] == "-"
                and not RunDir(p).is_run_folder()):
            out.append(p)
    return out
