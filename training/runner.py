"""The training job: SFT, then DPO from the SFT result, in one process that reports as it goes.

    python -m training.runner RUN_DIR

``RUN_DIR`` was prepared by :func:`r2ta.jobs.prepare_run` (``request.json`` and
copies of the data). The Train page and ``r2ta train`` start this as a separate
process through :func:`r2ta.jobs.start_training`; the files it writes into
``RUN_DIR`` are described in :mod:`r2ta.jobs`.

How DPO starts from SFT: with LoRA, DPO loads the SFT adapter *trainable* on the
same base and continues it, while TRL keeps a frozen copy as the reference
policy (see :mod:`training.dpo`); nothing is merged in between. ``dpo/`` is thus
one adapter over the base that holds SFT + DPO, and ``merged/`` (``run.save_merged``)
is the base with it merged in. With full fine-tuning, DPO starts from ``sft/``.

Outcomes: success writes ``status: succeeded`` and exits 0; SIGTERM (Ctrl-C,
the page's Cancel button) stops after the current step, saves a checkpoint,
writes ``cancelled`` and exits 143; any error writes ``failed`` with the error,
puts the traceback in the log and exits 1.

Resuming: every ``run.checkpoint_minutes`` (and on cancel) a stage saves a full
checkpoint into ``<stage>/checkpoint-<step>``; a finished stage is listed in
``completed_stages`` and its checkpoints removed. A run prepared by
:func:`r2ta.jobs.prepare_resume` carries the finished stages of the run it
continues (their outputs and metrics) and the newest checkpoint of the stage it
stopped in, from which the Trainer restores weights, optimizer, scheduler, RNG
and step, so the resumed run ends where the uninterrupted one would have.

Several GPUs: a runner that sees more than one GPU (and was not told
``num_processes: 1``) supervises ``accelerate launch`` with one worker per GPU
(:func:`training.hardware.launch_command`); rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from r2ta.jobs import (
    CANCELLED,
    FAILED,
    LOG_FILE,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    allocator_in_use,
    now_iso,
    process_start_ticks,
    read_request,
    read_status,
    remove_checkpoints,
    write_status,
)
from r2ta.timing import SPEED_REVISION

logger = logging.getLogger("r2ta.training")
STAGES = ("sft", "dpo")
EXIT_FAILED, EXIT_CANCELLED = 1, 128 + signal.SIGTERM


class RunCancelled(Exception):
    """SIGTERM arrived: stop after the current step (no further stage, no merged weights), report cancelled."""


def _on_sigterm(signum, frame):
    from training.callbacks import CANCEL

    first = not CANCEL.requested.is_set()
    CANCEL.requested.set()
    logger.warning("cancel requested (signal %d)", signum)
    # Inside the training loop the callback stops at the next step boundary; anywhere
    # else (loading, tokenising, saving), or on a second signal, stop right here.
    if not (CANCEL.in_train_loop and first):
        raise RunCancelled()


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: getrusage's ru_maxrss keeps the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _setup_logging(run_dir: Path) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_path = run_dir / LOG_FILE
    try:
        same = log_path.exists() and os.path.samestat(os.fstat(sys.stderr.fileno()), os.stat(log_path))
    except (OSError, ValueError):  # stderr is not a real file (pytest capture)
        same = False
    if not same:  # run by hand: the terminal gets the output, the log file gets it too
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.runner", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder prepared by r2ta.jobs.prepare_run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of several GPU processes
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir.resolve()
    signal.signal(signal.SIGTERM, _on_sigterm)
    _setup_logging(run_dir)
    from training.hardware import is_main_process

    main_process = is_main_process()
    try:
        request = read_request(run_dir)
        if not args.worker:
            write_status(
                run_dir, status=RUNNING, stage="setup", pid=os.getpid(), pid_start=process_start_ticks(os.getpid()),
                started_at=now_iso(), error=None,
            )
        result = run(run_dir, request, worker=args.worker)
        if result is not None:  # supervised workers: they wrote the outcome
            return result
        if main_process:
            write_status(run_dir, status=SUCCEEDED, stage="done", fraction=1.0, finished_at=now_iso())
        logger.info("run %s succeeded", run_dir)
        return 0
    except (RunCancelled, KeyboardInterrupt):
        logger.warning("run %s cancelled", run_dir)
        if main_process:
            write_status(run_dir, status=CANCELLED, finished_at=now_iso())
        return EXIT_CANCELLED
    except Exception as err:  # the job's top level: every failure is recorded with its traceback, then exit 1
        logger.error("run %s failed:\n%s", run_dir, traceback.format_exc())
        if main_process:
            write_status(run_dir, status=FAILED, error=f"{type(err).__name__}: {err}", finished_at=now_iso())
        return EXIT_FAILED


def run(run_dir: Path, request: dict, *, worker: bool = False) -> int | None:
    """SFT then DPO as the request says. Returns an exit status when it only supervised GPU workers."""
    from training.data import describe_file, read_training_rows

    # Bad data fails here, in a second, not after the model has loaded.
    for stage in STAGES:
        read_training_rows(stage, request[f"{stage}_file"])

    from training import hardware
    from training.callbacks import CANCEL
    from training.recipe import RecipeError, load_recipe, resolve_model_path

    hw = hardware.detect_hardware()
    recipe = load_recipe(request["recipe_file"])
    # r2ta train --set, or a resumed run: the copy in the run folder keeps the recipe's name
    recipe = dataclasses.replace(recipe, name=request.get("recipe") or recipe.name)
    if recipe.run.hardware == "gpu" and hw.kind == "cpu":
        raise RecipeError(
            f"recipe {recipe.name} needs a GPU and this machine has none; use smollm2-135m-cpu (or tiny-cpu)"
        )
    requested = request.get("precision") or "auto"
    precision = hardware.resolve_precision(recipe.run.precision if requested == "auto" else requested, hw)
    processes = int(request.get("num_processes") or hw.device_count or 1)
    if processes > 1 and not worker and hardware.distributed_world_size() == 1:
        return _supervise(run_dir, processes)

    main_process = hardware.is_main_process()
    save_merged = recipe.run.save_merged if request.get("save_merged") is None else bool(request["save_merged"])
    data_files = [describe_file("sft", request["sft_file"]), describe_file("dpo", request["dpo_file"])]
    hardware_info = {**hw.as_dict(), "description": hw.describe(), "processes": max(processes, 1)}
    if main_process:
        (run_dir / "recipe.yaml").write_text(recipe.text, encoding="utf-8")
        write_status(
            run_dir, recipe=recipe.name, hardware=hardware_info, precision=precision.name,
            data=[d.as_dict() for d in data_files], stages=list(STAGES),
            base_model=recipe.model.get("model_name_or_path"), allocator=allocator_in_use(),
            speed_revision=SPEED_REVISION,
        )
    logger.info("recipe %s on %s, precision %s, allocator %s", recipe.name, hw.describe(), precision.name,
                allocator_in_use())

    resume = request.get("resume") or {}
    carried = [stage for stage in STAGES if stage in (resume.get("done") or [])]
    metrics: dict = {stage: (resume.get("metrics") or {}).get(stage) for stage in carried}
    artefacts: dict = {}
    if carried and main_process:
        logger.info("resuming %s: %s finished there and is carried over", resume.get("from_run"), ", ".join(carried))
        write_status(run_dir, completed_stages=carried, metrics=metrics)
    if "sft" in carried:
        model_args = _stage_args("sft", run_dir, request, recipe, precision, [])[2]
    else:
        sft_trainer, model_args = _run_stage("sft", 0, run_dir, request, recipe, precision, [], metrics, main_process)
        del sft_trainer
        gc.collect()
    use_peft = bool(model_args.use_peft)
    base_model = model_args.model_name_or_path or ""
    base_model_path = resolve_model_path(base_model)  # built or found already by the SFT stage
    artefacts["sft"] = str(run_dir / "sft")
    if CANCEL.requested.is_set():
        raise RunCancelled()
    _stage_finished("sft", run_dir, main_process)

    start = ["--init_adapter", str(run_dir / "sft")] if use_peft else ["--model_name_or_path", str(run_dir / "sft")]
    if "dpo" in carried:  # only the merge was left to do
        merge = use_peft and save_merged and main_process
        dpo_model = _load_adapter_model(base_model_path, run_dir / "dpo", precision.dtype) if merge else None
        tokenizer, dpo_trainer = None, None
    else:
        dpo_trainer, _ = _run_stage("dpo", 1, run_dir, request, recipe, precision, start, metrics, main_process)
        dpo_model = dpo_trainer.accelerator.unwrap_model(dpo_trainer.model)
        tokenizer = dpo_trainer.processing_class
    artefacts["dpo"] = str(run_dir / "dpo")
    if CANCEL.requested.is_set():
        raise RunCancelled()
    _stage_finished("dpo", run_dir, main_process)

    if use_peft and save_merged and main_process:
        write_status(run_dir, stage="merging")
        started = time.monotonic()
        model = dpo_model.merge_and_unload()
        model.save_pretrained(run_dir / "merged")
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(run_dir / "dpo")
        tokenizer.save_pretrained(run_dir / "merged")
        artefacts["merged"] = str(run_dir / "merged")
        logger.info("merged weights saved to %s in %.1f s", run_dir / "merged", time.monotonic() - started)
    if hasattr(dpo_trainer, "end"):
        dpo_trainer.end()  # finishes trackers and the process group (transformers >= 5.18)
    del dpo_trainer, dpo_model
    gc.collect()

    if main_process:
        _write_cards(run_dir, request, recipe, base_model, base_model_path, data_files, metrics, hardware_info,
                     precision.name, use_peft, artefacts)
        write_status(run_dir, artefacts=artefacts, metrics=metrics)
    return None


def _stage_args(stage, run_dir, request, recipe, precision, extra_args) -> tuple:
    """The stage's (script, training, model) configs: the recipe's values with this run's arguments on top."""
    from training import dpo, sft
    from training.recipe import parse_stage

    module = {"sft": sft, "dpo": dpo}[stage]
    args = ["--train_file", request[f"{stage}_file"], "--output_dir", str(run_dir / stage), *extra_args]
    if request.get("max_steps"):
        args += ["--max_steps", str(int(request["max_steps"]))]
    return (*parse_stage(module.make_parser(), recipe, stage, precision, args), args)


def follows_free_cores() -> bool:
    """Whether a stage's threads follow the cores other processes leave free (:class:`FreeCoresCallback`): on a
    CPU, in one process, with no ``OMP_NUM_THREADS`` fixing them."""
    import torch

    explicit = os.environ.get("OMP_NUM_THREADS", "").strip().isdigit()
    return not explicit and os.environ.get("WORLD_SIZE", "1") == "1" and not torch.cuda.is_available()


def _run_stage(stage, index, run_dir, request, recipe, precision, extra_args, metrics, main_process):
    """Parse the stage's configs from the recipe, train (from the run's checkpoint when it resumes), save;
    record its metrics. Returns trainer and ModelConfig."""
    from training import dpo, sft
    from training.callbacks import CheckpointCallback, FreeCoresCallback, RunProgressCallback

    module = {"sft": sft, "dpo": dpo}[stage]
    script_args, training_args, model_args, args = _stage_args(stage, run_dir, request, recipe, precision, extra_args)
    # A log file is no place for progress bars; the Trainer prints each log line instead.
    training_args.disable_tqdm = not sys.stderr.isatty()
    resume = request.get("resume") or {}
    checkpoint = resume.get("checkpoint") if resume.get("stage") == stage else None
    if main_process:
        step, max_steps = (resume.get("step"), resume.get("max_steps")) if checkpoint else (0, None)
        within = min(1.0, step / max_steps) if step and max_steps else 0.0
        write_status(run_dir, stage=stage, step=step, max_steps=max_steps,
                     fraction=round((index + within) / len(STAGES), 4))
    logger.info("stage %s: %s", stage, " ".join(shlex.quote(a) for a in args))
    if checkpoint:
        logger.info("stage %s resumes at step %s from %s", stage, resume.get("step"), checkpoint)

    callback = RunProgressCallback(run_dir, stage, index, len(STAGES), write=main_process,
                                   attempt=request.get("attempt"))
    callbacks = [callback]
    if recipe.run.checkpoint_minutes > 0:
        callbacks.append(CheckpointCallback(run_dir, stage, recipe.run.checkpoint_minutes * 60, write=main_process))
    if follows_free_cores():  # the Train page says when the run has fewer threads than cores, and since when
        callbacks.append(FreeCoresCallback(on_change=lambda step, threads, cores: write_status(
            run_dir, threads={"threads": threads, "cores": cores, "stage": stage, "since_step": step})))
    started = time.monotonic()
    trainer = module.main(script_args, training_args, model_args, callbacks=callbacks,
                          resume_from_checkpoint=checkpoint)
    wall = time.monotonic() - started
    summary = callback.summary
    last = callback.last_record
    runtime = summary.get("train_runtime")
    # A resumed stage's runtime, and TRL's token count, cover this attempt only (the Trainer restores neither):
    # tokens/s is this attempt's; timing.run_rates counts its steps from resumed_from_step.
    tokens = last.get("num_tokens")
    metrics[stage] = {
        "steps": trainer.state.global_step,
        "train_loss": _whole_stage_loss(run_dir, stage, trainer.state.global_step) if checkpoint
        else summary.get("train_loss"),
        "final_loss": last.get("loss"),
        "reward_margin": last.get("reward_margin"),
        "reward_accuracy": last.get("reward_accuracy"),
        "num_tokens": tokens,
        "tokens_per_s": round(tokens / runtime, 1) if runtime and tokens else None,
        "train_runtime_s": runtime,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if checkpoint:
        metrics[stage]["resumed_from_step"] = int(resume.get("step") or 0)
    from training.callbacks import CANCEL

    logger.info("stage %s %s: %s", stage, "stopped by the cancel" if CANCEL.requested.is_set() else "done",
                metrics[stage])
    if main_process:
        write_status(run_dir, metrics=metrics)
    return trainer, model_args


def _whole_stage_loss(run_dir: Path, stage: str, steps: int) -> float | None:
    """A resumed stage's mean training loss over all its steps, both attempts: the mean of its logged per-step
    losses when every step was logged (the Trainer's own figure covers this attempt's steps only)."""
    from r2ta.jobs import read_points

    losses = {p["step"]: p["loss"] for p in read_points(run_dir)
              if p.get("stage") == stage and isinstance(p.get("loss"), (int, float))}
    if set(losses) != set(range(1, steps + 1)):
        return None
    return sum(losses.values()) / steps


def _stage_finished(stage: str, run_dir: Path, main_process: bool) -> None:
    """Record that ``stage`` finished (a resume carries it over) and drop its checkpoints: its output supersedes them."""
    if not main_process:
        return
    done = list(dict.fromkeys([*(read_status(run_dir).get("completed_stages") or []), stage]))
    write_status(run_dir, completed_stages=done, checkpoint=None)
    remove_checkpoints(run_dir / stage)


def _load_adapter_model(base_model_path: str, adapter_dir: Path, dtype: str = "float32"):
    """The base model with a saved adapter on it (for a merge that an earlier attempt did not finish): the base in
    the dtype the run held it in (``Precision.dtype``: bfloat16 for a bf16 run), the adapter in fp32 as trained, so
    that the merged weights are the ones the uninterrupted run saves, bit for bit."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=getattr(torch, dtype))
    return PeftModel.from_pretrained(base, adapter_dir)


def _write_cards(run_dir, request, recipe, base_model, base_model_path, data_files, metrics, hardware_info,
                 precision, use_peft, artefacts):
    from training.model_card import render_model_card

    reproduce = (
        f"r2ta train --sft {shlex.quote(request.get('sft_source') or request['sft_file'])} "
        f"--dpo {shlex.quote(request.get('dpo_source') or request['dpo_file'])} --recipe {recipe.name}"
        + (f" --precision {request['precision']}" if request.get("precision") not in (None, "auto") else "")
        + (f" --max-steps {request['max_steps']}" if request.get("max_steps") else "")
        + "".join(f" --set {shlex.quote(item)}" for item in request.get("overrides") or [])
    )
    if request.get("sft_from"):  # DPO again from another run's SFT (r2ta.jobs.prepare_dpo_again)
        pairs = request.get("dpo_again_pairs")  # none: the source run's own pairs
        reproduce = (f"r2ta train --dpo-from {shlex.quote(request['sft_from'])}"
                     + (f" --dpo {shlex.quote(pairs)}" if pairs else "")
                     + "".join(f" --set {shlex.quote(item)}" for item in request.get("dpo_again_overrides") or []))
    status = read_status(run_dir)
    resumed = (f"continues run {Path(status['resumed_from']).name}: {status.get('resumed_at')}"
               if status.get("resumed_from") else None)
    common = dict(
        base_model=base_model, base_model_path=base_model_path, recipe_name=recipe.name, recipe_text=recipe.text,
        data_files=[d.as_dict() for d in data_files], metrics=metrics, hardware=hardware_info,
        precision=precision, use_peft=use_peft, reproduce=reproduce, created_at=now_iso(), resumed=resumed,
        sft_from=Path(request["sft_from"]).name if request.get("sft_from") else None,
    )
    titles = {
        "run": f"R2tA run {run_dir.name}",
        "sft": f"R2tA SFT ({recipe.name})",
        "dpo": f"R2tA SFT+DPO ({recipe.name})",
        "merged": f"R2tA SFT+DPO merged ({recipe.name})",
    }
    (run_dir / "README.md").write_text(render_model_card(title=titles["run"], artefact="run", **common))
    for name in artefacts:
        Path(artefacts[name], "README.md").write_text(render_model_card(title=titles[name], artefact=name, **common))


def _supervise(run_dir: Path, processes: int) -> int:
    """Run the job as ``processes`` GPU workers under ``accelerate launch``; forward a cancel to them."""
    from training.hardware import launch_command

    command = launch_command(["training.runner", str(run_dir), "--worker"], processes)
    logger.info("%d GPUs: %s", processes, " ".join(command))
    workers = subprocess.Popen(command)

    def forward(signum, frame):
        workers.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    code = workers.wait()
    if read_status(run_dir).get("status") not in TERMINAL:
        write_status(
            run_dir, status=FAILED, finished_at=now_iso(),
            error=f"accelerate launch exited with status {code} without a result; see {run_dir / LOG_FILE}",
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
