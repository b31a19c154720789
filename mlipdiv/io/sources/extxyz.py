"""Extended XYZ written by other tools (ASE, MACE, NequIP workflows): one frame per conformer.

Energy from a SinglePointCalculator (ASE turns ``energy=``/``forces`` into one) or any ``info`` key
(``REF_energy``, ``DFT_energy``, ...), forces from the calculator or any per-atom ``arrays`` key; detected when
unambiguous, else ``--energy-key``/``--forces-key``. Units: ASE's eV and angstrom unless the flags say otherwise.
Frames with a lattice (periodic) or a total ``charge`` are skipped with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources.common import (
    ENERGY_NAMES,
    FORCES_NAMES,
    Block,
    Source,
    SourceOptions,
    Units,
    choose_key,
    fail,
    resolve_units,
    to_float,
)

_NOT_LABELS = {"numbers", "positions"}


def _values(atoms: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    scalars: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    if "energy" in results:
        scalars["energy"] = results["energy"]
    if "forces" in results:
        arrays["forces"] = results["forces"]
    for key, value in atoms.info.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            scalars.setdefault(key, value)
    for key, value in atoms.arrays.items():
        if key not in _NOT_LABELS and np.shape(value) == (len(atoms), 3):
            arrays.setdefault(key, value)
    return scalars, arrays


def _frames(path: Path) -> Iterator[tuple[int, Any]]:
    from ase.io import iread

    i = 0
    try:
        for atoms in iread(path, index=":", format="extxyz"):
            yield i, atoms
            i += 1
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: frame {i}: not UTF-8 text; save it as UTF-8 extended XYZ") from exc
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for malformed files
        raise DatasetError(f"{path}: frame {i}: cannot be parsed as extended XYZ ({type(exc).__name__}); "
                           "check the file or --format") from exc


def open_extxyz(path: Path, options: SourceOptions) -> Source:
    first = next(_frames(path), None)
    if first is None:
        raise DatasetError(f"{path}: no frames")
    scalars, arrays = _values(first[1])
    energy_key = options.energy_key or choose_key(path, "frame 0", list(scalars), ENERGY_NAMES, "energy",
                                                  "--energy-key", True)
    if energy_key not in scalars:
        raise fail(path, "frame 0", f"no energy {energy_key!r} (keys: {', '.join(sorted(scalars)) or 'none'}); "
                                    "name an existing key with --energy-key")
    forces_key = options.forces_key or choose_key(path, "frame 0", list(arrays), FORCES_NAMES, "force",
                                                  "--forces-key", False)
    if forces_key is not None and forces_key not in arrays:
        raise fail(path, "frame 0", f"no forces {forces_key!r} (per-atom keys: {', '.join(sorted(arrays)) or 'none'})"
                                    "; name an existing key with --forces-key")
    units = resolve_units(path, options, "eV", "angstrom")
    level = first[1].info.get("level_of_theory")

    def blocks() -> Iterator[Block]:
        for i, atoms in _frames(path):
            yield _block(path, i, atoms, energy_key, forces_key, units)

    return Source(path=path, format="extxyz", units=units, blocks=blocks, energy_key=energy_key,
                  forces_key=forces_key, level_of_theory=str(level) if level else None)


def _block(path: Path, i: int, atoms: Any, energy_key: str, forces_key: str | None, units: Units) -> Block:
    where = f"frame {i}"
    if len(atoms) == 0:
        raise fail(path, where, "has no atoms")
    scalars, arrays = _values(atoms)
    if energy_key not in scalars:
        raise fail(path, where, f"has no energy {energy_key!r}; every frame needs one")
    if forces_key is not None and forces_key not in arrays:
        raise fail(path, where, f"has no forces {forces_key!r} while frame 0 has them; every frame needs them")
    energy = to_float([scalars[energy_key]], path, where, "energy") * units.energy_factor
    forces = None
    if forces_key is not None:
        forces = to_float(arrays[forces_key], path, where, "forces")[None] * units.force_factor
    skip = None
    charge = atoms.info.get("charge", atoms.info.get("total_charge", 0))
    if np.any(atoms.pbc) or np.any(np.asarray(atoms.cell) != 0):
        skip = "periodic (Lattice/pbc): mlipdiv trains on isolated molecules"
    elif isinstance(charge, (int, float, np.number)) and abs(float(charge)) > 1e-6:
        skip = "charged: mlipdiv models neutral molecules"
    return Block(where=where, atomic_numbers=np.asarray(atoms.numbers),
                 positions=to_float(atoms.positions, path, where, "positions")[None] * units.length_factor,
                 energy=energy, forces=forces, smiles=str(atoms.info.get("smiles", "")),
                 name=str(atoms.info.get("name", "")), skip=skip)
