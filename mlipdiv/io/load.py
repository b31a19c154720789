"""Open a dataset file by its suffix: the one entry point every verb, page and library call uses for ``--dataset``."""

from __future__ import annotations

from pathlib import Path

from mlipdiv.io.dataset import Dataset
from mlipdiv.io.extxyz import read_extxyz
from mlipdiv.io.hdf5 import read_hdf5
from mlipdiv.paths import default_dataset

EXTXYZ_SUFFIXES = (".xyz", ".extxyz")


def load_dataset(path: str | Path | None = None) -> Dataset:
    """Load a dataset by path (``.h5``/``.hdf5`` or extended XYZ); ``None`` means the shipped default."""
    path = Path(path) if path is not None else default_dataset()
    if path.suffix.lower() in EXTXYZ_SUFFIXES:
        return read_extxyz(path)
    return read_hdf5(path)
