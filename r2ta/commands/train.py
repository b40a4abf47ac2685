"""``r2ta train``: SFT then DPO on exported data, as a background job followed in the terminal.

    r2ta train --sft sft.jsonl --dpo dpo.jsonl                 # embedded model, LoRA, follow to the end
    r2ta train --sft sft.jsonl --dpo dpo.jsonl --recipe tiny-cpu --max-steps 4
    r2ta train --sft sft.jsonl --dpo dpo.jsonl --set dpo.beta=0.2 --set 'dpo.loss_type=[sigmoid, sft]'
    r2ta train --sft sft.jsonl --dpo dpo.jsonl --detach        # start, print the run folder, return
    r2ta train --follow RUN_DIR                                # follow a run started elsewhere
    r2ta train --cancel RUN_DIR                                # stop after this step (a checkpoint is saved)
    r2ta train --resume RUN_DIR                                # go on with a failed or cancelled run
    r2ta train --dpo-from RUN_DIR --set dpo.beta=2.0           # DPO again from that run's SFT (a new run;
                                                               # --dpo FILE: other pairs)
    r2ta train --sft sft.jsonl --dpo dpo.jsonl --measure       # how long it would take here (a few real steps)
    r2ta train --sft sft.jsonl --dpo dpo.jsonl --eval-limit 0  # then evaluate on all test variants (default: 24
                                                               # on a CPU, all on a GPU); --no-eval: none

The job is the same one the Train page starts (:mod:`r2ta.jobs`, :mod:`r2ta.eval_jobs`):
when training succeeds, the run's SFT and SFT+DPO models are evaluated on the test split
beside the model they started from, and the follower prints the three side by side.
Ctrl-C while following the training cancels it cleanly; during the evaluation it stops
following and the evaluation goes on. Exit status: 0 succeeded, 2 failed (the error and
the log's path are printed; an evaluation that failed after training succeeded too), 130
cancelled.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from r2ta.jobs import DEFAULT_RECIPE
    from r2ta.probe import PROBE_EVAL_VARIANTS

    p = sub.add_parser("train", help="train SFT then DPO on exported data (a background job)",
                       description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sft", type=Path, metavar="FILE", help="SFT examples (JSONL, TRL conversational `messages`)")
    what.add_argument("--follow", type=Path, metavar="RUN_DIR", help="follow a run that is already going")
    what.add_argument("--cancel", type=Path, metavar="RUN_DIR", help="cancel a run")
    what.add_argument("--resume", type=Path, metavar="RUN_DIR",
                      help="continue a failed or cancelled run from its newest checkpoint, in a new run folder "
                           "(--run-dir names it)")
    what.add_argument("--dpo-from", type=Path, metavar="RUN_DIR",
                      help="train DPO again, in a new run, from that run's finished SFT stage (its adapter, data and "
                           "recipe as it ran): --set dpo.*/run.* changes DPO's settings, --dpo FILE its pairs "
                           "(default: that run's)")
    what.add_argument("--list-recipes", action="store_true", help="print the recipe names and exit")
    p.add_argument("--dpo", type=Path, metavar="FILE", help="DPO pairs (JSONL, `prompt`/`chosen`/`rejected`)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"recipe name or YAML path (default {DEFAULT_RECIPE})")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder (default: a new one under data/runs/)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: the recipe's choice (bf16 on a CPU with AMX or AVX512-BF16 and on a GPU that has it, else "
                        "fp32; the tiny recipe fp32)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each stage after this many steps (smoke runs)")
    merged = p.add_mutually_exclusive_group()
    merged.add_argument("--merge", dest="save_merged", action="store_true", default=None,
                        help="also save merged weights (default: as the recipe says)")
    merged.add_argument("--no-merge", dest="save_merged", action="store_false")
    p.add_argument("--num-processes", type=int, default=None,
                   help="GPU processes (default: one per visible GPU; 1 forces a single process)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change a recipe setting for this run, e.g. --set dpo.beta=0.2 (repeatable; the changed "
                        "recipe is saved in the run folder)")
    p.add_argument("--detach", action="store_true", help="start in the background and return at once")
    p.add_argument("--measure", action="store_true",
                   help="train nothing: measure this machine with a few steps of each stage on a sample of the rows "
                        f"and the base model on {PROBE_EVAL_VARIANTS} test variants (a few minutes on a CPU), then print "
                        "how long the run would take (r2ta.probe)")
    evaluation = p.add_mutually_exclusive_group()
    evaluation.add_argument("--eval-limit", type=int, default=None, metavar="N",
                            help="when training succeeds, evaluate the run's models and the one they started from on "
                                 "the first N test variants (0 = all; default: 24 on a CPU, all on a GPU)")
    evaluation.add_argument("--no-eval", action="store_true",
                            help="do not evaluate afterwards (r2ta eval --model RUN_DIR does it later)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from r2ta import jobs

    if args.list_recipes:
        for name in jobs.list_recipes():
            print(name)
        return 0
    if args.cancel:
        progress = jobs.cancel(args.cancel, wait_s=30)
        print(f"{args.cancel}: {progress.state}")
        return 0
    if args.follow:
        return follow(args.follow)
    if args.resume:
        from r2ta.eval_jobs import resume_training

        point = jobs.resume_point(args.resume)
        run_dir = resume_training(args.resume, new_dir=args.run_dir)
        print(f"resuming:   {args.resume}: {point.describe()}", flush=True)
        return _started(run_dir, args.detach)
    from r2ta.eval_jobs import default_limit

    if args.eval_limit is not None and args.eval_limit < 0:
        raise jobs.TrainingError("--eval-limit must be 0 (all test variants) or more")
    if args.max_steps is not None and args.max_steps < 1:
        raise jobs.TrainingError("--max-steps must be at least 1")
    limit = None if args.no_eval else default_limit() if args.eval_limit is None else (args.eval_limit or None)
    if args.dpo_from:
        return _dpo_again(args, limit)
    if args.dpo is None:
        raise jobs.TrainingError("--dpo FILE is required with --sft (training runs SFT, then DPO)")
    if args.measure:
        return measure(args, limit)
    options = dict(recipe=args.recipe, run_dir=args.run_dir, precision=args.precision, max_steps=args.max_steps,
                   save_merged=args.save_merged, num_processes=args.num_processes, overrides=args.overrides)
    if args.no_eval:
        run_dir = jobs.start_training(args.sft, args.dpo, **options)
    else:
        from r2ta.eval_jobs import start_training_with_evaluation

        run_dir = start_training_with_evaluation(args.sft, args.dpo, limit=limit, **options)
        print(f"evaluation: afterwards, on {f'the first {limit}' if limit else 'all'} test variants", flush=True)
    return _started(run_dir, args.detach)


def _dpo_again(args: argparse.Namespace, limit: int | None) -> int:
    """``--dpo-from RUN_DIR``: DPO again from that run's SFT stage, in a new run, then (unless ``--no-eval``) its
    evaluation."""
    from r2ta import jobs
    from r2ta.eval_jobs import start_dpo_again

    if args.measure:
        raise jobs.TrainingError("--measure times a whole run; with --dpo-from the last DPO's rate is the estimate")
    if args.recipe != jobs.DEFAULT_RECIPE:
        raise jobs.TrainingError(f"--dpo-from trains with the recipe {args.dpo_from.name} ran with; change DPO's "
                                 "settings with --set dpo.KEY=VALUE, not --recipe")
    source = jobs.sft_source(args.dpo_from).parent
    run_dir = start_dpo_again(source, dpo_file=args.dpo, overrides=args.overrides, new_dir=args.run_dir,
                              precision=None if args.precision == "auto" else args.precision,
                              max_steps=args.max_steps, evaluate=not args.no_eval, limit=limit)
    print(f"dpo again:  from the SFT stage of {source}"
          + (f", with {', '.join(args.overrides)}" if args.overrides else ""), flush=True)
    if not args.no_eval:
        print(f"evaluation: afterwards, on {f'the first {limit}' if limit else 'all'} test variants", flush=True)
    return _started(run_dir, args.detach)


def _started(run_dir: Path, detach: bool) -> int:
    print(f"run folder: {run_dir}", flush=True)
    print(f"expected:   {_expected(run_dir)}", flush=True)
    _record(run_dir)  # listed on the Train page at once, wherever its folder is (the page keeps it current)
    if detach:
        print(f"follow:     r2ta train --follow {run_dir}")
        print(f"cancel:     r2ta train --cancel {run_dir}")
        return 0
    return follow(run_dir)


def _expected(run_dir: Path) -> str:
    """The run's time from the last finished run of its recipe on this hardware, or why there is none."""
    from r2ta import jobs, timing
    from r2ta.errors import R2taError
    from r2ta.train_view import hardware_and_precision
    from training.data import describe_file

    request = jobs.read_request(run_dir)
    try:
        hardware, precision = hardware_and_precision(request.get("recipe_file"))
    except R2taError as err:
        return f"no estimate ({err})"
    if request.get("precision") not in (None, "auto"):
        precision = request["precision"]
    rates = timing.reference_run(request.get("recipe") or "", hardware, precision, timing.known_run_dirs())
    if rates is None:
        return "no estimate: no run of this recipe has finished on this hardware yet"
    rows = {stage: describe_file(stage, request[f"{stage}_file"]).rows for stage in timing.STAGES}
    eval_variants, base_variants = _evaluation_size(run_dir, request, precision)
    try:
        estimate = timing.estimate_run(rates, timing.read_recipe(Path(request["recipe_file"])), rows, eval_variants,
                                       max_steps=request.get("max_steps"),
                                       processes=int(request.get("num_processes") or 1), resume=request.get("resume"),
                                       allocator=jobs.planned_allocator(), base_variants=base_variants)
    except R2taError as err:  # the run is started: say why there is no estimate, and follow it anyway
        return f"no estimate ({err})"
    return estimate.describe()


def _evaluation_size(run_dir: Path, request: dict, precision: str) -> tuple[int, int]:
    """(test variants the run's two models will answer afterwards, those the base model still lacks); (0, 0) when
    the run is not evaluated afterwards (``--no-eval``) or the store cannot say."""
    from r2ta.eval_jobs import read_eval_status

    evaluation = read_eval_status(run_dir)
    if not evaluation.get("split"):
        return 0, 0
    return _evaluation_counts(evaluation["split"], evaluation.get("limit") or None, Path(request["recipe_file"]),
                              precision, evaluation.get("max_new_tokens"))


def _evaluation_counts(split: str, limit: int | None, recipe: str | Path, precision: str,
                       max_new_tokens: int | None = None) -> tuple[int, int]:
    """(the first ``limit`` variants of ``split`` there are, those of them the model ``recipe`` starts from will
    answer at ``precision``'s dtype under ``max_new_tokens``); (0, 0) when the store cannot say."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from r2ta.catalog import open_engine
    from r2ta.errors import R2taError
    from r2ta.store import count_first_variants
    from r2ta.train_view import base_answers_missing

    try:
        engine = open_engine()
        with Session(engine) as session:
            n = count_first_variants(session=session, split=split, limit=limit)
        return n, base_answers_missing(recipe, precision, limit or 0, engine=engine, max_new_tokens=max_new_tokens)
    except (SQLAlchemyError, R2taError):
        return 0, 0


def measure(args: argparse.Namespace, limit: int | None) -> int:
    """``--measure``: a probe (:mod:`r2ta.probe`) in the foreground, then the run's estimate from it; trains nothing."""
    from r2ta import jobs, probe, timing
    from r2ta.train_view import hardware_and_precision
    from training.data import describe_file

    run_dir = probe.start_probe(args.sft, args.dpo, recipe=args.recipe, overrides=args.overrides,
                                precision=args.precision)
    print(f"measuring:  {probe.PROBE_STEPS} steps of SFT and of DPO on a sample of the rows, then the base model on "
          f"{probe.PROBE_EVAL_VARIANTS} test variants ({run_dir})", flush=True)
    shown = None
    try:
        while (state := probe.probe_state(run_dir)) == "running":
            line = probe.describe_probe(run_dir)
            if line != shown:
                print(f"            {line}", flush=True)
                shown = line
            time.sleep(1)
    except KeyboardInterrupt:
        probe.cancel_probe(run_dir)
        print("cancelled", flush=True)
        return 130
    if state != jobs.SUCCEEDED:
        print(f"error: {probe.describe_probe(run_dir)}; log: {run_dir / jobs.LOG_FILE}", file=sys.stderr)
        return 2
    request = jobs.read_request(run_dir)
    _hardware, precision = hardware_and_precision(request["recipe_file"])
    if args.precision != "auto":
        precision = args.precision
    rows = {stage: describe_file(stage, path).rows for stage, path in (("sft", args.sft), ("dpo", args.dpo))}
    eval_variants, base_variants = (0, 0) if args.no_eval else _evaluation_counts("test", limit, request["recipe_file"],
                                                                                  precision)
    rates = timing.run_rates(run_dir)
    if rates is None:
        print(f"error: the measurement left no rates to estimate from; log: {run_dir / jobs.LOG_FILE}", file=sys.stderr)
        return 2
    # as the Train page takes them: the answers named, or the base model's own evaluation here where it answered more
    estimate = timing.estimate_run(timing.as_probe(rates), timing.read_recipe(Path(request["recipe_file"])), rows,
                                   eval_variants, max_steps=args.max_steps, allocator=jobs.planned_allocator(),
                                   base_variants=base_variants)
    print(f"expected:   {estimate.describe()}", flush=True)
    print("            (the Train page shows the same estimate until a run of this recipe has finished here)")
    return 0


def _line(point: dict) -> str:
    parts = [f"{point.get('stage', '?'):>3} step {point.get('step')}/{point.get('max_steps')}"]
    for key, label, fmt in (
        ("loss", "loss", "{:.4f}"),
        ("reward_margin", "margin", "{:+.4f}"),
        ("learning_rate", "lr", "{:.2e}"),
        ("tokens_per_s", "tok/s", "{:,.0f}"),
    ):
        if point.get(key) is not None:
            parts.append(f"{label} {fmt.format(point[key])}")
    return "  ".join(parts)


def follow(run_dir: Path, *, poll_s: float = 1.0) -> int:
    """Print the run's progress as it comes until it finishes; Ctrl-C cancels it."""
    from r2ta import jobs, timing

    seen, stage, shared = 0, None, None
    carried = _carried_stages(run_dir)
    try:
        while True:
            progress = jobs.read_progress(run_dir)
            if progress.stage != stage and progress.stage:
                stage = progress.stage
                print(f"[{progress.fraction:4.0%}] stage {stage}", flush=True)
            if progress.status.get("threads") != shared:
                shared = progress.status.get("threads")
                if (line := threads_line(shared)) is not None:
                    print(line, flush=True)
            new = [point for point in progress.points[seen:] if point.get("stage") not in carried]
            left = timing.stage_time_left(progress) if new else None
            for i, point in enumerate(new):
                tail = f"  ({left.describe()})" if left and i == len(new) - 1 else ""
                print(_line(point) + tail, flush=True)
            seen = len(progress.points)
            if progress.finished:
                break
            if progress.state == jobs.QUEUED and (gone := _supervisor_gone(run_dir)):
                # the process that was to launch the runner died first: nothing will start
                raise jobs.TrainingError(f"the run never started: {gone}")
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("\ncancelling (the current step finishes first)...", file=sys.stderr, flush=True)
        progress = jobs.cancel(run_dir, wait_s=60, force=True)
    _record(run_dir)
    code = _report(progress)
    return max(code, follow_evaluation(run_dir, poll_s=poll_s)) if code == 0 else code


def _carried_stages(run_dir: Path) -> set[str]:
    """The stages a DPO-again run (``r2ta train --dpo-from``) carries over from another run: said once, in a line,
    not step by step as if trained here (their steps are in its progress file for the page's loss curve)."""
    from r2ta import jobs
    from r2ta.errors import R2taError

    try:
        request = jobs.read_request(run_dir)
    except R2taError:
        return set()
    if not request.get("sft_from"):
        return set()
    metrics = ((request.get("resume") or {}).get("metrics") or {}).get("sft") or {}
    loss = metrics.get("final_loss")
    figures = f"{metrics.get('steps', '?')} steps" + (f", final loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
    print(f"sft:        carried over from run {Path(request['sft_from']).name} ({figures}); DPO trains here",
          flush=True)
    return {"sft"}


def threads_line(shared) -> str | None:
    """What ``r2ta train --follow`` prints when the run's threads changed (its status's ``threads``, written by
    :class:`training.callbacks.FreeCoresCallback`); None for nothing to say."""
    if not isinstance(shared, dict) or not shared.get("threads") or not shared.get("cores"):
        return None
    where = f"from {str(shared.get('stage') or '').upper()} step {shared.get('since_step')}"
    if shared["threads"] < shared["cores"]:
        return (f"threads:    {shared['threads']} of {shared['cores']} cores {where}: another process on this machine "
                "uses the rest; the steps are slower until it ends")
    return f"threads:    all {shared['cores']} cores again {where}"


def _supervisor_gone(run_dir: Path) -> str | None:
    """The error of an evaluation supervisor that died before its run started (None when there is none)."""
    from r2ta.eval_jobs import FAILED, read_eval_status

    status = read_eval_status(run_dir)
    return status.get("error") if status.get("status") == FAILED else None


def follow_evaluation(run_dir: Path, *, poll_s: float = 1.0) -> int:
    """After a succeeded run: print its evaluation's progress (when one was asked for), then the models side by side.

    Returns 0 (done, skipped, or none asked for), 2 (it failed). Ctrl-C stops following; the evaluation goes on."""
    from r2ta import eval_jobs, timing

    status = eval_jobs.read_eval_status(run_dir)
    if not status:
        return 0
    shown = None
    try:
        while status.get("status") not in eval_jobs.FINISHED:
            now = (status.get("stage"), status.get("done"), status.get("total"))
            if status.get("status") == eval_jobs.RUNNING and now[0] and now[2] is not None and now != shown:
                shown = now
                left = timing.evaluation_time_left(status)
                print(f"evaluation: {now[0]} {now[1] or 0}/{now[2]}"
                      + (f"  (about {timing.format_duration(left)} left)" if left is not None else ""), flush=True)
            time.sleep(poll_s)
            status = eval_jobs.read_eval_status(run_dir)
    except KeyboardInterrupt:
        print(f"\nstopped following; the evaluation goes on ({eval_jobs.eval_dir(run_dir) / 'eval.log'})",
              file=sys.stderr, flush=True)
        return 0
    if status.get("status") == eval_jobs.SKIPPED:
        print(f"evaluation: skipped: {status.get('error')}", flush=True)
        return 0
    if status.get("status") == eval_jobs.FAILED:
        print(f"evaluation failed: {status.get('error')}\nlog: {eval_jobs.eval_dir(run_dir) / 'eval.log'}",
              file=sys.stderr, flush=True)
        return 2
    _print_comparison(run_dir, status)
    return 0


def _print_comparison(run_dir: Path, status: dict) -> None:
    from r2ta.catalog import open_engine
    from r2ta.train_view import run_comparison

    rows = run_comparison(run_dir, engine=open_engine())
    if not rows:
        return
    dtype = f", generated in {status['dtype']}" if status.get("dtype") else ""
    print(f"evaluation on the {rows[0]['variants']} test variants all of them answered{dtype}:")
    cell = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"  {'model':<24} {'micro F1':>8} {'macro F1':>8} {'halluc.':>8} {'validity':>8}  model id")
    for row in rows:
        print(f"  {row['model']:<24} {cell(row['micro F1']):>8} {cell(row['macro F1']):>8} "
              f"{cell(row['hallucination']):>8} {cell(row['format validity']):>8}  {row['model id']}")
    if status.get("base_note"):
        print(f"  {status['base_note']}")


def _record(run_dir: Path) -> None:
    """Mirror the run into the database, as the Train page does for its own runs: a run folder outside
    ``DATA/runs`` (``--run-dir``, ``r2ta loop``) is then listed on the page and, finished, can give the next
    run's estimate."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from r2ta import jobs
    from r2ta.catalog import open_engine
    from r2ta.errors import R2taError

    try:
        with Session(open_engine()) as session:
            jobs.sync_run_to_db(run_dir, session=session)
    except (SQLAlchemyError, R2taError) as err:
        print(f"warning: the run was not recorded in the database ({err}); the run folder holds everything",
              file=sys.stderr, flush=True)


def _report(progress) -> int:
    from r2ta import jobs

    status = progress.status
    if progress.state == jobs.SUCCEEDED:
        metrics = status.get("metrics") or {}
        for stage in ("sft", "dpo"):
            m = metrics.get(stage) or {}
            print(f"{stage}: {m.get('steps')} steps, loss {m.get('final_loss')}, "
                  f"{m.get('tokens_per_s')} tok/s, {m.get('wall_s')} s, peak RSS {m.get('peak_rss_mb')} MB")
        for name, path in (status.get("artefacts") or {}).items():
            print(f"{name:>6}: {path}")
        print(f"model card: {progress.run_dir / 'README.md'}")
        return 0
    resume = _resume_hint(progress.run_dir)
    if progress.state == jobs.CANCELLED:
        print(f"cancelled; log: {progress.run_dir / jobs.LOG_FILE}{resume}", file=sys.stderr)
        return 130
    raise jobs.TrainingError(f"training failed: {progress.error}\nlog: {progress.run_dir / jobs.LOG_FILE}{resume}")


def _resume_hint(run_dir: Path) -> str:
    from r2ta import jobs

    try:
        point = jobs.resume_point(run_dir)
    except jobs.TrainingError as err:
        return f"\nnot resumable: {err}"
    return f"\nresume:     r2ta train --resume {run_dir}  ({point.describe()})"
