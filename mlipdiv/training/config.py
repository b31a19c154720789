"""Everything that defines a training run: ``TrainConfig(split, model, optim)``, saved flat as ``RUN/config.json``.

Each setting is declared once, as a dataclass field: its default, its help text, its range and (through
:func:`settings`) its key. The key is the setting's name in ``config.json``, in a run store's config and run key, and
the command-line flag (``--`` plus the key with dashes): ``python -m mlipdiv train`` and ``split`` generate their
flags from these fields (:mod:`mlipdiv.cli.options`) and presets name them in their templates.

Field metadata read here and by the CLI: ``help``; ``key`` when the key is not the field's name (``model.name`` is
``model``); ``whole`` (a whole number of at least 1); ``range`` ``(low, high, low end open, why)``; ``choices``
(a tuple, or a function returning one); ``title`` of a section (a nested dataclass).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any

from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.io.metrics import CONVERGE_TOL
from mlipdiv.selection.splits import SplitSpec

__all__ = ["DEVICES", "ModelConfig", "OptimConfig", "Setting", "TrainConfig", "settings"]

DEVICES = ("auto", "cpu", "cuda")

LEGACY_OMITTED = ("test_conformer_fraction", "max_eval_per_molecule", "steps", "eval_every", "converge_tol",
                  "element_prior", "anchor_molecules")
"""Settings added after runs were first stored: left out of the flat form (config.json, and so the run key) while at
their default, so every existing run keeps its key."""
ELEMENT_PRIORS = ("auto", "atoms", "none")


def _setting(default: Any, help: str, **meta: Any) -> Any:
    """A field with its help text and checks in ``metadata`` (see the module doc)."""
    return field(default=default, metadata={"help": help, **meta})


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _in_range(value: Any, low: float, high: float, low_open: bool) -> bool:
    if not _is_real(value) or math.isnan(value):
        return False
    return (low < value if low_open else low <= value) and value <= high


def _check_fields(obj: Any) -> None:
    """The ``whole``, ``range`` and ``choices`` rules of ``obj``'s field metadata, in field order.

    Raises:
        InvalidSetting: naming the field (``.field``; the CLI shows its flag), e.g.
            ``lr 1000000.0 is out of range: lr must be in (0, 1]; why``.
    """
    for f in fields(obj):
        meta, value, key = f.metadata, getattr(obj, f.name), f.metadata.get("key", f.name)
        minimum = meta.get("minimum", 1)
        if meta.get("whole") and not (value is None and f.default is None) and (
            not _is_integer(value) or value < minimum
        ):
            raise InvalidSetting.out_of_range(key, value, f"at least {minimum} (a whole number)")
        if "range" in meta and not (value is None and f.default is None):
            low, high, low_open, why = meta["range"]
            if not _in_range(value, low, high, low_open):
                rule = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
                raise InvalidSetting.out_of_range(key, value, rule, why)
        if "choices" in meta:
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            if value not in choices:
                raise InvalidSetting(f"{key} must be one of {', '.join(choices)}, not {value!r}", key)


@dataclass
class ModelConfig:
    """Which architecture (a registry name) and its size."""

    name: str = _setting("schnet", "architecture (see --list-models)", key="model")
    hidden: int = _setting(128, "hidden features", whole=True)
    interactions: int = _setting(3, "message-passing layers", whole=True)
    cutoff: float = _setting(
        5.0, "interaction cutoff in angstrom",
        range=(1.0, 20.0, False, ("angstrom; below 1 no bond but H-H is an edge, beyond 20 a drug-sized molecule's "
                                  "graph is complete and the cost grows as cutoff^3 for nothing (default 5)")),
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Sizes whole numbers of at least 1, the cutoff in its range (InvalidSetting otherwise)."""
        _check_fields(self)

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters :class:`mlipdiv.models.Potential` takes from the configuration."""
        return {"hidden": self.hidden, "interactions": self.interactions, "cutoff": self.cutoff}


@dataclass
class OptimConfig:
    """How to train: AdamW on ``w_E * MSE(E / n_atoms) + w_F * MSE(F)`` (eV, eV/angstrom), warm-up then cosine decay
    of the learning rate, gradient clipping, early stopping on the validation loss."""

    epochs: int = _setting(100, "maximum epochs (early stopping on val may end sooner); --steps overrides it",
                           whole=True)
    steps: int | None = _setting(
        None, "optimiser steps to train for, whatever the training-set size (overrides --epochs; the schedule spans "
        "exactly these steps)", whole=True)
    eval_every: int | None = _setting(
        None, "validate every this many steps (default: about 25 times per run, at least once per epoch)", whole=True)
    converge_tol: float = _setting(
        CONVERGE_TOL, "a run is 'converged' when its last quarter of steps lowered the best validation force MAE by "
        "less than this fraction", range=(0.0, 10.0, True, "a relative change of the validation force MAE"))
    element_prior: str = _setting(
        "auto", "prior of the per-element reference energies: isolated GFN2-xTB atoms (atoms), none (plain least "
        "squares), or atoms when the dataset's level of theory is GFN2-xTB (auto)", choices=ELEMENT_PRIORS)
    batch_size: int = _setting(16, "conformers per step", whole=True)
    lr: float | None = _setting(
        None, "peak learning rate (default: the model's own: 0.002 for schnet and painn, 0.01 for mace)",
        range=(0.0, 1.0, True, "AdamW diverges long before 1; the models' recommended rates are 2e-3 to 1e-2"),
    )
    weight_decay: float = _setting(
        1e-5, "AdamW's decoupled weight decay",
        range=(0.0, 1.0, False, "AdamW's decoupled decay per step, times the learning rate"),
    )
    warmup_epochs: float = _setting(1.0, "epochs of linear learning-rate warm-up",
                                    range=(0.0, 1e6, False, "epochs of linear warm-up"))
    final_lr_ratio: float = _setting(0.02, "the cosine schedule ends at the peak learning rate x this",
                                     range=(0.0, 1.0, False, "the cosine schedule ends at lr x this"))
    energy_weight: float = _setting(
        10.0, "weight of the per-atom energy MSE, eV^2",
        range=(0.0, 1e6, False, "loss weight of the per-atom energy error; 0 trains on forces only"),
    )
    forces_weight: float = _setting(
        1.0, "weight of the force MSE, (eV/A)^2",
        range=(0.0, 1e6, False, "loss weight of the force error; 0 trains on energies only"),
    )
    grad_clip: float = _setting(10.0, "largest gradient norm (inf: no clipping)",
                                range=(0.0, math.inf, True, "largest gradient norm; inf for no clipping"))
    patience: int = _setting(20, "validations (one per epoch unless --eval-every/--steps) without improvement "
                             "before stopping; 0: never stop early", whole=True, minimum=0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every number in its documented range (README, "Training settings") and a loss that is not zero."""
        _check_fields(self)
        if self.energy_weight == 0 and self.forces_weight == 0:
            raise InvalidSetting(
                "energy_weight and forces_weight are both 0: the loss would be zero; give at least one a positive "
                "weight", fields=("energy_weight", "forces_weight")
            )


@dataclass(frozen=True)
class Setting:
    """One leaf setting of a configuration class: its flat ``key``, its ``field`` and the ``section`` (the nested
    field's name, None at the top level) that holds it."""

    key: str
    field: Field
    section: str | None


def settings(cls: type) -> list[Setting]:
    """Every leaf setting of dataclass ``cls`` in declaration order, sections (nested dataclass fields) expanded."""
    out: list[Setting] = []
    for f in fields(cls):
        nested = f.default_factory if f.default_factory is not MISSING else None
        if nested is not None and is_dataclass(nested):
            out += [Setting(s.key, s.field, f.name) for s in settings(nested)]
        else:
            out.append(Setting(f.metadata.get("key", f.name), f, None))
    return out


@dataclass
class TrainConfig:
    """A training run: which data (``dataset`` and ``split``), which ``model``, how to train (``optim``).

    ``split`` is a :class:`~mlipdiv.selection.SplitSpec`; its ``seed`` (:attr:`seed`) also fixes the initial weights
    and the batch order. ``device``: ``auto`` is CUDA when available, else CPU. Build one from flat keys with
    :meth:`from_dict` (config.json) or :meth:`from_flat`; :meth:`replace` changes settings by key.
    """

    dataset: str | None = _setting(None, "mlipdiv HDF5 or extended XYZ file (default: the shipped dataset)")
    split: SplitSpec = field(default_factory=SplitSpec, metadata={"title": "data and split (as in `split`)"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"title": "model"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"title": "training"})
    device: str = _setting("auto", "where to train (auto: CUDA if any)", choices=DEVICES)
    eval_batch_size: int = _setting(128, "conformers per evaluation batch", whole=True)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """The one place a whole training configuration is checked: each section's rules (the split's are
        :class:`~mlipdiv.selection.SplitSpec`'s, checked when it is made) and the top-level settings.

        Raises:
            InvalidSetting: naming the field, e.g. ``lr 1000000.0 is out of range: lr must be in (0, 1]``.
        """
        for name, cls in (("split", SplitSpec), ("model", ModelConfig), ("optim", OptimConfig)):
            if not isinstance(getattr(self, name), cls):
                raise MlipdivError(f"TrainConfig.{name} must be a {cls.__name__}, not {type(getattr(self, name))}")
        self.model.validate()
        self.optim.validate()
        _check_fields(self)

    @property
    def seed(self) -> int:
        """The run's seed: the split's, the initial weights' and the batch order's."""
        return self.split.seed

    def peak_lr(self) -> float:
        """``lr``, or the model's recommended one (2e-3 for schnet and painn, 1e-2 for mace) when ``lr`` is None."""
        if self.optim.lr is not None:
            return float(self.optim.lr)
        from mlipdiv.models.registry import get_spec

        return get_spec(self.model.name).lr

    def to_dict(self) -> dict[str, Any]:
        """The flat form: ``{key: value}`` of every setting (:func:`settings`), as config.json holds it and as run keys
        hash it (:data:`LEGACY_OMITTED` left out at their defaults)."""
        out = {}
        for s in settings(type(self)):
            value = getattr(getattr(self, s.section) if s.section else self, s.field.name)
            if s.key in LEGACY_OMITTED and value == s.field.default:
                continue
            out[s.key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The configuration of a flat dict (config.json, a stored run's config); missing keys take their defaults.

        Raises:
            MlipdivError: a key that is no setting; InvalidSetting: a value out of range.
        """
        known = {s.key: s for s in settings(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise MlipdivError(f"unknown training options: {', '.join(unknown)}")
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            s = known[key]
            (sections.setdefault(s.section, {}) if s.section else top)[s.field.name] = value
        for f in fields(cls):
            if f.name in sections:
                factory = f.default_factory  # a section's dataclass
                if not callable(factory):
                    raise TypeError(f"section {f.name!r} of {cls.__name__} has no default_factory")
                top[f.name] = factory(**sections[f.name])
        return cls(**top)

    @classmethod
    def from_flat(cls, **settings_by_key: Any) -> TrainConfig:
        """:meth:`from_dict` of the keywords: ``TrainConfig.from_flat(budget=16, molecules=8, model="schnet")``."""
        return cls.from_dict(settings_by_key)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with the settings ``changes`` names by key changed (and checked)."""
        return self.from_dict({**self.to_dict(), **changes})

