"""Unit conversions, defined once. The library computes in eV, angstrom and seconds; these factors turn those into
what a user is shown (meV, meV/angstrom) and what external programs speak (hartree, bohr). Core module: standard
library only, so the CLI, the analysis and the charts all use the same numbers.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["ANGSTROM_PER_BOHR", "BOHR_PER_ANGSTROM", "ENERGY_UNITS", "EV_PER_HARTREE", "EV_PER_KCAL_PER_MOL",
           "EV_PER_KJ_PER_MOL", "EV_TO_MEV", "LENGTH_UNITS", "S_TO_MS", "energy_unit", "length_unit", "mev"]

EV_TO_MEV = 1000.0  # eV -> meV, eV/angstrom -> meV/angstrom
S_TO_MS = 1000.0  # seconds -> milliseconds
EV_PER_HARTREE = 27.211386245988  # CODATA 2018
ANGSTROM_PER_BOHR = 0.529177210903  # CODATA 2018
BOHR_PER_ANGSTROM = 1.0 / ANGSTROM_PER_BOHR
# one eV per particle is e * N_A joules per mole; both constants are exact in SI 2019 (CODATA 2018)
KJ_PER_MOL_PER_EV = 1.602176634e-19 * 6.02214076e23 / 1000.0  # 96.485332...
EV_PER_KJ_PER_MOL = 1.0 / KJ_PER_MOL_PER_EV
EV_PER_KCAL_PER_MOL = 4.184 * EV_PER_KJ_PER_MOL  # thermochemical calorie

ENERGY_UNITS = {"eV": 1.0, "meV": 1.0e-3, "hartree": EV_PER_HARTREE, "kcal/mol": EV_PER_KCAL_PER_MOL,
                "kJ/mol": EV_PER_KJ_PER_MOL}
"""Energy units a file may use, as eV per unit (what :mod:`mlipdiv.io.sources` converts from)."""
LENGTH_UNITS = {"angstrom": 1.0, "bohr": ANGSTROM_PER_BOHR}
"""Length units a file may use, as angstrom per unit."""

# spellings other programs write (schnetpack "Ang", "Hartree", "Bohr"; SPICE "hartree", "bohr"; ASE "Ha")
_ENERGY_ALIASES = {"ev": "eV", "mev": "meV", "hartree": "hartree", "ha": "hartree", "eh": "hartree",
                   "kcal/mol": "kcal/mol", "kcal": "kcal/mol", "kj/mol": "kJ/mol", "kj": "kJ/mol"}
_LENGTH_ALIASES = {"angstrom": "angstrom", "ang": "angstrom", "a": "angstrom", "å": "angstrom", "bohr": "bohr",
                   "a0": "bohr", "au": "bohr"}

T = TypeVar("T")


def mev(values: T) -> T:
    """eV -> meV (or eV/angstrom -> meV/angstrom) for scalars, arrays and pandas objects; ``None`` stays ``None``."""
    if values is None:
        return values
    scalable: Any = values  # anything with ``* float`` (float, ndarray, pandas); T says the type is kept
    return scalable * EV_TO_MEV



def energy_unit(name: str) -> str:
    """The canonical name (a key of :data:`ENERGY_UNITS`) of an energy unit as a file or a user spells it;
    ``ValueError`` listing the known ones otherwise."""
    key = str(name).strip().lower().replace(" ", "")
    if key not in _ENERGY_ALIASES:
        raise ValueError(f"unknown energy unit {str(name)[:40]!r}; known: {', '.join(ENERGY_UNITS)}")
    return _ENERGY_ALIASES[key]


def length_unit(name: str) -> str:
    """The canonical name (a key of :data:`LENGTH_UNITS`) of a length unit; ``ValueError`` otherwise."""
    key = str(name).strip().lower().replace(" ", "").replace("ångström", "angstrom")
    if key not in _LENGTH_ALIASES:
        raise ValueError(f"unknown length unit {str(name)[:40]!r}; known: {', '.join(LENGTH_UNITS)}")
    return _LENGTH_ALIASES[key]
