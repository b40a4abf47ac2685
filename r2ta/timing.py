"""How long a training job will take on this machine, and how long the one going has left.

On a GPU the embedded model's loop takes minutes; on a laptop's CPU the same click can take
hours (450 SFT rows of ~2,000 tokens, one DPO pair per variant, then every model generating on
the test split). A user should know which before clicking, and while waiting.

* :func:`stage_time_left`: the running stage's seconds a step, from its own logged points (the
  last :data:`WINDOW` of them, so a machine that slows down or speeds up is followed), and what
  that leaves for its remaining steps.
* :func:`estimate_run`: a whole job (SFT, DPO, the evaluation after) from the newest finished run
  of the same recipe on the same hardware and precision: its seconds per row and epoch of each
  stage, plus the stage's time outside its steps (loading, tokenizing, saving, merging), and its
  evaluation's seconds per variant and model and, apart, its models' loads. Rows differ in length,
  and a model that loops until its budget generates longer than one that stops, so this is an
  estimate and says which run it comes from. No such run: the newest measurement of the recipe on this machine (:mod:`r2ta.probe`, a few
  real steps of each stage), said to be one; no measurement either: no estimate, said plainly, never a guess
  from nothing.

Nothing here imports torch or streamlit.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from r2ta import jobs
from r2ta.errors import R2taError

STAGES = ("sft", "dpo")
# The training code's speed revision, which the runner records in a run's status (``speed_revision``; a run
# without it is revision 1). It goes up with a change that makes the same recipe's steps take another time on the
# same machine, so that an estimate from a run made before the change says so instead of overstating the time.
SPEED_REVISION = 2
SPEED_CHANGES = {
    # revision: (what changed, the hardware kind it changed the speed on, or None for every kind)
    2: ("a CPU run's LM head scores only the labelled positions (SFT 1.3-1.45x the tokens/s) and training runs "
        "on tcmalloc where the system has it", "cpu"),
}
WINDOW = 20  # logged points the time a step is measured over
REFRESH_S = 2.0  # a page watching a job redraws it this often at the least...
REFRESH_MAX_S = 10.0  # ...and at the most (timing.refresh_seconds)
# TrainingArguments' defaults, for a recipe that does not set them.
_DEFAULTS = {"num_train_epochs": 3.0, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}


def format_duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"2 h 05 min"``: rounded to what a person plans with."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def parse_time(text: str | None) -> _dt.datetime | None:
    """An ISO time as the run files write it (UTC when it names no zone); None when it is not one."""
    try:
        value = _dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# -- the stage going -------------------------------------------------------------------


@dataclass(frozen=True)
class StageTimeLeft:
    stage: str
    step: int  # the last logged step
    max_steps: int
    seconds_per_step: float
    seconds_left: float

    def describe(self) -> str:
        left = (f"about {format_duration(self.seconds_left)} left in {self.stage.upper()}" if self.step < self.max_steps
                else f"{self.stage.upper()}'s last step done")
        return f"{self.seconds_per_step:,.1f} s a step, {left}"


def stage_time_left(progress: jobs.RunProgress, now: _dt.datetime | None = None) -> StageTimeLeft | None:
    """The running stage's time a step and time left, or None before it has logged a step (or when finished)."""
    stage = progress.stage
    if progress.finished or stage not in STAGES:
        return None
    points = [p for p in progress.points
              if p.get("stage") == stage and isinstance(p.get("elapsed_s"), (int, float))
              and isinstance(p.get("step"), int) and p["step"] > 0]
    if not points:
        return None
    last = points[-1]
    # A resumed run holds the points of the run it continues: their clock (elapsed_s) is another process's,
    # and this attempt's clock started at the step it went on from.
    carried = [p["step"] for p in points if p.get("attempt") != last.get("attempt")]
    points = [p for p in points if p.get("attempt") == last.get("attempt")]
    started_at_step = max((step for step in carried if step < points[0]["step"]), default=0)
    try:
        max_steps = int(last.get("max_steps") or progress.status.get("max_steps") or 0)
    except (TypeError, ValueError):
        return None
    if max_steps <= 0:
        return None
    first = points[max(0, len(points) - 1 - WINDOW)]
    if last["step"] > first["step"] and first is not last:
        per_step = (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
    elif last["step"] > started_at_step:  # one point: its time includes the stage's first-step warm-up
        per_step = last["elapsed_s"] / (last["step"] - started_at_step)
    else:
        return None
    per_step = max(per_step, 0.0)
    logged_at = parse_time(last.get("time"))
    since = max(0.0, ((now or _now()) - logged_at).total_seconds()) if logged_at else 0.0
    left = max(0.0, (max_steps - last["step"]) * per_step - since)
    return StageTimeLeft(stage, int(last["step"]), max_steps, per_step, left)


def refresh_seconds(progress: jobs.RunProgress) -> float:
    """How often a page watching this run redraws it: a quarter of the running stage's time a step, in whole
    seconds between :data:`REFRESH_S` and :data:`REFRESH_MAX_S` (:data:`REFRESH_S` before a step is logged). A
    redraw between two logged steps shows nothing new but the countdown, and on a CPU the redraws take from the run
    (benchmarks/bench_watching_page.py)."""
    left = stage_time_left(progress)
    if left is None:
        return REFRESH_S
    return _quarter(left.seconds_per_step)


def _quarter(seconds: float) -> float:
    return float(min(REFRESH_MAX_S, max(REFRESH_S, round(seconds / 4))))


def job_refresh_seconds(status: dict, now: _dt.datetime | None = None) -> float:
    """How often a page watching a model's job (an evaluation status: a run's evaluation, the Evaluate page's, the
    Review page's next batch) redraws it: a quarter of the time between two of its progress updates — its seconds a
    variant so far times the variants an update adds (``batch``, :func:`r2ta.eval_jobs.progress_writer`) — in whole
    seconds between :data:`REFRESH_S` and :data:`REFRESH_MAX_S` (:data:`REFRESH_S` before its first update).
    On a CPU an update comes once a batch of 8 answers, a minute apart: a redraw between two shows nothing new."""
    started = parse_time(status.get("stage_started_at") or status.get("started_at"))
    try:
        done, batch = int(status.get("done") or 0), int(status.get("batch") or 0)
    except (TypeError, ValueError):
        return REFRESH_S
    if not started or done <= 0 or batch <= 0:
        return REFRESH_S
    elapsed = max(0.0, ((now or _now()) - started).total_seconds())
    return _quarter(elapsed / done * batch)


# -- a whole job, from a finished one --------------------------------------------------


def stage_settings(recipe_data: dict, stage: str) -> tuple[float, int]:
    """(epochs, rows a step) of a stage in a parsed recipe; R2taError when the recipe holds something else."""
    section = recipe_data.get(stage) or {}

    def get(key):
        value = section.get(key)
        return _DEFAULTS[key] if value is None or isinstance(value, bool) else value

    try:
        epochs = float(get("num_train_epochs"))
        per_step = int(get("per_device_train_batch_size")) * int(get("gradient_accumulation_steps"))
    except (TypeError, ValueError) as err:
        raise R2taError(f"the recipe's {stage} section has no usable epochs or batch size ({err})") from None
    if not (math.isfinite(epochs) and epochs > 0 and per_step > 0):
        raise R2taError(f"the recipe's {stage} section has no usable epochs or batch size")
    return epochs, per_step


def rows_seen(steps: int, rows: int, rows_a_step: int, epochs: float) -> int:
    """Rows (repeats counted) a stage trained on in its first ``steps`` optimizer steps: ``rows`` an epoch in steps of
    ``rows_a_step``, an epoch's last step holding what is left of it (a run on fewer rows than a step takes sees
    ``rows`` a step, not ``rows_a_step``); never more than ``epochs`` passes."""
    per_epoch = max(1, math.ceil(rows / rows_a_step))
    full, rest = divmod(max(steps, 0), per_epoch)
    return min(full * rows + min(rest * rows_a_step, rows), math.ceil(rows * epochs))


@dataclass(frozen=True)
class StageRate:
    """One stage of a finished run: seconds per row and epoch (an SFT example, a DPO pair) and the rest."""

    seconds_per_row: float
    overhead_s: float  # the stage's wall time outside its training steps


@dataclass(frozen=True)
class RunRates:
    run_dir: Path
    stages: dict[str, StageRate]
    eval_seconds_per_variant: float | None  # one model on one test variant
    recipe: dict = field(default_factory=dict)  # the reference run's recipe, its overrides applied
    speed_revision: int = SPEED_REVISION  # of the training code that made it (:data:`SPEED_REVISION`)
    hardware_kind: str | None = None  # "cpu", "cuda", ...
    allocator: str | None = None  # the memory allocator it trained on, when it recorded one
    probe: bool = False  # a measurement (r2ta.probe), not a finished run
    eval_answers: int | None = None  # a measurement's evaluation rate: the base model's answers it comes from
    # An evaluation's first model's load (the libraries' import with it; None: not recorded apart from its answers),
    # and each model's after it in the same process (their files in the OS cache: 0.2-0.4 s for the embedded model).
    eval_load_s: float | None = None
    eval_reload_s: float | None = None


# Settings that change how long a row takes (epochs and row counts are scaled for; rates, beta, seeds change
# nothing): an estimate from a run that differs in one says so.
SPEED_SETTINGS = {
    "model": ("model_name_or_path", "use_peft", "lora_r", "lora_target_modules"),
    "sft": ("per_device_train_batch_size", "activation_checkpointing", "max_length", "packing", "padding_free",
            "decision_token_weight", "defect_fact_weight"),
    "dpo": ("per_device_train_batch_size", "activation_checkpointing", "max_length", "share_prompt", "loss_type",
            "precompute_ref_log_probs"),
}


def speed_differences(reference: dict, planned: dict) -> list[str]:
    """``section.key`` of each :data:`SPEED_SETTINGS` entry the two parsed recipes set differently."""
    return [f"{section}.{key}" for section, keys in SPEED_SETTINGS.items() for key in keys
            if (reference.get(section) or {}).get(key) != (planned.get(section) or {}).get(key)]


def read_recipe(path: Path) -> dict:
    """A recipe file's parsed YAML; {} when it cannot be read."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def planned_recipe(recipe: str | Path, overrides: list[str]) -> dict:
    """The parsed recipe a run of ``recipe`` with ``overrides`` (``SECTION.KEY=VALUE``) would train with."""
    return jobs.apply_overrides(read_recipe(jobs.recipe_file(recipe)), overrides)


def _rows(status: dict) -> dict[str, int]:
    """Rows of each stage's data file, as the runner records them in ``status.json`` (``data``)."""
    return {d.get("stage"): int(d.get("rows") or 0) for d in status.get("data") or [] if isinstance(d, dict)}


def _steady_rate(points: list[dict], stage: str, steps: int, seen: int, runtime: float) -> tuple[float, float] | None:
    """A stage's seconds a row without its first step's warm-up, and that warm-up: steps 2..N's seconds a token
    (their logged clock and cumulative tokens) times the stage's tokens a row, and the rest of the stage's
    ``runtime`` beyond that rate (the first step's warm-up, mostly; paid once a stage, so the same rows are
    estimated at the same time). A measurement times two steps, so its first one's warm-up (11 % of a step on a 2-core
    EPYC) would otherwise count in half its rate. None unless every step from the first to the last (``steps``) was
    logged with both, in one attempt, and the steps after the first took less of the runtime a token than the whole
    (a first step no slower than the rest has no warm-up to leave out: runtime over rows is as good)."""
    logged = {p["step"]: p for p in points
              if p.get("stage") == stage and isinstance(p.get("step"), int)
              and all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool)
                      for k in ("elapsed_s", "num_tokens"))}
    if steps < 2 or sorted(logged) != list(range(1, steps + 1)) or len({p.get("attempt") for p in logged.values()}) > 1:
        return None
    first, last = logged[1], logged[steps]
    tokens, seconds = last["num_tokens"] - first["num_tokens"], last["elapsed_s"] - first["elapsed_s"]
    if tokens <= 0 or seconds <= 0:
        return None
    per_token = seconds / tokens
    warm_up = runtime - per_token * last["num_tokens"]
    return (per_token * last["num_tokens"] / seen, warm_up) if warm_up > 0 else None


def _carried_measured_alike(run_dir: Path, status: dict, depth: int = 0) -> bool:
    """Whether the stages ``run_dir`` carried over from an earlier run (a resumed run's finished stages, a DPO-again
    run's SFT: ``request.json``'s ``resume``) were measured on the hardware and at the precision it ran with, so
    that their rates, which it carries with them, are this machine's. A folder copied from another machine and
    resumed or trained DPO again here would otherwise give that machine's SFT rate as this one's. The run they came
    from is followed back while it carried them too; one that is gone, unreadable or elsewhere: False."""
    try:
        resume = jobs.read_request(run_dir).get("resume")
    except (jobs.TrainingError, OSError, ValueError):
        return True  # a run without its request (an older runner's) carried nothing
    if not isinstance(resume, dict) or not resume.get("done"):
        return True
    if depth > 8 or not resume.get("from_run"):
        return False
    source = Path(str(resume["from_run"]))
    try:
        earlier = jobs.read_status(source)
    except (jobs.TrainingError, OSError, ValueError):
        return False
    alike = ((earlier.get("hardware") or {}).get("description") == (status.get("hardware") or {}).get("description")
             and earlier.get("precision") == status.get("precision"))
    return alike and _carried_measured_alike(source, earlier, depth + 1)


def run_rates(run_dir: Path) -> RunRates | None:
    """The rates a succeeded run measured, or None when it cannot give them (not finished, files missing)."""
    from r2ta.eval_jobs import read_eval_status

    try:
        status = jobs.read_status(run_dir)
    except jobs.TrainingError:
        return None
    if status.get("status") != jobs.SUCCEEDED or not _carried_measured_alike(run_dir, status):
        return None
    recipe = read_recipe(run_dir / "recipe.yaml")
    stages = {}
    points = jobs.read_points(run_dir)
    try:  # a status or recipe edited by hand into something else gives no rates, not an error
        rows = _rows(status)
        processes = int((status.get("hardware") or {}).get("processes") or 1)
        for stage in STAGES:
            m = (status.get("metrics") or {}).get(stage) or {}
            runtime, wall, steps, n = m.get("train_runtime_s"), m.get("wall_s"), m.get("steps"), rows.get(stage)
            if not (runtime and steps and n and recipe):
                return None
            epochs, per_step = stage_settings(recipe, stage)
            # A resumed stage's runtime covers the steps after its checkpoint; an epoch's last step may be short.
            seen = (rows_seen(int(steps), n, per_step * processes, epochs)
                    - rows_seen(int(m.get("resumed_from_step") or 0), n, per_step * processes, epochs))
            if seen <= 0:
                return None
            overhead = max(0.0, float(wall or runtime) - float(runtime))
            steady = None if m.get("resumed_from_step") else _steady_rate(points, stage, int(steps), seen, float(runtime))
            stages[stage] = (StageRate(steady[0], overhead + steady[1]) if steady
                             else StageRate(float(runtime) / seen, overhead))
    except (TypeError, ValueError, R2taError):
        return None
    eval_rate = None
    try:
        ev = read_eval_status(run_dir)
    except jobs.TrainingError:
        ev = {}
    started, finished = parse_time(ev.get("started_at")), parse_time(ev.get("finished_at"))
    models = len(ev.get("evaluations") or {})
    generated = ev.get("generated") if isinstance(ev.get("generated"), dict) else {}
    loaded = [m for m in (ev.get("models") or []) if isinstance(m, str)]  # the job's order (the file's keys are sorted)
    order = sorted(generated, key=lambda m: loaded.index(m) if m in loaded else len(loaded))
    answered = [g for g in (generated[m] for m in order) if isinstance(g, dict) and g.get("variants")]
    eval_load = eval_reload = None
    if ev.get("status") == "succeeded" and answered:
        # the models' generation alone: a base model that had its answers already generated none. An evaluation
        # that recorded its models' loads apart gives them apart, in the order it loaded them (the first pays for
        # the libraries' import), not spread over their answers.
        try:
            eval_rate = sum(float(g.get("seconds") or 0) for g in answered) / sum(int(g["variants"]) for g in answered)
            loads = [float(g["load_seconds"]) for g in answered if g.get("load_seconds") is not None]
            eval_load = loads[0] if loads else None
            eval_reload = sum(loads[1:]) / len(loads[1:]) if loads[1:] else None
        except (TypeError, ValueError):
            eval_rate = eval_load = eval_reload = None
    elif ev.get("status") == "succeeded" and started and finished and ev.get("total") and models:
        eval_rate = (finished - started).total_seconds() / (models * int(ev["total"]))
    try:
        revision = int(status.get("speed_revision") or 1)
    except (TypeError, ValueError):
        revision = 1
    allocator = status.get("allocator") if isinstance(status.get("allocator"), str) else None
    return RunRates(run_dir, stages, eval_rate, recipe, speed_revision=revision,
                    hardware_kind=(status.get("hardware") or {}).get("kind"), allocator=allocator,
                    eval_load_s=eval_load, eval_reload_s=eval_reload)


def changes_since(rates: RunRates) -> list[str]:
    """What made training faster or slower on the reference run's hardware since its code's speed revision."""
    return [what for revision, (what, kind) in sorted(SPEED_CHANGES.items())
            if revision > rates.speed_revision and kind in (None, rates.hardware_kind)]


def known_run_dirs(*, engine=None) -> list[Path]:
    """Every run folder on this machine the Train page lists: ``DATA/runs`` and the ones the database records."""
    from sqlalchemy.exc import SQLAlchemyError

    from r2ta.train_view import recorded_run_dirs

    try:
        recorded = recorded_run_dirs(engine=engine)
    except SQLAlchemyError:  # the database is unreachable: the runs folder still counts
        recorded = []
    return [*jobs.list_runs(), *recorded]


def reference_run(recipe: str, hardware: str, precision: str, run_dirs: list[Path], *,
                  probes: bool = True) -> RunRates | None:
    """The succeeded run of ``recipe`` on ``hardware`` (its description) at ``precision`` that finished last and
    gives rates, among ``run_dirs`` (the page's runs: ``DATA/runs`` and the ones the database records); with none,
    the newest measurement that matches (:mod:`r2ta.probe`, ``DATA/probes``) unless ``probes`` is false."""
    def newest(dirs) -> RunRates | None:
        found = []
        for run_dir in dict.fromkeys(Path(p) for p in dirs):
            try:
                status = jobs.read_status(run_dir)
            except jobs.TrainingError:
                continue
            same = (status.get("recipe") == Path(str(recipe)).stem
                    and (status.get("hardware") or {}).get("description") == hardware
                    and status.get("precision") == precision)
            finished = parse_time(status.get("finished_at"))
            if same and finished and (rates := run_rates(run_dir)) is not None:
                found.append((finished, rates))
        return max(found, key=lambda item: item[0])[1] if found else None

    rates = newest(run_dirs)
    if rates is None and probes:
        from r2ta.probe import list_probes, probe_state

        rates = newest(p for p in list_probes() if probe_state(p) == jobs.SUCCEEDED)
        rates = rates and as_probe(rates)
    return rates


def as_probe(rates: RunRates) -> RunRates:
    """A measurement's rates (:mod:`r2ta.probe`) as an estimate takes them: said to be a measurement's, with the
    base model's answers its evaluation rate comes from, or the base model's own evaluation here where that one
    answered more (:func:`base_evaluation_rate`)."""
    rates = replace(rates, probe=True, eval_answers=_probe_answers(rates.run_dir))
    evaluated = base_evaluation_rate(rates)
    if evaluated and evaluated[1] > (rates.eval_answers or 0):  # more answers: a closer rate than the probe's
        rates = replace(rates, eval_seconds_per_variant=evaluated[0], eval_answers=evaluated[1],
                        eval_load_s=evaluated[2] if evaluated[2] is not None else rates.eval_load_s)
    return rates


def _probe_answers(run_dir: Path) -> int | None:
    from r2ta.eval_jobs import read_eval_status

    generated = (read_eval_status(run_dir).get("generated") or {}).get("base") or {}
    return int(generated.get("variants") or 0) or None if isinstance(generated, dict) else None


MIN_EVAL_ANSWERS = 8  # an evaluation of the base model by itself gives a measurement its rate from this many up


def base_evaluation_rate(rates: RunRates) -> tuple[float, int, float | None] | None:
    """Seconds an answer, answers and the seconds the model's load took (None where not recorded apart), of the
    newest evaluation of the model ``rates``' recipe starts from, by itself on this machine (the Evaluate page's
    *Evaluate a model*, :mod:`r2ta.model_jobs`), in the dtype the run would evaluate it in, that generated at least :data:`MIN_EVAL_ANSWERS` answers; None without one."""
    from r2ta.eval_jobs import generated_figures, read_eval_status
    from r2ta.evaluation import base_model_id, run_generation_dtype
    from r2ta.model_jobs import EVALUATE, list_jobs

    base = str((rates.recipe.get("model") or {}).get("model_name_or_path") or "")
    wanted = base and base_model_id(base, run_generation_dtype(rates.run_dir))
    if not wanted:
        return None
    for job in list_jobs(EVALUATE):
        status = read_eval_status(job.job_dir)
        figures = generated_figures(status.get("generated") or {})
        if figures is None:
            continue
        answers, seconds, load = figures
        if (status.get("status") == "succeeded" and status.get("model_id") == wanted
                and answers >= MIN_EVAL_ANSWERS and seconds > 0):
            return seconds / answers, answers, load
    return None


@dataclass
class RunEstimate:
    source: Path  # the finished run the rates come from
    stages: dict[str, float] = field(default_factory=dict)  # seconds
    rows: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)
    evaluation_s: float | None = None
    eval_variants: int = 0
    base_variants: int = 0  # test variants the base model still has to answer (the first run's evaluation)
    differs: list[str] = field(default_factory=list)  # speed settings the reference run had otherwise
    resumed_at: dict[str, int] = field(default_factory=dict)  # a resumed run: the step its stage goes on from
    changes_since: list[str] = field(default_factory=list)  # speed changes made after the reference run
    probe: bool = False  # the rates come from a measurement (r2ta.probe), not a finished run
    eval_answers: int | None = None  # a measurement's evaluation rate: the base model's answers it comes from
    capped: dict[str, int] = field(default_factory=dict)  # a stage --max-steps stops before its epochs end: its steps

    @property
    def total_s(self) -> float:
        return sum(self.stages.values()) + (self.evaluation_s or 0.0)

    def describe(self) -> str:
        parts = [f"{stage.upper()} {format_duration(s)} ({self.rows[stage]} {'rows' if stage == 'sft' else 'pairs'}"
                 f" × {self.epochs[stage]:g} epoch{'s' if self.epochs[stage] != 1 else ''}"
                 + (f", from step {self.resumed_at[stage]}" if self.resumed_at.get(stage) else "")
                 + (f", stopped after {self.capped[stage]} steps" if self.capped.get(stage) else "") + ")"
                 for stage, s in self.stages.items()]
        if self.evaluation_s is not None:
            base = f" + the base model on {self.base_variants}" if self.base_variants else ""
            parts.append(f"evaluation {format_duration(self.evaluation_s)} ({self.eval_variants} test variants × 2 models"
                         f"{base})")
        elif self.eval_variants:
            parts.append("evaluation not estimated (the reference run has no finished evaluation)")
        if self.probe:
            answers = f"{self.eval_answers} answers" if self.eval_answers else "answers"
            text = (f"roughly {format_duration(self.total_s)}: " + ", ".join(parts) + "; rates measured by a few "
                    f"training steps of this recipe on this machine and the base model's {answers} (a finished run "
                    "will give a closer figure; trained models that run to their token budget generate longer)")
        else:
            text = f"about {format_duration(self.total_s)}: " + ", ".join(parts) + f"; rates of run {self.source.name}"
        if self.differs:
            text += f", which ran with another {', '.join(self.differs)}, so the time a row takes may differ"
        if self.changes_since:
            text += (f"; that run trained on an earlier version of the training code, before {'; '.join(self.changes_since)}"
                     ", so this run will likely take less")
        return text


def estimate_run(rates: RunRates, recipe_data: dict, rows: dict[str, int], eval_variants: int = 0, *,
                 max_steps: int | None = None, processes: int = 1, resume: dict | None = None,
                 allocator: str | None = None, base_variants: int = 0) -> RunEstimate:
    """A job training ``rows`` (``{"sft": n, "dpo": m}``) under ``recipe_data`` (its overrides applied), at ``rates``.

    ``max_steps``: each stage stops there (``r2ta train --max-steps``). ``resume``: a resumed run's
    ``request.json`` ``resume`` (stages carried over take no time; the stage it goes on with, its steps left).
    ``allocator``: the one this run will train on (:func:`r2ta.jobs.planned_allocator`); named when the reference
    run recorded another. ``base_variants``: test variants the model the run starts from has no answer to yet
    (:func:`r2ta.eval_jobs.base_answers_missing`); the evaluation after the run generates those too."""
    differs = speed_differences(rates.recipe, recipe_data) if rates.recipe else []
    if allocator and rates.allocator and allocator != rates.allocator:
        differs.append(f"memory allocator ({rates.allocator}; this run: {allocator})")
    estimate = RunEstimate(rates.run_dir, eval_variants=eval_variants, base_variants=base_variants, differs=differs,
                           changes_since=changes_since(rates), probe=rates.probe, eval_answers=rates.eval_answers)
    resume = resume or {}
    for stage in STAGES:
        if stage in (resume.get("done") or []):
            continue
        epochs, per_step = stage_settings(recipe_data, stage)
        n = int(rows.get(stage) or 0)
        a_step = per_step * max(processes, 1)
        seen = math.ceil(n * epochs)
        if max_steps and rows_seen(max_steps, n, a_step, epochs) < seen:
            seen = rows_seen(max_steps, n, a_step, epochs)
            estimate.capped[stage] = max_steps
        if resume.get("stage") == stage and resume.get("step"):
            estimate.resumed_at[stage] = int(resume["step"])
            seen = max(0, seen - rows_seen(int(resume["step"]), n, a_step, epochs))
        rate = rates.stages[stage]
        estimate.rows[stage], estimate.epochs[stage] = n, epochs
        estimate.stages[stage] = rate.overhead_s + rate.seconds_per_row * seen
    if eval_variants and rates.eval_seconds_per_variant is not None:
        later = 1 + bool(base_variants)  # SFT+DPO after SFT, and the base model where it has answers to give
        estimate.evaluation_s = (rates.eval_seconds_per_variant * (2 * eval_variants + base_variants)
                                 + (rates.eval_load_s or 0.0) + (rates.eval_reload_s or 0.0) * later)
    return estimate


def estimate_for_recipe(recipe: str, overrides: list[str], rows: dict[str, int], *, hardware: str, precision: str,
                        eval_variants: int = 0, run_dirs: list[Path] | None = None,
                        base_variants: int = 0) -> RunEstimate | None:
    """:func:`estimate_run` from the :func:`reference_run` of ``recipe``; None when this machine has none."""
    rates = reference_run(recipe, hardware, precision, jobs.list_runs() if run_dirs is None else run_dirs)
    if rates is None:
        return None
    data = planned_recipe(recipe, overrides)
    return estimate_run(rates, data, rows, eval_variants, allocator=jobs.planned_allocator(),
                        base_variants=base_variants)


def after_this_stage(progress: jobs.RunProgress, rates: RunRates | None, eval_variants: int = 0,
                     base_variants: int = 0) -> RunEstimate | None:
    """What a running job has still to do after the stage it is in (DPO after SFT, then the evaluation), at ``rates``."""
    if rates is None or progress.finished or progress.stage not in STAGES:
        return None
    data = read_recipe(progress.run_dir / "recipe.yaml")
    try:
        rows = _rows(progress.status)
    except (TypeError, ValueError):  # a status edited by hand: no estimate
        return None
    if not data or not rows:
        return None
    try:
        max_steps = jobs.read_request(progress.run_dir).get("max_steps")
    except jobs.TrainingError:
        max_steps = None
    processes = int((progress.status.get("hardware") or {}).get("processes") or 1)
    estimate = estimate_run(rates, data, rows, eval_variants, max_steps=max_steps, processes=processes,
                            allocator=progress.status.get("allocator"), base_variants=base_variants)
    for stage in STAGES[: STAGES.index(progress.stage) + 1]:
        del estimate.stages[stage]
    return estimate


def evaluation_time_left(evaluation: dict, now: _dt.datetime | None = None) -> float | None:
    """Seconds a run's evaluation job has left: its model's time a variant so far times the variants left, and
    the same again for each model after it (:data:`r2ta.eval_jobs` scores SFT, then SFT+DPO, then the base model
    on the variants it had no answer to: ``base_pending``). None before the first variant is done."""
    from r2ta.evaluation import FINAL, SFT

    order = tuple(evaluation.get("models") or (SFT, FINAL))  # a job before the base was evaluated: two
    if not all(isinstance(m, str) for m in order):
        return None
    started = parse_time(evaluation.get("stage_started_at"))
    done, total, stage = evaluation.get("done") or 0, evaluation.get("total") or 0, evaluation.get("stage")
    if evaluation.get("status") != "running" or stage not in order or not started or done <= 0 or total <= 0:
        return None
    per_variant = max(0.0, ((now or _now()) - started).total_seconds()) / done
    later = order[order.index(stage) + 1:]
    try:  # the base model answers only the variants it had no answer to when the job began
        later_variants = sum(int(evaluation.get("base_pending") or 0) if m == "base" else total for m in later)
    except (TypeError, ValueError):
        return None
    return per_variant * ((total - done) + later_variants)


def job_time_left(status: dict, now: _dt.datetime | None = None) -> float | None:
    """Seconds a model's job by itself (the Evaluate page's evaluation, the Review page's next batch) has left in
    its answers: its time an answer so far — the model's load included, so a little long at first — times the
    answers left. None when it is not running, before its first update, or with every answer written."""
    started = parse_time(status.get("stage_started_at") or status.get("started_at"))
    try:
        done, total = int(status.get("done") or 0), int(status.get("total") or 0)
    except (TypeError, ValueError):
        return None
    if status.get("status") != "running" or not started or done <= 0 or total <= done:
        return None
    return max(0.0, ((now or _now()) - started).total_seconds()) / done * (total - done)


NO_ESTIMATE = ("No run of this recipe has finished on this hardware yet, so there is no estimate of its time: measure "
               "this machine first (a few real training steps), or start the run — once it is going, its progress "
               "shows the time each stage has left.")
