"""Agreement between reviewers: Cohen's kappa per category and overall, disagreements, resolutions.

Ratings: each reviewer's *latest* decision (accept / edit / reject) on each
proposal, leaving out resolutions. An item counts once it has ratings from two
or more reviewers; every unordered pair of its reviewers gives one pair of
labels (the reviewer whose name sorts first is rater A). Cohen's kappa over
the pooled pairs::

    kappa = (p_o - p_e) / (1 - p_e)

with p_o the share of pairs that agree and p_e the agreement expected from
each rater position's label frequencies. Per category: the items whose variant
has a ground-truth mistake of that category (an item with two categories
counts in both). Kappa is None where it is undefined (no pairs, or both raters
always used one and the same label: p_e = 1).

A *disagreement* is an item whose reviewers' latest decisions differ. A
resolution is an ordinary review (so the decision in force, the export and the
training data follow it) whose reason starts with :data:`RESOLUTION_PREFIX`
and that adopts one reviewer's decision (with that reviewer's edited text, for
an edit). An item is resolved while its latest review is a resolution.

This module must not import streamlit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db import queries
from db.models import DECISIONS, ProposalRow, ReviewRow, TraceRow
from r2ta.errors import R2taError
from r2ta.review import DecisionRefused, DecisionResult, decide

RESOLUTION_PREFIX = "Resolution: "


def cohen_kappa(pairs: list[tuple[str, str]], labels: tuple[str, ...] = DECISIONS) -> float | None:
    """Cohen's kappa of (rater A, rater B) label pairs; None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    a_counts = Counter(a for a, _ in pairs)
    b_counts = Counter(b for _, b in pairs)
    expected = sum(a_counts[k] * b_counts[k] for k in set(labels) | set(a_counts) | set(b_counts)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class Rating:
    review_id: int
    reviewer: str
    decision: str
    reason: str


@dataclass(frozen=True)
class RatedItem:
    proposal_id: int
    version: int
    variant_id: str
    categories: tuple[str, ...]
    ratings: tuple[Rating, ...]  # one per reviewer (their latest), by reviewer name
    resolution: Rating | None  # the latest review, when it is a resolution

    @property
    def agrees(self) -> bool:
        return len({r.decision for r in self.ratings}) <= 1


def list_rated_items(engine: Engine, *, min_reviewers: int = 2) -> list[RatedItem]:
    """Items reviewed by at least ``min_reviewers`` people, with each one's latest decision."""
    with Session(engine) as session:
        multi = (
            select(ReviewRow.proposal_id)
            .where(~col(ReviewRow.reason).startswith(RESOLUTION_PREFIX))
            .group_by(ReviewRow.proposal_id)
            .having(func.count(func.distinct(ReviewRow.reviewer)) >= min_reviewers)
        )
        reviews = list(
            session.exec(select(ReviewRow).where(col(ReviewRow.proposal_id).in_(multi)).order_by(ReviewRow.id))
        )
        ids = sorted({r.proposal_id for r in reviews})
        meta = {
            pid: (version, variant_id)
            for pid, version, variant_id in session.exec(
                select(ProposalRow.id, ProposalRow.version, TraceRow.variant_id)
                .join(TraceRow, col(TraceRow.id) == ProposalRow.trace_id)
                .where(col(ProposalRow.id).in_(ids))
            )
        }
        categories = queries.categories_of((v for _, v in meta.values()), session=session)
    by_item: dict[int, list[ReviewRow]] = defaultdict(list)
    for r in reviews:
        by_item[r.proposal_id].append(r)
    items = []
    for pid in ids:
        rows = by_item[pid]
        latest: dict[str, ReviewRow] = {}
        for r in rows:
            if not r.reason.startswith(RESOLUTION_PREFIX):
                latest[r.reviewer] = r
        last = rows[-1]
        resolution = Rating(last.id, last.reviewer, last.decision, last.reason) if last.reason.startswith(RESOLUTION_PREFIX) else None  # type: ignore[arg-type]
        version, variant_id = meta[pid]
        items.append(
            RatedItem(
                proposal_id=pid,
                version=version,
                variant_id=variant_id,
                categories=tuple(dict.fromkeys(categories.get(variant_id, []))),
                ratings=tuple(Rating(r.id, r.reviewer, r.decision, r.reason) for _, r in sorted(latest.items())),  # type: ignore[arg-type]
                resolution=resolution,
            )
        )
    return items


@dataclass(frozen=True)
class KappaRow:
    scope: str  # "overall" or a category id
    items: int
    pairs: int
    observed: float | None  # share of agreeing pairs
    kappa: float | None


def _pairs(item: RatedItem) -> list[tuple[str, str]]:
    return [(a.decision, b.decision) for a, b in combinations(item.ratings, 2)]


def _row(scope: str, items: list[RatedItem]) -> KappaRow:
    pairs = [p for it in items for p in _pairs(it)]
    observed = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return KappaRow(scope, len(items), len(pairs), observed, cohen_kappa(pairs))


def kappa_table(items: list[RatedItem], categories: tuple[str, ...]) -> list[KappaRow]:
    """Overall, then one row per category (in ``categories`` order) that has rated items."""
    rows = [_row("overall", items)]
    for c in categories:
        of_c = [it for it in items if c in it.categories]
        if of_c:
            rows.append(_row(c, of_c))
    return rows


@dataclass(frozen=True)
class PairAgreement:
    reviewer_a: str
    reviewer_b: str
    items: int
    observed: float
    kappa: float | None


def pairwise(items: list[RatedItem]) -> list[PairAgreement]:
    """Cohen's kappa of every pair of reviewers over the items both rated."""
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for it in items:
        for a, b in combinations(it.ratings, 2):
            by_pair[(a.reviewer, b.reviewer)].append((a.decision, b.decision))
    return [
        PairAgreement(a, b, len(p), sum(x == y for x, y in p) / len(p), cohen_kappa(p))
        for (a, b), p in sorted(by_pair.items())
    ]


def list_disagreements(items: list[RatedItem], *, include_resolved: bool = False) -> list[RatedItem]:
    return [it for it in items if not it.agrees and (include_resolved or it.resolution is None)]


def resolve(
    engine: Engine, *, proposal_id: int, expected_version: int, resolver: str, adopt_review_id: int, note: str = ""
) -> DecisionResult:
    """Settle a disagreement by adopting one review's decision (and its edit); saved as the resolver's review.

    Raises :class:`db.errors.ReviewConflict` when the item changed since it was shown.
    """
    from r2ta.pipeline import chosen_trace

    with Session(engine) as session:
        adopted = session.get(ReviewRow, adopt_review_id)
        if adopted is None or adopted.proposal_id != proposal_id:
            raise R2taError(f"review {adopt_review_id} is not a review of proposal {proposal_id}: pick one of its reviews")
        proposal = queries.get_proposal(proposal_id, session=session)
        edited = chosen_trace(adopted, proposal) if adopted.decision == "edit" else None
        decision, reviewer, their_reason = adopted.decision, adopted.reviewer, adopted.reason
    reason = f"{RESOLUTION_PREFIX}adopts review #{adopt_review_id} by {reviewer} ({decision})"
    if their_reason and decision == "reject":
        reason += f": {their_reason}"
    if note.strip():
        reason += f". {note.strip()}"
    if not (resolver or "").strip():
        raise DecisionRefused("enter your name before resolving: the resolution is stored with it")
    return decide(
        engine,
        proposal_id=proposal_id,
        expected_version=expected_version,
        reviewer=resolver,
        decision=decision,
        edited_text=edited,
        reason=reason,
    )
