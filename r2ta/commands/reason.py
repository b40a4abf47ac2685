"""``r2ta reason``: stage 1 — a model writes step-wise reasoning and a verdict for each variant.

Resumable: variants that already have a trace by the backend's model id are
skipped, so running the same command again continues an interrupted run.
``--evaluate`` then scores the model's traces on the split (DESIGN.md §5) and
stores the evaluation.
"""

from __future__ import annotations

import argparse
import sys

from r2ta.commands import DTYPES, add_budget_per_construct, check_budget_per_construct


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reason",
        help="generate reasoning traces for the variants of a split (resumable)",
        description=(
            "Generate a reasoning trace (numbered steps + VERDICT) for each variant of a split with a "
            "backend and store it with its parse errors, tokens and latency. Variants that already "
            "have a trace by the same model are skipped."
        ),
    )
    p.add_argument("--split", choices=["train", "test"], required=True)
    p.add_argument("--limit", type=int, default=None, help="only the first N variants of the split (id order; see --spread)")
    p.add_argument("--spread", action="store_true",
                   help="with --limit: take the N variants round-robin across base schemas (each schema's first, then each one's second, ...) instead of the first N by id, which are one schema")
    p.add_argument("--backend", default=None, help="a named backend (default: $R2TA_BACKEND or 'embedded')")
    p.add_argument("--batch-size", type=int, default=None, help="prompts per generate call (default: the backend's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="token budget per answer (default: 256)")
    add_budget_per_construct(p)
    p.add_argument("--verdict-tokens", type=int, default=None, metavar="N",
                   help="when an answer has no VERDICT line, append one and give the model N more tokens to write its verdict (default: 128; 0 = never; the trace records it)")
    p.add_argument("--verdict-grammar", action="store_true",
                   help="decode every verdict (asked for, or started by the model) under the verdict grammar: known categories and the "
                        "diagram's own elements only (local backends, or a vLLM server with assistant_prefill; traces stored as MODEL+grammar)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="weights of a local model (default: the backend's; auto: float32 on a CPU, bf16 or fp16 on "
                        "a GPU); another dtype than auto's stores the traces as MODEL@DTYPE")
    p.add_argument("--shard", default=None, metavar="I/N", help="only the I-th of N parts of the split (for N parallel workers)")
    p.add_argument("--evaluate", action="store_true", help="afterwards, score the model's traces on the split and store the evaluation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from r2ta.backends import get_backend
    from r2ta.errors import R2taError
    from r2ta.metrics import format_report
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, evaluate_model, reason

    if args.limit is not None and args.limit < 1:
        raise R2taError("--limit must be at least 1")
    if args.verdict_tokens is not None and args.verdict_tokens < 0:
        raise R2taError("--verdict-tokens must be 0 (never) or more")
    check_budget_per_construct(args)
    shard = None
    if args.shard:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise R2taError(f"--shard must look like 0/2, got {args.shard!r}") from None
        if not 0 <= i < n:
            raise R2taError(f"--shard {args.shard}: I must be between 0 and N-1")
        shard = (i, n)
    backend = get_backend(args.backend, batch_size=args.batch_size, verdict_grammar=args.verdict_grammar or None,
                          dtype=args.dtype)
    if args.dtype is not None and backend.config.kind != "local":
        raise R2taError(f"--dtype is the setting of a model loaded here; backend {backend.config.name!r} is a server")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=f"reason {backend.id}", unit="variant", file=sys.stderr)
        bar.update(done - bar.n)

    from r2ta.jobs import now_iso
    from r2ta.model_jobs import record_batch

    started = now_iso()
    try:
        report = reason(
            backend,
            split=args.split,
            limit=args.limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            progress=progress,
            shard=shard,
            spread=args.spread,
            tokens_per_construct=args.tokens_per_construct,
            **({} if args.verdict_tokens is None else {"verdict_tokens": args.verdict_tokens}),
        )
    finally:
        if bar is not None:
            bar.close()
        backend.close()
    print(report)
    if shard is None or shard[1] == 1:  # the Review page's next batch is timed by it (parallel shards share cores)
        record_batch(backend, report, started, max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                     tokens_per_construct=args.tokens_per_construct)
    if args.evaluate:
        scores, evaluation_id = evaluate_model(backend.id, split=args.split, store=True)
        print(format_report(scores))
        print(f"stored as evaluation {evaluation_id}")
    return 0
