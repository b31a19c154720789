"""An ASE calculator for a trained run: energy and forces of any isolated molecule made of supported elements.

    from mlipdiv.calculator import MLIPCalculator
    atoms.calc = MLIPCalculator.from_run("runs/my-run")
    atoms.get_potential_energy()  # eV
    atoms.get_forces()            # eV/angstrom

Use it for relaxations (``ase.optimize.BFGS``) or molecular dynamics. The model was trained on isolated molecules:
periodic cells are refused, and so are elements the training set did not contain, non-finite positions and
structures of more than :data:`~mlipdiv.limits.MAX_ATOMS_CALCULATOR` atoms. Within those limits a prediction
is only as good as the run's test metrics, and it degrades for geometries far from the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlipdiv.errors import MlipdivError
from mlipdiv.io.rundir import RunDir
from mlipdiv.limits import MAX_ATOMS_CALCULATOR
from mlipdiv.models.potential import Potential


class MLIPCalculator(Calculator):
    """ASE calculator around a :class:`~mlipdiv.models.Potential` (``energy``, ``free_energy``, ``forces``)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, potential: Potential, device: str | torch.device = "cpu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.potential = potential.to(self.device).eval()

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "cpu") -> MLIPCalculator:
        """Load the run folder's ``model.pt`` (:attr:`RunDir.model_path`, with ``weights_only=True``)."""
        path = RunDir(run_dir).model_path
        if not path.exists():
            raise MlipdivError(f"{run_dir}: no {path.name}; is this a finished training run?")
        return cls(Potential.load(path), device=device)

    @property
    def elements(self) -> list[int]:
        return list(self.potential.elements)

    def calculate(self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.atoms is None:  # neither passed nor attached (ASE leaves it None)
            raise MlipdivError("no atoms to compute: pass them or attach the calculator to them")
        if self.atoms.pbc.any():
            raise MlipdivError("this potential was trained on isolated molecules; periodic cells are not supported")
        n = len(self.atoms)
        if n > MAX_ATOMS_CALCULATOR:
            raise MlipdivError(
                f"{self.atoms.get_chemical_formula()}: {n} atoms; the calculator takes at most {MAX_ATOMS_CALCULATOR} "
                "atoms per call (MAX_ATOMS_CALCULATOR in mlipdiv/limits.py)"
            )
        if n == 0:
            raise MlipdivError("no atoms to compute")
        positions = self.atoms.get_positions()
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        if len(bad):
            raise MlipdivError(
                f"{len(bad)} atom(s) have non-finite positions (first: atom {bad[0]}); a diverged relaxation or MD "
                "run? Restart it from finite coordinates"
            )
        z = torch.as_tensor(self.atoms.get_atomic_numbers(), dtype=torch.long, device=self.device)
        dtype = next(self.potential.parameters()).dtype
        pos = torch.as_tensor(positions, dtype=dtype, device=self.device)
        energy, forces = self.potential(z, pos)
        e = float(energy[0])
        self.results = {"energy": e, "free_energy": e, "forces": forces.cpu().numpy().astype(np.float64)}
