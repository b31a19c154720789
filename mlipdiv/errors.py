"""Errors a user can act on. The CLI prints their message (no traceback); the app shows it in the page."""


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
