"""Build the variant dataset: base schemas + induced mistakes, balanced by category, split 450/150.

Determinism is a feature here: ``build_dataset(schemas, seed)`` gives the same
variants, in the same order, with the same bytes on every machine. Everything
random flows from one ``random.Random(seed)``; every candidate list is sorted
before a choice is made; output JSON has a fixed field order and no timestamps.

A variant is kept only when the checker's findings on it are all explained by
its ground truth (same category, overlapping elements): a mutation that
accidentally creates a second, unrecorded structural mistake would teach the
model that real mistakes are not mistakes. Such draws are discarded and redrawn.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from r2ta.checker import check
from r2ta.eerd import CATEGORIES, EERD, Mistake, diagram_to_json
from r2ta.errors import DatasetError
from r2ta.mutations import OPERATORS, Operator
from r2ta.records import BaseSchema, Variant, variant_to_json

SplitBy = Literal["category", "schema"]
Disguise = Literal["none", "train", "test", "all"]
Densify = Literal["none", "train", "test", "all"]

# Share of variants with 1, 2 and 3 mistakes.
MISTAKE_COUNT_WEIGHTS = {1: 0.4, 2: 0.35, 3: 0.25}
MAX_ATTEMPTS_PER_VARIANT = 200


@dataclass
class BuildConfig:
    seed: int = 0
    n_variants: int = 600
    n_test: int = 150
    min_per_category: int = 40
    split_by: SplitBy = "category"
    # rename every row's names to made-up words and shuffle its constructs (r2ta.disguise)
    disguise: Disguise = "none"
    disguise_attribute_order: bool = True  # shuffle attributes too (False reproduces run64n's rows)
    # add mistakes to one split's rows until each holds ``dense_mistakes`` (r2ta.densify)
    densify: Densify = "none"
    dense_mistakes: int = 8
    dense_removals: bool = False  # favour mutations that remove a fact (a key, an end, role names, ...)


@dataclass
class BuildReport:
    """What a build produced, for the CLI, the manifest and the closing note."""

    config: BuildConfig
    category_counts: dict[str, int]
    operator_counts: dict[str, int]
    split_counts: dict[str, int]
    test_schemas: list[str] = field(default_factory=list)
    discarded_draws: int = 0


def findings_explained(findings: Iterable[Mistake], truth: list[Mistake]) -> bool:
    """True when every checker finding matches some ground-truth mistake (category + overlapping elements)."""
    for f in findings:
        if not any(f.category == t.category and set(f.elements) & set(t.elements) for t in truth):
            return False
    return True


def _applicable_categories(diagram: EERD, seed: int) -> dict[str, list[Operator]]:
    """Operators that apply to a base diagram, grouped by category (probe with a fixed seed)."""
    out: dict[str, list[Operator]] = {}
    for op in OPERATORS:
        if op.apply(diagram, random.Random(seed), frozenset()) is not None:
            out.setdefault(op.category, []).append(op)
    return out


def _weighted_order(items: list, weight: Callable[[object], float], rng: random.Random) -> list:
    """Weighted random order without replacement (Efraimidis-Spirakis): heavier items come first more often."""
    # key = u ** (1/w), compared in log space so that tiny weights do not underflow to ties
    return sorted(items, key=lambda it: -math.log(1.0 - rng.random()) / weight(it))


def _draw_variant(
    schema: BaseSchema,
    applicable: dict[str, list[Operator]],
    k: int,
    rng: random.Random,
    category_counts: Counter,
    operator_counts: Counter,
) -> tuple[EERD, list[Mistake]] | None:
    """Apply ``k`` mutations of distinct categories, favouring under-represented categories and operators.

    The order is random but weighted towards rare categories/operators, so repeated
    attempts explore different combinations instead of retrying the same one.
    """
    diagram = schema.diagram
    touched: frozenset[str] = frozenset()
    mistakes: list[Mistake] = []
    cats = _weighted_order(sorted(applicable), lambda c: 1.0 / (1 + category_counts[c]) ** 4, rng)
    for cat in cats:
        if len(mistakes) == k:
            break
        ops = _weighted_order(applicable[cat], lambda o: 1.0 / (1 + operator_counts[o.name]), rng)
        for op in ops:
            m = op.apply(diagram, random.Random(rng.getrandbits(64)), touched)
            if m is None:
                continue
            diagram, touched = m.diagram, touched | m.touched
            mistakes.append(m.mistake)
            break
    if len(mistakes) < k:
        return None
    return diagram, mistakes


def build_variants(schemas: list[BaseSchema], config: BuildConfig) -> tuple[list[Variant], BuildReport]:
    if not schemas:
        raise DatasetError("no base schemas to build from")
    schemas = sorted(schemas, key=lambda s: s.id)
    rng = random.Random(config.seed)
    applicable = {s.id: _applicable_categories(s.diagram, config.seed) for s in schemas}
    for s in schemas:
        if check(s.diagram):
            raise DatasetError(
                f"base schema {s.id!r} is not correct: the checker reports "
                f"{check(s.diagram)[0].explanation!r}; fix the schema before building"
            )
    counts_choices = list(MISTAKE_COUNT_WEIGHTS)
    weights = [MISTAKE_COUNT_WEIGHTS[c] for c in counts_choices]

    category_counts: Counter = Counter()
    operator_counts: Counter = Counter()
    seen: set[str] = {diagram_to_json(s.diagram, indent=None) for s in schemas}
    variants: list[Variant] = []
    discarded = 0
    for i in range(config.n_variants):
        schema = schemas[i % len(schemas)]
        k = rng.choices(counts_choices, weights)[0]
        k = min(k, len(applicable[schema.id]))
        for _attempt in range(MAX_ATTEMPTS_PER_VARIANT):
            variant_seed = rng.getrandbits(32)
            drawn = _draw_variant(
                schema, applicable[schema.id], k, random.Random(variant_seed), category_counts, operator_counts
            )
            if drawn is None:
                discarded += 1
                continue
            diagram, mistakes = drawn
            key = diagram_to_json(diagram, indent=None)
            if key in seen or not findings_explained(check(diagram), mistakes):
                discarded += 1
                continue
            seen.add(key)
            break
        else:
            raise DatasetError(
                f"could not draw variant {i} from base schema {schema.id!r} in "
                f"{MAX_ATTEMPTS_PER_VARIANT} attempts; the schema offers too few mutations"
            )
        for m in mistakes:
            category_counts[m.category] += 1
            operator_counts[m.operator or "?"] += 1
        variants.append(
            Variant(
                id=f"{schema.id}-{i:04d}",
                base_id=schema.id,
                seed=variant_seed,
                split="train",
                requirements=schema.requirements,
                diagram=diagram.model_copy(update={"id": f"{schema.id}-{i:04d}"}),
                mistakes=mistakes,
            )
        )
    missing = {c: category_counts[c] for c in CATEGORIES if category_counts[c] < config.min_per_category}
    if missing:
        raise DatasetError(
            f"categories below {config.min_per_category} mistakes: {missing}; add base schemas "
            "that offer these constructs or lower --min-per-category"
        )
    if config.split_by == "schema":
        test_schemas = assign_split_by_schema(variants, config.n_test, rng)
    else:
        test_schemas = []
        assign_split_by_category(variants, config.n_test, rng)
    if config.densify != "none":
        from r2ta.densify import REMOVAL_OPERATORS, densify_variants

        favour = REMOVAL_OPERATORS if config.dense_removals else frozenset()
        variants = densify_variants(variants, config.densify, config.dense_mistakes, config.seed, favour)
        category_counts = Counter(m.category for v in variants for m in v.mistakes)
        operator_counts = Counter(m.operator or "?" for v in variants for m in v.mistakes)
    if config.disguise != "none":
        from r2ta.disguise import disguise_variants

        variants = disguise_variants(
            variants, config.disguise, config.seed, shuffle_attributes=config.disguise_attribute_order
        )
    report = BuildReport(
        config=config,
        category_counts={c: category_counts[c] for c in CATEGORIES},
        operator_counts=dict(sorted(operator_counts.items())),
        split_counts=dict(Counter(v.split for v in variants)),
        test_schemas=test_schemas,
        discarded_draws=discarded,
    )
    return variants, report


def _primary_category(v: Variant, frequency: Counter) -> str:
    """The variant's rarest category: stratifying on it keeps rare categories in both splits."""
    return min((m.category for m in v.mistakes), key=lambda c: (frequency[c], c))


def assign_split_by_category(variants: list[Variant], n_test: int, rng: random.Random) -> None:
    """Stratified split: each primary-category group gives its share to test (largest remainder)."""
    frequency = Counter(m.category for v in variants for m in v.mistakes)
    groups: dict[str, list[Variant]] = {}
    for v in variants:
        groups.setdefault(_primary_category(v, frequency), []).append(v)
    share = n_test / len(variants)
    quotas = {c: len(g) * share for c, g in groups.items()}
    take = {c: int(q) for c, q in quotas.items()}
    remainder = n_test - sum(take.values())
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - take[c]), c))[:remainder]:
        take[c] += 1
    for c in sorted(groups):
        group = sorted(groups[c], key=lambda v: v.id)
        rng.shuffle(group)
        for v in group[: take[c]]:
            v.split = "test"


def assign_split_by_schema(variants: list[Variant], n_test: int, rng: random.Random) -> list[str]:
    """Unseen-schema split: whole base schemas go to test, chosen so that test is close to
    ``n_test`` variants and both splits cover as many categories as possible."""
    by_schema: dict[str, list[Variant]] = {}
    for v in variants:
        by_schema.setdefault(v.base_id, []).append(v)
    ids = sorted(by_schema)
    cats = {s: {m.category for v in by_schema[s] for m in v.mistakes} for s in ids}
    best: tuple | None = None
    for r in range(1, len(ids)):
        for combo in itertools.combinations(ids, r):
            size = sum(len(by_schema[s]) for s in combo)
            if abs(size - n_test) > n_test * 0.2:
                continue
            test_cats = set().union(*(cats[s] for s in combo))
            train_cats = set().union(*(cats[s] for s in ids if s not in combo))
            score = (-len(test_cats & train_cats), abs(size - n_test), rng.random())
            if best is None or score < best[0]:
                best = (score, combo)
    if best is None:
        raise DatasetError("no set of base schemas gives a test split near the requested size")
    test = set(best[1])
    for v in variants:
        v.split = "test" if v.base_id in test else "train"
    return sorted(test)


def write_dataset(variants: list[Variant], report: BuildReport, out_dir: str | Path) -> dict[str, str]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``manifest.json``; returns file -> sha256."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split in ("train", "test"):
        text = "".join(variant_to_json(v) + "\n" for v in variants if v.split == split)
        path = out / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # a crash never leaves a half-written split behind
        hashes[path.name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    manifest = {
        "seed": report.config.seed,
        "split_by": report.config.split_by,
        "disguise": report.config.disguise,
        "disguise_attribute_order": report.config.disguise_attribute_order,
        "densify": report.config.densify,
        "dense_mistakes": report.config.dense_mistakes,
        "dense_removals": report.config.dense_removals,
        "variants": len(variants),
        "splits": report.split_counts,
        "test_schemas": report.test_schemas,
        "category_counts": report.category_counts,
        "operator_counts": report.operator_counts,
        "sha256": hashes,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return hashes


def build_dataset(
    schemas: list[BaseSchema],
    out_dir: str | Path,
    config: BuildConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Variant], BuildReport]:
    config = config or BuildConfig()
    if progress:
        progress(f"building {config.n_variants} variants from {len(schemas)} base schemas (seed {config.seed})")
    variants, report = build_variants(schemas, config)
    write_dataset(variants, report, out_dir)
    return variants, report


def load_dataset_into_db(schemas: list[BaseSchema], variants: list[Variant], url: str | None = None) -> tuple[int, int]:
    """Load base schemas and variants into the database (idempotent: a second load adds nothing)."""
    from sqlmodel import Session

    from db.engine import get_engine, init_db
    from db.loading import load_dataset

    engine = get_engine(url)
    init_db(engine)
    with Session(engine) as session:
        load_dataset(
            [s.model_dump(mode="json") for s in schemas],
            [v.model_dump(mode="json") for v in variants],
            session=session,
        )
        session.commit()
    return len(schemas), len(variants)
