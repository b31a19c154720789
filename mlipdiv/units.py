"""Unit conversions, defined once. The library computes in eV, angstrom and seconds; these factors turn those into
what a user is shown (meV, meV/angstrom) and what external programs speak (hartree, bohr). Core module: standard
library only, so the CLI, the analysis and the charts all use the same numbers.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["ANGSTROM_PER_BOHR", "BOHR_PER_ANGSTROM", "EV_PER_HARTREE", "EV_TO_MEV", "S_TO_MS", "mev"]

EV_TO_MEV = 1000.0  # eV -> meV, eV/angstrom -> meV/angstrom
S_TO_MS = 1000.0  # seconds -> milliseconds
EV_PER_HARTREE = 27.211386245988  # CODATA 2018
ANGSTROM_PER_BOHR = 0.529177210903  # CODATA 2018
BOHR_PER_ANGSTROM = 1.0 / ANGSTROM_PER_BOHR

T = TypeVar("T")


def mev(values: T) -> T:
    """eV -> meV (or eV/angstrom -> meV/angstrom) for scalars, arrays and pandas objects; ``None`` stays ``None``."""
    if values is None:
        return values
    scalable: Any = values  # anything with ``* float`` (float, ndarray, pandas); T says the type is kept
    return scalable * EV_TO_MEV

