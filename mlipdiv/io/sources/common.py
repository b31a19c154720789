"""What every source reader hands to the import pipeline: blocks of conformers in eV and angstrom, checked.

A reader only reads and converts units (once, here at the boundary); it knows nothing about molecules beyond
what the file says. Grouping into molecules, families and the report are :mod:`mlipdiv.data.importing`'s job.
Every message names the file and the entry (``row 3``, ``frame 12``, ``group '/C2H6O'``), never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.validate import check_atomic_numbers, shown
from mlipdiv.limits import MAX_ABS_POSITION
from mlipdiv.units import ENERGY_UNITS, LENGTH_UNITS, energy_unit, length_unit

ENERGY_NAMES = ("energy", "REF_energy", "DFT_energy", "dft_energy", "ref_energy", "total_energy")
"""Keys taken for the energy without asking when exactly one of them is present (in this order of preference)."""
FORCES_NAMES = ("forces", "REF_forces", "DFT_forces", "dft_forces", "ref_forces", "force")


@dataclass(frozen=True)
class SourceOptions:
    """What the user said about the file (``None``: detect it, or the format's documented default)."""

    energy_key: str | None = None
    forces_key: str | None = None
    energy_unit: str | None = None
    length_unit: str | None = None


@dataclass
class Block:
    """Conformers the file stores together, converted to eV and angstrom.

    Attributes:
        where: the entry as the file names it, for messages and the report (``"row 3"``, ``"group '/mol1'"``).
        atomic_numbers: (n_atoms,) int.
        positions: (n_conf, n_atoms, 3) float64, angstrom.
        energy: (n_conf,) float64, eV.
        forces: (n_conf, n_atoms, 3) float64, eV/angstrom, or ``None`` when the file has none.
        smiles: the SMILES the file carries for this entry ("" when none).
        name: a human name the file carries ("" when none).
        labels: per conformer, how the file names it (``where`` plus an index); default ``where[i]``.
        skip: why the whole block cannot be imported (charged, periodic), or ``None``.
        skipped: (label, reason) of single conformers the reader dropped (e.g. ANI's NaN = not computed).
    """

    where: str
    atomic_numbers: np.ndarray
    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray | None
    smiles: str = ""
    name: str = ""
    labels: list[str] | None = None
    skip: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def label(self, i: int) -> str:
        if self.labels is not None and 0 <= i < len(self.labels):
            return self.labels[i]
        return self.where if len(self.energy) == 1 else f"{self.where} conformer {i}"


@dataclass
class Units:
    """The units a file's numbers are in, where each came from, and the factors to eV / angstrom."""

    energy: str
    length: str
    force_length: str
    origin: str  # "flag", "file" (metadata) or "format default"

    @property
    def energy_factor(self) -> float:
        return ENERGY_UNITS[self.energy]

    @property
    def length_factor(self) -> float:
        return LENGTH_UNITS[self.length]

    @property
    def force_factor(self) -> float:
        return ENERGY_UNITS[self.energy] / LENGTH_UNITS[self.force_length]

    def conversions(self) -> list[str]:
        """Human lines for the report: what was multiplied by what."""
        out = []
        if self.energy != "eV":
            out.append(f"energy: {self.energy} -> eV (x {self.energy_factor:.10g})")
        if self.length != "angstrom":
            out.append(f"positions: {self.length} -> angstrom (x {self.length_factor:.10g})")
        if (self.energy, self.force_length) != ("eV", "angstrom"):
            out.append(f"forces: {self.energy}/{self.force_length} -> eV/angstrom (x {self.force_factor:.10g})")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"energy": self.energy, "length": self.length, "forces": f"{self.energy}/{self.force_length}",
                "from": self.origin, "conversions": self.conversions()}


@dataclass
class Source:
    """An opened source: its blocks (read lazily, for a progress bar over ``total``) and what was decided."""

    path: Path
    format: str
    units: Units
    blocks: Callable[[], Iterator[Block]]
    total: int | None = None  # number of blocks, when known up front
    energy_key: str = ""
    forces_key: str | None = None
    level_of_theory: str | None = None
    notes: list[str] = field(default_factory=list)


def fail(path: Path, where: str, what: str) -> DatasetError:
    """The one shape of a reader's error: ``FILE: ENTRY: what was wrong; what to do``."""
    return DatasetError(f"{path}: {where}: {what}")


def resolve_units(path: Path, options: SourceOptions, default_energy: str, default_length: str,
                  file_energy: str | None = None, file_length: str | None = None,
                  force_length: str | None = None) -> Units:
    """Units of a file: the user's flags, else the file's own metadata, else the format's convention.

    A flag that contradicts the file's metadata is refused (one of them is wrong; the user must say which by
    fixing the file or dropping the flag). ``force_length`` is the length unit of the forces' denominator when the
    format fixes it (ANI: hartree/angstrom while coordinates are in angstrom too).
    """
    try:
        flag_e = energy_unit(options.energy_unit) if options.energy_unit else None
        flag_l = length_unit(options.length_unit) if options.length_unit else None
        meta_e = energy_unit(file_energy) if file_energy else None
        meta_l = length_unit(file_length) if file_length else None
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}; pass --energy-unit / --length-unit") from None
    for flag, meta, name in ((flag_e, meta_e, "energy"), (flag_l, meta_l, "length")):
        if flag and meta and flag != meta:
            raise DatasetError(f"{path}: --{name}-unit {flag} contradicts the file, which says its {name} unit is "
                               f"{meta}; drop the flag or fix the file's metadata")
    energy = flag_e or meta_e or default_energy
    length = flag_l or meta_l or default_length
    origin = "flag" if (flag_e or flag_l) else "file" if (meta_e or meta_l) else "format default"
    return Units(energy=energy, length=length, force_length=force_length or length, origin=origin)


def choose_key(path: Path, where: str, present: Sequence[str], preferred: Sequence[str], word: str,
               flag: str, required: bool) -> str | None:
    """The one key holding the energy (or forces): an exact preferred name, else the only key containing ``word``.

    Several candidates and no flag is an error listing them (guessing between ``energy_U0`` and ``energy_U`` of a
    QM9 database would be silent nonsense); none is an error when ``required``, else ``None``.
    """
    exact = [k for k in preferred if k in present]
    if len(exact) == 1:
        return exact[0]
    candidates = exact or [k for k in present if word in k.lower()]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise DatasetError(f"{path}: {where}: several keys could hold the {word}: {', '.join(map(shown, candidates))}; "
                           f"name one with {flag}")
    if required:
        listed = ", ".join(map(shown, present[:20])) or "none"
        raise DatasetError(f"{path}: {where}: no {word} found (keys: {listed}); name the key with {flag}")
    return None


def check_block(path: Path, block: Block) -> None:
    """Shapes, elements, atom count, NaN/inf and absurd coordinates of one block, naming its first bad entry."""
    z = np.asarray(block.atomic_numbers)
    n_conf = len(block.energy)
    if z.ndim != 1:
        raise fail(path, block.where, f"atomic numbers have shape {z.shape}, expected (n_atoms,)")
    why = check_atomic_numbers(z)
    if why:
        raise fail(path, block.where, why)
    if len(z) < 2:
        raise fail(path, block.where, "a molecule of one atom: an MLIP learns interactions between atoms; remove "
                                      "single atoms from the file (their energies are element references)")
    n = len(z)
    if block.positions.shape != (n_conf, n, 3):
        raise fail(path, block.where, f"positions have shape {block.positions.shape}, expected ({n_conf}, {n}, 3) "
                                      f"for {n} atoms")
    if block.forces is not None and block.forces.shape != (n_conf, n, 3):
        raise fail(path, block.where, f"forces have shape {block.forces.shape}, expected ({n_conf}, {n}, 3)")
    for name, values in (("positions", block.positions), ("energy", block.energy), ("forces", block.forces)):
        if values is None:
            continue
        bad = ~np.isfinite(values.reshape(n_conf, -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise fail(path, block.label(i), f"{name} hold NaN or infinity; remove or fix this entry and import "
                                             "again")
    if n_conf and float(np.abs(block.positions).max()) > MAX_ABS_POSITION:
        raise fail(path, block.where, f"a coordinate lies beyond {MAX_ABS_POSITION:g} angstrom: wrong "
                                      "--length-unit, or not an isolated molecule")


def to_float(values: Any, path: Path, where: str, what: str) -> np.ndarray:
    """``values`` as a float64 array, or an error naming the entry (a string where a number should be)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(path, where, f"{what} are not numbers") from None


def text(value: Any) -> str:
    """A string attribute or one-element string dataset of a file, as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def first_present(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None
