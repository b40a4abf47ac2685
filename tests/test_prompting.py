"""The reasoning format: prompt contents, parser robustness, render/parse round trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from r2ta.eerd import CATEGORIES, Mistake
from r2ta.prompting import (
    CATEGORY_MEANINGS,
    VERDICT_HEADER,
    build_messages,
    has_verdict_line,
    make_step,
    parse_output,
    render_trace,
    verdict_prefix,
)
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS


def test_prompt_holds_requirements_diagram_and_every_category():
    messages = build_messages(REQUIREMENTS, DIAGRAM)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "BAND" not in str(messages)  # r2ta-v2: no worked example unless asked for
    system, user = messages[0], messages[-1]
    assert REQUIREMENTS in user["content"]
    assert "RELATIONSHIP WORKS_FOR: EMPLOYEE (0,1) -- DEPARTMENT (1,N)" in user["content"]
    for c in CATEGORIES:
        assert f"- {c}: {CATEGORY_MEANINGS[c]}" in system["content"]
    assert "VERDICT:" in system["content"] and "MISTAKE: <category> | <element>" in system["content"]


def test_the_prompts_own_example_answer_parses_as_valid():
    # The worked example in the prompt must itself be in the format the parser reads.
    messages = build_messages(REQUIREMENTS, DIAGRAM, worked_example=True)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    example = messages[2]["content"]
    from r2ta.eerd import parse_diagram

    band = parse_diagram(
        {
            "id": "band",
            "name": "Band",
            "entities": [
                {"id": "BAND", "name": "BAND", "attributes": [{"id": "BAND.Band_name", "name": "Band_name", "key": True}, {"id": "BAND.Genre", "name": "Genre"}]},
                {
                    "id": "MUSICIAN",
                    "name": "MUSICIAN",
                    "attributes": [
                        {"id": "MUSICIAN.Musician_id", "name": "Musician_id", "key": True},
                        {"id": "MUSICIAN.Name", "name": "Name"},
                        {"id": "MUSICIAN.Band_name", "name": "Band_name"},
                    ],
                },
            ],
            "relationships": [
                {"id": "PLAYS_IN", "name": "PLAYS_IN", "participants": [{"entity": "MUSICIAN", "min": 0, "max": 1}, {"entity": "BAND", "min": 1}]}
            ],
        }
    )
    parsed = parse_output(example, band)
    assert parsed.valid and parsed.errors == []
    assert [m.category for m in parsed.verdict] == ["foreign_key_attribute", "participation"]


def test_correct_trace_parses_without_errors():
    parsed = parse_output(CORRECT_TRACE, DIAGRAM)
    assert parsed.valid and parsed.errors == []
    assert [s.finding for s in parsed.steps] == ["ok", "ok", "foreign_key_attribute", "participation", "ok"]
    assert parsed.verdict[1] == Mistake(category="participation", elements=["WORKS_FOR", "EMPLOYEE"], explanation="EMPLOYEE must be (1,1) in WORKS_FOR.")
    assert parsed.unresolved == [] and len(parsed.references) == 14


def test_names_resolve_to_ids_case_and_spacing_insensitive():
    text = "Step 1 [employee, Ssn]: key. -> OK\nVERDICT:\nMISTAKE: Participation | works for, Employee | optional"
    parsed = parse_output(text, DIAGRAM)
    assert parsed.valid
    assert parsed.steps[0].element_ids == ["EMPLOYEE", "EMPLOYEE.Ssn"] and parsed.steps[0].finding == "ok"
    assert parsed.verdict[0].elements == ["WORKS_FOR", "EMPLOYEE"]


def test_empty_output():
    for text in ("", "   \n\n", None):
        parsed = parse_output(text, DIAGRAM)
        assert not parsed.valid and parsed.verdict == [] and parsed.errors == ["empty output"]


def test_truncated_before_the_verdict():
    text = CORRECT_TRACE.split("VERDICT:")[0][:-40]
    parsed = parse_output(text, DIAGRAM)
    assert not parsed.valid and parsed.verdict == []
    assert any("no 'VERDICT:' line" in e for e in parsed.errors)
    assert len(parsed.steps) == 5  # what was written is kept


def test_truncated_inside_the_last_mistake_line():
    text = CORRECT_TRACE[: CORRECT_TRACE.rindex("MISTAKE: participation") + len("MISTAKE: partic")]
    parsed = parse_output(text, DIAGRAM)
    assert not parsed.valid
    assert [m.category for m in parsed.verdict] == ["foreign_key_attribute"]
    assert any("expected 'category | elements | explanation'" in e for e in parsed.errors)


def test_truncated_step_element_list():
    parsed = parse_output("Step 1 [EMPLOYEE, EMPLOY", DIAGRAM)
    assert not parsed.valid
    assert any("no closing ']'" in e for e in parsed.errors)
    assert any("unknown element 'EMPLOY'" in e for e in parsed.errors)


def test_non_json_and_free_text_outputs_never_raise():
    for text in (
        '{"mistakes": [{"category": "cardinality"',
        "The diagram looks fine to me.",
        "VERDICT: the diagram has a cardinality problem somewhere",
        "\x00\x01 ||| -> -> [[[ ]]] VERDICT:: MISTAKE:: |||",
        "Step 99999999999 [",
    ):
        parsed = parse_output(text, DIAGRAM)
        assert not parsed.valid
        assert parsed.errors


def test_wrong_category_is_dropped_and_invalidates():
    text = "Step 1 [WORKS_FOR]: x -> cardinalty\nVERDICT:\nMISTAKE: cardinalty | WORKS_FOR | too many"
    parsed = parse_output(text, DIAGRAM)
    assert not parsed.valid and parsed.verdict == []
    assert parsed.steps[0].finding is None
    assert any("unknown category 'cardinalty'" in e for e in parsed.errors)
    assert any("unknown finding 'cardinalty'" in e for e in parsed.errors)


def test_unknown_element_is_kept_as_written_and_recorded():
    text = "Step 1 [MANAGER]: x -> missing_key\nVERDICT:\nMISTAKE: missing_key | MANAGER, EMPLOYEE | MANAGER has no key"
    parsed = parse_output(text, DIAGRAM)
    assert parsed.valid  # the format is right; the content is wrong, and measured as such
    assert parsed.verdict[0].elements == ["MANAGER", "EMPLOYEE"]
    assert parsed.steps[0].element_ids == [None]
    assert parsed.unresolved == ["MANAGER", "MANAGER"]
    assert sum("unknown element 'MANAGER'" in e for e in parsed.errors) == 2


def test_duplicated_mistakes_and_steps_are_recorded_once():
    line = "MISTAKE: participation | WORKS_FOR, EMPLOYEE | must be (1,1)"
    step = "Step 1 [WORKS_FOR, EMPLOYEE]: optional. -> participation"
    text = "\n".join([step, step.replace("Step 1", "Step 2"), "VERDICT:", line, line, line.replace("WORKS_FOR, EMPLOYEE", "EMPLOYEE, works_for")])
    parsed = parse_output(text, DIAGRAM)
    assert parsed.valid
    assert len(parsed.verdict) == 1
    assert sum("duplicate of an earlier mistake" in e for e in parsed.errors) == 2
    assert "step 2 repeats step 1" in parsed.errors
    assert len(parsed.steps) == 2  # repeated steps stay: the auditor marks them irrelevant


def test_looping_output_is_bounded():
    text = "VERDICT:\n" + "\n".join(f"MISTAKE: cardinality | WORKS_FOR | loop {i}" for i in range(500))
    parsed = parse_output(text, DIAGRAM)
    assert len(parsed.verdict) == 1  # all duplicates of the first
    assert any("more than 50 mistakes" in e for e in parsed.errors)


def test_none_verdict_and_markdown_decorations():
    text = "**Step 1** [EMPLOYEE, EMPLOYEE.Ssn]: fine -> ok\n## VERDICT:\nNONE"
    parsed = parse_output(text, DIAGRAM)
    assert parsed.valid and parsed.verdict == [] and parsed.errors == []
    assert parse_output("VERDICT: none", DIAGRAM).valid


def test_empty_verdict_is_invalid():
    parsed = parse_output("Step 1 [EMPLOYEE]: fine -> ok\nVERDICT:\n", DIAGRAM)
    assert not parsed.valid
    assert any("the verdict is empty" in e for e in parsed.errors)


def test_render_writes_what_the_parser_reads():
    parsed = parse_output(CORRECT_TRACE, DIAGRAM)
    assert render_trace(parsed.steps, parsed.verdict) == CORRECT_TRACE
    assert render_trace([], []) == "VERDICT:\nNONE"
    # a step with nothing to say (a walk's ok step) is written with one space, and read back as such
    bare = parse_output("Step 1 [PROJECT]: -> ok\nVERDICT:\nNONE", DIAGRAM)
    assert bare.errors == [] and bare.steps[0].text == "" and bare.steps[0].finding == "ok"
    assert render_trace(bare.steps, bare.verdict) == "Step 1 [PROJECT]: -> ok\nVERDICT:\nNONE"


_ids = sorted(DIAGRAM.element_ids())
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.sampled_from(_ids), min_size=1, max_size=3, unique=True), _text, st.sampled_from(["ok", *CATEGORIES])),
        max_size=5,
    ),
    verdict=st.lists(
        st.tuples(st.sampled_from(CATEGORIES), st.lists(st.sampled_from(_ids), min_size=1, max_size=3, unique=True), _text),
        max_size=4,
        unique_by=lambda t: (t[0], frozenset(t[1])),
    ),
)
def test_round_trip(steps, verdict):
    step_objs = [make_step(i, els, text.replace("->", "to").replace("=>", "to").replace("→", "to"), f) for i, (els, text, f) in enumerate(steps, 1)]
    mistakes = [Mistake(category=c, elements=els, explanation=" ".join(e.split())) for c, els, e in verdict]
    parsed = parse_output(render_trace(step_objs, mistakes), DIAGRAM)
    assert parsed.valid
    assert [(s.element_ids, s.finding) for s in parsed.steps] == [(s.element_ids, s.finding) for s in step_objs]
    assert [(m.category, m.elements) for m in parsed.verdict] == [(m.category, m.elements) for m in mistakes]


# -- asking for a verdict the model did not reach ------------------------------------------

STEPS = (
    "Step 1 [EMPLOYEE, EMPLOYEE.Ssn]: EMPLOYEE is identified by Ssn. -> ok\n"
    "Step 2 [WORKS_FOR, EMPLOYEE]: Every employee works for a department, but EMPLOYEE is (0,1). -> participation\n"
)


def test_an_answer_with_a_verdict_line_needs_nothing():
    assert has_verdict_line(CORRECT_TRACE) and verdict_prefix(CORRECT_TRACE, cut=False) is None
    assert verdict_prefix("Step 1 [A]: x -> ok\n**Verdict:** NONE", cut=True) is None  # as the parser reads it
    assert not has_verdict_line("The VERDICT is:\n") and not has_verdict_line(None)


def test_a_cut_answer_keeps_its_complete_lines_then_asks_for_the_verdict():
    cut = STEPS + "Step 3 [DEPARTMENT, DEPARTMENT.Dnum"  # the budget ran out mid-step
    prefix = verdict_prefix(cut, cut=True)
    assert prefix == STEPS + VERDICT_HEADER
    # ended by itself (no cut): the last line is complete and stays
    assert verdict_prefix(STEPS.rstrip("\n"), cut=False) == STEPS + VERDICT_HEADER
    # the model then writes its verdict, and the whole answer is a valid trace with the steps kept
    answer = prefix + "MISTAKE: participation | WORKS_FOR, EMPLOYEE | Every employee works for one."
    parsed = parse_output(answer, DIAGRAM)
    assert parsed.valid and [s.finding for s in parsed.steps] == ["ok", "participation"]
    assert [m.category for m in parsed.verdict] == ["participation"]


def test_an_own_verdict_is_cut_where_the_parser_splits_the_answer():
    from r2ta.prompting import own_verdict_prefix

    assert own_verdict_prefix(STEPS) is None and own_verdict_prefix(None) is None
    # "VERDICT: MISTAKE ..." on one line, in markdown: cut before the line, the header on its own line
    answer = STEPS + "\n**Verdict:** MISTAKE: participation | WORKS_FOR | x\nStep 3 [A]: more -> ok"
    assert own_verdict_prefix(answer) == STEPS + VERDICT_HEADER
    assert own_verdict_prefix("VERDICT: NONE") == VERDICT_HEADER
    assert own_verdict_prefix(STEPS.replace("\n", "\r\n") + "VERDICT:\r\nNONE") == STEPS + VERDICT_HEADER
    # the first verdict line, as parse_output reads it; a step mentioning "the verdict" mid-line is no verdict
    two = "Step 1 [A]: my verdict is near -> ok\nVERDICT:\nNONE\nVERDICT:\nMISTAKE: x | A | y"
    assert own_verdict_prefix(two) == "Step 1 [A]: my verdict is near -> ok\n" + VERDICT_HEADER


def test_a_looping_tail_is_dropped_before_the_verdict():
    looping = STEPS + "3. Each employee has a name.\n4. Each employee has a name.\n5. Each employee has a name.\n6. Each emp"
    assert verdict_prefix(looping, cut=True) == STEPS + "3. Each employee has a name.\n" + VERDICT_HEADER
    # nothing usable at all: the verdict is asked for straight away
    assert verdict_prefix("", cut=False) == VERDICT_HEADER
    assert verdict_prefix("\n\n", cut=True) == VERDICT_HEADER
    assert verdict_prefix("The VERDICT is:\n\nThe VERDICT is:\n\nThe VERD", cut=True) == "The VERDICT is:\n" + VERDICT_HEADER
