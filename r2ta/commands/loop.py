"""``r2ta loop``: the whole measured loop — reason, refine, bulk-accept, export, train, evaluate, compare.

    R2TA_DATA_DIR=/tmp/loop-data r2ta loop --train-limit 8 --test-limit 24

The auditor's proposals are accepted in bulk by the reviewer ``bulk:deterministic-auditor``
(the data says so; these are not human reviews). Prints a side-by-side table of
base, SFT, SFT+DPO and the checker with each stage's wall time and peak memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r2ta.commands import DTYPES


def register(sub: argparse._SubParsersAction) -> None:
    from r2ta.jobs import DEFAULT_RECIPE

    p = sub.add_parser("loop", help="run the whole measured loop (bulk-accepted refinements) and compare models",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N train variants (default: all)")
    p.add_argument("--spread", action="store_true",
                   help="with --train-limit: take the N train variants round-robin across base schemas instead of "
                        "the first N by id (which are all one schema); test variants stay in id order")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test variants (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="token budget per answer (default: %(default)s)")
    p.add_argument("--base-max-new-tokens", type=int, default=None,
                   help="token budget of the base model's answers (reason-train, eval-base); default: --max-new-tokens")
    p.add_argument("--reason-max-new-tokens", type=int, default=None, metavar="N",
                   help="token budget of the base model's answers on the train split alone (reason-train); default: "
                        "--base-max-new-tokens. With --auditor walk|evidence and --negatives planted|omission nothing "
                        "trains on their text: 16 (with --reason-verdict-tokens 0) leaves the stage its prefill")
    p.add_argument("--tokens-per-construct", type=int, default=0, metavar="N",
                   help="the trained models' answers (eval-sft, eval-sft+dpo) get N more tokens per construct of the "
                        "diagram on top of --max-new-tokens (r2ta eval --tokens-per-construct; default: 0)")
    p.add_argument("--reason-verdict-tokens", type=int, default=None, metavar="N",
                   help="--verdict-tokens of reason-train alone (default: --verdict-tokens)")
    p.add_argument("--verdict-tokens", type=int, default=None, metavar="N",
                   help="tokens a model gets for its verdict when its answer has none and VERDICT: is appended "
                        "(default: r2ta reason's, 128; 0 = never)")
    p.add_argument("--verdict-grammar", action="store_true",
                   help="also score each model with its verdicts decoded under the verdict grammar, "
                        "from the same answers (r2ta eval --verdict-grammar --reuse-answers): columns MODEL+grammar")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="weights of the models while they generate (reason, eval; default: the backend's). bfloat16 on a "
                        "CPU with AMX or AVX512-BF16 is faster; ids then carry @bfloat16. Train in bf16 with "
                        "--set run.precision=bf16")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default: %(default)s)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help="training recipe name or YAML path (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="cap each training stage (smoke runs)")
    p.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads of each stage process")
    p.add_argument("--negatives", choices=["original", "planted", "omission", "both"], default="original",
                   help="DPO rejected traces: the base model's own (default), one planted error, always an omission, "
                        "or both (see r2ta export)")
    p.add_argument("--auditor", choices=["deterministic", "walk", "evidence"], default="deterministic",
                   help="the refine stage's auditor: 'walk' writes each target answer as one step per construct "
                        "of the diagram, 'evidence' the same walk with each construct's structural facts before "
                        "its decision (see r2ta refine)")
    p.add_argument("--base-backend", default="embedded", help="the base model's backend (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe setting, e.g. --set sft.num_train_epochs=3 (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="loop folder (default: DATA/loops/<time>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from r2ta.loop import LoopConfig, run_loop

    for flag in ("train_limit", "test_limit", "max_new_tokens", "base_max_new_tokens", "reason_max_new_tokens", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            from r2ta.errors import R2taError

            raise R2taError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("verdict_tokens", "reason_verdict_tokens", "tokens_per_construct"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            from r2ta.errors import R2taError

            raise R2taError(f"--{flag.replace('_', '-')} must be 0 "
                            f"{'(one budget for all)' if flag == 'tokens_per_construct' else '(never)'} or more")
    config = LoopConfig(train_limit=args.train_limit, test_limit=args.test_limit, max_new_tokens=args.max_new_tokens,
                        base_max_new_tokens=args.base_max_new_tokens, reason_max_new_tokens=args.reason_max_new_tokens,
                        reason_verdict_tokens=args.reason_verdict_tokens, tokens_per_construct=args.tokens_per_construct,
                        batch_size=args.batch_size, recipe=args.recipe, max_steps=args.max_steps, threads=args.threads,
                        out=args.out, base_backend=args.base_backend, overrides=args.overrides,
                        negatives=args.negatives, verdict_tokens=args.verdict_tokens, spread=args.spread,
                        verdict_grammar=args.verdict_grammar, auditor=args.auditor, dtype=args.dtype)
    print(run_loop(config, say=lambda line: print(line, flush=True)))
    return 0
