"""Review logic: the view of a proposal, edit validation, decisions (review + SFT example + DPO pair), queue and progress."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from db import queries
from db.errors import ReviewConflict
from r2ta import catalog, review
from r2ta.prompting import render_trace
from r2ta.review import DecisionRefused, ReviewFilters
from reasoning_fixtures import DIAGRAM, TRUTH
from review_fixtures import GHOST, SMALL_BASE, add_proposal, small_variant, flawed_trace, hostile_variant, store_small_dataset, store_variant

BASE = SMALL_BASE
_variant = small_variant


@pytest.fixture
def engine(tmp_path):
    eng = catalog.open_engine(f"sqlite:///{tmp_path / 'review.db'}")
    variants = [_variant(0), _variant(1), _variant(2, "test"), _variant(3, truth=TRUTH[:1])]
    store_small_dataset(eng, BASE, variants)
    eng.variants = {v.id: v for v in variants}  # type: ignore[attr-defined]
    return eng


def _reviews(engine, proposal_id):
    with Session(engine) as session:
        return queries.list_reviews(session=session, proposal_id=proposal_id)


def _pairs(engine):
    with Session(engine) as session:
        return queries.list_pairs_ready(session=session, split=None)


def test_view_marks_hallucinated_steps_insertions_and_verdict_changes(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=0)
    view = review.load_view(engine, pid)
    by_number = {s.number: s for s in view.original}
    # Step 3 claims DEPARTMENT has no key, step 4 names a ghost: both hallucinated, both dropped, with reasons.
    assert by_number[3].status == "hallucinated" and by_number[3].dropped and "not there" in by_number[3].reason
    assert by_number[4].status == "hallucinated" and by_number[4].dropped and GHOST in by_number[4].reason
    assert not by_number[1].dropped  # the true "ok" step stays
    inserted = [s for s in view.refined if s.status == "inserted"]
    assert [s.finding for s in inserted] == ["foreign_key_attribute"], "the missed mistake is inserted"
    assert "inserted step" in inserted[0].reason
    removed = [v for v in view.original_verdict if v.status == "removed"]
    assert [v.category for v in removed] == ["missing_key"] and "no missing_key mistake" in removed[0].reason
    assert [v.category for v in view.refined_verdict if v.status == "added"] == ["foreign_key_attribute"]
    assert view.verdict_changed


def test_highlight_covers_what_model_and_auditor_mention_and_focuses_one_step(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=0)
    view = review.load_view(engine, pid)
    everything = view.highlight()
    assert {"DEPARTMENT", "DEPARTMENT.Dnumber", "EMPLOYEE.Dnumber", "WORKS_FOR", "EMPLOYEE"} <= set(everything)
    assert GHOST not in everything  # not in the diagram: nothing to highlight
    assert set(view.highlight(("model", 1))) == {"DEPARTMENT", "DEPARTMENT.Dnumber"}
    inserted = next(s for s in view.refined if s.status == "inserted")
    assert set(view.highlight(("refined", inserted.number))) == {"EMPLOYEE.Dnumber", "WORKS_FOR"}
    assert ("model", 4) in view.focus_options() and ("refined", inserted.number) in view.focus_options()


def test_a_correct_trace_shows_no_changes(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=1)
    view = review.load_view(engine, pid)
    assert all(s.status == "correct" and not s.dropped for s in view.original)
    assert all(s.status == "kept" for s in view.refined) and not view.verdict_changed and not view.changes


def test_a_walk_proposal_keeps_the_verdict_the_model_got_right_and_marks_every_walk_step(engine):
    from r2ta.audit import audit_walk

    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=1, auditor=audit_walk)
    view = review.load_view(engine, pid)
    assert view.auditor_id == "deterministic-walk-v1"
    assert all(v.status == "kept" for v in view.original_verdict + view.refined_verdict) and not view.verdict_changed
    # the model's steps give way to the walk, but for the one the walk writes word for word
    assert [s.dropped for s in view.original] == [True, False, True]
    # the walk's bare ok steps are shown quietly as checked; its mistake step stands out as inserted
    assert [(s.finding, s.status) for s in view.refined] == [
        ("ok", "checked"), ("foreign_key_attribute", "inserted"), ("ok", "checked"), ("participation", "kept"), ("ok", "checked")]
    assert [s.reason for s in view.refined if s.finding == "ok"] == [""] * 3
    assert view.refined[1].reason.startswith("inserted step 2: the real foreign_key_attribute mistake")
    # the diagram highlights what the model and the walk's findings name, not every construct the walk checked
    named = {e for s in view.original + [s for s in view.refined if s.status != "checked"] for e in s.element_ids}
    named |= {e for v in view.original_verdict + view.refined_verdict for e in v.elements}
    assert set(view.highlight()) == named & set(view.diagram.element_ids())
    checked_only = {view.refined[i].element_ids[0] for i in (0, 2, 4)} - named
    assert checked_only and not checked_only & set(view.highlight())
    last = view.refined[4]
    assert set(view.highlight(("refined", last.number))) == {last.element_ids[0]}  # a checked step still focuses


def test_an_evidence_walks_ok_steps_are_checked_too_though_they_state_facts(engine):
    from functools import partial

    from r2ta.audit import audit_walk

    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=1, auditor=partial(audit_walk, evidence=True))
    view = review.load_view(engine, pid)
    assert view.auditor_id == "deterministic-evidence-v1"
    assert [s.status for s in view.refined if s.finding == "ok"] == ["checked"] * 3
    assert all(s.body for s in view.refined)  # every step states its construct's facts
    assert view.refined[1].status == "inserted"
    # and the plain walk's bare ok steps stay checked beside it
    plain = review.load_view(engine, add_proposal(engine, engine.variants["company_small-0000"], kind=1, auditor=audit_walk))
    assert [s.status for s in plain.refined if s.finding == "ok"] == ["checked"] * 3


def test_a_big_walks_checked_steps_fold_into_one_card_unless_asked(engine):
    from dataclasses import replace

    from r2ta.audit import audit_walk
    from r2ta.ui_review import folded_card

    view = review.load_view(engine, add_proposal(engine, engine.variants["company_small-0000"], kind=1, auditor=audit_walk))
    assert view.refined_cards() == (view.refined, [])  # three checked steps: shown as they are
    hostile = replace(view.refined[0], number=7, elements=('<img src=x onerror=alert(1)> "A" -> B',))
    big = replace(view, refined=view.refined + [replace(view.refined[0], number=6), hostile])
    cards, folded = big.refined_cards()
    assert [s.status for s in cards] == ["inserted", "kept"]  # the findings stay cards, in walk order
    assert [s.number for s in folded] == [1, 3, 5, 6, 7]
    assert big.refined_cards(show_checked=True) == (big.refined, [])
    card = folded_card(folded)
    assert "5 constructs" in card and "steps 1, 3, 5-7" in card and "r2ta-checked" in card
    assert "<img" not in card and "&lt;img src=x" in card  # names are text


def test_validate_edit_refuses_unknown_elements_and_categories_with_messages():
    good = flawed_trace(_variant(0), 1)
    checked = review.validate_edit(good.replace("Step 2", "Step 7"), DIAGRAM)  # numbering is repaired
    assert [s.number for s in checked.steps] == [1, 2, 3]
    with pytest.raises(DecisionRefused) as err:
        review.validate_edit(good.replace("EMPLOYEE.Dnumber", "EMPLOYEE.Shoe_size"), DIAGRAM)
    assert any("EMPLOYEE.Shoe_size" in p and "not in the diagram" in p for p in err.value.problems)
    with pytest.raises(DecisionRefused) as err:
        review.validate_edit(good.replace("MISTAKE: participation", "MISTAKE: vibes"), DIAGRAM)
    assert any("unknown category 'vibes'" in p for p in err.value.problems)
    with pytest.raises(DecisionRefused) as err:
        review.validate_edit(good.replace("-> ok", "-> looks great", 1), DIAGRAM)
    assert any("unknown finding" in p for p in err.value.problems)
    with pytest.raises(DecisionRefused) as err:
        review.validate_edit(good.split("VERDICT:")[0], DIAGRAM)
    assert any("VERDICT" in p for p in err.value.problems)


def test_accept_stores_review_and_the_same_dpo_pair_export_makes(engine):
    from r2ta.pipeline import export_rows

    variant = engine.variants["company_small-0000"]
    pid = add_proposal(engine, variant, kind=0)
    view = review.load_view(engine, pid)
    result = review.decide(engine, proposal_id=pid, expected_version=view.version, reviewer=" Ana ", decision="accept")
    [stored] = _reviews(engine, pid)
    assert (stored.reviewer, stored.decision, stored.proposal_version) == ("Ana", "accept", 1)
    assert review.load_view(engine, pid).status == "accepted"
    assert result.sft_row["messages"][-1]["content"] == view.refined_text
    [pair] = _pairs(engine)
    assert pair.id == result.pair_id and pair.chosen[0]["content"] == view.refined_text
    assert pair.rejected[0]["content"] == flawed_trace(variant, 0)
    exported = export_rows("dpo", split="train", engine=engine)
    assert [r["provenance"]["pair_id"] for r in exported.rows] == [pair.id]  # export finds the same pair
    assert len(_pairs(engine)) == 1


def test_edit_stores_the_checked_trace_as_the_chosen_answer(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=0)
    view = review.load_view(engine, pid)
    edited = view.refined_text.replace("is identified by its key Dnumber.", "has the key Dnumber, underlined.")
    result = review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Bo", decision="edit", edited_text=edited)
    [stored] = _reviews(engine, pid)
    assert stored.decision == "edit" and stored.steps and stored.verdict
    assert render_trace(review.validate_edit(edited, DIAGRAM).steps, review.validate_edit(edited, DIAGRAM).verdict) == edited
    [pair] = _pairs(engine)
    assert pair.chosen[0]["content"] == edited and result.pair_id == pair.id
    assert review.load_view(engine, pid).status == "edited"


def test_invalid_edit_and_reject_without_reason_write_nothing(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=0)
    with pytest.raises(DecisionRefused):
        review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Bo", decision="edit",
                      edited_text="Step 1 [NOPE]: x -> ok\nVERDICT:\nNONE")
    with pytest.raises(DecisionRefused, match="needs a reason"):
        review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Bo", decision="reject")
    with pytest.raises(DecisionRefused, match="your name"):
        review.decide(engine, proposal_id=pid, expected_version=1, reviewer="  ", decision="accept")
    assert _reviews(engine, pid) == [] and review.load_view(engine, pid).version == 1
    review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Bo", decision="reject",
                  reason=review.reject_reason(review.REJECT_REASONS[0], "step 1 was fine"))
    [stored] = _reviews(engine, pid)
    assert stored.decision == "reject" and stored.reason == f"{review.REJECT_REASONS[0]}. step 1 was fine"
    assert _pairs(engine) == []  # a rejection makes no training data


def test_reject_reason_other_needs_the_note():
    with pytest.raises(DecisionRefused):
        review.reject_reason(review.OTHER_REASON, " ")
    assert review.reject_reason(review.OTHER_REASON, "wrong owner") == "wrong owner"
    assert review.reject_reason(None, "typed only") == "typed only"


def test_two_decisions_on_one_view_conflict_and_nothing_is_lost(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=0)
    review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Ana", decision="accept")
    with pytest.raises(ReviewConflict, match="someone else saved this item first"):
        review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Bo", decision="reject", reason="no")
    assert [r.reviewer for r in _reviews(engine, pid)] == ["Ana"]
    review.decide(engine, proposal_id=pid, expected_version=2, reviewer="Bo", decision="reject", reason="no")
    assert [(r.reviewer, r.decision) for r in _reviews(engine, pid)] == [("Ana", "accept"), ("Bo", "reject")]
    assert _pairs(engine) == []  # the decision in force is the rejection


def test_accepting_an_unchanged_trace_makes_an_sft_example_but_no_pair(engine):
    pid = add_proposal(engine, engine.variants["company_small-0000"], kind=1)
    result = review.decide(engine, proposal_id=pid, expected_version=1, reviewer="Ana", decision="accept")
    assert result.sft_row is not None and result.pair_id is None and "same text" in result.note


def test_queue_filters_and_next_item_wraps(engine):
    v = engine.variants
    p0 = add_proposal(engine, v["company_small-0000"], kind=0, model_id="m-a")
    p1 = add_proposal(engine, v["company_small-0002"], kind=2, model_id="m-b")
    p2 = add_proposal(engine, v["company_small-0003"], kind=0, model_id="m-a")
    assert review.next_item_id(engine, ReviewFilters()) == p0
    assert review.next_item_id(engine, ReviewFilters(), after_id=p2) == p0  # wraps round
    assert review.next_item_id(engine, ReviewFilters(split="test")) == p1
    assert review.next_item_id(engine, ReviewFilters(model_id="m-a"), after_id=p0) == p2
    assert review.count_queue(engine, ReviewFilters(category="foreign_key_attribute")) == 2
    assert review.count_queue(engine, ReviewFilters(base_id="company_small")) == 3
    assert review.count_queue(engine, ReviewFilters(base_id="nowhere")) == 0
    review.decide(engine, proposal_id=p0, expected_version=1, reviewer="Ana", decision="accept")
    assert review.next_item_id(engine, ReviewFilters()) == p1  # pending only
    assert review.next_item_id(engine, ReviewFilters(status="any", not_reviewed_by="Ana")) == p1
    assert review.next_item_id(engine, ReviewFilters(status="any", not_reviewed_by="Bo")) == p0
    assert review.list_models(engine) == ["m-a", "m-b"]
    with pytest.raises(Exception, match="unknown split"):
        ReviewFilters(split="dev")


def test_progress_counts_items_and_reviewers(engine):
    ids = [add_proposal(engine, v, kind=i % 3) for i, v in enumerate(engine.variants.values())]
    review.decide(engine, proposal_id=ids[0], expected_version=1, reviewer="Ana", decision="accept")
    review.decide(engine, proposal_id=ids[0], expected_version=2, reviewer="Bo", decision="reject", reason="x")
    review.decide(engine, proposal_id=ids[1], expected_version=1, reviewer="Ana", decision="reject", reason="x")
    progress = review.review_progress(engine, ReviewFilters())
    assert (progress.total, progress.reviewed) == (4, 2) and progress.by_status["rejected"] == 2
    assert [(r.reviewer, r.items, r.accept, r.reject) for r in progress.reviewers] == [("Ana", 2, 1, 1), ("Bo", 1, 0, 1)]
    assert review.review_progress(engine, ReviewFilters(split="test")).total == 1
    mine_hidden = review.review_progress(engine, ReviewFilters(not_reviewed_by="Ana"))
    assert (mine_hidden.total, mine_hidden.reviewed) == (4, 2), "hiding my items does not change the count"


def test_hostile_names_and_output_are_escaped_in_the_step_cards(engine):
    from r2ta.ui_review import step_card, verdict_card

    variant = hostile_variant(engine.variants["company_small-0000"])
    store_variant(engine, variant)
    raw = flawed_trace(variant, 0).replace("is identified by its key", "<script>alert(2)</script> __is__ :red[keyed] $x$ by")
    pid = add_proposal(engine, variant, raw=raw)
    view = review.load_view(engine, pid)
    cards = "".join(step_card(s) for s in view.original + view.refined) + "".join(
        verdict_card(v) for v in view.original_verdict + view.refined_verdict
    )
    assert "<script" not in cards and "<img" not in cards and "&lt;script&gt;alert(2)&lt;/script&gt;" in cards
    assert "__is__ :red[keyed] $x$" in cards  # shown as typed, not as markdown
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in cards  # the entity name
