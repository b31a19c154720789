"""Thermal sampling around a relaxed conformer.

* Normal-mode sampling (NMS) as in ANI-1 (Smith, Isayev, Roitberg, Chem. Sci. 2017): with the GFN2-xTB Hessian's
  normal modes q_i (Cartesian, unit length) and force constants K_i, draw c_i ~ U[0, 1] for the N_f internal modes,
  rescale them so that sum(c_i) = u with u ~ U[0, 1], and displace by
  sum_i s_i * sqrt(3 c_i N_a k_B T / K_i) q_i with random signs s_i (N_a = number of atoms).
  The Hessian comes from forward differences of oracle forces (3N + 1 gradients per parent): accurate enough to
  sample with, and it is only used for sampling, never stored as a label. The six (five for a linear molecule)
  rigid-body motions are projected out exactly; force constants below ``K_FLOOR`` (soft torsions, or negative at
  a loosely relaxed geometry) are raised to it so no mode gets an unbounded amplitude.
* Langevin MD through ASE at temperature T: a short trajectory per parent, one snapshot every ``MD_STRIDE`` steps
  after ``MD_WARMUP`` steps.

A sampled geometry whose bonds broke or formed is rejected by the caller and replaced by another sample.
"""

from __future__ import annotations

import numpy as np

from mlipdiv.data.oracle import Oracle

KB_EV = 8.617333262e-5  # Boltzmann constant, eV/K
HESSIAN_STEP = 0.005  # angstrom, forward differences
K_FLOOR = 0.1  # eV/angstrom^2: smallest force constant used for a mode
MD_TIMESTEP_FS = 0.5
MD_FRICTION_PER_FS = 0.02
MD_WARMUP = 50
MD_STRIDE = 20


def hessian(atomic_numbers: np.ndarray, positions: np.ndarray, oracle: Oracle,
            step: float = HESSIAN_STEP, forces0: np.ndarray | None = None) -> np.ndarray:
    """(3N, 3N) Cartesian Hessian in eV/angstrom^2 from forward differences of oracle forces, symmetrised.

    Costs 3N oracle calls (plus one if ``forces0`` is not given). Raises :class:`OracleFailure`.
    """
    x0 = np.asarray(positions, dtype=float)
    n = len(x0)
    if forces0 is None:
        forces0 = oracle(atomic_numbers, x0).forces
    g0 = -np.asarray(forces0, dtype=float).reshape(-1)
    h = np.empty((3 * n, 3 * n))
    for k in range(3 * n):
        x = x0.copy().reshape(-1)
        x[k] += step
        g = -np.asarray(oracle(atomic_numbers, x.reshape(n, 3)).forces, dtype=float).reshape(-1)
        h[k] = (g - g0) / step
    return 0.5 * (h + h.T)


def rigid_body_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3N, k) of translations and rotations in mass-weighted coordinates (k = 5 or 6)."""
    x = np.asarray(positions, dtype=float)
    com = (masses[:, None] * x).sum(0) / masses.sum()
    r = x - com
    sq = np.sqrt(masses)
    vecs = []
    for a in range(3):
        t = np.zeros_like(x)
        t[:, a] = sq
        vecs.append(t.reshape(-1))
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        vecs.append((np.cross(e, r) * sq[:, None]).reshape(-1))
    u, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    return u[:, s > 1e-2 * s.max()]  # an axial "rotation" of a (nearly) linear molecule is no motion


def normal_modes(positions: np.ndarray, masses: np.ndarray, hess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Internal normal modes: ``(modes, K)`` with modes (N_f, N, 3) Cartesian unit vectors and force constants
    K (N_f,) in eV/angstrom^2 (not floored). Rigid-body motions are excluded exactly."""
    n = len(positions)
    inv_sq = 1.0 / np.sqrt(np.repeat(masses, 3))
    h_mw = hess * inv_sq[:, None] * inv_sq[None, :]
    rigid = rigid_body_basis(positions, masses)
    # orthonormal complement of the rigid-body space
    q, _ = np.linalg.qr(np.hstack([rigid, np.eye(3 * n)]))
    internal = q[:, rigid.shape[1]: 3 * n]
    lam, w = np.linalg.eigh(internal.T @ h_mw @ internal)
    v = internal @ w  # mass-weighted eigenvectors (3N, N_f)
    d = v * inv_sq[:, None]  # Cartesian displacement directions
    norms = np.linalg.norm(d, axis=0)
    modes = (d / norms).T.reshape(-1, n, 3)
    k = lam / norms**2  # q^T H q for the unit Cartesian mode q = d/|d|
    return modes, k


class NormalModeSampler:
    """Draws NMS geometries around one parent (positions in angstrom)."""

    def __init__(self, positions: np.ndarray, atomic_numbers: np.ndarray, hess: np.ndarray, temperature: float):
        from ase.data import atomic_masses

        self.positions = np.asarray(positions, dtype=float)
        masses = atomic_masses[np.asarray(atomic_numbers)]
        self.modes, k = normal_modes(self.positions, masses, hess)
        self.k_raw = k
        self.k = np.maximum(k, K_FLOOR)
        self.temperature = float(temperature)
        self.n_atoms = len(self.positions)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        nf = len(self.k)
        c = rng.random(nf)
        c = c / c.sum() * rng.random()
        sign = rng.choice([-1.0, 1.0], size=nf)
        amp = sign * np.sqrt(3.0 * c * self.n_atoms * KB_EV * self.temperature / self.k)
        return self.positions + np.tensordot(amp, self.modes, axes=1)


def md_snapshots(atomic_numbers: np.ndarray, positions: np.ndarray, oracle: Oracle, temperature: float,
                 n_snapshots: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_snapshots`` geometries of a Langevin trajectory started at the parent with Maxwell-Boltzmann velocities.

    The trajectory is fully determined by ``rng`` (velocities and Langevin noise); calling again gives a fresh
    trajectory (used to replace rejected snapshots). Raises :class:`OracleFailure` if a force call fails.
    """
    from ase import Atoms, units
    from ase.md.langevin import Langevin
    from ase.constraints import FixCom
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    from mlipdiv.data.conformers import OracleCalculator

    atoms = Atoms(numbers=atomic_numbers, positions=np.asarray(positions, dtype=float))
    atoms.calc = OracleCalculator(oracle)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, MD_TIMESTEP_FS * units.fs, temperature_K=temperature,
                   friction=MD_FRICTION_PER_FS / units.fs, rng=rng, fixcm=False)
    dyn.run(MD_WARMUP)
    out = []
    for _ in range(n_snapshots):
        dyn.run(MD_STRIDE)
        out.append(atoms.positions.copy())
    return out
