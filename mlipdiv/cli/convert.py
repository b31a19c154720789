"""``python -m mlipdiv convert``: mlipdiv HDF5 <-> extended XYZ (format chosen by the file suffixes)."""

from __future__ import annotations

import argparse

HELP = "convert a dataset between mlipdiv HDF5 (.h5) and extended XYZ (.xyz/.extxyz, REF_energy/REF_forces)"

_XYZ = (".xyz", ".extxyz")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="IN", help="dataset to read (.h5/.hdf5 or .xyz/.extxyz)")
    p.add_argument("target", metavar="OUT", help="file to write (.h5/.hdf5 or .xyz/.extxyz)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlipdiv.errors import MlipdivError
    from mlipdiv.io.extxyz import write_extxyz
    from mlipdiv.io.hdf5 import write_hdf5
    from mlipdiv.io.load import load_dataset
    from mlipdiv.io.validate import check_output, make_parent

    target = Path(args.target)
    if target.suffix.lower() not in (*_XYZ, ".h5", ".hdf5"):
        raise MlipdivError(f"{target}: unknown format; use .h5/.hdf5 (mlipdiv HDF5) or .xyz/.extxyz")
    check_output(target, "OUT", overwrite=args.overwrite)
    ds = load_dataset(args.source)  # every check runs here, before anything is written
    make_parent(target, "OUT")
    try:
        if target.suffix.lower() in _XYZ:
            write_extxyz(ds, target)
        else:
            write_hdf5(ds, target)
    except OSError as exc:
        raise MlipdivError(f"OUT {target}: cannot write ({exc.strerror or type(exc).__name__}); "
                           f"nothing was written") from exc
    print(f"wrote {target}: {len(ds)} molecules, {ds.n_conformers} conformers")
    return 0
