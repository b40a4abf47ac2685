"""Planted DPO negatives: one error in an otherwise identical trace, always a valid trace, reproducible."""

from __future__ import annotations

import pytest

from r2ta.negatives import KINDS, planted_negative
from r2ta.prompting import parse_output
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM

NO_MISTAKES = "Step 1 [DEPARTMENT, DEPARTMENT.Dnumber]: DEPARTMENT is identified by Dnumber. -> ok\nVERDICT:\nNONE"


def _verdict(text):
    parsed = parse_output(text, DIAGRAM)
    assert parsed.valid, parsed.errors
    return [(m.category, tuple(m.elements)) for m in parsed.verdict]


def test_omission_drops_one_true_mistake_and_its_step_says_ok():
    kind, rejected = planted_negative(CORRECT_TRACE, DIAGRAM, key="v1", kind="omission")
    assert kind == "omission"
    before, after = _verdict(CORRECT_TRACE), _verdict(rejected)
    assert len(after) == len(before) - 1 and set(after) < set(before)
    dropped = (set(before) - set(after)).pop()[0]
    assert f"-> {dropped}" not in rejected and rejected.count("-> ok") == CORRECT_TRACE.count("-> ok") + 1


def test_omitting_the_only_mistake_leaves_an_explicit_none():
    only = "\n".join(line for line in CORRECT_TRACE.splitlines() if "participation" not in line)
    _, rejected = planted_negative(only, DIAGRAM, key="v1", kind="omission")
    assert _verdict(rejected) == [] and rejected.rstrip().endswith("VERDICT:\nNONE")


def test_hallucination_claims_a_mistake_on_a_real_element_the_verdict_does_not_have():
    _, rejected = planted_negative(CORRECT_TRACE, DIAGRAM, key="v1", kind="hallucination")
    before, after = _verdict(CORRECT_TRACE), _verdict(rejected)
    assert before == after[: len(before)] and len(after) == len(before) + 1
    category, elements = after[-1]
    assert category not in {c for c, _ in before}
    assert not parse_output(rejected, DIAGRAM).unresolved  # grounded: a plausible, hard negative
    assert f"Step 6 [" in rejected and rejected.index("Step 6") < rejected.index("VERDICT:")


def test_hallucination_in_a_walk_turns_the_elements_own_ok_step_into_the_claim():
    from r2ta.audit import audit_walk
    from reasoning_fixtures import TRUTH

    walk = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH).refined_text
    for key in (f"w{n}" for n in range(8)):
        _, rejected = planted_negative(walk, DIAGRAM, key=key, kind="hallucination")
        changed = [(a, b) for a, b in zip(walk.splitlines(), rejected.splitlines()) if a != b]
        assert len(rejected.splitlines()) == len(walk.splitlines()) + 1  # only the verdict line is added
        (before, after), = changed  # and exactly one step changes: its own ok step
        assert before.endswith("]: -> ok") and after.split("]")[0] == before.split("]")[0]
        assert len(_verdict(rejected)) == len(_verdict(walk)) + 1


def test_omission_in_a_walk_writes_the_walk_without_that_mistake():
    """The pair 'the walk' vs 'the same walk saying ok at a wrong construct': one decision, one verdict line."""
    from r2ta.audit import audit_walk, walk_steps
    from r2ta.prompting import render_step
    from reasoning_fixtures import TRUTH

    walk = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH).refined_text
    verdict = parse_output(walk, DIAGRAM).verdict
    assert len(verdict) >= 2
    seen = set()
    for key in (f"w{n}" for n in range(12)):
        kind, rejected = planted_negative(walk, DIAGRAM, key=key, kind="omission")
        assert kind == "omission"
        kept = parse_output(rejected, DIAGRAM).verdict
        (dropped,) = [m for m in verdict if m not in kept]
        seen.add(dropped.category)
        # its steps are exactly the walk of the verdict that lacks the mistake: a bare ok step where it was
        steps = [line for line in rejected.splitlines() if line.startswith("Step")]
        assert steps == [render_step(s) for s in walk_steps(DIAGRAM, kept)]
        assert "]: -> ok" in "\n".join(steps) and f"-> {dropped.category}" not in "\n".join(steps)
        before = [line for line in walk.splitlines() if line.startswith("Step")]
        changed = [(a, b) for a, b in zip(before, steps) if a != b]  # (each construct here has one mistake)
        assert len(steps) == len(before) and len(changed) == 1 and changed[0][1].endswith("]: -> ok")
        assert changed[0][0].split("]")[0].split(",")[0] == changed[0][1].split("]")[0]  # the same construct's step
        lost = [line for line in walk.splitlines() if line not in rejected.splitlines()]
        assert lost == [changed[0][0], next(line for line in walk.splitlines()  # and its verdict line
                                            if line.startswith(f"MISTAKE: {dropped.category} |"))]
    assert len(seen) > 1  # the key picks which mistake


def test_omitting_a_walks_only_mistake_leaves_the_all_ok_walk_and_none():
    from r2ta.audit import audit_walk, walk_steps
    from r2ta.prompting import render_step
    from reasoning_fixtures import TRUTH

    walk = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH[:1]).refined_text
    _, rejected = planted_negative(walk, DIAGRAM, key="w", kind="omission")
    assert _verdict(rejected) == [] and rejected.rstrip().endswith("VERDICT:\nNONE")
    assert [line for line in rejected.splitlines() if line.startswith("Step")] == [
        render_step(s) for s in walk_steps(DIAGRAM, [])]


def test_hallucination_on_a_trace_that_found_nothing_replaces_none():
    _, rejected = planted_negative(NO_MISTAKES, DIAGRAM, key="v2", kind="hallucination")
    assert "NONE" not in rejected and len(_verdict(rejected)) == 1


def test_misclassification_keeps_the_elements_and_changes_the_category_everywhere():
    _, rejected = planted_negative(CORRECT_TRACE, DIAGRAM, key="v1", kind="misclassification")
    before, after = _verdict(CORRECT_TRACE), _verdict(rejected)
    assert [e for _, e in before] == [e for _, e in after]
    changed = [(b, a) for (b, _), (a, _) in zip(before, after) if a != b]
    assert len(changed) == 1
    old, new = changed[0]
    assert f"-> {new}" in rejected and f"-> {old}" not in rejected


@pytest.mark.parametrize("key", [f"variant-{n}" for n in range(12)])
def test_the_default_kind_is_reproducible_and_always_differs_from_chosen(key):
    first = planted_negative(CORRECT_TRACE, DIAGRAM, key=key)
    assert first == planted_negative(CORRECT_TRACE, DIAGRAM, key=key)
    kind, rejected = first
    assert kind in KINDS and rejected != CORRECT_TRACE and parse_output(rejected, DIAGRAM).valid


def test_every_kind_is_used_across_variants():
    assert {planted_negative(CORRECT_TRACE, DIAGRAM, key=f"v{n}")[0] for n in range(40)} == set(KINDS)


def test_nothing_is_planted_in_a_trace_that_does_not_parse_and_unknown_kinds_are_refused():
    assert planted_negative("The VERDICT is: The VERDICT is:", DIAGRAM, key="v") is None
    assert planted_negative(NO_MISTAKES, DIAGRAM, key="v", kind="omission") is None
    with pytest.raises(ValueError, match="unknown negative kind"):
        planted_negative(CORRECT_TRACE, DIAGRAM, key="v", kind="typo")


def test_the_model_card_says_where_the_rejected_traces_came_from(tmp_path):
    import json

    from training.data import describe_file
    from training.model_card import _rejected_text

    path = tmp_path / "dpo.jsonl"
    rows = [{"provenance": {"rejected_source": "planted:omission"}}] * 2 + [{"provenance": {}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    described = describe_file("dpo", path).as_dict()
    assert described["rows"] == 3 and described["rejected_sources"] == {"model": 1, "planted:omission": 2}
    assert _rejected_text([described]) == "Rejected traces: 1 the model's original output, 2 a planted omission (see r2ta.negatives)."
    assert "rejected_sources" not in describe_file("sft", path).as_dict()


def test_omission_in_an_evidence_walk_keeps_the_facts_and_turns_the_decision_to_ok():
    """The pair differs in one decision: the construct's facts stay, its explanation and verdict line go."""
    from r2ta.audit import audit_walk, walk_steps
    from r2ta.prompting import render_step
    from reasoning_fixtures import TRUTH

    walk = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH, evidence=True).refined_text
    verdict = parse_output(walk, DIAGRAM).verdict
    seen = set()
    for key in (f"e{n}" for n in range(12)):
        kind, rejected = planted_negative(walk, DIAGRAM, key=key, kind="omission")
        kept = parse_output(rejected, DIAGRAM).verdict
        (dropped,) = [m for m in verdict if m not in kept]
        seen.add(dropped.category)
        steps = [line for line in rejected.splitlines() if line.startswith("Step")]
        assert steps == [render_step(s) for s in walk_steps(DIAGRAM, kept, evidence=True)]
        changed = [(a, b) for a, b in zip([x for x in walk.splitlines() if x.startswith("Step")], steps) if a != b]
        (before, after), = changed
        facts = before.split("]: ")[1].split(". ")[0]  # "key Ssn" / "2 ends"
        assert after.endswith(f"]: {facts} -> ok")
    assert seen == {m.category for m in verdict}


def test_hallucination_in_an_evidence_walk_keeps_the_steps_facts():
    """The pair differs in the decision only: the rejected step states the same facts, then claims the mistake."""
    from r2ta.audit import audit_walk
    from reasoning_fixtures import TRUTH

    walk = audit_walk(parse_output("", DIAGRAM), DIAGRAM, TRUTH, evidence=True).refined_text
    for key in (f"h{n}" for n in range(8)):
        _, rejected = planted_negative(walk, DIAGRAM, key=key, kind="hallucination")
        (before, after), = [(a, b) for a, b in zip(walk.splitlines(), rejected.splitlines()) if a != b]
        facts = before.split("]: ")[1].removesuffix(" -> ok")
        assert after.split("]: ")[1].startswith(facts + ". ") and not after.endswith("-> ok")
        assert parse_output(rejected, DIAGRAM).valid
