"""The ``r2ta`` command line. Subcommands live in :mod:`r2ta.commands`, one module each.

Each module defines ``register(subparsers)`` which adds its parser(s) and sets
``func`` on them. :class:`~r2ta.errors.R2taError` becomes a clean message and exit
status 2; the exit status 1 is reserved for "ran fine and found mistakes" (``check``).

SIGTERM (``kill``, ``timeout``, a supervisor, ``r2ta loop`` stopping a stage) is met like Ctrl-C: it raises
:class:`Terminated`, a ``KeyboardInterrupt``, so what a command does on Ctrl-C it does on SIGTERM too — a half-made
run folder is removed, a followed training run is cancelled at its next step — and the exit status is 143
(128 + SIGTERM). A second SIGTERM while that is under way ends the process at once.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading

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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (:func:`main`): handled wherever Ctrl-C is."""


EXIT_TERMINATED = 128 + signal.SIGTERM


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM, while this one is handled, ends at once
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    own_handler = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if own_handler else None
    try:
        return int(args.func(args) or 0)
    except R2taError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if own_handler:  # None: the handler before was not Python's (the default)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
