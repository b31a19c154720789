"""Models: the interaction graph, SchNet against PyG's own forward, forces = -dE/dx, rotation symmetry, saving."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from mlipdiv.models import Potential, build_graph, candidate_pairs, model_names, radius_pairs
from mlipdiv.models.graph import RadiusInteractionGraph

MODELS = ["schnet", "painn", "mace"]
SMALL = {"hidden": 16, "interactions": 2, "cutoff": 4.0, "elements": [1, 6, 8], "avg_num_neighbors": 8.0}


def _molecules(seed: int = 0, sizes: tuple[int, ...] = (5, 9, 3)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of random, non-overlapping little molecules of H, C, O."""
    g = torch.Generator().manual_seed(seed)
    z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (sum(sizes),), generator=g)]
    pos = []
    for n in sizes:
        grid = torch.stack(torch.meshgrid(*[torch.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.3
        pos.append(grid[torch.randperm(27, generator=g)[:n]] + 0.2 * torch.randn(n, 3, generator=g))
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return z, torch.cat(pos), batch


_BUILT: dict[str, Potential] = {}


def _potential(name: str, dtype: torch.dtype = torch.float32) -> Potential:
    """A small untrained potential (built once per module: MACE takes seconds to build), as a fresh copy."""
    if name not in _BUILT:
        torch.manual_seed(0)
        pot = Potential(name, dict(SMALL), [-13.0, -40.0, -70.0], 1.0)
        for p in pot.model.parameters():  # the readouts start at zero; give every weight some signal here
            if p.dim() > 0 and torch.all(p == 0):
                torch.nn.init.normal_(p, std=0.3)
        _BUILT[name] = pot
    return copy.deepcopy(_BUILT[name]).to(dtype).eval()


def test_list_models_prints_names_only() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlipdiv", "train", "--list-models"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n") == [*MODELS, ""]
    assert model_names() == MODELS


def test_candidate_pairs_are_all_intra_molecule_pairs() -> None:
    _, pos, batch = _molecules()
    pairs = candidate_pairs(batch)
    expected = {(i, j) for i in range(len(batch)) for j in range(len(batch)) if i < j and batch[i] == batch[j]}
    assert {tuple(p) for p in pairs.t().tolist()} == expected
    assert pairs.shape[1] == len(expected)

    g = build_graph(batch, pos, batch, 3, pairs, cutoff=2.0)
    src, dst = g.edge_index
    d = (pos[dst] - pos[src]).norm(dim=-1)
    assert torch.allclose(g.dist, d) and bool((g.dist < 2.0).all())
    assert torch.equal(g.edge_index[:, : g.n_half].flip(0), g.edge_index[:, g.n_half :])
    assert g.n_half == sum(1 for i, j in expected if (pos[i] - pos[j]).norm() < 2.0)


def _brute_force(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """The old all-pairs result: every intra-molecule pair, kept by build_graph's distance test, in its order."""
    pairs = candidate_pairs(batch)
    return pairs[:, torch.linalg.vector_norm(pos[pairs[1]] - pos[pairs[0]], dim=-1) < cutoff]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cell_list_equals_all_pairs_on_random_molecules(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    for trial in range(12):
        sizes = torch.randint(1, 50, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g)
        batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
        pos = (torch.randn(len(batch), 3, generator=g) * (0.5 + 8 * trial / 12)).to(dtype)
        if trial == 5:
            pos[3] = float("nan")  # an atom without a position has no pairs, as before
        if trial == 6:
            pos[len(pos) // 2 :] += 1e7  # far-flung atoms: wider cells, same answer
        for cutoff in (0.8, 2.5, 5.0, 1e3):
            pairs = radius_pairs(pos, batch, cutoff)
            assert torch.equal(pairs, _brute_force(pos, batch, cutoff)), (trial, cutoff)
            # same pairs, same order, same distances as build_graph on all pairs
            a = build_graph(batch, pos, batch, len(sizes), pairs, cutoff)
            b = build_graph(batch, pos, batch, len(sizes), candidate_pairs(batch), cutoff)
            assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.dist, b.dist)


def test_cell_list_on_1500_atoms() -> None:
    """A dense 1,500-atom molecule (the size that exhausted memory with the all-pairs table)."""
    g = torch.Generator().manual_seed(5)
    grid = torch.stack(torch.meshgrid(*[torch.arange(12.0)] * 3, indexing="ij"), -1).reshape(-1, 3)[:1500] * 1.4
    pos = grid + 0.2 * torch.randn(1500, 3, generator=g)
    batch = torch.zeros(1500, dtype=torch.long)
    pairs = radius_pairs(pos, batch, 4.0)
    assert torch.equal(pairs, _brute_force(pos, batch, 4.0))
    assert 20 * 1500 < pairs.shape[1] < 0.1 * 1500 * 1499 / 2  # many pairs, but far fewer than all of them


_BOUNDED_MEMORY = """
import resource, torch
from mlipdiv.models import Potential
pot = Potential("schnet", {"hidden": 16, "interactions": 1, "cutoff": 5.0, "elements": [6], "avg_num_neighbors": 8.0},
                [-40.0], 1.0)
grid = torch.stack(torch.meshgrid(*[torch.arange(12.0)] * 3, indexing="ij"), -1).reshape(-1, 3)[:1500] * 1.5
pos, z = grid + 0.1 * torch.randn(1500, 3), torch.full((1500,), 6)
pot(z[:10], pos[:10])  # warm up (threads, kernels) before measuring
data_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmData"))
limit = data_kb * 1024 + 1024**3  # 1 GiB more than now: the all-pairs table alone needed 9 GB
resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
energy, forces = pot(z, pos)
assert forces.shape == (1500, 3) and bool(torch.isfinite(forces).all())
print("ok")
"""


def test_1500_atom_energy_and_forces_in_bounded_memory() -> None:
    """Energy and forces of 1,500 atoms with at most 1 GiB of new memory (a capped child process)."""
    out = subprocess.run([sys.executable, "-c", _BOUNDED_MEMORY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_schnet_matches_pyg_forward() -> None:
    """Our SchNet forward (pairs precomputed, filters shared by both directions) is PyG's SchNet, same weights."""
    z, pos, batch = _molecules()
    pot = _potential("schnet")
    net = pot.model.net
    assert isinstance(net.interaction_graph, RadiusInteractionGraph)
    g = build_graph(z, pos, batch, 3, candidate_pairs(batch), pot.cutoff)
    ours = pot.model(g)
    theirs = net(z, pos, batch).squeeze(-1)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert ours.abs().max() > 1e-3  # a non-trivial energy


@pytest.mark.parametrize("name", MODELS)
def test_forces_are_minus_energy_gradient(name: str) -> None:
    z, pos, batch = _molecules(1)
    pot = _potential(name, torch.float64)
    pos = pos.double()
    pairs = candidate_pairs(batch)
    _, forces = pot.residual_and_forces(z, pos, batch, 3, pairs)
    h = 1e-5
    for atom, axis in [(0, 0), (4, 2), (7, 1), (15, 0)]:
        plus, minus = pos.clone(), pos.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        with torch.no_grad():
            de = pot.residual(z, plus, batch, 3, pairs).sum() - pot.residual(z, minus, batch, 3, pairs).sum()
        assert float(-de / (2 * h)) == pytest.approx(float(forces[atom, axis]), rel=1e-5, abs=1e-7)
    assert forces.abs().max() > 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_energy_invariant_forces_equivariant(name: str) -> None:
    z, pos, batch = _molecules(2)
    pot = _potential(name)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    q = q * torch.sign(torch.linalg.det(q))  # a proper rotation
    shift = torch.tensor([1.0, -2.0, 0.5])
    e1, f1 = pot(z, pos, batch)
    e2, f2 = pot(z, pos @ q.T + shift, batch)
    assert torch.allclose(e1, e2, atol=1e-4)
    assert torch.allclose(f1 @ q.T, f2, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name: str, tmp_path) -> None:
    z, pos, batch = _molecules(3)
    pot = _potential(name)
    pot.save(tmp_path / "model.pt")
    assert isinstance(torch.load(tmp_path / "model.pt", weights_only=True), dict)
    loaded = Potential.load(tmp_path / "model.pt")
    e1, f1 = pot(z, pos, batch)
    e2, f2 = loaded(z, pos, batch)
    assert torch.equal(e1, e2) and torch.equal(f1, f2)
    assert loaded.elements == [1, 6, 8] and loaded.hparams == pot.hparams
    assert float(loaded.element_energy[6]) == -40.0


def test_unseen_element_refused() -> None:
    pot = _potential("schnet")
    with pytest.raises(Exception, match="trained on H, C, O only and cannot predict N"):
        pot(torch.tensor([6, 7]), torch.tensor([[0.0, 0, 0], [1.2, 0, 0]]))


def test_importing_mace_keeps_weights_only_strict() -> None:
    import os

    from mlipdiv.models.mace import _import_mace

    _import_mace()
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
