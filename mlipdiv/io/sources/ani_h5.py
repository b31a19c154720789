"""ANI-1x style HDF5 (Smith et al. 2020): groups (one per formula in ANI-1x) of conformers.

Each group holds ``atomic_numbers`` (n_atoms,), ``coordinates`` (n_conf, n_atoms, 3) in angstrom and energies in
hartree under a key naming the level of theory (``wb97x_dz.energy``, ``ccsd(t)_cbs.energy``, ...): the one key
ending in ``energy``, else ``--energy-key``. Forces (hartree/angstrom) under the same prefix
(``wb97x_dz.forces``) when present. A group may hold several isomers: the pipeline tells them apart.
ANI-1x stores NaN where a level was not computed for a conformer; those conformers are skipped with that reason
(NaN forces of a computed conformer remain an error).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources.common import Block, Source, SourceOptions, Units, choose_key, fail, resolve_units, to_float
from mlipdiv.io.sources.h5common import h5_failure, open_grouped
from mlipdiv.io.validate import shown


def open_ani(path: Path, options: SourceOptions) -> Source:
    f, names, first, where = open_grouped(path)
    keys = [k for k in first if k not in ("atomic_numbers", "coordinates")]
    try:
        energy_key = options.energy_key or choose_key(path, where, [k for k in keys if k.lower().endswith("energy")],
                                                      (), "energy", "--energy-key", True)
    except DatasetError:
        f.close()
        raise
    assert energy_key is not None
    prefix = energy_key[: -len("energy")] if energy_key.lower().endswith("energy") else ""
    forces_key = options.forces_key or (prefix + "forces" if prefix and prefix + "forces" in first else None)
    for key in (energy_key, forces_key):
        if key is not None and key not in first:
            f.close()
            raise fail(path, where, f"no dataset {shown(key)} (datasets: {', '.join(map(shown, first))})")
    # positions and the forces' denominator in angstrom; only the energy unit is the format's hartree
    units = resolve_units(path, options, "hartree", "angstrom", force_length="angstrom")
    level = prefix.rstrip("._") or None

    def blocks() -> Iterator[Block]:
        try:
            for name in names:
                yield _block(path, name, f[name], energy_key, forces_key, units)
        finally:
            f.close()

    return Source(path=path, format="ani-h5", units=units, blocks=blocks, total=len(names), energy_key=energy_key,
                  forces_key=forces_key, level_of_theory=level)


def _block(path: Path, name: str, g: Any, energy_key: str, forces_key: str | None, units: Units) -> Block:
    where = f"group {shown('/' + name)}"
    missing = [k for k in ("atomic_numbers", "coordinates", energy_key, forces_key) if k and k not in g]
    if missing:
        raise fail(path, where, f"lacks {', '.join(map(shown, missing))}; every group needs them")
    try:
        z = np.asarray(g["atomic_numbers"][()])
        positions = to_float(g["coordinates"][()], path, where, "coordinates") * units.length_factor
        energy = to_float(g[energy_key][()], path, where, energy_key).reshape(-1)
        forces = to_float(g[forces_key][()], path, where, forces_key) if forces_key else None
    except DatasetError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise h5_failure(path, where, exc) from exc
    labels = [f"{where} conformer {i}" for i in range(len(energy))]
    computed = np.isfinite(energy)
    skipped = [(labels[i], f"no {energy_key} (NaN: not computed at this level)")
               for i in np.flatnonzero(~computed)]
    if not computed.all():
        if len(positions) != len(energy) or (forces is not None and len(forces) != len(energy)):
            raise fail(path, where, "coordinates, energies and forces hold different numbers of conformers")
        keep = np.flatnonzero(computed)
        energy, positions = energy[keep], positions[keep]
        forces = forces[keep] if forces is not None else None
        labels = [labels[i] for i in keep]
    return Block(where=where, atomic_numbers=z, positions=positions, energy=energy * units.energy_factor,
                 forces=forces * units.force_factor if forces is not None else None, labels=labels, skipped=skipped,
                 name=name)
