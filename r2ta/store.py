"""Queries the reasoning pipeline needs that :mod:`db.queries` does not (yet) have.

Same conventions as :mod:`db.queries`: short verb functions over its SQLModel
tables, the session as the keyword argument ``session``. Candidates to move into
``db/queries.py`` by its owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, exists, func, select

from db.models import ProposalRow, ReviewRow, TraceRow, VariantRow


def list_variants_without_trace(
    *, session: Session, model_id: str, split: str, limit: int | None = None, spread: bool = False
) -> tuple[list[VariantRow], int]:
    """Of the first ``limit`` variants of ``split``, those with no trace by ``model_id``.

    "First" is id order, or with ``spread`` round-robin across base schemas (:func:`first_variant_ids`).
    Returns (pending variants, how many of the first ``limit`` already have one).
    """
    first = first_variant_ids(split, limit, spread=spread).subquery()
    has_trace = exists().where(TraceRow.variant_id == VariantRow.id, TraceRow.model_id == model_id)
    stmt = select(VariantRow).where(col(VariantRow.id).in_(select(first.c.id)))
    pending = list(session.exec(stmt.where(~has_trace).order_by(VariantRow.id)))
    done = session.exec(select(func.count()).select_from(stmt.where(has_trace).subquery())).one()
    return pending, done


def first_reaching(*, session: Session, model_id: str, split: str, count: int, spread: bool = False) -> int | None:
    """The fewest first variants of ``split`` (id order, or round-robin across base schemas with ``spread``:
    :func:`first_variant_ids`) among which ``count`` have no trace by ``model_id``; None when fewer lack one."""
    traced = set(session.exec(select(TraceRow.variant_id).where(TraceRow.model_id == model_id)).all())
    missing = 0
    for position, variant_id in enumerate(session.exec(first_variant_ids(split, None, spread=spread)).all(), 1):
        missing += variant_id not in traced
        if missing == count:
            return position
    return None


def count_first_variants(*, session: Session, split: str, limit: int | None = None) -> int:
    """How many variants the first ``limit`` of ``split`` are (fewer when the split holds fewer; 0 when none)."""
    return session.exec(select(func.count()).select_from(first_variant_ids(split, limit).subquery())).one()


def first_variant_ids(split: str, limit: int | None, *, spread: bool = False):
    """A select of the ids of the first ``limit`` variants of ``split``.

    Id order by default — the variants of one schema are contiguous, so a small limit
    is one schema. ``spread``: round-robin across base schemas (each schema's first
    variant by id, then each one's second, ...), so a small limit covers every schema.
    """
    if not spread:
        return select(VariantRow.id).where(VariantRow.split == split).order_by(VariantRow.id).limit(limit)
    rank = func.row_number().over(partition_by=VariantRow.base_id, order_by=VariantRow.id).label("rank")
    ranked = select(VariantRow.id, VariantRow.base_id, rank).where(VariantRow.split == split).subquery()
    return select(ranked.c.id).order_by(ranked.c.rank, ranked.c.base_id).limit(limit)


def list_traces_without_proposal(
    *, session: Session, auditor_id: str, model_id: str | None = None, split: str | None = None, limit: int | None = None
) -> list[tuple[TraceRow, VariantRow]]:
    """Traces (with their variant) that no proposal by ``auditor_id`` refines yet, oldest first."""
    has_proposal = exists().where(ProposalRow.trace_id == TraceRow.id, ProposalRow.auditor_id == auditor_id)
    stmt = select(TraceRow, VariantRow).join(VariantRow, col(VariantRow.id) == TraceRow.variant_id).where(~has_proposal)
    if model_id:
        stmt = stmt.where(TraceRow.model_id == model_id)
    if split:
        stmt = stmt.where(VariantRow.split == split)
    return list(session.exec(stmt.order_by(TraceRow.id).limit(limit)))


def latest_traces(*, session: Session, model_id: str, split: str) -> list[tuple[TraceRow, VariantRow]]:
    """The newest trace by ``model_id`` of each variant of ``split`` (what evaluation scores)."""
    newest = (
        select(func.max(col(TraceRow.id)).label("id"))
        .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
        .where(TraceRow.model_id == model_id, VariantRow.split == split)
        .group_by(TraceRow.variant_id)
        .subquery()
    )
    stmt = (
        select(TraceRow, VariantRow)
        .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
        .where(col(TraceRow.id).in_(select(newest.c.id)))
        .order_by(VariantRow.id)
    )
    return list(session.exec(stmt))


@dataclass
class Decision:
    """A decision in force (the latest review of a proposal, accept or edit) with what it is about."""

    review: ReviewRow
    proposal: ProposalRow
    trace: TraceRow
    variant: VariantRow


def _decisions_in_force(stmt, split: str | None):  # noqa: ANN001, ANN202
    latest = select(func.max(col(ReviewRow.id)).label("id")).group_by(ReviewRow.proposal_id).subquery()
    stmt = (
        stmt.join(ProposalRow, col(ProposalRow.id) == ReviewRow.proposal_id)
        .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
        .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
        .where(col(ReviewRow.id).in_(select(latest.c.id)), col(ReviewRow.decision).in_(("accept", "edit")))
    )
    return stmt.where(VariantRow.split == split) if split else stmt


def list_decisions_in_force(*, session: Session, split: str | None = "train") -> list[Decision]:
    """Accept/edit decisions that are the latest review of their proposal, oldest first."""
    stmt = _decisions_in_force(select(ReviewRow, ProposalRow, TraceRow, VariantRow), split)
    return [Decision(*row) for row in session.exec(stmt.order_by(ReviewRow.id))]


def count_decisions_in_force(*, session: Session, split: str | None = "train") -> int:
    """How many :func:`list_decisions_in_force` lists: the SFT rows an export of ``split`` holds at most."""
    return session.exec(_decisions_in_force(select(func.count()).select_from(ReviewRow), split)).one()
