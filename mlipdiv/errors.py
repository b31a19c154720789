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
    """Training was stopped on request (``should_stop``); the last validation's checkpoint is kept for ``resume``.

    ``metrics``: the ``metrics.json`` dictionary of the best weights reached, scored on every split (None when no
    validation was reached), so a cancelled run still shows what it learnt.
    """

    metrics: dict | None = None


class InvalidSetting(MlipdivError, ValueError):
    """A number or choice outside its documented range. The message names the setting by its field name (``lr``),
    as the library and the app know it; ``field`` carries that name so that the CLI can show its flag (``--lr``)
    instead (see :func:`mlipdiv.cli.user_message`).

    Also a ``ValueError``, so callers that caught the plain ``ValueError`` of earlier versions still catch it."""

    def __init__(self, message: str, field: str | None = None, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.fields: tuple[str, ...] = fields or ((field,) if field else ())

    def __reduce__(self) -> tuple:  # survives pickling (worker processes, Ray) with its fields
        return (InvalidSetting._rebuild, (type(self), self.args, self.__dict__))

    @staticmethod
    def _rebuild(cls: type[InvalidSetting], args: tuple, state: dict) -> InvalidSetting:
        exc: InvalidSetting = Exception.__new__(cls)
        exc.args = args
        exc.__dict__.update(state)
        return exc

    @classmethod
    def out_of_range(cls, name: str, value: object, rule: str, why: str = "") -> InvalidSetting:
        """``lr 1000000.0 is out of range: lr must be in (0, 1]; why`` (the CLI shows ``--lr 1000000.0 ...``)."""
        return cls(f"{name} {value!r} is out of range: {name} must be {rule}" + (f"; {why}" if why else ""), name)


class UnknownName(InvalidSetting):
    """A name that is not in a registry (model, strategy, QM engine, experiment); the message lists the known ones.

    ``field`` is set by whoever knows which setting held the name (e.g. ``strategy``); a bare lookup leaves it
    ``None``."""

    def __init__(self, kind: str, name: object, known: list[str] | tuple[str, ...], field: str | None = None) -> None:
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(map(str, known))}", field)
        self.kind = kind
        self.name = name
        self.known = list(known)
