"""One model's background jobs: evaluating it (the Evaluate page's *Evaluate a model*) and letting it reason
about more variants for review (the Review page, when its queue runs dry).

    python -m r2ta.eval_jobs model JOB_DIR --model NAME [--split test] [--limit N] [--dtype bfloat16]
        [--max-new-tokens N] [--tokens-per-construct N]
    python -m r2ta.eval_jobs reason JOB_DIR --limit N [--split train]

:func:`start_model_evaluation` makes a job folder ``DATA/evaluations/<time>-<model>/`` and starts
:func:`r2ta.evaluation.evaluate` on the model in its own process (:mod:`r2ta.eval_jobs` ``model``);
:func:`start_reasoning` one in which the default model (``R2TA_BACKEND``, else the embedded one) writes
traces for the next N variants it has none for and the deterministic auditor refines them into proposals
(:func:`r2ta.pipeline.reason`, then :func:`r2ta.pipeline.refine`: what ``r2ta reason`` then ``r2ta refine``
do). The page can be closed or reloaded; the job's ``evaluation/status.json`` (``kind``, ``status``,
``stage``, ``done`` and ``total``, ``evaluations``, ``error``) and ``evaluation/eval.log`` say how it goes.
Traces are stored as they are generated, so a cancelled or crashed job loses none: the next job generates
only those that are missing (and a training run's evaluation of the base model reuses its answers). One
job at a time; a job that writes answers on this machine's cores would slow a training run beside it,
which the pages say.

Standard library and the project only; no streamlit, no torch at import.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from r2ta import eval_jobs, jobs
from r2ta.config import data_dir
from r2ta.errors import R2taError
from r2ta.timing import format_duration, job_refresh_seconds, job_time_left

JOB = "model evaluation"
EVALUATE, REASON = "evaluate", "reason"
REASONING_JOB = "reasoning"
MIN_TOKENS, MAX_TOKENS = 16, 4096  # the token budget an answer the pages offer (Review's batch, Evaluate, Train)


def evaluations_dir() -> Path:
    return data_dir() / "evaluations"


@dataclass(frozen=True)
class ModelJob:
    """A job folder and what its status says."""

    job_dir: Path
    kind: str  # evaluate, reason
    model: str
    split: str
    limit: int | None
    state: str  # waiting, running, succeeded, failed (cancelled: failed with cancelled set)
    done: int
    total: int | None
    error: str | None
    cancelled: bool
    evaluation_id: int | None
    created_at: str
    finished_at: str | None
    stage: str | None = None  # reason: reasoning, then auditing
    proposals: int | None = None  # reason: proposals stored
    redraw_s: float = 2.0  # how often a page watching it redraws it (r2ta.timing.job_refresh_seconds)
    max_new_tokens: int | None = None  # evaluate: each answer's budget (None: r2ta eval's default)
    tokens_per_construct: int = 0  # evaluate: and this many more per construct of the diagram
    left_s: float | None = None  # the answers' time left, going (r2ta.timing.job_time_left)

    @property
    def going(self) -> bool:
        return self.state in (eval_jobs.WAITING, eval_jobs.RUNNING)

    def describe(self) -> str:
        """One line: the model, where it is, or how it ended."""
        if self.kind == REASON:
            what = f"the {self.model} model reasons about {self.limit} more {self.split} variants"
        else:
            what = f"{self.model} on " + (f"the first {self.limit} {self.split} variants" if self.limit
                                          else f"every {self.split} variant")
            what += budget_words(self.max_new_tokens, self.tokens_per_construct)
        if self.going:
            if self.stage == "auditing":
                return f"{what}: the auditor refines its traces"
            left = f", about {format_duration(self.left_s)} left" if self.left_s is not None else ""
            return f"{what}: " + (f"{self.done} of {self.total} new answers written{left}" if self.total else "starting")
        if self.cancelled:
            return f"{what}: cancelled (the answers written so far are kept)"
        if self.state == eval_jobs.SUCCEEDED:
            made = f", {self.proposals} proposals to review" if self.kind == REASON else ""
            return f"{what}: done at {(self.finished_at or '')[:16].replace('T', ' ')}{made}"
        return f"{what}: failed: {self.error or 'see its log'}"


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", Path(model.rstrip("/")).name)[:40].strip("-") or "model"


def read_job(job_dir: Path) -> ModelJob:
    status = eval_jobs.read_eval_status(job_dir)  # marks a job whose process died failed
    evaluations = status.get("evaluations") or {}
    return ModelJob(
        job_dir=job_dir, kind=str(status.get("kind") or EVALUATE), model=str(status.get("model") or "?"),
        split=str(status.get("split") or "test"),
        limit=status.get("limit"), state=str(status.get("status") or eval_jobs.FAILED),
        done=int(status.get("done") or 0), total=status.get("total"), error=status.get("error"),
        cancelled=bool(status.get("cancelled")), evaluation_id=evaluations.get("model"),
        created_at=str(status.get("created_at") or ""), finished_at=status.get("finished_at"),
        stage=status.get("stage"), proposals=status.get("proposals"), redraw_s=job_refresh_seconds(status),
        max_new_tokens=status.get("max_new_tokens"), tokens_per_construct=int(status.get("tokens_per_construct") or 0),
        left_s=job_time_left(status),
    )


def budget_words(max_new_tokens: int | None, tokens_per_construct: int | None = 0) -> str:
    """An answer budget in words, to follow a job's description: " (320 tokens an answer + 20 a construct)";
    "" when neither was set (the default budget)."""
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    if not max_new_tokens and not tokens_per_construct:
        return ""
    words = f"{max_new_tokens or DEFAULT_MAX_NEW_TOKENS} tokens an answer"
    return f" ({words}" + (f" + {tokens_per_construct} a construct)" if tokens_per_construct else ")")


def list_jobs(kind: str | None = None) -> list[ModelJob]:
    """Every job (of ``kind``: evaluate, reason), newest first."""
    root = evaluations_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (eval_jobs.eval_dir(p) / "status.json").is_file()]
    listed = [read_job(p) for p in sorted(found, key=lambda p: p.name, reverse=True)]
    return [j for j in listed if kind is None or j.kind == kind]


def active_job(kind: str | None = None) -> ModelJob | None:
    """The job going (of ``kind``), if one is."""
    return next((j for j in list_jobs(kind) if j.going), None)


@contextmanager
def _start_lock() -> Iterator[None]:
    """Held from "is a job going?" to the new job's waiting status: two people clicking at once start one job
    (two reasoning jobs would write two traces, and two proposals, for the same variants). An OS lock the kernel
    drops with its holder; where ``fcntl`` is missing (Windows) none."""
    evaluations_dir().mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(evaluations_dir() / ".start-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_job(slug: str, **status) -> Path:
    from r2ta.probe import active_probe

    with _start_lock():
        going = active_job()
        if going is not None:
            what = "an evaluation" if going.kind == EVALUATE else "a reasoning job"
            raise R2taError(f"{what} is already going ({going.describe()}): wait for it or cancel it")
        if active_probe() is not None:  # it times this machine: a job beside it would spoil its figures
            raise R2taError("the Train page is measuring this machine (a few minutes): wait for it or cancel it")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        job_dir = evaluations_dir() / f"{stamp}-{slug}"
        job_dir.mkdir(parents=True)
        eval_jobs.write_eval_status(job_dir, status=eval_jobs.WAITING, evaluations={}, done=0, total=None,
                                    created_at=jobs.now_iso(), **status)
    return job_dir


def _spawn(job_dir: Path, args: list[str]) -> ModelJob:
    try:
        child = eval_jobs._spawn(job_dir, args)
    except R2taError as err:
        eval_jobs.write_eval_status(job_dir, status=eval_jobs.FAILED, error=str(err), finished_at=jobs.now_iso())
        raise
    eval_jobs.write_eval_status(job_dir, pid=child.pid, pid_start=jobs.process_start_ticks(child.pid))
    return read_job(job_dir)


def start_model_evaluation(model: str, *, split: str = "test", limit: int | None = None,
                           max_new_tokens: int | None = None, dtype: str | None = None,
                           tokens_per_construct: int = 0) -> ModelJob:
    """Check ``model`` can be evaluated (:func:`r2ta.evaluation.resolve_model`), then evaluate it on the first
    ``limit`` variants of ``split`` (None: all) in a background process. Refused while another is going.
    ``max_new_tokens`` (None: 256) and ``tokens_per_construct``: each answer's budget
    (:func:`r2ta.pipeline.answer_budget`); answers the model wrote before under another are written again."""
    from r2ta.evaluation import resolve_model

    if split not in ("train", "test"):
        raise R2taError(f"split must be train or test, not {split!r}")
    if limit is not None and limit < 1:
        raise R2taError(f"the number of variants must be at least 1 (or none: all), not {limit}")
    eval_jobs.check_budget(max_new_tokens, tokens_per_construct)
    spec = resolve_model(model)  # an unknown model fails here, with the models it could be
    if spec.kind == "checker":
        dtype, max_new_tokens, tokens_per_construct = None, None, 0  # it writes no tokens
    job_dir = _new_job(_slug(model), job=JOB, kind=EVALUATE, model=model, split=split, limit=limit,
                       max_new_tokens=max_new_tokens, tokens_per_construct=tokens_per_construct, dtype=dtype)
    args = ["model", str(job_dir), "--model", model]
    args += eval_jobs.job_args(split, limit, max_new_tokens, tokens_per_construct)
    args += ["--dtype", dtype] if dtype else []
    return _spawn(job_dir, args)


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation of a model will do, before it starts (:func:`plan_model_evaluation`)."""

    model_id: str
    variants: int  # test variants it scores
    to_write: int  # answers it generates: those missing, and those another budget made
    seconds_an_answer: float | None = None  # from the last finished evaluation of this model here (_answer_rate)
    load_s: float = 0.0  # that evaluation's model load
    measured: str = ""  # which evaluation, in words

    def describe(self) -> str:
        """One line: how many answers it writes and reuses, and for how long where an earlier job says."""
        if not self.variants:
            return "There are no variants to evaluate on."
        reused = self.variants - self.to_write
        if not self.to_write:
            return (f"Each of the {self.variants} variants keeps the answer it has by {self.model_id} (this budget "
                    "would write the same): the evaluation only scores them (seconds).")
        text = f"{self.to_write} of the {self.variants} variants get a new answer by {self.model_id}" + (
            f"; {reused} keep the answer they have (this budget would write the same)" if reused else "")
        if self.seconds_an_answer is None:
            return text + ". No evaluation of this model has finished here yet to time it by."
        total = self.load_s + self.seconds_an_answer * self.to_write
        return (text + f": about {format_duration(total)}, at the {self.seconds_an_answer:.1f} s an answer of "
                f"{self.measured}.")


def plan_model_evaluation(model: str, *, split: str = "test", limit: int | None = None, dtype: str | None = None,
                          max_new_tokens: int | None = None, tokens_per_construct: int = 0,
                          engine=None) -> EvaluationPlan | None:
    """What :func:`start_model_evaluation` with these settings will do (:func:`r2ta.evaluation.answers_planned`),
    with the time an answer took in the newest finished evaluation of the same model id here — an Evaluate page's
    job, a training run's evaluation, a measurement (:func:`_answer_rate`; one under the same budget if there is
    one: answers cut at a budget take its length). None for the checker; an unknown model raises
    :class:`r2ta.errors.R2taError`. Loads no model."""
    from r2ta.evaluation import answers_planned

    planned = answers_planned(model, split=split, limit=limit, dtype=dtype, max_new_tokens=max_new_tokens,
                              tokens_per_construct=tokens_per_construct, engine=engine)
    if planned is None:
        return None
    model_id, variants, to_write = planned
    timed = _answer_rate(model_id, max_new_tokens, tokens_per_construct, engine=engine)
    if timed is None:
        return EvaluationPlan(model_id, variants, to_write)
    return EvaluationPlan(model_id, variants, to_write, *timed)


def reasoning_time(count: int, max_new_tokens: int | None = None) -> str | None:
    """Before the Review page's next batch: about how long the reasoning model takes to write ``count`` traces under
    ``max_new_tokens``, at the rate of its last finished batch or evaluation here (:func:`_answer_rate`); None when
    none has finished. Loads no model."""
    timed = _answer_rate(_reasoning_model_id(), max_new_tokens, 0, kinds=(REASON, EVALUATE))
    if timed is None or count < 1:
        return None
    per, load, measured = timed
    return (f"About {format_duration(load + per * count)} for {count} traces, at the {per:.1f} s a trace of "
            f"{measured}; then the auditor refines them (seconds).")


def _answer_rate(model_id: str, max_new_tokens: int | None, tokens_per_construct: int,
                 kinds: tuple[str, ...] = (EVALUATE,), engine=None) -> tuple[float, float, str] | None:
    """(seconds an answer, seconds of the model's load, which job) from the newest succeeded job that wrote answers
    by ``model_id``, preferring one under the same budget; None when there is none. The jobs: this folder's of
    ``kinds`` (an evaluation, a batch of traces for review) and, for an evaluation, the evaluations after training
    runs and the Train page's measurements (each model of theirs, :func:`_run_answer_rates`)."""
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    def budget(tokens, per) -> tuple[int, int]:
        return int(tokens or DEFAULT_MAX_NEW_TOKENS), int(per or 0)

    wanted = budget(max_new_tokens, tokens_per_construct)
    found = []  # (same budget, alone, finished at, seconds an answer, load, which job)
    timed = [*_job_answer_rates(kinds), *(_run_answer_rates(engine) if EVALUATE in kinds else [])]
    if EVALUATE in kinds:  # the evaluations no job here recorded: r2ta eval, r2ta loop, a job folder removed since
        timed += _stored_answer_rates({t[-1] for t in timed if isinstance(t[-1], int)}, engine)
    if REASON in kinds:  # the batches of traces no job wrote: r2ta reason, r2ta seed's first batch
        timed += _batch_answer_rates()
    for timed_id, tokens, per, seconds_an_answer, load, finished, what, beside, _evaluation_id in timed:
        if timed_id != model_id:
            continue
        same = budget(tokens, per) == wanted
        words = [*([] if same else [budget_words(*budget(tokens, per)).strip(" ()")]),
                 *(["beside a training run"] if beside else [])]
        when = (finished or "")[:16].replace("T", " ")
        found.append((same, not beside, finished or "", seconds_an_answer, load,
                      f"{what} of {when}" + (f" ({'; '.join(words)})" if words else "")))
    # the newest under the same budget that had the cores to itself; then the same budget; then the newest
    found.sort(key=lambda f: f[:3], reverse=True)
    return found[0][3:] if found else None


def _rate(generated) -> tuple[float, float] | None:
    """(seconds an answer, seconds of the load) of a status's ``generated`` entry, or None: no answers, unreadable."""
    figures = eval_jobs.generated_figures(generated)
    if figures is None or figures[0] <= 0 or figures[1] <= 0:
        return None
    answers, seconds, load = figures
    return seconds / answers, load or 0.0


def _job_answer_rates(kinds: tuple[str, ...]) -> Iterator[tuple]:
    """(model id, tokens an answer, a construct, seconds an answer, load, finished at, what, whether a training run
    went at any time while it ran: it shared the cores, :func:`_beside_run`; the evaluation's id, None for a batch
    for review) of this folder's succeeded jobs of ``kinds``."""
    for job in list_jobs():
        if job.state != eval_jobs.SUCCEEDED or job.kind not in kinds:
            continue
        status = eval_jobs.read_eval_status(job.job_dir)
        rate = _rate(status.get("generated") or {})
        if rate is not None and status.get("model_id"):
            what = "the batch for review" if job.kind == REASON else "the evaluation"
            evaluation_id = (status.get("evaluations") or {}).get("model") if job.kind == EVALUATE else None
            yield (status["model_id"], job.max_new_tokens, job.tokens_per_construct, *rate, job.finished_at, what,
                   bool(status.get("beside_run")), evaluation_id)


BATCHES_FILE = "reasoning-batches.jsonl"  # in the data folder: what r2ta reason's and r2ta seed's batches cost


def record_batch(gen, rep, started: str, *, max_new_tokens: int, tokens_per_construct: int = 0,
                 what: str = "the batch of r2ta reason") -> None:
    """Note what a batch of traces written outside a job cost (``r2ta reason``, the first batch of ``r2ta seed``),
    so that the Review page's next batch is timed by it (:func:`reasoning_time`): a line of :data:`BATCHES_FILE`
    with :func:`r2ta.evaluation.answers_cost`'s figures and hardware. Nothing for a batch that generated nothing;
    a file that cannot be written only loses the figure."""
    from r2ta.evaluation import answers_cost

    if not rep.generated:
        return
    line = {"model_id": rep.model_id, "split": rep.split, "max_new_tokens": max_new_tokens,
            "tokens_per_construct": tokens_per_construct, "finished_at": jobs.now_iso(), "what": what,
            **answers_cost(gen, rep, started)}
    try:
        with open(data_dir() / BATCHES_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    except OSError:
        pass


def _batch_answer_rates() -> list[tuple]:
    """The same for each batch :func:`record_batch` noted on this machine's hardware (a line from another machine,
    or unreadable, is left out)."""
    from r2ta.train_view import hardware_and_precision

    try:
        lines = (data_dir() / BATCHES_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    here, found = None, []
    for text in lines[-500:]:
        try:
            line = json.loads(text)
        except ValueError:
            continue
        rate = _rate(line) if isinstance(line, dict) and line.get("hardware") else None
        if rate is None:
            continue
        here = here or hardware_and_precision()[0]
        if line["hardware"] == here:
            when = str(line.get("finished_at") or "")
            found.append((line.get("model_id"), line.get("max_new_tokens"), line.get("tokens_per_construct"), *rate,
                          when, str(line.get("what") or "the batch of r2ta reason"), bool(line.get("beside_run")),
                          None))
    return found


def _run_answer_rates(engine=None) -> Iterator[tuple]:
    """The same for each model an evaluation after a training run, or a measurement, wrote answers with: the model
    id is its evaluation's (the database), the budget the evaluation's (the base model's without the construct
    tokens, :func:`r2ta.eval_jobs.evaluate_run`)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from db.engine import get_engine
    from db.models import EvaluationRow
    from r2ta.probe import list_probes
    from r2ta.timing import known_run_dirs

    engine = engine or get_engine()
    for run_dir in dict.fromkeys([*known_run_dirs(engine=engine), *list_probes()]):
        status = eval_jobs.read_eval_status(run_dir)
        evaluations, generated = status.get("evaluations") or {}, status.get("generated") or {}
        if not isinstance(evaluations, dict) or not isinstance(generated, dict):
            continue
        what = "the measurement" if run_dir.parent.parent.name == "probes" else f"run {run_dir.name}'s evaluation"
        for stage, entry in generated.items():
            rate, evaluation_id = _rate(entry), evaluations.get(stage)
            if rate is None or not isinstance(evaluation_id, int):
                continue
            try:
                with Session(engine) as session:
                    row = session.get(EvaluationRow, evaluation_id)
            except SQLAlchemyError:
                return
            if row is None:
                continue
            per = 0 if stage == eval_jobs.BASE else status.get("tokens_per_construct")
            yield (row.model_id, status.get("max_new_tokens"), per, *rate, status.get("finished_at"), what, False,
                   evaluation_id)


def _stored_answer_rates(known: set[int], engine=None) -> list[tuple]:
    """The same for each evaluation in the database that recorded what its answers cost on this machine's hardware
    (its settings' ``generated``, :func:`r2ta.evaluation.answers_cost`) and that no job or run here names
    (``known``): ``r2ta eval`` and ``r2ta loop`` on the command line, a job whose folder was removed. Another
    machine's evaluations (a PostgreSQL database shared by several) and a server's are left out: their seconds are
    not this machine's."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session, select

    from db.engine import get_engine
    from db.models import EvaluationRow
    from r2ta.train_view import hardware_and_precision

    here = None
    found = []
    try:
        with Session(engine or get_engine()) as session:
            rows = session.exec(select(EvaluationRow).order_by(EvaluationRow.id.desc()).limit(500)).all()
    except SQLAlchemyError:
        return []
    for row in rows:
        cost = (row.settings or {}).get("generated") if isinstance(row.settings, dict) else None
        if row.id in known or not isinstance(cost, dict) or not cost.get("hardware"):
            continue
        rate = _rate(cost)
        if rate is None:
            continue
        here = here or hardware_and_precision()[0]
        if cost["hardware"] != here:
            continue
        finished = row.created_at.replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds")  # naive UTC
        found.append((row.model_id, row.settings.get("max_new_tokens"), row.settings.get("tokens_per_construct"),
                      *rate, finished, f"evaluation {row.id}", bool(cost.get("beside_run")), row.id))
    return found


def sharing_note() -> str | None:
    """What a page says before starting a job while a training run goes: they share this machine."""
    run = jobs.training_run()
    return None if run is None else (f"Run {run.name} is training: a job started now shares this machine with it, "
                                     "and both go slower.")


def reasoning_model() -> str:
    """The model whose traces the review queue holds: the default backend's (``R2TA_BACKEND``, else embedded)."""
    from r2ta.backends import default_backend_name

    return default_backend_name()


def variants_left(split: str = "train", *, engine=None) -> int:
    """Variants of ``split`` the reasoning model has no trace for (what :func:`start_reasoning` can take)."""
    from sqlmodel import Session

    from db.engine import get_engine
    from r2ta.store import list_variants_without_trace

    with Session(engine or get_engine()) as session:
        pending, _ = list_variants_without_trace(session=session, model_id=_reasoning_model_id(), split=split)
    return len(pending)


def _reasoning_model_id() -> str:
    """The id the reasoning model stores traces under (a backend loads its model only when it first generates)."""
    from r2ta.backends import get_backend

    return get_backend(reasoning_model()).id


def start_reasoning(count: int, *, split: str = "train", max_new_tokens: int | None = None) -> ModelJob:
    """The reasoning model writes traces for the next ``count`` variants of ``split`` it has none for (round-robin
    across base schemas: :func:`r2ta.store.first_reaching`), and the deterministic auditor refines them: new proposals for
    the Review page. In a background process. ``max_new_tokens``: each trace's budget (default ``r2ta reason``'s,
    :data:`r2ta.pipeline.DEFAULT_MAX_NEW_TOKENS`)."""
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    if split not in ("train", "test"):
        raise R2taError(f"split must be train or test, not {split!r}")
    if not 1 <= count <= 10_000:
        raise R2taError(f"the number of variants must be between 1 and 10000, not {count}")
    budget = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    if not MIN_TOKENS <= budget <= MAX_TOKENS:
        raise R2taError(f"the tokens a trace may take must be between {MIN_TOKENS} and {MAX_TOKENS}, not {budget}")
    left = variants_left(split)
    if left == 0:
        raise R2taError(f"the model has reasoned about every {split} variant already")
    job_dir = _new_job("reason", job=REASONING_JOB, kind=REASON, model=reasoning_model(), split=split,
                       limit=min(count, left), max_new_tokens=budget)
    return _spawn(job_dir, ["reason", str(job_dir), "--split", split, "--limit", str(min(count, left)),
                            "--max-new-tokens", str(budget)])


def run_reasoning(job_dir: Path, *, split: str, count: int, max_new_tokens: int | None = None) -> int:
    """The job process: reason about the next ``count`` variants without a trace, then refine (exit 0, or 2)."""
    import sys

    from sqlmodel import Session

    from db.engine import get_engine
    from r2ta.backends import get_backend
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, reason, refine
    from r2ta.store import first_reaching

    started = jobs.now_iso()
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.RUNNING, stage="reasoning", started_at=started,
                                pid=os.getpid(), pid_start=jobs.process_start_ticks(os.getpid()))
    try:
        backend = get_backend(reasoning_model())
        try:
            with Session(get_engine()) as session:  # round-robin: a batch covers every schema
                first = first_reaching(session=session, model_id=backend.id, split=split, count=count, spread=True)
            reasoned = reason(backend, split=split, limit=first, spread=True,
                              max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                              progress=eval_jobs.progress_writer(job_dir))
        finally:
            backend.close()
        eval_jobs.write_eval_status(job_dir, stage="auditing")
        refined = refine(model_id=backend.id, split=split)
    except R2taError as err:
        eval_jobs.write_eval_status(job_dir, status=eval_jobs.FAILED, error=str(err), finished_at=jobs.now_iso())
        print(f"error: {err}", file=sys.stderr)
        return 2
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.SUCCEEDED, stage=None, finished_at=jobs.now_iso(),
                                model_id=backend.id, proposals=refined.proposals,
                                generated={"variants": reasoned.generated, "seconds": round(reasoned.seconds, 2),
                                           "load_seconds": round(reasoned.load_s, 2)}, beside_run=_beside_run(started))
    print(f"{reasoned}\n{refined}", flush=True)
    return 0


def _beside_run(since: str) -> bool:
    """Whether a training run went at any time since ``since`` (a job's start, ISO): going now, or finished since
    — one that started and ended within the job counts too. A job's answers beside it take longer (they share the
    cores), so its rate is not what a job alone gets (:func:`_answer_rate` prefers one that was alone)."""
    return jobs.training_since(since) is not None


def cancel_job(job_dir: Path) -> None:
    """Stop a job's process (its own process group) and mark it cancelled; what it stored stays."""
    if eval_jobs.read_eval_status(job_dir).get("status") not in eval_jobs.FINISHED:
        eval_jobs.stop_job(job_dir)


def read_log(job_dir: Path, max_chars: int = 6_000) -> str:
    return eval_jobs.read_eval_log(job_dir, max_chars)


def run_model_evaluation(job_dir: Path, *, model: str, split: str, limit: int | None, max_new_tokens: int | None,
                         dtype: str | None, tokens_per_construct: int = 0) -> int:
    """The job process: evaluate, writing progress into the job's status (exit 0, or 2 with the error)."""
    import sys

    from r2ta.evaluation import evaluate

    started = jobs.now_iso()
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.RUNNING, started_at=started, pid=os.getpid(),
                                pid_start=jobs.process_start_ticks(os.getpid()))
    try:
        outcome = evaluate(model, split=split, limit=limit, max_new_tokens=max_new_tokens,
                           progress=eval_jobs.progress_writer(job_dir), dtype=dtype,
                           tokens_per_construct=tokens_per_construct)
    except R2taError as err:
        eval_jobs.write_eval_status(job_dir, status=eval_jobs.FAILED, error=str(err), finished_at=jobs.now_iso())
        print(f"error: {err}", file=sys.stderr)
        return 2
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.SUCCEEDED, finished_at=jobs.now_iso(),
                                evaluations={"model": outcome.evaluation_id}, model_id=outcome.model_id,
                                generated={"variants": outcome.generated, "seconds": round(outcome.generation_s, 2),
                                           "load_seconds": round(outcome.load_s, 2)},
                                micro_f1=outcome.report.micro_f1, beside_run=_beside_run(started))
    print(f"{outcome.model_id}: evaluation {outcome.evaluation_id}, micro F1 {outcome.report.micro_f1:.3f} "
          f"({outcome.generated} answers generated in {outcome.generation_s:.0f} s)", flush=True)
    return 0
