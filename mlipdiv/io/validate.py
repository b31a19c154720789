"""The checks every dataset passes at the boundary (HDF5 and extended XYZ readers, writers, ``Molecule``).

One place, so that the CLI, the library and the app refuse the same things with the same words. The messages
name the molecule or entry, never the file's content (a path may point anywhere the server can read).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError, MlipdivError
from mlipdiv.limits import MAX_ABS_POSITION
from mlipdiv.limits import MAX_Z as MAX_ATOMIC_NUMBER

MAX_ID_LENGTH = 128
# a molecule id is an HDF5 group name: letters, digits, "_", "-", "." (not first: no ".", ".." or hidden names)
MOLECULE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def shown(text: Any, limit: int = 40) -> str:
    """A name from a file, safe to print: quoted, control characters escaped, cut to ``limit`` characters."""
    s = str(text)
    cut = s[:limit] + ("..." if len(s) > limit else "")
    return ascii(cut)


def check_molecule_id(mol_id: Any) -> str | None:
    """Why ``mol_id`` cannot name an HDF5 group (``None`` if it can)."""
    if not isinstance(mol_id, str) or not mol_id:
        return "an empty molecule id"
    if len(mol_id) > MAX_ID_LENGTH or not MOLECULE_ID.fullmatch(mol_id):
        return (f"molecule id {shown(mol_id)} is not a safe name (use letters, digits, '_', '-' and '.', not first, "
                f"at most {MAX_ID_LENGTH} characters; mlipdiv's own ids are mol_ + 12 hex digits)")
    return None


def check_atomic_numbers(z: np.ndarray) -> str | None:
    """Why ``z`` are not atomic numbers of real elements (``None`` if they are)."""
    z = np.asarray(z)
    if z.size == 0:
        return "no atoms"
    bad = z[(z < 1) | (z > MAX_ATOMIC_NUMBER)]
    if bad.size:
        return f"atomic number {int(bad[0])} is not an element (1 to {MAX_ATOMIC_NUMBER}; 0 is ASE's dummy atom X)"
    return None


def check_geometry(positions: np.ndarray, energy: Any, forces: np.ndarray) -> str | None:
    """Why positions/energy/forces cannot be training data (``None`` if they can)."""
    if not np.isfinite(np.asarray(positions, dtype=np.float64)).all():
        return "positions hold NaN or infinity"
    if not np.isfinite(np.asarray(energy, dtype=np.float64)).all():
        return "energy holds NaN or infinity"
    if not np.isfinite(np.asarray(forces, dtype=np.float64)).all():
        return "forces hold NaN or infinity"
    if np.size(positions) and float(np.abs(positions).max()) > MAX_ABS_POSITION:
        return f"a coordinate lies beyond {MAX_ABS_POSITION:g} angstrom (isolated molecules only)"
    return None


def check_molecule(mol: Any) -> None:
    """Refuse a molecule that is not usable data: unsafe id, Z outside 1..118, no atoms or no conformers,
    NaN/inf, absurd coordinates. Raises :class:`DatasetError` naming the molecule (the caller adds the file)."""
    why = check_molecule_id(mol.id)
    if why:
        raise DatasetError(why)
    why = check_atomic_numbers(mol.atomic_numbers)
    if why is None and len(mol.energy) == 0:
        why = "no conformers"
    if why is None:
        why = check_geometry(mol.positions, mol.energy, mol.forces)
    if why:
        raise DatasetError(f"molecule {shown(mol.id)}: {why}")


def check_output(path: str | os.PathLike, flag: str = "--out", overwrite: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work is done (a message, not a traceback).

    Writes nothing that stays: writability is proven by creating and removing an empty temporary file in the
    folder, or in its nearest existing ancestor when the folder is still to be made (``os.access`` says yes to
    root even on read-only mounts).
    """
    path = Path(path)
    if path.is_dir():
        raise MlipdivError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise MlipdivError(f"{path} already exists; choose another {flag} or pass --overwrite")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise MlipdivError(f"{flag} {path}: {folder} is a file, not a folder; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MlipdivError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or type(exc).__name__}); "
                           f"choose a writable folder") from exc
    return path


def make_parent(path: Path, flag: str = "--out") -> None:
    """Create ``path``'s folder, as a message rather than a traceback when that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlipdivError(f"{flag} {path}: cannot create its folder ({exc.strerror or type(exc).__name__}); "
                           f"choose a writable folder") from exc
