"""``r2ta schema``: print (or write) the published JSON Schema of the diagram format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of R2tA's diagram format")
    p.add_argument("-o", "--out", type=Path, default=None, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_schema)


def schema_text() -> str:
    from r2ta.eerd import json_schema

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
