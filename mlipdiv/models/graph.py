"""The interaction graph: every pair of atoms of the same molecule closer than a cutoff.

Molecules are never periodic. :func:`radius_pairs` finds the pairs within the cutoff with a cell list (linked cells):
atoms are binned into cubes at least one cutoff wide, and only atoms of the same or adjacent cubes are compared, so
memory and time grow with the number of pairs within the cutoff, not with the square of the atom count (a table of
all pairs needs gigabytes beyond a thousand atoms). Its result is exactly the old all-pairs one: the same pairs,
found with the same distance expression, in the canonical order -- molecule by molecule, source ``i`` < target ``j``,
sorted by ``(i, j)``. :func:`candidate_pairs` (all intra-molecule pairs) remains as the brute-force reference for
small molecules. :func:`build_graph` computes the (differentiable) distances and drops pairs beyond the cutoff.
Training goes one step further: a dataset's geometries never move, so :func:`mlipdiv.training.data.pack` keeps each
conformer's pairs within the cutoff once, and each step only recomputes the edge vectors.

Edges are stored *symmetrically*: the first half holds each kept pair once, source ``i`` < target ``j``, the second
half the same pairs reversed. Models whose edge filters depend only on the distance (SchNet, PaiNN) evaluate the
filter on the first half and reuse it for the second, halving their most expensive step.

Convention (as in PyG): ``edge_index[0]`` is the source ``j``, ``edge_index[1]`` the target ``i`` whose features are
updated; ``vec = pos[edge_index[1]] - pos[edge_index[0]]``, ``dist = |vec|``.
"""

from __future__ import annotations

import math
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


def ranges(starts: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenated ``arange(starts[k], starts[k] + counts[k])`` and, for each element, its ``k`` (vectorised)."""
    group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return starts[group] + torch.arange(group.numel(), device=counts.device) - first[group], group


def candidate_pairs(batch: Tensor, num_graphs: int | None = None) -> Tensor:
    """(2, n_pairs) all intra-molecule pairs ``i < j`` of a batch vector (atoms of a molecule contiguous), in the
    canonical order. Memory grows with the square of the molecule size: the brute-force reference for small
    molecules and tests; use :func:`radius_pairs` otherwise."""
    n_atoms = torch.bincount(batch, minlength=num_graphs or 0)
    end = torch.cumsum(n_atoms, 0)[batch]  # one past the last atom of each atom's molecule
    atom = torch.arange(len(batch), device=batch.device)
    dst, src = ranges(atom + 1, end - atom - 1)
    return torch.stack([src, dst])


# Cells are this much wider than the cutoff, so that rounding in the binning can never separate two atoms closer than
# the cutoff by more than one cell; the exact distance test below decides.
_CELL_MARGIN = 1e-4
# The 13 neighbour cells "after" a cell (the other 13 see it from their side), then the cell itself.
_HALF_STENCIL = [
    (dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) > (0, 0, 0)
] + [(0, 0, 0)]


def radius_pairs(pos: Tensor, batch: Tensor, cutoff: float, num_graphs: int | None = None) -> Tensor:
    """(2, n_pairs) the intra-molecule pairs ``i < j`` with ``|pos[j] - pos[i]| < cutoff``, in the canonical order.

    Exactly ``candidate_pairs`` filtered by the distance test of :func:`build_graph`, found with a cell list so that
    memory grows with the pairs within the cutoff (plus those of adjacent cells), never with atoms squared. Atoms with
    a non-finite position have no pairs (as in the all-pairs filter, where their distances compare false).

    Args:
        pos: (n_atoms, 3) positions in angstrom (not differentiated through).
        batch: (n_atoms,) molecule index of each atom, sorted.
        cutoff: angstrom.
        num_graphs: number of molecules (default: ``batch.max() + 1``).
    """
    pos = pos.detach()
    n = pos.shape[0]
    if n < 2 or not cutoff > 0:
        return torch.zeros((2, 0), dtype=torch.long, device=pos.device)
    finite = torch.isfinite(pos).all(dim=1)
    if not bool(finite.all()):
        keep = finite.nonzero().squeeze(1)
        return keep[radius_pairs(pos[keep], batch[keep], cutoff, num_graphs)]
    num_graphs = int(batch.max()) + 1 if num_graphs is None else int(num_graphs)
    # A key (molecule, cell x, cell y, cell z) packed into 62 bits; a geometry too spread out for the bits per axis
    # gets wider cells (always correct, only more candidates to test).
    mol_bits = max(1, num_graphs.bit_length())
    axis_bits = (62 - mol_bits) // 3
    top = (1 << axis_bits) - 2  # largest cell index, so that index + 1 still fits
    x = pos.to(torch.float64)
    lo = x.min(dim=0).values
    extent = float((x.max(dim=0).values - lo).max())
    width = max(float(cutoff) * (1 + _CELL_MARGIN), extent / top)
    cell = torch.floor((x - lo) / width).long().clamp_(0, top)

    def key(c: Tensor) -> Tensor:
        return ((batch << axis_bits | c[:, 0]) << axis_bits | c[:, 1]) << axis_bits | c[:, 2]

    order = torch.argsort(key(cell))
    sorted_keys = key(cell)[order]
    found = []
    for offset in _HALF_STENCIL:
        neighbour = cell + torch.tensor(offset, device=cell.device)
        inside = ((neighbour >= 0) & (neighbour <= top + 1)).all(dim=1)
        k = key(neighbour.clamp(min=0))
        first = torch.searchsorted(sorted_keys, k, side="left")
        count = (torch.searchsorted(sorted_keys, k, side="right") - first) * inside
        j, i = ranges(first, count)
        j = order[j]
        if offset == (0, 0, 0):
            mine = i < j
            src, dst = i[mine], j[mine]
        else:
            src, dst = torch.minimum(i, j), torch.maximum(i, j)
        close = torch.linalg.vector_norm(pos.index_select(0, dst) - pos.index_select(0, src), dim=-1) < cutoff
        found.append(torch.stack([src[close], dst[close]]))
    pairs = torch.cat(found, dim=1)
    return pairs[:, torch.argsort(pairs[0] * n + pairs[1])]


def cosine_cutoff(d: Tensor, cutoff: float) -> Tensor:
    """The cosine envelope ``(cos(pi d / r_c) + 1) / 2`` (Behler 2011): 1 at d = 0, 0 with zero slope at the cutoff,
    so an atom crossing the cutoff changes energies and forces smoothly. Shared by SchNet and PaiNN."""
    return 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0)


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

    Uses ``torch_cluster.radius_graph`` when that extension is importable, else the pure-torch cell list
    (:func:`radius_pairs`). Edges run both ways; ``edge_weight`` is the distance. Used when a PyG model is called
    directly (the training loop hands models a prebuilt :class:`Graph` instead).
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
        pairs = radius_pairs(pos, batch, self.cutoff, num_graphs)
        # only the edges and their lengths are asked for: no atomic numbers are known here, so ``z`` is left empty
        no_z = torch.empty(0, dtype=torch.long, device=pos.device)
        g = build_graph(no_z, pos, batch, num_graphs, pairs, self.cutoff)
        return g.edge_index, g.dist
