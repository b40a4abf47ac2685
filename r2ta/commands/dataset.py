"""``r2ta dataset build|stats``: build the variant dataset and load it into the database."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from r2ta import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="build or inspect the variant dataset")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")

    b = dsub.add_parser("build", help="build variants with induced mistakes from the base schemas")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", type=Path, default=None, help="output folder (default: DATA/dataset)")
    b.add_argument("--variants", type=int, default=600)
    b.add_argument("--test", type=int, default=150, help="number of test variants")
    b.add_argument("--min-per-category", type=int, default=40)
    b.add_argument(
        "--split-by",
        choices=["category", "schema"],
        default="category",
        help="category: stratified random split; schema: whole base schemas held out (unseen-schema test)",
    )
    b.add_argument(
        "--disguise",
        choices=["none", "train", "test", "all"],
        default="none",
        help="rename each row's names to made-up words (consistently in diagram, requirements and mistakes) "
        "and shuffle its constructs, so a model cannot recall a row from the 12 base schemas",
    )
    b.add_argument(
        "--keep-attribute-order",
        action="store_true",
        help="with --disguise: keep each owner's attributes in their order (the key first, as in run64n)",
    )
    b.add_argument(
        "--densify",
        choices=["none", "train", "test", "all"],
        default="none",
        help="add mistakes to this split's rows (categories may repeat) until each holds --dense-mistakes, "
        "so that a construct's usual fact is not what a row usually says; the other split is unchanged",
    )
    b.add_argument("--dense-mistakes", type=int, default=8, help="with --densify: mistakes per row (1-20)")
    b.add_argument(
        "--dense-removals",
        action="store_true",
        help="with --densify: add mutations that remove a fact (a key, an end, role names, a superclass, "
        "a stated constraint) first, up to 3 of each per row",
    )
    b.add_argument("--schemas", type=Path, default=config.SCHEMAS_DIR, help="folder of base schema files")
    b.add_argument("--no-db", action="store_true", help="only write the JSONL files")
    b.set_defaults(func=cmd_build)

    s = dsub.add_parser("stats", help="counts per category, operator and split of a built dataset")
    s.add_argument("dir", type=Path, nargs="?", default=None)
    s.set_defaults(func=cmd_stats)


def cmd_build(args: argparse.Namespace) -> int:
    from r2ta.dataset import BuildConfig, build_dataset
    from r2ta.records import load_base_schemas

    out = args.out or config.dataset_dir()
    schemas = load_base_schemas(args.schemas)
    cfg = BuildConfig(
        seed=args.seed,
        n_variants=args.variants,
        n_test=args.test,
        min_per_category=args.min_per_category,
        split_by=args.split_by,
        disguise=args.disguise,
        disguise_attribute_order=not args.keep_attribute_order,
        densify=args.densify,
        dense_mistakes=args.dense_mistakes,
        dense_removals=args.dense_removals,
    )
    variants, report = build_dataset(schemas, out, cfg, progress=print)
    print(f"wrote {len(variants)} variants to {out}: {report.split_counts}")
    if cfg.disguise != "none":
        print(f"disguised ({cfg.disguise}): names renamed to made-up words, constructs shuffled")
    if cfg.densify != "none":
        rows = [v for v in variants if cfg.densify == "all" or v.split == cfg.densify]
        per_row = Counter(len(v.mistakes) for v in rows)
        print(
            f"densified ({cfg.densify}): mistakes per row "
            + ", ".join(f"{k}: {n} rows" for k, n in sorted(per_row.items()))
        )
    if report.test_schemas:
        print(f"test schemas (unseen in training): {', '.join(report.test_schemas)}")
    width = max(len(c) for c in report.category_counts)
    for cat, n in report.category_counts.items():
        print(f"  {cat:<{width}}  {n}")
    if not args.no_db:
        from r2ta.dataset import load_dataset_into_db

        n_schemas, n_variants = load_dataset_into_db(schemas, variants)
        print(f"loaded {n_schemas} base schemas and {n_variants} variants into the database")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from r2ta.records import read_variants

    d = args.dir or config.dataset_dir()
    rows = []
    for split in ("train", "test"):
        path = Path(d) / f"{split}.jsonl"
        if path.exists():
            rows.extend(read_variants(path))
    if not rows:
        from r2ta.errors import DatasetError

        raise DatasetError(f"no train.jsonl/test.jsonl in {d}; run `r2ta dataset build` first")
    by_split = Counter(v.split for v in rows)
    cats = Counter((m.category, v.split) for v in rows for m in v.mistakes)
    ops = Counter(m.operator for v in rows for m in v.mistakes)
    print(json.dumps({"splits": by_split, "per_category_split": {f"{c}/{s}": n for (c, s), n in sorted(cats.items())},
                      "operators": dict(sorted(ops.items()))}, indent=2))
    return 0
