"""Synthetic sweep results drawn from known error surfaces (shared by the budget-analysis tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Both experiments of the study: a fixed-budget line (M x C = 512) and a fixed-molecule line (M = 64).
GRID = [(512, 1), (256, 2), (128, 4), (64, 8), (32, 16), (16, 32), (64, 1), (64, 2), (64, 4), (64, 16), (64, 32)]
M0, C0 = 64.0, 8.0


def surface(e_inf, a, alpha, b, beta):
    return lambda m, c: e_inf + a * (m / M0) ** -alpha + b * (c / C0) ** -beta


# unseen molecules: driven by M; unseen conformers: driven by C (values in meV/angstrom)
MOLECULES = surface(20.0, 40.0, 0.6, 5.0, 0.5)
CONFORMERS = surface(10.0, 5.0, 0.5, 30.0, 0.6)


def results_table(noise: float = 0.03, seeds: int = 3, seed: int = 0, grid=GRID) -> pd.DataFrame:
    """A sweep's results.csv (values in eV/angstrom as the sweeps store them) drawn from the surfaces above."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, c in grid:
        for s in range(seeds):
            for split, f in (("test_molecules", MOLECULES), ("test_conformers", CONFORMERS)):
                v = f(m, c) * (1 + noise * rng.normal()) / 1000.0
                rows.append(
                    {"experiment": "fixed-budget" if m * c == 512 else "fixed-molecules", "n_molecules": m,
                     "conformers_per_molecule": c, "seed": s, "model": "schnet", "split": split, "energy_mae": v,
                     "energy_mae_per_atom": v, "forces_mae": v, "run_id": f"r{m}-{c}-{s}"}
                )
    return pd.DataFrame(rows)
