"""``r2ta seed``: set up an empty data folder (dataset, database, model, first traces)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seed", help="first-run setup: dataset, database, embedded model, first traces")
    p.add_argument("--first-batch", type=int, default=24, help="variants the model reasons about at first run")
    p.add_argument("--progress-file", type=Path, default=None, help="also append progress as JSON lines here")
    p.add_argument("--no-model", action="store_true", help="skip fetching the model and generating traces")
    p.set_defaults(func=cmd_seed)


def cmd_seed(args: argparse.Namespace) -> int:
    from r2ta.errors import R2taError
    from r2ta.seeding import seed, write_progress

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", flush=True)
        if args.progress_file:
            write_progress(args.progress_file, fraction, message)

    try:
        report = seed(progress, first_batch=args.first_batch, with_model=not args.no_model)
    except R2taError as err:
        if args.progress_file:
            write_progress(args.progress_file, 1.0, "Setup failed.", error=str(err))
        raise
    if args.progress_file:
        write_progress(args.progress_file, 1.0, "Ready.", done=True)
    for line in report.done:
        print(f"  done: {line}")
    for line in report.skipped:
        print(f"  skipped: {line}")
    return 0
