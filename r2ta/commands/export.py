"""``r2ta export sft|dpo --out FILE``: training rows from the reviewed proposals, with provenance."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write SFT examples or DPO pairs from the reviews in force (TRL conversational JSONL)",
        description=(
            "sft: one row per accepted or edited proposal, {messages, provenance}. dpo: one pair per "
            "accepted or edited proposal, {prompt, chosen, rejected, provenance}: chosen is the reviewed "
            "trace, rejected the model's original output. Only the latest review of each proposal counts."
        ),
    )
    p.add_argument("kind", choices=["sft", "dpo"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", choices=["train", "test", "all"], default="train", help="default: %(default)s")
    p.add_argument(
        "--negatives", choices=["original", "planted", "omission", "both"], default="original",
        help="dpo: the rejected trace is the model's original output (the R2tA pair), the chosen trace with one "
        "planted omission, hallucination or misclassification (hard negatives), always an omission (in a walk: "
        "the same walk saying ok at one wrong construct), or both original and planted, two pairs per decision "
        "(default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from r2ta.pairs import write_rows
    from r2ta.pipeline import export_rows

    report = export_rows(args.kind, split=None if args.split == "all" else args.split, negatives=args.negatives)
    for reason in report.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    n = write_rows(report.rows, args.out)
    print(f"wrote {n} {args.kind.upper()} rows to {args.out}" + (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    return 0
