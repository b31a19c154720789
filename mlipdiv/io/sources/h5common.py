"""Opening a foreign HDF5 file safely: the same structure check as mlipdiv's own files, before any data is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlipdiv.errors import DatasetError
from mlipdiv.io.hdf5 import check_hdf5_structure
from mlipdiv.io.validate import shown


def open_h5(path: Path) -> Any:
    """An open, read-only h5py file that holds only root -> groups -> plain datasets (no links, external or
    virtual storage: they would read other files); a :class:`DatasetError` naming the object otherwise."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({str(exc)[:120]}); it may be truncated or "
                           "another format (--format)") from exc
    try:
        check_hdf5_structure(path, f)
    except DatasetError as exc:
        f.close()
        reason = str(exc).split("; rebuild the file")[0]
        raise DatasetError(f"{reason}; export the data as plain groups of datasets and import again") from None
    return f


def open_grouped(path: Path) -> tuple[Any, list[str], Any, str]:
    """:func:`open_h5` for the one-group-per-molecule layouts (SPICE, ANI-1x): the open file, its group names, the
    first group (where the keys are looked up) and how a message names it; an empty file is refused (and closed)."""
    f = open_h5(path)
    names = list(f)
    if not names:
        f.close()
        raise DatasetError(f"{path}: the HDF5 file holds no groups")
    return f, names, f[names[0]], f"group {shown('/' + names[0])}"


def h5_failure(path: Path, where: str, exc: BaseException) -> DatasetError:
    """A read that failed inside a group (a damaged chunk, a wrong dtype), named by the group."""
    return DatasetError(f"{path}: {where}: cannot be read ({type(exc).__name__}); the file may be damaged")
