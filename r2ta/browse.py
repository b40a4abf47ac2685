"""What researchers ask of the store on the Browse page: categories, examples, search, model patterns.

* :func:`category_counts`: variants per mistake category and split.
* :func:`category_examples`: a few induced mistakes of one category.
* :func:`search`: variants whose elements (id or name), ground-truth
  explanations or requirements, or whose traces' text, contain a string.
* :func:`variant_traces`: every trace of a variant with its proposals' status.
* :func:`model_patterns`: per model and category, how many predicted mistakes
  match no ground truth (hallucinations) and how many true mistakes no
  prediction matched (omissions), with the matching rule of DESIGN.md §5.

This module must not import streamlit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import String, cast, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from db.models import ProposalRow, ReviewRow, TraceRow, VariantMistakeRow, VariantRow
from r2ta.eerd import CATEGORIES, Mistake, parse_diagram
from r2ta.metrics import match, matches

MAX_QUERY = 200


def category_counts(engine: Engine) -> list[dict]:
    """``{"category", "split", "variants"}`` for every category and split that has variants."""
    with Session(engine) as session:
        rows = session.exec(
            select(VariantMistakeRow.category, VariantRow.split, func.count(func.distinct(VariantRow.id)))
            .join(VariantRow, col(VariantRow.id) == VariantMistakeRow.variant_id)
            .group_by(VariantMistakeRow.category, VariantRow.split)
        ).all()
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(
        ({"category": c, "split": s, "variants": n} for c, s, n in rows), key=lambda r: (order.get(r["category"], 99), r["split"])
    )


@dataclass(frozen=True)
class Example:
    variant_id: str
    base_id: str
    split: str
    mistake: Mistake


def category_examples(engine: Engine, category: str, limit: int = 12) -> list[Example]:
    """Up to ``limit`` induced mistakes of ``category``, one per base schema first, so the examples vary."""
    with Session(engine) as session:
        rows = session.exec(
            select(VariantRow.id, VariantRow.base_id, VariantRow.split, VariantRow.mistakes)
            .join(VariantMistakeRow, col(VariantMistakeRow.variant_id) == VariantRow.id)
            .where(VariantMistakeRow.category == category)
            .order_by(VariantRow.id)
        ).all()
    by_base: dict[str, list[Example]] = defaultdict(list)
    for vid, base_id, split, mistakes in rows:
        m = next((m for m in mistakes if m.get("category") == category), None)
        if m is not None and all(e.variant_id != vid for e in by_base[base_id]):
            by_base[base_id].append(Example(vid, base_id, split, Mistake.model_validate(m)))
    out: list[Example] = []
    depth = 0
    while len(out) < limit and any(len(v) > depth for v in by_base.values()):
        out += [v[depth] for v in by_base.values() if len(v) > depth][: limit - len(out)]
        depth += 1
    return out


@dataclass(frozen=True)
class SearchHit:
    variant_id: str
    base_id: str
    split: str
    where: str  # "element", "mistake", "requirements", "trace"
    detail: str  # what matched, as text


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(engine: Engine, query: str, limit: int = 50) -> list[SearchHit]:
    """Case-insensitive substring search; element hits name the matching elements."""
    query = (query or "").strip()[:MAX_QUERY]
    if not query:
        return []
    pattern = _like(query)
    needle = query.lower()
    hits: list[SearchHit] = []
    with Session(engine) as session:
        variants = session.exec(
            select(VariantRow)
            .where(
                or_(
                    cast(VariantRow.diagram, String).ilike(pattern, escape="\\"),
                    cast(VariantRow.mistakes, String).ilike(pattern, escape="\\"),
                    col(VariantRow.requirements).ilike(pattern, escape="\\"),
                )
            )
            .order_by(VariantRow.id)
            .limit(limit)
        ).all()
        for v in variants:
            diagram = parse_diagram(v.diagram)
            named = [
                f"{i} ({diagram.element_name(i)})" if diagram.element_name(i) not in (None, i) else i
                for i in diagram.element_ids()
                if needle in i.lower() or needle in (diagram.element_name(i) or "").lower()
            ]
            if named:
                hits.append(SearchHit(v.id, v.base_id, v.split, "element", ", ".join(named[:8])))
            for m in v.mistakes:
                if needle in str(m.get("explanation", "")).lower() or any(needle in e.lower() for e in m.get("elements", [])):
                    hits.append(SearchHit(v.id, v.base_id, v.split, "mistake", f"{m['category']}: {m.get('explanation', '')}"))
            if needle in v.requirements.lower():
                at = v.requirements.lower().index(needle)
                hits.append(SearchHit(v.id, v.base_id, v.split, "requirements", "…" + v.requirements[max(0, at - 60) : at + 80] + "…"))
        traces = session.exec(
            select(TraceRow.id, TraceRow.model_id, TraceRow.raw_output, VariantRow.id, VariantRow.base_id, VariantRow.split)
            .join(VariantRow, col(VariantRow.id) == TraceRow.variant_id)
            .where(col(TraceRow.raw_output).ilike(pattern, escape="\\"))
            .order_by(TraceRow.id)
            .limit(limit)
        ).all()
        for trace_id, model_id, raw, vid, base, split in traces:
            at = raw.lower().find(needle)
            snippet = raw[max(0, at - 60) : at + 80] if at >= 0 else raw[:140]
            hits.append(SearchHit(vid, base, split, "trace", f"trace #{trace_id} by {model_id}: …{snippet}…"))
    return hits[:limit]


@dataclass(frozen=True)
class TraceSummary:
    trace_id: int
    model_id: str
    created_at: str
    valid: bool
    proposals: tuple[tuple[int, str, str, int], ...]  # (proposal id, auditor, status, reviews)
    raw_output: str
    parse_errors: tuple[str, ...]
    verdict_forced_at: int | None = None  # R2tA appended "VERDICT:" after this many characters of the model's own


def variant_traces(engine: Engine, variant_id: str) -> list[TraceSummary]:
    with Session(engine) as session:
        traces = session.exec(select(TraceRow).where(TraceRow.variant_id == variant_id).order_by(TraceRow.id)).all()
        ids = [t.id for t in traces]
        proposals: dict[int, list] = defaultdict(list)
        if ids:
            n_reviews = (
                select(func.count(col(ReviewRow.id))).where(ReviewRow.proposal_id == ProposalRow.id).correlate(ProposalRow).scalar_subquery()
            )
            for pid, tid, auditor, status, n in session.exec(
                select(ProposalRow.id, ProposalRow.trace_id, ProposalRow.auditor_id, ProposalRow.status, n_reviews)
                .where(col(ProposalRow.trace_id).in_(ids))
                .order_by(ProposalRow.id)
            ):
                proposals[tid].append((pid, auditor, status, n))
        return [
            TraceSummary(
                t.id,  # type: ignore[arg-type]
                t.model_id,
                f"{t.created_at:%Y-%m-%d %H:%M}",
                t.verdict is not None,
                tuple(proposals[t.id]),  # type: ignore[index]
                t.raw_output,
                tuple(str(e) for e in t.parse_errors),
                t.verdict_forced_at,
            )
            for t in traces
        ]


@dataclass(frozen=True)
class Pattern:
    model_id: str
    category: str
    traces: int  # this model's traces on variants with a mistake of this category
    truth: int  # true mistakes of this category the model was asked about
    omitted: int  # of those, matched by no prediction
    predicted: int  # mistakes of this category the model claimed
    hallucinated: int  # of those, matching no true mistake at all

    @property
    def omission_rate(self) -> float:
        return self.omitted / self.truth if self.truth else 0.0

    @property
    def hallucination_rate(self) -> float:
        return self.hallucinated / self.predicted if self.predicted else 0.0


def model_patterns(engine: Engine) -> list[Pattern]:
    """Hallucinations and omissions per model and category over every stored trace (no verdict = nothing predicted)."""
    with Session(engine) as session:
        mistakes = dict(session.exec(select(VariantRow.id, VariantRow.mistakes)).all())
        rows = session.exec(select(TraceRow.model_id, TraceRow.variant_id, TraceRow.verdict)).all()
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for model_id, variant_id, verdict in rows:
        truth = [Mistake.model_validate(m) for m in mistakes.get(variant_id, [])]
        predicted = []
        for m in verdict or []:
            try:
                predicted.append(Mistake.model_validate(m))
            except ValueError:  # a stored verdict entry that no longer validates counts as nothing predicted
                continue
        matched_truth = {j for _, j in match(predicted, truth)}
        for c in {t.category for t in truth}:
            counts[(model_id, c)]["traces"] += 1
        for j, t in enumerate(truth):
            counts[(model_id, t.category)]["truth"] += 1
            counts[(model_id, t.category)]["omitted"] += j not in matched_truth
        for p in predicted:
            counts[(model_id, p.category)]["predicted"] += 1
            counts[(model_id, p.category)]["hallucinated"] += not any(matches(p, t) for t in truth)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return [
        Pattern(m, c, n["traces"], n["truth"], n["omitted"], n["predicted"], n["hallucinated"])
        for (m, c), n in sorted(counts.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99)))
    ]
