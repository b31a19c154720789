"""The in-memory dataset and the mlipdiv HDF5 format, version 1 (documented in ``data/README.md``).

A dataset is a list of molecules; each molecule holds all its conformers as stacked arrays, which is the shape
every later step wants (selection picks ``(molecule, conformer)`` pairs, training stacks them into tensors).
Energies are float64 (total energies of ~1e3 eV need it); positions and forces are float32.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.data.validate import check_molecule, check_molecule_id, shown
from mlipdiv.errors import DatasetError

FORMAT = "mlipdiv"
VERSION = 1
UNITS = {"energy_unit": "eV", "length_unit": "angstrom", "force_unit": "eV/angstrom"}
_PER_CONFORMER = ("positions", "energy", "forces", "parent", "temperature", "method")


def molecule_id(canonical_smiles: str) -> str:
    """Stable id of a molecule (its HDF5 group name): a hash of its canonical, stereo-free SMILES."""
    return "mol_" + hashlib.sha1(canonical_smiles.encode()).hexdigest()[:12]


@dataclass
class Molecule:
    """One molecule and all its labelled conformers.

    Attributes:
        id: stable id (see :func:`molecule_id`).
        smiles: canonical SMILES without stereo.
        atomic_numbers: (n_atoms,) int.
        positions: (n_conf, n_atoms, 3) float32, angstrom.
        energy: (n_conf,) float64, eV (total GFN2-xTB energy).
        forces: (n_conf, n_atoms, 3) float32, eV/angstrom.
        parent: (n_conf,) int, index of the distinct (relaxed) conformer each sample came from.
        temperature: (n_conf,) float, kelvin of the thermal sampling (0 for the relaxed parent itself).
        method: (n_conf,) str, how the conformer was made ("relaxed", "nms", "md", "import").
        name: optional human name (from a SMILES file's name column).
    """

    id: str
    smiles: str
    atomic_numbers: np.ndarray
    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    parent: np.ndarray
    temperature: np.ndarray
    method: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.float32)
        self.energy = np.asarray(self.energy, dtype=np.float64)
        self.forces = np.asarray(self.forces, dtype=np.float32)
        self.parent = np.asarray(self.parent, dtype=np.int64)
        self.temperature = np.asarray(self.temperature, dtype=np.float64)
        self.method = np.asarray(self.method, dtype=str)
        n_atoms, n_conf = len(self.atomic_numbers), len(self.energy)
        expected = {
            "positions": (n_conf, n_atoms, 3),
            "forces": (n_conf, n_atoms, 3),
            "parent": (n_conf,),
            "temperature": (n_conf,),
            "method": (n_conf,),
        }
        for key, shape in expected.items():
            if getattr(self, key).shape != shape:
                raise DatasetError(
                    f"molecule {shown(self.id)}: {key} has shape {getattr(self, key).shape}, expected {shape}"
                )
        check_molecule(self)  # one set of checks for every reader, writer and caller (see validate.py)

    @property
    def n_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def n_conformers(self) -> int:
        return len(self.energy)

    def subset(self, conformers: np.ndarray | list[int]) -> Molecule:
        """The same molecule with only the given conformer indices (order kept)."""
        idx = np.asarray(conformers, dtype=np.int64)
        return Molecule(
            id=self.id,
            smiles=self.smiles,
            atomic_numbers=self.atomic_numbers,
            name=self.name,
            **{key: getattr(self, key)[idx] for key in _PER_CONFORMER},
        )


@dataclass
class Dataset:
    """Molecules in a fixed order plus file-level metadata (level of theory, provenance)."""

    molecules: list[Molecule]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self._index = {m.id: i for i, m in enumerate(self.molecules)}
        if len(self._index) != len(self.molecules):
            raise DatasetError("duplicate molecule ids in dataset")

    def __len__(self) -> int:
        return len(self.molecules)

    def __iter__(self) -> Iterator[Molecule]:
        return iter(self.molecules)

    def __getitem__(self, key: str | int) -> Molecule:
        if isinstance(key, str):
            return self.molecules[self._index[key]]
        return self.molecules[key]

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def index_of(self, molecule_id: str) -> int:
        return self._index[molecule_id]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.molecules]

    @property
    def n_conformers(self) -> int:
        return sum(m.n_conformers for m in self.molecules)

    @property
    def elements(self) -> list[int]:
        return sorted({int(z) for m in self.molecules for z in np.unique(m.atomic_numbers)})

    @property
    def level_of_theory(self) -> str:
        return str(self.attrs.get("level_of_theory", "unknown"))

    def conformer_offsets(self) -> np.ndarray:
        """(n_molecules + 1,) offsets: conformer ``j`` of molecule ``i`` has global id ``offsets[i] + j``.

        Global ids are what the app carries in plot ``customdata`` and what per-conformer arrays are indexed by.
        """
        return np.concatenate([[0], np.cumsum([m.n_conformers for m in self.molecules])]).astype(np.int64)

    def global_id(self, molecule_id: str, conformer: int) -> int:
        return int(self.conformer_offsets()[self._index[molecule_id]] + conformer)

    def locate(self, global_id: int) -> tuple[str, int]:
        """Inverse of :meth:`global_id`: ``(molecule_id, conformer_index)``."""
        offsets = self.conformer_offsets()
        if not 0 <= global_id < offsets[-1]:
            raise IndexError(f"conformer id {global_id} outside 0..{offsets[-1] - 1}")
        i = int(np.searchsorted(offsets, global_id, side="right") - 1)
        return self.molecules[i].id, int(global_id - offsets[i])

    def select(self, pairs: list[tuple[str, int]] | list[list[Any]]) -> Dataset:
        """A dataset holding only the given ``(molecule_id, conformer_index)`` pairs, molecules in first-seen order."""
        chosen: dict[str, list[int]] = {}
        for mol_id, conf in pairs:
            chosen.setdefault(str(mol_id), []).append(int(conf))
        return Dataset([self[m].subset(c) for m, c in chosen.items()], attrs=dict(self.attrs), path=self.path)


# --------------------------------------------------------------------------------------------------- HDF5 I/O


def write_hdf5(dataset: Dataset, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``dataset`` atomically (temp file + rename) in mlipdiv HDF5 v1.

    Every molecule is checked before the file is created, and a failed write leaves neither a temporary file nor
    a changed ``path`` behind.
    """
    import tempfile

    import h5py

    path = Path(path)
    for mol in dataset.molecules:  # a Molecule's fields can be reassigned after it was checked
        try:
            check_molecule(mol)
        except DatasetError as exc:
            raise DatasetError(f"{path}: not written: {exc}") from exc
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        # v1.10 file-format objects (compact chunk indexes: ~10 kB less per molecule); track_order keeps molecule order
        with h5py.File(tmp, "w", libver="v110", track_order=True) as f:
            write_header(f, {**dataset.attrs, **(provenance or {})})
            for mol in dataset.molecules:
                write_molecule(f, mol)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
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
            molecules = [_read_molecule(path, name, f[name]) for name in f]
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


def _read_molecule(path: Path, name: str, g: Any) -> Molecule:
    why = check_molecule_id(name)
    if why:
        raise DatasetError(f"{path}: {why}")
    missing = [k for k in ("atomic_numbers", *_PER_CONFORMER) if k not in g]
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


def load_dataset(path: str | Path | None = None) -> Dataset:
    """Load a dataset by path (``.h5``/``.hdf5`` or extended XYZ); ``None`` means the shipped default."""
    from mlipdiv.paths import default_dataset

    path = Path(path) if path is not None else default_dataset()
    if path.suffix.lower() in (".xyz", ".extxyz"):
        from mlipdiv.data.extxyz import read_extxyz

        return read_extxyz(path)
    return read_hdf5(path)
