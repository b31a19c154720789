"""Atomic file writes: write a temporary file beside the target, flush it to disk, then ``os.replace`` it.

A reader (or a process killed half-way through a write) therefore sees either the old file or the new one, never a
torn one. Standard library only, so any module (training included) can import it cheaply.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file in ``path``'s folder, fsync it, then rename it onto ``path``.

    Args:
        path: the final file; its folder is created when missing.
        write: fills the open file object (e.g. ``lambda f: torch.save(state, f)``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside ``path`` for writers that want a name, not a file object (h5py, ASE, a
    compiler's output): renamed onto ``path`` when the block ends without an error, removed when it raises.

    Example::

        with atomic_path(out) as tmp:
            with h5py.File(tmp, "w") as f:
                ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the writer closed it; make its bytes durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Replace ``path`` with ``obj`` as JSON atomically (keys kept in insertion order, trailing newline)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj, path)`` through a temporary file, so a crash never leaves a torn checkpoint."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
