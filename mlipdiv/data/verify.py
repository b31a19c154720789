"""Check a dataset's labels against an independent GFN2-xTB recomputation.

``python -m mlipdiv.data.verify [DATASET] --sample 20 [--seed 0] [--json]`` draws conformers at random and
recomputes them with tblite's own ASE calculator (``tblite.ase.TBLite``: a fresh calculator per conformer, ASE's
unit conversion; none of the pipeline's oracle code). It prints the largest energy and force deviations and exits
non-zero when they exceed the tolerances (energy 1e-4 eV; forces 1e-3 eV/angstrom, they are stored as float32).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ENERGY_TOL = 1e-4  # eV
FORCE_TOL = 1e-3  # eV/angstrom


def verify(dataset, sample: int = 20, seed: int = 0) -> dict:
    from ase import Atoms
    from tblite.ase import TBLite

    rng = np.random.default_rng(seed)
    total = dataset.n_conformers
    picks = rng.choice(total, size=min(sample, total), replace=False)
    rows = []
    for gid in sorted(int(g) for g in picks):
        mol_id, j = dataset.locate(gid)
        m = dataset[mol_id]
        atoms = Atoms(numbers=m.atomic_numbers, positions=m.positions[j].astype(np.float64))
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        e = float(atoms.get_potential_energy())
        f = atoms.get_forces()
        rows.append({"molecule": mol_id, "smiles": m.smiles, "conformer": j,
                     "energy_error_eV": abs(e - float(m.energy[j])),
                     "max_force_error_eV_per_A": float(np.abs(f - m.forces[j]).max())})
    max_e = max(r["energy_error_eV"] for r in rows)
    max_f = max(r["max_force_error_eV_per_A"] for r in rows)
    return {"path": str(dataset.path), "checked": len(rows), "max_energy_error_eV": max_e,
            "max_force_error_eV_per_A": max_f, "ok": bool(max_e <= ENERGY_TOL and max_f <= FORCE_TOL),
            "conformers": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlipdiv.data.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", nargs="?", help="dataset (default: the shipped one)")
    p.add_argument("--sample", type=int, default=20, help="conformers to recompute (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mlipdiv.io.load import load_dataset
    from mlipdiv.errors import MlipdivError

    try:
        result = verify(load_dataset(args.dataset), args.sample, args.seed)
    except MlipdivError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in result["conformers"]:
            print(f"{r['molecule']} {r['conformer']:>3}  dE={r['energy_error_eV']:.2e} eV  "
                  f"max|dF|={r['max_force_error_eV_per_A']:.2e} eV/A  {r['smiles']}")
        print(f"{result['checked']} conformers of {result['path']}: max |dE| = {result['max_energy_error_eV']:.2e} eV, "
              f"max |dF| = {result['max_force_error_eV_per_A']:.2e} eV/A -> {'OK' if result['ok'] else 'MISMATCH'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
