"""What the Train page shows, without streamlit: export for a run, hardware, run summaries, curves.

* :func:`export_for_training` writes the accepted/edited data of the train split
  (:func:`r2ta.pipeline.export_rows`) into ``DATA/exports/<time>/`` for a run.
* :func:`list_run_summaries` reads every run folder (status, last metrics, its
  evaluation job) for the page's table of past runs.
* :func:`loss_figure` / :func:`margin_figure` draw a run's logged points (plotly).

This module must not import streamlit; torch only inside :func:`hardware_and_precision`.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from r2ta import jobs
from r2ta.config import data_dir
from r2ta.errors import R2taError


@dataclass
class ExportedData:
    sft_file: Path
    dpo_file: Path
    sft_rows: int
    dpo_rows: int
    skipped: list[str] = field(default_factory=list)


# The Train page's choice of DPO rejected traces (r2ta.pipeline.export_rows ``negatives``).
NEGATIVE_CHOICES = {
    "original": "the model's own (R2tA)",
    "planted": "one planted error",
    "omission": "one mistake left out",
    "both": "both",
}


@dataclass(frozen=True)
class TrainingRows:
    """What a run started now would train on: the decisions in force on the train split (SFT rows) and the DPO
    pairs they make with the chosen rejected traces; ``dpo_at_most`` where some may not be made (a planted error
    needs a trace it can be put in)."""
    sft: int
    dpo: int
    dpo_at_most: bool


def training_rows(*, engine: Engine | None = None, split: str = "train", negatives: str = "original") -> TrainingRows:
    """:class:`TrainingRows` from counts (no export written): the Train page's figures and its estimate's rows."""
    from sqlmodel import Session

    from db.engine import get_engine
    from db.queries import count_pairs_ready
    from r2ta.store import count_decisions_in_force

    if negatives not in NEGATIVE_CHOICES:
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_CHOICES)}, not {negatives!r}")
    with Session(engine or get_engine()) as session:
        sft = count_decisions_in_force(session=session, split=split)
        own = count_pairs_ready(session=session, split=split)
    planted = sft if negatives != "original" else 0  # one per decision, where one can be planted
    return TrainingRows(sft, (own if negatives in ("original", "both") else 0) + planted, negatives != "original")


def export_for_training(*, engine: Engine | None = None, split: str = "train", negatives: str = "original") -> ExportedData:
    """Write SFT rows and DPO pairs from the decisions in force into a fresh ``DATA/exports/<time>/`` folder."""
    from r2ta.pairs import write_rows
    from r2ta.pipeline import export_rows

    sft = export_rows("sft", split=split, engine=engine)
    dpo = export_rows("dpo", split=split, engine=engine, negatives=negatives)
    if not sft.rows or not dpo.rows:
        raise R2taError(
            f"nothing to train on: {len(sft.rows)} SFT rows and {len(dpo.rows)} DPO pairs from the {split} split; "
            "accept or edit proposals on the Review page first"
        )
    folder = data_dir() / "exports" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(sft.rows, folder / "sft.jsonl")
    write_rows(dpo.rows, folder / "dpo.jsonl")
    return ExportedData(folder / "sft.jsonl", folder / "dpo.jsonl", len(sft.rows), len(dpo.rows),
                        sorted(set(sft.skipped) | set(dpo.skipped)))


def hardware_and_precision(recipe: str | Path | None = None) -> tuple[str, str]:
    """What a run of ``recipe`` started now would train on, and at which precision (imports torch: cache it).

    The same strings a run records in its status (``hardware.description``, ``precision``)."""
    from training.hardware import detect_hardware, resolve_precision

    hw = detect_hardware()
    requested = str((_recipe_data(recipe).get("run") or {}).get("precision") or "auto") if recipe else "auto"
    return hw.describe(), resolve_precision(requested, hw).name


def precision_choices() -> list[str]:
    """The precisions a run can ask for on this machine (imports torch: cache it)."""
    from training.hardware import detect_hardware, precision_choices

    return precision_choices(detect_hardware())


def hardware_headline() -> tuple[str, str]:
    """The Train page's Hardware box: what trains and at which precision, short enough for the box; and what
    limits the cores (a container's CPU quota, a cpuset), "" when nothing does, said beneath it in full."""
    from dataclasses import replace

    from training.hardware import detect_hardware, resolve_precision

    hw = detect_hardware()
    return f"{replace(hw, cpu_limit='').describe()}, {resolve_precision('auto', hw).name}", hw.cpu_limit


@dataclass(frozen=True)
class Setting:
    """A recipe setting the Train page lets a run change (``SECTION.KEY``), with its widget's bounds."""

    key: str
    label: str
    kind: type  # int or float
    minimum: float
    maximum: float
    help: str


# What a researcher tunes between runs (issue 6: epochs, learning rate, LoRA rank, beta); anything else is
# ``r2ta train --set SECTION.KEY=VALUE`` or a recipe file.
SETTINGS = (
    Setting("sft.num_train_epochs", "SFT epochs", int, 1, 50, "passes over the SFT examples"),
    Setting("sft.learning_rate", "SFT learning rate", float, 1e-7, 1.0, "peak rate of the SFT stage"),
    Setting("dpo.learning_rate", "DPO learning rate", float, 1e-8, 1.0, "peak rate of the DPO stage"),
    Setting("dpo.beta", "DPO beta", float, 1e-3, 10.0,
            "how far DPO may move from the SFT model: smaller lets it move further"),
    Setting("model.lora_r", "LoRA rank", int, 1, 1024, "rank of the LoRA adapters (with LoRA only)"),
)
# The SFT term beside DPO (TRL's loss_type [sigmoid, sft], RPO): keeps the chosen answer likely while DPO
# separates the pair (run64d: plain DPO fitted its pairs by lowering both answers). Its weight, 0 = off: TRL
# averages the term over the chosen answer's tokens while DPO's pull is on the whole answer's log-probability,
# so weight beta x answer length / 2 matches the two at the start (run64r: weight 1 was ~20x weaker; run64s:
# weight 20 held the chosen answer and DPO moved the model little).
SFT_TERM_LABEL = "SFT term weight (0 = off)"
# SFT's activation checkpointing (TRL's activation_checkpointing): recompute each layer's activations in the
# backward pass instead of holding them, less memory for more time. DPO's stays as the recipe has it (the CPU
# recipe trains DPO without, for share_prompt).
CHECKPOINTING = "sft.activation_checkpointing"
CHECKPOINTING_LABEL = "SFT activation checkpointing"
SFT_TERM_MAX = 1000.0


def _recipe_data(recipe: str | Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(jobs.recipe_file(recipe).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise R2taError(f"cannot read recipe {recipe}: {err}") from None
    return data if isinstance(data, dict) else {}


def _lookup(data: dict, key: str):
    section, _, name = key.partition(".")
    return (data.get(section) or {}).get(name)


def _loss_types(data: dict) -> list[str]:
    value = _lookup(data, "dpo.loss_type") or ["sigmoid"]
    return [value] if isinstance(value, str) else list(value)


def _loss_weights(data: dict) -> list[float]:
    types = _loss_types(data)
    weights = _lookup(data, "dpo.loss_weights")
    if not isinstance(weights, list) or len(weights) != len(types):
        return [1.0] * len(types)  # TRL: no weights, each loss counts once
    return [float(w) for w in weights]


def recipe_settings(recipe: str | Path) -> dict:
    """The recipe's value of each tunable setting it has (``SETTINGS`` keys), ``"sft_term"``: the weight of
    the SFT term beside DPO, 0.0 where the recipe has none, and :data:`CHECKPOINTING` (a bool)."""
    data = _recipe_data(recipe)
    values = {}
    for setting in SETTINGS:
        value = _lookup(data, setting.key)
        if setting.key == "model.lora_r" and not _lookup(data, "model.use_peft"):
            continue  # full fine-tuning: no adapters to size
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[setting.key] = setting.kind(value)
    types = _loss_types(data)
    values["sft_term"] = _loss_weights(data)[types.index("sft")] if "sft" in types else 0.0
    values[CHECKPOINTING] = bool(_lookup(data, CHECKPOINTING))  # TRL's default: off
    return values


def recipe_overrides(recipe: str | Path, chosen: dict) -> list[str]:
    """``SECTION.KEY=VALUE`` for each setting in ``chosen`` that differs from the recipe (none: the recipe as is).

    A value outside its setting's bounds is an error; so is a setting the page does not offer.
    """
    current = recipe_settings(recipe)
    by_key = {s.key: s for s in SETTINGS}
    overrides = []
    for key, value in chosen.items():
        if key == "sft_term":
            overrides += _sft_term_overrides(recipe, value, current["sft_term"])
            continue
        if key == CHECKPOINTING:
            if not isinstance(value, bool):
                raise R2taError(f"{CHECKPOINTING_LABEL} is on or off, not {value!r}")
            if value != current[key]:
                overrides.append(f"{key}={'true' if value else 'false'}")
            continue
        setting = by_key.get(key)
        if setting is None or key not in current:
            raise R2taError(f"{key} is not a setting this recipe lets a run change")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise R2taError(f"{setting.label} must be a number, not {value!r}")
        if not setting.minimum <= value <= setting.maximum:
            raise R2taError(f"{setting.label} must lie between {setting.minimum:g} and {setting.maximum:g}, not {value:g}")
        if setting.kind is int and value != int(value):
            raise R2taError(f"{setting.label} must be a whole number, not {value:g}")
        if not math.isclose(float(value), float(current[key]), rel_tol=1e-9):
            overrides.append(f"{key}={setting.kind(value)!r}")
    return overrides


def dpo_again_overrides(run_dir: Path, chosen: dict) -> list[str]:
    """The DPO settings of ``chosen`` (the Train page's form: ``dpo.*`` and the SFT term) that differ from what
    ``run_dir`` ran with (its ``recipe.yaml``), as ``SECTION.KEY=VALUE``: what DPO again from its SFT changes."""
    dpo_only = {k: v for k, v in chosen.items() if k.startswith("dpo.") or k == "sft_term"}
    return recipe_overrides(Path(run_dir) / "recipe.yaml", dpo_only)


def _sft_term_overrides(recipe: str | Path, weight, current: float) -> list[str]:
    """``dpo.loss_type`` / ``dpo.loss_weights`` that give the SFT term ``weight`` (0: none), the recipe's other
    losses and their weights kept; [] when the recipe already has that weight."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise R2taError(f"The SFT term's weight must be a number, not {weight!r}")
    if not 0.0 <= weight <= SFT_TERM_MAX:
        raise R2taError(f"The SFT term's weight must lie between 0 and {SFT_TERM_MAX:g}, not {weight:g}")
    if math.isclose(float(weight), current, rel_tol=1e-9, abs_tol=1e-12):
        return []
    data = _recipe_data(recipe)
    kept = [(t, w) for t, w in zip(_loss_types(data), _loss_weights(data)) if t != "sft"] or [("sigmoid", 1.0)]
    if weight > 0:
        kept.append(("sft", float(weight)))
    types = ", ".join(t for t, _ in kept)
    weights = f"[{', '.join(repr(float(w)) for _, w in kept)}]" if len(kept) > 1 else "null"
    return [f"dpo.loss_type=[{types}]", f"dpo.loss_weights={weights}"]


def recipe_description(recipe: str) -> str:
    """The recipe's one-line description (its ``run.description``), without loading TRL."""
    import yaml

    try:
        data = yaml.safe_load(jobs.recipe_file(recipe).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str((data.get("run") or {}).get("description") or "")


@dataclass
class RunSummary:
    run_dir: Path
    name: str
    recipe: str
    state: str
    stage: str | None
    started_at: str | None
    finished_at: str | None
    sft_loss: float | None
    dpo_margin: float | None
    evaluation: str
    error: str | None
    # "from RUN" (it continues RUN), "as RUN" (RUN went on with it), "DPO again on the SFT of RUN"
    resumed: str = ""

    @property
    def took(self) -> str:
        """Started to finished (training only; the evaluation after it is its own job), or "" while unknown."""
        from r2ta.timing import format_duration, parse_time

        start, end = parse_time(self.started_at), parse_time(self.finished_at)
        return format_duration((end - start).total_seconds()) if start and end and end >= start else ""

    def row(self) -> dict:
        """The Past runs table's row: times to the minute ("2026-12-06 10:15"; the run's status has them whole)."""
        return {"run": self.name, "recipe": self.recipe, "status": self.state, "stage": self.stage or "",
                "started": _minute(self.started_at), "finished": _minute(self.finished_at), "took": self.took,
                "SFT loss": self.sft_loss, "DPO margin": self.dpo_margin, "evaluation": self.evaluation,
                "resumed": self.resumed}


def _minute(stamp: str | None) -> str:
    """An ISO time as "YYYY-MM-DD HH:MM" (as written, in the run's own offset); "" for none."""
    return (stamp or "")[:16].replace("T", " ")


def summarize_run(run_dir: Path) -> RunSummary:
    from r2ta.eval_jobs import read_eval_status

    progress = jobs.read_progress(run_dir)
    status = progress.status
    metrics = status.get("metrics") or {}
    sft_loss = (metrics.get("sft") or {}).get("final_loss")
    dpo_margin = (metrics.get("dpo") or {}).get("reward_margin")
    if sft_loss is None:
        losses = progress.series("loss", "sft")
        sft_loss = losses[-1][1] if losses else None
    if dpo_margin is None:
        margins = progress.series("reward_margin", "dpo")
        dpo_margin = margins[-1][1] if margins else None
    ev = read_eval_status(run_dir)
    evaluation = ev.get("status", "none") if ev else "none"
    if ev.get("status") == "running" and ev.get("stage"):
        evaluation = f"running ({ev['stage']} {ev.get('done', 0)}/{ev.get('total', '?')})"
    recipe = status.get("recipe", "")
    if status.get("overrides"):
        recipe = f"{recipe} · {', '.join(status['overrides'])}"
    resumed = " · ".join(f"{word} {Path(status[key]).name}" for key, word in
                         (("resumed_from", "from"), ("resumed_by", "as"), ("sft_from", "DPO again on the SFT of"))
                         if status.get(key))
    return RunSummary(run_dir, run_dir.name, recipe, progress.state, progress.stage,
                      status.get("started_at"), status.get("finished_at"), sft_loss, dpo_margin, evaluation,
                      progress.error, resumed)


def recorded_run_dirs(*, engine: Engine | None = None) -> list[Path]:
    """Run folders the database knows outside ``DATA/runs`` (``r2ta loop``, ``r2ta train --run-dir``), still on disk."""
    from sqlmodel import Session

    from db import queries
    from r2ta.catalog import open_engine

    inside = {p.resolve() for p in jobs.list_runs()}
    with Session(engine or open_engine()) as session:
        rows = queries.list_training_runs(session=session)
    out = []
    for row in rows:
        # sync_run_to_db records a run (one row per stage) by its log, <run folder>/train.log
        path = Path(row.run_dir) if row.run_dir else Path(row.log_path).parent if row.log_path else None
        if path and path.resolve() not in inside and (path / jobs.STATUS_FILE).is_file() and path not in out:
            out.append(path)
    return out


def list_run_summaries(*, engine: Engine | None = None) -> list[RunSummary]:
    """Every run under ``DATA/runs`` (newest first), then every other run folder the database records
    (newest first); a damaged folder is listed with its error. Names are unique (a clash gets its full path)."""
    from r2ta.evaluation import run_evaluations

    out = []
    extra = recorded_run_dirs(engine=engine)
    for run_dir in [*jobs.list_runs(), *extra]:
        try:
            summary = summarize_run(run_dir)
        except R2taError as err:
            summary = RunSummary(run_dir, run_dir.name, "", "unreadable", None, None, None, None, None, "none", str(err))
        if run_dir in extra and summary.evaluation == "none" and run_evaluations(run_dir, engine=engine):
            summary.evaluation = "done (r2ta eval)"
        out.append(summary)
    names = [s.name for s in out]
    for s in out:
        if names.count(s.name) > 1:
            s.name = str(s.run_dir)
    return out


# -- curves ---------------------------------------------------------------------------


def _curve(progress: jobs.RunProgress, key: str, title: str, stages: tuple[str, ...]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for stage in stages:
        points = progress.series(key, stage)
        if points:
            fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=stage.upper())
    fig.update_layout(title=title, xaxis_title="step", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h"})
    return fig


def loss_figure(progress: jobs.RunProgress):
    """Training loss per logged step, SFT and DPO as two lines.

    A decision-weighted SFT run (``decision_token_weight``) also logs the loss on the answer's decision
    tokens alone and the unweighted loss: both are drawn dotted, since the weighted loss can fall while
    the decisions stay unlearnt."""
    fig = _curve(progress, "loss", "Loss", ("sft", "dpo"))
    for key, name in (("decision_nll", "SFT decision tokens"), ("nll", "SFT unweighted")):
        points = progress.series(key, "sft")
        if points:
            fig.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines", name=name,
                            line={"dash": "dot"})
    return fig


def margin_figure(progress: jobs.RunProgress):
    """DPO reward margin (chosen minus rejected reward) per logged step; before DPO's first step (or in a run that
    stopped before DPO), an empty chart saying so instead of bare axes."""
    fig = _curve(progress, "reward_margin", "DPO reward margin", ("dpo",))
    if not fig.data:
        note = ("DPO did not run: the run stopped before it" if progress.finished and "dpo" not in
                (progress.status.get("completed_stages") or []) and progress.stage != "dpo"
                else "DPO logged no margin" if progress.finished
                else "No DPO step yet: DPO starts when SFT ends" if progress.stage != "dpo"
                else "DPO's first step is going")
        fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                           font={"size": 14, "color": "#808495"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def sync_to_db(run_dir: Path, *, engine: Engine) -> None:
    """Mirror the run folder into the training_run table (idempotent; the folder is the truth while it runs)."""
    from sqlmodel import Session

    with Session(engine) as session:
        jobs.sync_run_to_db(run_dir, session=session)


CHECKER_LABEL = "the checker alone"
COMPARISON_COLUMNS = ("model", "variants", "micro F1", "macro F1", "hallucination", "grounding", "format validity",
                      "validity, unforced")


def _evaluations(run_dir: Path) -> dict[str, int]:
    from r2ta.eval_jobs import read_eval_status

    return {stage: eid for stage, eid in (read_eval_status(run_dir).get("evaluations") or {}).items()
            if isinstance(eid, int)}


def previous_run(run_dir: Path, *, engine: Engine) -> Path | None:
    """The newest succeeded run created before ``run_dir`` whose SFT+DPO model was evaluated after it (the model
    the new one replaces), among the runs the Train page lists; None when there is none."""
    from r2ta.evaluation import FINAL
    from r2ta.timing import known_run_dirs

    def created(folder: Path) -> str:
        try:
            return str(jobs.read_status(folder).get("created_at") or "")
        except R2taError:
            return ""

    mine, found = created(run_dir), []
    for other in known_run_dirs(engine=engine):
        if other.resolve() == Path(run_dir).resolve() or not mine:
            continue
        when = created(other)
        if when and when < mine and jobs.read_progress(other).state == jobs.SUCCEEDED and FINAL in _evaluations(other):
            found.append((when, other))
    return max(found)[1] if found else None


def run_comparison(run_dir: Path, *, engine: Engine) -> list[dict]:
    """The evaluation after a run, side by side: the model it started from, SFT and SFT+DPO, the SFT+DPO model
    of the run before it (:func:`previous_run`, when it was scored on some of the same variants), and the structural
    checker alone (where the evaluation stored it), on the test variants all of them answered
    (:func:`r2ta.evaluation.rescore`), with each model's id. [] before any evaluation."""
    from r2ta.eval_jobs import BASE, read_eval_status
    from r2ta.evaluation import FINAL, SFT, rescore, summary_rows

    done = _evaluations(run_dir)
    labels = {BASE: "base (before training)", SFT: "SFT", FINAL: "SFT+DPO"}
    ordered = {labels[stage]: done[stage] for stage in (BASE, SFT, FINAL) if stage in done}
    if not ordered:
        return []
    reports, common = {}, []
    if (before := previous_run(run_dir, engine=engine)) is not None:
        previous = {"previous SFT+DPO": _evaluations(before)[FINAL]}  # its run: the model id column
        base = {k: v for k, v in ordered.items() if k == labels[BASE]}
        with_before = {**base, **previous, **ordered}  # base, the model this run replaces, then this run's
        reports, common = rescore(with_before, common_only=True, engine=engine)
        ordered = with_before if common else ordered
    if not common:  # no run before, or one scored on other variants: the run against its base alone
        reports, common = rescore(ordered, common_only=True, engine=engine)
    checker = read_eval_status(run_dir).get("checker_evaluation")
    if isinstance(checker, int):  # beside them where it answered the same variants (it did: the same first N)
        with_checker = {**ordered, CHECKER_LABEL: checker}
        scored, same = rescore(with_checker, common_only=True, engine=engine)
        if same and same == common:
            ordered, reports = with_checker, scored
    ids = model_ids_of(ordered, engine=engine)
    return [{**{k: row.get(k) for k in COMPARISON_COLUMNS}, "model id": ids.get(row["model"], "")}
            for row in summary_rows(reports)]


def model_ids_of(evaluations: dict[str, int], *, engine: Engine) -> dict[str, str]:
    """label -> the model id each evaluation scored."""
    from sqlmodel import Session

    from db.models import EvaluationRow

    with Session(engine) as session:
        rows = {label: session.get(EvaluationRow, eid) for label, eid in evaluations.items()}
    return {label: row.model_id for label, row in rows.items() if row is not None}


def base_answers_missing(recipe: str | Path, precision: str, limit: int, *, engine: Engine,
                         max_new_tokens: int | None = None) -> int:
    """Test variants (of the first ``limit``; 0 = all) the model ``recipe`` starts from will answer in the dtype a run
    at ``precision`` on this machine is evaluated in, under ``max_new_tokens`` (None: the default): those it has no
    answer to, and those whose stored answer another budget made. The evaluation after the run generates them too."""
    from r2ta.eval_jobs import base_answers_missing as missing
    from r2ta.evaluation import generation_dtype
    from training.hardware import detect_hardware

    try:
        base = str((_recipe_data(recipe).get("model") or {}).get("model_name_or_path") or "")
    except R2taError:  # a recipe gone or unreadable: its own error shows where it is used
        return 0
    return missing(base, generation_dtype(precision, detect_hardware().kind), limit or None, engine=engine,
                   max_new_tokens=max_new_tokens)


def base_generation_dtype(recipe: str | Path = jobs.DEFAULT_RECIPE) -> str | None:
    """The dtype the evaluation after a run of ``recipe`` here generates the base model's answers in (bfloat16 on a
    CPU that trains in bf16): evaluating the base in it by itself stores answers that run will reuse. Imports torch."""
    from r2ta.evaluation import generation_dtype
    from training.hardware import detect_hardware, resolve_precision

    hardware = detect_hardware()
    requested = str((_recipe_data(recipe).get("run") or {}).get("precision") or "auto")
    return generation_dtype(resolve_precision(requested, hardware).name, hardware.kind)


def evaluable_models(*, engine: Engine | None = None) -> dict[str, str]:
    """What the Evaluate page offers to evaluate, name (as ``r2ta eval --model``) -> label: the embedded base model,
    the checker, then the SFT and SFT+DPO models of every succeeded run, newest first."""
    from r2ta.evaluation import CHECKER_MODEL_ID, FINAL, SFT

    models = {"embedded": "the base model (the embedded SmolLM2-135M-Instruct)",
              CHECKER_MODEL_ID: "the structural checker (reads the diagram only)"}
    for run in list_run_summaries(engine=engine):
        if run.state == jobs.SUCCEEDED:
            models[f"{run.run_dir}:{SFT}"] = f"run {run.name}: SFT"
            models[f"{run.run_dir}:{FINAL}"] = f"run {run.name}: SFT+DPO"
    return models
