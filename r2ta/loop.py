"""The whole measured R2tA loop in one command, each heavy stage a separate process that is timed.

    R2TA_DATA_DIR=/tmp/loop-data r2ta loop --train-limit 8 --test-limit 24 --max-new-tokens 256

Stages (each skipped or resumed when its work is already in the store):

0. ``setup``: only when the store has no variants (a fresh ``R2TA_DATA_DIR``):
   ``r2ta seed --no-model`` builds the dataset and loads it;
1. ``reason-train``: the base model writes traces for the first ``train_limit`` train variants
   (id order, or round-robin across base schemas with ``spread``);
2. ``refine``: the deterministic auditor proposes a refinement of each (``--auditor walk``: written as a
   walk of the diagram, one step per construct);
3. ``bulk-accept``: every pending proposal is accepted by the reviewer
   ``bulk:deterministic-auditor`` with a review reason that says so. These are
   **not** human reviews: the name and the reason keep that visible wherever
   reviews are listed, exported (``provenance.reviewer``) or counted;
4. ``export``: SFT rows and DPO pairs from the decisions in force;
5. ``train``: SFT then DPO (``r2ta train``, the Train page's job);
6. ``eval-*``: the checker (on the whole split: it costs nothing), SFT+DPO, SFT, then
   the base model on the first ``test_limit`` test variants — the trained models
   first: they are what a loop is run for, and the base model's test traces carry
   over from an earlier loop in the same store (its stage then only scores);
7. a side-by-side table on the variants every model was scored on, with each
   stage's wall time and peak resident memory, written to ``<loop dir>/table.txt``.

Wall time and peak RSS (``VmHWM``, followed while it runs) are measured per stage
process; the training stages report their own (the runner is a process of its own).

This module must not import streamlit.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlmodel import Session, select

from r2ta.config import PROJECT_ROOT, data_dir
from r2ta.errors import R2taError

BULK_REVIEWER = "bulk:deterministic-auditor"
BULK_REASON = (
    "bulk-accepted without human review: the deterministic auditor's proposal was accepted as-is "
    "by `r2ta loop` to measure the loop (not an educator's decision)"
)


class LoopError(R2taError):
    """A stage of the measured loop failed (its log says why)."""


@dataclass
class StageResult:
    name: str
    command: str
    wall_s: float
    peak_rss_mb: float | None
    status: int
    log: str
    note: str = ""


@dataclass
class LoopConfig:
    train_limit: int | None = None
    spread: bool = False  # the train limit round-robin across base schemas (r2ta reason --spread)
    test_limit: int | None = None
    max_new_tokens: int = 256
    # The base model's budget (reason-train, eval-base); None = max_new_tokens. The base model rarely
    # stops by itself, so its budget only costs time, while trained models need room for a whole trace.
    base_max_new_tokens: int | None = None
    # The base model's answers on the train split (reason-train) alone: budget and verdict budget; None = the base
    # model's. A walk or evidence target (--auditor) is written from the diagram and planted or omission negatives
    # from the target, so nothing trains on those answers' text: 16 tokens and no verdict cut the stage to the
    # prompts' prefill (run450c: 450 variants in 15 min on a 2-core EPYC).
    reason_max_new_tokens: int | None = None
    reason_verdict_tokens: int | None = None
    # the trained models' answers get this many more tokens per construct of the diagram (r2ta eval
    # --tokens-per-construct): 79 of the 150 test walk targets are longer than 384 tokens (scripts/walk_lengths.py)
    tokens_per_construct: int = 0
    batch_size: int = 8
    recipe: str = "smollm2-135m-cpu"
    max_steps: int | None = None
    threads: int | None = None
    out: Path | None = None
    base_backend: str = "embedded"
    negatives: str = "original"  # DPO rejected traces (r2ta export dpo --negatives)
    auditor: str = "deterministic"  # the refine stage's auditor (r2ta refine --auditor): deterministic, walk or evidence
    verdict_tokens: int | None = None  # r2ta reason/eval --verdict-tokens (None: their default)
    # each model is also scored with its verdicts decoded under r2ta.grammar, from the same
    # answers (r2ta eval --verdict-grammar --reuse-answers): extra columns <model>+grammar.
    verdict_grammar: bool = False
    # the generating stages' weights (r2ta reason/eval --dtype). None: the backend's for the base model's train
    # answers, and for the evaluations the dtype the run trained in (bfloat16 after bf16 on a CPU). With another
    # dtype than auto's on this machine (bfloat16 on a CPU) the models' ids carry "@bfloat16". Training's
    # precision is the recipe's (auto: bf16 on a CPU with AMX or AVX512-BF16; --set run.precision=fp32).
    dtype: str | None = None
    overrides: list[str] = field(default_factory=list)  # recipe settings, "sft.learning_rate=1e-4"
    stages: list[StageResult] = field(default_factory=list)


def write_recipe(recipe: str, overrides: list[str], out: Path) -> Path:
    """The recipe with ``section.key=value`` overrides applied (values read as YAML), written to ``out``; checked."""
    from r2ta.jobs import derive_recipe

    return derive_recipe(recipe, overrides, out, written_by="r2ta loop")


# -- bulk acceptance ---------------------------------------------------------------


def bulk_accept(*, model_id: str, split: str = "train", reviewer: str = BULK_REVIEWER, engine=None) -> int:
    """Accept every proposal of ``model_id``'s traces on ``split`` that nobody has reviewed yet; returns how many.

    Stored as ordinary reviews by ``reviewer`` with :data:`BULK_REASON` as their reason,
    so the data says plainly that no human looked at them, each with its DPO pair where the reviewed trace
    differs from the model's (what a decision on the Review page stores).
    """
    from db.engine import get_engine, init_db
    from db.models import ProposalRow, ReviewRow, TraceRow, VariantRow
    from db.queries import create_review

    if engine is None:
        engine = get_engine()
        init_db(engine)
    accepted = 0
    with Session(engine) as session:
        reviewed = select(ReviewRow.proposal_id)
        stmt = (
            select(ProposalRow)
            .join(TraceRow, TraceRow.id == ProposalRow.trace_id)
            .join(VariantRow, VariantRow.id == TraceRow.variant_id)
            .where(TraceRow.model_id == model_id, VariantRow.split == split, ProposalRow.id.not_in(reviewed))  # type: ignore[union-attr]
            .order_by(ProposalRow.id)
        )
        for proposal in list(session.exec(stmt)):
            create_review(session=session, proposal_id=proposal.id, reviewer=reviewer, decision="accept",
                          expected_version=proposal.version, reason=BULK_REASON)
            accepted += 1
    if accepted:  # each accept's DPO pair, as a decision on the Review page stores it (the export would anyway)
        from r2ta.pipeline import export_rows

        export_rows("dpo", split=split, engine=engine)
    return accepted


def variant_counts(engine=None) -> dict[str, int]:
    """How many variants each split has in the store (an empty data folder has none)."""
    from sqlalchemy import func

    from db.engine import get_engine, init_db
    from db.models import VariantRow

    if engine is None:
        engine = get_engine()
        init_db(engine)
    with Session(engine) as session:
        rows = session.exec(select(VariantRow.split, func.count()).group_by(VariantRow.split)).all()
    return {split: n for split, n in rows}


# -- stage processes -----------------------------------------------------------------


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="30")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_stage(name: str, argv: list[str], out: Path, threads: int | None, say=print) -> StageResult:
    """Run ``python -m r2ta ARGV`` as its own process, logging to ``out/<name>.log``; time it and take its peak RSS."""
    log = out / f"{name}.log"
    command = [sys.executable, "-m", "r2ta", *argv]
    shown = "r2ta " + " ".join(shlex.quote(a) for a in argv)
    say(f"[{_now()}] {name}: {shown}")
    t0 = time.perf_counter()
    with open(log, "ab") as handle:
        child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=_env(threads), stdin=subprocess.DEVNULL,
                                 stdout=handle, stderr=subprocess.STDOUT)
        peak = _HighWater(child.pid)
        peak.start()
        try:
            _, status, _ = os.wait4(child.pid, 0)
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            raise
        finally:
            peak.stop()
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    result = StageResult(name, shown, round(wall, 1), round(peak.mb, 1), child.returncode, str(log))
    say(f"[{_now()}] {name}: exit {child.returncode}, {wall:.1f} s, peak RSS {result.peak_rss_mb:.0f} MB")
    if child.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise LoopError(f"stage {name} failed (exit {child.returncode}); log {log}:\n{tail}")
    return result


class _HighWater(threading.Thread):
    """Follows a process's peak resident memory (``VmHWM``) until it exits.

    Not ``ru_maxrss`` from ``wait4``: Linux carries the parent's peak across fork and
    exec into it, so every stage would report at least the loop process's own size.
    """

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.mb = pid, every_s, 0.0
        self._done = threading.Event()

    def _read(self) -> None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                self.mb = max(self.mb, int(line.split()[1]) / 1024)

    def run(self) -> None:
        while not self._done.is_set():
            self._read()
            self._done.wait(self.every_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _now() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


def _save(config: LoopConfig) -> None:
    data = asdict(config)
    data["out"] = str(config.out)
    (config.out / "stages.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")  # type: ignore[operator]


def reproduce_command(config: LoopConfig) -> str:
    parts = [f"R2TA_DATA_DIR={shlex.quote(str(data_dir()))}"]
    if config.threads:
        parts.append(f"OMP_NUM_THREADS={config.threads}")
    parts.append("r2ta loop")
    for flag, value in (("--train-limit", config.train_limit), ("--spread", True if config.spread else None),
                        ("--test-limit", config.test_limit),
                        ("--max-new-tokens", config.max_new_tokens), ("--base-max-new-tokens", config.base_max_new_tokens),
                        ("--reason-max-new-tokens", config.reason_max_new_tokens),
                        ("--reason-verdict-tokens", config.reason_verdict_tokens),
                        ("--tokens-per-construct", config.tokens_per_construct or None),
                        ("--batch-size", config.batch_size),
                        ("--recipe", config.recipe), ("--max-steps", config.max_steps), ("--threads", config.threads),
                        ("--base-backend", None if config.base_backend == "embedded" else config.base_backend),
                        ("--negatives", None if config.negatives == "original" else config.negatives),
                        ("--auditor", None if config.auditor == "deterministic" else config.auditor),
                        ("--verdict-tokens", config.verdict_tokens),
                        ("--verdict-grammar", True if config.verdict_grammar else None),
                        ("--dtype", config.dtype),
                        ("--out", config.out)):
        if value is True:
            parts.append(flag)
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    for item in config.overrides:
        parts += ["--set", shlex.quote(item)]
    return " ".join(parts)


def generation_args(config: LoopConfig, *, base: bool, train: bool = False) -> list[str]:
    """``--max-new-tokens``/``--batch-size`` (and ``--verdict-tokens``) of a generating stage; the base model's budget
    may differ, and its answers on the train split (``train``, reason-train) may have budgets of their own. Only the
    trained models' answers get ``--tokens-per-construct``."""
    budget = (config.base_max_new_tokens or config.max_new_tokens) if base else config.max_new_tokens
    verdict_tokens = config.verdict_tokens
    if train:
        budget = config.reason_max_new_tokens or budget
        verdict_tokens = verdict_tokens if config.reason_verdict_tokens is None else config.reason_verdict_tokens
    verdict = [] if verdict_tokens is None else ["--verdict-tokens", str(verdict_tokens)]
    dtype = [] if config.dtype is None else ["--dtype", config.dtype]
    per = ["--tokens-per-construct", str(config.tokens_per_construct)] if config.tokens_per_construct and not base else []
    return ["--max-new-tokens", str(budget), "--batch-size", str(config.batch_size), *per, *verdict, *dtype]


def _earlier_runs(out: Path, recipe: str, max_steps: int | None) -> tuple[Path | None, Path | None]:
    """This loop folder's training runs on the data just exported, with the recipe and step limit asked for:
    the newest that succeeded, and the newest that failed or was cancelled and can go on (not resumed yet)."""
    import filecmp

    from r2ta import jobs

    succeeded, resumable = [], []
    for folder in out.glob(f"{out.name}-run*"):
        try:
            request, status = jobs.read_request(folder), jobs.read_progress(folder).status
            same = (all(filecmp.cmp(out / f"{s}.jsonl", request[f"{s}_file"], shallow=False) for s in ("sft", "dpo"))
                    # the recipe's text as the runner read it (a loop's --set recipe keeps one file name)
                    and (folder / "recipe.yaml").read_text(encoding="utf-8")
                    == jobs.recipe_file(recipe).read_text(encoding="utf-8")
                    and request.get("max_steps") == max_steps)
        except (jobs.TrainingError, OSError, KeyError):
            continue
        if not same:
            continue
        created = str(request.get("created_at") or "")
        if status.get("status") == jobs.SUCCEEDED:
            succeeded.append((created, folder))
            continue
        try:
            jobs.resume_point(folder)
        except jobs.TrainingError:
            continue
        resumable.append((created, folder))
    return (max(succeeded)[1] if succeeded else None), (max(resumable)[1] if resumable else None)


def _go_on_hint(run_dir: Path, out: Path) -> str:
    """What a loop whose training stopped (cancelled, killed, crashed) can do next: the same command with the same
    loop folder goes on from the run's checkpoint, where it has one; r2ta train --resume alone would not evaluate."""
    from r2ta import jobs

    try:
        state = jobs.read_progress(run_dir).status.get("status")
        point = jobs.resume_point(run_dir)
    except (jobs.TrainingError, OSError):
        return ""
    return (f"The run {'was cancelled' if state == jobs.CANCELLED else 'stopped'}; {point.describe()}. To go on "
            f"from there, run this r2ta loop command again with --out {shlex.quote(str(out))}: it reuses the "
            "traces and exports and resumes the run instead of starting it again.")


def run_loop(config: LoopConfig, say=print) -> str:
    """Run every stage; returns the side-by-side table (also written to ``<out>/table.txt``)."""
    from r2ta.backends import GRAMMAR_SUFFIX, get_backend
    from r2ta.evaluation import CHECKER_MODEL_ID, FINAL, SFT, run_generation_dtype, run_model_id

    out = config.out or data_dir() / "loops" / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config.out = out
    base = get_backend(config.base_backend, dtype=config.dtype)
    if config.dtype and base.config.kind != "local":
        raise LoopError(f"--dtype sets the weights of a model loaded here; the base backend {config.base_backend!r} "
                        "is a server")
    base_id = base.id
    lim = lambda flag, n: [flag, str(n)] if n else []  # noqa: E731
    gen, base_gen = generation_args(config, base=False), generation_args(config, base=True)

    def stage(name, argv):
        config.stages.append(run_stage(name, argv, out, config.threads, say))
        _save(config)

    # named after the recipe it changes: the run, its log and the Train page call a recipe by its file's name
    recipe = (str(write_recipe(config.recipe, config.overrides, out / f"{Path(str(config.recipe)).stem}-loop.yaml"))
              if config.overrides else config.recipe)
    if not all(variant_counts().get(split) for split in ("train", "test")):
        # A fresh data folder: build the dataset and load it (the model is fetched by the first stage that needs it).
        stage("setup", ["seed", "--no-model"])
        counts = variant_counts()
        if not all(counts.get(split) for split in ("train", "test")):
            raise LoopError(f"the store has no train or test variants even after 'r2ta seed --no-model' ({counts}); "
                            f"see {out / 'setup.log'}")
    stage("reason-train", ["reason", "--split", "train", "--backend", config.base_backend,
                           *lim("--limit", config.train_limit), *(["--spread"] if config.spread else []),
                           *generation_args(config, base=True, train=True)])
    stage("refine", ["refine", "--model-id", base_id, "--split", "train", "--auditor", config.auditor])
    t0 = time.perf_counter()
    n = bulk_accept(model_id=base_id, split="train")
    config.stages.append(StageResult("bulk-accept", "r2ta.loop.bulk_accept (in the loop process)",
                                     round(time.perf_counter() - t0, 1), None, 0, "", f"{n} proposals accepted by {BULK_REVIEWER}"))
    say(f"[{_now()}] bulk-accept: {n} proposals accepted by {BULK_REVIEWER} (not human-reviewed)")
    stage("export-sft", ["export", "sft", "--out", str(out / "sft.jsonl")])
    stage("export-dpo", ["export", "dpo", "--negatives", config.negatives, "--out", str(out / "dpo.jsonl")])

    run_dir = out / f"{out.name}-run"  # its name is in the model ids (RUN:sft), so unique per loop
    from r2ta import jobs

    done, resumable = _earlier_runs(out, recipe, config.max_steps)
    if done:
        run_dir = done
        say(f"[{_now()}] train: {run_dir} already succeeded on this data, reusing it")
    else:
        if run_dir.exists():
            run_dir = out / f"{out.name}-run-{_dt.datetime.now().strftime('%H%M%S')}"
        try:
            if resumable:  # a crash, a kill or a Ctrl-C: go on from its checkpoint, not from step 0
                say(f"[{_now()}] train: {resumable.name} stopped; {jobs.resume_point(resumable).describe()}")
                stage("train", ["train", "--resume", str(resumable), "--run-dir", str(run_dir)])
            else:
                # --no-eval: the loop evaluates every model itself below, with its own budget and test variants
                stage("train", ["train", "--sft", str(out / "sft.jsonl"), "--dpo", str(out / "dpo.jsonl"),
                                "--recipe", recipe, "--run-dir", str(run_dir),
                                *lim("--max-steps", config.max_steps), "--no-eval"])
        except LoopError as err:
            raise LoopError(f"{err}\n{_go_on_hint(run_dir, out)}".rstrip()) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (r2ta.cli): `r2ta train` cancelled the run it followed
            if hint := _go_on_hint(run_dir, out):
                say(f"[{_now()}] train: {hint}")
            raise
        # `r2ta train` only starts and follows the runner process: its own RSS is not the training's.
        config.stages[-1].note = "launcher; the runner's time and memory are the train-sft/train-dpo rows"
        _save(config)
    metrics = jobs.read_status(run_dir).get("metrics") or {}
    for s in ("sft", "dpo"):
        m = metrics.get(s) or {}
        config.stages.append(StageResult(f"train-{s}", "(inside the train stage's runner process)", m.get("wall_s") or 0.0,
                                         m.get("peak_rss_mb"), 0, str(run_dir / "train.log"),
                                         f"{m.get('steps')} steps, final loss {m.get('final_loss')}, "
                                         f"{m.get('tokens_per_s')} tokens/s"
                                         + (f", reward margin {m.get('reward_margin')}" if s == "dpo" else "")))
    _save(config)

    stage("eval-checker", ["eval", "--model", CHECKER_MODEL_ID, "--split", "test"])
    # Without --dtype the trained models generate in the dtype the run trained in (r2ta eval: bfloat16 after bf16
    # on a CPU), and a local base model beside them in the same one; the trained models are evaluated on the
    # local "embedded" settings with their own weights (make_backend_for).
    eval_dtype = config.dtype or run_generation_dtype(run_dir)
    run_suffix = get_backend("embedded", dtype=eval_dtype).dtype_suffix if eval_dtype else ""
    if eval_dtype and not config.dtype and base.config.kind == "local":
        base_gen = [*base_gen, "--dtype", eval_dtype]
        base_id = get_backend(config.base_backend, dtype=eval_dtype).id
    models = {"sft+dpo": str(run_dir), "sft": f"{run_dir}:sft", "base": config.base_backend}
    for label, model in models.items():
        stage(f"eval-{label}", ["eval", "--model", model, "--split", "test", *lim("--limit", config.test_limit),
                                *(base_gen if label == "base" else gen)])
    if config.verdict_grammar:  # the same answers, their verdicts decoded under the grammar (minutes)
        for label, model in models.items():
            stage(f"eval-{label}+grammar", ["eval", "--model", model, "--split", "test",
                                            *lim("--limit", config.test_limit), *(base_gen if label == "base" else gen),
                                            "--verdict-grammar", "--reuse-answers"])

    ids = {"base": base_id, "sft": run_model_id(run_dir, SFT) + run_suffix,
           "sft+dpo": run_model_id(run_dir, FINAL) + run_suffix, "checker": CHECKER_MODEL_ID}
    if config.verdict_grammar:
        ids.update({f"{label}+grammar": ids[label] + GRAMMAR_SUFFIX for label in models})
    table = side_by_side(ids, config)
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    _save(config)
    return table


def side_by_side(model_ids: dict[str, str], config: LoopConfig) -> str:
    """The closing table: scores on the common test variants, then the cost of each stage."""
    from r2ta.evaluation import (_cell, budget_rows, format_by_schema, format_side_by_side, list_evaluations, rescore,
                                 schema_rows, variant_schemas)

    latest = {m.model_id: m for m in list_evaluations(split="test")}
    missing = [mid for mid in model_ids.values() if mid not in latest]
    if missing:
        raise LoopError(f"no stored test evaluation for {', '.join(missing)}")
    reports, common = rescore({label: latest[mid].evaluation_id for label, mid in model_ids.items()})
    full, _ = rescore({label: latest[mid].evaluation_id for label, mid in model_ids.items()}, common_only=False)
    lines = [f"R2tA loop — test split, scored on the {len(common)} variants every model has a trace for", ""]
    lines.append(format_side_by_side(reports, budget_rows({label: latest[mid] for label, mid in model_ids.items()})))
    lines += ["", "by base schema: format validity / micro F1 (the train variants' schemas decide what a model knows)"]
    lines.append(format_by_schema(schema_rows(reports, variant_schemas(common))))
    lines += ["", "each model on all the test variants it was evaluated on:"]
    for label, r in full.items():
        lines.append(f"  {label:8} n={r.n:3d}  micro F1 {r.micro_f1:.3f}  macro F1 {r.macro_f1:.3f}  "
                     f"hallucination {_cell(r, 'hallucination_rate')}  format validity {r.format_validity:.3f}")
    lines += ["", f"{'stage':16} {'wall s':>9} {'peak RSS MB':>12}  note"]
    for s in config.stages:
        rss = f"{s.peak_rss_mb:.0f}" if s.peak_rss_mb else "-"
        lines.append(f"{s.name:16} {s.wall_s:9.1f} {rss:>12}  {s.note}")
    lines += ["", "reproduce:", "  " + reproduce_command(config)]
    return "\n".join(lines)
