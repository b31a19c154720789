"""PaiNN (Schütt, Unke, Gastegger 2021): equivariant message passing with scalar and vector features.

Scalars ``s`` have shape (n_atoms, F), vectors ``v`` (n_atoms, 3, F). Each interaction is a message block (radial
filters on the edge, scalar and vector messages summed at the target) followed by an update block (mixing of the
vector channels, gated by invariants). As in SchNet, the radial filter of a pair is computed once for both directions,
and the message step is :func:`~mlipdiv.models.painn_ops.painn_message`: one signed convolution over the pairs with
hand-written derivatives, so that the double backward of force training stores no per-edge (edges, 3, F) messages.

``PaiNN(..., pyg=True)`` computes the same function with the original message step on PyG's
:class:`~torch_geometric.nn.conv.MessagePassing` (per-edge messages, plain autograd): the reference of the tests and
of the benchmark's PyG loop. Both have the same parameters, created in the same order (same state-dict keys).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import Embedding, Linear, Sequential, SiLU
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import scatter

from mlipdiv.limits import EMBEDDING_MAX_Z
from mlipdiv.models.graph import Graph, cosine_cutoff
from mlipdiv.models.painn_ops import painn_message
from mlipdiv.models.registry import register


class RadialBasis(torch.nn.Module):
    """``sin(n pi d / r_c) / d`` for n = 1..num_rbf, times a cosine cutoff envelope."""

    freq: Tensor  # buffer

    def __init__(self, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("freq", torch.arange(1, num_rbf + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff)

    def forward(self, d: Tensor) -> tuple[Tensor, Tensor]:
        rbf = torch.sin(d.unsqueeze(-1) * self.freq) / d.unsqueeze(-1)
        envelope = cosine_cutoff(d, self.cutoff)
        return rbf, envelope


class PaiNNMessage(torch.nn.Module):
    def __init__(self, features: int, num_rbf: int) -> None:
        super().__init__()
        self.features = features
        self.phi = Sequential(Linear(features, features), SiLU(), Linear(features, 3 * features))
        self.filter = Linear(num_rbf, 3 * features)

    def forward(
        self, s: Tensor, v: Tensor, g: Graph, rbf: Tensor, envelope: Tensor, unit: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``unit``: (n_half, 3) the unit vectors of the first half of the edges."""
        ds, dv = painn_message(self.phi(s), v, self.filter(rbf), unit, envelope, g.edge_index)
        return s + ds, v + dv


class PaiNNMessagePyG(MessagePassing):
    """The reference message step: PyG's per-edge messages (``unit`` here has one row per edge)."""

    def __init__(self, features: int, num_rbf: int) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.features = features
        self.phi = Sequential(Linear(features, features), SiLU(), Linear(features, 3 * features))
        self.filter = Linear(num_rbf, 3 * features)

    def forward(
        self, s: Tensor, v: Tensor, g: Graph, rbf: Tensor, envelope: Tensor, unit: Tensor
    ) -> tuple[Tensor, Tensor]:
        w = self.filter(rbf) * envelope.unsqueeze(-1)
        out = self.propagate(g.edge_index, x=self.phi(s), v=v.flatten(1), w=torch.cat([w, w]), unit=unit)
        f = self.features
        return s + out[:, :f], v + out[:, f:].view(-1, 3, f)

    def message(self, x_j: Tensor, v_j: Tensor, w: Tensor, unit: Tensor) -> Tensor:
        f = self.features
        x = x_j * w
        ds, dvv, dvs = x[:, :f], x[:, f : 2 * f], x[:, 2 * f :]
        dv = v_j.view(-1, 3, f) * dvv.unsqueeze(1) + dvs.unsqueeze(1) * unit.unsqueeze(-1)
        return torch.cat([ds, dv.flatten(1)], dim=-1)


class PaiNNUpdate(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.uv = Linear(features, 2 * features, bias=False)
        self.mlp = Sequential(Linear(2 * features, features), SiLU(), Linear(features, 3 * features))

    def forward(self, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features
        uv = self.uv(v)
        u, w = uv[..., :f], uv[..., f:]
        norm = torch.sqrt(torch.sum(w * w, dim=1) + 1e-8)
        a = self.mlp(torch.cat([s, norm], dim=-1))
        avv, asv, ass = a[:, :f], a[:, f : 2 * f], a[:, 2 * f :]
        return s + asv * torch.sum(u * w, dim=1) + ass, v + avv.unsqueeze(1) * u


class PaiNN(torch.nn.Module):
    def __init__(self, hidden: int, interactions: int, cutoff: float, num_rbf: int, pyg: bool = False) -> None:
        super().__init__()
        self.hidden = hidden
        self.pyg = pyg
        self.embedding = Embedding(EMBEDDING_MAX_Z + 1, hidden)
        self.radial = RadialBasis(num_rbf, cutoff)
        block = PaiNNMessagePyG if pyg else PaiNNMessage
        self.messages = torch.nn.ModuleList(block(hidden, num_rbf) for _ in range(interactions))
        self.updates = torch.nn.ModuleList(PaiNNUpdate(hidden) for _ in range(interactions))
        self.readout = Sequential(Linear(hidden, hidden // 2), SiLU(), Linear(hidden // 2, 1))
        head = self.readout[-1]
        assert isinstance(head, Linear)
        torch.nn.init.zeros_(head.weight)  # start from E = 0, as in schnet.py
        torch.nn.init.zeros_(head.bias)

    def forward(self, g: Graph) -> Tensor:
        n_half = g.n_half
        rbf, envelope = self.radial(g.dist[:n_half])
        unit = g.vec / g.dist.unsqueeze(-1) if self.pyg else g.vec[:n_half] / g.dist[:n_half].unsqueeze(-1)
        s = self.embedding(g.z)
        v = s.new_zeros(s.shape[0], 3, self.hidden)
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, g, rbf, envelope, unit)
            s, v = update(s, v)
        return scatter(self.readout(s).squeeze(-1), g.batch, dim=0, dim_size=g.num_graphs, reduce="sum")


@register(
    "painn",
    "PaiNN (equivariant scalar + vector messages)",
    lr=2e-3,
    max_z=EMBEDDING_MAX_Z,
    num_rbf=20,
)
def build(hparams: dict[str, Any]) -> torch.nn.Module:
    return PaiNN(hparams["hidden"], hparams["interactions"], hparams["cutoff"], hparams["num_rbf"])
