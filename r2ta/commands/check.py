"""``r2ta check FILE``: report the structural mistakes of a diagram file.

Exit status: 0 when the checker finds nothing, 1 when it finds mistakes, 2 on an
unreadable or malformed file (an :class:`~r2ta.errors.R2taError`, printed by the CLI).
Only structural mistakes are reported: mistakes that need the requirements
(a wrong cardinality, a missing attribute) are out of the checker's reach.
"""

from __future__ import annotations

import argparse
import json
import sys

from r2ta.checker import check
from r2ta.formats import read_any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="report the structural mistakes of a diagram (exit 1 when there are any)",
        description=(
            "Read a diagram (native JSON, a base schema file, or a format r2ta imports) and print "
            "its structural mistakes: one line per finding, 'category  elements  explanation'. "
            "Exit status 0: none found; 1: mistakes found; 2: the file could not be read."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the diagram file")
    p.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    p.add_argument(
        "--format",
        dest="fmt",
        metavar="FMT",
        default=None,
        help="the file's format (default: detected from its content)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    diagram = read_any(args.file, args.fmt)
    findings = check(diagram)
    out = sys.stdout
    if args.json:
        out.write(json.dumps([m.model_dump(mode="json", exclude_none=True) for m in findings], indent=2))
        out.write("\n")
    else:
        # One finding per line on stdout (easy to grep); the summary goes to stderr.
        width = max((len(m.category) for m in findings), default=0)
        for m in findings:
            out.write(f"{m.category:<{width}}  {','.join(m.elements)}  {m.explanation}\n")
        n = len(findings)
        summary = f"{n} structural mistake{'s' if n != 1 else ''} found" if n else "no structural mistakes found"
        print(f"{args.file}: {summary}", file=sys.stderr)
    return 1 if findings else 0
