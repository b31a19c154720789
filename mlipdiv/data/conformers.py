"""Distinct conformers: RDKit ETKDGv3 embedding (seeded), MMFF pre-optimisation, RMSD pruning, then relaxation
with MMFF or GFN2-xTB (through an ASE optimizer driving the oracle).

Distinctness is judged by a symmetry-aware RMSD over heavy atoms plus hydrogens on N, O and S (so an OH rotamer
counts, a methyl rotation does not). A relaxed geometry whose bonds broke or formed (proton transfer, ring
opening) is rejected: its labels would belong to another molecule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlipdiv.data.oracle import Oracle, OracleFailure

RMSD_THRESHOLD = 0.3  # angstrom: conformers closer than this are the same
XTB_FMAX = 0.05  # eV/angstrom: loose, the relaxed structure only seeds thermal sampling
XTB_MAX_STEPS = 100
BOND_STRETCH_MAX = 1.5  # a bonded pair longer than this times the sum of covalent radii is broken
NONBONDED_MIN = 1.0  # a non-bonded pair shorter than this times the sum of covalent radii is a new bond


class EmbeddingFailure(Exception):
    """RDKit could not produce any 3D structure."""


@dataclass
class Parent:
    """A distinct relaxed conformer: positions (angstrom, float64) and how it was relaxed."""

    positions: np.ndarray
    relax: str
    converged: bool
    steps: int


def rdkit_molecule(smiles: str):
    """RDKit molecule with explicit hydrogens (atom order = the order of ``atomic_numbers`` in the dataset)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    return Chem.AddHs(mol)


def embed(mol, n_conformers: int, seed: int) -> list[int]:
    """ETKDGv3 conformer ids (seeded; falls back to random starting coordinates). Empty list when it fails."""
    from rdkit.Chem import rdDistGeom  # what AllChem re-exports; its stubs miss the star import

    # Any: RDKit's stubs declare EmbedParameters' setters as (*args, **kwargs), so no value is assignable
    params: Any = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.pruneRmsThresh = -1.0  # RDKit prunes on heavy atoms only, which would merge OH rotamers; we prune later
    params.numThreads = 1
    cids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not cids:
        params.useRandomCoords = True
        cids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    return cids


def mmff_optimize(mol) -> np.ndarray:
    """MMFF94-optimise every conformer in place; returns MMFF energies (kcal/mol; +inf if MMFF has no parameters)."""
    from rdkit.Chem import rdForceFieldHelpers as ff  # what AllChem re-exports; its stubs miss the star import

    if not ff.MMFFHasAllMoleculeParams(mol):
        try:
            res = ff.UFFOptimizeMoleculeConfs(mol, maxIters=2000, numThreads=1)
            return np.array([e for _, e in res], dtype=float)
        except Exception:  # noqa: BLE001 - no force field at all: keep the embedded geometry
            return np.zeros(mol.GetNumConformers())
    res = ff.MMFFOptimizeMoleculeConfs(mol, maxIters=2000, numThreads=1)
    return np.array([e for _, e in res], dtype=float)


def _rmsd_view(mol):
    """Copy of ``mol`` without hydrogens bound to carbon (conformers kept), for distinctness tests."""
    from rdkit import Chem

    rw = Chem.RWMol(mol)
    drop = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 1 and a.GetNeighbors()[0].GetAtomicNum() == 6]
    for idx in sorted(drop, reverse=True):
        rw.RemoveAtom(idx)
    view = rw.GetMol()
    view.UpdatePropertyCache(strict=False)
    return view, [a.GetIdx() for a in mol.GetAtoms() if a.GetIdx() not in set(drop)]


def distinct_rmsd(mol, positions_a: np.ndarray, positions_b: np.ndarray) -> float:
    """Symmetry-aware RMSD (angstrom) between two geometries of ``mol`` over heavy atoms and polar hydrogens."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign
    from rdkit.Geometry import Point3D

    view, keep = _rmsd_view(mol)
    view.RemoveAllConformers()
    ids = []
    for pos in (positions_a, positions_b):
        conf = Chem.Conformer(view.GetNumAtoms())
        for new, old in enumerate(keep):
            conf.SetAtomPosition(new, Point3D(*map(float, pos[old])))
        ids.append(view.AddConformer(conf, assignId=True))
    if view.GetNumAtoms() < 3:
        a, b = positions_a[keep], positions_b[keep]
        return float(abs(np.linalg.norm(a[0] - a[-1]) - np.linalg.norm(b[0] - b[-1])))
    return float(rdMolAlign.GetBestRMS(view, view, ids[0], ids[1], maxMatches=2000))


def connectivity_ok(mol, positions: np.ndarray) -> bool:
    """True if every bond of ``mol`` is intact and no new bond formed (covalent-radius criteria)."""
    from ase.data import covalent_radii

    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    r = covalent_radii[z]
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    limit = r[:, None] + r[None, :]
    bonded = np.zeros_like(d, dtype=bool)
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonded[i, j] = bonded[j, i] = True
    np.fill_diagonal(bonded, True)  # the diagonal is neither tested as bond nor as clash
    if (d[bonded & ~np.eye(len(z), dtype=bool)] > BOND_STRETCH_MAX * limit[bonded & ~np.eye(len(z), dtype=bool)]).any():
        return False
    return not (d[~bonded] < NONBONDED_MIN * limit[~bonded]).any()


class OracleCalculator:
    """Factory for an ASE calculator backed by an :class:`Oracle` (lazily built so ASE stays an optional import)."""

    def __new__(cls, oracle: Oracle, charge: int = 0):
        from ase.calculators.calculator import Calculator, all_changes

        class _Calc(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                current = self.atoms
                assert current is not None  # Calculator.calculate has set it (from ``atoms`` or before)
                label = oracle(current.numbers, current.positions, charge)
                self.results = {"energy": label.energy, "forces": np.asarray(label.forces)}

        return _Calc()


def xtb_relax(atomic_numbers: np.ndarray, positions: np.ndarray, oracle: Oracle,
              fmax: float = XTB_FMAX, steps: int = XTB_MAX_STEPS) -> tuple[np.ndarray, bool, int]:
    """Relax with the oracle via ASE's BFGS; returns (positions, converged, steps). Raises OracleFailure."""
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=atomic_numbers, positions=np.asarray(positions, dtype=float))
    atoms.calc = OracleCalculator(oracle)
    opt = BFGS(atoms, logfile=None, maxstep=0.2)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return atoms.positions.copy(), converged, int(opt.nsteps)


def distinct_conformers(mol, n_parents: int, seed: int, relax: str, oracle: Oracle,
                        notes: list[str] | None = None) -> list[Parent]:
    """Up to ``n_parents`` distinct relaxed conformers of ``mol`` (an RDKit molecule with hydrogens).

    Embeds ``4 * n_parents + 4`` ETKDGv3 conformers, MMFF-optimises them, keeps RMSD-distinct ones in order of
    MMFF energy, then relaxes them (``relax="xtb"``: GFN2-xTB via ASE BFGS; ``"mmff"``: the MMFF minimum as is)
    and keeps those still distinct and with intact connectivity. Fewer than ``n_parents`` is a truthful answer for
    a rigid molecule. Raises :class:`EmbeddingFailure` if RDKit cannot embed it at all.
    """
    notes = notes if notes is not None else []
    cids = embed(mol, 4 * n_parents + 4, seed)
    if not cids:
        raise EmbeddingFailure("RDKit ETKDGv3 could not embed a 3D structure")
    energies = mmff_optimize(mol)
    order = np.argsort(energies, kind="stable")
    candidates: list[np.ndarray] = []
    for k in order:
        pos = mol.GetConformer(cids[int(k)]).GetPositions()
        if not connectivity_ok(mol, pos):
            continue
        if all(distinct_rmsd(mol, pos, c) > RMSD_THRESHOLD for c in candidates):
            candidates.append(pos)
    if not candidates:
        raise EmbeddingFailure("no embedded structure kept its bonds after force-field optimisation")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    parents: list[Parent] = []
    for pos in candidates[: 2 * n_parents]:
        if len(parents) == n_parents:
            break
        if relax == "xtb":
            try:
                pos, converged, steps = xtb_relax(z, pos, oracle)
            except OracleFailure as exc:
                notes.append(f"relaxation failed: {exc}")
                continue
        elif relax == "mmff":
            converged, steps = True, 0
        else:
            raise ValueError(f"unknown relaxation {relax!r}")
        if not connectivity_ok(mol, pos):
            notes.append("a conformer changed its bonds during relaxation and was dropped")
            continue
        if all(distinct_rmsd(mol, pos, p.positions) > RMSD_THRESHOLD for p in parents):
            parents.append(Parent(positions=pos, relax=relax, converged=converged, steps=steps))
    return parents
