"""The ``metrics.json`` contract of a finished run, as typed dataclasses: one definition, read strictly.

Why strict: a results table, a plot and ``runs repair`` all trust these numbers; a file this code does not fully
understand (another version, a missing or unknown key, a string where a number belongs) is refused with
:class:`MetricsError` naming the file instead of being half-read into a wrong table.

Units: energies in eV (per molecule, or per atom where the key says so), forces in eV/angstrom, times in seconds.
Files written before the contract was versioned have no ``version`` key and are version 1. Version 2 adds the
training length (``steps_run``, ``epochs_run``, ``best_step``, ``best_epoch``, ``converged``), the conformers left
out of each split (``excluded``), the composition-free energy error ``energy_rel_mae`` per split and ``step`` per
curve point; version 1 files are still read (those fields None/empty). Version 3 changes what ``converged`` means
(:func:`forces_converged`: the validation force MAE, where version 2 used the validation loss); a version 2 file's
flag is recomputed from its curve on reading, so every table holds one rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlipdiv.errors import DatasetError
from mlipdiv.names import SPLITS  # the splits a run is evaluated on, in this order

__all__ = [
    "CONVERGE_TOL",
    "CURVE_KEYS",
    "METRICS_VERSION",
    "METRIC_KEYS",
    "SPLITS",
    "CurvePoint",
    "MetricsError",
    "RunMetrics",
    "SplitErrors",
    "forces_converged",
    "late_gain",
]

METRICS_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CONVERGE_TOL = 0.05
"""Default of :func:`forces_converged`'s tolerance (relative), and the one a version 2 file's flag is recomputed
with (every run of the study used it)."""
METRIC_KEYS = ("energy_mae", "energy_mae_per_atom", "energy_rmse", "forces_mae", "forces_rmse", "n", "energy_rel_mae")
CURVE_KEYS = ("step", "epoch", "lr", "train_loss", "val_energy_mae", "val_forces_mae", "seconds")
TRAINING_KEYS = ("steps_run", "epochs_run", "best_step", "best_epoch", "converged", "excluded")  # version >= 2
_TOP_KEYS = ("model", "n_molecules", "conformers_per_molecule", "seed", "device", "seconds", "splits", "baselines",
             "curve")
_V1_METRIC_KEYS = tuple(k for k in METRIC_KEYS if k != "energy_rel_mae")
_V1_CURVE_KEYS = tuple(k for k in CURVE_KEYS if k != "step")


class MetricsError(DatasetError):
    """A ``metrics.json`` (or a stored run's metrics) that is not this version's contract."""


# ----------------------------------------------------------------------------------------------- field checks


def _fail(where: str, what: str) -> MetricsError:
    return MetricsError(f"{where}: {what}; not a metrics.json this version of mlipdiv understands")


def _mapping(value: Any, where: str, keys: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    unknown = sorted(str(k) for k in value if k not in keys and k not in optional)
    if missing:
        raise _fail(where, f"missing {', '.join(missing)}")
    if unknown:
        raise _fail(where, f"unknown {', '.join(unknown)}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {value!r}")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, got {value!r}")
    return float(value)


def _opt_float(value: Any, where: str) -> float | None:
    return None if value is None else _float(value, where)


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _opt_bool(value: Any, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _fail(where, f"expected true or false, got {value!r}")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------ dataclasses


@dataclass(frozen=True)
class SplitErrors:
    """Errors of one split (:mod:`mlipdiv.training.metrics` computes them). An empty split has ``n = 0`` and None
    for every error."""

    energy_mae: float | None = None  # eV per molecule
    energy_mae_per_atom: float | None = None  # eV/atom
    energy_rmse: float | None = None  # eV per molecule
    forces_mae: float | None = None  # eV/angstrom, over Cartesian components
    forces_rmse: float | None = None  # eV/angstrom
    n: int = 0  # conformers
    # eV per molecule: MAE of conformer energies relative to their molecule's mean (prediction and reference each
    # centred per molecule; molecules with one conformer in the split do not count). None: no such molecule.
    energy_rel_mae: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in METRIC_KEYS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "split errors", version: int = METRICS_VERSION) -> SplitErrors:
        keys = METRIC_KEYS if version >= 2 else _V1_METRIC_KEYS
        d = _mapping(data, where, keys)
        values = {k: _opt_float(d[k], f"{where}.{k}") for k in keys if k != "n"}
        return cls(**values, n=_int(d["n"], f"{where}.n"))


@dataclass(frozen=True)
class CurvePoint:
    """One point of the learning curve, at an evaluation: the mean training loss since the previous point and the
    validation errors now. ``step`` counts optimiser steps from 1 (None in version 1 files, which have one point per
    epoch); ``epoch`` is the epoch the step falls in."""

    epoch: int
    lr: float = 0.0
    train_loss: float = math.nan
    val_energy_mae: float | None = None  # eV per molecule; None without a validation split
    val_forces_mae: float | None = None  # eV/angstrom
    seconds: float = 0.0  # wall time of the run at this point (across resumes)
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CURVE_KEYS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "curve entry", version: int = METRICS_VERSION) -> CurvePoint:
        d = _mapping(data, where, CURVE_KEYS if version >= 2 else _V1_CURVE_KEYS)
        return cls(
            epoch=_int(d["epoch"], f"{where}.epoch"),
            step=_opt_int(d.get("step"), f"{where}.step"),
            lr=_float(d["lr"], f"{where}.lr"),
            train_loss=_float(d["train_loss"], f"{where}.train_loss"),
            val_energy_mae=_opt_float(d["val_energy_mae"], f"{where}.val_energy_mae"),
            val_forces_mae=_opt_float(d["val_forces_mae"], f"{where}.val_forces_mae"),
            seconds=_float(d["seconds"], f"{where}.seconds"),
        )


def late_gain(curve: Sequence[CurvePoint], steps_run: int, key: str = "val_forces_mae") -> float | None:
    """How much the last quarter of a run lowered the best validation error ``key`` (``val_forces_mae`` or
    ``val_energy_mae``), relative to the best at the end: 0.1 means the best of the first three quarters was 10 %
    above the final best. None when no validation with that error fell in the first three quarters (too short a
    run to tell) or the curve has no steps (version 1)."""
    points = [(c.step, getattr(c, key)) for c in curve if c.step is not None and getattr(c, key) is not None]
    early = [v for s, v in points if s <= 0.75 * steps_run]
    if not early:
        return None
    best = min(v for _, v in points)
    return min(early) / best - 1.0 if best > 0 else 0.0


def forces_converged(curve: Sequence[CurvePoint], steps_run: int, tol: float = CONVERGE_TOL) -> bool:
    """The convergence rule the study uses: the last quarter of the run lowered the best validation force MAE by
    less than ``tol`` (relative). Why the last quarter: with a cosine schedule it runs at a small learning rate, so a
    run whose best error still falls there would gain from more steps. Why the force MAE: it is the error the
    study's answer (fits, recommended M) is made of, on its own scale; the loss squares the errors (a 5 % loss is
    about 2.5 % of error) and mixes in the energy term. Energies converge later: ``late_gain(..., "val_energy_mae")``
    says by how much, and the report shows it. False when the run is too short to tell."""
    gain = late_gain(curve, steps_run)
    return gain is not None and gain < tol


def _split_table(data: Any, where: str, version: int = METRICS_VERSION) -> dict[str, SplitErrors]:
    if not isinstance(data, Mapping):
        raise _fail(where, f"expected an object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in SPLITS)
    if unknown:
        raise _fail(where, f"unknown split {', '.join(unknown)}")
    return {s: SplitErrors.from_dict(data[s], f"{where}.{s}", version) for s in SPLITS if s in data}


def _counts(data: Any, where: str) -> dict[str, int]:
    if not isinstance(data, Mapping) or any(k not in SPLITS for k in data):
        raise _fail(where, "expected an object of split names to counts")
    return {str(k): _int(v, f"{where}.{k}") for k, v in data.items()}


@dataclass(frozen=True)
class RunMetrics:
    """What a finished run measured (``metrics.json``): its point (M, C, seed), per-split errors of the model and
    of the element-reference baseline (no geometry), and the learning curve."""

    model: str
    n_molecules: int  # M: training molecules
    conformers_per_molecule: int  # C
    seed: int
    device: str = ""
    seconds: float = 0.0  # wall time of the training (across resumes)
    splits: dict[str, SplitErrors] = field(default_factory=dict)  # keys: a subset of SPLITS, in that order
    baselines: dict[str, SplitErrors] = field(default_factory=dict)
    curve: list[CurvePoint] = field(default_factory=list)
    # version 2: how long it trained and where its best (kept) weights are; None when read from a version 1 file
    steps_run: int | None = None  # optimiser steps taken
    epochs_run: int | None = None  # passes over the training set begun
    best_step: int | None = None  # the step of the kept weights (lowest validation loss)
    best_epoch: int | None = None
    converged: bool | None = None  # forces_converged (version 3's rule; recomputed for version 2 files)
    excluded: dict[str, int] = field(default_factory=dict)  # per split: conformers of its pool not scored
    version: int = METRICS_VERSION

    def split(self, name: str) -> SplitErrors | None:
        """The errors of split ``name``, or None when the run has none for it."""
        return self.splits.get(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``metrics.json`` (plain dicts, lists and numbers)."""
        return {
            "version": self.version,
            "model": self.model,
            "n_molecules": self.n_molecules,
            "conformers_per_molecule": self.conformers_per_molecule,
            "seed": self.seed,
            "device": self.device,
            "seconds": self.seconds,
            "splits": {s: self.splits[s].to_dict() for s in SPLITS if s in self.splits},
            "baselines": {s: self.baselines[s].to_dict() for s in SPLITS if s in self.baselines},
            "curve": [c.to_dict() for c in self.curve],
            **{k: getattr(self, k) for k in TRAINING_KEYS},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "metrics") -> RunMetrics:
        """Decode a ``metrics.json`` object; ``source`` (a file name, a run id) is named in every error.

        Raises:
            MetricsError: an unknown version, a missing or unknown key, or a value of the wrong type.
        """
        where = str(source)
        version = 1
        if isinstance(data, Mapping) and "version" in data:
            version = data["version"]
            if version not in READABLE_VERSIONS or isinstance(version, bool):
                raise _fail(where, f"metrics version {version!r} (this mlipdiv reads versions "
                                   f"{', '.join(map(str, READABLE_VERSIONS))})")
        d = _mapping(data, where, _TOP_KEYS + (TRAINING_KEYS if version >= 2 else ()), optional=("version",))
        if not isinstance(d["curve"], list):
            raise _fail(f"{where}: curve", f"expected a list, got {type(d['curve']).__name__}")
        curve = [CurvePoint.from_dict(c, f"{where}: curve[{i}]", version) for i, c in enumerate(d["curve"])]
        steps_run = _opt_int(d.get("steps_run"), f"{where}: steps_run")
        converged = _opt_bool(d.get("converged"), f"{where}: converged")
        if version == 2 and steps_run is not None:  # version 2's flag read the validation loss: one rule for all
            converged = forces_converged(curve, steps_run)
        return cls(
            model=_str(d["model"], f"{where}: model"),
            n_molecules=_int(d["n_molecules"], f"{where}: n_molecules"),
            conformers_per_molecule=_int(d["conformers_per_molecule"], f"{where}: conformers_per_molecule"),
            seed=_int(d["seed"], f"{where}: seed"),
            device=_str(d["device"], f"{where}: device"),
            seconds=_float(d["seconds"], f"{where}: seconds"),
            splits=_split_table(d["splits"], f"{where}: splits", version),
            baselines=_split_table(d["baselines"], f"{where}: baselines", version),
            curve=curve,
            steps_run=steps_run,
            epochs_run=_opt_int(d.get("epochs_run"), f"{where}: epochs_run"),
            best_step=_opt_int(d.get("best_step"), f"{where}: best_step"),
            best_epoch=_opt_int(d.get("best_epoch"), f"{where}: best_epoch"),
            converged=converged,
            excluded=_counts(d.get("excluded", {}), f"{where}: excluded"),
            version=METRICS_VERSION,
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str | Path = "metrics.json") -> RunMetrics:
        """Decode the text of a ``metrics.json``.

        Raises:
            MetricsError: not JSON, or not this version's contract (see :meth:`from_dict`).
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _fail(str(source), f"not JSON ({exc})") from exc
        return cls.from_dict(data, source)
