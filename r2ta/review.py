"""Review logic: what the review page shows for one proposal, and what a decision writes.

* :class:`ReviewFilters`, :func:`count_queue`, :func:`next_item_id`: the queue
  by category, split, base schema, model, status, and "not reviewed by me".
* :func:`load_view` turns a stored proposal into a :class:`ReviewView`: the
  model's original steps with the auditor's verdict on each (correct,
  hallucinated, inconsistent, irrelevant; struck through when the refinement
  drops them), the refined steps (kept, inserted, rewritten), both verdicts
  with what was removed and added, and the diagram elements each step names
  (:meth:`ReviewView.highlight`).
* :func:`validate_edit` reads an edited trace with the one parser
  (:func:`r2ta.prompting.parse_output`) and refuses unknown elements,
  unknown categories and anything the parser cannot read, with a message per
  problem.
* :func:`decide` saves accept / edit / reject as a review against the version
  the reviewer saw (a stale view raises :class:`db.errors.ReviewConflict` and
  writes nothing), and for accept/edit builds the SFT example and stores the
  DPO pair exactly as :func:`r2ta.pipeline.export_rows` would (same prompt,
  chosen and rejected), so export finds it already there.
* :func:`review_progress`: reviewed / total under the filters, and per reviewer.

This module must not import streamlit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, exists, func, select

from db import queries
from db.models import PROPOSAL_STATUSES, SPLITS, ProposalRow, ReviewRow, TraceRow, VariantMistakeRow, VariantRow
from r2ta.audit import EVIDENCE_AUDITOR
from r2ta.compact import ElementIndex
from r2ta.eerd import CATEGORIES, EERD, Mistake, parse_diagram
from r2ta.errors import R2taError
from r2ta.pairs import PairError, dpo_row, sft_row
from r2ta.prompting import Step, parse_output, render_step, render_trace

STATUS_ANY = "any"
REJECT_REASONS = (
    "The refinement removes a step that was right",
    "The refinement adds a mistake that is not there",
    "The refinement misses a real mistake",
    "The explanations are wrong or misleading",
    "Other (write it below)",
)
OTHER_REASON = REJECT_REASONS[-1]
# Parse errors an edit may have: the steps are renumbered 1..n when it is saved.
_TOLERATED = ("steps are not numbered",)


class DecisionRefused(R2taError):
    """A decision was not saved because what was typed is incomplete or does not fit the diagram."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


# -- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewFilters:
    """What the reviewer asked to see. ``status`` is a proposal status or ``"any"``."""

    category: str | None = None
    split: str | None = None
    base_id: str | None = None
    model_id: str | None = None
    status: str = "pending"
    not_reviewed_by: str | None = None

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise R2taError(f"unknown mistake category {self.category!r}: use one of {', '.join(CATEGORIES)}")
        if self.split is not None and self.split not in SPLITS:
            raise R2taError(f"unknown split {self.split!r}: use one of {', '.join(SPLITS)}")
        if self.status not in (*PROPOSAL_STATUSES, STATUS_ANY):
            raise R2taError(f"unknown status {self.status!r}: use one of {', '.join(PROPOSAL_STATUSES)} or {STATUS_ANY}")


def _queue(filters: ReviewFilters, *, with_status: bool = True):  # noqa: ANN202 (a SQL statement)
    stmt = (
        select(ProposalRow.id)
        .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
        .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
    )
    if with_status and filters.status != STATUS_ANY:
        stmt = stmt.where(ProposalRow.status == filters.status)
    if filters.split:
        stmt = stmt.where(VariantRow.split == filters.split)
    if filters.base_id:
        stmt = stmt.where(VariantRow.base_id == filters.base_id)
    if filters.model_id:
        stmt = stmt.where(TraceRow.model_id == filters.model_id)
    if filters.category:
        stmt = stmt.where(
            exists().where(VariantMistakeRow.variant_id == VariantRow.id, VariantMistakeRow.category == filters.category)
        )
    if filters.not_reviewed_by:
        stmt = stmt.where(
            ~exists().where(ReviewRow.proposal_id == ProposalRow.id, ReviewRow.reviewer == filters.not_reviewed_by)
        )
    return stmt


def count_queue(engine: Engine, filters: ReviewFilters) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(_queue(filters).subquery())).one()


def next_item_id(engine: Engine, filters: ReviewFilters, after_id: int | None = None) -> int | None:
    """The first proposal matching ``filters`` after ``after_id``, wrapping round to the start; None when none match."""
    with Session(engine) as session:
        stmt = _queue(filters).order_by(ProposalRow.id)
        if after_id is not None:
            found = session.exec(stmt.where(col(ProposalRow.id) > after_id).limit(1)).first()
            if found is not None:
                return found
            stmt = stmt.where(col(ProposalRow.id) != after_id)
        return session.exec(stmt.limit(1)).first()


def store_stamp(engine: Engine) -> tuple[int, int, int]:
    """(reviews, latest review id, proposals): changes whenever a decision or a proposal is stored (cache key)."""
    with Session(engine) as session:
        n, last = session.exec(select(func.count(), func.max(ReviewRow.id)).select_from(ReviewRow)).one()
        proposals = session.exec(select(func.count()).select_from(ProposalRow)).one()
    return int(n), int(last or 0), int(proposals)


def list_base_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(VariantRow.base_id).distinct().order_by(VariantRow.base_id)))


def list_models(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(TraceRow.model_id).distinct().order_by(TraceRow.model_id)))


# -- progress ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewerProgress:
    reviewer: str
    items: int  # distinct proposals reviewed
    accept: int
    edit: int
    reject: int


@dataclass(frozen=True)
class Progress:
    total: int  # proposals matching the filters, whatever their status
    reviewed: int  # of those, with a decision in force
    by_status: dict[str, int]
    reviewers: list[ReviewerProgress]

    @property
    def fraction(self) -> float:
        return self.reviewed / self.total if self.total else 0.0


def review_progress(engine: Engine, filters: ReviewFilters) -> Progress:
    """Reviewed / total among the proposals matching ``filters``, and each reviewer's share.

    The status and "not reviewed by" filters choose what to show next, not what to count: they are ignored.
    """
    scoped = any((filters.category, filters.split, filters.base_id, filters.model_id))
    scope = ReviewFilters(filters.category, filters.split, filters.base_id, filters.model_id, STATUS_ANY)
    items = select(_queue(scope, with_status=False).subquery().c.id)

    def within(stmt, column):  # noqa: ANN001, ANN202 (SQL statements)
        return stmt.where(col(column).in_(items)) if scoped else stmt

    with Session(engine) as session:
        by_status = dict(
            session.exec(within(select(ProposalRow.status, func.count()), ProposalRow.id).group_by(ProposalRow.status)).all()
        )
        rows = session.exec(
            within(select(ReviewRow.reviewer, ReviewRow.decision, func.count()), ReviewRow.proposal_id)
            .group_by(ReviewRow.reviewer, ReviewRow.decision)
        ).all()
        distinct = dict(
            session.exec(
                within(select(ReviewRow.reviewer, func.count(func.distinct(ReviewRow.proposal_id))), ReviewRow.proposal_id)
                .group_by(ReviewRow.reviewer)
            ).all()
        )
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"accept": 0, "edit": 0, "reject": 0})
    for reviewer, decision, n in rows:
        counts[reviewer][decision] = n
    reviewers = sorted(
        (ReviewerProgress(r, distinct.get(r, 0), **c) for r, c in counts.items()), key=lambda p: (-p.items, p.reviewer)
    )
    statuses = {s: by_status.get(s, 0) for s in PROPOSAL_STATUSES}
    total = sum(statuses.values())
    return Progress(total=total, reviewed=total - statuses["pending"], by_status=statuses, reviewers=reviewers)


# -- one item, as the page shows it -------------------------------------------------------


@dataclass(frozen=True)
class StepLine:
    """One step of either side. ``status``: correct/hallucinated/inconsistent/irrelevant (original),
    kept/inserted/rewritten/checked (refined; checked: a walk's bare ok step). ``dropped``: the refinement
    leaves this original step out."""

    number: int
    text: str  # the step as the trace format writes it
    element_ids: tuple[str, ...]
    status: str
    reason: str = ""
    dropped: bool = False
    elements: tuple[str, ...] = ()  # as written
    body: str = ""
    finding: str | None = None


@dataclass(frozen=True)
class VerdictLine:
    category: str
    elements: tuple[str, ...]
    explanation: str
    status: str  # kept / removed (original side) / added (refined side)
    reason: str = ""


@dataclass(frozen=True)
class PastReview:
    id: int
    reviewer: str
    decision: str
    reason: str
    version: int
    created_at: datetime


FOLD_CHECKED_OVER = 3  # a walk's checked steps are folded into one line when there are more than this


@dataclass
class ReviewView:
    """Everything the review page shows for one proposal; ``version`` is what a decision saves against."""

    proposal_id: int
    version: int
    status: str
    auditor_id: str
    trace_id: int
    model_id: str
    variant_id: str
    base_id: str
    split: str
    requirements: str
    diagram: EERD
    truth: list[Mistake]
    original: list[StepLine]
    refined: list[StepLine]
    original_verdict: list[VerdictLine]
    refined_verdict: list[VerdictLine]
    refined_text: str  # the proposal in the trace format: what "edit" starts from
    raw_output: str
    parse_errors: list[str]
    changes: list[str]
    flags: list[str]
    reviews: list[PastReview] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(m.category for m in self.truth))

    @property
    def verdict_changed(self) -> bool:
        return any(v.status != "kept" for v in self.original_verdict + self.refined_verdict)

    def refined_cards(self, show_checked: bool = False) -> tuple[list[StepLine], list[StepLine]]:
        """The refined steps to show as cards, and a walk's bare ok steps folded into one line.

        A walk (``audit_walk``) has one step per construct; on a big diagram its 2-3 findings sit among
        ~19 ``checked`` cards. Folded, the page shows the findings as cards and lists the checked
        constructs in one line; ``show_checked`` (or a walk with no more than :data:`FOLD_CHECKED_OVER`
        checked steps) shows every card.
        """
        checked = [s for s in self.refined if s.status == "checked"]
        if show_checked or len(checked) <= FOLD_CHECKED_OVER:
            return list(self.refined), []
        return [s for s in self.refined if s.status != "checked"], checked

    def focus_options(self) -> list[tuple[str, int]]:
        """("all", 0), then ("model", n) per original step and ("refined", n) per refined step."""
        return [("all", 0)] + [("model", s.number) for s in self.original] + [("refined", s.number) for s in self.refined]

    def highlight(self, focus: tuple[str, int] = ("all", 0)) -> dict[str, str]:
        """Element id -> note for the renderer: every element the model and the auditor talk about (but for a
        walk's bare ok steps, which name every construct), or only the elements of one step
        (``("model", n)`` / ``("refined", n)``)."""
        known = self.diagram.element_ids()
        notes: dict[str, list[str]] = defaultdict(list)
        side, number = focus
        sources = []
        if side in ("all", "model"):
            sources += [("model step", s) for s in self.original if side == "all" or s.number == number]
        if side in ("all", "refined"):
            sources += [("refined step", s) for s in self.refined
                        if (side == "all" and s.status != "checked") or (side == "refined" and s.number == number)]
        for label, s in sources:
            for e in s.element_ids:
                if e in known:
                    notes[e].append(f"{label} {s.number} ({s.status}): {s.body}")
        if side == "all":
            for v in self.original_verdict + self.refined_verdict:
                for e in v.elements:
                    if e in known:
                        notes[e].append(f"verdict ({v.status}) {v.category}: {v.explanation}")
        return {e: "\n".join(dict.fromkeys(n)) for e, n in notes.items()}


def _key(step: Step) -> str:
    return render_step(step.model_copy(update={"number": 0}))


def _mistake_key(m: Mistake, index: ElementIndex) -> tuple[str, frozenset[str]]:
    """A verdict entry by category and *resolved* elements: a walk names a specialization as the prompt
    shows it (``specialization of EMPLOYEE``) where a model may have written its id."""
    return m.category, frozenset(index.resolve(e) or e for e in m.elements)


def _change_dicts(changes: list) -> list[dict]:
    return [c for c in changes if isinstance(c, dict)]


def build_view(item: queries.ReviewItem) -> ReviewView:
    """A :class:`ReviewView` from the stored rows of one review item."""
    proposal, trace, variant = item.proposal, item.trace, item.variant
    diagram = parse_diagram(variant.diagram)
    parsed = parse_output(trace.raw_output, diagram)
    refined_steps = [Step.model_validate(s) for s in proposal.steps or []]
    refined_verdict = [Mistake.model_validate(m) for m in proposal.verdict or []]
    changes = _change_dicts(proposal.changes)
    audits = {int(a["step"]): a for a in proposal.step_verdicts if isinstance(a, dict) and "step" in a}

    refined_keys = {_key(s) for s in refined_steps}
    evidence_walk = proposal.auditor_id == EVIDENCE_AUDITOR
    original: list[StepLine] = []
    for s in parsed.steps:
        audit = audits.get(s.number, {})
        original.append(
            StepLine(
                number=s.number,
                text=render_step(s),
                element_ids=tuple(e for e in s.element_ids if e),
                status=audit.get("verdict", "unaudited"),
                reason=audit.get("reason", ""),
                dropped=_key(s) not in refined_keys,
                elements=tuple(s.elements),
                body=s.text,
                finding=s.finding,
            )
        )

    original_keys = {_key(s) for s in parsed.steps}
    by_content = {(tuple(s.element_ids), s.text): s for s in parsed.steps}
    inserted_notes = {c.get("step"): c.get("detail", "") for c in changes if c.get("kind") == "inserted_step"}
    refined: list[StepLine] = []
    for s in refined_steps:
        ids = tuple(e for e in s.element_ids if e)
        if _key(s) in original_keys:
            status, reason = "kept", ""
        elif (tuple(s.element_ids), s.text) in by_content:
            before = by_content[(tuple(s.element_ids), s.text)]
            status, reason = "rewritten", f"finding changed from {before.finding or 'none'} to {s.finding or 'none'}"
        elif s.finding == "ok" and s.number not in inserted_notes and (not s.text or evidence_walk):
            # a walk's bare step (audit_walk; an evidence walk's states the construct's facts): the construct
            # was checked and nothing is wrong there; shown quietly, so the steps that carry a mistake stand
            # out among the diagram's every construct
            status, reason = "checked", ""  # the card's label says it; 19 repeats of a reason would be noise
        else:
            status, reason = "inserted", inserted_notes.get(s.number, "not in the model's reasoning")
        refined.append(StepLine(s.number, render_step(s), ids, status, reason, False, tuple(s.elements), s.text, s.finding))

    index = ElementIndex(diagram)
    refined_keyset = {_mistake_key(m, index) for m in refined_verdict}
    entry_notes = {c["verdict_entry"]: c.get("reason", "") for c in changes if "verdict_entry" in c}
    removed_notes = [c.get("detail", "") for c in changes if c.get("kind") == "removed_mistake"]
    original_verdict = []
    for i, m in enumerate(parsed.verdict):
        if _mistake_key(m, index) in refined_keyset:
            original_verdict.append(VerdictLine(m.category, tuple(m.elements), m.explanation, "kept"))
            continue
        reason = entry_notes.get(i + 1) or next(
            (d for d in removed_notes if d.startswith(f"verdict entry {i + 1} ")), "removed by the auditor"
        )
        original_verdict.append(VerdictLine(m.category, tuple(m.elements), m.explanation, "removed", reason))
    original_keyset = {_mistake_key(m, index) for m in parsed.verdict}
    added_notes = [c.get("detail", "") for c in changes if c.get("kind") == "added_mistake"]
    refined_lines = []
    for m in refined_verdict:
        if _mistake_key(m, index) in original_keyset:
            refined_lines.append(VerdictLine(m.category, tuple(m.elements), m.explanation, "kept"))
        else:
            reason = next((d for d in added_notes if m.category in d), "added by the auditor")
            refined_lines.append(VerdictLine(m.category, tuple(m.elements), m.explanation, "added", reason))

    return ReviewView(
        proposal_id=proposal.id,  # type: ignore[arg-type]
        version=proposal.version,
        status=proposal.status,
        auditor_id=proposal.auditor_id,
        trace_id=trace.id,  # type: ignore[arg-type]
        model_id=trace.model_id,
        variant_id=variant.id,
        base_id=variant.base_id,
        split=variant.split,
        requirements=variant.requirements,
        diagram=diagram,
        truth=[Mistake.model_validate(m) for m in variant.mistakes],
        original=original,
        refined=refined,
        original_verdict=original_verdict,
        refined_verdict=refined_lines,
        refined_text=render_trace(refined_steps, refined_verdict),
        raw_output=trace.raw_output,
        parse_errors=list(trace.parse_errors or parsed.errors),
        changes=[c.get("detail", "") for c in changes if c.get("detail")],
        flags=[str(f) for f in proposal.flags],
        reviews=[
            PastReview(r.id, r.reviewer, r.decision, r.reason, r.proposal_version, r.created_at)  # type: ignore[arg-type]
            for r in item.reviews
        ],
    )


def load_view(engine: Engine, proposal_id: int) -> ReviewView:
    with Session(engine) as session:
        return build_view(queries.get_review_item(proposal_id, session=session))


# -- editing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedEdit:
    steps: list[Step]
    verdict: list[Mistake]

    @property
    def text(self) -> str:
        return render_trace(self.steps, self.verdict)


def validate_edit(text: str, diagram: EERD) -> CheckedEdit:
    """Read an edited trace against ``diagram``; refuse it with one message per problem.

    Refused: elements that are not in the diagram (or are ambiguous), findings
    and categories that are not ``ok`` or one of the 11 ids, steps without
    elements or finding, a missing or unreadable verdict, repeated steps or
    mistakes. Step numbers need not be in order: they are renumbered.
    """
    parsed = parse_output(text, diagram)
    problems = [e for e in parsed.errors if not e.startswith(_TOLERATED)]
    if not parsed.valid and not problems:
        problems.append("the verdict does not parse: write 'VERDICT:' then MISTAKE lines or NONE")
    if not parsed.steps and "no reasoning steps" not in " ".join(problems):
        problems.append("no reasoning steps ('Step 1 [ELEMENT, ...]: ... -> ok')")
    if problems:
        raise DecisionRefused(
            f"the edited trace was not saved: {len(problems)} problem(s); fix them and save again "
            "(elements are named as in the diagram, attributes as OWNER.Attribute; findings are ok or a category id)",
            problems,
        )
    steps = [s.model_copy(update={"number": i}) for i, s in enumerate(parsed.steps, 1)]
    return CheckedEdit(steps=steps, verdict=parsed.verdict)


# -- deciding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionResult:
    review_id: int
    decision: str
    sft_row: dict | None  # the SFT example this decision makes (accept/edit)
    pair_id: int | None  # the stored DPO pair, if the chosen trace differs from the model's
    note: str = ""


def reject_reason(choice: str | None, note: str) -> str:
    """The stored reason of a rejection: the chosen reason, plus the note; 'Other' needs the note."""
    note = (note or "").strip()
    if not choice:
        if not note:
            raise DecisionRefused("a rejection needs a reason: pick one or write it, then reject again")
        return note
    if choice == OTHER_REASON:
        if not note:
            raise DecisionRefused("you chose 'Other': write the reason in the box, then reject again")
        return note
    return f"{choice}. {note}" if note else choice


def decide(
    engine: Engine,
    *,
    proposal_id: int,
    expected_version: int,
    reviewer: str,
    decision: str,
    edited_text: str | None = None,
    reason: str = "",
) -> DecisionResult:
    """Save ``reviewer``'s decision on the proposal as seen at ``expected_version``.

    ``decision``: accept, edit (``edited_text`` in the trace format, validated
    first) or reject (``reason`` required). Raises :class:`DecisionRefused`
    before writing anything when the input is incomplete or invalid, and
    :class:`db.errors.ReviewConflict` (nothing written) when the item changed
    since it was loaded.
    """
    from r2ta.pipeline import chosen_trace  # the one definition of the accepted text (export uses it)

    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise DecisionRefused("enter your name before reviewing: every decision is stored with it")
    if decision not in ("accept", "edit", "reject"):
        raise DecisionRefused(f"unknown decision {decision!r}: use accept, edit or reject")
    reason = (reason or "").strip()
    if decision == "reject" and not reason:
        raise DecisionRefused("a rejection needs a reason: pick one or write it, then reject again")

    with Session(engine) as session:
        item = queries.get_review_item(proposal_id, session=session)
        variant, trace, proposal = item.variant, item.trace, item.proposal
        diagram = parse_diagram(variant.diagram)
        steps = verdict = None
        if decision == "edit":
            checked = validate_edit(edited_text or "", diagram)
            steps = [s.model_dump() for s in checked.steps]
            verdict = [m.model_dump() for m in checked.verdict]
        rows = None
        if decision != "reject":
            chosen = chosen_trace(SimpleNamespace(decision=decision, steps=steps, verdict=verdict), proposal)  # type: ignore[arg-type]
            try:
                sft = sft_row(variant.requirements, diagram, chosen, {"variant_id": variant.id, "proposal_id": proposal_id})
            except PairError as err:
                raise DecisionRefused(f"this trace cannot become a training example ({err}): edit it instead") from None
            rows = sft
        review = queries.create_review(
            session=session,
            proposal_id=proposal_id,
            reviewer=reviewer,
            decision=decision,
            expected_version=expected_version,
            steps=steps,
            verdict=verdict,
            reason=reason,
        )
        if rows is None:
            return DecisionResult(review.id, decision, None, None)  # type: ignore[arg-type]
        sft = rows
        sft["provenance"]["review_id"] = review.id
        chosen = chosen_trace(review, proposal)  # from the stored review: byte for byte what export builds
        try:
            pair = dpo_row(variant.requirements, diagram, chosen, trace.raw_output, dict(sft["provenance"]))
        except PairError as err:
            return DecisionResult(review.id, decision, sft, None, f"no DPO pair: {err}")  # type: ignore[arg-type]
        stored = queries.create_preference_pair(
            session=session, review_id=review.id, prompt=pair["prompt"], chosen=pair["chosen"], rejected=pair["rejected"]
        )
        return DecisionResult(review.id, decision, sft, stored.id)  # type: ignore[arg-type]
