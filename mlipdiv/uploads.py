"""Datasets uploaded through the app: validated like the CLI, kept in a bounded cache, reported by the user's name.

The app writes an upload to ``<cache>/uploads/<sha1>-<name>`` so that the readers (which take paths) can check it.
Three things follow from that, and live here rather than in a page:

* the upload is validated by :func:`mlipdiv.io.load.load_dataset`, exactly what ``--dataset`` gets on the
  command line, and is kept only when that passed (a refused file is deleted at once);
* messages name the file the user chose, never the server path of its cached copy;
* the folder is bounded (files and bytes, oldest first), so uploads do not pile up on the server forever;
* a file in another program's format (ASE database, SPICE/ANI-1x HDF5, rMD17 npz, extended XYZ without mlipdiv's
  ``mol_id``) is imported (:func:`mlipdiv.data.importing.import_dataset`) into an mlipdiv HDF5 file, which is what
  stays in the cache; the uploaded original is deleted.

Standard library only at import; no Streamlit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlipdiv.errors import MlipdivError

__all__ = ["IMPORT_SUFFIXES", "UploadResult",
           "accept_upload", "discard_upload", "one_line", "prune_uploads", "redact", "redact_uploads",
           "upload_dir", "DATASET_SUFFIXES", "MAX_UPLOAD_BYTES", "MAX_CACHED_UPLOADS", "MAX_CACHED_BYTES"]

DATASET_SUFFIXES = (".h5", ".hdf5", ".xyz", ".extxyz", ".db", ".npz")
IMPORT_SUFFIXES = (".db", ".npz")  # always another program's format; .h5 and .xyz may be either
IMPORT_OPTIONS = ("energy_key", "forces_key", "energy_unit", "length_unit", "level_of_theory")
MAX_UPLOAD_BYTES = 100 * 2**20  # one upload; larger files belong on the command line (--dataset)
MAX_CACHED_UPLOADS = 8  # the cache keeps at most this many uploads ...
MAX_CACHED_BYTES = 400 * 2**20  # ... and at most this many bytes; the oldest go first
MAX_MESSAGE = 300  # characters of a message shown to the user


@dataclass(frozen=True)
class UploadResult:
    """What became of one upload: ``path`` and ``dataset`` when it passed, else ``error`` (one line)."""

    name: str
    path: Path | None = None
    dataset: Any = None
    error: str | None = None
    report: dict[str, Any] | None = None  # the import report, when the upload was imported from another format

    @property
    def ok(self) -> bool:
        return self.error is None


def upload_dir(cache_dir: str | Path) -> Path:
    """The folder of the cached uploads inside ``cache_dir``."""
    return Path(cache_dir) / "uploads"


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line and at most ``limit`` characters (a reader's message may quote a whole file line)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(message: str, names: Mapping[str | Path, str]) -> str:
    """``message`` with every server path of ``names`` (as given and resolved) replaced by its display name."""
    pairs: dict[str, str] = {}
    for path, name in names.items():
        p = Path(path)
        pairs[str(p)] = name
        try:
            pairs[str(p.resolve())] = name
        except OSError:
            pass
    for old in sorted(pairs, key=len, reverse=True):  # longest first: a full path before its bare file name
        if old:
            message = message.replace(old, pairs[old])
    return message


def redact_uploads(message: str, cache_dir: str | Path) -> str:
    """``message`` with each path of a cached upload (``<cache>/uploads/<sha1>-<name>``) shown as its ``<name>``:
    a run's error may name the dataset file of any session, not only the current one's."""
    folder = upload_dir(cache_dir)
    prefixes = {str(folder)}
    try:
        prefixes.add(str(folder.resolve()))
    except OSError:
        pass
    for prefix in sorted(prefixes, key=len, reverse=True):
        message = re.sub(re.escape(prefix + os.sep) + r"[0-9a-f]{12}-", "", message)
    return message


def _safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "upload"
    return base[-80:]


def accept_upload(name: str, data: bytes, cache_dir: str | Path, *, keep: Iterable[str | Path] = (),
                  max_bytes: int = MAX_UPLOAD_BYTES, import_options: Mapping[str, Any] | None = None
                  ) -> UploadResult:
    """Check an uploaded dataset as the CLI would, and keep it in the cache only when it passed.

    Args:
        name: the file name the user uploaded (used in every message; never the cached path).
        data: its bytes.
        cache_dir: the app's cache (``mlipdiv.paths.cache_dir()``); the copy goes to ``upload_dir(cache_dir)``.
        keep: cached uploads still in use (the session's dataset): never pruned to make room.
        max_bytes: the largest upload accepted.
        import_options: for a file in another format: ``energy_key``, ``forces_key``, ``energy_unit``,
            ``length_unit``, ``level_of_theory`` (``None`` or empty: detected, as the ``import`` verb does).

    Returns:
        An :class:`UploadResult`; a refused upload leaves no file behind. Never raises for a bad file.
    """
    display = Path(name).name or "the upload"
    suffix = Path(display).suffix.lower()
    if suffix not in DATASET_SUFFIXES:
        return UploadResult(display, error=f"{display}: not a dataset file name; use an mlipdiv HDF5 file (.h5, "
                                           ".hdf5), extended XYZ (.xyz, .extxyz), an ASE database (.db), SPICE or "
                                           "ANI-1x HDF5 (.h5) or an rMD17 .npz")
    if len(data) > max_bytes:
        return UploadResult(display, error=f"{display} is {len(data) / 2**20:.0f} MB; the limit here is "
                                           f"{max_bytes / 2**20:.0f} MB. Use it from the command line (--dataset) "
                                           "or set MLIPDIV_DATASET")
    folder = upload_dir(cache_dir)
    options = {k: str(v) for k, v in (import_options or {}).items() if k in IMPORT_OPTIONS and v}
    digest = hashlib.sha1(data + repr(sorted(options.items())).encode()).hexdigest()[:12]
    target = folder / f"{digest}-{_safe_name(display)}"
    imported = target.with_name(target.name + ".imported.h5")
    if imported.exists():  # the same file with the same options, imported before
        os.utime(imported)
        return _load_cached(display, imported, folder, keep)
    if target.exists():
        os.utime(target)  # uploaded again: the most recent, last to be pruned
    else:
        from mlipdiv.io.atomic import atomic_write_bytes

        atomic_write_bytes(target, data)
    if _foreign(target, suffix, data):
        return _import(display, target, imported, folder, keep, options)
    return _load_cached(display, target, folder, keep)


def _foreign(target: Path, suffix: str, data: bytes) -> bool:
    """Whether an upload is another program's format (imported) rather than an mlipdiv dataset (loaded)."""
    if suffix in IMPORT_SUFFIXES:
        return True
    if suffix in (".xyz", ".extxyz"):
        return b"mol_id=" not in data[: 2**16]  # mlipdiv's own extended XYZ names each frame's molecule
    try:
        import h5py

        with h5py.File(target, "r") as f:
            return f.attrs.get("format") not in ("mlipdiv", b"mlipdiv")
    except OSError:
        return False  # not HDF5 at all: the reader says so


def _refused(display: str, exc: BaseException, *paths: Path) -> UploadResult:
    for p in paths:
        p.unlink(missing_ok=True)
    reason = str(exc) if isinstance(exc, MlipdivError) else f"not a readable dataset ({type(exc).__name__})"
    message = reason
    for p in paths:  # the cached name <sha1>-<name> alone means nothing to the user either
        message = redact(message, {p: display}).replace(p.name, display)
    message = one_line(message)
    if not message.startswith(display):
        message = f"{display}: {message}"
    return UploadResult(display, error=message)


def _load_cached(display: str, target: Path, folder: Path, keep: Iterable[str | Path]) -> UploadResult:
    try:
        from mlipdiv.io.load import load_dataset

        dataset = load_dataset(target)  # the CLI's --dataset check, all of it
        if len(dataset) == 0:
            raise MlipdivError(f"{target}: holds no molecules")
    except Exception as exc:  # noqa: BLE001 - whatever a reader trips on, the file is at fault: say so, keep nothing
        return _refused(display, exc, target)
    prune_uploads(folder, keep=[target, *keep], max_files=MAX_CACHED_UPLOADS, max_bytes=MAX_CACHED_BYTES)
    report = dataset.attrs.get("import_report")
    try:
        parsed = json.loads(report) if isinstance(report, str) else None
    except ValueError:
        parsed = None
    return UploadResult(display, path=target, dataset=dataset, report=parsed)


def _import(display: str, source: Path, out: Path, folder: Path, keep: Iterable[str | Path],
            options: Mapping[str, str]) -> UploadResult:
    """Import ``source`` into ``out`` (the report goes into the file, not beside it: one cached file per upload);
    the uploaded original is deleted whatever happens."""
    try:
        from mlipdiv.data.importing import import_dataset
        from mlipdiv.io.sources import SourceOptions

        result = import_dataset(
            source, out, options=SourceOptions(**{k: options.get(k) for k in IMPORT_OPTIONS[:4]}),
            level_of_theory=options.get("level_of_theory"), overwrite=True, write_report=False,
            display_name=display,
        )
    except Exception as exc:  # noqa: BLE001 - whatever a reader trips on, the file is at fault: say so, keep nothing
        return _refused(display, exc, source, out)
    source.unlink(missing_ok=True)
    prune_uploads(folder, keep=[out, *keep], max_files=MAX_CACHED_UPLOADS, max_bytes=MAX_CACHED_BYTES)
    return UploadResult(display, path=out, dataset=result.dataset, report=result.report)


def discard_upload(path: str | Path, cache_dir: str | Path) -> bool:
    """Delete a cached upload that was replaced by another one; only files of the upload folder are touched."""
    p = Path(path)
    folder = upload_dir(cache_dir).resolve()
    try:
        if p.resolve().parent != folder or not p.is_file():
            return False
        p.unlink()
    except OSError:
        return False
    return True


def prune_uploads(folder: str | Path, *, keep: Iterable[str | Path] = (), max_files: int = MAX_CACHED_UPLOADS,
                  max_bytes: int = MAX_CACHED_BYTES) -> list[Path]:
    """Delete the oldest cached uploads until at most ``max_files`` files and ``max_bytes`` bytes remain.

    ``keep`` (uploads in use) is never deleted and counts towards the bounds. Returns the deleted files.
    """
    folder = Path(folder)
    kept = set()
    for k in keep:
        try:
            kept.add(Path(k).resolve())
        except OSError:
            pass
    files = []
    for p in folder.glob("*"):
        if p.name.startswith(".") or p.is_symlink() or not p.is_file():
            continue  # temporary files of a write in progress, or nothing this module made
        try:
            st = p.stat()
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, p))
    files.sort()  # oldest first
    count, total = len(files), sum(size for _, size, _ in files)
    removed = []
    for _, size, p in files:
        if count <= max_files and total <= max_bytes:
            break
        if p.resolve() in kept:
            continue
        try:
            p.unlink()
        except OSError:
            continue
        removed.append(p)
        count -= 1
        total -= size
    return removed
