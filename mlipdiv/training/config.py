"""Everything that defines a training run, saved as ``RUN/config.json``."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from mlipdiv.errors import InvalidSetting, MlipdivError

DEVICES = ("auto", "cpu", "cuda")

INTEGERS = ("hidden", "interactions", "epochs", "batch_size", "eval_batch_size", "patience")
"""Whole numbers of at least 1."""

# name: (low, high, low end open, why). Ranges are wide enough for any sensible run and exclude values that only
# waste a run (a diverging learning rate, an empty or all-pairs graph, a loss that ignores both targets).
RANGES: dict[str, tuple[float, float, bool, str]] = {
    "lr": (0.0, 1.0, True, "AdamW diverges long before 1; the models' recommended rates are 2e-3 to 1e-2"),
    "cutoff": (1.0, 20.0, False, "angstrom; below 1 no bond but H-H is an edge, beyond 20 a drug-sized molecule's "
              "graph is complete and the cost grows as cutoff^3 for nothing (default 5)"),
    "weight_decay": (0.0, 1.0, False, "AdamW's decoupled decay per step, times the learning rate"),
    "warmup_epochs": (0.0, 1e6, False, "epochs of linear warm-up"),
    "final_lr_ratio": (0.0, 1.0, False, "the cosine schedule ends at lr x this"),
    "energy_weight": (0.0, 1e6, False, "loss weight of the per-atom energy error; 0 trains on forces only"),
    "forces_weight": (0.0, 1e6, False, "loss weight of the force error; 0 trains on energies only"),
    "grad_clip": (0.0, math.inf, True, "largest gradient norm; inf for no clipping"),
}
"""The documented range of every real-valued setting (README, "Training settings")."""


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _in_range(value: Any, low: float, high: float, low_open: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return False
    return (low < value if low_open else low <= value) and value <= high


_invalid = InvalidSetting.out_of_range


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
        self.validate()

    def validate(self) -> None:
        """Every number within its documented range (:data:`RANGES`), and the selection options as
        :class:`~mlipdiv.selection.SplitSpec` checks them; the one place a training configuration is checked.

        Raises:
            InvalidSetting: naming the field, e.g. ``lr 1000000.0 is out of range: lr must be in (0, 1]``.
        """
        for name in INTEGERS:
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise _invalid(name, value, "at least 1 (a whole number)")
        for name, (low, high, low_open, why) in RANGES.items():
            value = getattr(self, name)
            if value is None and name == "lr":
                continue
            if not _in_range(value, low, high, low_open):
                raise _invalid(name, value, f"in {'(' if low_open else '['}{low:g}, {high:g}]", why)
        if self.energy_weight == 0 and self.forces_weight == 0:
            raise InvalidSetting(
                "energy_weight and forces_weight are both 0: the loss would be zero; give at least one a positive "
                "weight", fields=("energy_weight", "forces_weight")
            )
        if self.device not in DEVICES:
            raise InvalidSetting(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}", "device")
        if not _is_integer(self.seed) or self.seed < 0:
            raise _invalid("seed", self.seed, "a whole number of at least 0")
        self.split_spec()  # budget, test_molecules, ...: SplitSpec's own checks, so they live in one place

    def split_spec(self) -> Any:
        from mlipdiv.selection import SplitSpec

        return SplitSpec(  # raises InvalidSetting for a value out of range
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
