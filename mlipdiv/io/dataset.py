"""The in-memory dataset: molecules with their stacked, labelled conformers (the files are in :mod:`mlipdiv.io.hdf5`
and :mod:`mlipdiv.io.extxyz`).

A dataset is a list of molecules; each molecule holds all its conformers as stacked arrays, which is the shape
every later step wants (selection picks ``(molecule, conformer)`` pairs, training stacks them into tensors).
Energies are float64 (total energies of ~1e3 eV need it); positions and forces are float32.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.validate import check_molecule, shown

T = TypeVar("T")

PER_CONFORMER = ("positions", "energy", "forces", "parent", "temperature", "method")


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
            **{key: getattr(self, key)[idx] for key in PER_CONFORMER},
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
        self._memo: dict[Any, Any] = {}

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()``, once per key for this dataset object: the home of values derived from the whole dataset
        that the app asks for on every rerun (its digest, a seed's held-out sets). Nothing in mlipdiv mutates a
        dataset after it is built, which is what makes this safe; the values die with the object."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

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
    def has_forces(self) -> bool:
        """False for an imported dataset whose source had no forces (its ``forces`` arrays are zeros then); files
        written before this attribute existed all have forces."""
        try:
            return bool(int(self.attrs.get("has_forces", 1)))
        except (TypeError, ValueError):
            return True

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
