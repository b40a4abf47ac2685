"""What the pages read about the dataset: base schemas, variants and stage counts, as typed records.

A thin layer over :mod:`db.queries` that turns rows back into the library's
pydantic records (so pages never see SQL rows or JSON columns), and the one
place that opens the engine for the app. No streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from db import queries
from db.engine import database_url, get_engine, init_db
from r2ta.eerd import EERD, Mistake, parse_diagram
from r2ta.records import BaseSchema, Variant


__all__ = ["database_url", "open_engine"]


def open_engine(url: str | None = None) -> Engine:
    engine = get_engine(url)
    init_db(engine)
    return engine


def is_seeded(engine: Engine) -> bool:
    with Session(engine) as session:
        return queries.count_by_stage(session=session)["variants"] > 0


def stage_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return queries.count_by_stage(session=session)


def next_steps(counts: dict[str, int], engine: Engine) -> list[tuple[str, str, str, str]]:
    """What the Overview suggests doing now, from :func:`stage_counts`: (text, page, link label, icon) each, in the
    loop's order — proposals to review, reviewed data to train on, models to score. The link labels are not the
    sidebar's page names (a page has one link by its name)."""
    from r2ta.train_view import training_rows

    steps = []
    pending = counts.get("pending", 0)
    if pending:
        steps.append((f"**{pending}** proposal{'s' if pending != 1 else ''} wait for review.", "pages/review.py",
                      "Review them", ":material/rate_review:"))
    else:
        steps.append(("No proposal waits for review: let the model reason about the next train variants.",
                      "pages/review.py", "More to review", ":material/psychology:"))
    rows = training_rows(engine=engine)
    if rows.sft and rows.dpo and not counts.get("training_runs_succeeded"):
        steps.append((f"**{rows.sft}** reviewed examples and **{rows.dpo}** DPO pairs are ready: train the model "
                      "on them (SFT, then DPO).", "pages/train.py", "Train on them", ":material/model_training:"))
    elif rows.sft and rows.dpo:
        steps.append((f"**{rows.sft}** reviewed examples and **{rows.dpo}** DPO pairs now: train again on what was "
                      "reviewed since.", "pages/train.py", "Train on them", ":material/model_training:"))
    if not counts.get("evaluations"):
        steps.append(("No model is scored yet: evaluate the structural checker (seconds) and the base model on the "
                      "test split.", "pages/evaluate.py", "Score models", ":material/analytics:"))
    return steps


def list_base_schemas(engine: Engine) -> list[BaseSchema]:
    with Session(engine) as session:
        rows = queries.list_base_schemas(session=session)
        return [
            BaseSchema(id=r.id, domain=r.domain, title=r.title, requirements=r.requirements, diagram=parse_diagram(r.diagram))
            for r in rows
        ]


@dataclass(frozen=True)
class VariantSummary:
    id: str
    base_id: str
    split: str
    categories: tuple[str, ...]


def list_variant_summaries(
    engine: Engine, *, base_id: str | None = None, split: str | None = None, category: str | None = None
) -> list[VariantSummary]:
    with Session(engine) as session:
        rows = queries.list_variants(session=session, base_id=base_id, split=split, category=category)
        return [
            VariantSummary(r.id, r.base_id, r.split, tuple(m["category"] for m in r.mistakes)) for r in rows
        ]


def get_variant(engine: Engine, variant_id: str) -> Variant:
    with Session(engine) as session:
        r = queries.get_variant(variant_id, session=session)
        return Variant(
            id=r.id,
            base_id=r.base_id,
            seed=r.seed,
            split=r.split,
            requirements=r.requirements,
            diagram=parse_diagram(r.diagram),
            mistakes=[Mistake.model_validate(m) for m in r.mistakes],
        )


def mistake_highlights(diagram: EERD, mistakes: list[Mistake]) -> dict[str, str]:
    """Element id -> note for the renderer: every element a mistake points at, with its explanation."""
    ids = diagram.element_ids()
    notes: dict[str, list[str]] = {}
    for m in mistakes:
        for e in m.elements:
            if e in ids:
                notes.setdefault(e, []).append(f"{m.category}: {m.explanation}")
    return {e: "\n".join(n) for e, n in notes.items()}
