"""Stage 2: audit a reasoning trace step by step and propose a refined trace.

Two auditors produce the same :class:`AuditResult`:

* :func:`audit_trace` — the **deterministic auditor** (offline default). It judges
  the trace against the ground truth of the variant plus the structural
  checker's findings (a real structural mistake is never called a
  hallucination, even if the ground truth missed it).
* :class:`LLMRefiner` — asks a model behind an OpenAI-compatible endpoint to
  rewrite the trace, then audits *its proposal* with the same rules; every
  disagreement with the ground truth becomes a flag for the reviewer. The
  proposal is never silently corrected.

Rules of the deterministic auditor, per step (first that applies):

1. ``irrelevant`` — it repeats an earlier step, or names no diagram element.
2. ``hallucinated`` — it names an element that is not in the diagram, or it
   claims a mistake (``-> category``) that no real mistake matches (same
   category, overlapping elements: the matching rule of DESIGN.md §5); or it
   says ``ok`` after stating its construct's facts in the evidence walk's form
   (:func:`construct_evidence`) and they are not the diagram's
   (:func:`misstated_evidence`; on a construct with a real mistake the step is
   ``inconsistent``, rule 3, and its reason says what it misstated).
3. ``inconsistent`` — it finds a real mistake that the verdict leaves out; or it
   says ``ok`` about a construct that has a real mistake (*about* = it names
   the mistake's first element and at least two of its elements, or its only
   one) which another step found, which the verdict lists, or which nobody
   found; or it says ``ok`` about elements a verdict entry blames.
4. ``correct`` otherwise.

Per verdict entry: ``correct`` when it matches a real mistake (maximum matching,
as in :mod:`r2ta.metrics`), ``hallucinated`` otherwise.

The refined trace keeps correct steps untouched, drops irrelevant and
hallucinated ones, replaces an ``ok`` step that overlooked a mistake, inserts
one step per real mistake that no step found (at the overlooking step, else
after the last step sharing an element, else at the end), and its verdict
keeps the matched entries as written, drops the hallucinated ones and adds the
missing ones with the ground truth's explanation. Every edit is a
:class:`Change`. A correct trace passes unchanged (no changes, same steps and
verdict).

:func:`audit_walk` — the **walk** shape of the same audit (auditor ``deterministic-walk-v1``,
``r2ta refine --auditor walk``): the per-step and per-verdict judgements are
:func:`audit_trace`'s, the refined verdict too, but the refined *steps* walk the
diagram: one step per construct, in the order of the prompt's diagram lines
(:func:`constructs`), ``-> ok`` where no mistake of the verdict is anchored, one
step per mistake (its category, the explanation) where one is. The choice of
*which* construct is wrong becomes a local ok-or-not decision at each line; run64
measured that the free choice of a first construct kept probability 0.002 after
SFT (docs/measured/loop-run64-more-data-2026-12-03.txt). The **evidence** walk
(auditor ``deterministic-evidence-v1``, ``r2ta refine --auditor evidence``) writes
each construct's structural facts (:func:`construct_evidence`: ``key none``,
``identified by none``, ``2 ends``) before its decision.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from r2ta.checker import check, weak_dependents
from r2ta.compact import ElementIndex, construct_reference
from r2ta.eerd import CATEGORIES, EERD, Mistake
from r2ta.metrics import match, matches
from r2ta.prompting import (
    OK,
    ParsedOutput,
    Step,
    make_step,
    parse_output,
    render_step,
    render_trace,
    system_prompt,
    user_prompt,
)

if TYPE_CHECKING:  # the backends module pulls in httpx; only the LLM refiner needs it
    from r2ta.backends import Backend

StepVerdict = Literal["correct", "hallucinated", "inconsistent", "irrelevant"]
STEP_VERDICTS: tuple[str, ...] = ("correct", "hallucinated", "inconsistent", "irrelevant")
DETERMINISTIC_AUDITOR = "deterministic-v1"
WALK_AUDITOR = "deterministic-walk-v1"
EVIDENCE_AUDITOR = "deterministic-evidence-v1"


class StepAudit(BaseModel):
    step: int
    verdict: StepVerdict
    reason: str


class VerdictAudit(BaseModel):
    index: int  # position in the original verdict
    status: Literal["correct", "hallucinated"]
    reason: str


class Change(BaseModel):
    kind: Literal["removed_step", "rewrote_step", "inserted_step", "removed_mistake", "added_mistake", "edited_mistake"]
    step: int | None = None  # step number in the original trace (removed/rewritten) or the refined one (inserted)
    detail: str


class AuditResult(BaseModel):
    """A refinement proposal: per-step verdicts, the proposed trace and what changed."""

    auditor: str
    step_audits: list[StepAudit] = Field(default_factory=list)
    verdict_audits: list[VerdictAudit] = Field(default_factory=list)
    inserted_steps: list[Step] = Field(default_factory=list)
    refined_steps: list[Step] = Field(default_factory=list)
    refined_verdict: list[Mistake] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)  # disagreements a reviewer must see (LLM refiner)

    @property
    def refined_text(self) -> str:
        return render_trace(self.refined_steps, self.refined_verdict)

    @property
    def unchanged(self) -> bool:
        return not self.changes


# -- helpers -------------------------------------------------------------------------


def _names(diagram: EERD, ids) -> str:
    return ", ".join(diagram.element_name(i) or i for i in ids)


def _about(step_ids: set[str], elements: list[str]) -> bool:
    """Whether a step that names ``step_ids`` examined the construct that ``elements`` point at."""
    if not elements or elements[0] not in step_ids:
        return False
    return len(step_ids & set(elements)) >= min(2, len(set(elements)))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def real_mistakes(diagram: EERD, truth: list[Mistake]) -> tuple[list[Mistake], int]:
    """The ground truth plus checker findings it does not explain; returns (mistakes, len(truth)).

    Entries past ``len(truth)`` are checker-only: a claim of one is not a
    hallucination, but the auditor does not insert them (the truth is the label).
    """
    extras = [f for f in check(diagram) if not any(matches(f, t) for t in truth)]
    return list(truth) + extras, len(truth)


# -- the deterministic auditor ---------------------------------------------------------


def audit_trace(
    parsed: ParsedOutput, diagram: EERD, truth: list[Mistake], auditor: str = DETERMINISTIC_AUDITOR
) -> AuditResult:
    facts, n_truth = real_mistakes(diagram, truth)
    known = set(diagram.element_ids())
    steps = parsed.steps
    verdict = parsed.verdict

    # Verdict entries against the real mistakes.
    pairs = dict(match(verdict, facts))  # verdict index -> fact index
    verdict_audits: list[VerdictAudit] = []
    for i, v in enumerate(verdict):
        unknown = [e for e in v.elements if e not in known]
        if i in pairs:
            note = " (a structural finding the ground truth does not list)" if pairs[i] >= n_truth else ""
            verdict_audits.append(VerdictAudit(index=i, status="correct", reason=f"matches a real {v.category} mistake{note}"))
        elif unknown:
            verdict_audits.append(
                VerdictAudit(index=i, status="hallucinated", reason=f"names {', '.join(map(repr, unknown))}, which is not in the diagram")
            )
        else:
            verdict_audits.append(
                VerdictAudit(
                    index=i,
                    status="hallucinated",
                    reason=f"there is no {v.category} mistake on {_names(diagram, v.elements)}",
                )
            )
    listed_facts = set(pairs.values())
    hallucinated_verdict = [v for i, v in enumerate(verdict) if i not in pairs]

    # Pass 1: repeats, unknown elements, and every step that claims a mistake.
    verdicts: dict[int, tuple[StepVerdict, str]] = {}  # step index -> verdict
    found: dict[int, int] = {}  # fact index -> step index of the first step that found it
    seen: dict[tuple, int] = {}
    for k, s in enumerate(steps):
        key = (tuple(s.element_ids), s.finding, s.text.strip().lower())
        ordered = list(dict.fromkeys(e for e in s.element_ids if e))  # stable order for messages
        ids = set(ordered)
        unknown = [ref for ref, e in zip(s.elements, s.element_ids) if e is None]
        if key in seen:
            verdicts[k] = ("irrelevant", f"repeats step {steps[seen[key]].number}")
            continue
        seen[key] = k
        if unknown:
            verdicts[k] = ("hallucinated", f"names {', '.join(map(repr, unknown))}, which is not in the diagram")
        elif not ids:
            verdicts[k] = ("irrelevant", "names no element of the diagram")
        elif s.finding in CATEGORIES:
            claim = Mistake(category=s.finding, elements=ordered)
            hits = [j for j, f in enumerate(facts) if matches(claim, f)]
            if not hits:
                verdicts[k] = ("hallucinated", f"claims a {s.finding} mistake on {_names(diagram, ordered)} that is not there")
                continue
            j = next((j for j in hits if j not in found), hits[0])
            found.setdefault(j, k)
            if any(h in listed_facts for h in hits):
                verdicts[k] = ("correct", f"finds a real {s.finding} mistake, listed in the verdict")
            else:
                verdicts[k] = ("inconsistent", f"finds a real {s.finding} mistake on {_names(diagram, facts[j].elements)}, but the verdict leaves it out")

    # Pass 2: steps that say ok (or state no finding).
    overlooked: dict[int, int] = {}  # fact index -> the ok step that should have found it
    for j, f in enumerate(facts[:n_truth]):
        if j in found:
            continue
        cands = [
            k
            for k, s in enumerate(steps)
            if k not in verdicts and s.finding in (OK, None) and _about({e for e in s.element_ids if e}, f.elements)
        ]
        if cands:
            best = max(cands, key=lambda k: (_jaccard({e for e in steps[k].element_ids if e}, set(f.elements)), -k))
            if best not in overlooked.values():
                overlooked[j] = best
    drop_ok: set[int] = set()  # ok steps whose claim is false: the refined trace leaves them out
    walk = constructs(diagram)
    for k, s in enumerate(steps):
        if k in verdicts:
            continue
        ids = {e for e in s.element_ids if e}
        misstated = misstated_evidence(s, diagram, walk)
        states = f" (it states '{misstated[0]}'; the diagram shows '{misstated[1]}')" if misstated else ""
        missed = next((j for j, kk in overlooked.items() if kk == k), None)
        contradicted = next((j for j, kk in found.items() if _about(ids, facts[j].elements)), None)
        blamed = next((i for i, v in enumerate(verdict) if _about(ids, v.elements)), None)
        if missed is not None:
            f = facts[missed]
            where = "the verdict lists it" if missed in listed_facts else "no step found it"
            verdicts[k] = ("inconsistent", f"says ok, but {_names(diagram, f.elements)} has a real {f.category} mistake ({where})"
                                           + states)
        elif contradicted is not None:
            f = facts[contradicted]
            drop_ok.add(k)
            verdicts[k] = (
                "inconsistent",
                f"says ok, but step {steps[found[contradicted]].number} finds a real {f.category} mistake on "
                f"{_names(diagram, f.elements)}",
            )
        elif blamed is not None:
            v = verdict[blamed]
            if blamed in pairs:  # the verdict is right and the step wrong
                drop_ok.add(k)
                verdicts[k] = ("inconsistent", f"says ok, but the verdict rightly lists a {v.category} mistake on {_names(diagram, v.elements)}")
            else:  # the step is right; the verdict entry goes
                verdicts[k] = (
                    "inconsistent",
                    f"says ok while the verdict lists a {v.category} mistake on {_names(diagram, v.elements)}; "
                    "the step is right and the verdict entry is removed",
                )
        elif misstated:
            verdicts[k] = ("hallucinated", f"states '{misstated[0]}' about {_names(diagram, [s.element_ids[0]])}, "
                                           f"but the diagram shows '{misstated[1]}'")
        else:
            verdicts[k] = ("correct", "agrees with the diagram and the ground truth")

    step_audits = [StepAudit(step=s.number, verdict=verdicts[k][0], reason=verdicts[k][1]) for k, s in enumerate(steps)]

    # The refined trace.
    changes: list[Change] = []
    refined: list[Step] = []
    inserted: list[Step] = []
    origin: list[int | None] = []  # original index of each refined step (None = inserted)
    missing = [j for j in range(n_truth) if j not in found]
    placed_at_overlook = {overlooked[j]: j for j in missing if j in overlooked}

    def fact_step(j: int) -> Step:
        f = facts[j]
        return make_step(0, f.elements, f.explanation or f"{f.category} mistake on {_names(diagram, f.elements)}", f.category)

    for k, s in enumerate(steps):
        v, reason = verdicts[k]
        if k in placed_at_overlook:
            new = fact_step(placed_at_overlook[k])
            changes.append(Change(kind="removed_step", step=s.number, detail=f"step {s.number} {reason}"))
            refined.append(new)
            inserted.append(new)
            origin.append(None)
            continue
        if v in ("irrelevant", "hallucinated"):
            changes.append(Change(kind="removed_step", step=s.number, detail=f"step {s.number} {reason}"))
            continue
        if k in drop_ok:
            changes.append(Change(kind="removed_step", step=s.number, detail=f"step {s.number} {reason}"))
            continue
        if s.finding is None:
            s = s.model_copy(update={"finding": OK})
            changes.append(Change(kind="rewrote_step", step=s.number, detail=f"step {s.number}: added the missing finding '-> ok'"))
        refined.append(s)
        origin.append(k)
    for j in missing:
        if j in overlooked and overlooked[j] in placed_at_overlook:
            continue
        new = fact_step(j)
        elements = set(facts[j].elements)
        at = max(
            (i + 1 for i, st in enumerate(refined) if elements & {e for e in st.element_ids if e}),
            default=len(refined),
        )
        refined.insert(at, new)
        origin.insert(at, None)
        inserted.append(new)
    # Renumber, and record each insertion under its final number.
    refined = [st.model_copy(update={"number": i}) for i, st in enumerate(refined, 1)]
    inserted_final = []
    for st, o in zip(refined, origin):
        if o is None:
            inserted_final.append(st)
            desc = f"the real {st.finding} mistake on {_names(diagram, st.element_ids)}, which no step found"
            changes.append(Change(kind="inserted_step", step=st.number, detail=f"inserted step {st.number}: {desc}"))

    refined_verdict: list[Mistake] = []
    for i, v in enumerate(verdict):
        if i in pairs:
            unknown = [e for e in v.elements if e not in known]
            if unknown:
                v = v.model_copy(update={"elements": [e for e in v.elements if e in known]})
                changes.append(Change(kind="edited_mistake", detail=f"verdict entry {i + 1}: removed unknown element(s) {', '.join(map(repr, unknown))}"))
            refined_verdict.append(v)
        else:
            changes.append(Change(kind="removed_mistake", detail=f"verdict entry {i + 1} ({v.category}): {verdict_audits[i].reason}"))
    for j in range(n_truth):
        if j not in listed_facts:
            f = facts[j]
            refined_verdict.append(Mistake(category=f.category, elements=list(f.elements), explanation=f.explanation))
            changes.append(Change(kind="added_mistake", detail=f"added the real {f.category} mistake on {_names(diagram, f.elements)}"))

    return AuditResult(
        auditor=auditor,
        step_audits=step_audits,
        verdict_audits=verdict_audits,
        inserted_steps=inserted_final,
        refined_steps=refined,
        refined_verdict=refined_verdict,
        changes=changes,
    )


# -- the walk shape ----------------------------------------------------------------------


class Construct(BaseModel):
    """One line of the prompt's diagram (:func:`r2ta.compact.to_compact`): its id, kind and the ids it owns."""

    id: str
    kind: Literal["entity", "relationship", "specialization", "category"]
    owns: set[str]


def constructs(diagram: EERD) -> list[Construct]:
    """The diagram's constructs in the order :func:`r2ta.compact.to_compact` lists them.

    An entity or relationship owns its attributes (components included); a specialization or
    category owns only itself.
    """

    def attribute_ids(attributes) -> set[str]:
        ids: set[str] = set()
        for a in attributes:
            ids |= {a.id} | attribute_ids(a.components)
        return ids

    out = [Construct(id=e.id, kind="entity", owns={e.id} | attribute_ids(e.attributes)) for e in diagram.entities]
    out += [Construct(id=r.id, kind="relationship", owns={r.id} | attribute_ids(r.attributes)) for r in diagram.relationships]
    out += [Construct(id=sp.id, kind="specialization", owns={sp.id}) for sp in diagram.specializations]
    out += [Construct(id=c.id, kind="category", owns={c.id}) for c in diagram.categories]
    return out


def anchor(mistake: Mistake, walk: list[Construct]) -> int | None:
    """The index in ``walk`` of the construct whose step reports ``mistake``, or None when it names none.

    The construct owning the first of the mistake's elements that any construct owns: a mistake lists
    what it is about first (``participation | WORKS_FOR, EMPLOYEE`` is on the relationship's line,
    ``foreign_key_attribute | EMPLOYEE.Dnumber, WORKS_FOR`` on EMPLOYEE's).
    """
    for element in mistake.elements:
        for i, c in enumerate(walk):
            if element in c.owns:
                return i
    return None


def walk_reference(diagram: EERD, element_id: str, index: ElementIndex | None = None) -> str:
    """How a walk writes an element: a specialization or category the way the prompt shows it
    (:func:`r2ta.compact.construct_reference`; their ids appear nowhere in the prompt), anything else as is."""
    index = index or ElementIndex(diagram)
    if index.kinds.get(element_id) in ("specialization", "category"):
        return construct_reference(diagram, element_id, index)
    return element_id


def _evidence_name(diagram: EERD, element_id: str) -> str:
    """An element's name as an evidence phrase writes it: one line, no ``->`` (which would end the step)."""
    return " ".join((diagram.element_name(element_id) or element_id).split()).replace("->", "- >")


def construct_evidence(diagram: EERD, construct: Construct) -> str:
    """The structural facts of one construct that the checker's rules read, stated the same way on every line.

    An evidence walk (:func:`walk_steps` with ``evidence=True``) writes them before each construct's
    decision, so the decision follows from a fact the model copied out of the diagram one step earlier
    (``key none`` before ``-> missing_key``) instead of being made in one token:

    * a strong entity: ``key Ssn`` (a multivalued or derived key says so), ``key none``;
    * a weak entity: ``weak; partial key X`` or ``partial key none``; ``identified by R`` (the identifying
      relationships that identify *it*, not those it owns another weak entity through) or ``identified by none``;
    * a subclass (of a specialization or a category): ``subclass of A``; ``own key K`` or ``no own key``;
    * a relationship: ``2 ends``; a recursive one ``recursive on E, roles a, b`` or ``..., no roles``;
      an end that is not an entity ``end X is no entity``;
    * a specialization: ``superclass E`` or ``no superclass``; ``n subclasses``; disjointness and completeness
      as drawn, or ``... not stated``;
    * a category: ``n superclasses``.

    Mistakes that only the requirements reveal (a cardinality, an attribute's kind) have no fact here.
    """
    name = lambda i: _evidence_name(diagram, i)  # noqa: E731
    if construct.kind == "entity":
        e = diagram.entity(construct.id)
        parents = [sp.superclass for sp in diagram.specializations if e.id in sp.subclasses and sp.superclass]
        parents += [s for c in diagram.categories if c.subclass == e.id for s in c.superclasses]
        own = [a for a in e.attributes if a.key or a.partial_key]
        if parents:
            keys = f"own key {', '.join(name(a.id) for a in own)}" if own else "no own key"
            return f"subclass of {', '.join(dict.fromkeys(name(p) for p in parents))}; {keys}"
        if e.weak:
            partial = [a for a in e.attributes if a.partial_key]
            identifies = weak_dependents(diagram)
            idents = [r for r in diagram.relationships if e.id in identifies.get(r.id, [])]
            return (f"weak; partial key {', '.join(name(a.id) for a in partial) or 'none'}; "
                    f"identified by {', '.join(name(r.id) for r in idents) or 'none'}")
        keys = [a for a in e.attributes if a.key]
        if not keys:
            return "key none"

        def key(a) -> str:
            kinds = [k for k, on in (("multivalued", a.multivalued), ("derived", a.derived)) if on]
            return name(a.id) + (f" ({', '.join(kinds)})" if kinds else "")

        return "key " + ", ".join(key(a) for a in keys)
    if construct.kind == "relationship":
        r = next(r for r in diagram.relationships if r.id == construct.id)
        ends = [p.entity for p in r.participants]
        facts = [f"{len(ends)} end" + ("" if len(ends) == 1 else "s")]
        for x in dict.fromkeys(ends):
            if diagram.entity(x) is None:
                facts.append(f"end {name(x)} is no entity")
            elif ends.count(x) > 1:
                roles = [" ".join(p.role.split()) for p in r.participants if p.entity == x and p.role and p.role.strip()]
                facts.append(f"recursive on {name(x)}, " + (f"roles {', '.join(roles)}".replace("->", "- >") if roles else "no roles"))
        return "; ".join(facts)
    if construct.kind == "specialization":
        sp = next(s for s in diagram.specializations if s.id == construct.id)
        d = {"d": "disjoint", "o": "overlapping", None: "disjointness not stated"}[sp.disjointness]
        t = sp.completeness or "completeness not stated"
        sup = f"superclass {name(sp.superclass)}" if sp.superclass else "no superclass"
        n = len(sp.subclasses)
        return f"{sup}; {n} subclass{'' if n == 1 else 'es'}; {d}; {t}"
    c = next(c for c in diagram.categories if c.id == construct.id)
    n = len(set(c.superclasses))
    return f"{n} superclass{'' if n == 1 else 'es'}"


_DEFECTS = ("key none", "identified by none", "(multivalued", "(derived", "no roles", "is no entity", "not stated",
            "no superclass", "0 subclasses")


def shows_defect(facts: str) -> bool:
    """True when a construct's facts (:func:`construct_evidence`) alone show a structural defect the checker
    reports (a multivalued or derived key, no key, a weak entity without partial key or identifying
    relationship, a subclass with a key of its own, a relationship of fewer than two ends, a recursive one without roles, a specialization
    constraint not stated, a category of fewer than two superclasses)."""
    parts = [p.strip() for p in facts.split(";")]
    return (any(d in facts for d in _DEFECTS) or any(p.startswith("own key ") for p in parts)
            or parts[0] in ("0 ends", "1 end", "0 superclasses", "1 superclass"))


_NAME = r"[^\s,;()]+"
_NAMES = rf"{_NAME}(?: \((?:multivalued|derived|multivalued, derived)\))?(?:, {_NAME}(?: \((?:multivalued|derived|multivalued, derived)\))?)*"
_EVIDENCE_FORMS = {
    "entity": re.compile(rf"^(key (none|{_NAMES})|weak; partial key (none|{_NAMES}); identified by (none|{_NAMES})"
                         rf"|subclass of {_NAMES}; (own key {_NAMES}|no own key))$"),
    "relationship": re.compile(rf"^\d+ ends?(; (recursive on {_NAME}, (roles [^;]+|no roles)|end {_NAME} is no entity))*$"),
    "specialization": re.compile(rf"^(superclass {_NAME}|no superclass); \d+ subclass(es)?; "
                                 r"(disjoint|overlapping|disjointness not stated); (total|partial|completeness not stated)$"),
    "category": re.compile(r"^\d+ superclass(es)?$"),
}


def misstated_evidence(step: Step, diagram: EERD, walk: list[Construct] | None = None) -> tuple[str, str] | None:
    """``(what the step states, what the diagram shows)`` when ``step`` opens with its construct's facts in
    :func:`construct_evidence`'s form and they differ from the diagram's; None otherwise.

    Only a statement in that exact form counts (``key Airport_code``, ``2 ends; recursive on PAPER, no roles``),
    so a free sentence that happens to start with "key" is not read as one. A model trained on evidence walks
    states facts it remembers of the schema instead of those of the line (run64e): such a step is false even
    where its construct has no mistake.
    """
    first = next((e for e in step.element_ids if e), None)
    construct = next((c for c in (walk if walk is not None else constructs(diagram)) if c.id == first), None)
    if construct is None:
        return None
    said = " ".join(step.text.split(". ")[0].split())
    if not _EVIDENCE_FORMS[construct.kind].match(said):
        return None
    truth = construct_evidence(diagram, construct)
    return None if said == truth else (said, truth)


def walk_steps(diagram: EERD, verdict: list[Mistake], *, evidence: bool = False) -> list[Step]:
    """One step per construct, ``-> ok`` or one step per mistake of ``verdict`` anchored there.

    A construct is named as :func:`r2ta.compact.construct_reference` writes it (the way the prompt
    shows it). An ``ok`` step has no text (``Step 3 [WORKS_FOR]: -> ok``: a walk over a median train
    diagram's 18 constructs would spend ~100 more tokens on a constant phrase); a mistake step names
    the construct, then the mistake's other elements, and its text is the mistake's explanation. A
    mistake that names no construct of the diagram is a last step.

    With ``evidence``, every construct's step first states :func:`construct_evidence` (``Step 3
    [PROJECT]: key none. PROJECT has no key ... -> missing_key``; ``Step 1 [EMPLOYEE]: key Ssn -> ok``).
    """
    walk = constructs(diagram)
    index = ElementIndex(diagram)
    at: dict[int | None, list[Mistake]] = {}
    for m in verdict:
        at.setdefault(anchor(m, walk), []).append(m)

    def step(c: Construct | None, m: Mistake | None) -> Step:
        ids = list(dict.fromkeys(([c.id] if c else []) + (m.elements if m else [])))
        refs = [walk_reference(diagram, e, index) for e in ids]
        facts = construct_evidence(diagram, c) if evidence and c else ""
        if m is None:
            return Step(number=0, elements=refs, element_ids=ids, text=facts, finding=OK)
        text = " ".join((m.explanation or f"{m.category} mistake on {_names(diagram, m.elements)}").split())
        return Step(number=0, elements=refs, element_ids=ids, text=f"{facts}. {text}" if facts else text, finding=m.category)

    steps: list[Step] = []
    for i, c in enumerate(walk):
        steps += [step(c, m) for m in at.get(i, [])] or [step(c, None)]
    steps += [step(None, m) for m in at.get(None, [])]
    return [st.model_copy(update={"number": n}) for n, st in enumerate(steps, 1)]


def audit_walk(parsed: ParsedOutput, diagram: EERD, truth: list[Mistake], *, evidence: bool = False) -> AuditResult:
    """:func:`audit_trace`'s judgements and verdict, with the refined steps written as a walk of the diagram.

    The changes keep the verdict's edits and say what happened to the steps: every original step
    gives way to the walk (each removal keeps the audit's reason), each mistake step is an
    insertion, and one change counts the ``ok`` steps.
    """
    result = audit_trace(parsed, diagram, truth, auditor=EVIDENCE_AUDITOR if evidence else WALK_AUDITOR)
    index = ElementIndex(diagram)
    verdict = [m.model_copy(update={"elements": list(dict.fromkeys(walk_reference(diagram, e, index) for e in m.elements))})
               for m in result.refined_verdict]
    steps = walk_steps(diagram, result.refined_verdict, evidence=evidence)
    inserted = [st for st in steps if st.finding != OK]
    changes: list[Change] = []
    if [render_step(s) for s in parsed.steps] != [render_step(s) for s in steps]:  # an answer that already walks stays
        changes = [
            Change(kind="removed_step", step=s.number,
                   detail=f"step {s.number} gives way to the walk over the diagram ({a.verdict}: {a.reason})")
            for s, a in zip(parsed.steps, result.step_audits)
        ]
        changes += [Change(kind="inserted_step", step=st.number,
                           detail=f"inserted step {st.number}: the real {st.finding} mistake on {_names(diagram, st.element_ids)}")
                    for st in inserted]
        oks = len(steps) - len(inserted)
        if oks:
            changes.append(Change(kind="rewrote_step", detail=f"wrote '-> ok' steps for the {oks} constructs no mistake "
                                                              "is on, one per line of the diagram"
                                                              + (", each after the construct's structural facts" if evidence else "")))
    verdict_changes = [c for c in result.changes if c.kind in ("removed_mistake", "added_mistake", "edited_mistake")]
    return result.model_copy(update={"refined_steps": steps, "inserted_steps": inserted, "refined_verdict": verdict,
                                     "changes": changes + verdict_changes})


# -- the LLM refiner -------------------------------------------------------------------

REFINER_INSTRUCTIONS = (
    "You are a careful teaching assistant. Another model checked a student's diagram; its "
    "answer is below. Check every step against the requirements and the diagram: remove "
    "steps that name elements that do not exist or claim mistakes that are not there, fix "
    "steps that contradict the verdict, and add steps for mistakes it missed. Then write the "
    "corrected answer in exactly the same format, and nothing else."
)


def refiner_messages(requirements: str, diagram: EERD, original: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt() + "\n\n" + REFINER_INSTRUCTIONS},
        {
            "role": "user",
            "content": user_prompt(requirements, diagram)
            + f"\n\nAnswer to check:\n{original.strip()}\n\nWrite the corrected answer.",
        },
    ]


def diff_steps(before: list[Step], after: list[Step]) -> list[Change]:
    """Step-level changes between two traces (by rendered line, numbers ignored)."""
    a = [render_step(s.model_copy(update={"number": 0})) for s in before]
    b = [render_step(s.model_copy(update={"number": 0})) for s in after]
    out: list[Change] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out += [Change(kind="removed_step", step=before[i].number, detail=f"removed step {before[i].number}") for i in range(i1, i2)]
        if op in ("insert", "replace"):
            out += [Change(kind="inserted_step", step=j + 1, detail=f"new step {j + 1}") for j in range(j1, j2)]
    return out


def diff_verdicts(before: list[Mistake], after: list[Mistake], diagram: EERD) -> list[Change]:
    key = lambda m: (m.category, frozenset(m.elements))  # noqa: E731
    old, new = {key(m) for m in before}, {key(m) for m in after}
    out = [Change(kind="removed_mistake", detail=f"removed {m.category} on {_names(diagram, m.elements)}") for m in before if key(m) not in new]
    out += [Change(kind="added_mistake", detail=f"added {m.category} on {_names(diagram, m.elements)}") for m in after if key(m) not in old]
    return out


class LLMRefiner:
    """Stage-2 refinement by a model behind a :class:`~r2ta.backends.Backend`, verified against the truth.

    The result's ``step_audits``/``verdict_audits`` are the deterministic
    verdicts on the *original* trace (what the reviewer judges); ``refined_*``
    is the model's proposal exactly as parsed; ``flags`` lists every way the
    proposal disagrees with the ground truth (hallucinated or inconsistent steps,
    hallucinated or missing verdict entries, parse errors).
    """

    def __init__(self, backend: "Backend", max_new_tokens: int = 1024):
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self.id = f"llm:{backend.id}"

    def refine_many(self, items: list[tuple[str, EERD, str, ParsedOutput, list[Mistake]]]) -> list[AuditResult]:
        """``items``: (requirements, diagram, original text, original parsed, truth) per trace."""
        prompts = [refiner_messages(req, d, text) for req, d, text, _, _ in items]
        generations = self.backend.generate(prompts, max_new_tokens=self.max_new_tokens)
        return [self._verify(g.text, d, parsed, truth) for g, (_, d, _, parsed, truth) in zip(generations, items)]

    def refine(self, requirements: str, diagram: EERD, original: str, parsed: ParsedOutput, truth: list[Mistake]) -> AuditResult:
        return self.refine_many([(requirements, diagram, original, parsed, truth)])[0]

    def _verify(self, text: str, diagram: EERD, original: ParsedOutput, truth: list[Mistake]) -> AuditResult:
        baseline = audit_trace(original, diagram, truth)
        proposal = parse_output(text, diagram)
        check = audit_trace(proposal, diagram, truth)
        flags = [f"the proposal does not parse cleanly: {e}" for e in proposal.errors]
        flags += [f"proposal step {a.step} is {a.verdict}: {a.reason}" for a in check.step_audits if a.verdict != "correct"]
        flags += [
            f"proposal verdict entry {a.index + 1} is hallucinated: {a.reason}" for a in check.verdict_audits if a.status != "correct"
        ]
        flags += [f"the proposal misses a real mistake: {c.detail}" for c in check.changes if c.kind == "added_mistake"]
        flags += [f"no step of the proposal finds: {c.detail}" for c in check.changes if c.kind == "inserted_step"]
        return AuditResult(
            auditor=self.id,
            step_audits=baseline.step_audits,
            verdict_audits=baseline.verdict_audits,
            inserted_steps=[],
            refined_steps=proposal.steps,
            refined_verdict=proposal.verdict,
            changes=diff_steps(original.steps, proposal.steps) + diff_verdicts(original.verdict, proposal.verdict, diagram),
            flags=flags,
        )
