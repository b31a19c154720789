"""NumPy ``.npz`` trajectories in the rMD17 layout (Christensen & von Lilienfeld 2020): one molecule, many frames.

Keys ``nuclear_charges`` (n_atoms,), ``coords`` (n_frames, n_atoms, 3) angstrom, ``energies`` (n_frames,) and
``forces`` (n_frames, n_atoms, 3) in kcal/mol and kcal/mol/angstrom. The original MD17/sGDML layout (``z``, ``R``,
``E``, ``F``, same units) is read too. Loaded without pickle (an npz may otherwise run code).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.sources.common import Block, Source, SourceOptions, fail, resolve_units, to_float
from mlipdiv.io.validate import shown

LAYOUTS = ({"z": "nuclear_charges", "R": "coords", "E": "energies", "F": "forces"},
           {"z": "z", "R": "R", "E": "E", "F": "F"})


def open_npz(path: Path, options: SourceOptions) -> Source:
    try:
        data = np.load(path, allow_pickle=False)
        keys = list(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({type(exc).__name__}); check the file or --format") \
            from exc
    layout = next((lay for lay in LAYOUTS if lay["z"] in keys and lay["R"] in keys), None)
    if layout is None:
        raise DatasetError(f"{path}: not the rMD17 layout (needs nuclear_charges and coords, or z and R; keys: "
                           f"{', '.join(map(shown, keys[:20]))})")
    energy_key = options.energy_key or layout["E"]
    forces_key = options.forces_key or (layout["F"] if layout["F"] in keys else None)
    for key in (energy_key, forces_key):
        if key is not None and key not in keys:
            raise fail(path, "file", f"no array {shown(key)} (keys: {', '.join(map(shown, keys[:20]))}); "
                                     "name it with --energy-key / --forces-key")
    units = resolve_units(path, options, "kcal/mol", "angstrom")

    def blocks() -> Iterator[Block]:
        where = path.name
        try:
            z = np.asarray(data[layout["z"]]).reshape(-1)
            positions = to_float(data[layout["R"]], path, where, "coords") * units.length_factor
            energy = to_float(data[energy_key], path, where, "energies").reshape(-1) * units.energy_factor
            forces = to_float(data[forces_key], path, where, "forces") * units.force_factor if forces_key else None
        except DatasetError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{path}: an array cannot be read ({type(exc).__name__}); the file may be damaged") \
                from exc
        yield Block(where="trajectory", atomic_numbers=z, positions=positions, energy=energy, forces=forces,
                    labels=[f"frame {i}" for i in range(len(energy))])

    return Source(path=path, format="npz", units=units, blocks=blocks, total=1, energy_key=energy_key,
                  forces_key=forces_key)
