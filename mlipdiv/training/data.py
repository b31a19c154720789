"""A split packed once into flat device tensors; batches are gathered by index, with no per-sample Python work.

Atoms of every conformer are concatenated: ``z``, ``pos``, ``forces`` have one row per atom, ``atom_start[k]`` and
``n_atoms[k]`` locate conformer ``k``. The geometries of a dataset never move, so neither does their interaction
graph: the pairs closer than the cutoff are found once when packing (with the cell list of
:func:`~mlipdiv.models.graph.radius_pairs`) and stored per conformer like the atoms
(``edges``, ``edge_start``, ``n_edges``). A batch of conformer indices becomes atom indices, a batch vector and its
edges in a handful of vectorised operations; each step only recomputes the (differentiable) edge vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mlipdiv.errors import TrainingError
from mlipdiv.io.dataset import Dataset
from mlipdiv.limits import MAX_ATOMS_TRAIN
from mlipdiv.models.graph import radius_pairs, ranges


@dataclass
class Batch:
    """Conformers ``index`` of a :class:`PackedSplit`, ready for :meth:`mlipdiv.models.Potential.residual`."""

    index: Tensor  # (n_graphs,) conformer indices into the split
    z: Tensor  # (n_atoms,)
    pos: Tensor  # (n_atoms, 3)
    forces: Tensor  # (n_atoms, 3)
    batch: Tensor  # (n_atoms,)
    pairs: Tensor  # (2, n_pairs) the pairs closer than the cutoff, source < target
    n_atoms: Tensor  # (n_graphs,) float, for per-atom energies
    residual: Tensor  # (n_graphs,) target energy minus element references, eV
    num_graphs: int


@dataclass
class PackedSplit:
    """One split's conformers on a device.

    Host-side (numpy): ``mol_id``, ``conf_idx``, ``energy`` (float64 total eV), ``n_atoms_host`` and
    ``atom_z_host`` (each conformer's atomic numbers, from which the reference fit builds its composition matrix).
    Device-side: the atom arrays, ``n_atoms``, ``atom_start`` and, once
    :meth:`set_reference` has run, ``residual`` (float32).
    """

    name: str
    mol_id: np.ndarray
    conf_idx: np.ndarray
    energy: np.ndarray
    n_atoms_host: np.ndarray
    atom_z_host: list[np.ndarray]
    z: Tensor
    pos: Tensor
    forces: Tensor
    n_atoms: Tensor
    atom_start: Tensor
    edges: Tensor  # (2, n_edges) pairs within the cutoff, atom indices local to their conformer
    n_edges: Tensor
    edge_start: Tensor
    residual: Tensor | None = None
    reference: np.ndarray | None = None
    _cache: dict[int, list[Batch]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.energy)

    @property
    def device(self) -> torch.device:
        return self.pos.device

    def elements(self) -> list[int]:
        return sorted({int(e) for z in self.atom_z_host for e in np.unique(z)})

    def set_reference(self, reference: np.ndarray) -> None:
        """Per-conformer reference energies (float64, eV); the model's target is ``energy - reference``."""
        self.reference = np.asarray(reference, dtype=np.float64)
        self.residual = torch.as_tensor(self.energy - self.reference, dtype=torch.float32, device=self.device)
        self._cache.clear()

    def batch(self, index: Tensor) -> Batch:
        assert self.residual is not None, "set_reference() first"
        n = self.n_atoms[index]
        atoms, graph = ranges(self.atom_start[index], n)
        edges, edge_graph = ranges(self.edge_start[index], self.n_edges[index])
        offset = torch.cumsum(n, 0) - n
        return Batch(
            index=index,
            z=self.z[atoms],
            pos=self.pos[atoms],
            forces=self.forces[atoms],
            batch=graph,
            pairs=self.edges[:, edges] + offset[edge_graph],
            n_atoms=n.to(self.pos.dtype),
            residual=self.residual[index],
            num_graphs=len(index),
        )

    def batches(self, size: int) -> list[Batch]:
        """The split in order, in batches of ``size``, built once and cached (evaluation reuses them every epoch)."""
        if size not in self._cache:
            order = torch.arange(len(self), device=self.device)
            self._cache[size] = [self.batch(order[i : i + size]) for i in range(0, len(self), size)]
        return self._cache[size]


def pack(
    dataset: Dataset, pairs: list[tuple[str, int]], name: str, device: torch.device | str, cutoff: float
) -> PackedSplit:
    """Pack the conformers ``pairs`` (``(molecule_id, conformer_index)``, order kept) of ``dataset`` onto ``device``,
    with each conformer's atom pairs closer than ``cutoff`` (angstrom).

    Raises:
        TrainingError: a molecule has more than :data:`~mlipdiv.limits.MAX_ATOMS_TRAIN` atoms (checked first, before
            anything is allocated: training memory grows with the molecule size).
    """
    for mol_id in dict.fromkeys(m for m, _ in pairs):
        size = dataset[mol_id].n_atoms
        if size > MAX_ATOMS_TRAIN:
            raise TrainingError(
                f"molecule {mol_id} ({dataset[mol_id].smiles}) has {size} atoms; training takes at most "
                f"{MAX_ATOMS_TRAIN} atoms per molecule (MAX_ATOMS_TRAIN in mlipdiv/limits.py): "
                "remove it from the dataset"
            )
    mol_ids, conf, energy, n_atoms, zs, pos, forces = [], [], [], [], [], [], []
    for mol_id, j in pairs:
        mol = dataset[mol_id]
        mol_ids.append(mol_id)
        conf.append(int(j))
        energy.append(mol.energy[j])
        n_atoms.append(mol.n_atoms)
        zs.append(mol.atomic_numbers)
        pos.append(mol.positions[j])
        forces.append(mol.forces[j])
    n = np.asarray(n_atoms, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64) if len(n) else np.zeros(0, np.int64)

    def flat(arrays: list[np.ndarray], width: int, dtype: type) -> Tensor:
        data = np.concatenate(arrays) if arrays else np.zeros((0, width) if width else 0, dtype)
        return torch.as_tensor(data.astype(dtype), device=device)

    z_all, pos_all = flat(zs, 0, np.int64), flat(pos, 3, np.float32)
    n_dev, start_dev = torch.as_tensor(n, device=device), torch.as_tensor(start, device=device)
    # the pairs within the cutoff of every conformer at once (a cell list: memory grows with those pairs only)
    conformer_of_atom = torch.repeat_interleave(torch.arange(len(n), device=device), n_dev)
    within = radius_pairs(pos_all, conformer_of_atom, cutoff, len(n))
    conformer = conformer_of_atom[within[0]]
    n_edges = torch.bincount(conformer, minlength=len(n))
    return PackedSplit(
        name=name,
        mol_id=np.asarray(mol_ids, dtype=str),
        conf_idx=np.asarray(conf, dtype=np.int64),
        energy=np.asarray(energy, dtype=np.float64),
        n_atoms_host=n,
        atom_z_host=zs,
        z=z_all,
        pos=pos_all,
        forces=flat(forces, 3, np.float32),
        n_atoms=n_dev,
        atom_start=start_dev,
        edges=within - start_dev[conformer],
        n_edges=n_edges,
        edge_start=torch.cumsum(n_edges, 0) - n_edges,
    )
