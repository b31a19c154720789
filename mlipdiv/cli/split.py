"""``python -m mlipdiv split``: write a seeded, leak-free M x C split, or print an experiment's (M, C) grid."""

from __future__ import annotations

import argparse

from mlipdiv.names import EXPERIMENTS

HELP = "choose a training set of M molecules x C conformers and its held-out sets (or print an experiment grid)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and one flag per :class:`~mlipdiv.selection.SplitSpec` field (``train`` has the same ones)."""
    from mlipdiv.cli.options import add_dataclass_arguments
    from mlipdiv.selection.splits import SplitSpec
    from mlipdiv.training.config import TrainConfig

    add_dataclass_arguments(parser, TrainConfig, only=("dataset",))
    add_dataclass_arguments(parser, SplitSpec)
    parser.add_argument("--out", help="split JSON to write (not needed with --experiment)")
    parser.add_argument("--experiment", choices=list(EXPERIMENTS),
                        help="print the (M, C) grid of an experiment instead of writing a split")
    parser.add_argument("--points", type=int, default=5, help="grid points for --experiment (default: 5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from mlipdiv.cli.options import from_args
    from mlipdiv.errors import InfeasibleRequest, InvalidSetting
    from mlipdiv.io.load import load_dataset
    from mlipdiv.selection import SplitSpec, experiment_grid, make_split

    # SplitSpec checks every option (InvalidSetting, naming the flag); --points is checked here, before any loading
    spec = from_args(SplitSpec, args)
    if args.experiment and args.points < 1:
        raise InvalidSetting.out_of_range("points", args.points, "a whole number of at least 1")
    if args.experiment is None and not args.out:
        raise InfeasibleRequest("--out is required to write a split (or use --experiment to print a grid)")
    if args.experiment is None:
        from mlipdiv.io.validate import check_output

        check_output(args.out, "--out", overwrite=args.overwrite)  # before the work, not after it
    dataset = load_dataset(args.dataset)

    if args.experiment:
        grid = experiment_grid(
            dataset, args.experiment, args.points, budget=args.budget, molecules=args.molecules, spec=spec
        )
        print(f"{args.experiment} grid on {dataset.path} (seed {args.seed}):")
        print(f"{'M molecules':>12} {'C per molecule':>15} {'budget':>8}")
        for m, c in grid:
            print(f"{m:>12} {c:>15} {m * c:>8}")
        return 0

    split = make_split(dataset, spec)
    path = split.save(args.out)
    print(_summary(split, path))
    return 0


def _summary(split, path) -> str:
    n = split.counts
    s = split.diversity.get("structural", {})
    c = split.diversity.get("conformational", {})
    return "\n".join(
        [
            f"wrote {path}",
            f"train            {n['train']:>7} conformers = {n['train_molecules']} molecules x "
            f"{n['conformers_per_molecule']} ({split.spec.strategy})",
            f"val              {n['val']:>7} conformers",
            f"test_conformers  {n['test_conformers']:>7} conformers (unseen conformers of the training molecules; "
            f"{split.spec.conformer_holdout} hold-out"
            + (
                f", random for the {n['family_fallback_train_molecules']} with a single parent family)"
                if split.spec.conformer_holdout == "family"
                else ")"
            ),
            f"test_molecules   {n['test_molecules']:>7} conformers of {n['test_molecule_count']} held-out molecules "
            f"({split.spec.molecule_split} split)",
            f"structural       {s.get('n_molecules', 0)} molecules, {s.get('n_scaffolds', 0)} scaffolds, "
            f"mean Tanimoto distance {s.get('mean_tanimoto_distance', 0):.3f}, "
            f"Vendi {s.get('tanimoto_vendi', 0):.1f}",
            f"conformational   per molecule: Vendi {c.get('mean_vendi', 0):.2f}, "
            f"RMSD spread {c.get('mean_rmsd_spread', 0):.3f} A, energy range {c.get('mean_energy_range', 0):.3f} eV, "
            f"{c.get('mean_families', 0):.2f} parent families",
        ]
    )
