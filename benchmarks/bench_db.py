"""Latency of the review queue and of saving a review, at the reference scale.

The store holds 600 variants (12 base schemas, 450 train / 150 test, 1-3
ground-truth mistakes each), 3 traces per variant (1,800), one proposal per
trace, and 10,000 reviews spread over 1,500 of the proposals (300 stay
pending). Synthetic content, realistic sizes.

Timed, each in a fresh short-lived session as a page does it:

* ``queue (list 20)``: :func:`db.queries.list_review_queue` with a random category and split;
* ``next item``: :func:`db.queries.get_next_review_item` for a reviewer, with a random category
  (the full item: proposal, trace, variant and its reviews);
* ``save review``: :func:`db.queries.create_review` against the version just loaded
  (the optimistic check, the review row, the commit with SQLite's synchronous=FULL).

Runs on a temporary SQLite file, and on a temporary PostgreSQL database when a
server answers (``R2TA_BENCH_POSTGRES_URL``, default the tests' server).
Prints figures only; nothing asserts on them.

    python -m benchmarks.bench_db [--repeats 200] [--no-postgres]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, insert
from sqlmodel import Session

from db.engine import get_engine, init_db
from db.loading import load_dataset
from db.models import ProposalRow, ReviewRow, TraceRow, utcnow
from db.queries import create_review, get_next_review_item, get_proposal, list_review_queue

CATEGORIES = (
    "missing_key",
    "weak_entity",
    "cardinality",
    "participation",
    "attribute_placement",
    "attribute_kind",
    "foreign_key_attribute",
    "relationship_structure",
    "missing_element",
    "specialization_constraint",
    "specialization_structure",
)
REVIEWERS = ("ana", "bo", "cy", "dee", "eli")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _diagram(name: str, n_entities: int = 7) -> dict:
    entities = [
        {
            "id": f"E{i}",
            "name": f"ENTITY_{i}",
            "attributes": [{"id": f"E{i}.A{j}", "name": f"Attr_{j}", "key": j == 0} for j in range(4)],
        }
        for i in range(n_entities)
    ]
    relationships = [
        {
            "id": f"R{i}",
            "name": f"REL_{i}",
            "participants": [{"entity": f"E{i}", "min": 0, "max": "N"}, {"entity": f"E{i + 1}", "min": 1, "max": 1}],
        }
        for i in range(n_entities - 1)
    ]
    return {
        "format_version": 1,
        "id": name,
        "name": name,
        "entities": entities,
        "relationships": relationships,
        "specializations": [],
        "categories": [],
    }


def populate(engine: Engine, *, n_variants: int, traces_per_variant: int, n_reviews: int, seed: int = 0) -> dict:
    """Fill an empty store at the benchmark's scale; returns what was made."""
    rng = random.Random(seed)
    requirements = "Every employee works for exactly one department. " * 40
    bases = [
        {
            "id": f"base_{b:02d}",
            "domain": "bench",
            "title": f"Base {b}",
            "requirements": requirements,
            "diagram": _diagram(f"base_{b:02d}"),
        }
        for b in range(12)
    ]
    variants = [
        {
            "id": f"base_{v % 12:02d}-{v:04d}",
            "base_id": f"base_{v % 12:02d}",
            "seed": v,
            "split": "train" if v % 4 else "test",
            "requirements": requirements,
            "diagram": _diagram(f"v{v}"),
            "mistakes": [
                {"category": c, "elements": ["E1", "R1"], "explanation": f"{c} induced", "operator": f"op_{c}"}
                for c in rng.sample(CATEGORIES, rng.randint(1, 3))
            ],
        }
        for v in range(n_variants)
    ]
    now = utcnow()
    steps = [f"Step {k}: ENTITY_{k} participates in REL_{k} with (1,1)." for k in range(8)]
    with Session(engine) as session:
        load_dataset(bases, variants, session=session)
        traces = [
            {
                "id": t + 1,
                "variant_id": variants[t // traces_per_variant]["id"],
                "model_id": f"model-{t % traces_per_variant}",
                "model_version": "",
                "prompt": [{"role": "user", "content": requirements}],
                "raw_output": "\n".join(steps),
                "steps": steps,
                "verdict": {"mistakes": []},
                "parse_errors": [],
                "prompt_tokens": 900,
                "completion_tokens": 120,
                "latency_s": 4.4,
                "created_at": now,
            }
            for t in range(n_variants * traces_per_variant)
        ]
        session.execute(insert(TraceRow), traces)
        n_proposals = len(traces)
        reviewed = max(1, n_proposals - n_proposals // 6)  # a sixth stay pending
        versions = [1] * (n_proposals + 1)
        statuses = ["pending"] * (n_proposals + 1)
        reviews = []
        for r in range(n_reviews):
            proposal_id = r % reviewed + 1
            decision = ("accept", "edit", "reject")[rng.randrange(3)]
            reviews.append(
                {
                    "id": r + 1,
                    "proposal_id": proposal_id,
                    "proposal_version": versions[proposal_id],
                    "reviewer": REVIEWERS[r % len(REVIEWERS)],
                    "decision": decision,
                    "steps": steps if decision == "edit" else None,
                    "verdict": None,
                    "reason": "",
                    "created_at": now,
                }
            )
            versions[proposal_id] += 1
            statuses[proposal_id] = {"accept": "accepted", "edit": "edited", "reject": "rejected"}[decision]
        session.execute(
            insert(ProposalRow),
            [
                {
                    "id": p,
                    "trace_id": p,
                    "auditor_id": "grounded",
                    "step_verdicts": ["correct"] * 8,
                    "inserted_steps": [],
                    "steps": steps,
                    "verdict": {"mistakes": []},
                    "changes": [],
                    "flags": [],
                    "status": statuses[p],
                    "version": versions[p],
                    "created_at": now,
                    "updated_at": now,
                }
                for p in range(1, n_proposals + 1)
            ],
        )
        for start in range(0, len(reviews), 2000):
            session.execute(insert(ReviewRow), reviews[start : start + 2000])
        session.commit()
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("trace", "proposal", "review"):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                )
            connection.exec_driver_sql("ANALYZE")
    return {
        "variants": n_variants,
        "traces": len(traces),
        "proposals": n_proposals,
        "reviews": n_reviews,
        "pending": n_proposals - reviewed,
    }


def _timed(repeats: int, action: Callable[[random.Random], Callable[[], object]]) -> list[float]:
    """Run ``action(rng)`` (untimed set-up returning the timed call) ``repeats`` times; seconds each."""
    rng = random.Random(1)
    out = []
    for _ in range(repeats):
        call = action(rng)
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def measure(engine: Engine, repeats: int) -> dict[str, list[float]]:
    def queue(rng: random.Random):
        category, split = rng.choice(CATEGORIES), rng.choice((None, "train", "test"))

        def call():
            with Session(engine) as session:
                return list_review_queue(session=session, category=category, split=split, status=None, limit=20)

        return call

    def next_item(rng: random.Random):
        category, reviewer = rng.choice(CATEGORIES), rng.choice(REVIEWERS)

        def call():
            with Session(engine) as session:
                return get_next_review_item(session=session, category=category, status=None, not_reviewed_by=reviewer)

        return call

    with Session(engine) as session:
        n_proposals = session.exec(ProposalRow.__table__.select().with_only_columns(ProposalRow.__table__.c.id)).all()
    proposal_ids = [row[0] for row in n_proposals]

    def save(rng: random.Random):
        proposal_id = rng.choice(proposal_ids)
        with Session(engine) as session:  # the page loaded the item: not timed
            version = get_proposal(proposal_id, session=session).version
        decision = rng.choice(("accept", "reject"))

        def call():
            with Session(engine) as session:
                return create_review(
                    session=session,
                    proposal_id=proposal_id,
                    reviewer="bench",
                    decision=decision,
                    expected_version=version,
                    reason="benchmark",
                )

        return call

    return {
        "queue (list 20)": _timed(repeats, queue),
        "next item": _timed(repeats, next_item),
        "save review": _timed(repeats, save),
    }


def _report(backend: str, made: dict, build_s: float, timings: dict[str, list[float]]) -> None:
    print(
        f"\n{backend}: {made['variants']} variants, {made['traces']} traces, {made['proposals']} proposals "
        f"({made['pending']} pending), {made['reviews']} reviews; built in {build_s:.1f} s"
    )
    print(f"  {'operation':<16} {'n':>5} {'median ms':>10} {'p95 ms':>9}")
    for name, seconds in timings.items():
        ms = sorted(s * 1000 for s in seconds)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        print(f"  {name:<16} {len(ms):>5} {statistics.median(ms):>10.2f} {p95:>9.2f}")


@contextmanager
def _postgres_database(admin_url: str):
    import psycopg

    name = f"r2ta_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    password = f":{info['password']}" if info.get("password") else ""
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", 5432)
    url = f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(backend: str, url: str, args: argparse.Namespace) -> None:
    engine = get_engine(url)
    try:
        init_db(engine)
        start = time.perf_counter()
        made = populate(engine, n_variants=args.variants, traces_per_variant=args.traces, n_reviews=args.reviews)
        build_s = time.perf_counter() - start
        _report(backend, made, build_s, measure(engine, args.repeats))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_db", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=600)
    parser.add_argument("--traces", type=int, default=3, help="traces per variant")
    parser.add_argument("--reviews", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per operation")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("R2TA_BENCH_POSTGRES_URL", DEFAULT_PG),
        help="a server where a temporary database may be created and dropped",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="r2ta-bench-") as tmp:
        _run("SQLite (WAL, synchronous=FULL)", f"sqlite:///{Path(tmp) / 'bench.db'}", args)
    if args.no_postgres:
        return 0
    try:
        context = _postgres_database(args.postgres_url)
        url = context.__enter__()
    except Exception as err:  # noqa: BLE001 -- any failure to reach a server just skips this part
        print(
            f"\nPostgreSQL: skipped, no server at {args.postgres_url} ({type(err).__name__}: {str(err).strip()[:120]})"
        )
        return 0
    try:
        _run("PostgreSQL", url, args)
    finally:
        context.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
