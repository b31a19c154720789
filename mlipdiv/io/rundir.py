"""The run folder: the one place that knows its file names, and how each file is read and written.

Why one owner: training writes a run folder, and the store, its worker and repair, the sweeps, the analysis, the
calculator and the app read it. When each of them spelled ``"metrics.json"`` on its own, renaming or versioning a
file meant finding every spelling. Everything goes through :class:`RunDir`; writes are atomic
(:mod:`mlipdiv.io.atomic`), so a reader or a killed process never sees a torn file.

A run folder holds (the trainer writes all but ``run.json``, ``error.log`` and ``.lock``):

- ``config.json``: the training configuration (``TrainConfig.to_dict()``).
- ``split.json``: the training / val / test pairs (``mlipdiv.selection.Split.to_json``).
- ``checkpoint.pt``: after every epoch, what a resume needs; its presence means the run can resume.
- ``model.pt``: the best weights (``mlipdiv.models.Potential.load``).
- ``predictions.npz``: per evaluated conformer: ``mol_id``, ``conf_idx``, ``split``, ``E_true``, ``E_pred``,
  ``E_baseline`` (eV), ``n_atoms``, ``forces_mae`` (eV/angstrom).
- ``metrics.json``: :class:`mlipdiv.io.metrics.RunMetrics`.
- ``summary.json``: best epoch, early stop, elements, parameter count, conformers left out of evaluation.
- ``run.json``: the store's marker (id, key, config, creation time), what ``runs repair`` rebuilds a row from.
- ``error.log``: the traceback of a failed run (written by the store's worker).
- ``.lock``: the writer's lock file (:mod:`mlipdiv.io.runlock`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlipdiv.io.atomic import (
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
)
from mlipdiv.io.metrics import MetricsError, RunMetrics
from mlipdiv.io.runlock import (
    LOCK_NAME,
    ForeignFolder,
    RunFolderBusy,
    busy_error,
    lock_holder,
    run_lock,
)

__all__ = ["ForeignFolder", "MetricsError", "RunDir", "RunFolderBusy", "check_run_folder"]

CONFIG = "config.json"
SPLIT = "split.json"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
PREDICTIONS = "predictions.npz"
METRICS = "metrics.json"
SUMMARY = "summary.json"
MARKER = "run.json"
ERROR_LOG = "error.log"


class RunDir:
    """A run folder (which need not exist yet): its paths, readers and writers, and its writer lock."""

    # what a fresh training run replaces: results of an earlier run in the folder must not pass for the new one's
    TRAINING_OUTPUTS = (CHECKPOINT, MODEL, METRICS, PREDICTIONS, SUMMARY, SPLIT)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -------------------------------------------------------------------------------------------------- paths

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def split_path(self) -> Path:
        return self.path / SPLIT

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def marker_path(self) -> Path:
        return self.path / MARKER

    @property
    def error_log_path(self) -> Path:
        return self.path / ERROR_LOG

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    # -------------------------------------------------------------------------------------------------- state

    def has_checkpoint(self) -> bool:
        """Whether a resume can continue this run."""
        return self.checkpoint_path.is_file()

    def is_run_folder(self) -> bool:
        """Whether the folder holds a run's marker or configuration (what the store and repair look for)."""
        return self.marker_path.exists() or self.config_path.exists()

    def missing(self, *paths: Path) -> list[str]:
        """Names of the given files of this folder that do not exist (for "not a finished run" messages)."""
        return [p.name for p in paths if not p.exists()]

    def clear_training_outputs(self) -> None:
        """Remove what an earlier training left (a fresh start must not show an old run's results)."""
        for name in self.TRAINING_OUTPUTS:
            (self.path / name).unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the folder exclusively (created when missing; re-entrant in one thread): see
        :func:`mlipdiv.io.runlock.run_lock`.

        Raises:
            RunFolderBusy: another process or thread holds it.
        """
        with run_lock(self.path):
            yield self

    # ------------------------------------------------------------------------------------------------ readers

    @staticmethod
    def _json(path: Path) -> Any:
        return json.loads(path.read_text())

    def read_config(self) -> dict[str, Any]:
        """``config.json`` as a dictionary (the training layer decodes it into its ``TrainConfig``).

        Raises:
            OSError / ValueError: missing or not JSON.
        """
        return dict(self._json(self.config_path))

    def read_split(self) -> dict[str, Any]:
        """``split.json`` as a dictionary (``mlipdiv.selection.load_split`` gives a ``Split``)."""
        return dict(self._json(self.split_path))

    def read_summary(self) -> dict[str, Any]:
        return dict(self._json(self.summary_path))

    def read_marker(self) -> dict[str, Any]:
        return dict(self._json(self.marker_path))

    def read_metrics(self) -> RunMetrics:
        """``metrics.json``, checked against the contract.

        Raises:
            OSError: the file is missing or unreadable.
            MetricsError: it is not a metrics.json this version understands (names the file).
        """
        return RunMetrics.from_json(self.metrics_path.read_bytes(), self.metrics_path)

    def read_predictions(self, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """``predictions.npz`` (all arrays, or those named by ``keys``), without unpickling anything."""
        with np.load(self.predictions_path, allow_pickle=False) as npz:
            return {k: npz[k] for k in (keys if keys is not None else npz.files)}

    def read_error_log(self) -> str:
        return self.error_log_path.read_text(errors="replace")

    # ------------------------------------------------------------------------------------------------ writers

    def write_config(self, config: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.config_path, dict(config))

    def write_split(self, text: str) -> Path:
        """``split.json`` from its text (the split owns its format: sorted keys, rounded floats)."""
        return atomic_write_text(self.split_path, text)

    def write_checkpoint(self, state: Mapping[str, Any]) -> Path:
        return atomic_torch_save(self.checkpoint_path, dict(state))

    def write_model(self, write: Callable[[IO[bytes]], Any]) -> Path:
        """``model.pt`` through ``write(f)`` (the potential owns its format)."""
        return atomic_write(self.model_path, write)

    def write_predictions(self, arrays: Mapping[str, np.ndarray]) -> Path:
        # allow_pickle named (numpy's default, unchanged) so the arrays map only to savez's **kwds
        return atomic_write(self.predictions_path, lambda f: np.savez(f, allow_pickle=True, **arrays))

    def write_metrics(self, metrics: RunMetrics) -> Path:
        return atomic_write_json(self.metrics_path, metrics.to_dict())

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.summary_path, dict(summary))

    def write_marker(self, marker: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.marker_path, dict(marker))

    def write_error_log(self, text: str) -> Path:
        """The traceback of a failed run (plain write: a torn log is still a log, and it must not fail)."""
        self.error_log_path.write_text(text)
        return self.error_log_path


def check_run_folder(
    out: str | Path, config: Mapping[str, Any], *, overwrite: bool = False, resume: bool = False
) -> None:
    """Refuse to train into ``out`` when that would replace files that are not this run's.

    Accepted without ``overwrite``: a missing or empty folder, or a run folder whose ``config.json`` is ``config``
    (training it again gives the same result, so nothing is lost). ``resume`` needs a run folder; whether its
    checkpoint matches is training's check. Never creates or changes anything.

    Raises:
        RunFolderBusy: another process is writing ``out`` right now.
        ForeignFolder: ``out`` is a file, or holds other files, and ``overwrite`` is false.
    """
    run = RunDir(out)
    out = run.path
    if out.exists() and not out.is_dir():
        raise ForeignFolder(f"{out} is a file, not a run folder; choose another --out")
    who = lock_holder(out) if out.is_dir() else None
    if who is not None:
        raise busy_error(out, who)
    if resume and not run.has_checkpoint():
        raise ForeignFolder(
            f"cannot resume: {out} has no {CHECKPOINT} (is it a run folder?); leave out --resume")
    if overwrite or resume or not out.is_dir():
        return
    entries = [p.name for p in out.iterdir() if p.name != LOCK_NAME]
    if not entries:
        return
    try:
        saved = run.read_config()
    except (OSError, ValueError, TypeError):
        saved = None
    if saved == json.loads(json.dumps(dict(config))):  # as config.json holds it (tuples as lists, ...)
        return
    what = "a run of another configuration" if saved is not None else "files that are not a training run"
    raise ForeignFolder(
        f"{out} already exists and holds {what}; delete it, choose another --out, or pass --overwrite"
    )
