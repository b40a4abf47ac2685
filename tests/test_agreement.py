"""Agreement between reviewers: Cohen's kappa, disagreements, resolutions."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from db import queries
from db.errors import ReviewConflict
from r2ta import agreement, catalog, review
from r2ta.eerd import CATEGORIES, Mistake
from reasoning_fixtures import TRUTH
from review_fixtures import SMALL_BASE as BASE
from review_fixtures import add_proposal, store_small_dataset
from review_fixtures import small_variant as _variant


def test_kappa_matches_a_worked_example():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    pairs = [("accept", "accept")] * 20 + [("accept", "reject")] * 5 + [("reject", "accept")] * 10 + [("reject", "reject")] * 15
    assert agreement.cohen_kappa(pairs) == pytest.approx(0.4)
    assert agreement.cohen_kappa([("accept", "accept"), ("reject", "reject")]) == pytest.approx(1.0)
    assert agreement.cohen_kappa([("accept", "reject"), ("reject", "accept")]) == pytest.approx(-1.0)
    assert agreement.cohen_kappa([("edit", "edit")] * 3) is None  # one label only: undefined
    assert agreement.cohen_kappa([]) is None


@pytest.fixture
def engine(tmp_path):
    eng = catalog.open_engine(f"sqlite:///{tmp_path / 'agree.db'}")
    other = [Mistake(category="missing_key", elements=["PROJECT"], explanation="x")]
    variants = [_variant(0), _variant(1), _variant(2, truth=TRUTH[:1]), _variant(3, truth=other)]
    store_small_dataset(eng, BASE, variants)
    eng.proposals = [add_proposal(eng, v, kind=0) for v in variants]  # type: ignore[attr-defined]
    return eng


def _say(engine, pid, who, decision, **kw):
    version = review.load_view(engine, pid).version
    reason = kw.pop("reason", "because" if decision == "reject" else "")
    return review.decide(engine, proposal_id=pid, expected_version=version, reviewer=who, decision=decision, reason=reason, **kw)


def test_kappa_per_category_and_overall_from_latest_decisions(engine):
    p = engine.proposals
    _say(engine, p[0], "Ana", "reject")
    _say(engine, p[0], "Ana", "accept")  # Ana changed her mind: only her latest counts
    _say(engine, p[0], "Bo", "accept")
    _say(engine, p[1], "Ana", "reject")
    _say(engine, p[1], "Bo", "accept")
    _say(engine, p[2], "Ana", "reject")
    _say(engine, p[2], "Bo", "reject")
    _say(engine, p[3], "Ana", "accept")  # one reviewer only: not rated
    items = agreement.list_rated_items(engine)
    assert [it.proposal_id for it in items] == p[:3]
    table = {r.scope: r for r in agreement.kappa_table(items, CATEGORIES)}
    # pairs (Ana, Bo): accept/accept, reject/accept, reject/reject -> p_o 2/3, p_e (1/3*2/3 + 2/3*1/3) = 4/9
    assert table["overall"].pairs == 3 and table["overall"].observed == pytest.approx(2 / 3)
    assert table["overall"].kappa == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9))
    assert table["participation"].items == 3 and table["foreign_key_attribute"].items == 2
    assert table["foreign_key_attribute"].kappa == pytest.approx(0.0)  # accept/accept, reject/accept
    assert "missing_key" not in table  # its only item has a single reviewer
    [pair] = agreement.pairwise(items)
    assert (pair.reviewer_a, pair.reviewer_b, pair.items) == ("Ana", "Bo", 3)
    [dis] = agreement.list_disagreements(items)
    assert dis.proposal_id == p[1] and {(r.reviewer, r.decision) for r in dis.ratings} == {("Ana", "reject"), ("Bo", "accept")}


def test_resolving_adopts_one_review_and_leaves_the_open_list(engine):
    p = engine.proposals[0]
    _say(engine, p, "Ana", "reject")
    view = review.load_view(engine, p)
    edited = view.refined_text.replace("is identified by its key Dnumber.", "is keyed by Dnumber.")
    bo = _say(engine, p, "Bo", "edit", edited_text=edited)
    [item] = agreement.list_disagreements(agreement.list_rated_items(engine))
    with pytest.raises(ReviewConflict):
        agreement.resolve(engine, proposal_id=p, expected_version=item.version - 1, resolver="Cy", adopt_review_id=bo.review_id)
    result = agreement.resolve(engine, proposal_id=p, expected_version=item.version, resolver="Cy",
                               adopt_review_id=bo.review_id, note="Bo's edit is right")
    with Session(engine) as session:
        last = queries.list_reviews(session=session, proposal_id=p)[-1]
        pairs = queries.list_pairs_ready(session=session, split=None)
    assert last.id == result.review_id and last.reviewer == "Cy" and last.decision == "edit"
    assert last.reason.startswith(agreement.RESOLUTION_PREFIX) and "Bo's edit is right" in last.reason
    assert [pr.chosen[0]["content"] for pr in pairs] == [edited]  # the decision in force trains on Bo's text
    items = agreement.list_rated_items(engine)
    assert agreement.list_disagreements(items) == []
    [resolved] = agreement.list_disagreements(items, include_resolved=True)
    assert [r.reviewer for r in resolved.ratings] == ["Ana", "Bo"]  # the resolution is not a rating
    assert review.load_view(engine, p).status == "edited"


def test_resolve_refuses_a_review_of_another_item(engine):
    a, b = engine.proposals[:2]
    other = _say(engine, b, "Ana", "accept")
    with pytest.raises(Exception, match="not a review of proposal"):
        agreement.resolve(engine, proposal_id=a, expected_version=1, resolver="Cy", adopt_review_id=other.review_id)
