"""The mlipdiv HDF5 format, version 1 (documented in ``data/README.md``): one group per molecule, written atomically
and read only when the file holds nothing but plain datasets (no links or storage that would read other files)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.atomic import atomic_path
from mlipdiv.io.dataset import PER_CONFORMER, Dataset, Molecule
from mlipdiv.io.validate import check_molecule, check_molecule_id, shown

FORMAT = "mlipdiv"
VERSION = 1
UNITS = {"energy_unit": "eV", "length_unit": "angstrom", "force_unit": "eV/angstrom"}


def write_hdf5(dataset: Dataset, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``dataset`` atomically (temp file + rename) in mlipdiv HDF5 v1.

    Every molecule is checked before the file is created, and a failed write leaves neither a temporary file nor
    a changed ``path`` behind.
    """
    import h5py

    path = Path(path)
    for mol in dataset.molecules:  # a Molecule's fields can be reassigned after it was checked
        try:
            check_molecule(mol)
        except DatasetError as exc:
            raise DatasetError(f"{path}: not written: {exc}") from exc
    # v1.10 file-format objects (compact chunk indexes: ~10 kB less per molecule); track_order keeps molecule order
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="v110", track_order=True) as f:
        write_header(f, {**dataset.attrs, **(provenance or {})})
        for mol in dataset.molecules:
            write_molecule(f, mol)
    return path


def write_header(f: Any, attrs: Mapping[str, Any]) -> None:
    """Root attributes of an mlipdiv file (format, version, units, provenance)."""
    f.attrs["format"] = FORMAT
    f.attrs["version"] = VERSION
    for key, value in UNITS.items():
        f.attrs[key] = value
    f.attrs.setdefault("level_of_theory", "unknown")
    for key, value in attrs.items():
        if key in ("format", "version", *UNITS):
            continue
        f.attrs[key] = value if isinstance(value, (int, float, str, np.ndarray)) else str(value)


def write_molecule(f: Any, mol: Molecule) -> None:
    """Add (or replace) one molecule group; used incrementally by ``generate``."""
    check_molecule(mol)  # the id becomes a group name: ".", ".." or "a/b" would address other objects
    if mol.id in f:
        del f[mol.id]
    g = f.create_group(mol.id)
    g.attrs["smiles"] = mol.smiles
    g.attrs["name"] = mol.name
    g.create_dataset("atomic_numbers", data=mol.atomic_numbers.astype(np.int8))
    opts = {"compression": "gzip", "compression_opts": 6, "shuffle": True}
    g.create_dataset("positions", data=mol.positions, **opts)
    g.create_dataset("forces", data=mol.forces, **opts)
    g.create_dataset("energy", data=mol.energy, **opts)
    g.create_dataset("parent", data=mol.parent.astype(np.int32), **opts)
    g.create_dataset("temperature", data=mol.temperature.astype(np.float32), **opts)
    # fixed-length UTF-8 bytes (compressible; variable-length strings cost ~30 bytes each in the global heap)
    method = [str(m).encode() for m in mol.method]
    g.create_dataset("method", data=np.array(method, dtype=f"S{max([1, *map(len, method)])}"), **opts)


def _refuse(path: Path, where: str, what: str) -> DatasetError:
    return DatasetError(f"{path}: {where} is {what}, which mlipdiv does not read (it could pull in other files); "
                        f"rebuild the file with mlipdiv (generate or convert) as a plain mlipdiv file")


def check_hdf5_structure(path: Path, f: Any) -> None:
    """Refuse every HDF5 feature that reads bytes from outside the file: soft and external links, external
    storage, virtual datasets; and anything but the format's shape (root -> molecule groups -> datasets).

    Links are inspected with ``getlink=True`` before the object is touched, since accessing an object follows
    its link. Run it on every user file before reading any data (``read_hdf5`` does).
    """
    for name in f:
        check_hdf5_group(path, f, name)


def check_hdf5_group(path: Path, f: Any, name: str) -> None:
    """:func:`check_hdf5_structure` for the one molecule group ``name`` of the open file ``f``."""
    import h5py
    from h5py import h5d

    where = f"object {shown('/' + name)}"
    if not isinstance(f.get(name, getlink=True), h5py.HardLink):
        raise _refuse(path, where, "an external or soft link")
    group = f[name]
    if not isinstance(group, h5py.Group):
        raise _refuse(path, where, "not a molecule group")
    for key in group:
        where = f"object {shown('/' + name + '/' + key, 60)}"
        if not isinstance(group.get(key, getlink=True), h5py.HardLink):
            raise _refuse(path, where, "an external or soft link")
        obj = group[key]
        if not isinstance(obj, h5py.Dataset):
            raise _refuse(path, where, "not a dataset")
        plist = obj.id.get_create_plist()
        if obj.is_virtual or plist.get_layout() == h5d.VIRTUAL:
            raise _refuse(path, where, "a virtual dataset")
        if plist.get_external_count() > 0:
            raise _refuse(path, where, "stored in external files")
        if plist.get_layout() not in (h5d.CONTIGUOUS, h5d.CHUNKED):
            raise _refuse(path, where, "a dataset with an unusual storage layout")


def read_hdf5(path: str | Path) -> Dataset:
    """Load an mlipdiv HDF5 file, raising :class:`DatasetError` with a clear message for anything wrong.

    Messages name the file and the offending object, never the file's content.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(
            f"{path}: not a readable HDF5 file ({_h5_reason(exc)}); it may be truncated or corrupt"
        ) from exc
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise DatasetError(f"{path}: not an mlipdiv dataset (no root attribute format='mlipdiv')")
            version = int(f.attrs.get("version", -1))
            if version != VERSION:
                raise DatasetError(f"{path}: mlipdiv format version {version}, this program reads version {VERSION}")
            check_hdf5_structure(path, f)
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            molecules = [read_molecule(path, name, f[name]) for name in f]
            return Dataset(molecules, attrs=attrs, path=path)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DatasetError(
            f"{path}: damaged or incomplete dataset ({_h5_reason(exc)}); regenerate or re-download it"
        ) from exc


def _h5_reason(exc: BaseException) -> str:
    """HDF5's own words for an I/O error (they describe the file's structure); only the type for other errors,
    whose text may quote the file's content."""
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)):
        return str(exc)[:200]
    return type(exc).__name__


def read_molecule(path: Path, name: str, g: Any) -> Molecule:
    why = check_molecule_id(name)
    if why:
        raise DatasetError(f"{path}: {why}")
    missing = [k for k in ("atomic_numbers", *PER_CONFORMER) if k not in g]
    if missing:
        raise DatasetError(f"{path}: molecule group {shown(name)} lacks {', '.join(missing)}")
    try:
        method = np.array([m.decode() if isinstance(m, bytes) else str(m) for m in g["method"][()]], dtype=str)
        return Molecule(
            id=name,
            smiles=str(_plain(g.attrs.get("smiles", ""))),
            name=str(_plain(g.attrs.get("name", ""))),
            atomic_numbers=g["atomic_numbers"][()],
            positions=g["positions"][()],
            energy=g["energy"][()],
            forces=g["forces"][()],
            parent=g["parent"][()],
            temperature=g["temperature"][()],
            method=method,
        )
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: molecule group {shown(name)} is damaged ({type(exc).__name__})") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value
