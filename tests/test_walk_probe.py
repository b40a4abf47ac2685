"""r2ta.walk_probe: the teacher-forced P(ok) per construct behind scripts/walk_decisions.py."""

from __future__ import annotations

import math

import pytest
import torch

from reasoning_fixtures import DIAGRAM, REQUIREMENTS, TRUTH
from r2ta import walk_probe
from r2ta.audit import constructs
from r2ta.prompting import parse_output
from training.tiny import build_tiny_llama, build_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer()
    return build_tiny_llama(tok).eval(), tok


def test_auc_counts_wins_and_half_ties():
    assert walk_probe.auc([2.0, 3.0], [1.0]) == 1.0
    assert walk_probe.auc([1.0], [2.0, 3.0]) == 0.0
    assert walk_probe.auc([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert walk_probe.auc([3.0], [1.0, 3.0, 5.0]) == 0.5
    assert math.isnan(walk_probe.auc([], [1.0]))


def test_each_step_decision_is_the_tokens_after_the_construct_name(tiny):
    _, tok = tiny
    case = walk_probe.walk_case(tok, REQUIREMENTS, DIAGRAM, TRUTH)
    walk = constructs(DIAGRAM)
    parsed = parse_output(case.answer, DIAGRAM)
    assert parsed.valid and not parsed.errors and parsed.verdict == [] and len(parsed.steps) == len(walk) == len(case.spans)
    for span in case.spans:  # the tiny tokenizer is byte-level: the span is exactly the decision's text
        assert tok.decode([case.answer_ids[k] for k in span]) == "]: -> ok"
    # every mistake of the truth sits on a construct that owns one of its elements, and only those are wrong
    assert case.wrong and all(any(e in walk[i].owns for m in TRUTH for e in m.elements) for i in case.wrong)
    assert case.prompt_ids == tok(tok.apply_chat_template(
        walk_probe.build_messages(REQUIREMENTS, DIAGRAM), tokenize=False, add_generation_prompt=True),
        add_special_tokens=False)["input_ids"]


def test_p_ok_equals_the_full_forward_pass(tiny):
    model, tok = tiny
    case = walk_probe.walk_case(tok, REQUIREMENTS, DIAGRAM, TRUTH)
    got = walk_probe.p_ok(model, case)
    ids = torch.tensor([case.prompt_ids + case.answer_ids])
    with torch.inference_mode():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = len(case.prompt_ids)
    want = [math.exp(sum(logp[start + k - 1, case.answer_ids[k]].item() for k in span)) for span in case.spans]
    assert got == pytest.approx(want, rel=1e-4)
    assert all(0.0 < p < 1.0 for p in got)


def test_score_counts_top1_chance_and_splits_right_from_wrong(monkeypatch):
    cases = [walk_probe.WalkCase([], "", [], [[0]] * 4, {2}), walk_probe.WalkCase([], "", [], [[0]] * 2, {0, 1})]
    probs = iter([[0.9, 0.8, 0.1, 0.7], [0.5, 0.6]])
    monkeypatch.setattr(walk_probe, "p_ok", lambda model, case: next(probs))
    result = walk_probe.score(None, cases)
    assert result.p_wrong == [0.1, 0.5, 0.6] and result.p_right == [0.9, 0.8, 0.7]
    assert result.top1 == 2 and result.chance == pytest.approx(0.25 + 1.0)
    assert result.auc == 1.0  # every wrong construct has a lower P(ok) than every right one
    assert "AUC 1.000" in result.line() and "2/2" in result.line()
