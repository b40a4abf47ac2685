"""``r2ta eval``: score a model on a split and store the evaluation; compare stored evaluations.

    r2ta eval --model embedded --split test                 # the base model (generates missing traces)
    r2ta eval --model data/runs/RUN --split test --limit 24  # a run's SFT+DPO model (RUN:sft for its SFT stage)
    r2ta eval --model checker --split test                   # the structural checker alone
    r2ta eval --compare smollm2-135m-instruct RUN:sft RUN:sft+dpo checker
    r2ta eval --pending --limit 24                           # every finished run not evaluated yet

A model is ``checker``, a training run folder (optionally ``:sft`` / ``:sft+dpo``),
a model folder, or a named backend (``--backend NAME`` with another ``--model``:
that model served by the backend). Generation is resumable: variants that already
have a trace by the model are not generated again, unless this budget would have
written it otherwise (cut at another --max-new-tokens, longer than this one, or its
verdict asked for under another --verdict-tokens); the evaluation records its budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from r2ta.commands import DTYPES, add_budget_per_construct, check_budget_per_construct


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model (or the checker) on a split; compare evaluations",
                       description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="checker, a run folder[:sft|:sft+dpo], a model folder or a backend name")
    what.add_argument("--compare", nargs="+", metavar="MODEL_ID", help="stored model ids to compare side by side")
    what.add_argument("--pending", action="store_true",
                      help="evaluate every succeeded training run that has no evaluation yet (SFT and SFT+DPO, then "
                           "the model it started from beside them)")
    p.add_argument("--split", choices=["train", "test"], default="test", help="default: %(default)s")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N variants of the split (id order; see --spread); with --compare, scores the "
                        "models on those of them")
    p.add_argument("--spread", action="store_true",
                   help="with --limit: the N variants round-robin across base schemas instead of the first N by id")
    p.add_argument("--backend", default=None, help="named backend settings to generate with")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="weights of a local model (auto: float32 on a CPU, bf16 or fp16 on a GPU; a training run's "
                        "models: the dtype the run trained in, bfloat16 after bf16 on a CPU); bfloat16 on a CPU "
                        "with AMX or AVX512-BF16 generated 1.6-1.8x as fast as float32; another dtype than "
                        "auto's gives other tokens, so its traces and evaluation are stored as MODEL@DTYPE")
    p.add_argument("--max-new-tokens", type=int, default=None, help="token budget per answer (default: 256)")
    add_budget_per_construct(p)
    p.add_argument("--verdict-tokens", type=int, default=None, metavar="N",
                   help="when an answer has no VERDICT line, append one and give the model N more tokens to write its verdict (default: 128; 0 = never; the trace records it)")
    p.add_argument("--verdict-grammar", action="store_true",
                   help="decode every verdict (asked for, see --verdict-tokens, or started by the model) under the verdict grammar: known "
                        "categories and the diagram's own elements only (local models, or a vLLM server with assistant_prefill; stored as MODEL+grammar)")
    p.add_argument("--reuse-answers", action="store_true",
                   help="with --verdict-grammar: take the answers from the model's stored plain traces "
                        "and decode only their verdicts again: minutes instead of a whole generation (a stored answer "
                        "made under another --max-new-tokens is generated again, and the report says how many)")
    p.add_argument("--per-variant", type=Path, default=None, metavar="FILE",
                   help="--compare: also write each model's result on each variant scored to FILE (CSV: base schema, "
                        "verdict parses / asked for, predicted and true mistakes, right / wrong / missed)")
    p.add_argument("--all-variants", action="store_true",
                   help="--compare: score each model on all its variants, not only the common ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from r2ta.errors import R2taError
    from r2ta.evaluation import (budget_rows, evaluate, format_by_schema, format_side_by_side, list_evaluations,
                                 rescore, rows_csv, schema_rows, variant_rows, variant_schemas)
    from r2ta.metrics import format_report

    if args.compare:
        latest = {m.model_id: m for m in list_evaluations(split=args.split)}
        unknown = [m for m in args.compare if m not in latest]
        if unknown:
            raise R2taError(f"no stored {args.split} evaluation for {', '.join(unknown)}; "
                            f"evaluated models: {', '.join(sorted(latest)) or 'none'}")
        only = None
        if args.limit is not None:  # the first N variants of the split (id order, or --spread), as evaluation takes them
            if args.limit < 1:
                raise R2taError("--limit must be at least 1")
            from sqlmodel import Session

            from db.engine import get_engine
            from r2ta.store import first_variant_ids

            with Session(get_engine()) as session:
                only = set(session.exec(first_variant_ids(args.split, args.limit, spread=args.spread)).all())
        reports, common = rescore({m: latest[m].evaluation_id for m in args.compare}, common_only=not args.all_variants,
                                  only=only)
        if not args.all_variants:
            within = f" among the first {args.limit}{' (spread)' if args.spread else ''}" if only is not None else ""
            print(f"scored on the {len(common)} variants every model has{within}")
        print(format_side_by_side(reports, budget_rows({m: latest[m] for m in args.compare})))
        scored = sorted({v.variant_id for r in reports.values() for v in r.per_variant})
        print("by base schema: format validity / micro F1")
        print(format_by_schema(schema_rows(reports, variant_schemas(scored))))
        if args.per_variant is not None:
            rows = variant_rows({m: latest[m].evaluation_id for m in args.compare}, only=scored)
            try:
                args.per_variant.write_text(rows_csv(rows), encoding="utf-8")
            except OSError as err:
                raise R2taError(f"cannot write {args.per_variant}: {err.strerror or err}") from None
            print(f"{len(rows)} rows (model, variant) written to {args.per_variant}")
        return 0
    if args.per_variant is not None:
        raise R2taError("--per-variant goes with --compare: the models' stored evaluations side by side")
    if args.limit is not None and args.limit < 1:
        raise R2taError("--limit must be at least 1")
    if args.verdict_tokens is not None and args.verdict_tokens < 0:
        raise R2taError("--verdict-tokens must be 0 (never) or more")
    check_budget_per_construct(args)
    if args.pending:
        return _pending(args)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        from tqdm import tqdm

        if bar is None:
            bar = tqdm(total=total, desc=f"eval {args.model}", unit="variant", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        outcome = evaluate(args.model, split=args.split, limit=args.limit, backend=args.backend,
                           batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=progress,
                           verdict_tokens=args.verdict_tokens, spread=args.spread,
                           verdict_grammar=args.verdict_grammar, reuse_answers=args.reuse_answers,
                           dtype=args.dtype, tokens_per_construct=args.tokens_per_construct)
    finally:
        if bar is not None:
            bar.close()
    for note in outcome.notes:
        print(note)
    print(format_report(outcome.report))
    link = f", linked to training run {outcome.run_id}" if outcome.run_id else ""
    budget = f" (answers: {outcome.budget})" if outcome.budget else ""
    print(f"{outcome.model_id}: stored as evaluation {outcome.evaluation_id}{budget}{link}")
    return 0


def _pending(args: argparse.Namespace) -> int:
    """Evaluate, in the foreground, each succeeded run without an evaluation job (as the Train page's job would)."""
    from r2ta import eval_jobs, jobs

    todo = [r for r in jobs.list_runs()
            if jobs.read_progress(r).state == jobs.SUCCEEDED and not eval_jobs.read_eval_status(r)]
    if not todo:
        print("every succeeded run has an evaluation (or one under way)")
    code = 0
    for run_dir in todo:
        print(f"evaluating {run_dir}", flush=True)
        code = max(code, eval_jobs.evaluate_run(run_dir, split=args.split, limit=args.limit,
                                                max_new_tokens=args.max_new_tokens, spread=args.spread))
    return code
