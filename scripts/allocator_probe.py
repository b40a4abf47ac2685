"""Memory of a long SFT run on a CPU, step by step: which allocator keeps it from growing.

The embedded recipe in bf16 without activation checkpointing (how run450 trained) on the 64 realistic rows of
benchmarks/bench_training.py (seed 0), one row a step; prints the process's RSS after chosen steps, its peak and
tokens/s. The allocator is the process's own, so run it once per allocator:

    python scripts/allocator_probe.py 60 glibc
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python scripts/allocator_probe.py 60 tcmalloc
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python scripts/allocator_probe.py 60 jemalloc
    python scripts/allocator_probe.py 30 glibc --data DATA/exports/sft.jsonl   # your own export's rows
    python scripts/allocator_probe.py 4 glibc --recipe tiny-cpu --precision fp32 --data sft.jsonl   # another recipe

``--precision bf16`` (the default, the run's) needs a CPU that computes bf16 natively (training/hardware.py): on
another the probe stops with that error; ``auto`` takes what a run here would. Record:
docs/measured/sft-labelled-positions-2026-12-05.txt.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks.bench_training as bench  # noqa: E402
from r2ta.pairs import write_rows  # noqa: E402
from training import hardware  # noqa: E402
from r2ta.jobs import TrainingError  # noqa: E402
from training.recipe import load_recipe  # noqa: E402

SHOWN = (0, 4, 9, 19, 29, 39, 49, 59, 89, 119)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="The RSS of an SFT run, step by step, under this process's allocator.")
    parser.add_argument("steps", type=int, help="optimizer steps (one row each)")
    parser.add_argument("label", help="the allocator's name, to head the line printed")
    parser.add_argument("--recipe", default="smollm2-135m-cpu", help="a recipe name or file (default: the embedded one)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32", "auto"),
                        help="bf16 (default: how run450 trained), fp32, or auto: what a run here would take")
    parser.add_argument("--rows", type=int, default=64, help="realistic rows to train on (default 64)")
    parser.add_argument("--data", type=Path, help="an SFT export (JSONL) to train on instead of the realistic rows")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rows < 1:
        parser.error("steps and --rows must be at least 1")
    if args.data is not None and not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    try:
        run(args.steps, args.label, recipe=args.recipe, precision=args.precision, rows=args.rows, data=args.data)
    except TrainingError as err:  # bf16 on a CPU without it, an unknown recipe: the reason, not a traceback
        sys.exit(f"allocator_probe: {err}")


def run(steps: int, label: str, *, recipe: str = "smollm2-135m-cpu", precision: str = "bf16", rows: int = 64,
        data: Path | None = None) -> None:
    from transformers import TrainerCallback

    import training.sft as sft

    class After(TrainerCallback):
        def __init__(self):
            self.rss: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.rss.append(rss_mb())

    loaded = load_recipe(recipe)  # an unknown recipe says so before any precision is asked of this machine
    resolved = hardware.resolve_precision(precision, hardware.detect_hardware())  # bf16 here, or a clear error
    after = After()
    stage_main = sft.main
    sft.main = lambda *a, callbacks=(), **k: stage_main(*a, callbacks=[*callbacks, after], **k)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if data is None:
                data = Path(tmp) / "sft.jsonl"
                write_rows(bench.realistic_rows(rows)[0], data)
            result = bench._measure("sft", "project", loaded, resolved, data, steps,
                                    Path(tmp), extra=("--activation_checkpointing", "false"))
    finally:
        sft.main = stage_main  # the stage's own entry again, for whatever runs next in this process
    shown = ", ".join(f"{i + 1}:{after.rss[i]:.0f}" for i in range(len(after.rss))
                      if i in SHOWN or i == len(after.rss) - 1)
    print(f"{label}: {steps} steps in {time.time() - started:.0f} s, {result['tokens_per_s']:.0f} tok/s; "
          f"RSS MB after step {shown}; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
