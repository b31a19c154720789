"""``python -m mlipdiv.bench <benchmark> [options]``: one module per benchmark in this package."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {"train": "mlipdiv.bench.train"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlipdiv.bench", description="mlipdiv benchmarks")
    sub = parser.add_subparsers(dest="name", required=True, metavar="<benchmark>")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    from mlipdiv.errors import MlipdivError

    try:
        return int(args._run(args) or 0)
    except MlipdivError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
