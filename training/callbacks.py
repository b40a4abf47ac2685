"""Trainer callbacks that report a stage's progress into the run folder and stop it cleanly on request.

:class:`RunProgressCallback` appends one record per logged step to
``progress.jsonl`` (step, loss, reward margin, learning rate, tokens/s...) and
keeps ``status.json`` current (stage, step, overall fraction). Only the main
process writes, so the files stay whole under ``accelerate launch``.

:data:`CANCEL` is set by the runner's SIGTERM handler; the callback then asks the
Trainer to stop after the current step, so a cancel never interrupts an
optimizer step halfway.

:class:`CheckpointCallback` makes a run resumable: it asks the Trainer for a full
checkpoint (``<stage>/checkpoint-<step>``: weights, optimizer, scheduler, RNG
and trainer state) every ``run.checkpoint_minutes`` and when a cancel stops the
stage, and keeps only the newest. :func:`r2ta.jobs.prepare_resume` continues a
failed or cancelled run from it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from r2ta.jobs import append_progress, now_iso, remove_checkpoints, write_status


class CancelState:
    """Whether a cancel was requested, and whether a training loop is there to honour it at a step boundary."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.in_train_loop = False


CANCEL = CancelState()
logger = logging.getLogger("r2ta.training")

# Trainer log keys -> progress.jsonl keys (the names the Train page plots).
LOG_KEYS = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "mean_token_accuracy": "mean_token_accuracy",
    "nll": "nll",  # decision-weighted SFT (training.weighting): the unweighted loss
    "decision_nll": "decision_nll",  # ... and the loss on the answer's decision tokens alone
    "num_tokens": "num_tokens",
    "epoch": "epoch",
}


class RunProgressCallback(TrainerCallback):
    """Report one stage (``sft`` or ``dpo``, number ``index`` of ``count``) into ``run_dir``."""

    def __init__(self, run_dir, stage: str, index: int, count: int, *, write: bool = True,
                 attempt: int | None = None) -> None:
        self.run_dir = run_dir
        self.stage = stage
        self.index = index
        self.count = count
        self.write = write
        self.attempt = attempt  # a resumed run's records say which attempt logged them (their clocks differ)
        self._resumed = False
        self.summary: dict = {}
        self.last_record: dict = {}
        self._started = self._last_time = time.monotonic()
        self._last_tokens = 0.0
        self._last_status_write = 0.0

    def _fraction(self, step: int, max_steps: int) -> float:
        within = step / max_steps if max_steps else 0.0
        return round((self.index + min(within, 1.0)) / self.count, 4)

    def on_train_begin(self, args, state, control, **kwargs):
        CANCEL.in_train_loop = True
        self._started = self._last_time = time.monotonic()
        self._resumed = state.global_step > 0  # restored from a checkpoint: tokens counted before are unknown here
        if self.write and state.is_world_process_zero:  # a resumed stage begins at its checkpoint's step
            write_status(
                self.run_dir, stage=self.stage, step=state.global_step, max_steps=state.max_steps,
                fraction=self._fraction(state.global_step, state.max_steps),
            )

    def on_step_end(self, args, state, control, **kwargs):
        if CANCEL.requested.is_set():
            control.should_training_stop = True
        now = time.monotonic()
        # At most twice a second: a tiny model makes hundreds of steps a second.
        if self.write and state.is_world_process_zero and now - self._last_status_write > 0.5:
            self._last_status_write = now
            write_status(
                self.run_dir, step=state.global_step, max_steps=state.max_steps,
                fraction=self._fraction(state.global_step, state.max_steps),
            )
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_runtime" in logs:  # the Trainer's end-of-training summary
            self.summary = dict(logs)
            return
        if not (self.write and state.is_world_process_zero) or "loss" not in logs:
            return
        now = time.monotonic()
        record = {"stage": self.stage, "step": state.global_step, "max_steps": state.max_steps, "time": now_iso()}
        if self.attempt is not None:
            record["attempt"] = self.attempt
        for key, name in LOG_KEYS.items():
            if logs.get(key) is not None:
                record[name] = float(logs[key])
        tokens = record.get("num_tokens")
        if tokens is not None and self._resumed:  # the first log after a resume sets the count's baseline
            self._resumed = False
            self._last_tokens = tokens
        elif tokens is not None and now > self._last_time:
            # Tokens (prompt + answer, no padding; DPO counts chosen and rejected) since the previous log.
            record["tokens_per_s"] = round((tokens - self._last_tokens) / (now - self._last_time), 1)
            self._last_tokens = tokens
        self._last_time = now
        record["elapsed_s"] = round(now - self._started, 2)
        self.last_record = record
        append_progress(self.run_dir, record)
        write_status(
            self.run_dir, step=state.global_step, max_steps=state.max_steps,
            fraction=self._fraction(state.global_step, state.max_steps),
            last={k: record[k] for k in ("loss", "reward_margin", "learning_rate", "tokens_per_s") if k in record},
        )

    def on_train_end(self, args, state, control, **kwargs):
        CANCEL.in_train_loop = False


class CheckpointCallback(TrainerCallback):
    """Ask for a resumable checkpoint every ``every_s`` seconds and when a cancel stops training; keep the newest.

    The Trainer writes it (``checkpoint-<step>`` in the stage's output folder) right after the step, before
    it stops; older checkpoints of the stage, and any cut off while saving, are removed once the new one is
    whole. ``status.json`` names the newest (``checkpoint``).
    """

    def __init__(self, run_dir, stage: str, every_s: float, *, write: bool = True) -> None:
        self.run_dir = run_dir
        self.stage = stage
        self.every_s = every_s
        self.write = write
        self._last = self._asked = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if CANCEL.requested.is_set() or time.monotonic() - self._last >= self.every_s:
            control.should_save = True
            self._asked = time.monotonic()
        return control

    def on_save(self, args, state, control, **kwargs):
        self._last = time.monotonic()
        took = round(self._last - self._asked, 2)  # the Trainer saves between our step-end and this call
        if not (self.write and state.is_world_process_zero):
            return
        newest = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        remove_checkpoints(Path(args.output_dir), keep=newest)
        size_mb = round(sum(f.stat().st_size for f in newest.rglob("*") if f.is_file()) / 1e6, 1)
        write_status(self.run_dir, checkpoint={"stage": self.stage, "step": state.global_step, "path": str(newest),
                                               "saved_at": now_iso(), "save_s": took, "size_mb": size_mb})
        logger.info("checkpoint: %s step %d saved to %s in %.2f s (%.1f MB)", self.stage, state.global_step, newest,
                    took, size_mb)
