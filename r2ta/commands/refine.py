"""``r2ta refine``: stage 2 — audit stored traces step by step and store refinement proposals."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="audit traces against the ground truth and store proposals for review",
        description=(
            "Audit every trace that has no proposal by the chosen auditor yet. 'deterministic' (default, "
            "offline) judges each step against the ground truth and the checker; 'walk' makes the same judgements "
            "but writes the refined steps as a walk of the diagram, one step per construct (ok, or the mistake "
            "found there); 'evidence' writes the same walk with each construct's structural facts (key none, "
            "identified by none, 2 ends) before its decision; 'llm' asks a model behind "
            "an OpenAI-compatible backend to rewrite the trace and flags every disagreement with the truth."
        ),
    )
    p.add_argument("--auditor", choices=["deterministic", "walk", "evidence", "llm"], default="deterministic")
    p.add_argument("--backend", default="vllm", help="for --auditor llm: the named backend (default: %(default)s)")
    p.add_argument("--model-id", default=None, help="only traces by this model id")
    p.add_argument("--split", choices=["train", "test"], default=None)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from r2ta.audit import LLMRefiner
    from r2ta.backends import get_backend
    from r2ta.pipeline import refine

    auditor = args.auditor if args.auditor != "llm" else LLMRefiner(get_backend(args.backend))
    bar = tqdm(desc="refine", unit="trace", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = refine(auditor=auditor, model_id=args.model_id, split=args.split, limit=args.limit, progress=progress)
    finally:
        bar.close()
    print(report)
    return 0
