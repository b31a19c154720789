"""Names that are written to disk (JSON, CSV, SQLite) or typed by a user, defined once.

Each is a :class:`enum.StrEnum`: a member *is* its string (``SplitName.TRAIN == "train"``, ``json.dumps`` and SQLite
store ``"train"``), so files written before these enums existed read back unchanged. Core module: standard library
only.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_STATUSES",
    "EVAL_SPLITS",
    "EXPERIMENTS",
    "FINAL_STATUSES",
    "SPLITS",
    "STATUSES",
    "TEST_SPLITS",
    "Experiment",
    "SplitName",
    "Status",
]


class SplitName(StrEnum):
    """The four parts of a split; the keys of ``split.json`` and of every per-split metric."""

    TRAIN = "train"
    VAL = "val"
    TEST_CONFORMERS = "test_conformers"  # unseen conformers of training molecules
    TEST_MOLECULES = "test_molecules"  # molecules never trained on


SPLITS: tuple[SplitName, ...] = tuple(SplitName)
EVAL_SPLITS: tuple[SplitName, ...] = (SplitName.VAL, SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES)
TEST_SPLITS: tuple[SplitName, ...] = (SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES)


class Experiment(StrEnum):
    """The two experiments of the study (CLI ``--experiment``, sweep keys, study tables)."""

    FIXED_BUDGET = "fixed-budget"  # M x C = B fixed, M varies
    FIXED_MOLECULES = "fixed-molecules"  # M fixed, C varies


EXPERIMENTS: tuple[Experiment, ...] = tuple(Experiment)


class Status(StrEnum):
    """A run's status in the run store (the ``status`` column of ``runs.db``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


STATUSES: tuple[Status, ...] = tuple(Status)
ACTIVE_STATUSES: tuple[Status, ...] = (Status.QUEUED, Status.RUNNING)  # still to finish: waiting or working
FINAL_STATUSES: tuple[Status, ...] = (Status.DONE, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)
