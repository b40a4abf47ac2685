"""Does a model trained on evidence walks copy each construct's facts right, and does its decision follow them?

    R2TA_DATA_DIR=DATA python scripts/evidence_facts.py MODEL_ID [MODEL_ID ...] [--split test]

For each model's newest trace of every variant of the split (what evaluation scores), every step
that names a construct of the diagram first is compared with :func:`r2ta.audit.construct_evidence`
(the facts an evidence walk states there):

* facts: how many steps state their construct's facts exactly (the text before the first ". ",
  or the whole text of an ``ok`` step);
* defect facts: the constructs whose true facts show a structural defect (``key none``, ``identified
  by none``, ``own key``, ``1 end``, ``no roles``, ``not stated``, a multivalued or derived key, fewer than
  two superclasses), how many of them the model walked to, stated right, and flagged (any finding but
  ``ok``), and how many it stated as the variant's *base schema* has them (the correct diagram the
  mistake was planted in: the model recites what it learned of the schema instead of reading the line);
* decisions against the truth: steps at a construct a real mistake is anchored on (:func:`r2ta.audit.anchor`)
  and at the others, flagged or ok.

Plain walks and audit-shaped answers can be given too: their facts then never match, and the
decision rows still compare. Used for docs/measured/loop-run64e-evidence-2026-12-06.txt.
"""

from __future__ import annotations

import argparse
import collections

from sqlmodel import Session

from db.engine import get_engine
from r2ta.audit import anchor, construct_evidence, constructs, shows_defect
from r2ta.pipeline import _diagram, _truth
from r2ta.prompting import parse_output
from r2ta.records import load_base_schemas
from r2ta.store import latest_traces

def tally(session: Session, model: str, split: str) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    bases = {b.id: b.diagram for b in load_base_schemas()}
    for trace, variant in latest_traces(session=session, model_id=model, split=split):
        diagram = _diagram(variant)
        base = bases.get(variant.base_id)
        base_facts = {k.id: construct_evidence(base, k) for k in constructs(base)} if base else {}
        walk = constructs(diagram)
        by_id = {k.id: k for k in walk}
        wrong = {anchor(m, walk) for m in _truth(variant)} - {None}
        c["answers"] += 1
        parsed = parse_output(trace.raw_output, diagram)
        seen: set[str] = set()
        for step in parsed.steps:
            first = next((e for e in step.element_ids if e), None)
            k = by_id.get(first)
            if k is None:
                c["steps naming no construct first"] += 1
                continue
            truth = construct_evidence(diagram, k)
            said = step.text if step.finding == "ok" else step.text.split(". ")[0]
            flagged = step.finding not in (None, "", "ok")
            c["steps"] += 1
            c["facts right"] += said.strip() == truth
            if k.id not in seen and shows_defect(truth):
                c["defect constructs walked to"] += 1
                c["defect facts stated right"] += said.strip() == truth
                c["defect constructs flagged"] += flagged
                c["defect facts right and flagged"] += said.strip() == truth and flagged
                c["defect facts as in the base schema"] += said.strip() == base_facts.get(k.id)
            if k.id not in seen:
                c["ok facts stated as defect"] += (not shows_defect(truth)) and shows_defect(said.strip())
            seen.add(k.id)
            i = walk.index(k)
            c[("wrong" if i in wrong else "right") + " construct steps"] += 1
            c[("wrong" if i in wrong else "right") + " construct steps flagged"] += flagged
        c["defect constructs in the diagrams"] += sum(shows_defect(construct_evidence(diagram, k)) for k in walk)
    return c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--split", default="test", choices=["train", "test"])
    args = p.parse_args()
    with Session(get_engine()) as session:
        for model in args.models:
            c = tally(session, model, args.split)
            print(f"{model}: {c['answers']} answers, {c['steps']} construct steps "
                  f"({c['steps naming no construct first']} steps name none first)")
            if c["steps"]:
                print(f"  facts stated exactly: {c['facts right']} of {c['steps']} ({c['facts right'] / c['steps']:.3f})")
            print(f"  constructs whose facts show a defect: {c['defect constructs in the diagrams']} in the diagrams, "
                  f"{c['defect constructs walked to']} walked to, {c['defect facts stated right']} stated right, "
                  f"{c['defect constructs flagged']} flagged ({c['defect facts right and flagged']} both), "
                  f"{c['defect facts as in the base schema']} stated as the base schema has them; "
                  f"sound constructs stated as a defect: {c['ok facts stated as defect']}")
            for side in ("wrong", "right"):
                n, f = c[f"{side} construct steps"], c[f"{side} construct steps flagged"]
                print(f"  steps at a {side} construct: {n}, flagged {f}" + (f" ({f / n:.3f})" if n else ""))


if __name__ == "__main__":
    main()
