"""The study reproduced: run presets as sweeps, then tables, fits, budget advice, information gap, applicability
domain and figures from the finished runs.

``python -m mlipdiv.analysis.study --preset NAME [--preset NAME ...] --out DIR`` runs every sweep of the presets
(finished runs in the store are reused, so a rerun only trains what is missing) and analyses them;
``--preset study`` stands for every ``study-*`` preset, and ``--train-only`` trains without analysing (a study computed
in sittings: ``make study``); ``--analyse-only`` skips training and analyses what ``DIR`` already holds: the sweeps
below it with the run store, or, when ``DIR`` holds only ``results.csv`` (the shipped ``docs/results``), that table
alone. The docs page regenerates with one command::

    python -m mlipdiv.analysis.study --analyse-only --out docs/results --figures docs/figures --page docs/RESULTS.md

(``--page`` replaces what lies between the page's two ``mlipdiv:generated`` markers; a page without them is refused.)
Convergence-check runs (presets ending in ``-convergence``) feed only the convergence table. Written to ``DIR``:

- ``<preset>/<model>-<strategy>/results.csv`` (the sweep verb's table) and ``results.csv`` (all of them, with
  ``strategy`` and ``preset`` columns, and the element/zero-force baselines of each run);
- ``summary.csv``: mean ± std over seeds per experiment, model, strategy, (M, C) and split, in meV/Å and meV/atom;
- ``analysis.json``: the checks against the study's claims, paired comparisons within budgets, fits and their
  acceptance checks, recommendations, convergence, evaluated counts, energies, information gap and domain;
- ``report.md``: the generated sections of docs/RESULTS.md; ``curves.csv``: every run's learning curve (from the
  store; kept as it is when only ``results.csv`` is analysed);
- ``references.csv``: the element-linear energy baseline on unseen molecules at M = 2 ... 1,024 with and without the
  isolated-atom prior (:mod:`mlipdiv.analysis.references`; computed from the dataset, kept as it is when only
  ``results.csv`` is analysed);
- ``figures/*.html`` and, when kaleido and a Chrome are available, ``figures/*.png`` / ``*.svg`` (the same Plotly
  figures; set ``BROWSER_PATH=/usr/bin/chromium`` for Debian's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.analysis.fit import protocol_rows
from mlipdiv.analysis.report import CURVE_COLUMNS, curve_rows
from mlipdiv.errors import MlipdivError
from mlipdiv.io.metrics import RunMetrics
from mlipdiv.io.table import EXTRA_COLUMNS, extra_columns
from mlipdiv.names import TEST_SPLITS, Experiment, SplitName
from mlipdiv.units import mev

__all__ = ["STUDY", "analyse", "collect", "expand_presets", "load_study", "plan_preset", "read_study_table",
           "run_presets", "shape_plan", "summary_table"]

SPLITS = TEST_SPLITS


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------- sweeps


def shape_plan(plan: Any, preset: Any) -> Any:
    """Apply a preset's grid options to a planned sweep: keep ``preset.points`` points (log-evenly spaced, ends
    included) among those with C <= ``max_conformers_per_molecule``, give
    runs step-matched epochs (``match_steps``), and order runs seed-major (every point once before any point twice),
    so a sweep cut short still covers the whole grid. Changed configs get new keys, so the store never confuses them.
    """
    from dataclasses import replace

    from mlipdiv.jobs.sweep import SweepRun, file_digest, run_key
    from mlipdiv.selection.experiments import spread

    cap = preset.max_conformers_per_molecule
    grid = [tuple(g) for g in plan.grid if cap is None or g[1] <= cap]
    if not grid:
        raise MlipdivError(f"preset {preset.name}: no grid point has C <= {cap}")
    axis = 1 if plan.experiment == Experiment.FIXED_MOLECULES else 0
    if preset.grid:  # the preset names its points
        missing = sorted(set(preset.grid) - {g[axis] for g in grid})
        if missing:
            what = "C" if axis else "M"
            raise MlipdivError(f"preset {preset.name}: {what} = {', '.join(map(str, missing))} is not feasible on "
                               f"{plan.dataset}; feasible points: {grid}")
        grid = [g for g in grid if g[axis] in preset.grid]
    else:  # the same log-even choice experiment_grid makes, now among the points under the cap
        grid = spread(grid, preset.points, key=lambda p: p[axis])
    keep = [r for r in plan.runs if (r.molecules, r.conformers_per_molecule) in grid]
    largest = max(r.molecules * r.conformers_per_molecule for r in keep)
    digest = None
    runs = []
    for r in keep:
        epochs = preset.epochs_for(r.molecules * r.conformers_per_molecule, largest)
        if epochs != r.config["epochs"]:
            digest = digest or file_digest(plan.dataset)
            config = {**r.config, "epochs": epochs}
            r = SweepRun(r.molecules, r.conformers_per_molecule, r.seed, config, run_key(config, digest))
        runs.append(r)
    order = {s: i for i, s in enumerate(plan.seeds)}
    runs.sort(key=lambda r: order[r.seed])  # stable: grid order within each seed
    return replace(plan, grid=grid, runs=runs)


def plan_preset(preset: Any, dataset: str | Path | None = None) -> list[Any]:
    """The sweeps of a preset (one :class:`~mlipdiv.jobs.sweep.SweepPlan` per model x strategy), shaped by its grid
    options (:func:`shape_plan`): what the study runs and what the app's one-click buttons queue."""
    from mlipdiv.jobs.sweep import plan_sweep

    plans = []
    for kw in preset.sweeps():
        # with a cap on C, plan every feasible point first and choose the preset's number under the cap
        wide = {**kw, "points": 64} if preset.max_conformers_per_molecule or preset.grid else kw
        plans.append(shape_plan(plan_sweep(dataset=dataset, **wide), preset))
    return plans


def run_presets(
    names: Sequence[str], out: Path, *, dataset: str | None = None, backend: str | None = None,
    store: Any = None, log: Callable[[str], None] = _log,
) -> list[Path]:
    """Run every sweep of the named presets; returns the ``results.csv`` written.

    Each sweep's ``results.csv`` is rewritten after every finished run, so an interrupted study keeps its tables.
    """
    from dataclasses import replace

    from mlipdiv.jobs.store import RunStore
    from mlipdiv.jobs.sweep import run_sweep, write_results
    from mlipdiv.presets import get_preset

    store = store if store is not None else RunStore()
    written = []
    for name in names:
        preset = get_preset(name)
        log(f"preset {preset.describe()}")
        for plan in plan_preset(preset, dataset):
            strategy = plan.runs[0].config["strategy"]
            folder = out / name / f"{plan.model}-{strategy}"
            t0 = time.monotonic()
            log(f"  sweep {plan.experiment} {plan.model} {strategy}: grid {plan.grid}, seeds {plan.seeds}, epochs "
                f"{sorted({r.config['epochs'] for r in plan.runs})}")

            def report(r: Any, plan: Any = plan, folder: Path = folder) -> None:
                m = r.run_metrics() if r.status == "done" else None
                errs = ", ".join(f"{s} {mev(m.splits[s].forces_mae):.0f} meV/Å" for s in SPLITS
                                 if m is not None and s in m.splits and m.splits[s].forces_mae is not None)
                took = f"{r.finished - r.started:.0f} s" if r.finished and r.started else ""
                log(f"    {r.status} M={r.config.get('molecules')} C={r.config.get('conformers_per_molecule')} "
                    f"seed={r.config.get('seed')} {took} {errs} {r.error or ''}")
                found = [(i, store.find(i.key)) for i in plan.runs]
                found = [(i, run) for i, run in found if run is not None]
                write_results(folder, replace(plan, runs=[i for i, _ in found]), [run for _, run in found])

            runs = run_sweep(plan, store, backend=backend or preset.backend, on_finish=report)
            path = write_results(folder, plan, runs)
            n_done = sum(r.status == "done" for r in runs)
            log(f"  wrote {path}: {n_done}/{len(runs)} done in {time.monotonic() - t0:.0f} s")
            written.append(path)
    return written


def collect(out: Path, store: Any = None) -> Any:
    """All ``results.csv`` under ``out`` (one per sweep) in one table with ``strategy``, ``preset`` and baselines."""
    import pandas as pd

    from mlipdiv.jobs.store import RunStore

    store = store if store is not None else RunStore()
    frames = []
    for path in sorted(out.glob("*/*/results.csv")):
        df = pd.read_csv(path)
        if df.empty:
            continue
        df["preset"] = path.parent.parent.name
        df["strategy"] = path.parent.name.split("-", 1)[1]
        frames.append(df)
    if not frames:
        raise MlipdivError(f"{out}: no sweep results below it; run the study first")
    # presets may share runs (same config, same key): each run once per experiment
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["experiment", "run_id", "split"])
    df = df.reset_index(drop=True)
    cache: dict[str, RunMetrics | None] = {}
    configs: dict[str, dict[str, Any]] = {}
    extras = []
    for run_id, split in zip(df["run_id"], df["split"]):
        if run_id not in cache:
            run = store.get(run_id)
            cache[run_id], configs[run_id] = run.run_metrics(), dict(run.config)
        extras.append(extra_columns(cache[run_id], split, configs[run_id]))
    for column in EXTRA_COLUMNS:
        df[column] = [e[column] for e in extras]
    df.to_csv(out / "results.csv", index=False)
    curves = [row for run_id in dict.fromkeys(df["run_id"]) for row in curve_rows(run_id, cache[run_id])]
    pd.DataFrame(curves, columns=list(CURVE_COLUMNS)).to_csv(out / "curves.csv", index=False, float_format="%.6g")
    return df


_DEFAULTS = {"strategy": "random", "preset": "", "baseline_forces_mae": math.nan,
             "baseline_energy_mae_per_atom": math.nan, "seconds": math.nan, "n_eval": math.nan}


def read_study_table(path: Path) -> Any:
    """A study's combined ``results.csv`` (the shipped raw rows), with defaults for the columns older tables lack."""
    from mlipdiv.analysis.fit import _read_table

    df = _read_table(path, str(path))
    for column, value in _DEFAULTS.items():
        if column not in df.columns:
            df[column] = value
    df["strategy"] = df["strategy"].fillna("random")
    if df.empty:
        raise MlipdivError(f"{path}: the results table is empty")
    return df.reset_index(drop=True)


def load_study(out: Path, store: Any = None) -> tuple[Any, bool]:
    """The study's rows and whether they come from the shipped table alone (``True``) or were collected from the
    sweeps below ``out`` and the run store (``False``: then ``results.csv`` and ``curves.csv`` are rewritten)."""
    if any(out.glob("*/*/results.csv")):
        return collect(out, store), False
    if (out / "results.csv").exists():
        return read_study_table(out / "results.csv"), True
    raise MlipdivError(f"{out}: no results.csv in it and no sweep results below it; run the study first")


# ------------------------------------------------------------------------------------------------- tables


def summary_table(df: Any) -> Any:
    """Mean and std over seeds (meV/Å, meV/atom) per experiment, model, strategy, (M, C) and split."""
    d = df.copy()
    for column, value in _DEFAULTS.items():
        if column not in d.columns:
            d[column] = value
    d["forces"] = mev(d["forces_mae"])
    d["energy"] = mev(d["energy_mae_per_atom"])
    d["base_forces"] = mev(d["baseline_forces_mae"])
    d["base_energy"] = mev(d["baseline_energy_mae_per_atom"])
    keys = ["experiment", "model", "strategy", "n_molecules", "conformers_per_molecule", "split"]
    g = d.groupby(keys).agg(
        forces_mean=("forces", "mean"), forces_std=("forces", "std"), energy_mean=("energy", "mean"),
        energy_std=("energy", "std"), base_forces=("base_forces", "mean"), base_energy=("base_energy", "mean"),
        seeds=("seed", "nunique"), seconds=("seconds", "mean"), n_eval=("n_eval", "mean"),
    ).reset_index()
    g["budget"] = g["n_molecules"] * g["conformers_per_molecule"]
    order = ["experiment", "model", "strategy", "split", "budget", "n_molecules"]
    return g.sort_values(order, ascending=[True] * 5 + [False]).drop(columns="budget")


def markdown_table(s: Any, experiment: str) -> str:
    """One markdown table per experiment: rows (model, strategy, M, C), columns per split."""
    s = s[s["experiment"] == experiment]
    head = ("| model | selection | M | C | unseen conformers: forces (meV/Å) | unseen conformers: energy (meV/atom) "
            "| unseen molecules: forces (meV/Å) | unseen molecules: energy (meV/atom) | seeds | evaluated conformers "
            "(unseen conformers / molecules) |")
    lines = [head, "|" + "---|" * 10]
    for (model, strat, m, c), g in s.groupby(["model", "strategy", "n_molecules", "conformers_per_molecule"],
                                             sort=False):
        by = {r["split"]: r for _, r in g.iterrows()}
        cells = []
        for split in SPLITS:
            r = by.get(split)
            if r is None:
                cells += ["–", "–"]
                continue
            cells += [f"{r['forces_mean']:.1f} ± {r['forces_std']:.1f}",
                      f"{r['energy_mean']:.2f} ± {r['energy_std']:.2f}"]
        seeds = int(max(r["seeds"] for r in by.values()))
        n = " / ".join(f"{by[s]['n_eval']:.0f}" if s in by else "–" for s in SPLITS)
        lines.append(f"| {model} | {strat} | {m} | {c} | " + " | ".join(cells) + f" | {seeds} | {n} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- checks


def claims(df: Any) -> dict[str, Any]:
    """Measured answers to the questions the study's abstract and our issue ask."""
    s = summary_table(df)
    out: dict[str, Any] = {}
    fb = s[s["experiment"] == Experiment.FIXED_BUDGET]
    # 1. unseen molecules harder than unseen conformers at every fixed-budget point (force MAE, mean over seeds)
    harder = []
    for (model, strat, m, c), g in fb.groupby(["model", "strategy", "n_molecules", "conformers_per_molecule"]):
        by = {r["split"]: r for _, r in g.iterrows()}
        if all(k in by for k in SPLITS):
            harder.append({"model": model, "strategy": strat, "M": int(m), "C": int(c),
                           SplitName.TEST_MOLECULES: by[SplitName.TEST_MOLECULES]["forces_mean"],
                           SplitName.TEST_CONFORMERS: by[SplitName.TEST_CONFORMERS]["forces_mean"],
                           "molecules_harder": bool(by[SplitName.TEST_MOLECULES]["forces_mean"] >
                                                    by[SplitName.TEST_CONFORMERS]["forces_mean"])})
    out["unseen_molecules_harder"] = {"all": all(h["molecules_harder"] for h in harder) if harder else None,
                                      "points": harder}
    # 2. balance point at fixed budget: the measured M minimising each split and their mean
    balance = []
    fb = fb.assign(budget=fb["n_molecules"] * fb["conformers_per_molecule"])
    for (model, strat, budget), g in fb.groupby(["model", "strategy", "budget"]):
        piv = g.pivot_table(index="n_molecules", columns="split", values="forces_mean")
        if not all(k in piv for k in SPLITS) or len(piv) < 2:
            continue
        row = {"model": model, "strategy": strat, "budget": int(budget)}
        for split in SPLITS:
            row[f"best_M_{split}"] = int(piv[split].idxmin())
        row["best_M_mean"] = int(piv[list(SPLITS)].mean(axis=1).idxmin())
        balance.append(row)
    out["balance_fixed_budget"] = balance
    # 3. random vs diverse, paired by point (difference of means, in units of the pooled std over seeds)
    comp = []
    for (exp, model, m, c, split), g in s.groupby(["experiment", "model", "n_molecules", "conformers_per_molecule",
                                                   "split"]):
        by = {r["strategy"]: r for _, r in g.iterrows()}
        if "random" in by and "diverse" in by:
            r, d = by["random"], by["diverse"]
            pooled = math.sqrt((r["forces_std"] ** 2 + d["forces_std"] ** 2) / 2) or math.nan
            comp.append({"experiment": exp, "model": model, "M": int(m), "C": int(c), "split": split,
                         "random": r["forces_mean"], "diverse": d["forces_mean"],
                         "diverse_minus_random": d["forces_mean"] - r["forces_mean"],
                         "in_pooled_std": (d["forces_mean"] - r["forces_mean"]) / pooled})
    out["random_vs_diverse"] = comp
    # 4. fixed molecules: does more conformers per molecule help each split?
    fm = s[(s["experiment"] == Experiment.FIXED_MOLECULES) & s["split"].isin(SPLITS)]
    trend = []
    for (model, strat, split), g in fm.groupby(["model", "strategy", "split"]):
        g = g.sort_values("conformers_per_molecule")
        if len(g) >= 2:
            first, last = g.iloc[0], g.iloc[-1]
            trend.append({"model": model, "strategy": strat, "split": split,
                          "C_first": int(first["conformers_per_molecule"]),
                          "C_last": int(last["conformers_per_molecule"]), "first": first["forces_mean"],
                          "last": last["forces_mean"],
                          "relative_change": last["forces_mean"] / first["forces_mean"] - 1})
    out["fixed_molecules_trend"] = trend
    return out


# ------------------------------------------------------------------------------------------------ analysis


def _fits(df: Any, model: str, metric: str = "forces_mae", n_boot: int = 200) -> dict[str, Any] | None:
    from mlipdiv.analysis.fit import fit_results

    sub = df[(df["model"] == model) & (df["strategy"] == "random")]
    try:
        return fit_results(sub, metric=metric, model=model, strategy="random", n_boot=n_boot)
    except MlipdivError as exc:
        _log(f"  no fit for {model}: {exc}")
        return None


def _gap_rows(df: Any, dataset: Any, store: Any, cache: Path) -> Any:
    """Per-run information-gap rows. The reports are kept in ``cache`` (the analysis folder's), so a rerun after
    more runs finished, or after an interruption, computes only the new runs' gaps."""
    import pandas as pd

    from mlipdiv.analysis.infogap import GapCache, gap_for_run
    from mlipdiv.descriptors import dataset_digest

    rows = []
    memo = GapCache(cache, dataset_digest(dataset))  # runs of two models on one split share their gaps too
    groups = df.groupby("run_id")
    for i, (run_id, g) in enumerate(groups, 1):
        if i % 25 == 0:
            _log(f"  {i}/{groups.ngroups} runs")
        run = store.get(run_id)
        try:
            gaps = gap_for_run(run.run_dir, dataset, memo=memo)
        except MlipdivError as exc:
            _log(f"  information gap skipped for {run_id}: {exc}")
            continue
        for split, rep in gaps.items():
            err = g[g["split"] == split]
            if err.empty:
                continue
            e = err.iloc[0]
            rows.append({"run_id": run_id, "model": e["model"], "strategy": e["strategy"],
                         "experiment": e["experiment"], "n_molecules": e["n_molecules"],
                         "conformers_per_molecule": e["conformers_per_molecule"], "seed": e["seed"], "split": split,
                         "forces_mae": mev(e["forces_mae"]), "energy_mae_per_atom": mev(e["energy_mae_per_atom"]),
                         **rep.as_dict()})
    return pd.DataFrame(rows)


def _spearman(x: Any, y: Any) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _gap_summary(gap: Any) -> dict[str, Any]:
    return {
        "spearman_error_vs_dH_mean": _spearman(gap["dH_mean"], gap["forces_mae"]),
        "spearman_error_vs_frac_extrapolative": _spearman(gap["frac_extrapolative"], gap["forces_mae"]),
        "by_split": {s: {"dH_mean": float(g["dH_mean"].mean()),
                         "frac_extrapolative": float(g["frac_extrapolative"].mean()),
                         "spearman_within_split": _spearman(g["dH_mean"], g["forces_mae"])}
                     for s, g in gap.groupby("split")},
    }


def _domain_summary(dom: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        s: {k: float(g[k].mean()) for k in ("flagged_fraction", "error_flagged", "error_unflagged",
                                            "spearman_distance_error") if k in g}
        for s, g in dom.groupby("split")
    } if len(dom) else {}
    out["n_runs"] = int(dom["run_id"].nunique()) if len(dom) else 0
    return out


def _model_checks(fits: dict[str, Any], n_sim: int = 100) -> dict[str, Any]:
    """The error model's acceptance checks for one model (both splits and the recommended-M intervals), with the
    leave-one-out RMSE that seed noise alone would give (``loo_noise``, ``n_sim`` synthetic studies)."""
    from mlipdiv.analysis.fit import acceptance, loo_calibration
    from mlipdiv.analysis.recommend import interval_checks

    per = {split: {**acceptance(f), "formula": f.formula, "loo_noise": loo_calibration(f, n_sim)}
           for split, f in fits.items()}
    intervals = interval_checks(fits, 0.5)
    ok_int = bool(intervals) and all(r["consistent"] for r in intervals)
    return {"fits": per, "intervals": intervals, "intervals_ok": ok_int,
            "ok": all(v["ok"] for v in per.values()) and ok_int}


def analyse(out: Path, *, dataset_path: str | None = None, store: Any = None, figures: bool = True,
            infogap: bool = True, domain: bool = True, figures_dir: Path | None = None, page: Path | None = None,
            n_boot: int = 200, n_sim: int = 100) -> dict[str, Any]:
    """Tables, claims, paired comparisons, fits and their checks, recommendations, convergence, evaluated counts,
    energies, information gap, domain and figures for the runs under ``out``.

    With sweeps below ``out`` the rows are collected from them and the run store; with only ``out/results.csv``
    (the shipped raw rows) everything that needs no run folder is recomputed from it, and the information gap and
    domain are summarised from ``infogap.csv`` / ``domain.csv`` when they are there. ``page`` (docs/RESULTS.md)
    gets the generated sections between its markers (:func:`mlipdiv.analysis.report.write_page`). ``n_boot``
    bootstrap draws give the fits' intervals, ``n_sim`` synthetic studies the leave-one-out noise calibration.
    """
    import pandas as pd

    from mlipdiv.analysis.known_datasets import on_map
    from mlipdiv.analysis.paired import budget_claims, shift_claims
    from mlipdiv.analysis.recommend import Recommendation, allowed_budgets, budget_grid, optimum_path, recommend
    from mlipdiv.analysis.references import HELD_OUT_SETTINGS, element_baselines, reference_summary
    from mlipdiv.analysis.report import (
        abstract_verdicts,
        converged_rows,
        convergence_rows,
        energy_rows,
        eval_count_rows,
        gap_convergence_rows,
        render,
        write_page,
    )

    if store is None and any(out.glob("*/*/results.csv")):
        from mlipdiv.jobs.store import RunStore

        store = RunStore()
    df, raw = load_study(out, store)
    main = protocol_rows(df)
    summary = summary_table(main)
    summary.to_csv(out / "summary.csv", index=False)
    result: dict[str, Any] = {"n_runs": int(main["run_id"].nunique()), "source": "results.csv" if raw else "sweeps",
                              "claims": claims(main)}
    result["tables"] = {e: markdown_table(summary, e) for e in sorted(main["experiment"].unique())}
    result["run_seconds"] = {
        m: {"mean": float(g.drop_duplicates("run_id")["seconds"].mean()),
            "total": float(g.drop_duplicates("run_id")["seconds"].sum())}
        for m, g in df.groupby("model")
    }
    result["baselines"] = {
        split: {"forces_mae": float(mev(g["baseline_forces_mae"].mean())),
                "energy_mae_per_atom": float(mev(g["baseline_energy_mae_per_atom"].mean()))}
        for split, g in main.groupby("split")
    }
    fb = main[main["experiment"] == Experiment.FIXED_BUDGET]
    budgets = sorted({int(b) for b in fb["n_molecules"] * fb["conformers_per_molecule"]})
    fm = main[main["experiment"] == Experiment.FIXED_MOLECULES]
    result["experiments"] = {"budgets": budgets, "fixed_molecules": sorted({int(m) for m in fm["n_molecules"]})}
    _log("paired comparisons within budgets")
    comps = budget_claims(main)
    result["comparisons"] = [c.as_dict() for c in comps]
    result["shifts"] = shift_claims(comps)
    result["convergence"] = convergence_rows(df)
    result["gap_convergence"] = gap_convergence_rows(df)
    result["converged"] = converged_rows(df)
    result["eval_counts"] = eval_count_rows(df)
    result["energy"] = energy_rows(df)

    fits: dict[str, dict[str, Any]] = {}
    recs: dict[str, dict[tuple[int, float], Recommendation]] = {}
    paths: dict[str, list[Recommendation]] = {}
    result["acceptance"], result["allowed_budgets"] = {}, {}
    for model in sorted(main["model"].unique()):
        _log(f"error model for {model}")
        f = _fits(main, model, n_boot=n_boot)
        if f is None:
            continue
        fits[model] = f
        recs[model] = {}
        for budget in budgets:  # every budget the fixed-budget runs used
            for w in (0.0, 0.5, 1.0):
                try:
                    recs[model][(budget, w)] = recommend(f, budget, w)
                except MlipdivError as exc:
                    _log(f"  no recommendation for {model} at B={budget}, W={w}: {exc}")
        paths[model] = optimum_path(f, budget_grid(f), 0.5)
        result["acceptance"][model] = _model_checks(f, n_sim)
        result["allowed_budgets"][model] = list(allowed_budgets(f))
    result["fits"] = {m: {s: fit.as_dict() for s, fit in f.items()} for m, f in fits.items()}
    result["recommendations"] = {m: {f"B={b}, W={w}": r.as_dict() for (b, w), r in rs.items()}
                                 for m, rs in recs.items()}
    result["known_datasets"] = [{"name": d.name, "n_conformers": d.n_conformers,
                                 "conformers_per_molecule": d.conformers_per_molecule} for d in on_map()]

    gap = dom_report = None
    if raw:  # no run folders: summarise what the study shipped
        if (out / "references.csv").exists():
            result["references"] = reference_summary(pd.read_csv(out / "references.csv"))
        if infogap and (out / "infogap.csv").exists():
            gap = pd.read_csv(out / "infogap.csv")
            result["infogap"] = _gap_summary(gap)
        if domain and (out / "domain.csv").exists():
            result["domain"] = _domain_summary(pd.read_csv(out / "domain.csv"))
    else:
        from mlipdiv.io.load import load_dataset

        config = store.get(df["run_id"].iloc[0]).folder.read_config()
        dataset = load_dataset(dataset_path or config.get("dataset"))
        _log("element references on unseen molecules (M = 2 ... 1,024, no training)")
        held_out = {k: config[k] for k in HELD_OUT_SETTINGS if k in config}
        refs = element_baselines(dataset, seeds=sorted({int(s) for s in main["seed"]}),
                                 element_prior=config.get("element_prior", "auto"), **held_out)
        refs.to_csv(out / "references.csv", index=False, float_format="%.6g")
        result["references"] = reference_summary(refs)
        if infogap:
            _log("information gap per run")
            gap = _gap_rows(main[main["split"].isin(SPLITS)], dataset, store, out / "cache" / "infogap")
            gap.to_csv(out / "infogap.csv", index=False)
            result["infogap"] = _gap_summary(gap)
        if domain:
            dom, dom_report = _domain_rows(main, dataset, store)
            dom.to_csv(out / "domain.csv", index=False)
            result["domain"] = _domain_summary(dom)
    result["abstract"] = abstract_verdicts(result)

    (out / "analysis.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    stored = json.loads((out / "analysis.json").read_text())
    generated = render(stored, report(stored))
    (out / "report.md").write_text(generated)
    if page is not None:
        write_page(page, generated)
    if figures:
        _figures(figures_dir or out / "figures", main, fits, recs, paths, gap, dom_report)
    return result


def _domain_rows(df: Any, dataset: Any, store: Any) -> tuple[Any, Any]:
    """Per-run applicability-domain rows, and the example run for the figure."""
    import pandas as pd

    from mlipdiv.analysis.domain import domain_for_run

    _log("applicability domain per run")
    rows = []
    dom_report = None
    for run_id, g in df.groupby("run_id"):
        try:
            rep = domain_for_run(store.get(run_id).run_dir, dataset)
        except MlipdivError as exc:
            _log(f"  domain skipped for {run_id}: {exc}")
            continue
        e = g.iloc[0]
        for split, row in rep.summary().items():
            rows.append({"run_id": run_id, "model": e["model"], "strategy": e["strategy"],
                         "experiment": e["experiment"], "n_molecules": e["n_molecules"],
                         "conformers_per_molecule": e["conformers_per_molecule"], "seed": e["seed"],
                         "split": split, "threshold": rep.threshold, "error_threshold": rep.error_threshold,
                         **row})
        # the example run for the figure: the first fixed-budget run of seed 0 with random selection
        if dom_report is None and e["experiment"] == Experiment.FIXED_BUDGET and e["seed"] == 0 and \
                e["strategy"] == "random":
            dom_report = (run_id, rep)
    return pd.DataFrame(rows), dom_report


def report(result: dict[str, Any]) -> str:
    """The measured tables and numbers of ``analysis.json`` as markdown (docs/RESULTS.md is written around it)."""
    lines = [f"Runs analysed: {result['n_runs']}.", ""]
    for exp, table in result["tables"].items():
        lines += [f"### {exp}", "", table, ""]
    lines += ["### Baselines (mean over runs)", "", "| split | zero forces: force MAE (meV/Å) | element-linear energy: "
              "energy MAE (meV/atom) |", "|---|---|---|"]
    for split, b in result["baselines"].items():
        lines.append(f"| {split} | {b['forces_mae']:.1f} | {b['energy_mae_per_atom']:.2f} |")
    c = result["claims"]
    lines += ["", "### Unseen molecules vs unseen conformers at each fixed-budget point (force MAE, meV/Å)", "",
              "| model | selection | M | C | unseen molecules | unseen conformers | molecules harder |",
              "|---|---|---|---|---|---|---|"]
    for h in c["unseen_molecules_harder"]["points"]:
        lines.append(f"| {h['model']} | {h['strategy']} | {h['M']} | {h['C']} | {h['test_molecules']:.1f} | "
                     f"{h['test_conformers']:.1f} | {'yes' if h['molecules_harder'] else 'no'} |")
    lines += ["", "### Measured balance point at fixed budget (M with the lowest mean force MAE)", "",
              "| model | selection | budget B | best M, unseen molecules | best M, unseen conformers "
              "| best M, mean of both |",
              "|---|---|---|---|---|---|"]
    for b in c["balance_fixed_budget"]:
        lines.append(f"| {b['model']} | {b['strategy']} | {b['budget']} | {b['best_M_test_molecules']} | "
                     f"{b['best_M_test_conformers']} | {b['best_M_mean']} |")
    if c["random_vs_diverse"]:
        lines += ["", "### Diverse minus random selection (force MAE, meV/Å; in units of the pooled seed std)", "",
                  "| experiment | model | M | C | split | random | diverse | diverse − random | ÷ pooled std |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in c["random_vs_diverse"]:
            if r["split"] in SPLITS:
                lines.append(f"| {r['experiment']} | {r['model']} | {r['M']} | {r['C']} | {r['split']} | "
                             f"{r['random']:.1f} | {r['diverse']:.1f} | {r['diverse_minus_random']:+.1f} | "
                             f"{r['in_pooled_std']:+.2f} |")
    for model, fits in result.get("fits", {}).items():
        lines += ["", f"### Error-model fits, {model} (random selection, force MAE)", "",
                  "Each candidate form with its Akaike weight (AICc from the weighted χ² the fit minimises); a form "
                  "whose parameter sat on a bound was replaced by its nested form.", "",
                  "| split | form | weight | parameters (± standard error) | R² | RMSE | LOO RMSE | points |",
                  "|---|---|---|---|---|---|---|---|"]
        for split, f in fits.items():
            for c in f.get("components", []):
                params = ", ".join(f"{k} = {v:.3g} ± {c['stderr'][k]:.2g}" for k, v in c["params"].items())
                lines.append(f"| {split} | {c['form']} | {c['weight']:.2f} | {params} | {f['r2']:.3f} | "
                             f"{f['rmse']:.2f} | {f['loo_rmse']:.2f} | {f['n_points']} |")
    for model, recs in result.get("recommendations", {}).items():
        lines += ["", f"### Recommendations, {model}", "",
                  "| budget | W | M | C | unseen molecules (90 % interval) | unseen conformers (90 % interval) | "
                  "optimal M over the bootstrap |", "|---|---|---|---|---|---|---|"]
        for key, r in recs.items():
            w = key.split("W=")[1]
            pm, pc = r["predicted"][SplitName.TEST_MOLECULES], r["predicted"][SplitName.TEST_CONFORMERS]
            rng = r["n_molecules_range"]
            lines.append(f"| {r['budget_conformers']} | {w} | {r['n_molecules']} | {r['conformers_per_molecule']} | "
                         f"{pm['mean']:.1f} [{pm['low']:.1f}, {pm['high']:.1f}] | {pc['mean']:.1f} [{pc['low']:.1f}, "
                         f"{pc['high']:.1f}] | {rng[0] if rng else '–'}..{rng[1] if rng else '–'} |")
    if "infogap" in result:
        g = result["infogap"]
        lines += ["", "### Information gap (QUESTS dH of test atoms relative to the training set)", "",
                  f"Spearman correlation across runs and splits, force MAE vs mean dH: "
                  f"{g['spearman_error_vs_dH_mean']:.2f}; vs share of atoms with dH > 0: "
                  f"{g['spearman_error_vs_frac_extrapolative']:.2f}.", "",
                  "| split | mean dH | share of atoms with dH > 0 | Spearman (error, dH) within split |",
                  "|---|---|---|---|"]
        for split, v in g["by_split"].items():
            lines.append(f"| {split} | {v['dH_mean']:.2f} | {v['frac_extrapolative']:.3f} | "
                         f"{v['spearman_within_split']:.2f} |")
    if "domain" in result:
        d = result["domain"]
        lines += ["", f"### Applicability domain (mean over {d.get('n_runs', 0)} runs)", "",
                  "| split | flagged (beyond 95th pct of val) | force MAE flagged | force MAE not flagged | "
                  "Spearman (distance, error) |", "|---|---|---|---|---|"]
        for split in (SplitName.VAL, SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES):
            v = d.get(split)
            if v:
                lines.append(f"| {split} | {v.get('flagged_fraction', float('nan')):.3f} | "
                             f"{v.get('error_flagged', float('nan')):.1f} | "
                             f"{v.get('error_unflagged', float('nan')):.1f} | "
                             f"{v.get('spearman_distance_error', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


def _figures(figdir: Path, df: Any, fits: dict, recs: dict, paths: dict, gap: Any, dom: Any) -> None:
    from mlipdiv.analysis import figures as F

    figdir.mkdir(parents=True, exist_ok=True)
    figs = {}
    for exp in sorted(df["experiment"].unique()):
        tag = "fixed_budget" if exp == Experiment.FIXED_BUDGET else "fixed_molecules"
        figs[f"{tag}_forces"] = F.study_figure(df, exp, "forces_mae")
        figs[f"{tag}_energy"] = F.study_figure(df, exp, "energy_mae_per_atom")
    for model, f in fits.items():
        balanced = sorted((b, r) for (b, w), r in recs.get(model, {}).items() if w == 0.5)
        rec = balanced[-1][1] if balanced else None  # at the largest budget that ran
        figs[f"budget_map_{model}"] = F.budget_map_figure(fits=f, path=paths.get(model, ()), recommendation=rec)
        if rec is not None:
            figs[f"tradeoff_{model}"] = F.tradeoff_figure(rec, f)
        for split, fit in f.items():
            figs[f"surface_{model}_{split}"] = F.error_surface_figure(fit)
    if gap is not None and len(gap):
        figs["infogap"] = F.infogap_figure(gap)
    if dom is not None:
        _, rep = dom
        figs["domain"] = F.domain_figure(rep.distances, rep.errors, rep.threshold, error_threshold=rep.error_threshold)
    export = os.environ.get("MLIPDIV_EXPORT", "png,svg").split(",")
    for name, fig in figs.items():
        fig.write_html(figdir / f"{name}.html", include_plotlyjs="cdn")
        for ext in filter(None, export):
            try:
                fig.write_image(figdir / f"{name}.{ext}", width=1100, height=fig.layout.height or 560, scale=1)
            except Exception as exc:  # noqa: BLE001 - kaleido/Chrome missing: HTML is still written
                _log(f"  {name}.{ext} not exported ({type(exc).__name__}: {exc}); HTML written")
                export = []
                break


STUDY = "study"
"""The ``--preset`` that stands for every ``study-*`` preset (the protocol of docs/RESULTS.md), in their order."""


def expand_presets(names: Sequence[str]) -> list[str]:
    """Preset names with :data:`STUDY` replaced by the study's presets (each name once, first place kept)."""
    from mlipdiv.presets import STUDY_PRESETS

    out: list[str] = []
    for name in names:
        for n in [p.name for p in STUDY_PRESETS] if name == STUDY else [name]:
            if n not in out:
                out.append(n)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from mlipdiv.presets import PRESETS

    parser = argparse.ArgumentParser(prog="python -m mlipdiv.analysis.study", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", default=[], choices=[STUDY, *sorted(PRESETS)],
                        help=f"preset to run (repeatable); see mlipdiv/presets.py; {STUDY!r}: every study-* preset "
                             "(docs/RESULTS.md)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the sweeps' tables and the analysis")
    parser.add_argument("--dataset", help="dataset file (default: the shipped one)")
    parser.add_argument("--backend", choices=["local", "ray"], help="override the presets' backend")
    parser.add_argument("--analyse-only", action="store_true", help="do not train; analyse what --out holds")
    parser.add_argument("--train-only", action="store_true",
                        help="train what is missing and write the sweeps' tables, no analysis (a study in sittings)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--figures", type=Path, help="folder for the figures (default: OUT/figures)")
    parser.add_argument("--page", type=Path,
                        help="markdown page (docs/RESULTS.md) whose generated sections, between its markers, are "
                             "replaced by the new report")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap draws of the error-model fits")
    parser.add_argument("--n-sim", type=int, default=100,
                        help="synthetic studies that calibrate the leave-one-out check against seed noise")
    parser.add_argument("--list", action="store_true", help="print the presets and exit")
    args = parser.parse_args(argv)
    if args.train_only and args.analyse_only:
        parser.error("--train-only and --analyse-only exclude each other")
    if args.n_boot < 0 or args.n_sim < 1:
        parser.error("--n-boot must be 0 or more and --n-sim 1 or more")
    if args.list:
        for p in PRESETS.values():
            print(p.describe())
        return 0
    try:
        if not args.analyse_only:
            if not args.preset:
                parser.error("give at least one --preset (or --analyse-only)")
            run_presets(expand_presets(args.preset), args.out, dataset=args.dataset, backend=args.backend)
            if args.train_only:
                return 0
        result = analyse(args.out, dataset_path=args.dataset, figures=not args.no_figures,
                         figures_dir=args.figures, page=args.page, n_boot=args.n_boot, n_sim=args.n_sim)
    except MlipdivError as exc:
        print(f"error: {exc}")
        return 2
    _print_summary(result)
    return 0


def _print_summary(result: dict[str, Any]) -> None:
    """The statements of the report on the terminal: what the runs resolve, and whether the fits pass."""
    print(f"{result['n_runs']} protocol runs analysed (from {result['source']})")
    for c in result["comparisons"]:
        if c["quantity"] == "mean":
            print(f"- {c['statement']}")
    for s in result["shifts"]:
        if s["quantity"] == "mean":
            print(f"- {s['statement']}")
    for model, a in result["acceptance"].items():
        fits = ", ".join(f"{split} {'passes' if v['ok'] else 'fails'}" for split, v in a["fits"].items())
        ints = ", ".join(f"B={r['budget']}: measured best M {r['measured_best_M']}, fitted {r.get('grid_interval')} "
                         f"({'contains' if r['contains'] else 'consistent' if r['consistent'] else 'INCONSISTENT'})"
                         for r in a["intervals"])
        print(f"- error model {model}: {fits}; recommended-M intervals: {ints or '–'}")
    if result["convergence"]:
        n_ok = sum(r["below_one_std"] for r in result["convergence"])
        print(f"- convergence: {n_ok} of {len(result['convergence'])} checks change by less than one seed std")
    counts = result["eval_counts"]
    if counts:
        print(f"- evaluated counts constant in {sum(r['constant'] for r in counts)} of {len(counts)} "
              "(experiment, sweep, seed, split) groups")
    v = result["abstract"]
    print(f"- against the abstract: balance {v['balance']['verdict']}; datasets {v['datasets']['verdict']} "
          f"({v['datasets']['trend']}); beyond the training distribution {v['beyond_distribution']['verdict']}")


if __name__ == "__main__":
    raise SystemExit(main())
