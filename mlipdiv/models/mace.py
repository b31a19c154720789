"""MACE (Batatia et al. 2022) from ``mace-torch``: higher body-order equivariant messages (ACE products).

``mace-torch`` installs beside ``torch==2.13.0`` without touching torch and runs on CPU in float32, so it is the third
architecture. Its package is imported only when a MACE model is built. Two import side effects are contained here:
``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process (its e3nn dependency needs that to
load its own constants), which we undo right after the import so our ``weights_only=True`` loads stay strict, and it
prints a notice about the optional cuequivariance kernels, which we swallow.

Our reference energies are subtracted outside the model, so MACE's own per-element energies ``E0`` are zero.
Hidden features are ``{hidden}x0e`` (scalar channels, as in the MACE "small" models), spherical harmonics up to
``max_ell`` in the messages and body order ``correlation + 1``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import Any

import torch
from torch import Tensor

from mlipdiv.limits import MAX_Z
from mlipdiv.models.graph import Graph
from mlipdiv.models.registry import register

_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _import_mace() -> Any:
    before = os.environ.get(_ENV)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mace.modules
            from e3nn import o3
    except ImportError as exc:  # pragma: no cover - mace-torch is in requirements.txt
        from mlipdiv.errors import MlipdivError

        raise MlipdivError(f"the mace model needs the mace-torch package ({exc}); pip install mace-torch") from exc
    finally:
        if before is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = before
    return mace.modules, o3


class MACEModel(torch.nn.Module):
    element_index: Tensor  # buffer: atomic number -> row of the one-hot, -1 for elements not trained on

    def __init__(self, hparams: dict[str, Any]) -> None:
        super().__init__()
        modules, o3 = _import_mace()
        elements = list(hparams["elements"])
        index = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        index[elements] = torch.arange(len(elements))
        self.register_buffer("element_index", index, persistent=False)
        self.num_elements = len(elements)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e3nn's code generation warns about TorchScript internals
            self.mace = modules.MACE(
                r_max=float(hparams["cutoff"]),
                num_bessel=hparams["num_bessel"],
                num_polynomial_cutoff=hparams["num_polynomial_cutoff"],
                max_ell=hparams["max_ell"],
                interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
                interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
                num_interactions=hparams["interactions"],
                num_elements=len(elements),
                hidden_irreps=o3.Irreps(f"{hparams['hidden']}x0e"),
                MLP_irreps=o3.Irreps(f"{hparams['mlp_hidden']}x0e"),
                atomic_energies=torch.zeros(len(elements), dtype=torch.float64).numpy(),
                avg_num_neighbors=float(hparams["avg_num_neighbors"]),
                atomic_numbers=elements,
                correlation=hparams["correlation"],
                gate=torch.nn.functional.silu,
                radial_MLP=[64, 64, 64],
            )

    def forward(self, g: Graph) -> Tensor:
        node_attrs = torch.nn.functional.one_hot(self.element_index[g.z], self.num_elements).to(g.pos.dtype)
        n_edges = g.edge_index.shape[1]
        data = {
            "positions": g.pos,
            "node_attrs": node_attrs,
            "edge_index": g.edge_index,
            "shifts": g.pos.new_zeros(n_edges, 3),
            "batch": g.batch,
            "ptr": g.ptr,
            "cell": g.pos.new_zeros(g.num_graphs, 3, 3),
        }
        return self.mace(data, training=self.training, compute_force=False)["energy"]


@register(
    "mace",
    "MACE (mace-torch: equivariant ACE products, body order 4)",
    lr=1e-2,  # as mace-torch's own default; at 2e-3 it learned about half as fast per epoch here
    max_ell=2,
    correlation=3,
    num_bessel=8,
    num_polynomial_cutoff=5,
    mlp_hidden=16,
)
def build(hparams: dict[str, Any]) -> torch.nn.Module:
    return MACEModel(hparams)
