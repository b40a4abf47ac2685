"""Evaluate any model on a split, the structural checker as a baseline, and compare evaluations.

* :func:`resolve_model` turns what a user names (``checker``, a named backend,
  a model folder, a training run folder, ``RUN_DIR:sft``) into a
  :class:`ModelSpec`: the model id its traces and evaluation are stored under
  and how to build its backend. A run's SFT stage is its LoRA adapter
  (``RUN/sft``); its final SFT+DPO model is ``RUN/merged`` when the runner saved
  merged weights, else the adapter ``RUN/dpo``. :class:`r2ta.backends.LocalBackend`
  loads either by path (transformers loads an adapter folder onto the base
  model its ``adapter_config.json`` names).
* :func:`evaluate` generates the missing traces with :func:`r2ta.pipeline.reason`
  (resumable) and stores the evaluation with :func:`r2ta.pipeline.evaluate_model`,
  linked to the training run when there is one.
* :func:`evaluate_checker`: the structural checker alone as a model called
  ``checker``. Its findings become a trace (one step per finding, the findings
  as the verdict) stored like any model's, so it is scored, stored and shown
  by the same code. It reads no requirements, so it can only find the
  structural categories; that is the baseline a trained model must beat.
* Comparison (the Evaluate page, ``r2ta eval --compare``, the loop's table):
  :func:`rescore` recomputes evaluations on the variants they have in common
  (from their stored per-variant results), :func:`summary_rows`,
  :func:`category_rows`, :func:`differing_variants`, and plotly figures.

This module must not import streamlit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.engine import get_engine, init_db
from db.models import EvaluationResultRow, EvaluationRow, TraceRow, VariantRow
from db.queries import ModelMetrics, create_trace, get_training_run_by_dir, metrics_by_model
from r2ta.checker import check
from r2ta.eerd import CATEGORIES, Mistake, parse_diagram
from r2ta.errors import R2taError
from r2ta.metrics import EvalItem, EvaluationReport, evaluate as score_items
from r2ta.prompting import make_step, parse_output, render_trace

if TYPE_CHECKING:
    from r2ta.backends import GRAMMAR_SUFFIX, Backend

CHECKER_MODEL_ID = "checker"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # a model hub id: org/name
SFT, FINAL = "sft", "sft+dpo"
Progress = Callable[[int, int], None]


class EvaluationError(R2taError):
    """A model to evaluate cannot be found or loaded, or evaluations cannot be compared."""


def _engine(engine: Engine | None) -> Engine:
    if engine is None:
        engine = get_engine()
        init_db(engine)
    return engine


# -- which model ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate. ``kind``: checker, backend (a named config), path (a model folder), run (a training run stage)."""

    kind: str
    model_id: str
    backend_name: str | None = None
    model_path: Path | None = None
    run_dir: Path | None = None
    stage: str | None = None  # "sft" or "sft+dpo" for a run


def is_run_dir(path: Path) -> bool:
    return (path / "request.json").is_file() and (path / "status.json").is_file()


def run_model_id(run_dir: str | Path, stage: str) -> str:
    """The model id a run's stage is stored under: ``<run folder name>:sft`` or ``<run folder name>:sft+dpo``."""
    return f"{Path(run_dir).name}:{stage}"


def generation_dtype(precision: str | None, hardware_kind: str | None) -> str | None:
    """The dtype the models of a run trained at ``precision`` on ``hardware_kind`` generate in: ``bfloat16`` for
    bf16 on a CPU (a local model otherwise generates in float32 there), else None: the backend's default, which on
    a GPU is the training precision's already."""
    return "bfloat16" if precision == "bf16" and hardware_kind == "cpu" else None


def run_generation_dtype(run_dir: str | Path) -> str | None:
    """The dtype a run's models generate in unless told otherwise (:func:`generation_dtype` of its status); an
    unreadable status gives None."""
    from r2ta import jobs

    try:
        status = jobs.read_status(Path(run_dir))
    except R2taError:
        return None
    hardware = status.get("hardware")
    return generation_dtype(status.get("precision"), hardware.get("kind") if isinstance(hardware, dict) else None)


def hub_snapshot(name: str) -> Path | None:
    """The folder this machine's Hugging Face cache holds model hub id ``name`` in (``Qwen/Qwen2.5-0.5B-Instruct``,
    downloaded when a recipe trained from it here), or None: not an ``org/name`` id, a local path, or not cached.
    Looks in the cache only (no network). Torch-free."""
    if not HUB_ID.fullmatch(name) or Path(name).expanduser().exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - an unreadable or odd cache is "not cached"
        return None
    return Path(found).parent if isinstance(found, str) else None


def base_model_name(name_or_path: str) -> str | None:
    """What :func:`evaluate` takes for a recipe's ``model_name_or_path``: ``embedded`` for the embedded model, a
    model hub id this machine's Hugging Face cache holds (:func:`hub_snapshot`), else its local folder; None when
    it is none of these (a hub id never downloaded here: this machine may have no hub to load it from)."""
    from r2ta.config import models_dir
    from r2ta.embedded_model import EMBEDDED_MODEL_ID

    kind, _, name = name_or_path.partition(":")
    if kind == "embedded" and name == EMBEDDED_MODEL_ID:
        return "embedded"
    if hub_snapshot(name_or_path) is not None:
        return name_or_path
    folder = models_dir() / name if kind in ("embedded", "builtin") and name else Path(name_or_path).expanduser()
    return str(folder.resolve()) if name_or_path and (folder / "config.json").is_file() else None


def base_model_id(name_or_path: str, dtype: str | None = None) -> str | None:
    """The model id :func:`evaluate` stores that model's answers under (``dtype``: one that marks the id, such as
    ``bfloat16`` on a CPU); None where :func:`base_model_name` is None. Torch-free."""
    from r2ta.backends import DTYPE_MARK
    from r2ta.embedded_model import EMBEDDED_MODEL_ID

    name = base_model_name(name_or_path)
    if name is None:
        return None
    model_id = EMBEDDED_MODEL_ID if name == "embedded" else f"{Path(name).parent.name}/{Path(name).name}"
    return model_id + (DTYPE_MARK + dtype if dtype else "")


def run_base_model(run_dir: str | Path) -> str | None:
    """:func:`base_model_name` of the model a run started from (its status's ``base_model``)."""
    from r2ta import jobs

    try:
        base = jobs.read_status(Path(run_dir)).get("base_model")
    except R2taError:
        return None
    return base_model_name(base) if isinstance(base, str) else None


def run_stage_path(run_dir: str | Path, stage: str) -> Path:
    """The folder of a finished run's stage: the SFT adapter, or the merged (else adapter) SFT+DPO model."""
    run_dir = Path(run_dir)
    if stage == SFT:
        candidates = [run_dir / "sft"]
    elif stage == FINAL:
        candidates = [run_dir / "merged", run_dir / "dpo"]
    else:
        raise EvaluationError(f"a run has stages {SFT!r} and {FINAL!r}, not {stage!r}")
    for path in candidates:
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return path
    raise EvaluationError(
        f"{run_dir} has no {stage} model (looked for {', '.join(str(c) for c in candidates)}); "
        "evaluate a run after it succeeded (r2ta train --follow RUN_DIR)"
    )


def resolve_model(name: str) -> ModelSpec:
    """``checker``; ``RUN_DIR`` (its SFT+DPO model) or ``RUN_DIR:sft``/``RUN_DIR:sft+dpo``; a model folder; a named backend."""
    if name == CHECKER_MODEL_ID:
        return ModelSpec("checker", CHECKER_MODEL_ID)
    text, stage = name, FINAL
    for suffix in (SFT, FINAL, "dpo"):
        if name.endswith(":" + suffix) and is_run_dir(Path(name[: -len(suffix) - 1]).expanduser()):
            text, stage = name[: -len(suffix) - 1], FINAL if suffix == "dpo" else suffix
    path = Path(text).expanduser()
    if is_run_dir(path):
        path = path.resolve()
        run_stage_path(path, stage)  # fail now, not after loading
        return ModelSpec("run", run_model_id(path, stage), run_dir=path, stage=stage, model_path=run_stage_path(path, stage))
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            path = path.resolve()  # "parent/name": a bare "merged" or "sft" would name many models
            return ModelSpec("path", f"{path.parent.name}/{path.name}", model_path=path)
        raise EvaluationError(f"{path} is neither a training run folder nor a model folder (no config.json)")
    snapshot = hub_snapshot(name)
    if snapshot is not None:  # a model hub id downloaded here: stored under that id, loaded from the cache
        return ModelSpec("path", name, model_path=snapshot)
    from r2ta.backends import load_configs

    if name in load_configs():
        return ModelSpec("backend", "", backend_name=name)
    raise EvaluationError(
        f"cannot evaluate {name!r}: not 'checker', a training run folder, a model folder, a model hub id in this "
        f"machine's Hugging Face cache or a named backend (known backends: {', '.join(sorted(load_configs()))})"
    )


def make_backend_for(spec: ModelSpec, backend: str | None = None, **overrides):
    """The backend that generates for ``spec`` (not for the checker).

    ``backend`` names a config whose settings (kind, device, batch size, server) are
    used with this model: a run or model folder on a local config, or a model name
    served by an OpenAI-compatible one.
    """
    from r2ta.backends import get_backend, load_configs

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if spec.kind == "backend":
        return get_backend(spec.backend_name, **overrides)
    if spec.kind in ("run", "path"):
        name = backend or "embedded"
        configs = load_configs()
        if name in configs and configs[name].kind != "local":
            raise EvaluationError(f"{spec.model_id} is a local model folder; backend {name!r} is a server, use a local one")
        return get_backend(name, model=str(spec.model_path), model_id=spec.model_id, **overrides)
    if spec.kind == "served":
        return get_backend(backend, model=spec.model_id, **overrides)
    raise EvaluationError(f"the {spec.kind} model {spec.model_id!r} needs no backend")


def spec_with_backend(model: str, backend: str | None) -> ModelSpec:
    """:func:`resolve_model`, where a name that is no run, folder or checker is a model served by ``backend``."""
    if backend is None:
        return resolve_model(model)
    if model == backend:
        return ModelSpec("backend", "", backend_name=backend)
    try:
        spec = resolve_model(model)
    except EvaluationError:
        spec = None
    if spec is None or spec.kind == "backend":
        return ModelSpec("served", model, backend_name=backend)
    return spec


def answers_planned(model: str, *, split: str = "test", limit: int | None = None, dtype: str | None = None,
                    max_new_tokens: int | None = None, tokens_per_construct: int = 0,
                    engine: Engine | None = None) -> tuple[str, int, int] | None:
    """What :func:`evaluate` of ``model`` with these settings would do, worked out before it starts and without
    loading the model: (the model id it stores answers under, the variants it scores of the first ``limit``, the
    answers it writes — those missing and those another budget made, :func:`r2ta.pipeline.answers_to_write`).
    None for the checker (it writes no answers). An unknown model raises :class:`EvaluationError`, as
    :func:`evaluate` would."""
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, answers_to_write
    from r2ta.store import count_first_variants

    spec = resolve_model(model)
    if spec.kind == "checker":
        return None
    if dtype is None and spec.kind == "run":
        dtype = run_generation_dtype(spec.run_dir)  # as evaluate: a run's models in the dtype it trained in
    gen = make_backend_for(spec, dtype=dtype)  # a local model loads on its first generation: not here
    try:
        model_id, can_continue = gen.id, gen.can_continue
    finally:
        gen.close()
    engine = _engine(engine)
    with Session(engine) as session:
        variants = count_first_variants(session=session, split=split, limit=limit)
    to_write = answers_to_write(model_id, split=split, limit=limit, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                tokens_per_construct=tokens_per_construct, can_continue=can_continue, engine=engine)
    return model_id, variants, to_write


# -- the checker as a model -----------------------------------------------------------


def checker_trace(diagram) -> str:
    """The checker's findings as a trace: one step per finding, the findings as the verdict."""
    findings = check(diagram)
    steps = [make_step(i, list(m.elements), m.explanation, m.category) for i, m in enumerate(findings, 1)]
    return render_trace(steps, findings)


def _first_variants(session: Session, split: str, limit: int | None, spread: bool = False) -> list[VariantRow]:
    from r2ta.store import first_variant_ids

    first = first_variant_ids(split, limit, spread=spread).subquery()
    stmt = select(VariantRow).where(col(VariantRow.id).in_(select(first.c.id))).order_by(VariantRow.id)
    return list(session.exec(stmt))


def store_checker_traces(*, split: str, limit: int | None = None, engine: Engine | None = None,
                         spread: bool = False) -> int:
    """Store the checker's trace for each of the first ``limit`` variants of ``split`` that has none; returns how many.

    ``spread``: the first ``limit`` round-robin across base schemas (:func:`r2ta.store.first_variant_ids`).
    """
    engine = _engine(engine)
    with Session(engine) as session:
        variants = _first_variants(session, split, limit, spread)
        done = set(session.exec(select(TraceRow.variant_id).where(TraceRow.model_id == CHECKER_MODEL_ID)))
        stored = 0
        for v in variants:
            if v.id in done:
                continue
            diagram = parse_diagram(v.diagram)
            t0 = time.perf_counter()
            text = checker_trace(diagram)
            parsed = parse_output(text, diagram)
            create_trace(
                session=session, variant_id=v.id, model_id=CHECKER_MODEL_ID, model_version="r2ta.checker",
                prompt="(the structural checker reads the diagram only)", raw_output=text,
                steps=[s.model_dump() for s in parsed.steps] or None, verdict=[m.model_dump() for m in parsed.verdict],
                parse_errors=list(parsed.errors), latency_s=time.perf_counter() - t0,
            )
            stored += 1
    return stored


# -- evaluate -------------------------------------------------------------------------


@dataclass
class EvalOutcome:
    """What :func:`evaluate` did: the model id, its scores, the stored evaluation, and what generation cost."""

    model_id: str
    report: EvaluationReport
    evaluation_id: int | None
    generated: int = 0
    generation_s: float = 0.0  # the answers' generation, the model's load left out
    completion_tokens: int = 0
    run_id: int | None = None
    notes: list[str] = field(default_factory=list)
    load_s: float = 0.0  # loading the model, when it answered any
    budget: str = ""  # what the answers were asked under (budget_text); "" for the checker


def _link_run(engine: Engine, spec: ModelSpec, evaluation_id: int | None) -> int | None:
    """Point the evaluation at the run's training_run row of that stage (syncing the run into the db first)."""
    if spec.kind != "run" or evaluation_id is None:
        return None
    from r2ta.jobs import sync_run_to_db

    with Session(engine) as session:
        ids = sync_run_to_db(spec.run_dir, session=session)
        run_id = ids.get("sft" if spec.stage == SFT else "dpo")
        row = session.get(EvaluationRow, evaluation_id)
        if row is not None and run_id is not None:
            row.run_id = run_id
            session.add(row)
            session.commit()
        return run_id


def evaluate(
    model: "str | ModelSpec | Backend",
    *,
    split: str = "test",
    limit: int | None = None,
    backend: str | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
    verdict_tokens: int | None = None,
    spread: bool = False,
    verdict_grammar: bool = False,
    reuse_answers: bool = False,
    dtype: str | None = None,
    tokens_per_construct: int = 0,
) -> EvalOutcome:
    """Generate the missing traces of ``model`` on the first ``limit`` variants of ``split``, score and store them.

    ``backend`` overrides the backend of a named model (``--backend vllm`` with ``--model``
    a model served there is the same as ``--model vllm``). The evaluation scores the
    model's newest trace of every variant of the split it has one for. ``verdict_tokens``:
    see :func:`r2ta.pipeline.reason` (None = its default); ``spread``: the first ``limit``
    round-robin across base schemas rather than by id; ``verdict_grammar``: every verdict — asked
    for or the model's own — is decoded under :mod:`r2ta.grammar` (a local model, or a server continuing answers; its traces and evaluation are
    stored as ``<model id>+grammar``, apart from the model's plain ones, and not linked to a run);
    ``reuse_answers`` (with ``verdict_grammar``): take the answers from the model's stored plain
    traces and decode only their verdicts again (:func:`r2ta.pipeline.reason`) — minutes
    instead of a whole generation, the same result: a stored answer that could not have come from
    this budget (cut at another one, or longer than it) is generated again. ``dtype``: a local
    model's weights (``bfloat16`` on a GPU, or on a CPU that computes it natively, is faster
    than ``float32`` and decodes slightly different tokens); a dtype other than the machine's default
    for the model stores its traces and evaluation as ``<model id>@<dtype>`` (``@bfloat16`` on a CPU),
    apart from the default's. A run's models default to the dtype the run trained in
    (:func:`run_generation_dtype`: ``@bfloat16`` after bf16 on a CPU), and only an evaluation in that
    dtype is linked to the run. ``tokens_per_construct``: each answer's budget grows by this many tokens per
    construct of its diagram (:func:`r2ta.pipeline.answer_budget`; ``max_new_tokens`` is then the budget of a
    diagram without any). A variant the model answered before under another budget is answered again
    (``rebudget`` of :func:`r2ta.pipeline.reason`): the scores are always those of the budget asked for.
    """
    if reuse_answers and not verdict_grammar:
        raise EvaluationError("reusing a model's answers only makes sense with the verdict grammar (--verdict-grammar)")
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, DEFAULT_VERDICT_TOKENS, evaluate_model, reason

    engine = _engine(engine)
    from r2ta.backends import GRAMMAR_SUFFIX, Backend

    given = model if isinstance(model, Backend) else None
    if given is not None:
        spec = ModelSpec("backend", given.id)
    else:
        spec = model if isinstance(model, ModelSpec) else spec_with_backend(model, backend)
    outcome_notes: list[str] = []
    dtype_suffix = ""
    # A run's models generate in the dtype the run trained in unless told otherwise (bfloat16 after bf16 on a CPU).
    run_dtype = run_generation_dtype(spec.run_dir) if spec.kind == "run" else None
    if dtype is None and given is None:
        dtype = run_dtype
    generated = tokens = 0
    seconds = load_s = 0.0
    settings = None  # what a model was asked under; the checker has no budget
    from r2ta.jobs import now_iso

    started = now_iso()
    if spec.kind == "checker" and verdict_grammar:
        raise EvaluationError("the checker writes its verdicts itself; --verdict-grammar is for a model")
    if spec.kind == "checker":
        t0 = time.perf_counter()
        generated = store_checker_traces(split=split, limit=limit, engine=engine, spread=spread)
        seconds = time.perf_counter() - t0
        model_id = CHECKER_MODEL_ID
    else:
        if dtype is not None and (given is not None or spec.kind == "served"):
            raise EvaluationError("--dtype is the setting of a model loaded here; a server or a given backend has its own")
        gen = given or make_backend_for(spec, backend, batch_size=batch_size, verdict_grammar=verdict_grammar or None,
                                        dtype=dtype)
        model_id = gen.id
        dtype_suffix = getattr(gen, "dtype_suffix", "")
        verdicts = DEFAULT_VERDICT_TOKENS if verdict_tokens is None else verdict_tokens
        try:
            rep = reason(
                gen, split=split, limit=limit, batch_size=batch_size,
                max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, engine=engine, progress=progress, spread=spread,
                reuse_answers=gen.id.removesuffix(GRAMMAR_SUFFIX) if reuse_answers else None,
                tokens_per_construct=tokens_per_construct, rebudget=True, verdict_tokens=verdicts,
            )
            settings = {"max_new_tokens": max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                        "tokens_per_construct": tokens_per_construct,
                        "verdict_tokens": verdicts if gen.can_continue else None,  # None: never asked for
                        "other_budget": rep.other_budget}
            if rep.generated:
                settings["generated"] = answers_cost(gen, rep, started)
        finally:
            if given is None:  # a backend passed in belongs to the caller
                gen.close()
        generated, tokens, seconds, load_s = rep.generated, rep.completion_tokens, rep.seconds, rep.load_s
        outcome_notes.append(str(rep))
    report, evaluation_id = evaluate_model(model_id, split=split, engine=engine, store=True, settings=settings)
    if report.n == 0:
        raise EvaluationError(f"{model_id} has no traces on the {split} split to score")
    # A run's stage is linked to its evaluation in the default decoding and the run's own dtype only: under the
    # grammar or in another dtype (model ids "+grammar", "@float32") the evaluation stands beside it under its id.
    own_dtype = dtype == run_dtype if run_dtype else not dtype_suffix
    run_id = _link_run(engine, spec, evaluation_id) if spec.kind == "run" and own_dtype and not verdict_grammar else None
    return EvalOutcome(model_id, report, evaluation_id, generated, seconds, tokens, run_id, outcome_notes, load_s=load_s,
                       budget=budget_text(settings))


def answers_cost(gen, rep, started: str) -> dict:
    """What the answers an evaluation generated cost, stored with it (its settings' ``generated``) wherever it ran —
    a job of the Evaluate page, a run's evaluation, ``r2ta eval``, ``r2ta loop`` — so that the next evaluation of the
    same model is timed by it (:func:`r2ta.model_jobs.plan_model_evaluation`): the answers, their seconds, the model's
    load; the hardware that generated them (``hardware``: :meth:`training.hardware.Hardware.describe`, only for a
    model loaded here: a served one ran on its server's), so that a database shared by several machines times each
    by its own; whether a training run went meanwhile (``beside_run``: they shared the cores)."""
    from r2ta.backends import LocalBackend
    from r2ta.jobs import training_since

    cost = {"variants": rep.generated, "seconds": round(rep.seconds, 2), "load_seconds": round(rep.load_s, 2),
            "beside_run": training_since(started) is not None}
    if isinstance(gen, LocalBackend):
        from training.hardware import detect_hardware

        cost["hardware"] = detect_hardware().describe()
    return cost


# -- compare --------------------------------------------------------------------------


def list_evaluations(*, split: str = "test", engine: Engine | None = None, every: bool = False) -> list[ModelMetrics]:
    """Each model's latest evaluation on ``split``; ``every``: its earlier ones too (each model's newest first)."""
    with Session(_engine(engine)) as session:
        return metrics_by_model(session=session, split=split, every=every)


def evaluation_labels(models: Iterable[ModelMetrics]) -> dict[str, ModelMetrics]:
    """A name for each evaluation, to choose and compare them by: a model's latest is its model id, an earlier one
    "MODEL ID · evaluation N", with the budget it ran under where it differs from the latest's
    ("… · evaluation 3, 384 tokens")."""
    models = list(models)
    newest = {m.model_id: max(models, key=lambda o: (o.model_id == m.model_id, o.evaluation_id)) for m in models}
    labels = {}
    for m in models:
        latest = newest[m.model_id]
        if m.evaluation_id == latest.evaluation_id:
            labels[m.model_id] = m
            continue
        budget = budget_text(m.settings)
        differs = budget and budget != budget_text(latest.settings)
        labels[f"{m.model_id} · evaluation {m.evaluation_id}" + (f", {budget}" if differs else "")] = m
    return labels


def budget_rows(models: dict[str, ModelMetrics]) -> dict[str, dict]:
    """label -> {"answer budget": ...}, the extra row of :func:`format_side_by_side` (the checker's is "-")."""
    return {label: {"answer budget": budget_text(m.settings) or "-"} for label, m in models.items()}


def budget_text(settings: dict | None) -> str:
    """The answer budget an evaluation ran under, short: "384 tokens", "320 + 20 a construct", with ", verdict N"
    where its verdicts asked for had another budget than the default; "" when not recorded (the checker, or an
    evaluation stored before budgets were)."""
    from r2ta.prompting import DEFAULT_VERDICT_TOKENS

    if not settings or not settings.get("max_new_tokens"):
        return ""
    per = settings.get("tokens_per_construct") or 0
    text = f"{settings['max_new_tokens']} + {per} a construct" if per else f"{settings['max_new_tokens']} tokens"
    verdicts = settings.get("verdict_tokens")
    return text + (f", verdict {verdicts}" if verdicts is not None and verdicts != DEFAULT_VERDICT_TOKENS else "")


@dataclass
class StoredResult:
    """One variant's stored outcome in an evaluation, with the trace text it came from."""

    variant_id: str
    predicted: list[Mistake]
    valid: bool
    references: int
    grounded: int
    trace_id: int | None
    raw_output: str
    forced: bool = False  # the trace's VERDICT: line was appended (see r2ta.prompting.verdict_prefix)


def _load_results(session: Session, evaluation_id: int) -> dict[str, StoredResult]:
    stmt = (
        select(EvaluationResultRow, TraceRow)
        .join(TraceRow, TraceRow.id == EvaluationResultRow.trace_id, isouter=True)
        .where(EvaluationResultRow.evaluation_id == evaluation_id)
    )
    out = {}
    for r, trace in session.exec(stmt):
        m = r.metrics or {}
        out[r.variant_id] = StoredResult(
            variant_id=r.variant_id,
            predicted=[Mistake.model_validate(p) for p in r.predicted],
            valid=bool(m.get("valid", False)),
            references=int(m.get("references", 0)),
            grounded=int(m.get("grounded", 0)),
            trace_id=r.trace_id,
            raw_output=trace.raw_output if trace is not None else "",
            forced=bool(m.get("forced", False)),
        )
    return out


def _truths(session: Session, variant_ids: Iterable[str]) -> dict[str, list[Mistake]]:
    ids = list(variant_ids)
    rows = session.exec(select(VariantRow).where(VariantRow.id.in_(ids))) if ids else []  # type: ignore[union-attr]
    return {v.id: [Mistake.model_validate(m) for m in v.mistakes] for v in rows}


def rescore(
    evaluation_ids: dict[str, int], *, common_only: bool = True, engine: Engine | None = None,
    only: Iterable[str] | None = None,
) -> tuple[dict[str, EvaluationReport], list[str]]:
    """Scores of several evaluations (label -> id), recomputed on the variants they all have (or each on its own).

    Returns (label -> report, the variant ids scored when ``common_only``). Comparing
    models on different variants would compare the variants, not the models. ``only``: score no
    variant outside these ids (``r2ta eval --compare --limit N``: the first N of the split).
    """
    keep = None if only is None else set(only)
    with Session(_engine(engine)) as session:
        results = {label: _load_results(session, eid) for label, eid in evaluation_ids.items()}
        if keep is not None:
            results = {label: {v: r for v, r in res.items() if v in keep} for label, res in results.items()}
        sets = [set(r) for r in results.values()]
        common = sorted(set.intersection(*sets)) if sets else []
        truths = _truths(session, set().union(*sets) if sets else [])
    reports = {}
    for label, res in results.items():
        ids = common if common_only else sorted(res)
        items = [
            EvalItem(v, res[v].predicted, truths.get(v, []), res[v].valid, res[v].references, res[v].grounded,
                     forced=res[v].forced)
            for v in ids
        ]
        reports[label] = score_items(items)
    return reports, common


SUMMARY_COLUMNS = (
    ("n", "variants"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("micro_precision", "micro P"),
    ("micro_recall", "micro R"), ("hallucination_rate", "hallucination"), ("grounding_rate", "grounding"),
    ("format_validity", "format validity"), ("unforced_validity", "validity, unforced"),
    ("verdicts_forced", "verdicts asked for"), ("exact_match", "exact match"),
)


def rate(report: EvaluationReport, key: str) -> float | int | None:
    """A summary figure; None for a rate with nothing to count (hallucination of a model that
    predicted nothing, grounding of one that cited nothing) — 0.000 there would read as a virtue."""
    if (key == "hallucination_rate" and not report.predicted) or (key == "grounding_rate" and not report.references):
        return None
    return getattr(report, key)


def summary_rows(reports: dict[str, EvaluationReport]) -> list[dict]:
    """One row per model: micro/macro F1, hallucination, grounding, format validity, exact match (None = n/a)."""
    return [{"model": label, **{title: rate(r, key) for key, title in SUMMARY_COLUMNS}} for label, r in reports.items()]


def category_rows(reports: dict[str, EvaluationReport]) -> list[dict]:
    """Long form: one row per (category, model) with precision, recall, F1 and the counts."""
    rows = []
    for c in CATEGORIES:
        for label, r in reports.items():
            s = r.per_category[c]
            rows.append({"category": c, "model": label, "precision": s.precision, "recall": s.recall, "f1": s.f1,
                         "tp": s.tp, "fp": s.fp, "fn": s.fn})
    return rows


def f1_table(reports: dict[str, EvaluationReport]) -> list[dict]:
    """Wide form: one row per category, one F1 column per model (for a text table)."""
    return [{"category": c, **{label: r.per_category[c].f1 for label, r in reports.items()}} for c in CATEGORIES]


def model_origins(models: Iterable[ModelMetrics], *, engine: Engine | None = None) -> list[dict]:
    """Where each evaluated model comes from: the answer budget its evaluation asked for (and how many answers it
    scored that another budget made); for a trained one its run, stage, recipe and the settings the run changed
    (``r2ta train --set``, the Train page); what it was scored on, and when."""
    from db.models import TrainingRunRow

    rows = []
    with Session(_engine(engine)) as session:
        for m in models:
            run = session.get(TrainingRunRow, m.run_id) if m.run_id is not None else None
            config = (run.config or {}) if run is not None else {}
            request = config.get("request") or {}
            rows.append({
                "model": m.model_id,
                "answer budget": budget_text(m.settings) or ("—" if m.model_id == CHECKER_MODEL_ID else "not recorded"),
                # text: "—" where there is no budget to differ from (the checker, an evaluation from before budgets)
                "answers under another budget": str((m.settings or {}).get("other_budget", "—")),
                "trained": _trained_words(run, request),
                "recipe": config.get("recipe") or "",
                "changed settings": ", ".join(request.get("overrides") or []),
                "run folder": config.get("run_dir") or "",
                "variants scored": m.n_variants,
                "evaluated": m.created_at.strftime("%Y-%m-%d %H:%M"),
            })
    return rows


def _trained_words(run, request: dict) -> str:
    """How a trained model came about, for the origins table: SFT, SFT then DPO, or DPO again from another run's
    SFT (``r2ta train --dpo-from``: its SFT stage is that run's, as saved)."""
    if run is None:
        return ""
    if run.parent_run_id is None:
        return "SFT"
    source = request.get("sft_from")
    return f"DPO again on the SFT of {Path(source).name}" if source else "SFT then DPO"


def variant_rows(evaluation_ids: dict[str, int], *, engine: Engine | None = None,
                 only: Iterable[str] | None = None) -> list[dict]:
    """One row per (evaluation, variant) of the evaluations (label -> id), in that order then by variant: its base
    schema, whether the verdict parses and whether R2tA asked for it, the mistakes predicted and the true ones
    ("category: element, element; ..."), and how many were right, wrong and missed — what a researcher takes to a
    spreadsheet (the Evaluate page's download, ``r2ta eval --compare ... --per-variant FILE``). ``only``: these
    variants alone (the ones the models have in common)."""
    from r2ta.metrics import match

    keep = None if only is None else set(only)
    with Session(_engine(engine)) as session:
        results = {label: _load_results(session, eid) for label, eid in evaluation_ids.items()}
        if keep is not None:
            results = {label: {v: r for v, r in res.items() if v in keep} for label, res in results.items()}
        ids = set().union(*(set(r) for r in results.values())) if results else set()
        truths = _truths(session, ids)
    schemas = variant_schemas(ids, engine=engine)
    rows = []
    for label, res in results.items():
        for v in sorted(res):
            r, truth = res[v], truths.get(v, [])
            right = len(match(r.predicted, truth))
            rows.append({"model": label, "variant": v, "base schema": schemas.get(v, ""),
                         "verdict parses": r.valid, "verdict asked for": r.forced,
                         "predicted": _mistakes_text(r.predicted), "truth": _mistakes_text(truth),
                         "right": right, "wrong": len(r.predicted) - right, "missed": len(truth) - right})
    return rows


def _mistakes_text(mistakes: list[Mistake]) -> str:
    return "; ".join(f"{m.category}: {', '.join(m.elements)}" for m in mistakes)


def rows_csv(rows: list[dict]) -> str:
    """Rows as CSV text. A cell a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a carriage
    return: an imported diagram's element may be named so) is kept as text with a leading apostrophe."""
    import csv
    import io

    def cell(value):
        return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def variant_schemas(variant_ids: Iterable[str], *, engine: Engine | None = None) -> dict[str, str]:
    """Variant id -> the id of the base schema it was mutated from."""
    ids = list(variant_ids)
    if not ids:
        return {}
    with Session(_engine(engine)) as session:
        rows = session.exec(select(VariantRow.id, VariantRow.base_id).where(col(VariantRow.id).in_(ids)))
        return dict(rows.all())


def schema_rows(reports: dict[str, EvaluationReport], schemas: dict[str, str]) -> list[dict]:
    """One row per (base schema, model): variants, format validity, micro precision/recall/F1, mistakes predicted.

    ``schemas`` maps variant id -> base schema (:func:`variant_schemas`). A model that learnt one
    schema's vocabulary shows here as valid answers on that schema only.
    """
    rows = []
    for schema in sorted(set(schemas.values())):
        for label, r in reports.items():
            mine = [v for v in r.per_variant if schemas.get(v.variant_id) == schema]
            if not mine:
                continue
            tp = sum(len(v.matched) for v in mine)
            predicted, truth = sum(v.predicted for v in mine), sum(v.truth for v in mine)
            p, rec = (tp / predicted if predicted else 0.0), (tp / truth if truth else 0.0)
            rows.append({"base schema": schema, "model": label, "variants": len(mine),
                         "format validity": sum(v.valid for v in mine) / len(mine), "micro P": p, "micro R": rec,
                         "micro F1": 2 * p * rec / (p + rec) if p + rec else 0.0, "predicted": predicted})
    return rows


def format_by_schema(rows: list[dict]) -> str:
    """:func:`schema_rows` as text: a line per schema, "validity / micro F1" per model."""
    labels = list(dict.fromkeys(r["model"] for r in rows))
    width = max([14, *(len(x) + 1 for x in labels)])
    names = {s: f"{s} ({max(r['variants'] for r in rows if r['base schema'] == s)})"
             for s in dict.fromkeys(r["base schema"] for r in rows)}
    first = max([26, *(len(x) + 1 for x in names.values())])
    lines = [f"{'base schema (n)':{first + 2}}" + "".join(f"{x:>{width}}" for x in labels)]
    for schema, name in names.items():
        cells = {r["model"]: r for r in rows if r["base schema"] == schema}
        text = [f"{cells[x]['format validity']:.2f} / {cells[x]['micro F1']:.2f}" if x in cells else "-" for x in labels]
        lines.append(f"  {name:{first}}" + "".join(f"{t:>{width}}" for t in text))
    return "\n".join(lines)


@dataclass
class VariantDiff:
    """A variant where two models' predictions differ, with both traces as text."""

    variant_id: str
    truth: list[Mistake]
    a: StoredResult
    b: StoredResult
    a_correct: int
    b_correct: int


def differing_variants(evaluation_a: int, evaluation_b: int, *, engine: Engine | None = None) -> list[VariantDiff]:
    """Variants both evaluations scored whose predicted mistakes differ (category + elements), most different first."""
    from r2ta.metrics import match

    with Session(_engine(engine)) as session:
        a, b = _load_results(session, evaluation_a), _load_results(session, evaluation_b)
        common = sorted(set(a) & set(b))
        truths = _truths(session, common)
    out = []
    for v in common:
        key_a = sorted((m.category, tuple(sorted(m.elements))) for m in a[v].predicted)
        key_b = sorted((m.category, tuple(sorted(m.elements))) for m in b[v].predicted)
        if key_a == key_b and a[v].valid == b[v].valid:
            continue
        truth = truths.get(v, [])
        out.append(VariantDiff(v, truth, a[v], b[v], len(match(a[v].predicted, truth)), len(match(b[v].predicted, truth))))
    out.sort(key=lambda d: (-abs(d.a_correct - d.b_correct), d.variant_id))
    return out


def _cell(report: EvaluationReport, key: str) -> str:
    """A table cell; a rate with nothing to count (no predictions, no references) is n/a, not 0."""
    value = rate(report, key)
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def format_side_by_side(reports: dict[str, EvaluationReport], extra: dict[str, dict] | None = None) -> str:
    """A plain-text side-by-side table: summary metrics, then per-category F1 (for the CLI and closing notes)."""
    labels = list(reports)
    width = max([12, *(len(x) for x in labels), *(len(str(v)) for e in (extra or {}).values() for v in e.values())]) + 1
    head = f"{'':28}" + "".join(f"{x:>{width}}" for x in labels)
    lines = [head]
    for key, title in SUMMARY_COLUMNS:
        cells = [_cell(reports[x], key) for x in labels]
        lines.append(f"{title:28}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append(f"{'predicted mistakes':28}" + "".join(f"{reports[x].predicted:>{width}d}" for x in labels))
    for key in sorted({k for e in (extra or {}).values() for k in e}):
        vals = [(extra or {}).get(x, {}).get(key, "") for x in labels]
        lines.append(f"{key:28}" + "".join(f"{str(v):>{width}}" for v in vals))
    lines.append("per-category F1")
    for c in CATEGORIES:
        lines.append(f"  {c:26}" + "".join(f"{reports[x].per_category[c].f1:>{width}.3f}" for x in labels))
    return "\n".join(lines)


# -- figures (plotly, no streamlit) -----------------------------------------------------


def category_figure(reports: dict[str, EvaluationReport], metric: str = "f1"):
    """Grouped bars: one group per category, one bar per model."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, r in reports.items():
        fig.add_bar(name=label, x=list(CATEGORIES), y=[getattr(r.per_category[c], metric) for c in CATEGORIES])
    # the legend above the plot: below it, it covered the rotated category names
    fig.update_layout(barmode="group", yaxis={"range": [0, 1], "title": metric}, height=460,
                      xaxis={"tickangle": -30, "automargin": True},
                      margin={"l": 10, "r": 10, "t": 60, "b": 10}, legend=_LEGEND_ON_TOP)
    return fig


def summary_figure(reports: dict[str, EvaluationReport]):
    """Grouped bars of the headline rates per model."""
    import plotly.graph_objects as go

    keys = [("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("hallucination_rate", "hallucination"),
            ("grounding_rate", "grounding"), ("format_validity", "format validity")]
    fig = go.Figure()
    for label, r in reports.items():
        fig.add_bar(name=label, x=[t for _, t in keys], y=[rate(r, k) for k, _ in keys])
    fig.update_layout(barmode="group", yaxis={"range": [0, 1]}, height=380,
                      margin={"l": 10, "r": 10, "t": 60, "b": 10}, legend=_LEGEND_ON_TOP)
    return fig


_LEGEND_ON_TOP = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}


def run_evaluations(run_dir: str | Path, *, split: str = "test", engine: Engine | None = None) -> dict[str, ModelMetrics]:
    """The latest evaluations of a run's stages (``sft``, ``sft+dpo``) that exist: in the dtype the run generates
    in by default (:func:`run_generation_dtype`; ``RUN:sft@bfloat16`` for a bf16 run on a CPU) where there is one,
    else in the backend's default."""
    from r2ta.backends import DTYPE_MARK

    own = run_generation_dtype(run_dir)
    found: dict[str, ModelMetrics] = {}
    for suffix in ("", *([DTYPE_MARK + own] if own else [])):  # the run's own dtype last: it wins
        ids = {run_model_id(run_dir, s) + suffix: s for s in (SFT, FINAL)}
        found.update({ids[m.model_id]: m for m in list_evaluations(split=split, engine=engine) if m.model_id in ids})
    return found


def training_run_id(run_dir: str | Path, *, engine: Engine | None = None) -> int | None:
    with Session(_engine(engine)) as session:
        row = get_training_run_by_dir(str(Path(run_dir)), session=session)
        return row.id if row else None
