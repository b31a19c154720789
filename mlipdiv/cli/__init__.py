"""``python -m mlipdiv <verb>``: one module per verb in this package, discovered at start-up.

Each verb module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; a module without
``HELP`` is a helper the verbs share (:mod:`.options`). The verb is the module's name, or its ``VERB`` when that name
is a Python keyword (``import_`` -> ``import``). Heavy imports stay inside ``run`` so that ``--help`` is
instant. Adding a verb means adding a module; nothing here changes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from mlipdiv.errors import InvalidSetting, MlipdivError

# Order in `--help`; verbs not listed here follow alphabetically.
_ORDER = ["generate", "import_", "info", "split", "train", "runs", "sweep", "budget"]


def _verb_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlipdiv",
        description="Structural vs conformational diversity for machine-learning interatomic potentials.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    for name in _verb_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        if not hasattr(module, "HELP"):  # a helper shared by verbs (options), not a verb
            continue
        verb = sub.add_parser(getattr(module, "VERB", name), help=module.HELP, description=module.HELP)
        module.add_arguments(verb)
        verb.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))


def flag_for(field: str) -> str:
    """The command-line flag of a setting: every flag is its field name with dashes (``batch_size`` ->
    ``--batch-size``)."""
    return f"--{field.replace('_', '-')}"


def user_message(exc: MlipdivError) -> str:
    """``exc``'s message as the CLI shows it: a setting the library names by its field is named by its flag
    (``lr 2.0 is out of range: ...`` -> ``--lr 2.0 is out of range: ...``); a message that does not start with the
    field gets the flags appended (``... (--energy-weight, --forces-weight)``)."""
    message = str(exc)
    fields = exc.fields if isinstance(exc, InvalidSetting) else ()
    if not fields:
        return message
    if len(fields) == 1 and message.startswith(fields[0]) and message[len(fields[0]):][:1] in (" ", ":", ""):
        return flag_for(fields[0]) + message[len(fields[0]):]
    return f"{message} ({', '.join(map(flag_for, fields))})"


def run_parsed(args: argparse.Namespace) -> int:
    """Run the command ``args._run`` and turn the ways a command can end into exit codes and one-line messages."""
    try:
        return int(args._run(args) or 0)
    except MlipdivError as exc:  # a user-facing problem: say what and how to fix it, no traceback
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; work done so far is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed our stdout: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # silence the flush at exit
        return 0
    except OSError as exc:  # the file system refused (no such folder, read-only, full disk): name the file, no trace
        where = exc.filename if exc.filename is not None else "a file"
        print(f"error: {where}: {exc.strerror or type(exc).__name__}; check the path and its permissions",
              file=sys.stderr)
        return 2
