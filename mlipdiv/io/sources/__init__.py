"""Readers of datasets other programs wrote: ASE databases, extended XYZ, SPICE- and ANI-1x-style HDF5, rMD17 npz.

One small module per format; each turns a file into :class:`~mlipdiv.io.sources.common.Block` s in eV and
angstrom (units converted once, here) and refuses what it cannot read with a one-line message naming the file and
the entry. No RDKit here: molecule identity, families and the report are :mod:`mlipdiv.data.importing`'s.
:func:`open_source` picks the reader (``format="auto"``: by suffix, then by the file's first bytes and layout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources.ani_h5 import open_ani
from mlipdiv.io.sources.ase_db import open_ase_db
from mlipdiv.io.sources.common import Block, Source, SourceOptions, check_block
from mlipdiv.io.sources.extxyz import open_extxyz
from mlipdiv.io.sources.h5common import open_h5
from mlipdiv.io.sources.npz import open_npz
from mlipdiv.io.sources.spice_h5 import open_spice
from mlipdiv.registry import Registry

__all__ = ["FORMATS", "Block", "Source", "SourceOptions", "check_block", "detect_format", "open_source"]

FORMATS: Registry[Callable[[Path, SourceOptions], Source]] = Registry("import format")
FORMATS.register("ase-db", open_ase_db)
FORMATS.register("extxyz", open_extxyz)
FORMATS.register("spice-h5", open_spice)
FORMATS.register("ani-h5", open_ani)
FORMATS.register("npz", open_npz)

_SQLITE = b"SQLite format 3\x00"
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"


def _h5_layout(path: Path) -> str:
    """``spice-h5`` or ``ani-h5`` by the datasets of the first group (after the structure check)."""
    with open_h5(path) as f:
        if f.attrs.get("format") in ("mlipdiv", b"mlipdiv"):
            raise DatasetError(f"{path}: already an mlipdiv dataset; use it directly (--dataset), no import needed")
        first = next(iter(f), None)
        keys = set(f[first]) if first is not None else set()
    if "conformations" in keys:
        return "spice-h5"
    if "coordinates" in keys:
        return "ani-h5"
    raise DatasetError(f"{path}: an HDF5 file in neither SPICE layout (groups with conformations) nor ANI-1x layout "
                       "(groups with coordinates); pass --format if it is one of them")


def detect_format(path: Path) -> str:
    """The reader for ``path``: by suffix for ``.db``/``.xyz``/``.extxyz``/``.npz``, by content otherwise."""
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); check the path and "
                           "its permissions") from exc
    if head.startswith(_HDF5):
        return _h5_layout(path)
    if head.startswith(_SQLITE) or suffix == ".db":
        return "ase-db"
    if head.startswith(_ZIP) or suffix == ".npz":
        return "npz"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    raise DatasetError(f"{path}: unknown format (not SQLite, HDF5, npz or .xyz); pass --format, one of: "
                       f"{', '.join(FORMATS.names())}")


def open_source(path: str | Path, format: str = "auto", options: SourceOptions | None = None) -> Source:
    """Open ``path`` with the reader of ``format`` (``auto``: :func:`detect_format`). Nothing is read beyond what
    the format needs to decide its keys and units; the blocks come when ``source.blocks()`` is iterated."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")
    fmt = detect_format(path) if format == "auto" else format
    opener = FORMATS.get(fmt)
    return opener(path, options or SourceOptions())
