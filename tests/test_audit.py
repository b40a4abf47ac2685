"""The deterministic auditor catches every planted defect; a correct trace passes unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from r2ta.audit import LLMRefiner, audit_trace
from r2ta.prompting import parse_output
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS, TRUTH

LINES = CORRECT_TRACE.split("\n")  # 5 steps, VERDICT:, 2 mistakes


def audit(text: str):
    return audit_trace(parse_output(text, DIAGRAM), DIAGRAM, TRUTH)


def verdicts(result) -> dict[int, str]:
    return {a.step: a.verdict for a in result.step_audits}


def kinds(result) -> list[str]:
    return [c.kind for c in result.changes]


def assert_refined_is_correct(result):
    """The proposal is itself a trace the auditor has nothing to say about, listing exactly the truth."""
    again = audit(result.refined_text)
    assert again.unchanged, again.changes
    assert all(a.verdict == "correct" for a in again.step_audits)
    assert sorted(m.category for m in result.refined_verdict) == sorted(m.category for m in TRUTH)


def test_correct_trace_passes_unchanged():
    parsed = parse_output(CORRECT_TRACE, DIAGRAM)
    result = audit_trace(parsed, DIAGRAM, TRUTH)
    assert result.unchanged and result.changes == [] and result.inserted_steps == []
    assert set(verdicts(result).values()) == {"correct"}
    assert [a.status for a in result.verdict_audits] == ["correct", "correct"]
    assert result.refined_steps == parsed.steps and result.refined_verdict == parsed.verdict
    assert result.refined_text == CORRECT_TRACE


def test_hallucinated_element_in_a_step_and_in_the_verdict():
    text = "\n".join(
        LINES[:5]
        + ["Step 6 [MANAGER, EMPLOYEE]: a manager supervises employees. -> ok"]
        + LINES[5:]
        + ["MISTAKE: missing_key | MANAGER | MANAGER has no key."]
    )
    result = audit(text)
    assert verdicts(result)[6] == "hallucinated"
    assert "'MANAGER', which is not in the diagram" in result.step_audits[5].reason
    assert [a.status for a in result.verdict_audits] == ["correct", "correct", "hallucinated"]
    assert kinds(result).count("removed_step") == 1 and kinds(result).count("removed_mistake") == 1
    assert "MANAGER" not in result.refined_text
    assert_refined_is_correct(result)


def test_hallucinated_mistake_that_is_not_there():
    text = "\n".join(
        [LINES[0].replace("-> ok", "-> missing_key")] + LINES[1:] + ["MISTAKE: missing_key | DEPARTMENT | DEPARTMENT has no key."]
    )
    result = audit(text)
    assert verdicts(result)[1] == "hallucinated"
    assert "claims a missing_key mistake on DEPARTMENT, Dnumber that is not there" in result.step_audits[0].reason
    assert result.verdict_audits[2].status == "hallucinated"
    assert "no missing_key mistake on DEPARTMENT" in result.verdict_audits[2].reason
    assert_refined_is_correct(result)


def test_omission_gets_an_inserted_step_and_a_verdict_entry():
    # Nobody mentions the participation mistake: step 4 and its verdict line are gone.
    text = "\n".join(LINES[:3] + LINES[4:7])
    result = audit(text)
    assert set(verdicts(result).values()) == {"correct"}  # what is there is true
    assert [s.finding for s in result.inserted_steps] == ["participation"]
    assert result.inserted_steps[0].element_ids == ["WORKS_FOR", "EMPLOYEE"]
    assert kinds(result) == ["inserted_step", "added_mistake"]
    # The inserted step sits after the last step that shares an element (step 3, WORKS_FOR).
    assert [s.finding for s in result.refined_steps] == ["ok", "ok", "foreign_key_attribute", "participation", "ok"]
    assert_refined_is_correct(result)


def test_ok_step_that_overlooks_a_mistake_is_replaced():
    text = "\n".join(LINES[:3] + [LINES[3].replace("-> participation", "-> ok")] + LINES[4:7])
    result = audit(text)
    assert verdicts(result)[4] == "inconsistent"
    assert "has a real participation mistake (no step found it)" in result.step_audits[3].reason
    assert kinds(result) == ["removed_step", "inserted_step", "added_mistake"]
    assert result.refined_steps[3].finding == "participation"
    assert_refined_is_correct(result)


def test_step_finds_a_mistake_the_verdict_leaves_out():
    text = "\n".join(LINES[:7])  # the participation line of the verdict is missing
    result = audit(text)
    assert verdicts(result)[4] == "inconsistent"
    assert "the verdict leaves it out" in result.step_audits[3].reason
    assert kinds(result) == ["added_mistake"]
    assert_refined_is_correct(result)


def test_step_says_ok_but_verdict_says_mistake():
    text = "\n".join(LINES + ["MISTAKE: missing_key | EMPLOYEE, EMPLOYEE.Ssn | EMPLOYEE has no key."])
    result = audit(text)
    assert verdicts(result)[2] == "inconsistent"  # step 2: EMPLOYEE's key is fine
    assert "the step is right and the verdict entry is removed" in result.step_audits[1].reason
    assert result.verdict_audits[2].status == "hallucinated"
    assert kinds(result) == ["removed_mistake"]
    assert_refined_is_correct(result)


def test_step_contradicting_another_step():
    text = "\n".join(LINES[:5] + ["Step 6 [WORKS_FOR, EMPLOYEE, DEPARTMENT]: the participation is right. -> ok"] + LINES[5:])
    result = audit(text)
    assert verdicts(result)[6] == "inconsistent"
    assert "step 4 finds a real participation mistake" in result.step_audits[5].reason
    assert kinds(result) == ["removed_step"]
    assert_refined_is_correct(result)


def test_repeated_and_empty_steps_are_irrelevant():
    text = "\n".join(LINES[:5] + [LINES[1].replace("Step 2", "Step 6"), "Step 7 []: I will now look at the diagram. -> ok"] + LINES[5:])
    result = audit(text)
    assert verdicts(result)[6] == "irrelevant" and "repeats step 2" in result.step_audits[5].reason
    assert verdicts(result)[7] == "irrelevant"
    assert kinds(result) == ["removed_step", "removed_step"]
    assert_refined_is_correct(result)


def test_garbage_output_becomes_the_full_truth():
    result = audit("I think it is all fine, good job!")
    assert result.step_audits == []
    assert kinds(result) == ["inserted_step", "inserted_step", "added_mistake", "added_mistake"]
    assert_refined_is_correct(result)


@dataclass
class _Gen:
    text: str


class _QueuedBackend:
    """A fake backend returning queued outputs (unit tests only)."""

    id = "fake:refiner"

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.prompts = []

    def generate(self, prompts, max_new_tokens=256, **_):
        self.prompts += prompts
        return [_Gen(self.outputs.pop(0)) for _ in prompts]


def test_llm_refiner_proposal_is_verified_and_disagreements_flagged():
    flawed = "\n".join(LINES[:3] + LINES[4:7])  # misses participation
    proposal = "\n".join(LINES[:5] + ["Step 6 [PROJECT, PROJECT.Pnumber]: PROJECT has no key. -> missing_key"] + LINES[5:7])
    backend = _QueuedBackend([proposal])
    result = LLMRefiner(backend).refine(REQUIREMENTS, DIAGRAM, flawed, parse_output(flawed, DIAGRAM), TRUTH)
    assert result.auditor == "llm:fake:refiner"
    assert "Answer to check:" in backend.prompts[0][1]["content"] and flawed in backend.prompts[0][1]["content"]
    # The proposal is kept as the model wrote it, and every disagreement is flagged.
    assert result.refined_steps[-1].finding == "missing_key"
    assert any("proposal step 6 is hallucinated" in f for f in result.flags)
    assert any("the proposal misses a real mistake" in f and "participation" in f for f in result.flags)
    assert {c.kind for c in result.changes} >= {"inserted_step"}


def test_llm_refiner_correct_proposal_has_no_flags():
    flawed = "\n".join(LINES[:3] + LINES[4:7])
    result = LLMRefiner(_QueuedBackend([CORRECT_TRACE])).refine(REQUIREMENTS, DIAGRAM, flawed, parse_output(flawed, DIAGRAM), TRUTH)
    assert result.flags == []
    assert result.refined_text == CORRECT_TRACE
    assert [c.kind for c in result.changes] == ["inserted_step", "added_mistake"]


@pytest.mark.parametrize("garbage", ["", "VERDICT:", "Step 1 [EMPLOYEE"])
def test_llm_refiner_garbage_proposal_is_flagged_not_hidden(garbage):
    result = LLMRefiner(_QueuedBackend([garbage])).refine(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, parse_output(CORRECT_TRACE, DIAGRAM), TRUTH)
    assert any("does not parse cleanly" in f for f in result.flags)
    assert any("misses a real mistake" in f for f in result.flags)


# -- the walk shape -------------------------------------------------------------------

from r2ta.audit import WALK_AUDITOR, anchor, audit_walk, constructs, walk_steps  # noqa: E402
from r2ta.compact import ElementIndex, construct_reference, to_compact  # noqa: E402
from r2ta.eerd import Mistake, parse_diagram  # noqa: E402
from r2ta.prompting import render_trace  # noqa: E402

WALK = """Step 1 [DEPARTMENT]: -> ok
Step 2 [EMPLOYEE, EMPLOYEE.Dnumber, WORKS_FOR]: Dnumber in EMPLOYEE duplicates the WORKS_FOR relationship. -> foreign_key_attribute
Step 3 [PROJECT]: -> ok
Step 4 [WORKS_FOR, EMPLOYEE]: Every employee works for a department, so EMPLOYEE must be (1,1) in WORKS_FOR. -> participation
Step 5 [WORKS_ON]: -> ok
VERDICT:
MISTAKE: participation | WORKS_FOR, EMPLOYEE | Every employee works for a department, so EMPLOYEE must be (1,1) in WORKS_FOR.
MISTAKE: foreign_key_attribute | EMPLOYEE.Dnumber, WORKS_FOR | Dnumber in EMPLOYEE duplicates the WORKS_FOR relationship."""


def test_walk_writes_one_step_per_diagram_line_with_each_mistake_at_its_construct():
    result = audit_walk(parse_output("I think it is all fine, good job!", DIAGRAM), DIAGRAM, TRUTH)
    assert result.auditor == WALK_AUDITOR
    assert result.refined_text == WALK
    # the steps follow the prompt's diagram lines: entities, then relationships
    assert [c.id for c in constructs(DIAGRAM)] == [line.split(":")[0].split()[-1] for line in to_compact(DIAGRAM).splitlines()]
    # the foreign-key attribute sits on its owner, the participation on the relationship, not on EMPLOYEE
    assert [s.finding for s in result.inserted_steps] == ["foreign_key_attribute", "participation"]
    assert kinds(result) == ["inserted_step", "inserted_step", "rewrote_step", "added_mistake", "added_mistake"]
    # it parses back without a single error, and the ordinary auditor agrees with every step of it
    parsed = parse_output(result.refined_text, DIAGRAM)
    assert parsed.valid and parsed.errors == []
    assert_refined_is_correct(result)
    # a walk is a fixed point: walking it again changes nothing
    again = audit_walk(parsed, DIAGRAM, TRUTH)
    assert again.unchanged and again.refined_text == WALK


def test_walk_keeps_the_audit_of_the_original_steps_and_says_what_replaced_them():
    result = audit_walk(parse_output(CORRECT_TRACE, DIAGRAM), DIAGRAM, TRUTH)
    assert [a.verdict for a in result.step_audits] == ["correct"] * 5  # the judgements are audit_trace's
    removed = [c for c in result.changes if c.kind == "removed_step"]
    assert [c.step for c in removed] == [1, 2, 3, 4, 5]
    assert "gives way to the walk" in removed[0].detail and "correct" in removed[0].detail
    # the verdict the model got right is kept as the model wrote it; nothing is added to it
    assert [c.kind for c in result.changes if "mistake" in c.kind] == []
    assert [m.explanation for m in result.refined_verdict] == [m.explanation for m in parse_output(CORRECT_TRACE, DIAGRAM).verdict]


def test_walk_drops_a_hallucinated_verdict_entry_and_its_steps_follow_the_verdict():
    text = CORRECT_TRACE + "\nMISTAKE: missing_key | PROJECT | PROJECT has no key."
    result = audit_walk(parse_output(text, DIAGRAM), DIAGRAM, TRUTH)
    assert "removed_mistake" in kinds(result)
    assert [s.finding for s in result.refined_steps] == ["ok", "foreign_key_attribute", "ok", "participation", "ok"]


SPEC = parse_diagram({
    "id": "people", "name": "People",
    "entities": [
        {"id": "PERSON", "name": "PERSON", "attributes": [{"id": "PERSON.Ssn", "name": "Ssn", "key": True},
                                                            {"id": "PERSON.Kind", "name": "Kind"},
                                                            {"id": "PERSON.Pay", "name": "Pay"}]},
        {"id": "STUDENT", "name": "STUDENT"}, {"id": "STAFF", "name": "STAFF"},
        {"id": "SALARIED", "name": "SALARIED"}, {"id": "HOURLY", "name": "HOURLY"},
        {"id": "BANK", "name": "BANK", "attributes": [{"id": "BANK.Code", "name": "Code", "key": True}]},
        {"id": "OWNER", "name": "OWNER"},
    ],
    "specializations": [
        {"id": "SPEC_KIND", "superclass": "PERSON", "subclasses": ["STUDENT", "STAFF"], "defining_attribute": "PERSON.Kind",
         "defining_values": {"STUDENT": "s", "STAFF": "t"}},
        {"id": "SPEC_PAY", "superclass": "PERSON", "subclasses": ["SALARIED", "HOURLY"]},
    ],
    "categories": [{"id": "CAT_OWNER", "subclass": "OWNER", "superclasses": ["PERSON", "BANK"]}],
})


def test_walk_names_specializations_and_categories_the_way_the_prompt_shows_them():
    refs = {c.id: construct_reference(SPEC, c.id) for c in constructs(SPEC)}
    # PERSON has two specializations: "specialization of PERSON" alone would name neither
    assert refs["SPEC_KIND"] == "specialization of PERSON on Kind"
    assert refs["SPEC_PAY"] == "specialization of PERSON into SALARIED"
    assert refs["CAT_OWNER"] == "category OWNER"
    index = ElementIndex(SPEC)
    assert all(index.resolve(ref) == element_id for element_id, ref in refs.items())
    truth = [Mistake(category="specialization_constraint", elements=["SPEC_PAY", "PERSON"], explanation="Pay is total."),
             Mistake(category="specialization_structure", elements=["STAFF", "PERSON.Ssn"], explanation="no own key.")]
    assert [anchor(m, constructs(SPEC)) for m in truth] == [8, 2]  # the specialization's line; STAFF's line
    result = audit_walk(parse_output("", SPEC), SPEC, truth)
    assert "[specialization of PERSON into SALARIED, PERSON]: Pay is total. -> specialization_constraint" in result.refined_text
    assert "SPEC_PAY" not in result.refined_text  # an id the prompt never shows
    parsed = parse_output(result.refined_text, SPEC)
    assert parsed.valid and parsed.errors == [] and {tuple(m.elements) for m in parsed.verdict} == {
        ("SPEC_PAY", "PERSON"), ("STAFF", "PERSON.Ssn")}


@pytest.mark.parametrize("name", ['Per, son', "PER]SON", "A | B", "<b>X</b>"])
def test_a_hostile_superclass_name_falls_back_to_the_id_and_still_parses(name):
    data = SPEC.model_dump(mode="json")
    data["entities"][0]["name"] = name
    diagram = parse_diagram(data)
    ref = construct_reference(diagram, "SPEC_PAY")
    assert ElementIndex(diagram).resolve(ref) == "SPEC_PAY"
    result = audit_walk(parse_output("", diagram), diagram, [])
    parsed = parse_output(result.refined_text, diagram)
    assert parsed.valid and len(parsed.steps) == len(constructs(diagram))
    assert all(s.finding == "ok" and None not in s.element_ids for s in parsed.steps)


def test_a_mistake_that_names_no_construct_is_the_last_step():
    odd = Mistake(category="missing_element", elements=["NOT_THERE"], explanation="A required entity is missing.")
    steps = walk_steps(DIAGRAM, [odd])
    assert anchor(odd, constructs(DIAGRAM)) is None
    assert [s.finding for s in steps] == ["ok"] * 5 + ["missing_element"] and steps[-1].elements == ["NOT_THERE"]
    assert render_trace(steps, [odd]).splitlines()[-3] == "Step 6 [NOT_THERE]: A required entity is missing. -> missing_element"


# -- the evidence walk -------------------------------------------------------------------

from r2ta.audit import EVIDENCE_AUDITOR, construct_evidence  # noqa: E402

EVIDENCE_WALK = """Step 1 [DEPARTMENT]: key Dnumber -> ok
Step 2 [EMPLOYEE, EMPLOYEE.Dnumber, WORKS_FOR]: key Ssn. Dnumber in EMPLOYEE duplicates the WORKS_FOR relationship. -> foreign_key_attribute
Step 3 [PROJECT]: key Pnumber -> ok
Step 4 [WORKS_FOR, EMPLOYEE]: 2 ends. Every employee works for a department, so EMPLOYEE must be (1,1) in WORKS_FOR. -> participation
Step 5 [WORKS_ON]: 2 ends -> ok"""


def test_an_evidence_walk_states_each_constructs_facts_before_its_decision_and_parses_back():
    result = audit_walk(parse_output("I think it is all fine, good job!", DIAGRAM), DIAGRAM, TRUTH, evidence=True)
    assert result.auditor == EVIDENCE_AUDITOR
    assert result.refined_text == EVIDENCE_WALK + WALK[WALK.index("\nVERDICT:"):]  # the same verdict as the plain walk
    # the same decisions as the plain walk, at the same constructs
    plain = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH)
    assert [(s.element_ids, s.finding) for s in result.refined_steps] == [(s.element_ids, s.finding) for s in plain.refined_steps]
    assert "each after the construct's structural facts" in [c.detail for c in result.changes if c.kind == "rewrote_step"][0]
    parsed = parse_output(result.refined_text, DIAGRAM)
    assert parsed.valid and parsed.errors == [] and [s.finding for s in parsed.steps] == [s.finding for s in plain.refined_steps]
    assert_refined_is_correct(result)
    again = audit_walk(parsed, DIAGRAM, TRUTH, evidence=True)  # a fixed point, like the plain walk
    assert again.unchanged and again.refined_text == result.refined_text


FACTS = parse_diagram({
    "id": "facts", "name": "Facts",
    "entities": [
        {"id": "SHOP", "name": "SHOP"},  # strong, no key
        {"id": "ITEM", "name": "ITEM", "attributes": [{"id": "ITEM.Codes", "name": "Codes", "key": True, "multivalued": True},
                                                     {"id": "ITEM.No", "name": "No", "key": True}]},
        {"id": "LINE", "name": "LINE", "weak": True},  # weak: no partial key, no identifying relationship
        {"id": "STOCK", "name": "STOCK", "weak": True, "attributes": [{"id": "STOCK.Bin", "name": "Bin", "partial_key": True}]},
        {"id": "FOOD", "name": "FOOD", "attributes": [{"id": "FOOD.Sku", "name": "Sku", "key": True}]},
        {"id": "TOOL", "name": "TOOL"},
        {"id": "OWNER", "name": "OWNER"},
        {"id": "PERSON", "name": "PERSON", "attributes": [{"id": "PERSON.Ssn", "name": "Ssn", "key": True}]},
    ],
    "relationships": [
        {"id": "HOLDS", "name": "HOLDS", "identifying": True,
         "participants": [{"entity": "ITEM", "max": "N"}, {"entity": "STOCK", "min": 1, "max": 1}]},
        {"id": "MANAGES", "name": "MANAGES",
         "participants": [{"entity": "PERSON", "role": "boss"}, {"entity": "PERSON", "role": "worker"}]},
        {"id": "KNOWS", "name": "KNOWS", "participants": [{"entity": "PERSON"}, {"entity": "PERSON"}]},
        {"id": "ALONE", "name": "ALONE", "participants": [{"entity": "SHOP"}]},
    ],
    "specializations": [{"id": "SPEC", "superclass": "ITEM", "subclasses": ["FOOD", "TOOL"], "disjointness": None,
                         "completeness": "total"}],
    "categories": [{"id": "CAT", "subclass": "OWNER", "superclasses": ["PERSON"]}],
})


def test_construct_evidence_states_the_facts_each_structural_rule_reads():
    facts = {c.id: construct_evidence(FACTS, c) for c in constructs(FACTS)}
    assert facts == {
        "SHOP": "key none",
        "ITEM": "key Codes (multivalued), No",
        "LINE": "weak; partial key none; identified by none",
        "STOCK": "weak; partial key Bin; identified by HOLDS",
        "FOOD": "subclass of ITEM; own key Sku",
        "TOOL": "subclass of ITEM; no own key",
        "OWNER": "subclass of PERSON; no own key",
        "PERSON": "key Ssn",
        "HOLDS": "2 ends",
        "MANAGES": "2 ends; recursive on PERSON, roles boss, worker",
        "KNOWS": "2 ends; recursive on PERSON, no roles",
        "ALONE": "1 end",
        "SPEC": "superclass ITEM; 2 subclasses; disjointness not stated; total",
        "CAT": "1 superclass",
    }
    # every mistake the checker finds here sits on a step whose facts show it
    from r2ta.checker import check

    found = check(FACTS)
    assert {m.category for m in found} >= {"missing_key", "weak_entity", "relationship_structure",
                                           "specialization_constraint", "specialization_structure"}
    result = audit_walk(parse_output("", FACTS), FACTS, found, evidence=True)
    parsed = parse_output(result.refined_text, FACTS)
    assert parsed.valid and [s.finding for s in parsed.steps] == [s.finding for s in result.refined_steps]
    shown = {(s.element_ids[0], s.finding): s.text.split(". ")[0] for s in result.refined_steps if s.finding != "ok"}
    assert shown[("SHOP", "missing_key")] == "key none"
    assert shown[("ITEM", "missing_key")] == "key Codes (multivalued), No"
    assert shown[("LINE", "weak_entity")] == "weak; partial key none; identified by none"
    assert shown[("KNOWS", "relationship_structure")] == "2 ends; recursive on PERSON, no roles"
    assert shown[("ALONE", "relationship_structure")] == "1 end"
    assert shown[("FOOD", "specialization_structure")] == "subclass of ITEM; own key Sku"
    assert shown[("SPEC", "specialization_constraint")] == "superclass ITEM; 2 subclasses; disjointness not stated; total"
    assert shown[("CAT", "specialization_structure")] == "1 superclass"


@pytest.mark.parametrize("name", ["A -> B", "<script>x</script>", 'Say "hi"', "x\ny"])
def test_an_evidence_walk_over_hostile_names_still_parses_to_the_same_decisions(name):
    data = FACTS.model_dump(mode="json")
    data["entities"][1]["attributes"][1]["name"] = name  # a key's name goes into the evidence
    data["relationships"][1]["participants"][0]["role"] = name  # and a role's
    diagram = parse_diagram(data)
    from r2ta.checker import check

    found = check(diagram)
    result = audit_walk(parse_output("", diagram), diagram, found, evidence=True)
    parsed = parse_output(result.refined_text, diagram)
    assert parsed.valid and len(parsed.steps) == len(result.refined_steps)
    assert [s.finding for s in parsed.steps] == [s.finding for s in result.refined_steps]


def test_a_weak_entity_is_identified_only_by_the_relationships_that_identify_it():
    """FLIGHT -> FLIGHT_LEG -> LEG_INSTANCE: FLIGHT_LEG owns LEG_INSTANCE through INSTANCE_OF, which does not identify it."""
    chain = parse_diagram({
        "id": "legs", "name": "Legs",
        "entities": [
            {"id": "FLIGHT", "name": "FLIGHT", "attributes": [{"id": "FLIGHT.No", "name": "No", "key": True}]},
            {"id": "FLIGHT_LEG", "name": "FLIGHT_LEG", "weak": True,
             "attributes": [{"id": "FLIGHT_LEG.Leg", "name": "Leg", "partial_key": True}]},
            {"id": "LEG_INSTANCE", "name": "LEG_INSTANCE", "weak": True,
             "attributes": [{"id": "LEG_INSTANCE.Date", "name": "Date", "partial_key": True}]},
        ],
        "relationships": [
            {"id": "HAS_LEG", "name": "HAS_LEG", "identifying": True,
             "participants": [{"entity": "FLIGHT", "min": 1, "max": "N"}, {"entity": "FLIGHT_LEG", "min": 1, "max": 1}]},
            {"id": "INSTANCE_OF", "name": "INSTANCE_OF", "identifying": True,
             "participants": [{"entity": "FLIGHT_LEG", "max": "N"}, {"entity": "LEG_INSTANCE", "min": 1, "max": 1}]},
        ],
    })
    facts = {c.id: construct_evidence(chain, c) for c in constructs(chain)}
    assert facts["FLIGHT_LEG"] == "weak; partial key Leg; identified by HAS_LEG"
    assert facts["LEG_INSTANCE"] == "weak; partial key Date; identified by INSTANCE_OF"


def test_the_facts_that_show_a_defect_are_the_constructs_the_checker_flags():
    """scripts/evidence_facts.py counts a construct as 'showing a defect' from its facts alone
    (r2ta.audit.shows_defect); on a diagram with one defect of each kind that reading agrees with the
    checker construct by construct."""
    from r2ta.audit import shows_defect
    from r2ta.checker import check

    walk = constructs(FACTS)
    flagged = {walk[i].id for i in {anchor(m, walk) for m in check(FACTS)} - {None}}
    shown = {c.id for c in walk if shows_defect(construct_evidence(FACTS, c))}
    assert shown == flagged == {"SHOP", "ITEM", "LINE", "FOOD", "KNOWS", "ALONE", "SPEC", "CAT"}


def test_an_ok_step_that_misstates_its_constructs_facts_is_a_hallucination():
    """What run64e's model did: it wrote the facts it remembered of the schema, not the line's."""
    from r2ta.audit import misstated_evidence

    text = EVIDENCE_WALK.replace("Step 1 [DEPARTMENT]: key Dnumber -> ok", "Step 1 [DEPARTMENT]: key Dname -> ok") \
        .replace("Step 5 [WORKS_ON]: 2 ends -> ok", "Step 5 [WORKS_ON]: 3 ends -> ok") + WALK[WALK.index("\nVERDICT:"):]
    result = audit(text)
    audits = {a.step: a for a in result.step_audits}
    assert (audits[1].verdict, audits[1].reason) == (
        "hallucinated", "states 'key Dname' about DEPARTMENT, but the diagram shows 'key Dnumber'")
    assert audits[5].verdict == "hallucinated" and "'3 ends'" in audits[5].reason and "'2 ends'" in audits[5].reason
    assert audits[3].verdict == "correct"  # its facts are the diagram's
    assert [c.step for c in result.changes if c.kind == "removed_step"] == [1, 5]
    # at a construct with a real mistake, the ok step stays 'inconsistent' and says what it misstated
    wrong = text.replace("Step 4 [WORKS_FOR, EMPLOYEE]: 2 ends. Every employee works for a department, so EMPLOYEE must "
                         "be (1,1) in WORKS_FOR. -> participation", "Step 4 [WORKS_FOR, EMPLOYEE]: 1 end -> ok")
    four = {a.step: a for a in audit(wrong).step_audits}[4]
    assert four.verdict == "inconsistent" and four.reason.endswith("(it states '1 end'; the diagram shows '2 ends')")
    # a free sentence that happens to open with "key" is no statement of facts
    free = parse_output("Step 1 [DEPARTMENT]: key Dname is unique per department -> ok\nVERDICT:\nNONE", DIAGRAM)
    assert misstated_evidence(free.steps[0], DIAGRAM) is None
    assert misstated_evidence(parse_output(EVIDENCE_WALK + "\nVERDICT:\nNONE", DIAGRAM).steps[0], DIAGRAM) is None
