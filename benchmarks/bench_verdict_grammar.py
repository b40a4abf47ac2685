"""What decoding a verdict under the grammar (r2ta.grammar) costs, against free decoding, in one run.

    python -m benchmarks.bench_verdict_grammar                  # 8 variants, batch 8, 96 verdict tokens
    python -m benchmarks.bench_verdict_grammar --variants 16 --verdict-tokens 128

Each prompt is a real one (:func:`r2ta.prompting.build_messages` on a variant mutated from a
base schema) whose answer is a short step and ``VERDICT:`` — exactly what ``ask_for_verdicts``
hands the model. The same prompts are continued by the embedded model free and under the
verdict grammar (the loop stop off in both). The grammar can end a row early (the model
chooses to stop after a line), so the two write different amounts: the figures to compare
are milliseconds per generated token, printed with the one-off costs (the line-break token
scan of the vocabulary, once per tokenizer; building each diagram's tries) and how many
verdicts parse in each mode. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--verdict-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])

    from benchmarks.bench_generation import _cases, _device_name
    from r2ta import grammar
    from r2ta.backends import get_backend
    from r2ta.embedded_model import ensure_embedded_model
    from r2ta.prompting import parse_output

    ensure_embedded_model()
    cases = _cases(args.variants, args.seed)
    prompts = [c[0] for c in cases]
    prefixes = [f"Step 1 [{next(iter(d.element_ids()))}]: checked against the requirements. -> ok\nVERDICT:\n"
                for _, d in cases]
    free = get_backend("embedded", batch_size=args.batch_size, stop_on_repetition=False)
    free.load()
    tok = free.tokenizer
    free.generate(prompts[:1], max_new_tokens=4, prefixes=prefixes[:1])  # warm-up

    t0 = time.perf_counter()
    g = grammar.VerdictGrammar(tok, cases[0][1].element_ids())
    g.line_break_tokens()
    scan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _, diagram in cases:
        grammar.VerdictGrammar(tok, diagram.element_ids())
    build_ms = (time.perf_counter() - t0) * 1000 / len(cases)

    rows = []
    for label, kwargs in (("free", {}), ("grammar", {"grammars": [d.element_ids() for _, d in cases]})):
        t0 = time.perf_counter()
        gens = free.generate(prompts, max_new_tokens=args.verdict_tokens, prefixes=prefixes, **kwargs)
        wall = time.perf_counter() - t0
        tokens = sum(x.completion_tokens or 0 for x in gens)
        valid = sum(parse_output(p + x.text, d).valid for p, x, (_, d) in zip(prefixes, gens, cases))
        rows.append((label, wall, tokens, valid))

    print(f"device: {_device_name(free.device)}")
    print(f"{len(cases)} verdicts, batch {args.batch_size}, up to {args.verdict_tokens} tokens each")
    print(f"one-off: line-break scan of the {len(tok):,}-token vocabulary {scan_s:.2f} s (once per tokenizer); "
          f"tries per diagram {build_ms:.1f} ms")
    print(f"{'mode':8} {'wall s':>8} {'tokens':>7} {'ms/token':>9} {'valid':>6}")
    for label, wall, tokens, valid in rows:
        print(f"{label:8} {wall:8.2f} {tokens:7d} {1000 * wall / max(tokens, 1):9.1f} {valid:4d}/{len(cases)}")
    (_, fw, ft, _), (_, gw, gt, _) = rows
    if ft and gt:
        print(f"grammar / free, time per token: {(gw / gt) / (fw / ft):.2f}x")


if __name__ == "__main__":
    main()
