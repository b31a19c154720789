"""``python -m mlipdiv info``: describe a dataset (the shipped default one when none is given)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "describe a dataset: molecules, conformers, elements, atoms per molecule, energy range, level of theory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="mlipdiv HDF5 (.h5) or extended XYZ file (default: the shipped data/default.h5)")
    p.add_argument("--dataset", dest="dataset_opt", metavar="PATH", help="same as the positional DATASET")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def describe(dataset) -> dict[str, Any]:
    """The facts ``info`` prints, as a plain dict (also used by the app)."""
    import json

    import numpy as np
    from ase.data import chemical_symbols

    n_atoms = np.array([m.n_atoms for m in dataset], dtype=float)
    n_conf = np.array([m.n_conformers for m in dataset], dtype=float)
    energies = np.concatenate([m.energy for m in dataset]) if len(dataset) else np.zeros(0)
    per_atom = np.concatenate([m.energy / m.n_atoms for m in dataset]) if len(dataset) else np.zeros(0)
    path = dataset.path
    out: dict[str, Any] = {
        "path": str(path) if path else None,
        "size_bytes": path.stat().st_size if path and path.exists() else None,
        "level_of_theory": dataset.level_of_theory,
        "molecules": len(dataset),
        "conformers": int(dataset.n_conformers),
        "elements": [chemical_symbols[z] for z in dataset.elements],
        "atoms_per_molecule": _stats(n_atoms),
        "conformers_per_molecule": _stats(n_conf),
        "energy_eV": {"min": float(energies.min()), "max": float(energies.max())} if energies.size else None,
        "energy_per_atom_eV": {"min": float(per_atom.min()), "max": float(per_atom.max())} if per_atom.size else None,
    }
    for key in ("sampling", "temperature", "relax", "seed", "source", "command", "created"):
        if key in dataset.attrs:
            out[key] = dataset.attrs[key]
    if "software" in dataset.attrs:
        try:
            out["software"] = json.loads(dataset.attrs["software"])
        except (TypeError, ValueError):
            out["software"] = dataset.attrs["software"]
    return out


def _stats(values) -> dict[str, float] | None:
    if not len(values):
        return None
    return {"min": int(values.min()), "mean": round(float(values.mean()), 2), "max": int(values.max())}


def run(args: argparse.Namespace) -> int:
    import json

    from mlipdiv.io.load import load_dataset

    d = describe(load_dataset(args.dataset or args.dataset_opt))
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    size = f" ({d['size_bytes'] / 1e6:.1f} MB)" if d["size_bytes"] else ""
    lines = [
        f"path             {d['path']}{size}",
        f"level of theory  {d['level_of_theory']}",
        f"molecules        {d['molecules']}",
        f"conformers       {d['conformers']}",
        f"elements         {' '.join(d['elements'])}",
    ]
    for key, label in (("atoms_per_molecule", "atoms/molecule"), ("conformers_per_molecule", "conformers/mol")):
        s = d[key]
        if s:
            lines.append(f"{label:<17}min {s['min']}, mean {s['mean']}, max {s['max']}")
    if d["energy_eV"]:
        e, ea = d["energy_eV"], d["energy_per_atom_eV"]
        lines.append(f"energy           {e['min']:.3f} .. {e['max']:.3f} eV "
                     f"({ea['min']:.3f} .. {ea['max']:.3f} eV/atom)")
    if "sampling" in d:
        lines.append(f"sampling         {d['sampling']} at {d.get('temperature', '?')} K, relax {d.get('relax', '?')}, "
                     f"seed {d.get('seed', '?')}")
    for key in ("source", "command", "created"):
        if d.get(key):
            lines.append(f"{key:<17}{d[key]}")
    print("\n".join(lines))
    return 0
