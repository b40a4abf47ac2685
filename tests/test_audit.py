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
