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


# ------------------------------------------------------------------------------ the v2 contract (issue 16)
# Budgets with their training steps (one value per budget, as the protocol gives them) and seeds (>= 8 at B <= 512).
BUDGET_STEPS = {128: 400, 512: 800, 2048: 1600, 8192: 3200}
BUDGET_SEEDS = {128: 8, 512: 8, 2048: 3, 8192: 3}
CONFORMERS_GRID = (1, 4, 16, 64)  # C at every budget, M = B / C
FIXED_MOLECULES = {8: (1, 2, 8, 16), 64: (1, 2, 8, 16)}  # M -> C values of the fixed-molecules experiment
FIXED_MOLECULES_STEPS = 800
S0 = 800.0


def surface_v2(e_inf, a, alpha, b, beta, gamma=0.0):
    """A known error surface in meV/Å, scaled by an (optional) training-length factor ``(S/S0)^-gamma``."""
    return lambda m, c, s: (e_inf + a * (m / M0) ** -alpha + b * (c / C0) ** -beta) * (s / S0) ** -gamma


# unseen molecules are driven by M, unseen conformers by C: the mean of the two has an interior optimum
MOLECULES_V2 = surface_v2(60.0, 60.0, 0.5, 8.0, 0.5, gamma=0.1)
CONFORMERS_V2 = surface_v2(40.0, 8.0, 0.5, 50.0, 0.5, gamma=0.1)


def flat(level: float = 150.0, a: float = 60.0, alpha: float = 0.3):
    """Only the number of conformers M x C matters: every point of one budget has the same true error."""
    return lambda m, c, s: level + a * (m * c / 512.0) ** -alpha


def v2_table(
    molecules=MOLECULES_V2, conformers=CONFORMERS_V2, *, budgets=None, seeds=None, seed_sd: float = 6.0,
    run_sd: float = 3.0, seed: int = 0, convergence: bool = True, fixed_molecules: bool = True,
    offsets: dict[int, float] | None = None, record_steps: bool = True, model: str = "schnet",
) -> pd.DataFrame:
    """A study's results.csv in the v2 contract (units as stored: eV, eV/Å) drawn from known surfaces.

    Noise: each (seed, split) has one shared effect ``seed_sd`` (the seed's test set is easy or hard for every
    point alike: what pairing by seed removes) plus an independent ``run_sd`` per run, both in meV/Å.
    ``convergence`` adds, for the smallest and largest M of each budget and the first 3 seeds, runs with twice the
    budget's steps (preset ``*-convergence``). ``offsets`` adds a per-budget error the steps do not explain (a
    misspecified model), and ``record_steps=False`` leaves the steps columns empty, as in old tables.
    """
    budgets = dict(BUDGET_STEPS if budgets is None else budgets)
    seeds = dict(BUDGET_SEEDS if seeds is None else seeds)
    offsets = offsets or {}
    rng = np.random.default_rng(seed)
    n_seeds = max(seeds.values())
    effect = {(s, split): rng.normal(0.0, seed_sd) for s in range(n_seeds) for split in ("test_molecules",
                                                                                          "test_conformers")}
    n_eval = {(s, "test_molecules"): 1600 + 7 * s for s in range(n_seeds)}
    n_eval.update({(s, "test_conformers"): 900 + 5 * s for s in range(n_seeds)})
    rows = []

    def add(experiment, m, c, s, steps, preset, budget_offset=0.0):
        for split, f in (("test_molecules", molecules), ("test_conformers", conformers)):
            mev = f(m, c, steps) + budget_offset + effect[(s, split)] + rng.normal(0.0, run_sd)
            rel = 0.4 * mev  # eV per molecule scale: relative-energy error follows the force error
            rows.append({
                "experiment": experiment, "n_molecules": m, "conformers_per_molecule": c, "seed": s,
                "model": model, "split": split, "energy_mae": mev * 20 / 1000.0,
                "energy_mae_per_atom": mev / 1000.0, "forces_mae": mev / 1000.0,
                "run_id": f"{preset}-{model}-{m}-{c}-{s}-{steps}", "preset": preset, "strategy": "random",
                "budget": m * c, "baseline_forces_mae": 0.5, "baseline_energy_mae_per_atom": 0.05,
                "seconds": 1.0 + m * c * steps / 1e5, "n_eval": n_eval[(s, split)], "n_excluded": 0,
                "steps": steps if record_steps else np.nan, "steps_run": steps if record_steps else np.nan,
                "epochs_run": steps * 16 / (m * c) if record_steps else np.nan,
                "best_step": steps if record_steps else np.nan,
                "best_epoch": steps * 16 / (m * c) if record_steps else np.nan, "converged": True,
                "late_gain_forces": 0.01 if record_steps else np.nan,
                "late_gain_energy": 0.1 * s if record_steps else np.nan,
                "energy_rel_mae": rel / 1000.0, "baseline_energy_rel_mae": 0.3,
            })

    for budget, steps in budgets.items():
        ms = [budget // c for c in CONFORMERS_GRID if budget // c >= 2]
        for s in range(seeds[budget]):
            for m in ms:
                add("fixed-budget", m, budget // m, s, steps, "docs-fixed-budget", offsets.get(budget, 0.0))
            if convergence and s < 3:
                for m in (min(ms), max(ms)):
                    add("fixed-budget", m, budget // m, s, 2 * steps, "docs-fixed-budget-convergence",
                        offsets.get(budget, 0.0))
    if fixed_molecules:
        for m, cs in FIXED_MOLECULES.items():
            for s in range(3):
                for c in cs:
                    add("fixed-molecules", m, c, s, FIXED_MOLECULES_STEPS, "docs-fixed-molecules")
    return pd.DataFrame(rows)


def true_best_m(budget: int, weight: float = 0.5, molecules=MOLECULES_V2, conformers=CONFORMERS_V2) -> int:
    """The measured grid's M with the lowest true weighted error at ``budget``."""
    ms = [budget // c for c in CONFORMERS_GRID if budget // c >= 2]
    steps = BUDGET_STEPS.get(budget, S0)
    err = {m: weight * molecules(m, budget / m, steps) + (1 - weight) * conformers(m, budget / m, steps) for m in ms}
    return min(err, key=err.__getitem__)
