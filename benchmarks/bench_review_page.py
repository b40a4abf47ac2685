"""Server-side time to render the Review page at the reference scale.

The store: the real 600-variant dataset (``r2ta seed --no-model`` into a temporary
data folder), 3 traces per variant by 3 model ids (1,800), each a plausible flawed
trace (a true step, the real mistake or not, a hallucinated claim, an element that
does not exist) audited by the deterministic auditor into a proposal, and 10,000
reviews by 5 reviewers over 1,500 of the proposals (300 stay pending).

Timed with Streamlit's ``AppTest`` (the script run of app.py + pages/review.py
in-process, no browser: the server's share of a page view), for a reviewer with
the default filters (pending, not reviewed by me):

* ``first render``: a fresh session opening the page (engine and caches warm);
* ``next item``: pressing Next (callback, queue query, loading and rendering the
  item: diagram DOT, both sides, progress) — what a reviewer waits for most;
* ``focus a step``: clicking a step's highlight button (re-render, same item).

Also the library calls alone: ``load_view`` and ``review_progress``.
Prints figures only; nothing asserts on them.

    python -m benchmarks.bench_review_page [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert
from sqlmodel import Session

REVIEWERS = ("ana", "bo", "cy", "dee", "eli")
N_REVIEWS = 10_000
REVIEWED = 1_500
MODELS = ("smollm2-135m", "smollm2-135m-sft", "smollm2-135m-sft-dpo")


def _flawed(variant, kind: int) -> str:
    """A plausible small-model trace: kind 0 finds one real mistake and hallucinates; 1 is right; 2 misses all."""
    from r2ta.eerd import Mistake
    from r2ta.prompting import Step, make_step, render_trace

    d, truth = variant.diagram, variant.mistakes
    touched = {e for m in truth for e in m.elements}
    keyed = [(e, a) for e in d.entities if not e.weak and e.id not in touched
             for a in e.attributes if a.key and not a.multivalued and not a.derived]
    steps, verdict = [], []
    if keyed:
        e, a = keyed[0]
        steps.append(make_step(0, [e.id, a.id], f"{e.name} is identified by its key {a.name}.", "ok"))
        if kind == 0:
            steps.append(make_step(0, [e.id], f"{e.name} has no key.", "missing_key"))
            verdict.append(Mistake(category="missing_key", elements=[e.id], explanation=f"{e.name} has no key."))
    if kind != 2:
        real = truth if kind == 1 else truth[:1]
        steps += [make_step(0, list(m.elements), m.explanation or m.category, m.category) for m in real]
        verdict += list(real)
    steps.append(Step(number=0, elements=["GHOST_TABLE"], element_ids=[None], text="GHOST_TABLE is unlinked.", finding="missing_element"))
    return render_trace(steps, verdict)


def populate(engine, seed: int = 0) -> dict:
    from db.models import ProposalRow, ReviewRow, TraceRow, utcnow
    from r2ta import catalog
    from r2ta.audit import audit_trace
    from r2ta.prompting import build_messages, parse_output

    rng = random.Random(seed)
    variants = [catalog.get_variant(engine, s.id) for s in catalog.list_variant_summaries(engine)]
    now = utcnow()
    traces, proposals = [], []
    for i, v in enumerate(variants):
        for k, model in enumerate(MODELS):
            raw = _flawed(v, (k + i) % 3)
            parsed = parse_output(raw, v.diagram)
            audit = audit_trace(parsed, v.diagram, v.mistakes)
            tid = len(traces) + 1
            traces.append({
                "id": tid, "variant_id": v.id, "model_id": model, "model_version": "", "created_at": now,
                "prompt": build_messages(v.requirements, v.diagram), "raw_output": raw,
                "steps": [s.model_dump() for s in parsed.steps], "verdict": [m.model_dump() for m in parsed.verdict],
                "parse_errors": parsed.errors, "prompt_tokens": 900, "completion_tokens": 160, "latency_s": 4.4,
            })
            proposals.append({
                "id": tid, "trace_id": tid, "auditor_id": audit.auditor, "created_at": now, "updated_at": now,
                "steps": [s.model_dump() for s in audit.refined_steps],
                "verdict": [m.model_dump() for m in audit.refined_verdict],
                "step_verdicts": [a.model_dump() for a in audit.step_audits],
                "inserted_steps": [s.model_dump() for s in audit.inserted_steps],
                "changes": [c.model_dump() for c in audit.changes], "flags": [], "status": "pending", "version": 1,
            })
    reviewed = rng.sample(range(len(proposals)), REVIEWED)
    reviews = []
    for r in range(N_REVIEWS):
        p = proposals[reviewed[r % REVIEWED]]
        decision = rng.choice(("accept", "accept", "edit", "reject"))
        reviews.append({
            "id": r + 1, "proposal_id": p["id"], "proposal_version": p["version"], "reviewer": REVIEWERS[r % 5],
            "decision": decision, "steps": p["steps"] if decision == "edit" else None,
            "verdict": p["verdict"] if decision == "edit" else None,
            "reason": "the refinement adds a mistake that is not there" if decision == "reject" else "", "created_at": now,
        })
        p["version"] += 1
        p["status"] = {"accept": "accepted", "edit": "edited", "reject": "rejected"}[decision]
    with Session(engine) as session:
        for table, rows in ((TraceRow, traces), (ProposalRow, proposals), (ReviewRow, reviews)):
            for start in range(0, len(rows), 1000):
                session.execute(insert(table), rows[start : start + 1000])
        session.commit()
    return {"variants": len(variants), "traces": len(traces), "proposals": len(proposals), "reviews": len(reviews),
            "pending": len(proposals) - REVIEWED}


def _stats(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<22} median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed repetitions of each action (default %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="r2ta-bench-review-") as tmp:
        os.environ["R2TA_DATA_DIR"] = tmp
        os.environ.pop("R2TA_DATABASE_URL", None)
        from streamlit.testing.v1 import AppTest

        from r2ta import catalog, review
        from r2ta.config import PROJECT_ROOT
        from r2ta.seeding import seed

        t0 = time.perf_counter()
        seed(with_model=False)
        engine = catalog.open_engine()
        made = populate(engine)
        print(f"store: {made} (built in {time.perf_counter() - t0:.1f} s, SQLite at {Path(tmp) / 'r2ta.db'})")

        app = str(PROJECT_ROOT / "app.py")

        def open_page() -> AppTest:
            at = AppTest.from_file(app, default_timeout=120)
            at.session_state["reviewer"] = "ana"
            at.run()
            at.switch_page("pages/review.py")
            at.run()
            assert not at.exception, [e.message for e in at.exception]
            return at

        open_page()  # warm: imports, engine, caches
        first = [_timed(open_page) for _ in range(max(5, args.runs // 4))]
        at = open_page()
        nexts, focus = [], []
        for _ in range(args.runs):
            nexts.append(_timed(lambda: at.button(key="btn_next").click().run()))
            assert not at.exception, [e.message for e in at.exception]
            buttons = [b for b in at.button if (b.key or "").startswith("focus_")]
            if buttons:
                focus.append(_timed(lambda: buttons[0].click().run()))
        filters = review.ReviewFilters(not_reviewed_by="ana")
        ids = [review.next_item_id(engine, filters, after_id=i * 3) for i in range(args.runs)]
        views = [_timed(lambda i=i: review.load_view(engine, i)) for i in ids if i]
        progress = [_timed(lambda: review.review_progress(engine, filters)) for _ in range(args.runs)]

        print("Review page, server side (AppTest script runs), reviewer 'ana', pending + not reviewed by ana:")
        print(_stats("first render", first))
        print(_stats("next item", nexts))
        print(_stats("focus a step", focus))
        print(_stats("load_view (library)", views))
        print(_stats("review_progress (lib)", progress))
        engine.dispose()


if __name__ == "__main__":
    main()
