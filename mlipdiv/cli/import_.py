"""``python -m mlipdiv import``: turn a dataset another program wrote into an mlipdiv dataset (and its report).

Formats: ASE databases, extended XYZ, SPICE- and ANI-1x-style HDF5, rMD17 npz (:mod:`mlipdiv.io.sources`);
molecules, families and the report: :mod:`mlipdiv.data.importing`.
"""

from __future__ import annotations

import argparse

VERB = "import"
HELP = ("import your own data (ASE db, extended XYZ, SPICE/ANI-1x HDF5, rMD17 npz) as an mlipdiv dataset, with "
        "molecules, conformer families and a report")
FORMAT_CHOICES = ("auto", "ase-db", "extxyz", "spice-h5", "ani-h5", "npz")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="the file to import")
    p.add_argument("--out", required=True, metavar="DATASET.h5", help="the mlipdiv HDF5 file to write (its report "
                   "goes beside it as DATASET.h5.import.json)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                   help="the source's format (default: from the suffix and the file's content)")
    p.add_argument("--energy-key", metavar="K", help="the key or dataset holding energies (default: detected when "
                   "unambiguous, else the candidates are listed)")
    p.add_argument("--forces-key", metavar="K", help="the key or dataset holding forces (a name containing "
                   "'gradient' is negated)")
    p.add_argument("--energy-unit", choices=("eV", "hartree", "kcal/mol", "kJ/mol"),
                   help="energy unit of the source (default: the file's metadata, else the format's convention: eV "
                        "for ASE db and extxyz, hartree for SPICE and ANI, kcal/mol for npz)")
    p.add_argument("--length-unit", choices=("angstrom", "bohr"),
                   help="length unit of the source (default: metadata, else bohr for SPICE, angstrom otherwise)")
    p.add_argument("--level-of-theory", metavar="TEXT", help="recorded in the dataset (default: what the file says)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mlipdiv.data.importing import import_dataset, report_path
    from mlipdiv.io.sources import Source, SourceOptions

    options = SourceOptions(energy_key=args.energy_key, forces_key=args.forces_key, energy_unit=args.energy_unit,
                            length_unit=args.length_unit)
    bar: list[tqdm] = []

    def progress(source: Source, conformers: int) -> None:
        if args.quiet:
            return
        if not bar:
            bar.append(tqdm(total=source.total, unit="entry", dynamic_ncols=True, desc=f"reading {source.format}"))
        bar[0].update(1)
        bar[0].set_postfix_str(f"{conformers} conformers", refresh=False)

    try:
        result = import_dataset(args.source, args.out, format=args.format, options=options,
                                level_of_theory=args.level_of_theory, overwrite=args.overwrite, progress=progress)
    finally:
        if bar:
            bar[0].close()
    print(summary(result.report, str(result.path), str(report_path(result.path))))
    return 0


def summary(report: dict, out: str, report_file: str) -> str:
    """A few lines: what was written, units converted, what was skipped and why."""
    fam = report["families"]
    lines = [f"wrote {out}: {report['molecules']} molecules, {report['conformers']} conformers "
             f"({report['conformers_per_molecule']['min']}-{report['conformers_per_molecule']['max']} per molecule), "
             f"{fam['total']} families, elements {' '.join(report['elements'])}, {report['level_of_theory']}"]
    lines.append(f"energy from {report['energy_key']!r}, forces from {report['forces_key']!r}" if report["forces"]
                 else f"energy from {report['energy_key']!r}; no forces: the dataset can be explored, not trained on")
    lines += [f"converted {c}" for c in report["units"]["conversions"]] or ["units: eV and angstrom, no conversion"]
    ident = report["identity"]
    if ident["fallback_graphs"]:
        lines.append(f"{ident['fallback_graphs']} bond graphs not perceivable by RDKit: named by formula + graph hash")
    if ident["source_smiles_disagree"]:
        lines.append(f"{ident['source_smiles_disagree']} SMILES of the file disagree with the geometry (listed in "
                     "the report)")
    skipped = report["skipped"]
    if skipped["conformers"]:
        why = ", ".join(f"{k}: {v}" for k, v in skipped["by_reason"].items())
        lines.append(f"skipped {skipped['conformers']} conformers ({why})")
    if report["molecules"] == 1:
        lines.append("one molecule: split and train with --test-molecules 0 (only unseen conformers can be tested)")
    lines.append(f"report: {report_file}")
    return "\n".join(lines)
