"""``python -m mlipdiv.bench <benchmark> [options]``: one module per benchmark in this package."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {"train": "mlipdiv.bench.train", "sweep": "mlipdiv.bench.sweep", "app": "mlipdiv.bench.app"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlipdiv.bench", description="mlipdiv benchmarks")
    sub = parser.add_subparsers(dest="name", required=True, metavar="<benchmark>")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    from mlipdiv.cli import run_parsed

    return run_parsed(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
