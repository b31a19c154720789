"""Command-line flags generated from configuration dataclasses, so a setting's default and help live in one field.

Each leaf setting (:func:`mlipdiv.training.config.settings`) becomes ``--key-with-dashes`` with ``dest=key``, the
field's type (``int``, ``float`` or ``str``; ``X | None`` as ``X``), its default, its ``choices`` and its ``help``
(``(default: ...)`` appended). A section (a nested dataclass) becomes an argument group titled by its ``title``.
:func:`from_args` builds the configuration back from the parsed flags through the class's ``from_dict``.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from typing import Any

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def _scalar(owner: type, name: str) -> type:
    """``int``, ``float`` or ``str``: the type of field ``name`` of ``owner`` without ``| None``."""
    hint = typing.get_type_hints(owner)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _owner(cls: type, section: str | None) -> type:
    if section is None:
        return cls
    f = next(f for f in fields(cls) if f.name == section)
    return f.default_factory  # type: ignore[return-value]


def option_keys(cls: type, *, only: Collection[str] | None = None, exclude: Collection[str] = ()) -> list[str]:
    """The keys (``dest`` names) :func:`add_dataclass_arguments` makes flags for."""
    from mlipdiv.training.config import settings

    return [s.key for s in settings(cls) if (only is None or s.key in only) and s.key not in exclude]


def add_dataclass_arguments(
    parser: Parser,
    cls: type,
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
    required: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One flag per setting of dataclass ``cls`` (see the module doc).

    Args:
        only, exclude: keys to make flags for (default: all) and to leave out.
        required: keys a command needs given (default None; the command says what is missing).
        defaults: keys whose default this command changes (a benchmark's own setting, say).
    """
    from mlipdiv.training.config import settings

    defaults = defaults or {}
    groups: dict[str | None, Parser] = {None: parser}
    wanted = set(option_keys(cls, only=only, exclude=exclude))
    for s in settings(cls):
        if s.key not in wanted:
            continue
        if s.section not in groups:
            title = next(f for f in fields(cls) if f.name == s.section).metadata.get("title", s.section)
            groups[s.section] = parser.add_argument_group(title)
        f, owner = s.field, _owner(cls, s.section)
        default = None if s.key in required else defaults.get(s.key, f.default if f.default is not MISSING else None)
        help_text = f.metadata.get("help", "")
        if default is not None:
            help_text += f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"
        choices = f.metadata.get("choices")
        groups[s.section].add_argument(
            f"--{s.key.replace('_', '-')}",
            dest=s.key,
            type=_scalar(owner, f.name),
            default=default,
            choices=choices() if callable(choices) else choices,
            help=help_text,
        )


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """``cls`` from the parsed flags of :func:`add_dataclass_arguments` (settings without a flag take their
    defaults); ``cls.from_dict`` when it has one (it knows its sections), else ``cls(**values)``."""
    values = {key: getattr(args, key) for key in option_keys(cls) if hasattr(args, key)}
    from_dict = getattr(cls, "from_dict", None)
    return from_dict(values) if from_dict is not None else cls(**values)
