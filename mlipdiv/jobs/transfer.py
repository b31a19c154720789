"""``runs export`` / ``runs import``: finished runs carried from one run store to another, as plain run folders.

Why: a study takes longer than one sitting, and the store that holds its finished runs may not outlive the machine
(a fresh clone, a GPU lent for an afternoon). Exported folders can be committed or copied; importing them into any
store makes a sweep of the same plan reuse them instead of training them again, and the study's analysis reads them
like runs trained there.

An exported folder holds what the analysis and ``runs show`` read: ``run.json`` (id, key, config, creation time),
``config.json``, ``metrics.json``, ``summary.json``, ``split.json``, ``predictions.npz``, and ``model.pt`` only with
``weights`` (the checkpoint, the lock and the logs stay behind). Import reads nothing else: a folder with any other
file, a link, an oversized file, or a file that does not decode (metrics against their contract, predictions without
unpickling, weights with ``weights_only``) is skipped and named, and nothing of it reaches the store. Each file is
read once, without following links, into a hidden staging folder, and the checks read that copy: what a source
folder changes after its files were read cannot get in.

A run's key is a hash of its config, whose ``dataset`` is an absolute path, and of that file's bytes. Import rebases
a run onto the local dataset when the key proves the bytes are the same (the key recomputed from the run's own
config and the local file's digest equals the stored one): ``dataset`` becomes the local path and the key is
recomputed from it, which is the key a sweep planned here gives that run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlipdiv.errors import MlipdivError
from mlipdiv.io.atomic import atomic_write_bytes, atomic_write_json
from mlipdiv.io.metrics import MetricsError, RunMetrics
from mlipdiv.io.rundir import CONFIG, MARKER, METRICS, MODEL, PREDICTIONS, SPLIT, SUMMARY, RunDir
from mlipdiv.jobs.repair import folder_record, insert_records
from mlipdiv.jobs.store import RunStore, run_marker

__all__ = ["EXPORTED", "ExportReport", "ImportReport", "export_runs", "import_runs"]

EXPORTED = (MARKER, CONFIG, METRICS, SUMMARY, SPLIT, PREDICTIONS)
"""The files an exported run folder holds (plus ``model.pt`` with weights)."""
REQUIRED = (MARKER, CONFIG, METRICS)
MAX_FILE_BYTES = 256 * 2**20
"""Larger files are not a run of this project's size (the study's largest predictions.npz is under 1 MB)."""
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_KEY = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class ExportReport:
    """What :func:`export_runs` did: runs written, runs already there with the same bytes, runs it could not export."""

    dest: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "id: why"


@dataclass
class ImportReport:
    """What :func:`import_runs` did: runs added (id -> status), runs rebased onto the local dataset, runs skipped."""

    root: Path
    added: dict[str, str] = field(default_factory=dict)
    rebased: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in the store (same id or same key)
    skipped: list[str] = field(default_factory=list)  # "folder: why"


# ------------------------------------------------------------------------------------------------- export


def _export_files(run: Any, weights: bool) -> dict[str, bytes] | str:
    """The bytes of each exported file of a finished run, or why it cannot be exported."""
    folder = run.folder
    names = (*EXPORTED, MODEL) if weights else EXPORTED
    files: dict[str, bytes] = {}
    for name in names:
        if name == MARKER:  # the store's row is what a sweep matches: write it, not a stale marker
            files[name] = (json.dumps(run_marker(run), indent=2) + "\n").encode()  # as atomic_write_json writes it
            continue
        path = folder.path / name
        if path.is_file():
            files[name] = path.read_bytes()
        elif name in REQUIRED or name == MODEL:
            return f"no {name} in {folder.path}"
    return files


def _comparable(files: dict[str, bytes]) -> dict[str, Any]:
    """Exported files as two exports of one run compare: the marker and config decoded, without the dataset path and
    the key (import rewrites both when it moves a run onto another copy of its dataset)."""
    out: dict[str, Any] = dict(files)
    for name in (MARKER, CONFIG):
        try:
            data = json.loads(files[name])
        except (KeyError, ValueError):
            continue
        if isinstance(data, dict):
            data.pop("key", None)
            config = data.get("config") if name == MARKER else data
            if isinstance(config, dict):
                config.pop("dataset", None)
        out[name] = data
    return out


def export_runs(store: RunStore, dest: str | Path, *, weights: bool = False, overwrite: bool = False) -> ExportReport:
    """Write every finished run of ``store`` to ``dest/<run id>/`` (see the module docstring).

    A run already in ``dest`` with the same files is left as it is (its dataset path and key may differ: an imported
    run exported again), so exporting again adds only new runs. A folder in ``dest`` that holds other files for a run
    is replaced only with ``overwrite``.

    Raises:
        MlipdivError: ``dest`` is a file, or holds a run folder with other bytes and ``overwrite`` is false (nothing
            is written then).
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise MlipdivError(f"{dest} is a file; export writes a folder of run folders")
    report = ExportReport(dest)
    todo: list[tuple[str, dict[str, bytes]]] = []
    conflicts = []
    for run in store.list(status="done"):
        files = _export_files(run, weights)
        if isinstance(files, str):
            report.skipped.append(f"{run.id}: {files}")
            continue
        target = dest / run.id
        old = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} if target.is_dir() else None
        if old is not None and not weights:
            old.pop(MODEL, None)  # an earlier export with weights holds this one
        if old is not None and _comparable(old) == _comparable(files):
            report.unchanged.append(run.id)
        elif old is not None and not overwrite:
            conflicts.append(run.id)
        else:
            todo.append((run.id, files))
    if conflicts:
        raise MlipdivError(f"{dest} already holds {len(conflicts)} of these runs with other files (first: "
                           f"{conflicts[0]}); nothing was written. Export to another folder, or pass --overwrite")
    for run_id, files in todo:
        target = dest / run_id
        if target.is_dir():  # --overwrite: the folder becomes exactly the export
            shutil.rmtree(target)
        for name, data in files.items():
            atomic_write_bytes(target / name, data)
        report.written.append(run_id)
    return report


# ------------------------------------------------------------------------------------------------- import


def _json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise MlipdivError(f"{path.name} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MlipdivError(f"{path.name} is not a JSON object")
    return data


def _copy_plain_files(folder: Path, staging: Path) -> None:
    """Copy the files of an exported run folder into ``staging``, each opened once, without following links.

    Why: the checks that follow read this copy, so a file swapped for a link (or changed) after it was checked cannot
    reach the store; the folder and its files are opened relative to one descriptor, never by a path that could
    point elsewhere by then."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block us
    try:
        dir_fd = os.open(folder, flags | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        raise MlipdivError("not a folder (links are not followed)") from None
    allowed = {*EXPORTED, MODEL}
    try:
        for name in sorted(os.listdir(dir_fd)):
            if name not in allowed:
                raise MlipdivError(f"unexpected entry {name!r}; an exported run holds only "
                                   f"{', '.join(sorted(allowed))}")
            try:
                fd = os.open(name, flags, dir_fd=dir_fd)
            except OSError:
                raise MlipdivError(f"{name} is not a plain file (links are not followed)") from None
            with os.fdopen(fd, "rb") as src:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise MlipdivError(f"{name} is not a plain file")
                data = src.read(MAX_FILE_BYTES + 1)  # the size may have changed since fstat
            if len(data) > MAX_FILE_BYTES:
                raise MlipdivError(f"{name} is over the {MAX_FILE_BYTES // 2**20} MiB an exported run's file may have")
            (staging / name).write_bytes(data)
            os.utime(staging / name, ns=(info.st_atime_ns, info.st_mtime_ns))  # metrics.json's time: the run's end
    finally:
        os.close(dir_fd)


def _checked_folder(folder: Path, run_id: str) -> dict[str, Any]:
    """The marker of run ``run_id`` whose files :func:`_copy_plain_files` copied into ``folder``, after every file was
    checked; raises :class:`MlipdivError` saying why the folder is not an exported run."""
    names = {p.name for p in folder.iterdir()}
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise MlipdivError(f"no {', '.join(missing)}: not a finished run")
    marker = _json_object(folder / MARKER)
    if marker.get("id") != run_id:
        raise MlipdivError(f"{MARKER} names run {marker.get('id')!r}, not the folder's {run_id}")
    if not isinstance(marker.get("key"), str) or not _KEY.match(marker["key"]):
        raise MlipdivError(f"{MARKER} has no run key (16 hex digits)")
    if not isinstance(marker.get("config"), dict) or not isinstance(marker.get("created"), (int, float)):
        raise MlipdivError(f"{MARKER} lacks the run's config or creation time")
    if _json_object(folder / CONFIG) != marker["config"]:
        raise MlipdivError(f"{CONFIG} differs from the config in {MARKER}")
    try:
        RunMetrics.from_json((folder / METRICS).read_bytes(), folder / METRICS)
    except MetricsError as exc:
        raise MlipdivError(str(exc)) from None
    for name in (SUMMARY, SPLIT):
        if name in names:
            _json_object(folder / name)
    if PREDICTIONS in names:
        try:
            RunDir(folder).read_predictions()  # allow_pickle=False: object arrays fail here
        except (OSError, ValueError) as exc:
            raise MlipdivError(f"{PREDICTIONS} does not load without unpickling ({exc})") from None
    if MODEL in names:
        import torch

        try:
            torch.load(folder / MODEL, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to decode means: not weights we wrote
            raise MlipdivError(f"{MODEL} does not load as plain weights ({type(exc).__name__})") from None
    return marker


def _rebased(marker: dict[str, Any], dataset: Path, digest: str) -> dict[str, Any] | None:
    """The marker with ``dataset`` and ``key`` for the local copy of the run's dataset, or None when the key does not
    prove that ``dataset`` holds the same bytes (or the run already names it)."""
    from mlipdiv.jobs.sweep import run_key

    config = marker["config"]
    local = str(dataset.resolve())
    if config.get("dataset") == local or run_key(config, digest) != marker["key"]:
        return None
    moved = {**config, "dataset": local}
    return {**marker, "config": moved, "key": run_key(moved, digest)}


def import_runs(store: RunStore, src: str | Path, *, dataset: str | Path | None = None) -> ImportReport:
    """Add the exported run folders below ``src`` to ``store`` (see the module docstring).

    Args:
        store: the store to add to (writable).
        src: a folder written by :func:`export_runs`.
        dataset: the local copy of the runs' dataset (default: :func:`mlipdiv.paths.default_dataset`); runs whose
            key proves it holds their dataset's bytes are rebased onto it.

    Raises:
        MlipdivError: ``src`` is not a folder.
    """
    from mlipdiv.jobs.sweep import file_digest
    from mlipdiv.paths import default_dataset

    src = Path(src)
    if not src.is_dir():
        raise MlipdivError(f"{src} is not a folder; give the folder `runs export` wrote")
    dataset = Path(dataset if dataset is not None else default_dataset())
    digest = file_digest(dataset) if dataset.is_file() else None
    report = ImportReport(store.root)
    known = {r.id: r for r in store.list()}
    keys = {r.key: r.id for r in known.values() if r.key}
    records = []
    for folder in sorted(src.iterdir()):
        if not _RUN_ID.match(folder.name):
            report.skipped.append(f"{folder.name}: the name is not a run id (YYYYMMDD-HHMMSS-xxxxxx)")
            continue
        if folder.name in known or (store.root / folder.name).exists():
            report.present.append(folder.name)  # nothing of it is read
            continue
        target = store.root / folder.name
        staging = store.root / f".import-{folder.name}.tmp"  # hidden: the store and repair do not list it
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted import left
        staging.mkdir(parents=True)
        try:
            _copy_plain_files(folder, staging)
            marker = _checked_folder(staging, folder.name)
        except MlipdivError as exc:
            shutil.rmtree(staging)
            report.skipped.append(f"{folder.name}: {exc}")
            continue
        moved = _rebased(marker, dataset, digest) if digest else None
        marker = moved or marker
        if marker["key"] in keys:
            shutil.rmtree(staging)
            report.present.append(f"{folder.name} (as {keys[marker['key']]}, the same configuration)")
            continue
        atomic_write_json(staging / CONFIG, marker["config"])
        atomic_write_json(staging / MARKER, marker)
        staging.rename(target)  # the folder appears whole or not at all
        rec = folder_record(target)
        if isinstance(rec, str):  # cannot happen after the checks above; kept honest rather than silent
            report.skipped.append(f"{folder.name}: {rec}")
            continue
        records.append(rec)
        keys[marker["key"]] = folder.name
        if moved:
            report.rebased.append(folder.name)
    report.added.update(insert_records(store, records))
    return report
