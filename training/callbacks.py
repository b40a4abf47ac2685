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


class FreeCoresCallback(TrainerCallback):
    """On a CPU: train on the cores other processes leave free, looked at before a step at most once in ``every_s``.

    A run starts on every core (torch's default). An evaluation, a batch of traces for review or a measurement
    started beside it takes cores too, and two processes with OpenMP threads for every core on the same cores
    slow each other down far more than sharing them would (docs/measured/loop-run450c-*: DPO about 7x slower
    beside the test suite). The window is everything since the last look (``every_s`` and more, not a moment):
    the cores busy over it (/proc/stat) less this process's own CPU time are the others'; the threads are the
    cores left, at least one. The model's own job does the same from its side (:func:`r2ta.backends.cpu_threads`
    before a batch), so two jobs settle on a share each, and the run takes every core back when the other ends.
    Off where ``OMP_NUM_THREADS`` fixes the threads (``r2ta loop --threads``), on a GPU, and under several
    processes (:func:`training.runner` decides).

    ``every_s`` 10: a step of the embedded recipe takes 10-20 s on a 2-core CPU, so it looks before about every
    step, and each step a neighbour shares with every thread of the run costs it 2-4x (a real run beside the
    Evaluate page's job: 42.8 and 63.3 s against 10-16 s; docs/measured/training-shares-cores-2026-12-07.txt).
    The look itself reads /proc/stat (or, under a container's CPU quota, its cgroup's CPU time: :mod:`r2ta.cpu`)
    and the process's CPU time, no more. ``cores`` are the ones the process may use, not the host's."""

    def __init__(self, every_s: float = 10.0, *, cores: int | None = None, ticks=None, own_seconds=time.process_time,
                 clock=time.monotonic, on_change=None) -> None:
        if ticks is None or cores is None:
            from r2ta.cpu import core_scope

            scope = core_scope()
            ticks, cores = ticks or scope.ticks, cores or scope.cores
        self.every_s = every_s
        self.cores = cores
        self._ticks, self._own, self._clock = ticks, own_seconds, clock
        self._since: tuple[float, float, int, int] | None = None  # (clock, own CPU seconds, idle, total jiffies)
        self.changes: list[tuple[int, int]] = []  # (step, threads) each time the threads changed
        self.on_change = on_change  # called with (step, threads, cores) when they change: the run's status says it

    def _mark(self) -> tuple[float, float, int, int] | None:
        try:
            idle, total = self._ticks()
        except (OSError, ValueError, IndexError):
            return None
        return self._clock(), self._own(), idle, total

    def free_cores(self, before: tuple[float, float, int, int], after: tuple[float, float, int, int]) -> float | None:
        """The cores others left free between two marks: all cores less (the busy ones less this process's)."""
        wall, total = after[0] - before[0], after[3] - before[3]
        if wall <= 0 or total <= 0:
            return None
        busy = (1 - (after[2] - before[2]) / total) * self.cores
        own = (after[1] - before[1]) / wall
        return self.cores - max(0.0, busy - own)

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.get_num_threads() > self.cores:  # torch counts the CPUs it may run on, not a container's quota
            logger.info("training on %d threads, not %d: the cores this process may use", self.cores,
                        torch.get_num_threads())
            torch.set_num_threads(self.cores)
        self._since = self._mark()

    def on_step_begin(self, args, state, control, **kwargs):
        if self._since is None or self._clock() - self._since[0] < self.every_s:
            return
        now = self._mark()
        free = self.free_cores(self._since, now) if now is not None else None
        self._since = now
        if free is None:
            return
        import torch

        threads = max(1, min(self.cores, int(free + 0.5)))
        if threads != torch.get_num_threads():
            logger.info("step %d: %.1f of %d cores free of other processes: training on %d threads, not %d",
                        state.global_step, free, self.cores, threads, torch.get_num_threads())
            torch.set_num_threads(threads)
            self.changes.append((state.global_step, threads))
            if self.on_change is not None:
                self.on_change(state.global_step, threads, self.cores)
