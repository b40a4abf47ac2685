"""How long is the walk a trained model is taught to write, per base schema, and which budget fits it?

The walk auditor's target (:func:`r2ta.audit.walk_steps` rendered by :func:`r2ta.prompting.render_trace`)
writes one line per construct and, for each mistake, a step with its explanation plus a verdict line. A model
trained on it needs that many tokens to finish; an answer budget shorter than that cuts the walk (run450c:
384 tokens cut 75 of 150 test answers). This prints, for the dataset's variants (built as ``r2ta seed`` builds
them, no database), the target's length in the model's tokens by base schema, a least-squares fit on the
construct and mistake counts, and how many targets a flat budget and a budget per construct
(``r2ta eval --max-new-tokens M --tokens-per-construct N``) would leave uncut.

    python scripts/walk_lengths.py [--model DIR] [--split test] [--budget 384] [--per-construct 320:20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r2ta.audit import constructs, walk_steps  # noqa: E402
from r2ta.pipeline import answer_budget  # noqa: E402
from r2ta.prompting import render_trace  # noqa: E402


@dataclass
class Target:
    variant_id: str
    schema: str
    split: str
    constructs: int
    mistakes: int
    tokens: int  # the walk target, mistakes and verdict included
    all_ok: int  # the same walk with no mistake: the least a walk of this diagram takes


def targets(variants, tokenizer) -> list[Target]:
    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    out = []
    for v in variants:
        walk = render_trace(walk_steps(v.diagram, v.mistakes), v.mistakes)
        out.append(Target(v.id, v.base_id, v.split, len(constructs(v.diagram)), len(v.mistakes), n_tokens(walk),
                          n_tokens(render_trace(walk_steps(v.diagram, []), []))))
    return out


def uncut(rows: list[Target], variants_by_id: dict, max_new_tokens: int, per_construct: int = 0) -> tuple[int, int]:
    """(targets that fit the budget, tokens the budgets add up to)."""
    fit = total = 0
    for t in rows:
        budget = answer_budget(variants_by_id[t.variant_id].diagram, max_new_tokens, per_construct)
        fit += t.tokens <= budget
        total += budget
    return fit, total


def fit_line(rows: list[Target]) -> tuple[float, float, float]:
    """Least squares: tokens ~ a * constructs + b * mistakes + c."""
    import numpy as np

    x = np.array([[t.constructs, t.mistakes, 1.0] for t in rows])
    coef, *_ = np.linalg.lstsq(x, np.array([float(t.tokens) for t in rows]), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def report(rows: list[Target], variants_by_id: dict, budget: int, per: list[tuple[int, int]]) -> str:
    by = defaultdict(list)
    for t in rows:
        by[t.schema].append(t)
    lines = [f"{'base schema':28} {'n':>3} {'constructs':>10} {'all-ok walk':>11} {'target min / median / max':>26}"]
    for schema, ts in sorted(by.items(), key=lambda kv: statistics.median(t.tokens for t in kv[1])):
        lengths = [t.tokens for t in ts]
        lines.append(f"{schema[:28]:28} {len(ts):3d} {statistics.median(t.constructs for t in ts):10.0f} "
                     f"{statistics.median(t.all_ok for t in ts):11.0f} "
                     f"{min(lengths):8d} / {statistics.median(lengths):6.0f} / {max(lengths):5d}")
    if len(rows) >= 3:
        a, b, c = fit_line(rows)
        lines.append(f"fit: tokens ~ {a:.1f} x constructs + {b:.1f} x mistakes {c:+.1f}")
    lines.append("")
    lines.append(f"budgets on these {len(rows)} variants: targets that fit, and the tokens the budgets add up to")
    for m, n in [(budget, 0), *per]:
        fit, total = uncut(rows, variants_by_id, m, n)
        label = f"--max-new-tokens {m}" + (f" --tokens-per-construct {n}" if n else "")
        lines.append(f"  {label:48} {fit:4d} of {len(rows)} fit   budgets {total:,} tokens")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a model folder whose tokenizer counts (default: the embedded model)")
    p.add_argument("--split", choices=["train", "test", "all"], default="all")
    p.add_argument("--budget", type=int, default=384, help="a flat budget to compare (default: %(default)s)")
    p.add_argument("--per-construct", action="append", default=[], metavar="M:N",
                   help="a budget per construct to compare, max-new-tokens M plus N a construct (repeatable)")
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    from r2ta.dataset import BuildConfig, build_variants
    from r2ta.embedded_model import embedded_model_dir
    from r2ta.records import load_base_schemas

    per = []
    for item in args.per_construct or ["320:20", "256:24", "384:16"]:
        try:
            m, n = (int(x) for x in item.split(":"))
        except ValueError:
            p.error(f"--per-construct takes M:N (two whole numbers), got {item!r}")
        per.append((m, n))
    model = args.model or embedded_model_dir()
    if not (model / "tokenizer.json").exists() and not (model / "tokenizer_config.json").exists():
        p.error(f"no tokenizer in {model}: run 'r2ta seed' (the embedded model) or pass --model")
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    variants = [v for v in build_variants(load_base_schemas(), BuildConfig(seed=0))[0]
                if args.split == "all" or v.split == args.split]
    print(report(targets(variants, tokenizer), {v.id: v for v in variants}, args.budget, per))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
