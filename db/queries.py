"""The questions the pages, the pipeline and training ask of the store, as short verb functions.

Every function takes the session as the keyword argument ``session``; callers
open short-lived ``with Session(engine) as session:`` blocks. Each write
function is one atomic change: it commits before returning, or raises and
leaves nothing behind.

Several reviewers at once: the rule
-----------------------------------
Reviews are append-only: a saved review row is never updated or deleted, and
several reviewers may review the same proposal; every review is kept. What is
refused is *deciding against a stale view*. A proposal carries a ``version``
(1 when created). Whoever shows a proposal to a person remembers the version
shown, and passes it back as ``expected_version`` when that person saves:

* :func:`create_review` and :func:`update_proposal` run
  ``UPDATE proposal SET version = version + 1 ... WHERE id = :id AND version = :expected``
  as the first statement of their transaction, and write the review (or the
  edit) in the same transaction. If that UPDATE touches no row, somebody saved
  this item after it was loaded: the save is refused with
  :class:`~db.errors.ReviewConflict` ("someone else saved this item first:
  reload to see their decision"), nothing is written and the earlier save
  stands. The reviewer reloads, sees the other decision, and may still save
  their own against the new version; then both reviews are kept, in order.
* The database backs this up on its own: ``review`` has a unique
  ``(proposal_id, proposal_version)``, so two decisions can never both be taken
  against the same version even by code that skips the UPDATE.
* On SQLite the UPDATE takes the database's write lock (the second writer waits
  up to the busy timeout, then finds the version moved); on PostgreSQL it takes
  the row lock and re-reads the row after the first writer commits. Neither
  reviewer's decision is ever silently overwritten.

A page keeps ``item.proposal.version`` from :func:`get_review_item` /
:func:`get_next_review_item`, passes it back on save, and on ``ReviewConflict``
shows the message and reloads the item.

The decision in force for a proposal is its latest review (``proposal.status``
mirrors it: pending, accepted, edited, rejected); :func:`list_pairs_ready`
uses only pairs made from a decision in force.

On SQLite, write functions that read first rely on Python's sqlite3 running
plain reads outside a transaction, so that their first write waits for the
lock (busy timeout) instead of failing on a stale read snapshot.

This module must not import anything from :mod:`r2ta` beyond ``errors``/``config``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.errors import RecordNotFound, ReviewConflict, StoreError
from db.models import (
    DECISIONS,
    EXAMPLE_KINDS,
    PROPOSAL_STATUSES,
    RUN_FINAL_STATUSES,
    RUN_STATUSES,
    SPLITS,
    STATUS_BY_DECISION,
    BaseSchemaRow,
    EvaluationResultRow,
    EvaluationRow,
    PreferencePairRow,
    ProposalRow,
    ReviewRow,
    RunExampleRow,
    RunMetricRow,
    TraceRow,
    TrainingRunRow,
    VariantMistakeRow,
    VariantRow,
    utcnow,
)

CONFLICT_MESSAGE = "someone else saved this item first: reload to see their decision"


def _require(session: Session, model: type, key: Any, what: str) -> Any:
    row = session.get(model, key)
    if row is None:
        raise RecordNotFound(f"{what} {key!r} does not exist in the database")
    return row


def _one_of(value: str | None, allowed: Sequence[str], what: str) -> None:
    if value is not None and value not in allowed:
        raise StoreError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")


# -- variants ------------------------------------------------------------------------------


def get_base_schema(base_id: str, *, session: Session) -> BaseSchemaRow:
    return _require(session, BaseSchemaRow, base_id, "base schema")


def list_base_schemas(*, session: Session) -> list[BaseSchemaRow]:
    return list(session.exec(select(BaseSchemaRow).order_by(BaseSchemaRow.id)))


def get_variant(variant_id: str, *, session: Session) -> VariantRow:
    return _require(session, VariantRow, variant_id, "variant")


def list_variants(
    *,
    session: Session,
    split: str | None = None,
    category: str | None = None,
    base_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[VariantRow]:
    """Variants in id order, optionally of one split, one base schema, or with a mistake of ``category``."""
    _one_of(split, SPLITS, "split")
    stmt = select(VariantRow)
    if split:
        stmt = stmt.where(VariantRow.split == split)
    if base_id:
        stmt = stmt.where(VariantRow.base_id == base_id)
    if category:
        stmt = stmt.where(_has_category(category))
    stmt = stmt.order_by(VariantRow.id).offset(offset).limit(limit)
    return list(session.exec(stmt))


def _has_category(category: str):  # noqa: ANN202 (a SQL expression)
    return exists().where(VariantMistakeRow.variant_id == VariantRow.id, VariantMistakeRow.category == category)


def categories_of(variant_ids: Iterable[str], *, session: Session) -> dict[str, list[str]]:
    """Each variant's ground-truth categories, in the order of its mistakes."""
    ids = list(dict.fromkeys(variant_ids))
    out: dict[str, list[str]] = {v: [] for v in ids}
    for start in range(0, len(ids), 500):
        stmt = (
            select(VariantMistakeRow.variant_id, VariantMistakeRow.category)
            .where(col(VariantMistakeRow.variant_id).in_(ids[start : start + 500]))
            .order_by(VariantMistakeRow.variant_id, VariantMistakeRow.position)
        )
        for variant_id, category in session.exec(stmt):
            out[variant_id].append(category)
    return out


# -- traces and proposals --------------------------------------------------------------------


def create_trace(
    *,
    session: Session,
    variant_id: str,
    model_id: str,
    prompt: Any,
    raw_output: str,
    model_version: str = "",
    steps: list | None = None,
    verdict: Any = None,
    parse_errors: list | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    latency_s: float | None = None,
    verdict_forced_at: int | None = None,
) -> TraceRow:
    _require(session, VariantRow, variant_id, "variant")
    if verdict_forced_at is not None and not 0 <= verdict_forced_at <= len(raw_output):
        raise ValueError(f"verdict_forced_at {verdict_forced_at} is outside the output ({len(raw_output)} characters)")
    trace = TraceRow(
        variant_id=variant_id,
        model_id=model_id,
        model_version=model_version,
        prompt=prompt,
        raw_output=raw_output,
        steps=steps,
        verdict=verdict,
        parse_errors=list(parse_errors or []),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency_s,
        verdict_forced_at=verdict_forced_at,
    )
    session.add(trace)
    session.commit()
    session.refresh(trace)
    return trace


def get_trace(trace_id: int, *, session: Session) -> TraceRow:
    return _require(session, TraceRow, trace_id, "trace")


def list_traces(*, session: Session, variant_id: str | None = None, model_id: str | None = None) -> list[TraceRow]:
    stmt = select(TraceRow)
    if variant_id:
        stmt = stmt.where(TraceRow.variant_id == variant_id)
    if model_id:
        stmt = stmt.where(TraceRow.model_id == model_id)
    return list(session.exec(stmt.order_by(TraceRow.id)))


def create_proposal(
    *,
    session: Session,
    trace_id: int,
    auditor_id: str,
    steps: list,
    verdict: Any,
    step_verdicts: list | None = None,
    inserted_steps: list | None = None,
    changes: list | None = None,
    flags: list | None = None,
) -> ProposalRow:
    _require(session, TraceRow, trace_id, "trace")
    proposal = ProposalRow(
        trace_id=trace_id,
        auditor_id=auditor_id,
        steps=list(steps),
        verdict=verdict,
        step_verdicts=list(step_verdicts or []),
        inserted_steps=list(inserted_steps or []),
        changes=list(changes or []),
        flags=list(flags or []),
    )
    session.add(proposal)
    session.commit()
    session.refresh(proposal)
    return proposal


def get_proposal(proposal_id: int, *, session: Session) -> ProposalRow:
    return _require(session, ProposalRow, proposal_id, "proposal")


_EDITABLE = ("steps", "verdict", "step_verdicts", "inserted_steps", "changes", "flags")


def update_proposal(proposal_id: int, *, session: Session, expected_version: int, **changes: Any) -> ProposalRow:
    """Save an edit of a proposal's content made against ``expected_version``.

    Refused with :class:`ReviewConflict` if the proposal changed since (see the
    module docstring). Editable fields: steps, verdict, step_verdicts,
    inserted_steps, changes, flags. Reviews are unaffected; the status stays.
    """
    unknown = sorted(set(changes) - set(_EDITABLE))
    if unknown:
        raise StoreError(f"cannot edit {', '.join(unknown)} of a proposal: editable are {', '.join(_EDITABLE)}")
    if not changes:
        raise StoreError("update_proposal needs at least one field to change")
    _bump_version(session, proposal_id, expected_version, **changes)
    session.commit()
    proposal = get_proposal(proposal_id, session=session)
    session.refresh(proposal)
    return proposal


def _bump_version(session: Session, proposal_id: int, expected_version: int, **values: Any) -> None:
    """The optimistic check: first statement of the writer's transaction (see the module docstring)."""
    stmt = (
        update(ProposalRow)
        .where(col(ProposalRow.id) == proposal_id, col(ProposalRow.version) == expected_version)
        .values(version=ProposalRow.version + 1, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if session.exec(stmt).rowcount != 1:
        session.rollback()
        raise _conflict(session, proposal_id, expected_version)


def _conflict(session: Session, proposal_id: int, expected_version: int) -> StoreError:
    proposal = session.get(ProposalRow, proposal_id)
    if proposal is None:
        return RecordNotFound(f"proposal {proposal_id} does not exist in the database")
    session.refresh(proposal)
    latest = session.exec(
        select(ReviewRow).where(ReviewRow.proposal_id == proposal_id).order_by(col(ReviewRow.id).desc()).limit(1)
    ).first()
    detail = f"proposal {proposal_id} is at version {proposal.version}, you loaded version {expected_version}"
    if latest is not None and latest.proposal_version >= expected_version:
        detail += (
            f"; latest decision: {latest.decision} by {latest.reviewer} at {latest.created_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    elif proposal.version > expected_version:
        detail += "; its content was edited"
    return ReviewConflict(f"{CONFLICT_MESSAGE} ({detail})")


# -- reviews ---------------------------------------------------------------------------------


def create_review(
    *,
    session: Session,
    proposal_id: int,
    reviewer: str,
    decision: str,
    expected_version: int,
    steps: list | None = None,
    verdict: Any = None,
    reason: str = "",
) -> ReviewRow:
    """Save ``reviewer``'s decision on the proposal as they saw it at ``expected_version``.

    ``decision`` is accept, edit (with the edited ``steps`` and/or ``verdict``)
    or reject. Raises :class:`ReviewConflict` when the proposal changed after
    it was loaded; then nothing is written (see the module docstring).
    """
    _one_of(decision, DECISIONS, "decision")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise StoreError("a review needs the reviewer's name")
    if decision == "edit" and steps is None and verdict is None:
        raise StoreError("an 'edit' decision needs the edited steps or verdict")
    if decision != "edit" and (steps is not None or verdict is not None):
        raise StoreError(f"a '{decision}' decision carries no edited steps or verdict: use 'edit'")
    _bump_version(session, proposal_id, expected_version, status=STATUS_BY_DECISION[decision])
    review = ReviewRow(
        proposal_id=proposal_id,
        proposal_version=expected_version,
        reviewer=reviewer,
        decision=decision,
        steps=steps,
        verdict=verdict,
        reason=reason or "",
    )
    session.add(review)
    try:
        session.commit()
    except IntegrityError:  # uq (proposal_id, proposal_version): the database's own guard
        session.rollback()
        raise _conflict(session, proposal_id, expected_version) from None
    session.refresh(review)
    return review


def list_reviews(*, session: Session, proposal_id: int | None = None, reviewer: str | None = None) -> list[ReviewRow]:
    stmt = select(ReviewRow)
    if proposal_id is not None:
        stmt = stmt.where(ReviewRow.proposal_id == proposal_id)
    if reviewer:
        stmt = stmt.where(ReviewRow.reviewer == reviewer)
    return list(session.exec(stmt.order_by(ReviewRow.id)))


@dataclass(frozen=True)
class QueueItem:
    """One line of the review queue: enough to list and filter, none of the heavy JSON."""

    proposal_id: int
    version: int
    status: str
    auditor_id: str
    trace_id: int
    model_id: str
    variant_id: str
    base_id: str
    split: str
    categories: tuple[str, ...]
    n_reviews: int
    created_at: datetime


@dataclass
class ReviewItem:
    """Everything the review page shows for one proposal; ``proposal.version`` is what to save against."""

    proposal: ProposalRow
    trace: TraceRow
    variant: VariantRow
    reviews: list[ReviewRow] = field(default_factory=list)


def _queue_statement(
    *,
    category: str | None,
    split: str | None,
    status: str | Sequence[str] | None,
    model_id: str | None,
    not_reviewed_by: str | None,
):  # noqa: ANN202
    _one_of(split, SPLITS, "split")
    statuses = [status] if isinstance(status, str) else list(status or [])
    for s in statuses:
        _one_of(s, PROPOSAL_STATUSES, "proposal status")
    stmt = select(ProposalRow.id).join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
    if split or category:
        stmt = stmt.join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
    if statuses:
        stmt = stmt.where(col(ProposalRow.status).in_(statuses))
    if split:
        stmt = stmt.where(VariantRow.split == split)
    if category:
        stmt = stmt.where(_has_category(category))
    if model_id:
        stmt = stmt.where(TraceRow.model_id == model_id)
    if not_reviewed_by:
        stmt = stmt.where(
            ~exists().where(ReviewRow.proposal_id == ProposalRow.id, ReviewRow.reviewer == not_reviewed_by)
        )
    return stmt.order_by(ProposalRow.id)


def list_review_queue(
    *,
    session: Session,
    category: str | None = None,
    split: str | None = None,
    status: str | Sequence[str] | None = "pending",
    model_id: str | None = None,
    not_reviewed_by: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[QueueItem]:
    """Proposals waiting for a decision, oldest first.

    ``category``: the variant has a ground-truth mistake of that category;
    ``status``: one status, several, or None for all (default: pending);
    ``not_reviewed_by``: leave out what this reviewer already reviewed.
    """
    ids = (
        _queue_statement(
            category=category, split=split, status=status, model_id=model_id, not_reviewed_by=not_reviewed_by
        )
        .offset(offset)
        .limit(limit)
    )
    n_reviews = (
        select(func.count(col(ReviewRow.id)))
        .where(ReviewRow.proposal_id == ProposalRow.id)
        .correlate(ProposalRow)
        .scalar_subquery()
    )
    page = ids.subquery()
    stmt = (
        select(
            ProposalRow.id,
            ProposalRow.version,
            ProposalRow.status,
            ProposalRow.auditor_id,
            TraceRow.id,
            TraceRow.model_id,
            VariantRow.id,
            VariantRow.base_id,
            VariantRow.split,
            n_reviews,
            ProposalRow.created_at,
        )
        .join(page, page.c.id == ProposalRow.id)
        .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
        .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
        .order_by(ProposalRow.id)
    )
    rows = list(session.exec(stmt))
    categories = categories_of((r[6] for r in rows), session=session)
    return [
        QueueItem(
            proposal_id=r[0],
            version=r[1],
            status=r[2],
            auditor_id=r[3],
            trace_id=r[4],
            model_id=r[5],
            variant_id=r[6],
            base_id=r[7],
            split=r[8],
            categories=tuple(categories[r[6]]),
            n_reviews=r[9],
            created_at=r[10],
        )
        for r in rows
    ]


def count_review_queue(
    *,
    session: Session,
    category: str | None = None,
    split: str | None = None,
    status: str | Sequence[str] | None = "pending",
    model_id: str | None = None,
    not_reviewed_by: str | None = None,
) -> int:
    ids = _queue_statement(
        category=category, split=split, status=status, model_id=model_id, not_reviewed_by=not_reviewed_by
    ).order_by(None)
    return session.exec(select(func.count()).select_from(ids.subquery())).one()


def get_review_item(proposal_id: int, *, session: Session) -> ReviewItem:
    proposal = get_proposal(proposal_id, session=session)
    trace = get_trace(proposal.trace_id, session=session)
    return ReviewItem(
        proposal=proposal,
        trace=trace,
        variant=get_variant(trace.variant_id, session=session),
        reviews=list_reviews(session=session, proposal_id=proposal_id),
    )


def get_next_review_item(
    *,
    session: Session,
    category: str | None = None,
    split: str | None = None,
    status: str | Sequence[str] | None = "pending",
    model_id: str | None = None,
    not_reviewed_by: str | None = None,
    after_id: int | None = None,
) -> ReviewItem | None:
    """The oldest proposal matching the filters (after ``after_id`` to skip ahead), or None."""
    stmt = _queue_statement(
        category=category, split=split, status=status, model_id=model_id, not_reviewed_by=not_reviewed_by
    )
    if after_id is not None:
        stmt = stmt.where(col(ProposalRow.id) > after_id)
    proposal_id = session.exec(stmt.limit(1)).first()
    return None if proposal_id is None else get_review_item(proposal_id, session=session)


# -- preference pairs ------------------------------------------------------------------------


def create_preference_pair(
    *, session: Session, review_id: int, prompt: Any, chosen: Any, rejected: Any
) -> PreferencePairRow:
    """The DPO pair made from an accept/edit review. Idempotent: the same pair again returns the stored one."""
    review = _require(session, ReviewRow, review_id, "review")
    if review.decision == "reject":
        raise StoreError(f"review {review_id} rejected its proposal: a rejected proposal makes no preference pair")
    existing = session.exec(select(PreferencePairRow).where(PreferencePairRow.review_id == review_id)).first()
    if existing is not None:
        if (existing.prompt, existing.chosen, existing.rejected) != (prompt, chosen, rejected):
            raise StoreError(
                f"review {review_id} already has preference pair {existing.id} with different content; "
                "a pair is never rewritten (training runs may point at it)"
            )
        return existing
    pair = PreferencePairRow(review_id=review_id, prompt=prompt, chosen=chosen, rejected=rejected)
    session.add(pair)
    session.commit()
    session.refresh(pair)
    return pair


def _latest_reviews():  # noqa: ANN202
    return (
        select(ReviewRow.proposal_id, func.max(col(ReviewRow.id)).label("review_id"))
        .group_by(ReviewRow.proposal_id)
        .subquery()
    )


def _pairs_ready_statement(split: str | None):  # noqa: ANN202
    _one_of(split, SPLITS, "split")
    latest = _latest_reviews()
    stmt = (
        select(PreferencePairRow)
        .join(latest, latest.c.review_id == PreferencePairRow.review_id)
        .join(ReviewRow, col(ReviewRow.id) == PreferencePairRow.review_id)
        .where(col(ReviewRow.decision).in_(("accept", "edit")))
    )
    if split:
        stmt = (
            stmt.join(ProposalRow, col(ProposalRow.id) == ReviewRow.proposal_id)
            .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
            .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
            .where(VariantRow.split == split)
        )
    return stmt


def list_pairs_ready(
    *, session: Session, split: str | None = "train", limit: int | None = None
) -> list[PreferencePairRow]:
    """Pairs to train on, oldest first: made from the decision in force (the latest review of
    its proposal, an accept or an edit) on variants of ``split`` (None: any split)."""
    stmt = _pairs_ready_statement(split).order_by(PreferencePairRow.id).limit(limit)
    return list(session.exec(stmt))


def count_pairs_ready(*, session: Session, split: str | None = "train") -> int:
    return session.exec(select(func.count()).select_from(_pairs_ready_statement(split).subquery())).one()


# -- training runs ---------------------------------------------------------------------------

# Forward only, and a finished run is final. queued -> succeeded is allowed: a
# page that synchronises from the run's files may see it only once it is done.
_RUN_TRANSITIONS = {
    "queued": ("running", "succeeded", "failed", "cancelled"),
    "running": ("succeeded", "failed", "cancelled"),
}


def create_training_run(
    *,
    session: Session,
    base_model: str,
    config: dict,
    stage: str = "",
    run_dir: str | None = None,
    parent_run_id: int | None = None,
    hardware: dict | None = None,
    log_path: str | None = None,
    output_model_id: str | None = None,
) -> TrainingRunRow:
    """A new run, queued. ``run_dir`` (the job's folder) is unique: one row per job."""
    if parent_run_id is not None:
        _require(session, TrainingRunRow, parent_run_id, "training run")
    if run_dir is not None and get_training_run_by_dir(run_dir, session=session) is not None:
        raise StoreError(f"a training run for {run_dir} is already recorded: update it instead")
    run = TrainingRunRow(
        run_dir=run_dir,
        stage=stage,
        base_model=base_model,
        config=dict(config),
        parent_run_id=parent_run_id,
        hardware=dict(hardware or {}),
        log_path=log_path,
        output_model_id=output_model_id,
    )
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def get_training_run(run_id: int, *, session: Session) -> TrainingRunRow:
    return _require(session, TrainingRunRow, run_id, "training run")


def get_training_run_by_dir(run_dir: str, *, session: Session) -> TrainingRunRow | None:
    return session.exec(select(TrainingRunRow).where(TrainingRunRow.run_dir == run_dir)).first()


def list_training_runs(*, session: Session, status: str | None = None) -> list[TrainingRunRow]:
    _one_of(status, RUN_STATUSES, "run status")
    stmt = select(TrainingRunRow)
    if status:
        stmt = stmt.where(TrainingRunRow.status == status)
    return list(session.exec(stmt.order_by(col(TrainingRunRow.id).desc())))


def update_training_run(
    run_id: int,
    *,
    session: Session,
    status: str | None = None,
    stage: str | None = None,
    progress: float | None = None,
    artefacts: dict | None = None,
    output_model_id: str | None = None,
    hardware: dict | None = None,
    error: str | None = None,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> TrainingRunRow:
    """Record a run's progress or a change of status (queued → running → succeeded/failed/cancelled).

    A finished run is final: changing it raises. Starting sets ``started_at``,
    finishing sets ``ended_at`` (now, unless given: a synchroniser passes the
    times from the run's files, as naive UTC); ``artefacts`` are merged into
    what is recorded.
    The job process and the Train page (cancel) both write here, so the change
    is applied only if the status is still the one read (else it raises).
    """
    run = get_training_run(run_id, session=session)
    session.refresh(run)
    seen = run.status
    if seen in RUN_FINAL_STATUSES:
        raise StoreError(f"training run {run_id} already {seen}: start a new run instead")
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if status is not None and status != seen:
        _one_of(status, RUN_STATUSES, "run status")
        if status not in _RUN_TRANSITIONS.get(seen, ()):
            raise StoreError(f"training run {run_id} cannot go from {seen} to {status}")
        values["status"] = status
        if run.started_at is None and status in ("running", "succeeded"):
            values["started_at"] = started_at or now
        if status in RUN_FINAL_STATUSES:
            values["ended_at"] = ended_at or now
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        if not 0.0 <= progress <= 1.0:
            raise StoreError(f"progress must be between 0 and 1, got {progress}")
        values["progress"] = float(progress)
    if artefacts:
        values["artefacts"] = {**run.artefacts, **artefacts}
    if output_model_id is not None:
        values["output_model_id"] = output_model_id
    if hardware is not None:
        values["hardware"] = dict(hardware)
    if error is not None:
        values["error"] = error
    stmt = (
        update(TrainingRunRow)
        .where(col(TrainingRunRow.id) == run_id, col(TrainingRunRow.status) == seen)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if session.exec(stmt).rowcount != 1:
        session.rollback()
        session.refresh(run)
        raise StoreError(f"training run {run_id} went from {seen} to {run.status} meanwhile: nothing was changed")
    session.commit()
    session.refresh(run)
    return run


def append_run_metrics(run_id: int, *, session: Session, step: int, metrics: dict, stage: str = "") -> RunMetricRow:
    _require(session, TrainingRunRow, run_id, "training run")
    row = RunMetricRow(run_id=run_id, stage=stage, step=step, metrics=dict(metrics))
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def list_run_metrics(run_id: int, *, session: Session, after_id: int | None = None) -> list[RunMetricRow]:
    """A run's logged metrics in order; ``after_id`` returns only what came since (for polling pages)."""
    stmt = select(RunMetricRow).where(RunMetricRow.run_id == run_id)
    if after_id is not None:
        stmt = stmt.where(col(RunMetricRow.id) > after_id)
    return list(session.exec(stmt.order_by(RunMetricRow.id)))


def add_run_examples(
    run_id: int, *, session: Session, kind: str, review_ids: Iterable[int] = (), pair_ids: Iterable[int] = ()
) -> int:
    """Record which examples a run trained on: SFT examples by review, DPO examples by pair. Idempotent."""
    _one_of(kind, EXAMPLE_KINDS, "example kind")
    _require(session, TrainingRunRow, run_id, "training run")
    wanted: dict[int, int | None] = {int(r): None for r in review_ids}
    pair_ids = [int(p) for p in pair_ids]
    if pair_ids:
        pairs = {
            p.id: p for p in session.exec(select(PreferencePairRow).where(col(PreferencePairRow.id).in_(pair_ids)))
        }
        missing = sorted(set(pair_ids) - set(pairs))
        if missing:
            raise RecordNotFound(f"preference pairs {missing} do not exist in the database")
        wanted.update({pairs[p].review_id: p for p in pair_ids})
    if kind == "dpo" and any(p is None for p in wanted.values()):
        raise StoreError("DPO examples are recorded by pair id (pair_ids=...), not by review id")
    known = set(
        session.exec(select(RunExampleRow.review_id).where(RunExampleRow.run_id == run_id, RunExampleRow.kind == kind))
    )
    new = [RunExampleRow(run_id=run_id, kind=kind, review_id=r, pair_id=p) for r, p in wanted.items() if r not in known]
    session.add_all(new)
    try:
        session.commit()
    except IntegrityError as err:
        session.rollback()
        raise RecordNotFound(
            f"cannot record examples of run {run_id}: a review id does not exist ({err.orig})"
        ) from None
    return len(new)


@dataclass(frozen=True)
class Provenance:
    """Where a trained model's examples came from, run by run up to its base model."""

    run_ids: tuple[int, ...]
    review_ids: tuple[int, ...]
    pair_ids: tuple[int, ...]
    proposal_ids: tuple[int, ...]
    trace_ids: tuple[int, ...]
    variant_ids: tuple[str, ...]


def get_run_provenance(run_id: int, *, session: Session) -> Provenance:
    """The reviews, pairs, proposals, traces and variants behind a run and its parent runs."""
    run_ids: list[int] = []
    current: int | None = run_id
    while current is not None and current not in run_ids:
        run_ids.append(current)
        current = get_training_run(current, session=session).parent_run_id
    stmt = (
        select(RunExampleRow.review_id, RunExampleRow.pair_id, ProposalRow.id, TraceRow.id, TraceRow.variant_id)
        .join(ReviewRow, col(ReviewRow.id) == RunExampleRow.review_id)
        .join(ProposalRow, col(ProposalRow.id) == ReviewRow.proposal_id)
        .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
        .where(col(RunExampleRow.run_id).in_(run_ids))
    )
    rows = list(session.exec(stmt))
    return Provenance(
        run_ids=tuple(run_ids),
        review_ids=tuple(sorted({r[0] for r in rows})),
        pair_ids=tuple(sorted({r[1] for r in rows if r[1] is not None})),
        proposal_ids=tuple(sorted({r[2] for r in rows})),
        trace_ids=tuple(sorted({r[3] for r in rows})),
        variant_ids=tuple(sorted({r[4] for r in rows})),
    )


# -- evaluations -----------------------------------------------------------------------------


def create_evaluation(
    *,
    session: Session,
    model_id: str,
    split: str,
    metrics: dict,
    results: Sequence[dict] = (),
    run_id: int | None = None,
    settings: dict | None = None,
) -> EvaluationRow:
    """Store a model's scores on a split and its per-variant results in one transaction.

    Each result is ``{"variant_id", "predicted": [...], "metrics": {...}, "trace_id": optional}``.
    ``settings``: what the model was asked under (its answer budget; None: not recorded).
    """
    _one_of(split, SPLITS, "split")
    if run_id is not None:
        _require(session, TrainingRunRow, run_id, "training run")
    evaluation = EvaluationRow(
        model_id=model_id, split=split, metrics=dict(metrics), run_id=run_id, n_variants=len(results),
        settings=None if settings is None else dict(settings),
    )
    session.add(evaluation)
    session.flush()
    for result in results:
        unknown = set(result) - {"variant_id", "predicted", "metrics", "trace_id"}
        if unknown or "variant_id" not in result:
            session.rollback()
            raise StoreError(
                f"an evaluation result has keys {sorted(result)}: use variant_id, predicted, metrics, trace_id"
            )
        session.add(
            EvaluationResultRow(
                evaluation_id=evaluation.id,
                variant_id=result["variant_id"],
                trace_id=result.get("trace_id"),
                predicted=list(result.get("predicted") or []),
                metrics=dict(result.get("metrics") or {}),
            )
        )
    try:
        session.commit()
    except IntegrityError as err:
        session.rollback()
        raise StoreError(
            f"cannot store the evaluation of {model_id}: a result names an unknown variant or trace, "
            f"or a variant twice ({err.orig})"
        ) from None
    session.refresh(evaluation)
    return evaluation


def list_evaluation_results(evaluation_id: int, *, session: Session) -> list[EvaluationResultRow]:
    _require(session, EvaluationRow, evaluation_id, "evaluation")
    stmt = select(EvaluationResultRow).where(EvaluationResultRow.evaluation_id == evaluation_id)
    return list(session.exec(stmt.order_by(EvaluationResultRow.variant_id)))


@dataclass(frozen=True)
class ModelMetrics:
    model_id: str
    evaluation_id: int
    run_id: int | None
    split: str
    n_variants: int
    metrics: dict
    created_at: datetime
    settings: dict | None = None  # what the model was asked under; None: not recorded


def metrics_by_model(*, session: Session, split: str = "test", every: bool = False) -> list[ModelMetrics]:
    """Each model's latest evaluation on ``split``, by model id; ``every``: all of them, each model's newest first."""
    _one_of(split, SPLITS, "split")
    if every:
        stmt = (select(EvaluationRow).where(EvaluationRow.split == split)
                .order_by(EvaluationRow.model_id, col(EvaluationRow.id).desc()))
    else:
        latest = (
            select(func.max(col(EvaluationRow.id)).label("id"))
            .where(EvaluationRow.split == split)
            .group_by(EvaluationRow.model_id)
            .subquery()
        )
        stmt = select(EvaluationRow).join(latest, latest.c.id == EvaluationRow.id).order_by(EvaluationRow.model_id)
    return [
        ModelMetrics(
            model_id=e.model_id,
            evaluation_id=e.id,
            run_id=e.run_id,
            split=e.split,
            n_variants=e.n_variants,
            metrics=e.metrics,
            created_at=e.created_at,
            settings=e.settings,
        )
        for e in session.exec(stmt)
    ]


# -- the dashboard -----------------------------------------------------------------------------


def count_by_stage(*, session: Session) -> dict[str, int]:
    """How far the loop has got: variants → traces → proposals (by status) → reviews → pairs → runs → evaluations."""
    counts = {
        "base_schemas": session.exec(select(func.count()).select_from(BaseSchemaRow)).one(),
        "variants": session.exec(select(func.count()).select_from(VariantRow)).one(),
        "variants_traced": session.exec(select(func.count(func.distinct(TraceRow.variant_id)))).one(),
        "traces": session.exec(select(func.count()).select_from(TraceRow)).one(),
        "proposals": session.exec(select(func.count()).select_from(ProposalRow)).one(),
    }
    by_status = dict(session.exec(select(ProposalRow.status, func.count()).group_by(ProposalRow.status)).all())
    counts.update({status: by_status.get(status, 0) for status in PROPOSAL_STATUSES})
    counts["reviews"] = session.exec(select(func.count()).select_from(ReviewRow)).one()
    counts["pairs"] = session.exec(select(func.count()).select_from(PreferencePairRow)).one()
    counts["pairs_ready"] = count_pairs_ready(session=session, split=None)
    by_run = dict(session.exec(select(TrainingRunRow.status, func.count()).group_by(TrainingRunRow.status)).all())
    counts["training_runs"] = sum(by_run.values())
    counts["training_runs_succeeded"] = by_run.get("succeeded", 0)
    counts["evaluations"] = session.exec(select(func.count()).select_from(EvaluationRow)).one()
    return counts
