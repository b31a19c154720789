"""What the study's report says beyond means and fits: convergence, evaluated counts, energies, learning curves and
the verdict against the study's abstract, each computed from the results rows (and rendered by :func:`render`).

Why a module of its own: docs/RESULTS.md is regenerated from shipped raw rows only, so every sentence of it must be
derived from numbers in ``analysis.json``; the functions here compute those numbers (``*_rows``) and turn them into
markdown (``render`` and the ``_md_*`` helpers) without any hard-coded conclusion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlipdiv.analysis.fit import CONVERGENCE_SUFFIX, protocol_rows
from mlipdiv.errors import MlipdivError
from mlipdiv.io.metrics import CONVERGE_TOL
from mlipdiv.names import TEST_SPLITS, Experiment, SplitName
from mlipdiv.units import EV_TO_MEV

__all__ = [
    "CURVE_COLUMNS",
    "PAGE_BEGIN",
    "PAGE_END",
    "abstract_verdicts",
    "convergence_rows",
    "converged_rows",
    "curve_rows",
    "energy_rows",
    "gap_convergence_rows",
    "eval_count_rows",
    "render",
    "write_page",
]

SPLITS = TEST_SPLITS
CURVE_COLUMNS = ("run_id", "step", "epoch", "train_loss", "val_energy_mae", "val_forces_mae")
PAGE_BEGIN = "<!-- mlipdiv:generated:begin (python -m mlipdiv.analysis.study --analyse-only; do not edit below) -->"
PAGE_END = "<!-- mlipdiv:generated:end -->"
_KEY = ["experiment", "model", "strategy", "n_molecules", "conformers_per_molecule", "split"]


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


# ------------------------------------------------------------------------------------------- convergence


def _convergence_mask(df: Any) -> Any:
    if "preset" in df.columns:
        return df["preset"].astype(str).str.endswith(CONVERGENCE_SUFFIX)
    return df.index != df.index  # without presets nothing is a convergence check here


def _matching(df: Any, columns: Sequence[str], values: Sequence[Any]) -> Any:
    """The rows of ``df`` whose ``columns`` hold ``values`` (a group key of another table)."""
    for k, v in zip(columns, values):
        df = df[df[k] == v]
    return df


def convergence_rows(df: Any, metric: str = "forces_mae") -> list[dict[str, Any]]:
    """For every point with convergence-check runs: the error at the budget's steps S and at the check's steps
    (2S), paired by seed, against one seed std of the protocol runs at that point."""
    if "steps" not in df.columns or "preset" not in df.columns:
        return []
    conv = df[_convergence_mask(df) & df["split"].isin(SPLITS)]
    prot = protocol_rows(df)
    out = []
    for key, g in conv.groupby(_KEY):
        p = _matching(prot, _KEY, key)
        if p.empty:
            continue
        a = p.groupby("seed")[metric].mean() * EV_TO_MEV
        b = g.groupby("seed")[metric].mean() * EV_TO_MEV
        both = sorted(set(a.index) & set(b.index))
        if not both:
            continue
        diff = (b[both] - a[both]).to_numpy(float)
        std = float(a.std(ddof=1)) if len(a) > 1 else math.nan
        row = dict(zip(_KEY, key))
        row.update({
            "budget": int(row["n_molecules"] * row["conformers_per_molecule"]),
            "steps": _num(p["steps"].median()), "check_steps": _num(g["steps"].median()), "seeds": len(both),
            "error_at_steps": float(a[both].mean()), "error_at_check": float(b[both].mean()),
            "change": float(diff.mean()), "seed_std": std,
            "below_one_std": bool(math.isfinite(std) and abs(diff.mean()) < std),
        })
        row["n_molecules"] = int(row["n_molecules"])
        row["conformers_per_molecule"] = int(row["conformers_per_molecule"])
        out.append(row)
    return sorted(out, key=lambda r: (r["model"], r["experiment"], r["budget"], r["n_molecules"], r["split"]))


def gap_convergence_rows(df: Any, metric: str = "forces_mae") -> list[dict[str, Any]]:
    """For every budget whose convergence check trained two points: their paired difference (first point of the
    grid minus the last, per seed) at the budget's steps S and at 2S, against the seed std of that difference among
    the protocol runs. Why beside :func:`convergence_rows`: the advice rests on differences between points of one
    budget, and a training length that lowers every point's error alike leaves them, and the advice, unchanged.
    ``split`` ``"mean"`` is the mean of both test splits (the W = 0.5 objective)."""
    if "steps" not in df.columns or "preset" not in df.columns:
        return []
    conv = df[_convergence_mask(df) & df["split"].isin(SPLITS)]
    prot = protocol_rows(df)
    prot = prot[prot["split"].isin(SPLITS)]
    out = []
    group = ["experiment", "model", "strategy"]
    for key, g in conv.groupby(group):
        p = _matching(prot, group, key)
        g = g.assign(budget=g["n_molecules"] * g["conformers_per_molecule"])
        p = p.assign(budget=p["n_molecules"] * p["conformers_per_molecule"])
        for budget, gb in g.groupby("budget"):
            pb = p[p["budget"] == budget]
            ends = sorted({int(m) for m in gb["n_molecules"]})
            if len(ends) != 2:
                continue
            for split in (*SPLITS, "mean"):
                gaps = [_gap(t if split == "mean" else t[t["split"] == split], ends, metric) for t in (pb, gb)]
                at_s, at_2s = gaps
                both = sorted(set(at_s.index) & set(at_2s.index))
                if not both:
                    continue
                change = float((at_2s[both] - at_s[both]).mean())
                std = float(at_s.std(ddof=1)) if len(at_s) > 1 else math.nan
                out.append({**dict(zip(group, key)), "budget": int(budget), "split": split,
                            "first_M": ends[0], "last_M": ends[1], "steps": _num(pb["steps"].median()),
                            "check_steps": _num(gb["steps"].median()), "seeds": len(both),
                            "gap_at_steps": float(at_s[both].mean()), "gap_at_check": float(at_2s[both].mean()),
                            "change": change, "seed_std": std,
                            "below_one_std": bool(math.isfinite(std) and abs(change) < std)})
    return sorted(out, key=lambda r: (r["model"], r["experiment"], r["budget"], r["split"]))


def _gap(rows: Any, ends: list[int], metric: str) -> Any:
    """Per seed: the error at M = ends[0] minus at M = ends[1] (meV), over the rows' splits averaged."""
    import pandas as pd

    per = rows[rows["n_molecules"].isin(ends)].groupby(["seed", "n_molecules"])[metric].mean().unstack()
    if per.shape[1] != 2:
        return pd.Series(dtype=float)
    return (per[ends[0]] - per[ends[1]]).dropna() * EV_TO_MEV


def _sweep_size(rows: Any) -> Any:
    """The sweep of each row: its budget M x C (fixed budget) or its molecular set M (fixed molecules)."""
    fixed = rows["experiment"] == Experiment.FIXED_BUDGET
    return rows["n_molecules"] * rows["conformers_per_molecule"].where(fixed, 1)


def _sweep_name(experiment: str, size: float) -> str:
    return f"{'B' if experiment == Experiment.FIXED_BUDGET else 'M'} = {int(size)}"


def converged_rows(df: Any) -> list[dict[str, Any]]:
    """Share of protocol runs whose training met the convergence rule, where their best epoch fell, how much the last
    quarter of steps still gained on the validation energy error (median; the rule reads forces), and the CPU time
    they took (hours of single-threaded training), per model, experiment and sweep (a budget B, or a molecular set
    M; a run shared by both counts once, in its budget); empty for tables without the ``converged`` column."""
    if "converged" not in df.columns:
        return []
    runs = protocol_rows(df)
    runs = runs.sort_values("experiment", key=lambda e: e != Experiment.FIXED_BUDGET, kind="stable")
    runs = runs.drop_duplicates(subset=["run_id"]).assign(_sweep=_sweep_size)
    out = []
    for (model, exp, size), g in runs.groupby(["model", "experiment", "_sweep"]):
        conv = g["converged"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
        frac_best = (g["best_step"] / g["steps_run"]) if {"best_step", "steps_run"} <= set(g.columns) else None
        out.append({"model": model, "experiment": exp, "sweep": _sweep_name(exp, size), "runs": len(g),
                    "converged": float(conv.mean()),
                    "steps": sorted({int(s) for s in g["steps"].dropna()}) if "steps" in g else [],
                    "best_step_share_median": _num(frac_best.median()) if frac_best is not None else math.nan,
                    "energy_late_gain_median": (_num(g["late_gain_energy"].median())
                                                if "late_gain_energy" in g.columns else math.nan),
                    "cpu_hours": _num(g["seconds"].sum() / 3600) if "seconds" in g.columns else math.nan})
    return out


# ----------------------------------------------------------------------------------------- evaluated counts


def eval_count_rows(df: Any) -> list[dict[str, Any]]:
    """Conformers evaluated per (experiment, sweep, seed, split) across every protocol run of it: constant or not.
    Why per sweep: the points of one budget (or one molecular set) are compared with each other, paired by seed, so
    they must share their test conformers; different budgets anchor their unseen conformers on different molecules
    (the smallest M of each grid), and are never paired."""
    if "n_eval" not in df.columns:
        return []
    d = protocol_rows(df)
    d = d[d["split"].isin(SPLITS)]
    d = d.assign(_sweep=_sweep_size(d))
    out = []
    for (exp, size, seed, split), g in d.groupby(["experiment", "_sweep", "seed", "split"]):
        sweep = _sweep_name(exp, size)
        n = sorted({int(v) for v in g["n_eval"].dropna()})
        excl = sorted({int(v) for v in g["n_excluded"].dropna()}) if "n_excluded" in g.columns else []
        out.append({"experiment": exp, "sweep": sweep, "seed": int(seed), "split": split,
                    "runs": int(g["run_id"].nunique()), "n_eval_min": n[0] if n else None,
                    "n_eval_max": n[-1] if n else None, "constant": len(n) == 1, "n_excluded": excl})
    return out


# ----------------------------------------------------------------------------------------------- energies


def energy_rows(df: Any) -> list[dict[str, Any]]:
    """Relative-energy MAE (conformer energies about each molecule's mean; meV per molecule) against its baseline
    (predict each molecule's mean), mean over seeds per point and split; empty for tables without the columns."""
    need = {"energy_rel_mae", "baseline_energy_rel_mae"}
    if not need <= set(df.columns) or df["energy_rel_mae"].isna().all():
        return []
    d = protocol_rows(df)
    d = d[d["split"].isin(SPLITS)]
    out = []
    for key, g in d.groupby(_KEY):
        v = g["energy_rel_mae"].astype(float) * EV_TO_MEV
        base = g["baseline_energy_rel_mae"].astype(float) * EV_TO_MEV
        row = dict(zip(_KEY, key))
        row.update({"n_molecules": int(row["n_molecules"]),
                    "conformers_per_molecule": int(row["conformers_per_molecule"]),
                    "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                    "baseline": float(base.mean()), "ratio": float(v.mean() / base.mean()) if base.mean() else math.nan,
                    "seeds": int(g["seed"].nunique())})
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------ learning curves


def curve_rows(run_id: str, metrics: Any) -> list[dict[str, Any]]:
    """One row per curve point of a run's metrics (``step`` empty for metrics.json v1)."""
    rows = []
    for p in getattr(metrics, "curve", []) or []:
        rows.append({"run_id": run_id, "step": getattr(p, "step", None), "epoch": p.epoch,
                     "train_loss": p.train_loss, "val_energy_mae": p.val_energy_mae,
                     "val_forces_mae": p.val_forces_mae})
    return rows


# ------------------------------------------------------------------------------------ against the abstract


def abstract_verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """Verdicts on the abstract's claims, each derived from numbers in ``result`` (the analysis), with the numbers
    it rests on. Nothing here is decided in advance: a claim the numbers do not resolve says so."""
    comps = [c for c in result.get("comparisons", []) if c["strategy"] == "random"]
    mean = [c for c in comps if c["quantity"] == "mean"]
    out: dict[str, Any] = {}
    # claim 2: a balance is needed (an interior optimum of the mean of both errors, resolved)
    interior = [c for c in mean if c["resolved"] and c["interior"]]
    edge = [c for c in mean if c["resolved"] and not c["interior"]]
    unresolved = [c for c in mean if not c["resolved"]]
    opposite = []
    for c in mean:
        split = {q["quantity"]: q for q in comps if q["model"] == c["model"] and q["budget"] == c["budget"]}
        mol, conf = split.get(SplitName.TEST_MOLECULES), split.get(SplitName.TEST_CONFORMERS)
        if mol and conf:
            opposite.append({"model": c["model"], "budget": c["budget"], "best_M_molecules": mol["best"]["M"],
                             "best_M_conformers": conf["best"]["M"],
                             "resolved": bool(mol["resolved"] and conf["resolved"]),
                             "opposite": mol["best"]["M"] > conf["best"]["M"]})
    if not mean:
        verdict = "not tested (no fixed-budget comparisons)"
    elif interior and not edge:
        verdict = "agrees" if not unresolved else "agrees where resolved"
    elif edge and not interior:
        verdict = "contradicts where resolved (the best point is at the edge of the runs)"
    elif interior and edge:
        verdict = "mixed"
    else:
        verdict = "not resolved"
    out["balance"] = {"verdict": verdict, "interior": [(c["model"], c["budget"]) for c in interior],
                      "edge": [(c["model"], c["budget"]) for c in edge],
                      "not_resolved": [(c["model"], c["budget"]) for c in unresolved], "opposite": opposite}
    # the trend across budgets and whether it reaches the published datasets
    shifts = [s for s in result.get("shifts", []) if s["quantity"] == "mean" and s["strategy"] == "random"]
    allowed = {m: v for m, v in result.get("allowed_budgets", {}).items() if v}
    known = result.get("known_datasets", [])
    reach = {}
    for model, (lo, hi) in allowed.items():
        reach[model] = {"largest_budget": hi, "datasets_in_range": [d["name"] for d in known if
                                                                    lo <= d["n_conformers"] <= hi]}
    smallest = min((d["n_conformers"] for d in known), default=None)
    resolved_shifts = [s for s in shifts if s["shift"] != "not resolved"]
    if not shifts:
        trend = "not tested (fewer than two budgets)"
    elif not resolved_shifts:
        trend = "not resolved: no shift of the balance between budgets is told apart"
    else:
        kinds = sorted({s["shift"] for s in resolved_shifts})
        trend = f"resolved shift(s) towards {' and '.join(kinds)}"
    if any(r["datasets_in_range"] for r in reach.values()):
        datasets = "testable for " + ", ".join(sorted({n for r in reach.values() for n in r["datasets_in_range"]}))
    else:
        datasets = "not tested"
    out["datasets"] = {"verdict": datasets, "trend": trend, "shifts": shifts, "reach": reach,
                       "smallest_dataset": smallest}
    # claim 3: poor generalization beyond the training distribution
    harder = result.get("claims", {}).get("unseen_molecules_harder", {})
    pts = harder.get("points", [])
    n_h = sum(p["molecules_harder"] for p in pts if p.get("strategy", "random") == "random")
    n_all = sum(1 for p in pts if p.get("strategy", "random") == "random")
    gap = result.get("infogap", {}).get("spearman_error_vs_dH_mean")
    out["beyond_distribution"] = {"molecules_harder": n_h, "points": n_all, "infogap_spearman": gap,
                                  "verdict": "agrees" if n_all and n_h == n_all else
                                  ("mixed" if n_h else ("contradicts" if n_all else "not tested"))}
    # how far the verdicts rest on training that was long enough: the doubling checks, per budget
    out["training_length"] = {
        "checked": sorted({(r["model"], r["budget"]) for r in result.get("convergence", [])}),
        "errors_move": sorted({(r["model"], r["budget"]) for r in result.get("convergence", [])
                               if not r["below_one_std"]}),
        "answer_moves": sorted({(r["model"], r["budget"], r["split"]) for r in result.get("gap_convergence", [])
                                if not r["below_one_std"]}),
    }
    # the error model's own checks
    acc = result.get("acceptance", {})
    out["model_checks"] = {m: {"ok": a.get("ok"), "splits": {s: v.get("ok") for s, v in a.get("fits", {}).items()},
                               "intervals": a.get("intervals_ok")} for m, a in acc.items()}
    return out


# --------------------------------------------------------------------------------------------------- render


def _f(x: Any, fmt: str = ".1f") -> str:
    v = _num(x)
    return "–" if not math.isfinite(v) else format(v, fmt)


def _pct(x: Any) -> str:
    v = _num(x)
    return "–" if not math.isfinite(v) else f"{100 * v:.0f} %"


def _md_gap_convergence(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    n_ok = sum(r["below_one_std"] for r in rows)
    lines = [f"Does the answer move? The difference between a budget's two checked points (first minus last M, paired "
             f"by seed) changes by less than its seed std at {n_ok} of {len(rows)} (budget, split) pairs when the "
             "steps double.", "",
             "| model | experiment | B | points (M) | split | S | 2S | seeds | difference at S | difference at 2S | "
             "change | seed std | below one std |", "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['model']} | {r['experiment']} | {r['budget']} | {r['first_M']} − {r['last_M']} | "
                     f"{'mean of both' if r['split'] == 'mean' else r['split']} | "
                     + _doubling_cells(r, format(r["gap_at_steps"], "+.1f"), format(r["gap_at_check"], "+.1f")))
    return lines + [""]


def _doubling_cells(r: dict[str, Any], at_steps: str, at_check: str) -> str:
    """The cells S, 2S, seeds, value at S and at 2S, change, seed std, verdict of a convergence-table row."""
    return (f"{_f(r['steps'], '.0f')} | {_f(r['check_steps'], '.0f')} | {r['seeds']} | {at_steps} | {at_check} | "
            f"{r['change']:+.1f} | {_f(r['seed_std'])} | {'yes' if r['below_one_std'] else '**no**'} |")


def _md_convergence(rows: list[dict[str, Any]], converged: list[dict[str, Any]],
                    gaps: Sequence[dict[str, Any]] = (), all_hours: float = math.nan) -> list[str]:
    lines = ["### Convergence: the error at the budget's steps S against 2S (force MAE, meV/Å, paired by seed)", ""]
    if not rows:
        lines += ["No convergence-check runs (presets ending in `-convergence`, twice the budget's steps) in these "
                  "results: convergence is not shown.", ""]
    else:
        n_ok = sum(r["below_one_std"] for r in rows)
        lines += [f"{n_ok} of {len(rows)} (point, split) pairs change by less than one seed std when the steps "
                  "double.", "",
                  "| model | experiment | B | M | C | split | S | 2S | seeds | error at S | error at 2S | change "
                  "| seed std | below one std |", "|" + "---|" * 14]
        for r in rows:
            lines.append(f"| {r['model']} | {r['experiment']} | {r['budget']} | {r['n_molecules']} | "
                         f"{r['conformers_per_molecule']} | {r['split']} | "
                         f"{_doubling_cells(r, _f(r['error_at_steps']), _f(r['error_at_check']))}")
        lines.append("")
        lines += _md_gap_convergence(list(gaps))
    if converged:
        n_runs = sum(r["runs"] for r in converged)
        n_conv = sum(r["runs"] * r["converged"] for r in converged)
        hours = [r.get("cpu_hours", math.nan) for r in converged]
        known = [h for h in hours if math.isfinite(h)]
        lines += [f"{n_conv:.0f} of {n_runs} protocol runs ({100 * n_conv / n_runs:.0f} %) met the convergence rule"
                  + (f"; they took {sum(known):.1f} CPU-hours of training (one thread per run)" if known else "")
                  + (f", {all_hours:.1f} with the convergence checks." if math.isfinite(all_hours) else "."), "",
                  "A run is converged when the last quarter of its steps lowered its best validation force MAE "
                  f"by less than {100 * CONVERGE_TOL:.0f} %. Energies converge later: the "
                  "last column is the median gain of the last quarter on the validation energy MAE.", "",
                  "| model | experiment | sweep | runs | steps | converged | median best step / steps run | CPU-hours "
                  "| energy gain, last quarter |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r, h in zip(converged, hours):
            lines.append(f"| {r['model']} | {r['experiment']} | {r['sweep']} | {r['runs']} | "
                         f"{', '.join(str(s) for s in r['steps']) or '–'} | {100 * r['converged']:.0f} % | "
                         f"{_f(r['best_step_share_median'], '.2f')} | {_f(h, '.2f')} | "
                         f"{_pct(r.get('energy_late_gain_median', math.nan))} |")
        lines.append("")
    return lines


def _md_counts(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["### Conformers evaluated per (experiment, sweep, seed, split)", ""]
    if not rows:
        return lines + ["The results have no evaluated counts.", ""]
    bad = [r for r in rows if not r["constant"]]
    lines += [("Every point of a sweep (one budget, or one molecular set) is scored on the same number of conformers "
               "for each seed and split." if not bad else
               f"**Not constant** in {len(bad)} of {len(rows)} (experiment, sweep, seed, split) groups: points of "
               "one seed were scored on different conformer counts."), "",
              "| experiment | sweep | seed | split | runs | evaluated (min–max) | constant | not scored (excluded) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rng = f"{r['n_eval_min']}" if r["constant"] else f"{r['n_eval_min']}–{r['n_eval_max']}"
        excl = ", ".join(str(v) for v in r["n_excluded"]) or "–"
        lines.append(f"| {r['experiment']} | {r['sweep']} | {r['seed']} | {r['split']} | {r['runs']} | "
                     f"{rng} | {'yes' if r['constant'] else '**no**'} | {excl} |")
    return lines + [""]


def _md_energy(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["### Relative energies (conformer energy about its molecule's mean; meV per molecule)", ""]
    if not rows:
        return lines + ["The results have no relative-energy columns (`energy_rel_mae`): older runs.", ""]
    below = sum(r["ratio"] < 1 for r in rows)
    lines += [f"Below the baseline that predicts each molecule's mean energy at {below} of {len(rows)} "
              "(point, split) pairs.", "",
              "| experiment | model | selection | M | C | split | relative-energy MAE | baseline | ratio | seeds |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['experiment']} | {r['model']} | {r['strategy']} | {r['n_molecules']} | "
                     f"{r['conformers_per_molecule']} | {r['split']} | {_f(r['mean'])} ± {_f(r['std'])} | "
                     f"{_f(r['baseline'])} | {_f(r['ratio'], '.2f')} | {r['seeds']} |")
    return lines + [""]


def _md_references(rows: list[dict[str, Any]]) -> list[str]:
    """The element-linear baseline on unseen molecules by M, with and without the isolated-atom prior."""
    lines = ["### Element reference energies on unseen molecules (per-atom energy MAE of the element-linear fit)", ""]
    if not rows:
        return lines + ["Not computed: `references.csv` is missing (the study computes it from the dataset).", ""]
    large = [r for r in rows if r["n_molecules"] >= 32]
    small = min(rows, key=lambda r: r["n_molecules"])
    within = sum(abs(r["ratio"] - 1) <= 0.05 for r in large)
    if all(math.isnan(r["prior"]) for r in rows):
        lines += ["The dataset's level of theory is not GFN2-xTB, so there is no isolated-atom prior: the element "
                  "references are plain least squares (as in training).", ""]
    else:
        lines += [f"The fit of each training set's compositions, scored on its held-out molecules (one conformer "
                  f"per training molecule; the same conformers at every M of a seed; {small['seeds']} seeds). At "
                  f"M = {small['n_molecules']} the isolated-atom prior gives {_f(small['prior'], '.2f')} eV/atom "
                  f"(worst seed {_f(small['prior_max'], '.2f')}) against {_f(small['plain'], '.2f')} for plain "
                  f"least squares; at M ≥ 32 the two agree within 5 % at {within} of {len(large)} M.", ""]
    lines += ["| M | with prior (eV/atom) | worst seed | plain least squares (eV/atom) | worst seed | prior / plain | "
              "conformers scored | left out |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_molecules']} | {_f(r['prior'], '.3f')} | {_f(r['prior_max'], '.3f')} | "
                     f"{_f(r['plain'], '.3f')} | {_f(r['plain_max'], '.3f')} | {_f(r['ratio'], '.3f')} | "
                     f"{'/'.join(map(str, r['n_eval']))} | {'/'.join(map(str, r['n_excluded']))} |")
    return lines + [""]


def _md_comparisons(result: dict[str, Any]) -> list[str]:
    comps = result.get("comparisons", [])
    lines = ["### Paired comparisons within each budget (force MAE, meV/Å)", ""]
    if not comps:
        return lines + ["No fixed-budget budget with two or more points.", ""]
    lines += [f"Differences from the best point of a budget, paired by seed, with {100 * comps[0]['level']:.0f} % "
              "intervals (expanded percentile bootstrap over seeds resampled jointly across points; a difference "
              "counts as resolved only when this interval and the paired t interval both exclude 0). A claim below "
              "is made only where the intervals allow it.", ""]
    for c in comps:
        lines.append(f"- {c['statement']}")
    shifts = result.get("shifts", [])
    if shifts:
        lines += ["", "Between budgets (the balance = conformers per molecule C at the best point):", ""]
        lines += [f"- {s['statement']}" for s in shifts]
    return lines + [""]


def _md_acceptance(result: dict[str, Any]) -> list[str]:
    acc = result.get("acceptance", {})
    lines = ["### Is the error model consistent with its data?", ""]
    if not acc:
        return lines + ["No error model was fitted.", ""]
    lines += ["Acceptance: at every measured budget the mean residual (measured − fitted) within ±1 standard "
              "error; leave-one-out RMSE below the median seed std; the recommended-M interval (on the measured "
              "grid of M, 90 %) contains the measured best M (W = 0.5), or the measured best is not resolved and "
              "the fitted best is among the points it cannot be told apart from.", "",
              "Beside the LOO check, what seed noise alone gives: synthetic studies drawn from the fit plus the "
              "measured seed deviations (resampled jointly by seed, so a seed's test set stays easy or hard for "
              "every point), refitted the same way. Their median and 95th percentile LOO RMSE, and p, the fraction "
              "at least as large as the measured one: p < 0.05 says the model misses something the noise does not "
              "explain; a measured LOO RMSE inside that range fails the median-std check by noise, not by form.", "",
              "| model | split | form | mean residual per budget (± SE) | LOO RMSE | median seed std | "
              "LOO from noise alone (median, 95 %; p) | passes |",
              "|---|---|---|---|---|---|---|---|"]
    for model, a in acc.items():
        for split, f in a.get("fits", {}).items():
            res = "; ".join(f"B={b['budget']}: {b['mean_residual']:+.1f} ± {b['standard_error']:.1f}"
                            f"{'' if b['ok'] else ' ✗'}" for b in f["budgets"]) or "–"
            worst = f.get("loo_worst")
            loo = _f(f["loo_rmse"]) + (f" (worst: M = {worst['M']:g}, C = {worst['C']:g}, {worst['error']:+.1f})"
                                       if worst else "")
            noise = f.get("loo_noise") or {}
            cal = (f"{_f(noise['expected'])}, {_f(noise['high'])}; p = {noise['p_value']:.2f}"
                   if noise.get("n_sim") else "–")
            lines.append(f"| {model} | {split} | {f['formula']} | {res} | {loo} | "
                         f"{_f(f['median_seed_std'])} | {cal} | {'yes' if f['ok'] else '**no**'} |")
    lines += ["", "| model | B | measured best M | resolved | fitted best M on the grid (90 %) | recommended M "
              "(90 %) | contains | consistent |", "|---|---|---|---|---|---|---|---|"]
    for model, a in acc.items():
        for r in a.get("intervals", []):
            gi, iv = r.get("grid_interval"), r.get("interval")
            grid = f"{r.get('fitted_grid_best_M')} ({gi[0]}..{gi[1]})" if gi else "–"
            rec = f"{r.get('recommended_M')} ({iv[0]}..{iv[1]})" if iv else "–"
            lines.append(f"| {model} | {r['budget']} | {r['measured_best_M']} | "
                         f"{'yes' if r['measured_resolved'] else 'no'} | {grid} | {rec} | "
                         f"{'yes' if r['contains'] else '**no**'} | {'yes' if r['consistent'] else '**no**'} |")
    return lines + [""]


def _md_abstract(result: dict[str, Any]) -> list[str]:
    v = result.get("abstract") or abstract_verdicts(result)
    lines = ["## Against the study's abstract", "",
             "Generated from the numbers above; each verdict says what it rests on.", ""]
    exps = result.get("experiments", {})
    lines.append(f"- *Claim 1, two experiments (fixed budget; fixed molecular set)*: fixed budget at B = "
                 f"{', '.join(str(b) for b in exps.get('budgets', [])) or '–'}; fixed molecular set at M = "
                 f"{', '.join(str(m) for m in exps.get('fixed_molecules', [])) or '–'}.")
    b = v["balance"]
    where = lambda xs: ", ".join(f"{m} B = {bb}" for m, bb in xs) or "none"  # noqa: E731
    opp = [o for o in b["opposite"] if o["opposite"]]
    lines.append(f"- *Claim 2, a careful balance is needed for both kinds of generalization*: **{b['verdict']}**. "
                 f"Interior optimum of the mean of both errors resolved at: {where(b['interior'])}; best point "
                 f"resolved at the edge of the runs at: {where(b['edge'])}; not resolved at: "
                 f"{where(b['not_resolved'])}. Unseen molecules want more molecules than unseen conformers (lowest "
                 f"mean at a larger M) at {len(opp)} of {len(b['opposite'])} (model, budget) pairs.")
    d = v["datasets"]
    reach = "; ".join(f"{m}: up to {r['largest_budget']:,} conformers" for m, r in d["reach"].items()) or "no fit"
    smallest = f"{d['smallest_dataset']:,}" if d["smallest_dataset"] else "–"
    lines.append(f"- *Existing QM datasets do not sit at that balance*: **{d['verdict']}**. Across budgets: "
                 f"{d['trend']}. The fits may advise on budgets {reach} (a factor 2 beyond the largest run); the "
                 f"smallest published dataset on the map has {smallest} conformers"
                 + (", so the fit would have to extrapolate to reach any of them and the guard refuses."
                    if d["verdict"] == "not tested" else "."))
    g = v["beyond_distribution"]
    gap = g["infogap_spearman"]
    lines.append(f"- *Claim 3, poor generalization beyond the training distribution*: **{g['verdict']}**: unseen "
                 f"molecules have the larger force error at {g['molecules_harder']} of {g['points']} fixed-budget "
                 "points (random selection)"
                 + (f"; the information gap's Spearman correlation with the force error is {gap:.2f}." if
                    gap is not None and math.isfinite(gap) else "."))
    t = v.get("training_length", {})
    if t.get("checked"):
        moved = ", ".join(f"{m} B = {b}" for m, b in t["errors_move"]) or "none"
        words = {SplitName.TEST_MOLECULES: "unseen molecules", SplitName.TEST_CONFORMERS: "unseen conformers",
                 "mean": "mean of both"}
        answer = ", ".join(f"{m} B = {b} ({words.get(s, s)})" for m, b, s in t["answer_moves"])
        lines.append(f"- *Training length behind these verdicts*: doubling the steps changes some checked error by "
                     f"more than one seed std at: {moved}; it changes the difference between the budget's checked "
                     f"points (the answer) by more than one seed std at: {answer or 'none'}. "
                     + ("Verdicts resting on those budgets could change with longer training."
                        if t["errors_move"] or t["answer_moves"] else
                        "Every checked budget's errors and answer are stable to within one seed std."))
    for model, c in v["model_checks"].items():
        state = "passes" if c["ok"] else "fails"
        lines.append(f"- *The error model ({model})* {state} its acceptance checks (table above): advice from it "
                     + ("can be used within the allowed budgets." if c["ok"] else
                        "should be read together with the measured comparisons, which do not depend on it."))
    return lines + [""]


def render(result: dict[str, Any], tables: str) -> str:
    """The generated part of docs/RESULTS.md: the analysis' new sections, then the verdicts, then the measured
    tables (``tables``: the study's existing markdown)."""
    lines: list[str] = []
    lines += _md_comparisons(result)
    lines += _md_acceptance(result)
    seconds = [v.get("total", math.nan) for v in result.get("run_seconds", {}).values()]
    lines += _md_convergence(result.get("convergence", []), result.get("converged", []),
                             result.get("gap_convergence", []), _num(sum(seconds) / 3600) if seconds else math.nan)
    lines += _md_counts(result.get("eval_counts", []))
    lines += _md_energy(result.get("energy", []))
    lines += _md_references(result.get("references", []))
    lines += _md_abstract(result)
    lines += ["## Measured tables", "", tables]
    return "\n".join(lines).rstrip() + "\n"


def write_page(path: Path, generated: str) -> Path:
    """Put ``generated`` between the markers of ``path`` (the hand-written rest of the page stays); a new file is
    the markers and the generated part alone. A page without the markers is refused, not overwritten."""
    block = f"{PAGE_BEGIN}\n\n{generated.rstrip()}\n\n{PAGE_END}\n"
    if not path.exists():
        path.write_text(block)
        return path
    text = path.read_text()
    pattern = re.compile(re.escape(PAGE_BEGIN) + r".*?" + re.escape(PAGE_END) + r"\n?", re.S)
    if not pattern.search(text):
        raise MlipdivError(f"{path} has no generated-section markers; put the two lines\n{PAGE_BEGIN}\n{PAGE_END}\n"
                           "where the generated sections go (everything between them is replaced)")
    path.write_text(pattern.sub(lambda _: block, text, count=1))
    return path
