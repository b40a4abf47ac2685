"""A training run on a CPU with a model's job started beside it: fixed threads, or each following the free cores.

    python -m benchmarks.bench_sharing                    # the embedded recipe, 12 SFT steps, a neighbour from step 3
    python -m benchmarks.bench_sharing --steps 16 --variants 24 --every 20

What it stands for: a run is training on this machine's cores and someone starts an evaluation (or the Review
page's next batch of traces) beside it, which the pages allow and warn about. Each setting, in one process: SFT
on the embedded recipe (its precision here, activation checkpointing off as the 450-variant loops trained,
one realistic row a step: :func:`benchmarks.bench_training.realistic_rows`), and at the start of step
``--start-at`` a second process that loads the embedded model and writes ``--variants`` answers of
``--max-new-tokens`` tokens to real prompts (greedy, the loop stop off, batch ``--batch-size``):

- ``fixed``: the run keeps torch's threads (one a core) and the neighbour the threads its load saw idle (what
  both did before 2026-12-07);
- ``following``: the run looks at the cores other processes leave free before a step, at most once in
  ``--every`` seconds (:class:`training.callbacks.FreeCoresCallback`), and the neighbour at the cores idle
  before a batch (:data:`r2ta.backends.THREAD_RECHECK_S`): what a run and a job do now.

Prints, per setting: the run's seconds a step before, beside and after the neighbour, its thread changes, the
neighbour's wall time and threads a batch, and the time from the neighbour's start until both were done; then
the ratios of the two settings, measured in this run. ``OMP_NUM_THREADS`` is unset (it fixes the threads, and
neither would follow). Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ("fixed", "following")


def _neighbour(args) -> None:
    """The second process: the embedded model answers ``args.variants`` prompts; one JSON line."""
    import r2ta.backends as backends
    from benchmarks.bench_generation import _cases
    from benchmarks.bench_threads import generate_counting_threads

    if args.one_look:
        backends.THREAD_RECHECK_S = math.inf
    started = time.perf_counter()
    backend = backends.get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows",
                                   **({"dtype": args.dtype} if args.dtype else {}),
                                   **({"model": args.neighbour_model} if args.neighbour_model else {}))
    gens, threads = generate_counting_threads(backend, [p for p, _ in _cases(args.variants, 0)], args.max_new_tokens)
    print(json.dumps({"wall": round(time.perf_counter() - started, 1), "threads": threads,
                      "tokens": sum(g.completion_tokens or 0 for g in gens)}), flush=True)


def _train(setting: str, args, rows: Path, out: Path) -> dict:
    from transformers import TrainerCallback

    from training import hardware, sft
    from training.callbacks import FreeCoresCallback
    from training.recipe import load_recipe, parse_stage

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # torch's own default, whatever the last setting left
    precision = hardware.resolve_precision("auto", hardware.detect_hardware())
    parsed = parse_stage(sft.make_parser(), load_recipe(args.recipe), "sft", precision, [
        "--train_file", str(rows), "--output_dir", str(out / setting), "--max_steps", str(args.steps),
        "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "1", "--activation_checkpointing",
        "false", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none"])
    parsed[1].disable_tqdm = True
    neighbour_argv = [sys.executable, "-m", "benchmarks.bench_sharing", "--neighbour", "--variants",
                      str(args.variants), "--batch-size", str(args.batch_size), "--max-new-tokens",
                      str(args.max_new_tokens), *(["--dtype", args.dtype] if args.dtype else []),
                      *(["--neighbour-model", args.neighbour_model] if args.neighbour_model else []),
                      *(["--one-look"] if setting == "fixed" else [])]
    seen: dict = {"begins": [], "child": None, "started": None}

    class Steps(TrainerCallback):
        def on_step_begin(self, a, state, control, **kwargs):
            seen["begins"].append(time.perf_counter())
            if state.global_step + 1 == args.start_at and seen["child"] is None:
                seen["started"] = time.perf_counter()
                seen["child"] = subprocess.Popen(neighbour_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                 text=True)

        def on_step_end(self, a, state, control, **kwargs):
            child = seen["child"]
            if child is not None and "neighbour_done_step" not in seen and child.poll() is not None:
                seen["neighbour_done_step"] = state.global_step
                seen["neighbour_done"] = time.perf_counter()

    following = FreeCoresCallback(args.every) if setting == "following" else None
    callbacks = [Steps(), *([following] if following else [])]
    with contextlib.redirect_stdout(io.StringIO()):
        sft.main(*parsed, callbacks=callbacks)
    ended = time.perf_counter()
    child = seen["child"]
    result = json.loads(child.communicate()[0].strip().splitlines()[-1]) if child is not None else {}
    done = seen.get("neighbour_done") or time.perf_counter()  # it ended after the run, or during its last step
    steps = [b - a for a, b in zip(seen["begins"], [*seen["begins"][1:], ended])]
    first = args.start_at - 1  # the index of the step the neighbour started at
    last = seen.get("neighbour_done_step", len(steps))
    return {
        "before": steps[1:first],  # step 1 warms up
        "beside": steps[first:last],
        "after": steps[last:],
        "changes": following.changes if following else [],
        "neighbour": result,
        "both_done": max(done, ended) - (seen["started"] or ended),
        "run_wall": ended - seen["begins"][0],
    }


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):5.1f} s" if values else "    -  "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="smollm2-135m-cpu")
    parser.add_argument("--steps", type=int, default=12, help="SFT steps, one row each")
    parser.add_argument("--start-at", type=int, default=3, help="the step at whose start the neighbour starts")
    parser.add_argument("--variants", type=int, default=16, help="answers the neighbour writes")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"),
                        help="the neighbour's weights (default bfloat16: a run's models on a CPU with native bf16)")
    parser.add_argument("--every", type=float, default=10.0, help="following: the run's seconds between looks")
    parser.add_argument("--data", type=Path, help="an SFT export (JSONL) to train on instead of realistic rows")
    parser.add_argument("--neighbour-model", help="a model folder for the neighbour instead of the embedded model")
    parser.add_argument("--neighbour", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-look", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    os.environ.pop("OMP_NUM_THREADS", None)
    if args.neighbour:
        _neighbour(args)
        return
    if not 2 <= args.start_at <= args.steps:
        parser.error("--start-at must be a step from 2 to --steps")

    import torch

    import benchmarks.bench_training as bench
    from benchmarks.bench_generation import _device_name
    from r2ta.embedded_model import ensure_embedded_model
    from r2ta.pairs import write_rows

    if torch.cuda.is_available():
        from benchmarks import cannot_run_here

        cannot_run_here("bench_sharing measures a CPU's cores; this machine trains on its GPU")
    if args.neighbour_model is None or args.recipe == "smollm2-135m-cpu":
        ensure_embedded_model()
    print(f"device: {_device_name('cpu')}; recipe {args.recipe}, {args.steps} SFT steps of one row; from step "
          f"{args.start_at} a neighbour writes {args.variants} answers of {args.max_new_tokens} tokens "
          f"(batch {args.batch_size}, {args.dtype}); following looks every {args.every:.0f} s", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = args.data or Path(tmp) / "sft.jsonl"
        if args.data is None:
            write_rows(bench.realistic_rows(args.steps)[0], rows)
        for setting in SETTINGS:
            r = results[setting] = _train(setting, args, rows, Path(tmp))
            n = r["neighbour"]
            print(f"{setting:>10}: run {r['run_wall']:6.1f} s, a step {_mean(r['before'])} before, "
                  f"{_mean(r['beside'])} beside ({len(r['beside'])} steps), {_mean(r['after'])} after; "
                  f"threads changed {r['changes'] or 'never'}; neighbour {n.get('wall', 0):5.1f} s on threads "
                  f"{n.get('threads')}; both done {r['both_done']:6.1f} s after its start", flush=True)
    fixed, following = results["fixed"], results["following"]
    print(f"following / fixed: both done {following['both_done'] / fixed['both_done']:.2f}x the time; neighbour "
          f"{following['neighbour'].get('wall', 0) / max(1e-9, fixed['neighbour'].get('wall', 0)):.2f}x; "
          f"the run's whole {following['run_wall'] / fixed['run_wall']:.2f}x")


if __name__ == "__main__":
    main()
