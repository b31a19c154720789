"""The ASE calculator: loads a run's model.pt, matches the model, relaxes a molecule, refuses what it cannot do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.optimize import BFGS

from mlipdiv.calculator import MLIPCalculator
from mlipdiv.errors import MlipdivError
from mlipdiv.io.hdf5 import read_hdf5
from mlipdiv.models import Potential
from mlipdiv.training import TrainConfig, train


@pytest.fixture(scope="module")
def run_dir(tiny_dataset_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig.from_flat(dataset=str(tiny_dataset_path), budget=16, molecules=8, model="schnet", hidden=32,
                      interactions=2, epochs=2, batch_size=8, device="cpu")
    train(cfg, out)
    return out


def _molecule(tiny_dataset_path: Path, index: int = 0) -> tuple[Atoms, object]:
    mol = read_hdf5(tiny_dataset_path).molecules[index]
    return Atoms(numbers=mol.atomic_numbers, positions=mol.positions[0]), mol


def test_calculator_matches_the_model(run_dir: Path, tiny_dataset_path: Path) -> None:
    atoms, mol = _molecule(tiny_dataset_path)
    atoms.calc = MLIPCalculator.from_run(run_dir)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()

    pot = Potential.load(run_dir / "model.pt")
    e, f = pot(torch.as_tensor(mol.atomic_numbers), torch.as_tensor(mol.positions[0]))
    assert energy == pytest.approx(float(e[0]), abs=1e-9)
    assert np.allclose(forces, f.numpy(), atol=1e-6)
    # a total energy on the scale of the data (element references included), not a residual
    assert abs(energy - mol.energy[0]) < 0.1 * abs(mol.energy[0])
    # translating the molecule changes nothing; moving an atom changes the energy
    atoms.translate([3.0, -1.0, 2.0])
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-4)
    atoms.positions[0] += 0.1
    assert atoms.get_potential_energy() != pytest.approx(energy, abs=1e-6)


def test_calculator_relaxes_a_molecule(run_dir: Path, tiny_dataset_path: Path) -> None:
    atoms, _ = _molecule(tiny_dataset_path, 1)
    atoms.calc = MLIPCalculator.from_run(run_dir)
    atoms.rattle(stdev=0.1, seed=0)
    start, fmax = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    assert fmax > 0.05
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=5)
    assert atoms.get_potential_energy() < start


def test_calculator_refuses_unseen_elements_and_cells(run_dir: Path) -> None:
    calc = MLIPCalculator.from_run(run_dir)
    assert 35 not in calc.elements
    atoms = Atoms("CBr", positions=[[0, 0, 0], [1.9, 0, 0]])
    atoms.calc = calc
    with pytest.raises(MlipdivError, match="cannot predict Br"):
        atoms.get_potential_energy()
    periodic = Atoms("CH", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    periodic.calc = calc
    with pytest.raises(MlipdivError, match="periodic"):
        periodic.get_potential_energy()
    with pytest.raises(MlipdivError, match="no model.pt"):
        MLIPCalculator.from_run(run_dir / "missing")


def _small_calculator() -> MLIPCalculator:
    hparams = {"hidden": 8, "interactions": 1, "cutoff": 4.0, "elements": [1, 6], "avg_num_neighbors": 8.0}
    return MLIPCalculator(Potential("schnet", hparams, [-13.0, -40.0], 1.0))


def test_calculator_refuses_non_finite_positions() -> None:
    atoms = Atoms("CH2", positions=[[0, 0, 0], [1.1, 0, 0], [np.nan, 0.0, 0.0]])
    atoms.calc = _small_calculator()
    with pytest.raises(MlipdivError, match=r"non-finite positions \(first: atom 2\)"):
        atoms.get_potential_energy()


def test_calculator_refuses_more_atoms_than_its_limit(monkeypatch) -> None:
    import mlipdiv.calculator as calculator_module
    from mlipdiv.limits import MAX_ATOMS_CALCULATOR

    assert MAX_ATOMS_CALCULATOR >= 1000  # the documented limit (README, Limits) leaves room for real molecules
    monkeypatch.setattr(calculator_module, "MAX_ATOMS_CALCULATOR", 5)
    atoms = Atoms("C6", positions=np.arange(18.0).reshape(6, 3))
    atoms.calc = _small_calculator()
    with pytest.raises(MlipdivError, match="C6: 6 atoms; the calculator takes at most 5 atoms per call"):
        atoms.get_potential_energy()
    atoms = Atoms("C5", positions=np.arange(15.0).reshape(5, 3))
    atoms.calc = _small_calculator()
    assert np.isfinite(atoms.get_potential_energy())
