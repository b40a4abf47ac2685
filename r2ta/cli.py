"""The ``r2ta`` command line. Subcommands live in :mod:`r2ta.commands`, one module each.

Each module defines ``register(subparsers)`` which adds its parser(s) and sets
``func`` on them. :class:`~r2ta.errors.R2taError` becomes a clean message and exit
status 2; the exit status 1 is reserved for "ran fine and found mistakes" (``check``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import r2ta.commands
from r2ta import __version__
from r2ta.errors import R2taError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r2ta", description="R2tA Studio: reason, refine, align.")
    parser.add_argument("--version", action="version", version=f"r2ta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(r2ta.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"r2ta.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except R2taError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
