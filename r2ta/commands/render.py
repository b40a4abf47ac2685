"""``r2ta render FILE -o OUT.svg|png|dot``: draw a diagram in Chen/EER notation with graphviz."""

from __future__ import annotations

import argparse
from pathlib import Path

from r2ta.errors import RenderError
from r2ta.render import DEFAULT_LAYOUT, LAYOUTS, render

# Output format by the extension of -o.
EXTENSIONS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="draw a diagram as SVG, PNG or DOT (Elmasri & Navathe Chen notation)",
        description=(
            "Draw a diagram with graphviz. The output format follows the extension of -o "
            "(.svg, .png, .dot/.gv); .dot needs no graphviz install."
        ),
    )
    p.add_argument("file", help="diagram file (R2tA JSON, or a format r2ta can import)")
    p.add_argument("-o", "--output", required=True, help="output file: OUT.svg, OUT.png or OUT.dot")
    p.add_argument("--format", dest="input_format", default=None, help="input format (default: detected)")
    p.add_argument(
        "--highlight",
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="element ids to draw in red (entities, relationships, attributes, specializations, categories)",
    )
    p.add_argument("--legend", action="store_true", help="add a legend explaining the glyphs")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help=f"graphviz layout engine (default {DEFAULT_LAYOUT}: attributes around their owner; dot: layered)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from r2ta.formats import read_any

    out = Path(args.output)
    fmt = EXTENSIONS.get(out.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(EXTENSIONS))
        raise RenderError(f"cannot tell the output format from {out.name!r}: give -o a file ending in {known}")
    diagram = read_any(args.file, args.input_format)
    unknown = sorted(set(args.highlight) - set(diagram.element_ids()))
    data = render(
        diagram, fmt, highlight=args.highlight, legend=args.legend, layout=args.layout
    )
    try:
        out.write_bytes(data)
    except OSError as err:
        raise RenderError(f"cannot write {out}: {err.strerror}") from None
    if unknown:
        print(f"note: no element with id {', '.join(unknown)} in {args.file}; nothing highlighted for it")
    print(f"wrote {out} ({len(data):,} bytes, {fmt})")
    return 0
