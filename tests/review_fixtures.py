"""Traces and proposals for the review tests, made the way the pipeline makes them, without a model.

A *flawed trace* is what a small model plausibly writes about a variant: a
true ``ok`` step, sometimes the real mistake, a claim about a mistake that is
not there, a step about an element that does not exist; its verdict lists some
of that. :func:`add_proposals` writes it with :func:`r2ta.prompting.render_trace`,
reads it back with the parser, audits it with :func:`r2ta.audit.audit_trace`
and stores trace and proposal through :mod:`db.queries` (in the same shape as
``r2ta.pipeline`` stores them).

:func:`hostile_variant` copies a variant with names and requirements full of
HTML, script tags, markdown, Streamlit directives and DOT syntax.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from db import queries
from db.loading import load_dataset
from r2ta.audit import audit_trace
from r2ta.eerd import EERD, Mistake
from r2ta.prompting import Step, build_messages, make_step, parse_output, render_trace
from r2ta.records import BaseSchema, Variant
from reasoning_fixtures import DIAGRAM, REQUIREMENTS, TRUTH

MODEL_ID = "smollm2-135m-test"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> **bold** :red[red] $x^2$ "]; evil [label="'
GHOST = "GHOST_TABLE"


def _keyed_entity(diagram: EERD, avoid: set[str]):
    for e in diagram.entities:
        keys = [a for a in e.attributes if a.key and not a.multivalued and not a.derived]
        if keys and not e.weak and e.id not in avoid:
            return e, keys[0]
    raise AssertionError(f"{diagram.id} has no keyed entity outside {sorted(avoid)}")


def flawed_trace(variant: Variant, kind: int) -> str:
    """kind 0: finds the real mistake but also hallucinates two; 1: a correct trace; 2: finds nothing, names a ghost."""
    d, truth = variant.diagram, variant.mistakes
    touched = {e for m in truth for e in m.elements}
    entity, key = _keyed_entity(d, touched)
    ok = make_step(0, [entity.id, key.id], f"{entity.name} is identified by its key {key.name}.", "ok")
    real = [make_step(0, list(m.elements), m.explanation or f"a {m.category} mistake", m.category) for m in truth]
    ghost = Step(number=0, elements=[GHOST], element_ids=[None], text=f"{GHOST} should be linked to the rest.", finding="missing_element")
    claim = make_step(0, [entity.id], f"{entity.name} has no key.", "missing_key")
    if kind == 1:
        return render_trace([ok, *real], list(truth))
    if kind == 2:
        return render_trace([ok, ghost], [])
    wrong = Mistake(category="missing_key", elements=[entity.id], explanation=f"{entity.name} has no key.")
    return render_trace([ok, real[0], claim, ghost], [truth[0], wrong])


def add_proposal(engine: Engine, variant: Variant, kind: int = 0, model_id: str = MODEL_ID, raw: str | None = None,
                 auditor=audit_trace) -> int:
    """Store one trace of ``variant`` and the deterministic auditor's proposal for it; returns the proposal id."""
    raw = flawed_trace(variant, kind) if raw is None else raw
    parsed = parse_output(raw, variant.diagram)
    audit = auditor(parsed, variant.diagram, variant.mistakes)
    verdict_notes = [
        {"verdict_entry": a.index + 1, "status": a.status, "reason": a.reason} for a in audit.verdict_audits if a.status != "correct"
    ]
    with Session(engine) as session:
        trace = queries.create_trace(
            session=session,
            variant_id=variant.id,
            model_id=model_id,
            prompt=build_messages(variant.requirements, variant.diagram),
            raw_output=raw,
            steps=[s.model_dump() for s in parsed.steps] or None,
            verdict=[m.model_dump() for m in parsed.verdict] if parsed.valid else None,
            parse_errors=parsed.errors,
        )
        proposal = queries.create_proposal(
            session=session,
            trace_id=trace.id,
            auditor_id=audit.auditor,
            steps=[s.model_dump() for s in audit.refined_steps],
            verdict=[m.model_dump() for m in audit.refined_verdict],
            step_verdicts=[a.model_dump() for a in audit.step_audits],
            inserted_steps=[s.model_dump() for s in audit.inserted_steps],
            changes=[c.model_dump() for c in audit.changes] + verdict_notes,
            flags=audit.flags,
        )
        return proposal.id


def add_proposals(engine: Engine, variants: list[Variant], model_id: str = MODEL_ID) -> list[int]:
    return [add_proposal(engine, v, kind=i % 3, model_id=model_id) for i, v in enumerate(variants)]


def hostile_variant(variant: Variant, new_id: str | None = None) -> Variant:
    """The variant with its first (keyed, untouched) entity and first attribute renamed to hostile text."""
    data = variant.diagram.model_dump(mode="json")
    touched = {e for m in variant.mistakes for e in m.elements}
    entity, _ = _keyed_entity(variant.diagram, touched)
    for e in data["entities"]:
        if e["id"] == entity.id:
            e["name"] = HOSTILE[:190]
            for a in e["attributes"]:
                if not a.get("key"):
                    a["name"] = "<b>Attr</b> & :smile: `code`"
                    break
    return Variant.model_validate(
        {
            **variant.model_dump(mode="json"),
            "id": new_id or f"{variant.id}-hostile",
            "requirements": variant.requirements + "\n\n" + HOSTILE + "\n# heading? <h1>big</h1>",
            "diagram": data,
        }
    )


def store_variant(engine: Engine, variant: Variant) -> None:
    with Session(engine) as session:
        load_dataset([], [variant.model_dump(mode="json")], session=session)


def store_small_dataset(engine: Engine, base: BaseSchema, variants: list[Variant]) -> None:
    with Session(engine) as session:
        load_dataset([base.model_dump(mode="json")], [v.model_dump(mode="json") for v in variants], session=session)


# A small dataset for fast unit tests: the company diagram of reasoning_fixtures and its two mistakes.
SMALL_BASE = BaseSchema(id="company_small", domain="business", title="Company (small)", requirements=REQUIREMENTS, diagram=DIAGRAM)


def small_variant(i: int, split: str = "train", truth: list[Mistake] | None = None) -> Variant:
    return Variant(id=f"company_small-{i:04d}", base_id=SMALL_BASE.id, seed=i, split=split, requirements=REQUIREMENTS,
                   diagram=DIAGRAM, mistakes=list(TRUTH if truth is None else truth))
