"""A trained interatomic potential: architecture + energy scale + per-element reference energies.

``E_total = energy_scale * model(graph) + sum_atoms E_ref[z]``. The model learns only the residual after the
element-linear reference fit (done on the training split); ``energy_scale`` (the RMS of the training forces) puts the
network's output on the scale of the data. Forces are ``-dE/dpos`` by autograd.

The whole thing saves as plain tensors, numbers and strings (:meth:`Potential.to_dict`), so loading needs nothing but
``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mlipdiv.errors import MlipdivError
from mlipdiv.limits import MAX_Z
from mlipdiv.models.graph import build_graph, radius_pairs
from mlipdiv.models.registry import build_model, check_elements, complete_hparams

FORMAT = "mlipdiv-model"
VERSION = 1


class Potential(torch.nn.Module):
    """Energy and forces for batches of molecules.

    Args:
        name: registry name of the architecture.
        hparams: complete hyperparameters (see :mod:`mlipdiv.models.registry`); ``hparams["elements"]`` are the
            atomic numbers the potential supports.
        element_energies: reference energy in eV of each supported element, same order as ``hparams["elements"]``.
        energy_scale: eV per unit of network output.
    """

    element_energy: Tensor  # buffer: reference energy (eV) per atomic number, 0 for unsupported elements

    def __init__(self, name: str, hparams: dict[str, Any], element_energies: list[float], energy_scale: float) -> None:
        super().__init__()
        self.name = name
        self.hparams = complete_hparams(name, hparams)
        self.elements = [int(z) for z in self.hparams["elements"]]
        check_elements(name, self.elements)
        self.cutoff = float(self.hparams["cutoff"])
        self.energy_scale = float(energy_scale)
        self.model = build_model(name, self.hparams)
        ref = torch.zeros(MAX_Z + 1, dtype=torch.float64)
        ref[self.elements] = torch.as_tensor(element_energies, dtype=torch.float64)
        self.register_buffer("element_energy", ref)

    # ----------------------------------------------------------------------------------------------- evaluation

    def residual(
        self, z: Tensor, pos: Tensor, batch: Tensor, num_graphs: int, pairs: Tensor, within_cutoff: bool = False
    ) -> Tensor:
        """(num_graphs,) energy minus the element references, in eV, in the model's dtype.

        Args:
            pairs: (2, n_pairs) candidate atom pairs, source < target (:func:`~mlipdiv.models.graph.radius_pairs`).
            within_cutoff: the pairs are known to be closer than the cutoff (skip the distance filter).
        """
        g = build_graph(z, pos, batch, num_graphs, pairs, None if within_cutoff else self.cutoff)
        return self.energy_scale * self.model(g)

    def residual_and_forces(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor,
        num_graphs: int,
        pairs: Tensor,
        create_graph: bool = False,
        within_cutoff: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Residual energies (num_graphs,) and forces (n_atoms, 3); ``create_graph`` to train on the forces."""
        with torch.enable_grad():
            pos = pos.detach().requires_grad_(True)
            energy = self.residual(z, pos, batch, num_graphs, pairs, within_cutoff)
            (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
        return energy, -grad

    def reference(self, z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """(num_graphs,) float64 sum of the element reference energies of each molecule."""
        ref = self.element_energy.to(torch.float64)[z]
        return torch.zeros(num_graphs, dtype=torch.float64, device=z.device).index_add_(0, batch, ref)

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Total energies (num_graphs,) float64 in eV and forces (n_atoms, 3) in eV/angstrom."""
        self.check_elements(z)
        batch = torch.zeros_like(z) if batch is None else batch
        num_graphs = int(batch.max()) + 1
        pairs = radius_pairs(pos, batch, self.cutoff, num_graphs)
        energy, forces = self.residual_and_forces(z, pos, batch, num_graphs, pairs)
        return energy.detach().to(torch.float64) + self.reference(z, batch, num_graphs), forces.detach()

    def check_elements(self, z: Tensor) -> None:
        unseen = sorted(set(torch.unique(z).tolist()) - set(self.elements))
        if unseen:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[e] if 0 < e < len(chemical_symbols) else str(e) for e in unseen)
            known = ", ".join(chemical_symbols[e] for e in self.elements)
            raise MlipdivError(
                f"this potential was trained on {known} only and cannot predict {names}; "
                "train on data that contains these elements"
            )

    # ------------------------------------------------------------------------------------------------ saving

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors / numbers / strings only: loadable with ``torch.load(..., weights_only=True)``."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "hparams": dict(self.hparams),
            "energy_scale": self.energy_scale,
            "element_energies": [float(self.element_energy[z]) for z in self.elements],
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Potential:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise MlipdivError(f"not an mlipdiv model file (format={d.get('format')!r}, version={d.get('version')!r})")
        pot = cls(d["name"], d["hparams"], d["element_energies"], d["energy_scale"])
        pot.model.load_state_dict(d["state_dict"])
        return pot

    def save(self, path: Any) -> None:
        from mlipdiv.io.atomic import atomic_torch_save

        atomic_torch_save(path, self.to_dict())

    @classmethod
    def load(cls, path: Any, device: str | torch.device = "cpu") -> Potential:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise MlipdivError(f"{path}: no such model file") from exc
        except Exception as exc:  # unpickling errors of damaged / foreign files
            raise MlipdivError(f"{path}: not a readable model file ({exc})") from exc
        return cls.from_dict(d).to(device).eval()
