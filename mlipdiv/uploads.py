"""Datasets uploaded through the app: validated like the CLI, kept in a bounded cache, reported by the user's name.

The app writes an upload to ``<cache>/uploads/<sha1>-<name>`` so that the readers (which take paths) can check it.
Three things follow from that, and live here rather than in a page:

* the upload is validated by :func:`mlipdiv.io.load.load_dataset`, exactly what ``--dataset`` gets on the
  command line, and is kept only when that passed (a refused file is deleted at once);
* messages name the file the user chose, never the server path of its cached copy;
* the folder is bounded (files and bytes, oldest first), so uploads do not pile up on the server forever.

Standard library only at import; no Streamlit.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlipdiv.errors import MlipdivError

__all__ = ["UploadResult", "accept_upload", "discard_upload", "one_line", "prune_uploads", "redact", "redact_uploads",
           "upload_dir", "DATASET_SUFFIXES", "MAX_UPLOAD_BYTES", "MAX_CACHED_UPLOADS", "MAX_CACHED_BYTES"]

DATASET_SUFFIXES = (".h5", ".hdf5", ".xyz", ".extxyz")
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
                  max_bytes: int = MAX_UPLOAD_BYTES) -> UploadResult:
    """Check an uploaded dataset as the CLI would, and keep it in the cache only when it passed.

    Args:
        name: the file name the user uploaded (used in every message; never the cached path).
        data: its bytes.
        cache_dir: the app's cache (``mlipdiv.paths.cache_dir()``); the copy goes to ``upload_dir(cache_dir)``.
        keep: cached uploads still in use (the session's dataset): never pruned to make room.
        max_bytes: the largest upload accepted.

    Returns:
        An :class:`UploadResult`; a refused upload leaves no file behind. Never raises for a bad file.
    """
    display = Path(name).name or "the upload"
    suffix = Path(display).suffix.lower()
    if suffix not in DATASET_SUFFIXES:
        return UploadResult(display, error=f"{display}: not a dataset file name; use an mlipdiv HDF5 file (.h5, "
                                           ".hdf5) or extended XYZ (.xyz, .extxyz)")
    if len(data) > max_bytes:
        return UploadResult(display, error=f"{display} is {len(data) / 2**20:.0f} MB; the limit here is "
                                           f"{max_bytes / 2**20:.0f} MB. Use it from the command line (--dataset) "
                                           "or set MLIPDIV_DATASET")
    folder = upload_dir(cache_dir)
    target = folder / f"{hashlib.sha1(data).hexdigest()[:12]}-{_safe_name(display)}"
    if target.exists():
        os.utime(target)  # uploaded again: the most recent, last to be pruned
    else:
        from mlipdiv.io.atomic import atomic_write_bytes

        atomic_write_bytes(target, data)
    try:
        from mlipdiv.io.load import load_dataset

        dataset = load_dataset(target)  # the CLI's --dataset check, all of it
        if len(dataset) == 0:
            raise MlipdivError(f"{target}: holds no molecules")
    except Exception as exc:  # noqa: BLE001 - whatever a reader trips on, the file is at fault: say so, keep nothing
        target.unlink(missing_ok=True)
        reason = str(exc) if isinstance(exc, MlipdivError) else f"not a readable dataset ({type(exc).__name__})"
        # the cached name <sha1>-<name> alone means nothing to the user either
        message = one_line(redact(reason, {target: display}).replace(target.name, display))
        if not message.startswith(display):
            message = f"{display}: {message}"
        return UploadResult(display, error=message)
    prune_uploads(folder, keep=[target, *keep], max_files=MAX_CACHED_UPLOADS, max_bytes=MAX_CACHED_BYTES)
    return UploadResult(display, path=target, dataset=dataset)


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
