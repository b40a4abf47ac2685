"""Core benchmark: build, check and render the 600-variant dataset; tokens per diagram, JSON vs compact.

    python -m benchmarks.bench_core            # all of it
    python -m benchmarks.bench_core --no-render

Prints figures; asserts nothing. Ratios (compact/JSON tokens) are measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _tokenizer():
    """The embedded model's tokenizer, or None with a reason when the model is not fetched yet."""
    try:
        from r2ta.embedded_model import ensure_embedded_model
    except ImportError:
        return None, "r2ta.embedded_model is not available"
    from transformers import AutoTokenizer

    path = ensure_embedded_model()
    return AutoTokenizer.from_pretrained(str(path)), None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-render", action="store_true", help="skip rendering (needs the dot binary)")
    parser.add_argument("--render-limit", type=int, default=120, help="variants rendered to SVG (each takes ~1 s of dot)")
    args = parser.parse_args(argv)

    from r2ta.checker import check
    from r2ta.compact import to_compact
    from r2ta.dataset import BuildConfig, build_dataset
    from r2ta.eerd import diagram_to_json
    from r2ta.records import load_base_schemas

    schemas = load_base_schemas()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        variants, report = build_dataset(schemas, Path(tmp), BuildConfig(seed=0))
        build_s = time.perf_counter() - t0
    print(f"build: {len(variants)} variants from {len(schemas)} base schemas in {build_s:.2f} s "
          f"({report.discarded_draws} draws discarded)")

    t0 = time.perf_counter()
    n_findings = sum(len(check(v.diagram)) for v in variants)
    check_s = time.perf_counter() - t0
    print(f"check: {len(variants)} variants in {check_s:.3f} s "
          f"({check_s / len(variants) * 1e3:.2f} ms each, {n_findings} findings)")

    if not args.no_render:
        from r2ta.render import render, to_dot

        subset = variants[: args.render_limit]
        t0 = time.perf_counter()
        for v in subset:
            to_dot(v.diagram, highlight=[e for m in v.mistakes for e in m.elements])
        dot_s = time.perf_counter() - t0
        times = []
        for v in subset:
            t = time.perf_counter()
            render(v.diagram, "svg", highlight=[e for m in v.mistakes for e in m.elements])
            times.append(time.perf_counter() - t)
        print(f"render DOT source: {len(subset)} variants in {dot_s:.3f} s")
        print(f"render SVG with dot: {len(subset)} variants in {sum(times):.1f} s "
              f"(median {statistics.median(times) * 1e3:.0f} ms, p95 "
              f"{sorted(times)[int(0.95 * len(times)) - 1] * 1e3:.0f} ms)")

    tok, why = _tokenizer()
    if tok is None:
        print(f"tokens: skipped ({why})")
        return
    json_tokens = [len(tok(diagram_to_json(s.diagram, indent=None))["input_ids"]) for s in schemas]
    pretty_tokens = [len(tok(diagram_to_json(s.diagram))["input_ids"]) for s in schemas]
    compact_tokens = [len(tok(to_compact(s.diagram))["input_ids"]) for s in schemas]
    print("tokens per base diagram (embedded model's tokenizer):")
    print(f"  {'schema':<28}{'json':>8}{'json(indent)':>14}{'compact':>9}{'ratio':>8}")
    for s, j, p, c in zip(schemas, json_tokens, pretty_tokens, compact_tokens):
        print(f"  {s.id:<28}{j:>8}{p:>14}{c:>9}{c / j:>8.2f}")
    print(f"  {'mean':<28}{statistics.mean(json_tokens):>8.0f}{statistics.mean(pretty_tokens):>14.0f}"
          f"{statistics.mean(compact_tokens):>9.0f}{sum(compact_tokens) / sum(json_tokens):>8.2f}")


if __name__ == "__main__":
    main()
