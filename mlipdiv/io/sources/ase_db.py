"""ASE databases (``.db``, SQLite, read with :mod:`ase.db`): one row per conformer.

Energy and forces come from the row's calculator results (``energy``, ``forces``), or from its ``data`` or
key-value pairs (schnetpack stores ``data={"energy": [e], "forces": F}``); ``--energy-key``/``--forces-key`` name
them when several could. Units: the flags, else schnetpack's metadata (``_property_unit_dict``,
``_distance_unit``), else ASE's eV and angstrom. Rows with a total charge or periodic cells are skipped with a
reason; a ``smiles`` or ``name`` key-value pair is carried along.
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
    choose_key,
    fail,
    resolve_units,
    to_float,
)


def _values(row: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scalars, per-atom arrays) of a row by name: calculator results first, then key-value pairs, then data."""
    scalars: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    n = row.natoms
    if row.get("energy") is not None:
        scalars["energy"] = row.energy
    if row.get("forces") is not None:
        arrays["forces"] = row.forces
    for key, value in row.key_value_pairs.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            scalars.setdefault(key, value)
    for key, value in (row.get("data") or {}).items():
        a = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray, int, float)) else None
        if a is None or a.dtype.kind not in "fiu":
            continue
        if a.size == 1:
            scalars.setdefault(key, a.reshape(-1)[0])
        elif a.size == 3 * n:
            arrays.setdefault(key, a)
    return scalars, arrays


def _split_force_unit(unit: str) -> tuple[str, str]:
    """``"kcal/mol/Ang"`` -> (``"kcal/mol"``, ``"Ang"``)."""
    head, _, tail = unit.rpartition("/")
    return head, tail


def open_ase_db(path: Path, options: SourceOptions) -> Source:
    from ase.db import connect

    try:
        db = connect(str(path), type="db", create_indices=False, use_lock_file=False)
        total = db.count()
        metadata = db.metadata or {}
        first = next(iter(db.select(limit=1)), None)
    except Exception as exc:  # noqa: BLE001 - sqlite3 and ASE raise many types for a file that is not an ASE db
        raise DatasetError(f"{path}: not a readable ASE database ({type(exc).__name__}); check the file or "
                           "--format") from exc
    if first is None:
        raise DatasetError(f"{path}: the ASE database holds no rows")
    scalars, arrays = _values(first)
    where = f"row {first.id}"
    energy_key = options.energy_key or choose_key(path, where, list(scalars), ENERGY_NAMES, "energy",
                                                  "--energy-key", True)
    if energy_key not in scalars:
        raise fail(path, where, f"no energy {energy_key!r} (keys: {', '.join(sorted(scalars)) or 'none'}); "
                                "name an existing key with --energy-key")
    forces_key = options.forces_key or choose_key(path, where, list(arrays), FORCES_NAMES, "force",
                                                  "--forces-key", False)
    if forces_key is not None and forces_key not in arrays:
        raise fail(path, where, f"no forces {forces_key!r} (per-atom keys: {', '.join(sorted(arrays)) or 'none'}); "
                                "name an existing key with --forces-key")
    units_meta = metadata.get("_property_unit_dict") or {}
    file_energy = units_meta.get(energy_key)
    file_length = metadata.get("_distance_unit")
    if forces_key is not None and units_meta.get(forces_key):
        f_energy, f_length = _split_force_unit(str(units_meta[forces_key]))
        if file_energy and f_energy.lower().replace(" ", "") != str(file_energy).lower().replace(" ", ""):
            raise DatasetError(f"{path}: mixed units: energy {energy_key!r} in {file_energy} but forces "
                               f"{forces_key!r} in {units_meta[forces_key]}; convert one of them so that both use "
                               "the same energy unit, then import again")
        file_energy = file_energy or f_energy
        file_length = file_length or f_length
    units = resolve_units(path, options, "eV", "angstrom", file_energy, file_length)

    def blocks() -> Iterator[Block]:
        for row in db.select():
            yield _block(path, row, energy_key, forces_key, units)

    return Source(path=path, format="ase-db", units=units, blocks=blocks, total=total, energy_key=energy_key,
                  forces_key=forces_key, level_of_theory=metadata.get("level_of_theory"))


def _block(path: Path, row: Any, energy_key: str, forces_key: str | None, units: Any) -> Block:
    where = f"row {row.id}"
    scalars, arrays = _values(row)
    if energy_key not in scalars:
        raise fail(path, where, f"has no energy {energy_key!r}; every row needs one (or name another with "
                                "--energy-key)")
    if forces_key is not None and forces_key not in arrays:
        raise fail(path, where, f"has no forces {forces_key!r} while earlier rows have them; every row needs them")
    energy = to_float([scalars[energy_key]], path, where, "energy") * units.energy_factor
    forces = None
    if forces_key is not None:
        forces = to_float(arrays[forces_key], path, where, "forces").reshape(1, row.natoms, 3) * units.force_factor
    positions = to_float(row.positions, path, where, "positions")[None] * units.length_factor
    kv = row.key_value_pairs
    charge = kv.get("charge", (row.get("data") or {}).get("charge", 0))
    initial = row.get("initial_charges")
    skip = None
    if np.any(row.pbc):
        skip = "periodic (pbc set): mlipdiv trains on isolated molecules"
    elif (np.size(charge) == 1 and abs(float(np.asarray(charge).reshape(-1)[0])) > 1e-6) or (
            initial is not None and abs(float(np.sum(initial))) > 1e-6):
        skip = "charged: mlipdiv models neutral molecules"
    return Block(where=where, atomic_numbers=np.asarray(row.numbers), positions=positions, energy=energy,
                 forces=forces, smiles=str(kv.get("smiles", "")), name=str(kv.get("name", "")), skip=skip)
