"""QM oracles: energy and forces for one geometry. GFN2-xTB through tblite is the one we ship.

The interface is one method so another engine (DFT through PySCF, say) is a small class registered in
``ORACLES``. Results are in eV and eV/angstrom; a calculation that did not converge raises
:class:`OracleFailure` with its reason, so a wrong label is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from mlipdiv.errors import MlipdivError
from mlipdiv.registry import Registry
from mlipdiv.units import ANGSTROM_PER_BOHR, EV_PER_HARTREE

# CODATA 2018 (mlipdiv.units). ASE's ase.units are CODATA 2014: 8e-9 relative apart, up to 1e-5 eV on these totals.
HARTREE_EV = EV_PER_HARTREE
BOHR_ANGSTROM = ANGSTROM_PER_BOHR


class OracleFailure(MlipdivError):
    """A single-point calculation failed (no SCF convergence, non-finite result, engine error)."""


@dataclass(frozen=True)
class Label:
    energy: float  # eV
    forces: np.ndarray  # (n_atoms, 3) eV/angstrom


class Oracle(Protocol):
    level_of_theory: str

    def __call__(self, atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> Label:
        """Energy and forces of one geometry (positions in angstrom)."""
        ...


class GFN2xTB:
    """GFN2-xTB single points via tblite's Python API.

    tblite raises ``RuntimeError`` when the SCF does not converge within ``max_iterations``; that and any
    non-finite number becomes :class:`OracleFailure`.
    """

    level_of_theory = "GFN2-xTB"

    def __init__(self, accuracy: float = 1.0, max_iterations: int = 250, electronic_temperature: float = 300.0):
        self.accuracy = accuracy
        self.max_iterations = max_iterations
        self.electronic_temperature = electronic_temperature

    def __call__(
        self, atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0, unpaired: int | None = None
    ) -> Label:
        """``unpaired`` electrons (tblite's ``uhf``); None lets tblite take the lowest spin the electron count allows
        (closed shell for the neutral molecules we label, a doublet for a radical)."""
        from tblite.interface import Calculator

        numbers = np.asarray(atomic_numbers, dtype=np.int32)
        try:
            calc = Calculator("GFN2-xTB", numbers, np.asarray(positions, dtype=np.float64) / BOHR_ANGSTROM,
                              charge=charge, uhf=unpaired)
            calc.set("verbosity", 0)
            calc.set("accuracy", self.accuracy)
            calc.set("max-iter", self.max_iterations)
            calc.set("temperature", self.electronic_temperature * 3.166808578545117e-06)  # K -> Hartree
            result = calc.singlepoint()
            energy = float(result.get("energy")) * HARTREE_EV
            forces = -np.asarray(result.get("gradient")) * (HARTREE_EV / BOHR_ANGSTROM)
        except RuntimeError as exc:
            raise OracleFailure(f"GFN2-xTB failed: {str(exc).strip() or 'SCF did not converge'}") from exc
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise OracleFailure("GFN2-xTB returned non-finite energy or forces")
        return Label(energy=energy, forces=forces.astype(np.float64))


_SHELLS = ((1, "s"), (2, "s"), (2, "p"), (3, "s"), (3, "p"), (4, "s"), (3, "d"), (4, "p"), (5, "s"), (4, "d"),
           (5, "p"), (6, "s"), (4, "f"), (5, "d"), (6, "p"), (7, "s"), (5, "f"), (6, "d"), (7, "p"))
_CAPACITY = {"s": 2, "p": 6, "d": 10, "f": 14}


def unpaired_electrons(z: int) -> int:
    """Unpaired electrons of a free neutral atom in its ground state by the Aufbau order and Hund's rule (H 1, C 2,
    N 3, O 2, F 1, S 2, Cl 1; the few transition-metal exceptions such as Cr and Cu are not modelled)."""
    left = int(z)
    open_shell = 0
    for _, kind in _SHELLS:
        cap = _CAPACITY[kind]
        n = min(left, cap)
        left -= n
        if n:
            open_shell = n if n <= cap // 2 else cap - n
        if left == 0:
            break
    return open_shell


@cache
def isolated_atom_energy(z: int) -> float:
    """GFN2-xTB total energy (eV) of the free neutral atom ``z`` in its high-spin ground state, computed once per
    process (a few milliseconds). Why: these are the physical per-element references of GFN2-xTB energies, so a
    training set that cannot determine an element's energy by itself (two molecules of one composition) still
    has a sensible prior (:func:`mlipdiv.training.reference.fit_element_energies`).

    Raises:
        OracleFailure: the SCF of the atom failed.
    """
    return GFN2xTB()(np.array([int(z)]), np.zeros((1, 3)), unpaired=unpaired_electrons(z)).energy


ORACLES: Registry[type] = Registry("QM engine", normalize=str.lower)
ORACLES.register("gfn2-xtb", GFN2xTB)


def get_oracle(name: str = "gfn2-xtb") -> Oracle:
    """A new engine called ``name`` (case-insensitive); :class:`~mlipdiv.errors.UnknownName` lists the known ones."""
    return ORACLES.get(name)()
