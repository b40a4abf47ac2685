"""``r2ta import FILE``: convert an ERDPlus, PlantUML Chen, Mermaid or R2tA JSON diagram.

Writes the native JSON (stdout, or ``-o OUT.json``) or PlantUML Chen (``-o OUT.puml``)
and prints a warning for everything the source could not express or the conversion
had to assume. The output file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from r2ta.eerd import diagram_to_json
from r2ta.errors import R2taError
from r2ta.formats import FORMATS, import_file

PLANTUML_SUFFIXES = {".puml", ".plantuml", ".pu", ".wsd"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="convert an ERDPlus, PlantUML Chen or Mermaid diagram to R2tA JSON (or PlantUML)",
        description=(
            "Convert a diagram file. The format is detected from the content unless --format is given. "
            "Warnings name what the source format could not express. Output: native JSON on stdout, "
            "or -o OUT.json / -o OUT.puml (PlantUML Chen)."
        ),
    )
    p.add_argument("file", help="the diagram file (.erdplus, .puml, .mmd, .json)")
    p.add_argument("--format", choices=[f for f in FORMATS], default=None, help="the input format (default: detect)")
    p.add_argument("-o", "--output", default=None, help="write OUT.json (R2tA JSON) or OUT.puml (PlantUML Chen)")
    p.set_defaults(func=run)


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: never a half-written diagram."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise R2taError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise R2taError(f"cannot write {path}: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:
    result = import_file(args.file, args.format)
    d = result.diagram
    warnings = list(result.warnings)
    if args.output is None:
        text, out_kind = diagram_to_json(d) + "\n", "json"
    else:
        out = Path(args.output)
        suffix = out.suffix.lower()
        if suffix in PLANTUML_SUFFIXES:
            from r2ta.formats.plantuml import export_plantuml

            exported = export_plantuml(d)
            text, out_kind = exported.text, "plantuml"
            warnings += [f"PlantUML export: {w}" for w in exported.warnings]
        elif suffix == ".json":
            text, out_kind = diagram_to_json(d) + "\n", "json"
        else:
            raise R2taError(
                f"cannot tell the output format from {args.output!r}: name it OUT.json (R2tA JSON) or OUT.puml (PlantUML Chen)"
            )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write_atomic(Path(args.output), text)
    print(
        f"imported {Path(args.file).name} ({result.format}): {len(d.entities)} entities, "
        f"{len(d.relationships)} relationships, {len(d.specializations)} specializations, "
        f"{len(d.categories)} categories; {len(warnings)} warning(s)"
        + (f"; wrote {args.output} ({out_kind})" if args.output else ""),
        file=sys.stderr,
    )
    return 0
