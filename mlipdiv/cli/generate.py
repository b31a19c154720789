"""``python -m mlipdiv generate``: build a GFN2-xTB-labelled conformer dataset (mlipdiv HDF5 v1)."""

from __future__ import annotations

import argparse

HELP = "generate a QM-labelled conformer dataset (RDKit conformers, thermal sampling, GFN2-xTB labels)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("molecules (any combination; duplicates are merged by canonical SMILES)")
    src.add_argument("--pool", choices=["nci"], help="RDKit's bundled NCI/first_5K.smi, filtered to neutral, "
                     "single-fragment molecules of H C N O F S Cl")
    src.add_argument("--max-heavy-atoms", type=int, metavar="N", help="keep molecules with at most N heavy atoms")
    src.add_argument("--max-molecules", type=int, metavar="K", help="keep the first K usable molecules")
    src.add_argument("--smiles", nargs="+", metavar="S", default=[], help="SMILES strings")
    src.add_argument("--smiles-file", metavar="F", help="file with one SMILES per line, optional name after it")
    src.add_argument("--from-extxyz", metavar="XYZ", help="import labelled extended XYZ instead of computing "
                     "(REF_energy/REF_forces, or energy/forces); see data/README.md")
    conf = p.add_argument_group("conformers and labels")
    conf.add_argument("--conformers", type=int, default=100, help="conformers per molecule (default 100)")
    conf.add_argument("--parents", type=int, default=4, help="distinct relaxed conformers per molecule that the "
                      "thermal samples are spread over (default 4; rigid molecules may have fewer)")
    conf.add_argument("--sampling", choices=["nms", "md"], default="nms",
                      help="thermal sampling: normal-mode sampling with the GFN2-xTB Hessian, or Langevin MD")
    conf.add_argument("--temperature", type=float, default=300.0, help="sampling temperature in K (default 300)")
    conf.add_argument("--relax", choices=["xtb", "mmff"], default="xtb",
                      help="relaxation of the distinct conformers (default xtb: GFN2-xTB, after MMFF)")
    conf.add_argument("--seed", type=int, default=0, help="random seed (same seed + arguments = same dataset)")
    run = p.add_argument_group("running")
    run.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    run.add_argument("--out", required=True, metavar="PATH", help="output HDF5 file (.h5)")
    run.add_argument("--export-extxyz", metavar="PATH", help="also write the result as extended XYZ")
    run.add_argument("--overwrite", action="store_true", help="replace an existing finished output")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, rebuilt from the parsed arguments (recorded in the output)."""
    import shlex

    parts = ["python -m mlipdiv generate"]
    if args.from_extxyz:
        parts.append(f"--from-extxyz {shlex.quote(args.from_extxyz)}")
    else:
        if args.pool:
            parts.append(f"--pool {args.pool}")
        if args.max_heavy_atoms is not None:
            parts.append(f"--max-heavy-atoms {args.max_heavy_atoms}")
        if args.max_molecules is not None:
            parts.append(f"--max-molecules {args.max_molecules}")
        if args.smiles:
            parts.append("--smiles " + " ".join(shlex.quote(s) for s in args.smiles))
        if args.smiles_file:
            parts.append(f"--smiles-file {shlex.quote(args.smiles_file)}")
        parts.append(f"--conformers {args.conformers} --parents {args.parents} --sampling {args.sampling} "
                     f"--temperature {args.temperature:g} --relax {args.relax} --seed {args.seed}")
    parts.append(f"--out {shlex.quote(args.out)}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    from pathlib import Path

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # small molecules: threads cost more than they give
    from mlipdiv.errors import MlipdivError
    from mlipdiv.io.validate import check_output, make_parent

    out = Path(args.out)
    for flag in ("max_molecules", "max_heavy_atoms", "workers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise MlipdivError(f"--{flag.replace('_', '-')} must be at least 1 (got {value})")
    if args.export_extxyz:
        check_output(args.export_extxyz, "--export-extxyz", overwrite=args.overwrite)
    if args.from_extxyz:
        from mlipdiv.io.extxyz import read_extxyz
        from mlipdiv.io.hdf5 import write_hdf5

        check_output(out, "--out", overwrite=args.overwrite)
        ds = read_extxyz(args.from_extxyz)  # every check runs here, before anything is written
        make_parent(out)
        try:
            write_hdf5(ds, out, provenance={"command": _command_line(args)})
        except OSError as exc:
            raise MlipdivError(f"--out {out}: cannot write ({exc.strerror or type(exc).__name__})") from exc
        print(f"imported {len(ds)} molecules, {ds.n_conformers} conformers from {args.from_extxyz} into {out}")
        if args.export_extxyz:
            from mlipdiv.io.extxyz import write_extxyz

            write_extxyz(ds, args.export_extxyz)
        return 0

    from mlipdiv.data.generate import Settings, generate
    from mlipdiv.data.molecules import build_pool

    if not (args.pool or args.smiles or args.smiles_file):
        raise MlipdivError("no molecules given: use --pool nci, --smiles S ... or --smiles-file F")
    check_output(out, "--out", overwrite=True)  # an existing OUT is judged by generate (resume or --overwrite)
    entries, rejected = build_pool(args.pool, args.smiles, args.smiles_file, args.max_heavy_atoms, args.max_molecules)
    settings = Settings(conformers=args.conformers, parents=args.parents, sampling=args.sampling,
                        temperature=args.temperature, relax=args.relax, seed=args.seed)
    sources = []
    if args.pool:
        sources.append("RDKit NCI/first_5K.smi")
    if args.smiles:
        sources.append("--smiles")
    if args.smiles_file:
        sources.append(f"--smiles-file {Path(args.smiles_file).name}")
    for r in rejected:
        print(f"skipped {r.input}: {r.reason}", file=sys.stderr)
    report = generate(entries, settings, out, rejected=rejected, workers=args.workers, command=_command_line(args),
                      source=", ".join(sources), progress=not args.no_progress, overwrite=args.overwrite)
    for s in report["skipped"][len(rejected):]:
        print(f"skipped {s['input']}: {s['reason']}", file=sys.stderr)
    print(f"wrote {out}: {report['molecules']} molecules, {report['conformers']} conformers "
          f"({len(report['skipped'])} skipped; see {out.name}.report.json)")
    if args.export_extxyz:
        from mlipdiv.io.extxyz import write_extxyz
        from mlipdiv.io.hdf5 import read_hdf5

        write_extxyz(read_hdf5(out), args.export_extxyz)
        print(f"wrote {args.export_extxyz}")
    return 0
