"""Measure this machine before the first run: a few real training steps, so the first click has an estimate too.

:mod:`r2ta.timing` estimates a job from the last finished run of the same recipe on the same hardware and
precision. Before the first one there is nothing to estimate from, and that first click is the one a user most
needs to know about: on a GPU the default loop takes minutes, on a laptop's CPU a day. A *probe* is that
reference run made small: the real runner (:mod:`training.runner`), the recipe with this run's settings and
precision, :data:`PROBE_STEPS` steps of each stage (SFT, then DPO from it) on rows picked from the user's own
export across its range of lengths, then the base model answering :data:`PROBE_EVAL_VARIANTS` test variants it has
no answer to yet (kept: the first run's evaluation reuses them). Its folder lives under ``DATA/probes/``, not
``DATA/runs/``: the Train page does not list it, the database does not record it, and its two-step models are
deleted when it ends. :func:`r2ta.timing.estimate_for_recipe` falls back on the newest probe that matches when no
finished run does, and says so; a finished run replaces it.

A probe's rates are rougher than a run's: two steps of each stage, and the base model's answers stand for the
trained models' (which run longer when they loop; run450b: base 10.0 s a variant, SFT 10.6, SFT+DPO 16-18 at 640
tokens). The model's load (3-5 s for the embedded model on a CPU, the imports with it) is timed apart from its
answers and counted once (:attr:`r2ta.backends.Backend.load_s`); before, it sat in the seconds of two answers.
Four answers still vary with their lengths: 0.89 and 0.54 of the run's evaluation in two measurements
(docs/measured/probe-eval-load-2026-12-06.txt). Its first step pays for warming up: the rate comes from the second
step's seconds a token (:func:`r2ta.timing.run_rates`), the warm-up counted once a stage. Measured against the
run it estimated: on an AMX Xeon SFT and DPO within 6 %, the whole run within 5 %, the evaluation 1.8x too long
(docs/measured/probe-estimate-2026-12-06.txt); on a 2-core EPYC, watched from the Train page, SFT 1.05, DPO 1.02,
the whole run 0.96 of the estimate, the evaluation 0.67 (docs/measured/app-one-click-watched-2026-12-06.txt); with
the load apart and four answers, on another EPYC, the evaluation 0.89, the whole run 0.96
(docs/measured/probe-eval-load-2026-12-06.txt).

No streamlit and no torch at import.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import tempfile
from pathlib import Path

from r2ta import jobs
from r2ta.config import data_dir
from r2ta.errors import R2taError

PROBE_STEPS = 2  # optimizer steps of each stage
PROBE_EVAL_VARIANTS = 4  # test variants the base model answers (its seconds a variant stand for the evaluation's)
PROBES = "probes"


def probes_dir() -> Path:
    return data_dir() / PROBES


def sample_lines(lines: list[str], n: int) -> list[str]:
    """``n`` of ``lines`` spread over their range of lengths (the shortest, the longest and evenly between), so
    that the sample's mean row length is near the whole file's. All of them when there are not more than ``n``."""
    if len(lines) <= n:
        return list(lines)
    ordered = sorted(lines, key=len)
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(n)] if n > 1 else [ordered[len(ordered) // 2]]


def _rows_a_step(recipe: str | Path, overrides: list[str]) -> dict[str, int]:
    from r2ta.timing import planned_recipe, stage_settings

    data = planned_recipe(recipe, overrides)
    return {stage: stage_settings(data, stage)[1] for stage in ("sft", "dpo")}


def start_probe(sft_file: str | Path, dpo_file: str | Path, *, recipe: str | Path = jobs.DEFAULT_RECIPE,
                overrides: list[str] | None = None, precision: str = "auto", split: str = "test",
                max_new_tokens: int | None = None) -> Path:
    """Prepare and start a probe in the background (:func:`r2ta.eval_jobs.main` ``probe``); returns its folder.

    ``sft_file`` / ``dpo_file``: the export a run would train on; the probe takes :data:`PROBE_STEPS` steps' worth
    of rows from each (:func:`sample_lines`). ``overrides``, ``precision``: the run's (see :func:`jobs.prepare_run`).
    """
    from r2ta import eval_jobs

    overrides = [item for item in (overrides or []) if item.strip()]
    per_step = _rows_a_step(recipe, overrides)  # a bad setting is refused before anything is written
    current = active_probe()
    if current is not None:
        raise R2taError(f"a measurement is already going ({current.parent.name}); wait for it or cancel it")
    training = jobs.training_run()
    if training is not None:  # two jobs at once slow each other: the figures would be the contention's
        raise R2taError(f"run {training.name} is training; measure when it is done (or cancel it)")
    from r2ta.model_jobs import active_job

    other = active_job()
    if other is not None:
        raise R2taError(f"{other.describe()} is going; measure when it is done (or cancel it)")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^\w.\-]+", "_", Path(str(recipe)).stem)[:60]
    probes_dir().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{stamp}-{name}-", dir=probes_dir()))
    try:
        sampled = {}
        for stage, path in (("sft", Path(sft_file)), ("dpo", Path(dpo_file))):
            try:
                lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except OSError as err:
                raise R2taError(f"cannot read the {stage.upper()} data {path}: {err.strerror}") from None
            sampled[stage] = folder / f"sample-{stage}.jsonl"
            sampled[stage].write_text("".join(f"{line}\n" for line in sample_lines(lines, PROBE_STEPS * per_step[stage])),
                                      encoding="utf-8")
        run_dir = jobs.prepare_run(sampled["sft"], sampled["dpo"], recipe=recipe, run_dir=folder / "run",
                                   precision=precision, max_steps=PROBE_STEPS, save_merged=False, overrides=overrides)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    request = jobs.read_request(run_dir)
    jobs._write_json_atomic(run_dir / jobs.REQUEST_FILE, {**request, "probe": True})
    eval_jobs.start_probe_job(run_dir, split=split, max_new_tokens=max_new_tokens)
    return run_dir


def list_probes() -> list[Path]:
    """Probe run folders, newest first."""
    root = probes_dir()
    if not root.is_dir():
        return []
    return sorted((p / "run" for p in root.iterdir() if (p / "run" / jobs.STATUS_FILE).is_file()),
                  key=lambda p: p.parent.name, reverse=True)


def probe_state(run_dir: Path) -> str:
    """running, succeeded, failed or cancelled: the training's state, then its evaluation's."""
    from r2ta import eval_jobs

    ev = eval_jobs.read_eval_status(run_dir)  # marks a supervisor that died failed
    if ev.get("cancelled"):
        return jobs.CANCELLED
    progress = jobs.read_progress(run_dir)
    if not progress.finished:  # queued until the supervisor launches the runner
        return jobs.FAILED if ev.get("status") == eval_jobs.FAILED else "running"
    if progress.state != jobs.SUCCEEDED:
        return progress.state
    if ev.get("status") in (eval_jobs.WAITING, eval_jobs.RUNNING):
        return "running"
    return jobs.SUCCEEDED if ev.get("status") in (eval_jobs.SUCCEEDED, eval_jobs.SKIPPED) else jobs.FAILED


def latest_probe(recipe: str | Path) -> Path | None:
    """The newest probe of ``recipe`` (any state)."""
    name = Path(str(recipe)).stem
    for run_dir in list_probes():
        try:
            if jobs.read_status(run_dir).get("recipe") == name:
                return run_dir
        except jobs.TrainingError:
            continue
    return None


def active_probe() -> Path | None:
    """The probe still going, if one is."""
    return next((p for p in list_probes() if probe_state(p) == "running"), None)


def cancel_probe(run_dir: Path) -> None:
    """Stop a probe: its job process (which would start the runner, then the evaluation) and the runner."""
    from r2ta import eval_jobs

    eval_jobs.stop_job(run_dir)
    jobs.cancel(run_dir, wait_s=10, force=True)


def describe_probe(run_dir: Path) -> str:
    """One line on a probe going or ended: its stage and step, or why it failed."""
    from r2ta import eval_jobs

    progress = jobs.read_progress(run_dir)
    state = probe_state(run_dir)
    if state == "running":
        if not progress.finished:
            stage = (progress.stage or "").upper() or "starting"
            step = progress.status.get("step")
            return f"measuring: {stage}" + (f", step {step} of {jobs.read_request(run_dir).get('max_steps')}" if step else "")
        ev = eval_jobs.read_eval_status(run_dir)
        return f"measuring: the base model answers {ev.get('total') or PROBE_EVAL_VARIANTS} test variants"
    if state == jobs.SUCCEEDED:
        return f"measured at {(progress.status.get('finished_at') or '')[:16].replace('T', ' ')}"
    if state == jobs.CANCELLED:
        return "the measurement was cancelled"
    error = progress.status.get("error") or eval_jobs.read_eval_status(run_dir).get("error") or "see its log"
    return f"the measurement failed: {error}"


def remove_models(run_dir: Path) -> None:
    """Delete a finished probe's two-step adapters (nothing uses them; the rates are in its status)."""
    for stage in ("sft", "dpo", "merged"):
        shutil.rmtree(run_dir / stage, ignore_errors=True)
