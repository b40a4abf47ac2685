"""Two reviewer *processes* deciding the same item at the same moment, on a SQLite file and on PostgreSQL.

Each round both processes load the proposal (same version), wait for each
other at a barrier, then both save. Exactly one save must win; the other must
be refused with the conflict message, and the winner's decision must be what
the database holds.
"""

from __future__ import annotations

import multiprocessing

import pytest
from sqlmodel import Session

from db.engine import get_engine
from db.errors import ReviewConflict
from db.queries import CONFLICT_MESSAGE, create_review, get_proposal, list_reviews, update_proposal

ROUNDS = 4


def _reviewer(url: str, proposal_id: int, name: str, action: str, barrier, results) -> None:
    engine = get_engine(url)
    try:
        for round_ in range(ROUNDS):
            with Session(engine) as session:
                seen = get_proposal(proposal_id, session=session).version
            barrier.wait(timeout=30)
            with Session(engine) as session:
                try:
                    if action == "review":
                        decision = "accept" if name == "ana" else "reject"
                        review = create_review(
                            session=session,
                            proposal_id=proposal_id,
                            reviewer=name,
                            decision=decision,
                            expected_version=seen,
                            reason=f"{name} round {round_}",
                        )
                        results.put((round_, name, "saved", review.id, seen))
                    else:
                        update_proposal(proposal_id, session=session, expected_version=seen, steps=[f"{name} {round_}"])
                        results.put((round_, name, "saved", None, seen))
                except ReviewConflict as err:
                    results.put((round_, name, "refused", str(err), seen))
            barrier.wait(timeout=30)
    finally:
        engine.dispose()


def _race(url: str, proposal_id: int, actions: dict[str, str]) -> list[tuple]:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(actions)), context.Queue()
    children = [
        context.Process(target=_reviewer, args=(url, proposal_id, name, action, barrier, results))
        for name, action in actions.items()
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in range(ROUNDS * len(actions))]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return sorted(outcomes, key=lambda o: (o[0], o[1]))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request, seed):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    from db.engine import init_db

    engine = get_engine(url)
    init_db(engine)
    proposals = seed(engine)
    engine.dispose()  # the children open their own connections; nothing crosses the fork
    return url, proposals["company-1"]


def test_two_processes_saving_one_item_one_wins_the_other_is_told(shared_url):
    url, proposal_id = shared_url
    outcomes = _race(url, proposal_id, {"ana": "review", "bo": "review"})
    winners = []
    for round_ in range(ROUNDS):
        this_round = [o for o in outcomes if o[0] == round_]
        assert sorted(o[2] for o in this_round) == ["refused", "saved"], this_round
        assert this_round[0][4] == this_round[1][4] == round_ + 1  # both saw the same version
        loser = next(o for o in this_round if o[2] == "refused")
        assert loser[3].startswith(CONFLICT_MESSAGE)
        winners.append(next(o for o in this_round if o[2] == "saved"))
    engine = get_engine(url)
    with Session(engine) as session:
        stored = list_reviews(session=session, proposal_id=proposal_id)
        proposal = get_proposal(proposal_id, session=session)
    engine.dispose()
    # every winner's decision is there, nobody else's, each against its own version
    assert [(r.id, r.reviewer, r.proposal_version) for r in stored] == [(w[3], w[1], w[4]) for w in winners]
    assert [r.reason for r in stored] == [f"{w[1]} round {w[0]}" for w in winners]
    assert proposal.version == ROUNDS + 1
    assert proposal.status == ("accepted" if winners[-1][1] == "ana" else "rejected")


def test_an_edit_and_a_decision_racing_never_both_land(shared_url):
    url, proposal_id = shared_url
    outcomes = _race(url, proposal_id, {"ana": "review", "editor": "edit"})
    for round_ in range(ROUNDS):
        assert sorted(o[2] for o in outcomes if o[0] == round_) == ["refused", "saved"]
    engine = get_engine(url)
    with Session(engine) as session:
        reviews = list_reviews(session=session, proposal_id=proposal_id)
        proposal = get_proposal(proposal_id, session=session)
    engine.dispose()
    review_wins = [o for o in outcomes if o[1] == "ana" and o[2] == "saved"]
    edit_wins = [o for o in outcomes if o[1] == "editor" and o[2] == "saved"]
    assert len(reviews) == len(review_wins)
    assert proposal.version == ROUNDS + 1
    if edit_wins:
        assert proposal.steps == [f"editor {edit_wins[-1][0]}"]
