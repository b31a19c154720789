"""Errors a user can act on. The CLI prints their message (no traceback); the app shows it in the page."""

from __future__ import annotations


class MlipdivError(Exception):
    """Base class: the message says what was wrong and what the user can do."""


class DatasetError(MlipdivError):
    """A dataset file is missing, corrupt, truncated, foreign or inconsistent."""


class InfeasibleRequest(MlipdivError):
    """A request the data cannot satisfy (budget too large, too many molecules or conformers)."""


class TrainingError(MlipdivError):
    """Training stopped for a reason the user should see (NaN loss, unsupported element, ...)."""


class TrainingCancelled(MlipdivError):
    """Training was stopped on request (``should_stop``); the last epoch's checkpoint is kept for ``resume``."""


class InvalidSetting(MlipdivError, ValueError):
    """A number or choice outside its documented range; the message names the setting (and its command-line flag).

    Also a ``ValueError``, so callers that caught the plain ``ValueError`` of earlier versions still catch it."""

    @classmethod
    def out_of_range(cls, name: str, value: object, rule: str, why: str = "") -> InvalidSetting:
        """``--lr 1000000.0 is out of range: lr must be in (0, 1]; why``: the flag for the CLI, the name for the app."""
        flag = f"--{name.replace('_', '-')}"
        return cls(f"{flag} {value!r} is out of range: {name} must be {rule}" + (f"; {why}" if why else ""))
