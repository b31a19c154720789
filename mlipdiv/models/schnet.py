"""SchNet (Schütt et al. 2017): PyG's ``torch_geometric.nn.models.SchNet`` fed by our interaction graph.

The layers and weights are PyG's own, built with ``interaction_graph=RadiusInteractionGraph(cutoff)`` so that
``model.net(z, pos, batch)`` works unchanged. :meth:`SchNetModel.forward` evaluates exactly the same function from a
prebuilt :class:`~mlipdiv.models.graph.Graph`, with three savings: the graph's candidate pairs are precomputed; each
continuous filter ``W(d_ij)``, which depends only on the distance, is computed once per pair instead of once per
direction; and the message step is :func:`~mlipdiv.models.cfconv.cfconv`, whose hand-written derivatives keep the
double backward of force training from storing and re-reading per-edge copies of the atom features, and which runs
as compiled kernels on CPU (tests check the whole against ``net(z, pos, batch)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.models import SchNet
from torch_geometric.utils import scatter

from mlipdiv.limits import EMBEDDING_MAX_Z
from mlipdiv.models.cfconv import cfconv
from mlipdiv.models.graph import Graph, RadiusInteractionGraph, cosine_cutoff
from mlipdiv.models.registry import register


class SchNetModel(torch.nn.Module):
    def __init__(self, hidden: int, interactions: int, cutoff: float, num_filters: int, num_gaussians: int) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.net = SchNet(
            hidden_channels=hidden,
            num_filters=num_filters,
            num_interactions=interactions,
            num_gaussians=num_gaussians,
            cutoff=cutoff,
            interaction_graph=RadiusInteractionGraph(cutoff),
        )
        # Start from E = 0 (the element references are subtracted): otherwise the random per-atom offsets of the
        # readout take AdamW, whose steps are bounded by the learning rate, hundreds of steps to unlearn.
        torch.nn.init.zeros_(self.net.lin2.weight)
        torch.nn.init.zeros_(self.net.lin2.bias)
        assert self.net.embedding.num_embeddings == EMBEDDING_MAX_Z + 1, "PyG's SchNet element table changed size"

    def forward(self, g: Graph) -> Tensor:
        net, n_half = self.net, g.n_half
        d = g.dist[:n_half]
        attr = net.distance_expansion(d)
        envelope = cosine_cutoff(d, self.cutoff).unsqueeze(-1)
        h = net.embedding(g.z)
        for block in net.interactions:
            conv = block.conv
            w = conv.nn(attr) * envelope
            x = cfconv(conv.lin1(h), w, g.edge_index)
            h = h + block.lin(block.act(conv.lin2(x)))
        h = net.lin2(net.act(net.lin1(h))).squeeze(-1)
        return scatter(h, g.batch, dim=0, dim_size=g.num_graphs, reduce="sum")


@register(
    "schnet",
    "SchNet (PyG layers, continuous-filter convolutions)",
    lr=2e-3,
    max_z=EMBEDDING_MAX_Z,  # PyG's SchNet embeds Z in a table of 100 rows
    num_filters=None,
    num_gaussians=50,
)
def build(hparams: dict[str, Any]) -> torch.nn.Module:
    return SchNetModel(
        hidden=hparams["hidden"],
        interactions=hparams["interactions"],
        cutoff=hparams["cutoff"],
        num_filters=hparams["num_filters"] or hparams["hidden"],
        num_gaussians=hparams["num_gaussians"],
    )
