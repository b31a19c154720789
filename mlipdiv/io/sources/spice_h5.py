"""SPICE-style HDF5 (Eastman et al. 2023): one group per molecule.

Each group holds ``atomic_numbers`` (n_atoms,), ``conformations`` (n_conf, n_atoms, 3) in bohr, energies in
hartree (``dft_total_energy`` preferred, else ``formation_energy``; ``--energy-key`` for another),
``dft_total_gradient`` (hartree/bohr; forces are its negative) and ``smiles`` (a one-element string dataset).
A ``units`` attribute on a dataset, as SPICE writes, is read and must agree across groups ("mixed units"
otherwise). Groups whose SMILES carries a net formal charge are skipped (the charge is counted by the pipeline,
which parses SMILES; here only the text is passed on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources.common import Block, Source, SourceOptions, Units, fail, resolve_units, text, to_float
from mlipdiv.io.sources.h5common import h5_failure, open_grouped
from mlipdiv.io.validate import shown

ENERGY_KEYS = ("dft_total_energy", "formation_energy")
FORCE_KEYS = ("dft_total_gradient",)


def _unit_attr(ds: Any) -> str | None:
    value = ds.attrs.get("units")
    return text(value) if value is not None else None


def open_spice(path: Path, options: SourceOptions) -> Source:
    f, names, first, where = open_grouped(path)
    if options.energy_key:
        energy_key = options.energy_key
    else:
        present = [k for k in ENERGY_KEYS if k in first]
        if not present:
            f.close()
            raise fail(path, where, f"no {' or '.join(ENERGY_KEYS)} (datasets: {', '.join(map(shown, first))}); "
                                    "name the energy dataset with --energy-key")
        energy_key = present[0]
    forces_key = options.forces_key or next((k for k in FORCE_KEYS if k in first), None)
    for key in (energy_key, forces_key):
        if key is not None and key not in first:
            f.close()
            raise fail(path, where, f"no dataset {shown(key)} (datasets: {', '.join(map(shown, first))})")
    e_unit = _unit_attr(first[energy_key])
    l_unit = _unit_attr(first["conformations"]) if "conformations" in first else None
    units = resolve_units(path, options, "hartree", "bohr", e_unit, l_unit)
    gradient = forces_key is not None and "gradient" in forces_key.lower()

    def blocks() -> Iterator[Block]:
        try:
            for name in names:
                yield _block(path, name, f[name], energy_key, forces_key, gradient, units, (e_unit, l_unit))
        finally:
            f.close()

    return Source(path=path, format="spice-h5", units=units, blocks=blocks, total=len(names), energy_key=energy_key,
                  forces_key=forces_key, notes=["forces = -dft_total_gradient"] if gradient else [])


def _block(path: Path, name: str, g: Any, energy_key: str, forces_key: str | None, gradient: bool, units: Units,
           first_units: tuple[str | None, str | None]) -> Block:
    where = f"group {shown('/' + name)}"
    missing = [k for k in ("atomic_numbers", "conformations", energy_key, forces_key) if k and k not in g]
    if missing:
        raise fail(path, where, f"lacks {', '.join(map(shown, missing))}; every group needs them")
    if (_unit_attr(g[energy_key]), _unit_attr(g["conformations"])) != first_units:
        raise fail(path, where, f"mixed units: its {energy_key} or conformations carry other units than the first "
                                "group's; convert the file to one set of units, then import again")
    try:
        z = np.asarray(g["atomic_numbers"][()])
        positions = to_float(g["conformations"][()], path, where, "conformations") * units.length_factor
        energy = to_float(g[energy_key][()], path, where, energy_key).reshape(-1) * units.energy_factor
        forces = None
        if forces_key is not None:
            forces = to_float(g[forces_key][()], path, where, forces_key) * units.force_factor
            if gradient:
                forces = -forces
        smiles = text(g["smiles"][()]) if "smiles" in g else ""
    except DatasetError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise h5_failure(path, where, exc) from exc
    return Block(where=where, atomic_numbers=z, positions=positions, energy=energy, forces=forces, smiles=smiles,
                 name=name)
