"""Checkpoints: what saving one costs against a training step, and whether a resumed run ends where it would have.

    python -m benchmarks.bench_checkpoint                        # embedded model when it is there, else tiny
    python -m benchmarks.bench_checkpoint --model tiny --steps 12
    python -m benchmarks.bench_checkpoint --model embedded --steps 3   # CPU: ~10-20 min

Three real training jobs through the runner (:mod:`r2ta.jobs`), each SFT then DPO for ``--steps``
steps of one row (gradient accumulation 1, no merged weights), with a checkpoint after every step
(``run.checkpoint_minutes`` tiny):

* A runs through;
* B is cancelled once its first SFT checkpoint is saved (the Cancel button: it saves one more at the
  step it stops on);
* C resumes B (:func:`r2ta.jobs.prepare_resume`) and runs to the end.

It prints each stage's seconds a step, each checkpoint's save time and size, their ratio (what a
checkpoint every ``run.checkpoint_minutes`` costs is save time / interval), the wall time of B + C
against A, and the largest difference between A's and C's trained adapters (0.0: the resume
restored weights, optimizer, scheduler, RNG and step exactly). Rows for the embedded model are
:func:`benchmarks.bench_training.realistic_rows`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

SAVED = re.compile(r"checkpoint: (sft|dpo) step (\d+) saved to \S+ in ([\d.]+) s \(([\d.]+) MB\)")


def _rows(model: str, rows: int, folder: Path) -> tuple[Path, Path]:
    from r2ta.pairs import write_rows

    if model == "embedded":
        from benchmarks.bench_training import realistic_rows

        sft, dpo = realistic_rows(rows)
    else:
        from training.tiny import smoke_rows

        sft, dpo = smoke_rows(rows)
    write_rows(sft, folder / "sft.jsonl")
    write_rows(dpo, folder / "dpo.jsonl")
    return folder / "sft.jsonl", folder / "dpo.jsonl"


def _stage_seconds_a_step(run_dir: Path) -> dict[str, float]:
    """Each stage's seconds a step after its first (warm-up) step, from the run's own points."""
    from r2ta import jobs

    out = {}
    for stage in ("sft", "dpo"):
        points = [p for p in jobs.read_points(run_dir) if p.get("stage") == stage and "elapsed_s" in p]
        if len(points) >= 2:
            out[stage] = (points[-1]["elapsed_s"] - points[0]["elapsed_s"]) / (points[-1]["step"] - points[0]["step"])
    return out


def _max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def main(argv: list[str] | None = None) -> None:
    from r2ta import jobs
    from r2ta.config import models_dir

    embedded_there = (models_dir() / "smollm2-135m-instruct" / "config.json").is_file()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_checkpoint", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "embedded"), default="embedded" if embedded_there else "tiny")
    parser.add_argument("--steps", type=int, default=None, help="steps a stage (default: 3 embedded, 12 tiny)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.model == "embedded" and not embedded_there:
        from benchmarks import cannot_run_here

        cannot_run_here("the embedded model is not in the data folder yet: run `r2ta seed` (or `make run`) once, "
                        "or pass --model tiny")
    steps = args.steps or (3 if args.model == "embedded" else 12)
    recipe = "smollm2-135m-cpu" if args.model == "embedded" else "tiny-cpu"
    overrides = ["run.checkpoint_minutes=0.00001", "sft.gradient_accumulation_steps=1",
                 "dpo.gradient_accumulation_steps=1", "sft.per_device_train_batch_size=1",
                 "dpo.per_device_train_batch_size=1"]
    print(f"recipe {recipe}, {steps} steps a stage of one row each, a checkpoint after every step", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        root = Path(tmp)
        data = _rows(args.model, steps, root)

        def start(name: str) -> Path:
            return jobs.start_training(*data, recipe=recipe, run_dir=root / name, max_steps=steps, save_merged=False,
                                       overrides=overrides)

        started = time.monotonic()
        a = start("a")
        done = jobs.wait_for(a)
        wall_a = time.monotonic() - started
        if done.state != "succeeded":
            print(f"run A {done.state}: {done.error}\n{jobs.read_log(a)[-3000:]}", flush=True)
            raise SystemExit(1)

        started = time.monotonic()
        b = start("b")
        while not (jobs.read_status(b).get("checkpoint") or {}).get("step"):
            if jobs.read_progress(b).finished:
                break
            time.sleep(0.2)
        stopped = jobs.cancel(b, wait_s=3600)
        point = jobs.resume_point(b)
        c = jobs.prepare_resume(b, new_dir=root / "c")
        jobs.launch(c)
        resumed = jobs.wait_for(c)
        wall_bc = time.monotonic() - started
        if resumed.state != "succeeded":
            print(f"run C {resumed.state}: {resumed.error}\n{jobs.read_log(c)[-3000:]}", flush=True)
            raise SystemExit(1)

        saves = [(m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4)))
                 for m in SAVED.finditer(jobs.read_log(a))]
        per_step = _stage_seconds_a_step(a)
        print(f"\nrun A (through):  {wall_a:,.1f} s wall", flush=True)
        for stage in ("sft", "dpo"):
            mine = [s for s in saves if s[0] == stage]
            if not mine or stage not in per_step:
                continue
            save_s = sum(s[2] for s in mine) / len(mine)
            size = max(s[3] for s in mine)
            print(f"  {stage}: {per_step[stage]:,.2f} s a step; a checkpoint {save_s:,.2f} s, {size:,.1f} MB "
                  f"(mean of {len(mine)}); save / step = {save_s / per_step[stage]:.3f}; a checkpoint every 10 min "
                  f"costs {save_s / 600:.2%} of the time", flush=True)
        print(f"run B ({stopped.state} at {stage_name(point)} step {point.step}) + run C (resumed from there): "
              f"{wall_bc:,.1f} s wall = {wall_bc / wall_a:.2f} x run A", flush=True)
        for artefact in ("sft", "dpo"):
            diff = _max_difference(a / artefact / "adapter_model.safetensors", c / artefact / "adapter_model.safetensors")
            print(f"  {artefact} adapter, A against C: largest difference {diff:.3g}", flush=True)
        losses_a = [p["loss"] for p in jobs.read_points(a)]
        losses_c = [p["loss"] for p in jobs.read_points(c)]
        print(f"  logged losses equal, step by step: {losses_a == losses_c}", flush=True)


def stage_name(point) -> str:
    return (point.stage or "merging").upper()


if __name__ == "__main__":
    main()
