"""The GFN2-xTB oracle: forces are the exact negative gradient, failures are reported, never stored."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.data.oracle import GFN2xTB, OracleFailure, get_oracle
from mlipdiv.errors import MlipdivError


def _ethanol(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from rdkit.Chem import AllChem

    from mlipdiv.data.conformers import rdkit_molecule

    mol = rdkit_molecule("CCO")
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    x = mol.GetConformer().GetPositions() + np.random.default_rng(seed).normal(0.0, 0.05, (len(z), 3))
    return z, x


def test_forces_are_minus_energy_gradient() -> None:
    z, x = _ethanol()
    oracle = GFN2xTB()
    label = oracle(z, x)
    assert np.abs(label.forces).max() > 0.1  # a distorted geometry: the check is not trivially zero == zero
    h = 1e-3
    fd = np.zeros_like(x)
    for i in range(len(z)):
        for a in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, a] += h
            xm[i, a] -= h
            fd[i, a] = -(oracle(z, xp).energy - oracle(z, xm).energy) / (2 * h)
    np.testing.assert_allclose(label.forces, fd, atol=5e-4)  # eV/angstrom; central differences, O(h^2)


def test_energy_is_in_ev_and_translation_invariant() -> None:
    z, x = _ethanol()
    oracle = GFN2xTB()
    a, b = oracle(z, x), oracle(z, x + np.array([1.0, -2.0, 0.5]))
    assert -1000.0 < a.energy < -200.0  # GFN2-xTB total energy of ethanol is about -310 eV (-11.4 hartree)
    assert abs(a.energy - b.energy) < 1e-6
    np.testing.assert_allclose(a.forces.sum(axis=0), 0.0, atol=1e-6)  # no net force


def test_scf_failure_is_an_oracle_failure() -> None:
    z, x = _ethanol()
    with pytest.raises(OracleFailure, match="not converged"):
        GFN2xTB(max_iterations=2)(z, x)


def test_oracle_registry() -> None:
    assert get_oracle("GFN2-xTB").level_of_theory == "GFN2-xTB"
    with pytest.raises(MlipdivError, match="unknown QM engine"):
        get_oracle("dft-in-a-box")


def test_normal_modes_exclude_rigid_body_motion() -> None:
    from ase.data import atomic_masses

    from mlipdiv.data.sampling import normal_modes, rigid_body_basis

    z, x = _ethanol()
    masses = atomic_masses[z]
    assert rigid_body_basis(x, masses).shape == (3 * len(z), 6)
    linear = np.array([[0.0, 0.0, -1.16], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]])
    assert rigid_body_basis(linear, atomic_masses[[8, 6, 8]]).shape == (9, 5)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3 * len(z), 3 * len(z)))
    modes, k = normal_modes(x, masses, a @ a.T)
    assert modes.shape == (3 * len(z) - 6, len(z), 3)
    np.testing.assert_allclose(np.linalg.norm(modes.reshape(len(modes), -1), axis=1), 1.0)
    # no mode moves the centre of mass
    com_shift = np.einsum("i,kia->ka", masses, modes)
    np.testing.assert_allclose(com_shift, 0.0, atol=1e-8)


def test_independent_verification_of_stored_labels(tiny_dataset_path, capsys) -> None:
    from mlipdiv.io.hdf5 import read_hdf5
    from mlipdiv.data.verify import main, verify

    result = verify(read_hdf5(tiny_dataset_path), sample=3, seed=1)
    assert result["checked"] == 3 and result["ok"]
    assert result["max_energy_error_eV"] < 1e-4 and result["max_force_error_eV_per_A"] < 1e-3
    assert main([str(tiny_dataset_path), "--sample", "2"]) == 0
    assert "OK" in capsys.readouterr().out
