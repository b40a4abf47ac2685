"""Memory of a long SFT run on a CPU, step by step: which allocator keeps it from growing.

The embedded recipe in bf16 without activation checkpointing (how run450 trained) on the 64 realistic rows of
benchmarks/bench_training.py (seed 0), one row a step; prints the process's RSS after chosen steps, its peak and
tokens/s. The allocator is the process's own, so run it once per allocator:

    python scripts/allocator_probe.py 60 glibc
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python scripts/allocator_probe.py 60 tcmalloc
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python scripts/allocator_probe.py 60 jemalloc

Needs a CPU that computes bf16 natively (training/hardware.py). Record: docs/measured/sft-labelled-positions-2026-12-05.txt.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks.bench_training as bench  # noqa: E402
from r2ta.pairs import write_rows  # noqa: E402
from training import hardware  # noqa: E402
from training.recipe import load_recipe  # noqa: E402

SHOWN = (0, 4, 9, 19, 29, 39, 49, 59, 89, 119)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def main(steps: int, label: str) -> None:
    from transformers import TrainerCallback

    import training.sft as sft

    class After(TrainerCallback):
        def __init__(self):
            self.rss: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.rss.append(rss_mb())

    after = After()
    stage_main = sft.main
    sft.main = lambda *a, callbacks=(), **k: stage_main(*a, callbacks=[*callbacks, after], **k)
    precision = hardware.resolve_precision("bf16", hardware.detect_hardware())
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "sft.jsonl"
        write_rows(bench.realistic_rows(64)[0], rows)
        result = bench._measure("sft", "project", load_recipe("smollm2-135m-cpu"), precision, rows, steps,
                                Path(tmp), extra=("--activation_checkpointing", "false"))
    shown = ", ".join(f"{i + 1}:{after.rss[i]:.0f}" for i in range(len(after.rss))
                      if i in SHOWN or i == len(after.rss) - 1)
    print(f"{label}: {steps} steps in {time.time() - started:.0f} s, {result['tokens_per_s']:.0f} tok/s; "
          f"RSS MB after step {shown}; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
