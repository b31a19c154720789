"""The interaction graph: every pair of atoms of the same molecule closer than a cutoff.

Molecules here are small (< 40 atoms) and never periodic, so the candidate pairs of a batch are simply all pairs
inside each molecule. Those depend only on each molecule's atom count, never on its geometry, so they are tabulated
once (:class:`PairTable`) and gathered per batch with a few vectorised index operations; :func:`build_graph` then
computes the distances and drops the pairs beyond the cutoff. Training goes one step further: a dataset's geometries
never move, so :func:`mlipdiv.training.data.pack` keeps each conformer's pairs within the cutoff once, and each
step only recomputes the (differentiable) edge vectors.

Edges are stored *symmetrically*: the first half holds each kept pair once, source ``i`` < target ``j``, the second
half the same pairs reversed. Models whose edge filters depend only on the distance (SchNet, PaiNN) evaluate the
filter on the first half and reuse it for the second, halving their most expensive step.

Convention (as in PyG): ``edge_index[0]`` is the source ``j``, ``edge_index[1]`` the target ``i`` whose features are
updated; ``vec = pos[edge_index[1]] - pos[edge_index[0]]``, ``dist = |vec|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

try:  # optional compiled radius graph, used by :class:`RadiusInteractionGraph` when present
    from torch_cluster import radius_graph as _cluster_radius_graph
except ImportError:  # pragma: no cover - depends on the machine
    _cluster_radius_graph = None


@dataclass
class Graph:
    """One batch of molecules as the models consume it.

    Attributes:
        z: (n_atoms,) atomic numbers, long.
        pos: (n_atoms, 3) positions in angstrom (requires grad when forces are wanted).
        batch: (n_atoms,) molecule index of each atom, sorted.
        num_graphs: number of molecules in the batch.
        edge_index: (2, 2 * n_half) symmetric edges, see the module docstring.
        vec: (2 * n_half, 3) ``pos[target] - pos[source]``.
        dist: (2 * n_half,) edge lengths, all below the cutoff.
    """

    z: Tensor
    pos: Tensor
    batch: Tensor
    num_graphs: int
    edge_index: Tensor
    vec: Tensor
    dist: Tensor

    @property
    def n_half(self) -> int:
        return self.edge_index.shape[1] // 2

    @property
    def ptr(self) -> Tensor:
        """(num_graphs + 1,) atom offsets of the molecules (atoms of one molecule are contiguous)."""
        counts = torch.bincount(self.batch, minlength=self.num_graphs)
        return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


class PairTable:
    """All unordered pairs ``(i, j)``, ``i < j``, of an ``n``-atom molecule, for every ``n`` up to a maximum.

    ``pairs[:, start[n] : start[n] + n * (n - 1) // 2]`` are the pairs of an ``n``-atom molecule, in local atom indices.
    """

    def __init__(self, max_atoms: int, device: torch.device | str = "cpu") -> None:
        blocks, starts, total = [], [0], 0
        for n in range(max_atoms + 1):
            i, j = torch.triu_indices(n, n, offset=1)
            blocks.append(torch.stack([i, j]))
            total += i.numel()
            starts.append(total)
        self.max_atoms = max_atoms
        self.pairs = torch.cat(blocks, dim=1).to(device)
        self.start = torch.tensor(starts[:-1], dtype=torch.long, device=device)

    def batch_pairs(self, n_atoms: Tensor, atom_offset: Tensor) -> Tensor:
        """(2, n_pairs) candidate pairs of a batch, in batch atom indices (source < target).

        Args:
            n_atoms: (n_graphs,) atom count of each molecule of the batch.
            atom_offset: (n_graphs,) index of each molecule's first atom in the batch.
        """
        if len(n_atoms) and int(n_atoms.max()) > self.max_atoms:
            raise ValueError(f"a molecule has {int(n_atoms.max())} atoms; this pair table stops at {self.max_atoms}")
        index, graph = ranges(self.start[n_atoms], n_atoms * (n_atoms - 1) // 2)
        return self.pairs[:, index] + atom_offset[graph]


def ranges(starts: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenated ``arange(starts[k], starts[k] + counts[k])`` and, for each element, its ``k`` (vectorised)."""
    group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return starts[group] + torch.arange(group.numel(), device=counts.device) - first[group], group


_TABLES: dict[tuple[int, str], PairTable] = {}


def pair_table(max_atoms: int, device: torch.device | str = "cpu") -> PairTable:
    """A shared :class:`PairTable` covering at least ``max_atoms`` (rounded up to a multiple of 16)."""
    size = max(16, -(-max_atoms // 16) * 16)
    key = (size, str(device))
    if key not in _TABLES:
        _TABLES[key] = PairTable(size, device)
    return _TABLES[key]


def candidate_pairs(batch: Tensor, num_graphs: int | None = None) -> Tensor:
    """(2, n_pairs) all intra-molecule pairs ``i < j`` of a batch vector (atoms of a molecule contiguous)."""
    n_atoms = torch.bincount(batch, minlength=num_graphs or 0)
    offset = torch.cumsum(n_atoms, 0) - n_atoms
    return pair_table(int(n_atoms.max()) if len(n_atoms) else 0, batch.device).batch_pairs(n_atoms, offset)


def build_graph(
    z: Tensor, pos: Tensor, batch: Tensor, num_graphs: int, pairs: Tensor, cutoff: float | None
) -> Graph:
    """The symmetric edge set of the ``pairs`` (source < target) closer than ``cutoff``.

    ``cutoff=None`` means the pairs are known to be within the cutoff already (the training data's fixed geometries:
    see :func:`mlipdiv.training.data.pack`); only their vectors and lengths are computed, differentiably.
    """
    src, dst = pairs
    vec = pos.index_select(0, dst) - pos.index_select(0, src)  # index_select: its backward is a fast index_add
    dist = torch.linalg.vector_norm(vec, dim=-1)
    if cutoff is not None:
        keep = dist < cutoff
        src, dst, vec, dist = src[keep], dst[keep], vec[keep], dist[keep]
    return Graph(
        z=z,
        pos=pos,
        batch=batch,
        num_graphs=num_graphs,
        edge_index=torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]),
        vec=torch.cat([vec, -vec]),
        dist=torch.cat([dist, dist]),
    )


class RadiusInteractionGraph(torch.nn.Module):
    """PyG's ``interaction_graph`` interface, ``(pos, batch) -> (edge_index, edge_weight)``, without pyg-lib.

    Uses ``torch_cluster.radius_graph`` when that extension is importable, else the pure-torch intra-molecule pairs
    above. Edges run both ways; ``edge_weight`` is the distance. Used when a PyG model is called directly (the
    training loop hands models a prebuilt :class:`Graph` instead).
    """

    def __init__(self, cutoff: float = 5.0, max_num_neighbors: int = 1024) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.max_num_neighbors = max_num_neighbors

    def forward(self, pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        if _cluster_radius_graph is not None:  # pragma: no cover - the extension is not installed here
            edge_index = _cluster_radius_graph(
                pos, r=self.cutoff, batch=batch, max_num_neighbors=self.max_num_neighbors
            )
            src, dst = edge_index
            return edge_index, torch.linalg.vector_norm(pos[dst] - pos[src], dim=-1)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        g = build_graph(batch, pos, batch, num_graphs, candidate_pairs(batch, num_graphs), self.cutoff)
        return g.edge_index, g.dist
