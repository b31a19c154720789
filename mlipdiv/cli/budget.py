"""``python -m mlipdiv budget``: how to spend a QM budget on molecules vs conformers, from fitted sweep results.

``--results DIR --budget N`` fits the error model of each test split to the sweep's ``results.csv`` and prints the
M x C that minimises the weighted predicted error, for ``--model`` or else for each model the results hold (a study
compares architectures; a model without runs near the budget says why); ``--known-datasets`` lists published QM
datasets instead.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

HELP = "recommend molecules x conformers for a QM budget from sweep results (or list known QM datasets)"


FORMS = ("full", "no_floor", "total", "either", "either_no_floor", "either_limited", "either_limited_no_floor")
"""The names of mlipdiv.analysis.fit.FORMS, spelled out: importing the fits would slow every command's start-up."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", nargs="+", metavar="DIR",
                        help="sweep output directories (or results.csv files); several are combined")
    parser.add_argument("--budget", type=float, help="the QM budget, in --unit")
    parser.add_argument("--unit", choices=["conformers", "cpu-hours"], default="conformers",
                        help="budget unit (default: conformers); CPU-hours go through the measured cost model")
    parser.add_argument("--weight", type=float, default=0.5,
                        help="0..1: weight of unseen-molecule error against unseen-conformer error (default 0.5)")
    parser.add_argument("--metric", default="forces_mae", choices=["forces_mae", "energy_mae_per_atom", "energy_mae"],
                        help="error to minimise (default: forces_mae)")
    parser.add_argument("--model", help="which model's runs to fit (default: each model of the results, one answer "
                        "per model)")
    parser.add_argument("--strategy", help="which selection strategy's runs to fit (when several)")
    parser.add_argument("--form", default="average",
                        choices=["average", *(f"{base}{steps}" for steps in ("", "+steps", "+steps-power")
                                              for base in FORMS)],
                        help="error-model form (default: average = Akaike-weighted average of the candidate forms; "
                             "full = E_inf + a M^-alpha + b C^-beta; either = E_inf + (1/(a M^-alpha) + "
                             "1/(b C^-beta))^-1, the error follows the more plentiful of the two; either_limited: the "
                             "same with the M route levelling off, 1/(a_inf + a M^-alpha); *_no_floor: without E_inf; "
                             "+steps multiplies by a free factor per training length; +steps-power scales each route "
                             "by a power of the steps, (S/S0)^-gamma and (S/S0)^-delta)")
    parser.add_argument("--max-factor", type=float, default=2.0,
                        help="refuse predictions further than this factor outside the fitted (M, C) region")
    parser.add_argument("--allow-extrapolation", action="store_true",
                        help="predict beyond --max-factor anyway (marked as extrapolated)")
    parser.add_argument("--max-molecules", type=int, help="at most this many distinct molecules are available")
    parser.add_argument("--dataset", help="dataset whose molecule sizes set the cost per conformer (default: shipped)")
    parser.add_argument("--atoms", type=float, help="atoms per molecule for the cost model (overrides --dataset)")
    parser.add_argument("--qm", choices=["xtb", "xtb-pipeline", "dft", "entered"], default="xtb",
                        help="cost model: measured GFN2-xTB single points (default), the measured end-to-end cost of "
                             "generating the shipped dataset (xtb-pipeline), DFT scaled from xtb (--dft-factor), or "
                             "your own method's cost per conformer (entered: --qm-seconds, --qm-name)")
    parser.add_argument("--qm-seconds", type=float, help="with --qm entered: CPU-seconds for one conformer of the "
                        "dataset's mean size, at your level of theory (scales as n^--dft-exponent)")
    parser.add_argument("--qm-name", help="with --qm entered: the method's name (default: the dataset's level of "
                        "theory)")
    parser.add_argument("--dft-factor", type=float,
                        help="DFT/xTB cost ratio at 20 atoms, measured with your DFT code (required with --qm dft)")
    parser.add_argument("--dft-exponent", type=float, default=3.0, help="DFT cost scaling n^k (default 3)")
    parser.add_argument("--known-datasets", action="store_true", help="list published QM datasets and exit")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _known(args: argparse.Namespace) -> int:
    from mlipdiv.analysis.known_datasets import known_datasets

    rows = known_datasets()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    cols = ["name", "n_molecules", "n_conformers", "conformers_per_molecule", "level_of_theory", "forces"]
    table = [[_cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    print("\nsources:")
    for r in rows:
        print(f"  {r['name']}: {r['source']}")
    return 0


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
    return str(v)


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse budgets and factors that are not finite numbers in range, before any fit (else: overflow tracebacks)."""
    from mlipdiv.errors import MlipdivError
    from mlipdiv.limits import MAX_BUDGET_CONFORMERS

    if not math.isfinite(args.budget) or args.budget <= 0:
        raise MlipdivError(f"--budget must be a positive number, got {args.budget}")
    if args.unit == "conformers" and args.budget > MAX_BUDGET_CONFORMERS:
        raise MlipdivError(f"--budget {args.budget:g} conformers is more than {MAX_BUDGET_CONFORMERS:.0e}, a hundred "
                           "times the largest published QM dataset; the error model cannot say anything there")
    if math.isnan(args.max_factor) or args.max_factor < 1:
        raise MlipdivError(f"--max-factor must be at least 1, got {args.max_factor}")
    if args.max_molecules is not None and args.max_molecules < 1:
        raise MlipdivError(f"--max-molecules must be at least 1, got {args.max_molecules}")
    if args.dft_factor is not None and not (math.isfinite(args.dft_factor) and args.dft_factor > 0):
        raise MlipdivError(f"--dft-factor must be a positive number, got {args.dft_factor}")
    if not (math.isfinite(args.dft_exponent) and 0 < args.dft_exponent <= 10):
        raise MlipdivError(f"--dft-exponent must be in (0, 10] (3 for hybrid DFT), got {args.dft_exponent}")


def _entered_model(args: argparse.Namespace) -> Any:
    """``--qm entered``: the user's price per conformer at the mean size of ``--dataset`` (or ``--atoms``)."""
    from mlipdiv.analysis.cost import CostModel, dataset_atom_counts
    from mlipdiv.errors import MlipdivError

    if args.qm_seconds is None or not (math.isfinite(args.qm_seconds) and args.qm_seconds > 0):
        raise MlipdivError("--qm entered needs --qm-seconds: the CPU-seconds one conformer costs at your level of "
                           "theory (for a molecule of the dataset's mean size)")
    name = args.qm_name
    if args.atoms is not None:
        n_ref = float(args.atoms)
    else:
        from mlipdiv.io.load import load_dataset

        n_ref = float(dataset_atom_counts(args.dataset).mean())
        if name is None and args.dataset:
            name = load_dataset(args.dataset).level_of_theory
    return CostModel.entered(args.qm_seconds, n_ref, args.dft_exponent, label=name or "your QM method")


def _cost_model(args: argparse.Namespace) -> Any:
    from mlipdiv.analysis.cost import pipeline_cost_model, xtb_cost_model
    from mlipdiv.errors import MlipdivError

    if args.qm == "xtb-pipeline":
        return pipeline_cost_model()
    if args.qm == "entered":
        return _entered_model(args)
    model = xtb_cost_model()
    if args.qm == "dft":
        if args.dft_factor is None:
            raise MlipdivError("--qm dft needs --dft-factor: the cost of one DFT single point divided by one GFN2-xTB "
                               "single point for a 20-atom molecule, measured with your DFT code and machine")
        model = model.scaled(args.dft_factor, args.dft_exponent)
    return model


def run(args: argparse.Namespace) -> int:
    from mlipdiv.errors import MlipdivError

    if args.known_datasets:
        return _known(args)
    if not args.results or args.budget is None:
        raise MlipdivError("give --results DIR and --budget N (or --known-datasets)")
    _check_numbers(args)

    from mlipdiv.analysis.cost import dataset_atom_counts
    from mlipdiv.analysis.fit import load_results
    from mlipdiv.limits import MAX_BUDGET_CONFORMERS

    cost = _cost_model(args)
    atoms: Any = None
    if args.atoms is not None:
        if not (math.isfinite(args.atoms) and args.atoms > 0):
            raise MlipdivError(f"--atoms must be a positive number of atoms, got {args.atoms}")
        atoms, atoms_from = args.atoms, f"{args.atoms:g} atoms per molecule (--atoms)"
    else:
        try:
            atoms = dataset_atom_counts(args.dataset)
            atoms_from = f"molecule sizes of {args.dataset or 'the shipped dataset'} (mean {atoms.mean():.1f} atoms)"
        except MlipdivError as exc:
            if args.unit == "cpu-hours":
                raise
            atoms_from = f"unknown ({exc})"
    if args.unit == "cpu-hours":
        most = cost.cpu_hours_for(MAX_BUDGET_CONFORMERS, atoms)
        if args.budget > most:
            raise MlipdivError(f"--budget {args.budget:g} CPU-hours pays for more than {MAX_BUDGET_CONFORMERS:.0e} "
                               f"conformers ({most:.3g} CPU-hours with {cost.label}), beyond what the error model "
                               "can say anything about; give a smaller budget")
        n_conf = cost.conformers_for(args.budget, atoms)
        if n_conf < 1:
            raise MlipdivError(f"{args.budget:g} CPU-hours do not pay for one conformer with {cost.label}")
    else:
        if not float(args.budget).is_integer():
            raise MlipdivError("a budget in conformers must be a whole number")
        n_conf = int(args.budget)

    df = load_results(args.results)
    models = [args.model] if args.model else sorted(df["model"].astype(str).unique())
    answers: dict[str, dict[str, Any]] = {}
    for model in models:
        try:
            answers[model] = _answer(args, df, model, n_conf, cost, atoms, atoms_from)
        except MlipdivError as exc:
            if len(models) == 1:
                raise
            answers[model] = {"model": model, "error": str(exc)}
    if all("error" in a for a in answers.values()):
        raise MlipdivError("no model gave advice: " + "; ".join(f"{m}: {a['error']}" for m, a in answers.items()))
    if len(models) == 1:
        out = answers[models[0]]
        if args.json:
            print(json.dumps(out, indent=2, ensure_ascii=False, default=float))
        else:
            _print(out)
        return 0
    # several models and no --model: the advice of each, from its own fit (a model without runs near this budget
    # says why instead)
    if args.json:
        print(json.dumps({"budget": args.budget, "unit": args.unit, "models": answers}, indent=2, ensure_ascii=False,
                         default=float))
        return 0
    for i, (model, answer) in enumerate(answers.items()):
        sys.stdout.write(("\n" if i else "") + f"=== {model} ===\n")
        if "error" in answer:
            sys.stdout.write(f"no advice: {answer['error']}\n")
        else:
            _print(answer)
    return 0


def _answer(args: argparse.Namespace, df: Any, model: str, n_conf: int, cost: Any, atoms: Any,
            atoms_from: str) -> dict[str, Any]:
    """One model's recommendation at ``n_conf`` conformers, with its fits, measured comparison and cost."""
    from mlipdiv.analysis.fit import fit_results, select
    from mlipdiv.analysis.recommend import recommend

    _, model, strategy = select(df, model, args.strategy)
    fits = fit_results(df, metric=args.metric, model=model, strategy=strategy, form=args.form,
                       max_factor=args.max_factor)
    rec = recommend(fits, n_conf, args.weight, max_molecules=args.max_molecules,
                    allow_extrapolation=args.allow_extrapolation)
    used = rec.n_molecules * rec.conformers_per_molecule
    return {
        **rec.as_dict(),
        "budget": args.budget,
        "unit": args.unit,
        "metric": args.metric,
        "model": model,
        "strategy": strategy,
        "cost": {
            "model": cost.label,
            "atoms": atoms_from,
            "seconds_per_conformer": None if atoms is None else cost.mean_seconds(atoms),
            "cpu_hours": None if atoms is None else cost.cpu_hours_for(used, atoms),
        },
        "fits": {s: f.as_dict() for s, f in fits.items()},
    }


def _print(o: dict[str, Any]) -> None:
    w = sys.stdout.write
    lvl = int(round(100 * o["interval_level"]))
    w(f"budget: {o['budget']:g} {o['unit']} = {o['budget_conformers']:,} conformers "
      f"({o['cost']['model']}, {o['cost']['atoms']})\n")
    w(f"model {o['model']}, strategy {o['strategy']}, metric {o['metric']}, weight {o['weight']:g} "
      f"(1 = only unseen molecules matter, 0 = only unseen conformers)\n\n")
    hours = o["cost"]["cpu_hours"]
    w(f"recommended: n_molecules = {o['n_molecules']:,}, conformers_per_molecule = {o['conformers_per_molecule']:,} "
      f"({o['n_conformers']:,} conformers" + (f", {hours:.3g} CPU-hours)\n" if hours is not None else ")\n"))
    if o["n_molecules_range"]:
        lo, hi = o["n_molecules_range"]
        w(f"  the optimum's n_molecules over the bootstrap: {lo:,}..{hi:,} ({lvl}%)\n")
    if o.get("measured"):
        w(f"  {o['measured']['statement']}\n")
    else:
        w("  no runs at this budget: the advice rests on the fitted model alone\n")
    if o.get("allowed_budgets"):
        lo, hi = o["allowed_budgets"]
        w(f"  budgets the fits may advise on: {lo:,}..{hi:,} conformers\n")
    w("predicted:\n")
    for split, p in o["predicted"].items():
        w(f"  {split:16s} {p['mean']:8.2f} {p['unit']}   [{p['low']:.2f}, {p['high']:.2f}] ({lvl}% interval)\n")
    w("\nfits:\n")
    for split, f in o["fits"].items():
        params = ", ".join(f"{k} = {v:.3g} ± {f['stderr'][k]:.2g}" for k, v in f["params"].items())
        w(f"  {split}: {f['formula']}, M0 = {f['M0']:.3g}, C0 = {f['C0']:.3g}\n    {params} "
          f"(form with the largest weight)\n")
        w(f"    R² {f['r2']:.3f}, RMSE {f['rmse']:.3g}, leave-one-out RMSE {f['loo_rmse']:.3g} {f['unit']}; "
          f"{f['n_points']} points, {f['n_runs']} runs; M {f['M_range'][0]:g}..{f['M_range'][1]:g}, "
          f"C {f['C_range'][0]:g}..{f['C_range'][1]:g}\n")
        a = f["acceptance"]
        res = ", ".join(f"B={b['budget']}: {b['mean_residual']:+.2f} ± {b['standard_error']:.2f}" for b in a["budgets"])
        w(f"    acceptance: {'passed' if a['ok'] else 'FAILED'} (mean residual per budget {res or '–'}; "
          f"leave-one-out RMSE {a['loo_rmse']:.3g} vs median seed std {a['median_seed_std']:.3g})\n")
    for note in o["notes"]:
        if not (o.get("measured") and note == o["measured"]["statement"]):
            w(f"note: {note}\n")
