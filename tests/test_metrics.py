"""DESIGN.md §5 metrics on hand-computed cases."""

from __future__ import annotations

import pytest

from r2ta.eerd import Mistake
from r2ta.metrics import EvalItem, EvaluationReport, evaluate, format_report, match


def M(category: str, *elements: str) -> Mistake:
    return Mistake(category=category, elements=list(elements))


def test_match_needs_same_category_and_overlapping_elements():
    truth = [M("cardinality", "WORKS_FOR", "EMPLOYEE")]
    assert match([M("cardinality", "EMPLOYEE")], truth) == [(0, 0)]
    assert match([M("participation", "WORKS_FOR", "EMPLOYEE")], truth) == []
    assert match([M("cardinality", "DEPARTMENT")], truth) == []


def test_each_truth_is_matched_at_most_once():
    truth = [M("cardinality", "A")]
    assert match([M("cardinality", "A"), M("cardinality", "A", "B")], truth) == [(0, 0)]


def test_matching_is_maximum_not_greedy():
    # Greedy would give prediction 0 to truth 0 and leave prediction 1 unmatched.
    preds = [M("cardinality", "A", "B"), M("cardinality", "A")]
    truth = [M("cardinality", "A"), M("cardinality", "B")]
    assert len(match(preds, truth)) == 2


def test_per_category_micro_macro_and_rates():
    items = [
        EvalItem("v1", [M("cardinality", "R1"), M("missing_key", "E9")], [M("cardinality", "R1", "E1")], valid=True, references=4, grounded=3),
        EvalItem("v2", [], [M("participation", "R2"), M("cardinality", "R3")], valid=False, references=0, grounded=0),
        EvalItem("v3", [M("participation", "R4")], [M("participation", "R4")], valid=True, references=2, grounded=2),
    ]
    r = evaluate(items)
    card, part, key = r.per_category["cardinality"], r.per_category["participation"], r.per_category["missing_key"]
    assert (card.tp, card.fp, card.fn) == (1, 0, 1)
    assert card.precision == 1.0 and card.recall == 0.5 and card.f1 == pytest.approx(2 / 3)
    assert (part.tp, part.fp, part.fn) == (1, 0, 1) and part.f1 == pytest.approx(2 / 3)
    assert (key.tp, key.fp, key.fn) == (0, 1, 0) and key.f1 == 0.0
    # micro: tp 2, fp 1, fn 2
    assert r.micro_precision == pytest.approx(2 / 3) and r.micro_recall == pytest.approx(0.5)
    assert r.micro_f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # macro over the three categories that occur
    assert r.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert r.hallucination_rate == pytest.approx(1 / 3) and r.hallucinated == 1
    assert r.grounding_rate == pytest.approx(5 / 6)
    assert r.format_validity == pytest.approx(2 / 3)
    assert r.exact_match == pytest.approx(1 / 3)
    assert [v.exact for v in r.per_variant] == [False, False, True]
    assert "hallucination rate 0.333 (1/3)" in format_report(r)


def test_duplicate_prediction_is_a_false_positive_but_not_a_hallucination():
    r = evaluate([EvalItem("v", [M("cardinality", "A"), M("cardinality", "A", "B")], [M("cardinality", "A")])])
    assert r.per_category["cardinality"].fp == 1
    assert r.hallucination_rate == 0.0
    assert r.exact_match == 0.0


def test_empty_inputs_give_zeros_not_errors():
    r = evaluate([])
    assert r.n == 0 and r.micro_f1 == 0.0 and r.macro_f1 == 0.0 and r.format_validity == 0.0
    assert "hallucination rate n/a (0/0)" in format_report(r)  # no predictions: the rate is undefined, not 0


def test_forced_verdicts_are_counted_and_a_report_stored_before_them_still_reads():
    truth = [Mistake(category="missing_key", elements=["E"], explanation="")]
    items = [
        EvalItem("a", truth, truth, valid=True),
        EvalItem("b", [], truth, valid=True, forced=True),  # its VERDICT line was appended by R2tA
        EvalItem("c", [], truth, valid=False, forced=True),
        EvalItem("d", [], truth, valid=False),
    ]
    report = evaluate(items)
    assert (report.format_validity, report.verdicts_forced, report.unforced_validity) == (0.5, 2, 0.25)
    assert [v.forced for v in report.per_variant] == [False, True, True, False]
    assert "verdicts asked for 2/4" in format_report(report)
    old = report.model_dump(exclude={"verdicts_forced", "unforced_validity"})  # as stored before they existed
    assert EvaluationReport.model_validate(old).unforced_validity == 0.5  # no verdict was forced then
    assert "verdicts asked for" not in format_report(evaluate(items[:1]))
