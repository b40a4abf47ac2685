"""Evaluation jobs: every finished training run is evaluated on the test split, out of process.

    python -m r2ta.eval_jobs supervise RUN_DIR [--limit N]   # train (the runner), then evaluate
    python -m r2ta.eval_jobs evaluate RUN_DIR [--limit N]    # evaluate a finished run
    python -m r2ta.eval_jobs probe RUN_DIR                   # a probe (r2ta.probe): train, then time the base model
    python -m r2ta.eval_jobs model JOB_DIR --model NAME      # one model by itself (r2ta.model_jobs)
    python -m r2ta.eval_jobs reason JOB_DIR --limit N [--max-new-tokens T]  # the next N variants reasoned about, refined

:func:`start_training_with_evaluation` (the Train page's button) prepares a run
with :func:`r2ta.jobs.prepare_run` and starts a small *supervisor* process. The
supervisor launches the training runner exactly as :func:`r2ta.jobs.launch`
does (so ``status.json``, cancel and liveness work as for any run), waits for
it, and when it succeeded evaluates the run's SFT and SFT+DPO models with
:func:`r2ta.evaluation.evaluate`, each linked to the run's ``training_run`` row of
that stage, then the model the run started from on the same variants in the same
dtype (:func:`evaluate_run`), so that the new models stand beside the old one, and the
structural checker alone on the same variants (under a second), the line a trained model has to
beat. The page may be closed or reloaded at any time: everything is in the run folder.

Files in ``RUN_DIR/evaluation/``: ``status.json`` (``status``: waiting, running,
succeeded, failed, skipped; ``stage``: the model being evaluated (``sft``, ``sft+dpo``,
``base``); ``models``: those stages in order; ``base_pending``: the variants the base model
had no answer to when the job began; ``evaluations``: stage -> evaluation id; ``checker_evaluation``:
the checker's; ``generated``: stage -> answers generated, their seconds and the model's load apart;
``done``, ``total``, ``batch``: the model's progress; ``dtype``; ``allocator``: what the job ran on,
tcmalloc where the system has it, as a training run; ``error``) and ``eval.log``.

``r2ta train`` starts the same supervisor (unless ``--no-eval``) and follows both. A run
started without it (``--no-eval``, ``r2ta loop``) is evaluated by :func:`start_run_evaluation`
(the Train page offers it for any finished run without an evaluation, and
``r2ta eval --pending`` does the same in the foreground).

Standard library and the project only; no streamlit, no torch at import.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from r2ta import jobs
from r2ta.config import PROJECT_ROOT
from r2ta.errors import R2taError

EVAL_DIR = "evaluation"
WAITING, RUNNING, SUCCEEDED, FAILED, SKIPPED = "waiting", "running", "succeeded", "failed", "skipped"
FINISHED = frozenset({SUCCEEDED, FAILED, SKIPPED})
BASE = "base"  # the model a run started from, evaluated after the run's two beside them
DEFAULT_CPU_LIMIT = 24  # test variants evaluated after a CPU run (generation is ~30 s a variant there)


def eval_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / EVAL_DIR


def write_eval_status(run_dir: str | Path, **fields) -> dict:
    folder = eval_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    status = jobs._read_json(folder / "status.json")
    status.update(fields)
    status["updated_at"] = jobs.now_iso()
    jobs._write_json_atomic(folder / "status.json", status)
    return status


def progress_writer(run_dir: str | Path):
    """The ``progress(done, total)`` callback of a job generating answers: writes ``done`` and ``total`` into its
    status, and ``batch``, the most answers one update has added (what a watching page times its redraws by,
    :func:`r2ta.timing.job_refresh_seconds`). A ``done`` below the last (the next model's) starts counting again."""
    seen = {"done": 0, "batch": 0}

    def progress(done: int, total: int) -> None:
        added = done - seen["done"] if done >= seen["done"] else done
        seen["done"], seen["batch"] = done, max(seen["batch"], added)
        write_eval_status(run_dir, done=done, total=total, **({"batch": seen["batch"]} if seen["batch"] else {}))

    return progress


def read_eval_status(run_dir: str | Path) -> dict:
    """The evaluation status of a run ({} when none was started); a job whose process is gone is marked failed."""
    path = eval_dir(run_dir) / "status.json"
    status = jobs._read_json(path)
    if status and status.get("status") not in FINISHED and status.get("pid"):
        if not jobs.process_alive(status["pid"], status.get("pid_start")):
            status = jobs._read_json(path)
            if status.get("status") not in FINISHED:
                status = write_eval_status(
                    run_dir, status=FAILED, finished_at=jobs.now_iso(),
                    error=f"the {status.get('job') or 'evaluation'} process (pid {status['pid']}) ended without a "
                          f"result; see {eval_dir(run_dir) / 'eval.log'}",
                )
    return status


def stop_job(run_dir: str | Path) -> None:
    """Stop the job process of ``run_dir``'s evaluation folder (its own process group, :func:`_spawn`) if it is
    going, and mark the job cancelled. What it stored stays."""
    import signal

    status = read_eval_status(run_dir)
    pid = status.get("pid")
    if status.get("status") not in FINISHED and pid and jobs.process_alive(pid, status.get("pid_start")):
        try:
            os.killpg(pid, signal.SIGTERM)  # a training runner it started has a session of its own
        except OSError:
            pass
    write_eval_status(run_dir, cancelled=True, status=FAILED, error="cancelled", finished_at=jobs.now_iso())


def redraw_seconds(run_dir: str | Path) -> float:
    """How often a page watching a run (or a probe: the Train page's measurement) redraws it: a quarter of a
    training step (:func:`r2ta.timing.refresh_seconds`), or after training of the time between two of its
    evaluation's updates (:func:`r2ta.timing.job_refresh_seconds`); 2 to 10 s."""
    from r2ta import timing

    progress = jobs.read_progress(Path(run_dir))
    if not progress.finished:
        return timing.refresh_seconds(progress)
    return timing.job_refresh_seconds(read_eval_status(run_dir))


def read_eval_log(run_dir: str | Path, max_chars: int = 10_000) -> str:
    try:
        return (eval_dir(run_dir) / "eval.log").read_text(encoding="utf-8", errors="replace")[-max_chars:]
    except FileNotFoundError:
        return ""


def default_limit() -> int | None:
    """All test variants on a GPU; :data:`DEFAULT_CPU_LIMIT` on a CPU, where generation is slow."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return DEFAULT_CPU_LIMIT
    return None if torch.cuda.is_available() else DEFAULT_CPU_LIMIT


def base_answers_missing(base_model: str, dtype: str | None, limit: int | None, *, split: str = "test",
                         spread: bool = False, engine=None, max_new_tokens: int | None = None) -> int:
    """Of the first ``limit`` variants of ``split``, how many the model a recipe starts from (its
    ``model_name_or_path``) will answer in ``dtype`` (a marking one: ``bfloat16`` after bf16 on a CPU, see
    :func:`r2ta.evaluation.run_generation_dtype`) under ``max_new_tokens`` (None: the default): what the evaluation
    after a run generates for it beside the run's two models — those it has no answer to, and those whose stored
    answer another budget made (:func:`r2ta.pipeline.answers_to_write`). 0 when that model is not on this machine
    (it is then not evaluated)."""
    from db.engine import get_engine
    from r2ta.evaluation import base_model_id
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, answers_to_write

    model_id = base_model_id(base_model, dtype)
    if model_id is None:
        return 0
    return answers_to_write(model_id, split=split, limit=limit, spread=spread,
                            max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, engine=engine or get_engine())


def _spawn(run_dir: Path, argv: list[str]) -> subprocess.Popen:
    folder = eval_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:  # generation on tcmalloc too: bf16 1.07x glibc's speed, fp32 the same, the same memory (2026-12-06 record)
        allocator = jobs.allocator_env()
    except jobs.TrainingError:  # a misspelt R2TA_ALLOCATOR: the runner's launch marks the run failed with it
        allocator = {}
    with open(folder / "eval.log", "ab") as log:
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "r2ta.eval_jobs", *argv], cwd=PROJECT_ROOT,
                env=dict(os.environ, PYTHONUNBUFFERED="1", **allocator), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as err:
            raise R2taError(f"could not start the evaluation process: {err}") from None
    jobs._CHILDREN[child.pid] = child
    return child


MAX_TOKENS_PER_CONSTRUCT = 256  # a walk's step is ~15 tokens a construct, a mistake's ~110 (docs/measured/walk-target-lengths-*)


def check_budget(max_new_tokens: int | None, tokens_per_construct: int = 0) -> None:
    """Refuse an answer budget out of bounds (R2taError): ``max_new_tokens`` 1 to 4096 (None: the default,
    256), ``tokens_per_construct`` 0 to :data:`MAX_TOKENS_PER_CONSTRUCT` (:func:`r2ta.pipeline.answer_budget`)."""
    if max_new_tokens is not None and not 1 <= max_new_tokens <= 4096:
        raise R2taError(f"max new tokens must be between 1 and 4096, not {max_new_tokens}")
    if not 0 <= tokens_per_construct <= MAX_TOKENS_PER_CONSTRUCT:
        raise R2taError(f"tokens per construct must be between 0 and {MAX_TOKENS_PER_CONSTRUCT}, "
                        f"not {tokens_per_construct}")


def job_args(split: str, limit: int | None, max_new_tokens: int | None, tokens_per_construct: int = 0) -> list[str]:
    args = ["--split", split]
    if limit:
        args += ["--limit", str(limit)]
    if max_new_tokens:
        args += ["--max-new-tokens", str(max_new_tokens)]
    if tokens_per_construct:
        args += ["--tokens-per-construct", str(tokens_per_construct)]
    return args


def start_training_with_evaluation(
    sft_file: str | Path, dpo_file: str | Path, *, recipe: str | Path = jobs.DEFAULT_RECIPE, split: str = "test",
    limit: int | None = None, max_new_tokens: int | None = None, max_steps: int | None = None,
    overrides: list[str] | None = None, precision: str = "auto", tokens_per_construct: int = 0, **run_options,
) -> Path:
    """Prepare a run and start the supervisor (training, then its evaluation); returns the run folder at once.

    ``max_new_tokens`` / ``tokens_per_construct``: each answer's budget in the evaluation (:func:`evaluate_run`);
    ``overrides``: recipe settings changed for this run (``SECTION.KEY=VALUE``, see :func:`jobs.prepare_run`);
    ``precision``: auto (the recipe's) or one the hardware has (:func:`training.hardware.precision_choices`);
    ``run_options``: the rest of :func:`jobs.prepare_run`'s (``run_dir``, ``save_merged``, ``num_processes``).
    """
    check_budget(max_new_tokens, tokens_per_construct)
    run_dir = jobs.prepare_run(sft_file, dpo_file, recipe=recipe, max_steps=max_steps, overrides=overrides,
                               precision=precision, **run_options)
    _start_supervisor(run_dir, split, limit, max_new_tokens, tokens_per_construct)
    return run_dir


def _start_supervisor(run_dir: Path, split: str, limit: int | None, max_new_tokens: int | None,
                      tokens_per_construct: int = 0) -> None:
    write_eval_status(run_dir, status=WAITING, split=split, limit=limit, max_new_tokens=max_new_tokens,
                      tokens_per_construct=tokens_per_construct, evaluations={}, created_at=jobs.now_iso())
    child = _spawn(run_dir, ["supervise", str(run_dir),
                             *job_args(split, limit, max_new_tokens, tokens_per_construct)])
    write_eval_status(run_dir, pid=child.pid, pid_start=jobs.process_start_ticks(child.pid))
    # The runner's pid lands in status.json once the supervisor launched it; until then the run reads as queued.


def start_probe_job(run_dir: Path, *, split: str = "test", max_new_tokens: int | None = None) -> None:
    """Start a prepared probe (:func:`r2ta.probe.start_probe`): train it, then time the base model on a few
    test variants it has no answer to (:func:`supervise` with ``probe``)."""
    write_eval_status(run_dir, status=WAITING, split=split, limit=None, max_new_tokens=max_new_tokens,
                      evaluations={}, created_at=jobs.now_iso(), job="measurement")
    child = _spawn(run_dir, ["probe", str(run_dir), *job_args(split, None, max_new_tokens)])
    write_eval_status(run_dir, pid=child.pid, pid_start=jobs.process_start_ticks(child.pid))


def resume_training(run_dir: str | Path, *, new_dir: str | Path | None = None) -> Path:
    """Continue a failed or cancelled run in a new run folder (:func:`jobs.prepare_resume`) and start it.

    A run that was to be evaluated afterwards (the Train page's button) is continued the same way: the new
    run is evaluated when it succeeds, on the same split and number of variants, under the same answer budget.
    """
    before = read_eval_status(run_dir)
    new = jobs.prepare_resume(run_dir, new_dir=new_dir)
    if before.get("split"):
        _start_supervisor(new, before["split"], before.get("limit"), before.get("max_new_tokens"),
                          int(before.get("tokens_per_construct") or 0))
    else:
        jobs.launch(new)
    return new


def start_dpo_again(
    run_dir: str | Path, *, dpo_file: str | Path | None = None, overrides: list[str] | None = None,
    new_dir: str | Path | None = None, precision: str | None = None, max_steps: int | None = None,
    evaluate: bool = True, split: str = "test", limit: int | None = None, max_new_tokens: int | None = None,
    tokens_per_construct: int = 0,
) -> Path:
    """Train DPO again from ``run_dir``'s finished SFT stage in a new run (:func:`jobs.prepare_dpo_again`: ``dpo.*``
    and ``run.*`` ``overrides``, ``dpo_file`` or the source's pairs) and start it; with ``evaluate``, evaluated when
    it succeeds as a run of the Train page's button is (its SFT column is the source run's SFT, whose answers are
    reused: :func:`sft_model`). Returns the new run folder at once."""
    if evaluate:
        check_budget(max_new_tokens, tokens_per_construct)
    new = jobs.prepare_dpo_again(run_dir, dpo_file=dpo_file, overrides=overrides, new_dir=new_dir,
                                 precision=precision, max_steps=max_steps)
    if evaluate:
        _start_supervisor(new, split, limit, max_new_tokens, tokens_per_construct)
    else:
        jobs.launch(new)
    return new


def start_run_evaluation(
    run_dir: str | Path, *, split: str = "test", limit: int | None = None, max_new_tokens: int | None = None,
    tokens_per_construct: int = 0,
) -> dict:
    """Evaluate a succeeded run in a background process (no-op when an evaluation is going or done)."""
    check_budget(max_new_tokens, tokens_per_construct)
    run_dir = Path(run_dir)
    current = read_eval_status(run_dir)
    if current.get("status") in (WAITING, RUNNING, SUCCEEDED):
        return current
    if jobs.read_progress(run_dir).state != jobs.SUCCEEDED:
        raise R2taError(f"{run_dir} has not succeeded; only a finished run can be evaluated")
    write_eval_status(run_dir, status=WAITING, split=split, limit=limit, max_new_tokens=max_new_tokens,
                      tokens_per_construct=tokens_per_construct, evaluations={}, error=None,
                      created_at=jobs.now_iso(), finished_at=None)
    child = _spawn(run_dir, ["evaluate", str(run_dir),
                             *job_args(split, limit, max_new_tokens, tokens_per_construct)])
    return write_eval_status(run_dir, pid=child.pid, pid_start=jobs.process_start_ticks(child.pid))


# -- inside the job process ------------------------------------------------------------


def evaluate_run(run_dir: Path, *, split: str, limit: int | None, max_new_tokens: int | None,
                 spread: bool = False, base_only: bool = False, tokens_per_construct: int = 0) -> int:
    """Evaluate the run's SFT and SFT+DPO models, then the model it started from, recording each in the status file.

    The trained models generate in the dtype the run trained in (``@bfloat16`` after bf16 on a CPU), and the
    base model (:data:`BASE`: the recipe's ``model_name_or_path``) in the same one, on the same variants, so that
    the new models stand against the old one; the base's answers are generated only where it has none yet (the
    first run pays for them, later runs reuse them). A base that is not on this machine (a model hub id) is
    skipped with a note (``base_note``). Status ``generated``: per model, the variants it answered, the seconds
    that took, and apart the seconds its load took (what :mod:`r2ta.timing` estimates the next evaluation from).
    ``spread``: the first ``limit`` variants round-robin across base schemas (``r2ta eval --pending --spread``).
    ``base_only`` (a probe, :mod:`r2ta.probe`): only the base model, on the first variants that give it
    :data:`r2ta.probe.PROBE_EVAL_VARIANTS` answers it did not have (``limit`` is ignored).
    ``tokens_per_construct``: the trained models' answers get that many more tokens per construct of the
    diagram (a walk writes a step per construct); the base model keeps ``max_new_tokens`` alone, as in
    ``r2ta loop``, so that its answers stay those earlier runs stored and reuse.
    """
    from r2ta.evaluation import CHECKER_MODEL_ID, FINAL, SFT, evaluate, run_base_model, run_generation_dtype

    if not _split_has_variants(split):
        write_eval_status(run_dir, status=SKIPPED, finished_at=jobs.now_iso(),
                          error=f"the store has no {split} variants to evaluate on (r2ta seed, or r2ta dataset build)")
        return 0
    evaluations: dict[str, int | None] = {}
    generated: dict[str, dict] = {}
    earlier = read_eval_status(run_dir).get("generated")  # an evaluation again: its answers are reused, not timed
    earlier = earlier if isinstance(earlier, dict) else {}
    dtype = run_generation_dtype(run_dir)
    base = run_base_model(run_dir)
    models = {SFT: sft_model(run_dir), FINAL: f"{run_dir}:{FINAL}", **({BASE: base} if base else {})}
    if base_only:
        models = {BASE: base} if base else {}
        limit = _limit_for_new_base_answers(str(jobs.read_status(run_dir).get("base_model") or ""), dtype, split) \
            if base else None
    base_pending = base_answers_missing(str(jobs.read_status(run_dir).get("base_model") or ""), dtype, limit,
                                        split=split, spread=spread, max_new_tokens=max_new_tokens) if base else 0
    write_eval_status(run_dir, status=RUNNING, started_at=jobs.now_iso(), pid=os.getpid(),
                      pid_start=jobs.process_start_ticks(os.getpid()), dtype=dtype, models=list(models),
                      allocator=jobs.allocator_in_use(),
                      base_pending=base_pending,
                      base_note=None if base else "the model the run started from is not on this machine (a "
                                                   "model hub id not in its Hugging Face cache?): not evaluated "
                                                   "beside it")
    try:
        if not base_only:  # the checker alone, on the same variants: what the trained models stand against
            checker = evaluate(CHECKER_MODEL_ID, split=split, limit=limit, spread=spread)
            write_eval_status(run_dir, checker_evaluation=checker.evaluation_id)
        for stage, model in models.items():
            write_eval_status(run_dir, stage=stage, stage_started_at=jobs.now_iso(), done=0, total=None)
            outcome = evaluate(model, split=split, limit=limit, max_new_tokens=max_new_tokens,
                               progress=progress_writer(run_dir), spread=spread,
                               dtype=dtype if stage == BASE else None,
                               tokens_per_construct=0 if stage == BASE else tokens_per_construct)
            evaluations[stage] = outcome.evaluation_id
            generated[stage] = pooled_answers(earlier.get(stage), outcome)
            write_eval_status(run_dir, evaluations=evaluations, generated=generated)
            print(f"{outcome.model_id}: evaluation {outcome.evaluation_id}, micro F1 {outcome.report.micro_f1:.3f}"
                  f" ({outcome.generated} answers generated in {outcome.generation_s:.0f} s)", flush=True)
    except R2taError as err:
        write_eval_status(run_dir, status=FAILED, error=str(err), finished_at=jobs.now_iso())
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_eval_status(run_dir, status=SUCCEEDED, stage=None, finished_at=jobs.now_iso())
    return 0


def sft_model(run_dir: Path) -> str:
    """The model an evaluation of ``run_dir`` scores as its SFT: a DPO-again run's is the run its SFT stage came from
    (:func:`r2ta.jobs.prepare_dpo_again`; the same adapter), so its answers there are reused, not generated again;
    that run's own when its folder is gone."""
    try:
        source = jobs.read_request(run_dir).get("sft_from")
    except R2taError:
        source = None
    if source and (Path(source) / jobs.STATUS_FILE).is_file() and (Path(source) / "sft").is_dir():
        return f"{source}:sft"
    return f"{run_dir}:sft"


def generated_figures(entry) -> tuple[int, float, float | None] | None:
    """(answers, their seconds, the model's load in seconds or None where not recorded) of a status's
    ``generated`` entry (a model's job, or one model of a run's evaluation); None where it cannot be read."""
    try:
        load = entry.get("load_seconds")
        return int(entry.get("variants") or 0), float(entry.get("seconds") or 0), None if load is None else float(load)
    except (TypeError, ValueError, AttributeError):
        return None


def pooled_answers(before, outcome) -> dict:
    """One model's answers generated by this evaluation of a run (``outcome``: an
    :class:`r2ta.evaluation.EvalOutcome`), with their seconds and the model's load apart, added to those an earlier
    evaluation of the run recorded (``before``, its status's ``generated`` entry): evaluated again after a failure,
    or again when done, a model reuses the answers it has and would otherwise leave the run no evaluation rate."""
    new = {"variants": outcome.generated, "seconds": round(outcome.generation_s, 2),
           "load_seconds": round(outcome.load_s, 2)}
    try:
        variants, seconds = int(before["variants"]), float(before["seconds"])
    except (TypeError, KeyError, ValueError):
        return new
    if variants <= 0 or seconds < 0:
        return new
    return {"variants": variants + new["variants"], "seconds": round(seconds + new["seconds"], 2),
            "load_seconds": new["load_seconds"] if new["variants"] else before.get("load_seconds")}


def _limit_for_new_base_answers(base_model: str, dtype: str | None, split: str) -> int | None:
    """The fewest first variants of ``split`` among which the base model lacks :data:`r2ta.probe.PROBE_EVAL_VARIANTS`
    answers (all of them when it lacks fewer): a probe times answers it generates, not ones it finds stored."""
    from sqlmodel import Session

    from db.engine import get_engine
    from r2ta.evaluation import base_model_id
    from r2ta.probe import PROBE_EVAL_VARIANTS
    from r2ta.store import first_reaching

    model_id = base_model_id(base_model, dtype)
    if model_id is None:
        return None
    with Session(get_engine()) as session:
        return first_reaching(session=session, model_id=model_id, split=split, count=PROBE_EVAL_VARIANTS)


def _split_has_variants(split: str) -> bool:
    from sqlmodel import Session

    from db.engine import get_engine, init_db
    from r2ta.store import count_first_variants

    engine = get_engine()
    init_db(engine)
    with Session(engine) as session:
        return count_first_variants(session=session, split=split, limit=1) > 0


def supervise(run_dir: Path, *, split: str, limit: int | None, max_new_tokens: int | None, tokens_per_construct: int = 0,
              probe: bool = False) -> int:
    """Run the training job as a child, wait for it, then evaluate it if it succeeded (a probe: time the base
    model, then delete the probe's two-step models)."""
    child = jobs.launch(run_dir)
    child.wait()
    state = jobs.read_progress(run_dir).state
    if state != jobs.SUCCEEDED:
        write_eval_status(run_dir, status=SKIPPED, error=f"not evaluated: the run {state}", finished_at=jobs.now_iso())
        return 0
    if not probe:
        return evaluate_run(run_dir, split=split, limit=limit, max_new_tokens=max_new_tokens,
                            tokens_per_construct=tokens_per_construct)
    from r2ta.probe import remove_models

    remove_models(run_dir)
    return evaluate_run(run_dir, split=split, limit=None, max_new_tokens=max_new_tokens, base_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2ta.eval_jobs", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["supervise", "evaluate", "probe", "model", "reason"])
    parser.add_argument("run_dir", type=Path, help="the run folder (model: the job folder)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--tokens-per-construct", type=int, default=0)
    parser.add_argument("--model", help="model: what to evaluate (as r2ta eval --model)")
    parser.add_argument("--dtype", help="model: the dtype a local model generates in")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    kwargs = {"split": args.split, "limit": args.limit, "max_new_tokens": args.max_new_tokens,
              "tokens_per_construct": args.tokens_per_construct}
    if args.action == "model":
        from r2ta.model_jobs import run_model_evaluation

        if not args.model:
            parser.error("model needs --model")
        return run_model_evaluation(run_dir, model=args.model, dtype=args.dtype, **kwargs)
    if args.action == "reason":
        from r2ta.model_jobs import run_reasoning

        return run_reasoning(run_dir, split=args.split, count=args.limit or 1, max_new_tokens=args.max_new_tokens)
    if args.action in ("supervise", "probe"):
        return supervise(run_dir, **kwargs, probe=args.action == "probe")
    return evaluate_run(run_dir, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
