"""Everything that defines a training run, saved as ``RUN/config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mlipdiv.errors import MlipdivError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """A training run: which data (split), which model, how to train.

    Attributes (split): ``dataset`` (path; None = the shipped default), ``budget`` B = M x C, ``molecules`` M,
    ``conformers_per_molecule`` C (two of the three), ``strategy``, ``molecule_split``, ``conformer_holdout``,
    ``test_molecules`` and ``val_per_molecule`` as in :class:`mlipdiv.selection.SplitSpec`; ``seed`` fixes the split,
    the initial weights and the batch order.

    Attributes (model): ``model`` (registry name), ``hidden`` features, ``interactions`` layers, ``cutoff`` in angstrom.

    Attributes (optimisation): ``epochs`` (maximum), ``batch_size``, ``lr`` (peak AdamW learning rate, reached after
    ``warmup_epochs`` then cosine-decayed to ``lr * final_lr_ratio``; None: the model's recommended rate, see
    :meth:`peak_lr`), ``weight_decay``, ``energy_weight`` and
    ``forces_weight`` of the loss ``w_E * MSE(E / n_atoms) + w_F * MSE(F)`` (eV, eV/angstrom), ``grad_clip`` (max
    gradient norm), ``patience`` (epochs without a better validation loss before stopping early), ``device``
    (``auto``: CUDA when available, else CPU), ``eval_batch_size``.
    """

    dataset: str | None = None
    budget: int | None = None
    molecules: int | None = None
    conformers_per_molecule: int | None = None
    strategy: str = "random"
    molecule_split: str = "random"
    conformer_holdout: str = "family"
    test_molecules: float = 0.2
    val_per_molecule: int = 4
    model: str = "schnet"
    hidden: int = 128
    interactions: int = 3
    cutoff: float = 5.0
    epochs: int = 100
    batch_size: int = 16
    lr: float | None = None
    weight_decay: float = 1e-5
    warmup_epochs: float = 1.0
    final_lr_ratio: float = 0.02
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    grad_clip: float = 10.0
    patience: int = 20
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        positive = ("hidden", "interactions", "epochs", "batch_size", "eval_batch_size", "patience")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise MlipdivError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("cutoff", "lr"):
            if getattr(self, name) is not None and not float(getattr(self, name)) > 0:
                raise MlipdivError(f"{name} must be positive, not {getattr(self, name)}")
        if self.device not in DEVICES:
            raise MlipdivError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.seed < 0:
            raise MlipdivError(f"seed must be a non-negative integer, not {self.seed}")

    def split_spec(self) -> Any:
        from mlipdiv.selection import SplitSpec

        try:
            return SplitSpec(
                budget=self.budget,
                molecules=self.molecules,
                conformers_per_molecule=self.conformers_per_molecule,
                strategy=self.strategy,
                molecule_split=self.molecule_split,
                conformer_holdout=self.conformer_holdout,
                test_molecules=self.test_molecules,
                val_per_molecule=self.val_per_molecule,
                seed=self.seed,
            )
        except ValueError as exc:
            from mlipdiv.errors import InfeasibleRequest

            raise InfeasibleRequest(str(exc)) from exc

    def peak_lr(self) -> float:
        """``lr``, or the model's recommended one (2e-3 for schnet and painn, 1e-2 for mace) when ``lr`` is None."""
        if self.lr is not None:
            return float(self.lr)
        from mlipdiv.models.registry import get_spec

        return get_spec(self.model).lr

    def model_hparams(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "interactions": self.interactions, "cutoff": self.cutoff}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise MlipdivError(f"unknown training options: {', '.join(unknown)}")
        return cls(**data)
