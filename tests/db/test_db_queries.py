"""The queries the pages, the pipeline and training use, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from db.errors import RecordNotFound, ReviewConflict, StoreError
from db.loading import load_dataset
from db.models import EvaluationRow, ReviewRow
from db.queries import (
    CONFLICT_MESSAGE,
    add_run_examples,
    append_run_metrics,
    count_by_stage,
    count_pairs_ready,
    count_review_queue,
    create_evaluation,
    create_preference_pair,
    create_proposal,
    create_review,
    create_trace,
    create_training_run,
    get_next_review_item,
    get_proposal,
    get_review_item,
    get_training_run_by_dir,
    get_run_provenance,
    list_evaluation_results,
    list_pairs_ready,
    list_review_queue,
    list_reviews,
    list_run_metrics,
    list_training_runs,
    metrics_by_model,
    update_proposal,
    update_training_run,
)
from store_samples import base_dict, variant_dict


def _review(engine, proposal_id, reviewer, decision, **kwargs):
    """Load the item, then decide on it, as the review page does."""
    with Session(engine) as session:
        version = get_proposal(proposal_id, session=session).version
        return create_review(
            session=session,
            proposal_id=proposal_id,
            reviewer=reviewer,
            decision=decision,
            expected_version=version,
            **kwargs,
        )


def _pair(engine, review):
    with Session(engine) as session:
        return create_preference_pair(
            session=session,
            review_id=review.id,
            prompt=[{"role": "user", "content": "audit"}],
            chosen=[{"role": "assistant", "content": "refined"}],
            rejected=[{"role": "assistant", "content": "flawed"}],
        )


def test_review_queue_filters_by_category_split_status_and_reviewer(engine, seed):
    proposals = seed(engine)
    with Session(engine) as session:
        everything = list_review_queue(session=session)
        assert [i.variant_id for i in everything] == ["company-1", "company-2", "library-1", "library-2"]
        assert everything[0].categories == ("missing_key", "cardinality")
        assert (everything[0].version, everything[0].status, everything[0].n_reviews) == (1, "pending", 0)
        cardinality = list_review_queue(session=session, category="cardinality")
        assert [i.variant_id for i in cardinality] == ["company-1", "company-2"]
        assert [i.variant_id for i in list_review_queue(session=session, category="cardinality", split="train")] == [
            "company-1"
        ]
        assert count_review_queue(session=session, category="missing_key") == 2
        assert [i.variant_id for i in list_review_queue(session=session, limit=2, offset=1)] == [
            "company-2",
            "library-1",
        ]
    _review(engine, proposals["company-1"], "ana", "accept")
    with Session(engine) as session:
        assert [i.variant_id for i in list_review_queue(session=session, category="missing_key")] == ["library-2"]
        reviewed = list_review_queue(session=session, status=None, not_reviewed_by="ana")
        assert "company-1" not in [i.variant_id for i in reviewed] and len(reviewed) == 3
        accepted = list_review_queue(session=session, status="accepted")
        assert [(i.variant_id, i.version, i.n_reviews) for i in accepted] == [("company-1", 2, 1)]
        with pytest.raises(StoreError, match="unknown split 'dev'"):
            list_review_queue(session=session, split="dev")


def test_next_item_moves_on_as_items_are_decided(engine, seed):
    proposals = seed(engine)
    with Session(engine) as session:
        item = get_next_review_item(session=session, category="missing_key")
        assert item.variant.id == "company-1" and item.proposal.id == proposals["company-1"]
        assert item.trace.model_id == "smollm2" and item.reviews == []
        skipped = get_next_review_item(session=session, category="missing_key", after_id=item.proposal.id)
        assert skipped.variant.id == "library-2"
    _review(engine, proposals["company-1"], "ana", "reject", reason="wrong element")
    _review(engine, proposals["library-2"], "bo", "accept")
    with Session(engine) as session:
        assert get_next_review_item(session=session, category="missing_key") is None
        again = get_next_review_item(session=session, category="missing_key", status=None, not_reviewed_by="bo")
        assert again.variant.id == "company-1"
        assert [(r.reviewer, r.decision, r.reason) for r in again.reviews] == [("ana", "reject", "wrong element")]


def test_a_stale_save_is_refused_and_both_reviewers_decisions_are_kept(engine, seed):
    proposal_id = seed(engine)["company-1"]
    with Session(engine) as ana_session, Session(engine) as bo_session:
        seen_by_ana = get_review_item(proposal_id, session=ana_session).proposal.version
        seen_by_bo = get_review_item(proposal_id, session=bo_session).proposal.version
        create_review(
            session=ana_session,
            proposal_id=proposal_id,
            reviewer="ana",
            decision="accept",
            expected_version=seen_by_ana,
        )
        with pytest.raises(ReviewConflict) as refused:
            create_review(
                session=bo_session,
                proposal_id=proposal_id,
                reviewer="bo",
                decision="reject",
                expected_version=seen_by_bo,
                reason="disagree",
            )
    assert str(refused.value).startswith(CONFLICT_MESSAGE)
    assert "accept by ana" in str(refused.value)
    with Session(engine) as session:
        assert [(r.reviewer, r.decision) for r in list_reviews(session=session, proposal_id=proposal_id)] == [
            ("ana", "accept")
        ]
        assert get_proposal(proposal_id, session=session).status == "accepted"
    # Bo reloads, sees Ana's decision, and still disagrees: now both are kept, in order.
    _review(engine, proposal_id, "bo", "reject", reason="disagree")
    with Session(engine) as session:
        assert [
            (r.reviewer, r.decision, r.proposal_version) for r in list_reviews(session=session, proposal_id=proposal_id)
        ] == [("ana", "accept", 1), ("bo", "reject", 2)]
        proposal = get_proposal(proposal_id, session=session)
        assert (proposal.status, proposal.version) == ("rejected", 3)


def test_editing_a_proposal_checks_the_version_too(engine, seed):
    proposal_id = seed(engine)["company-2"]
    with Session(engine) as session:
        edited = update_proposal(proposal_id, session=session, expected_version=1, steps=["better step"])
        assert (edited.version, edited.steps, edited.status) == (2, ["better step"], "pending")
        with pytest.raises(ReviewConflict, match="its content was edited"):
            create_review(
                session=session, proposal_id=proposal_id, reviewer="ana", decision="accept", expected_version=1
            )
        with pytest.raises(ReviewConflict):
            update_proposal(proposal_id, session=session, expected_version=1, steps=["mine"])
        with pytest.raises(StoreError, match="cannot edit status"):
            update_proposal(proposal_id, session=session, expected_version=2, status="accepted")
        assert get_proposal(proposal_id, session=session).steps == ["better step"]


def test_the_database_itself_refuses_two_decisions_on_one_version(sqlite_engine, seed):
    proposal_id = seed(sqlite_engine)["company-1"]
    _review(sqlite_engine, proposal_id, "ana", "accept")
    with Session(sqlite_engine) as session:
        session.add(ReviewRow(proposal_id=proposal_id, proposal_version=1, reviewer="sneaky", decision="reject"))
        with pytest.raises(IntegrityError):
            session.commit()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"decision": "maybe"}, "unknown decision 'maybe'"),
        ({"decision": "accept", "reviewer": "  "}, "reviewer's name"),
        ({"decision": "edit"}, "needs the edited steps or verdict"),
        ({"decision": "accept", "steps": ["x"]}, "use 'edit'"),
        ({"decision": "accept", "proposal_id": 999}, "proposal 999 does not exist"),
    ],
)
def test_bad_reviews_are_refused_with_a_reason(sqlite_engine, seed, kwargs, message):
    proposal_id = seed(sqlite_engine)["company-1"]
    args = {"proposal_id": proposal_id, "reviewer": "ana", "expected_version": 1, **kwargs}
    with Session(sqlite_engine) as session:
        with pytest.raises(StoreError, match=message):
            create_review(session=session, **args)
        assert list_reviews(session=session) == []
        assert get_proposal(proposal_id, session=session).version == 1


def test_pairs_ready_follow_the_decision_in_force(engine, seed):
    proposals = seed(engine)
    accepted = _review(engine, proposals["company-1"], "ana", "accept")
    edited = _review(engine, proposals["library-1"], "ana", "edit", steps=["edited"], verdict={"mistakes": []})
    on_test = _review(engine, proposals["company-2"], "ana", "accept")
    pairs = {r.id: _pair(engine, r) for r in (accepted, edited, on_test)}
    with Session(engine) as session:
        assert [p.id for p in list_pairs_ready(session=session)] == [pairs[accepted.id].id, pairs[edited.id].id]
        assert count_pairs_ready(session=session, split="test") == 1
        assert count_pairs_ready(session=session, split=None) == 3
        # the same pair again is the same row; different content is refused
        assert _pair(engine, accepted).id == pairs[accepted.id].id
        with pytest.raises(StoreError, match="already has preference pair"):
            create_preference_pair(session=session, review_id=accepted.id, prompt="p", chosen="c", rejected="r")
    rejected = _review(engine, proposals["company-1"], "bo", "reject")  # bo reloaded and disagrees
    with Session(engine) as session:
        assert [p.id for p in list_pairs_ready(session=session)] == [pairs[edited.id].id]
        with pytest.raises(StoreError, match="makes no preference pair"):
            create_preference_pair(session=session, review_id=rejected.id, prompt="p", chosen="c", rejected="r")


def test_a_trained_model_traces_back_to_its_reviews_traces_and_variants(engine, seed):
    proposals = seed(engine)
    r1 = _review(engine, proposals["company-1"], "ana", "accept")
    r2 = _review(engine, proposals["library-1"], "bo", "edit", steps=["s"])
    pair = _pair(engine, r2)
    with Session(engine) as session:
        sft = create_training_run(session=session, stage="sft", base_model="smollm2", config={"lr": 2e-4})
        assert add_run_examples(sft.id, session=session, kind="sft", review_ids=[r1.id, r2.id]) == 2
        assert add_run_examples(sft.id, session=session, kind="sft", review_ids=[r1.id]) == 0  # idempotent
        dpo = create_training_run(
            session=session, stage="dpo", base_model="runs/1/adapter", config={"beta": 0.1}, parent_run_id=sft.id
        )
        add_run_examples(dpo.id, session=session, kind="dpo", pair_ids=[pair.id])
        with pytest.raises(StoreError, match="by pair id"):
            add_run_examples(dpo.id, session=session, kind="dpo", review_ids=[r1.id])
        with pytest.raises(RecordNotFound):
            add_run_examples(dpo.id, session=session, kind="dpo", pair_ids=[999])
        provenance = get_run_provenance(dpo.id, session=session)
        only_dpo = get_run_provenance(sft.id, session=session)
    assert provenance.run_ids == (dpo.id, sft.id)
    assert provenance.review_ids == (r1.id, r2.id) and provenance.pair_ids == (pair.id,)
    assert provenance.variant_ids == ("company-1", "library-1")
    assert provenance.proposal_ids == (proposals["company-1"], proposals["library-1"])
    assert len(provenance.trace_ids) == 2
    assert only_dpo.run_ids == (sft.id,) and only_dpo.pair_ids == ()


def test_training_run_life_cycle_and_metrics(engine):
    with Session(engine) as session:
        run = create_training_run(
            session=session, base_model="smollm2", config={"steps": 8}, run_dir="runs/a", stage="setup"
        )
        assert (run.status, run.progress, run.started_at) == ("queued", 0.0, None)
        assert get_training_run_by_dir("runs/a", session=session).id == run.id
        with pytest.raises(StoreError, match="already recorded"):
            create_training_run(session=session, base_model="smollm2", config={}, run_dir="runs/a")
        run = update_training_run(run.id, session=session, status="running", stage="sft", hardware={"device": "cpu"})
        assert run.started_at is not None and run.stage == "sft"
        with pytest.raises(StoreError, match="cannot go from running to queued"):
            update_training_run(run.id, session=session, status="queued")
        for stage, step in (("sft", 1), ("sft", 2), ("dpo", 1)):
            append_run_metrics(
                run.id, session=session, stage=stage, step=step, metrics={"loss": 3.0 / (step + len(stage))}
            )
        first = list_run_metrics(run.id, session=session)
        assert [(m.stage, m.step) for m in first] == [("sft", 1), ("sft", 2), ("dpo", 1)]
        assert list_run_metrics(run.id, session=session, after_id=first[1].id) == [first[2]]
        update_training_run(run.id, session=session, progress=0.5, artefacts={"log": "a.txt"})
        run = update_training_run(
            run.id,
            session=session,
            status="succeeded",
            progress=1.0,
            artefacts={"adapter": "runs/1/adapter"},
            output_model_id="sft-1",
        )
        assert run.artefacts == {"log": "a.txt", "adapter": "runs/1/adapter"}
        assert run.ended_at >= run.started_at
        with pytest.raises(StoreError, match="already succeeded"):
            update_training_run(run.id, session=session, status="cancelled")
        other = create_training_run(session=session, base_model="sft-1", config={})
        with pytest.raises(StoreError, match="between 0 and 1"):
            update_training_run(other.id, session=session, progress=2.0)
        assert [r.status for r in list_training_runs(session=session)] == ["queued", "succeeded"]


def test_a_run_seen_only_once_finished_takes_the_times_from_its_files(sqlite_engine):
    started, ended = datetime(2025, 3, 1, 10, 0), datetime(2025, 3, 1, 10, 7, 30)
    with Session(sqlite_engine) as session:
        run = create_training_run(session=session, base_model="m", config={}, run_dir="runs/b")
        run = update_training_run(run.id, session=session, status="succeeded", started_at=started, ended_at=ended)
        assert (run.started_at, run.ended_at, run.status) == (started, ended, "succeeded")


def test_a_cancel_that_lands_first_wins_over_the_jobs_late_update(sqlite_engine):
    with Session(sqlite_engine) as job, Session(sqlite_engine) as page:
        run = create_training_run(session=job, base_model="m", config={})
        update_training_run(run.id, session=job, status="running")
        update_training_run(run.id, session=page, status="cancelled")
        with pytest.raises(StoreError, match="already cancelled"):
            update_training_run(run.id, session=job, status="succeeded")


def test_metrics_per_model_are_the_latest_evaluation_of_each(engine, seed):
    seed(engine)
    with Session(engine) as session:
        create_evaluation(session=session, model_id="smollm2", split="test", metrics={"micro_f1": 0.1})
        newer = create_evaluation(
            session=session,
            model_id="smollm2",
            split="test",
            metrics={"micro_f1": 0.2},
            results=[{"variant_id": "company-2", "predicted": [{"category": "cardinality"}], "metrics": {"tp": 1}}],
            settings={"max_new_tokens": 320, "tokens_per_construct": 20, "verdict_tokens": None, "other_budget": 0},
        )
        create_evaluation(session=session, model_id="checker", split="test", metrics={"micro_f1": 0.9})
        create_evaluation(session=session, model_id="smollm2", split="train", metrics={"micro_f1": 0.7})
        table = metrics_by_model(session=session)
        assert [(m.model_id, m.metrics["micro_f1"]) for m in table] == [("checker", 0.9), ("smollm2", 0.2)]
        # what the answers were asked under comes back as stored, JSON null inside kept; none given is SQL NULL
        assert [m.settings for m in table] == [
            None, {"max_new_tokens": 320, "tokens_per_construct": 20, "verdict_tokens": None, "other_budget": 0}]
        assert session.exec(select(func.count()).select_from(EvaluationRow)
                            .where(col(EvaluationRow.settings).is_(None))).one() == 3
        assert [r.variant_id for r in list_evaluation_results(newer.id, session=session)] == ["company-2"]
        with pytest.raises(StoreError, match="unknown variant"):
            create_evaluation(
                session=session,
                model_id="x",
                split="test",
                metrics={},
                results=[{"variant_id": "nope", "predicted": []}],
            )
        assert [m.model_id for m in metrics_by_model(session=session)] == ["checker", "smollm2"]


def test_counts_per_stage(engine, seed):
    proposals = seed(engine)
    review = _review(engine, proposals["company-1"], "ana", "accept")
    _pair(engine, review)
    _review(engine, proposals["library-1"], "ana", "reject")
    with Session(engine) as session:
        create_trace(session=session, variant_id="company-1", model_id="sft-1", prompt="p", raw_output="")
        counts = count_by_stage(session=session)
    assert counts == {
        "base_schemas": 2,
        "variants": 4,
        "variants_traced": 4,
        "traces": 5,
        "proposals": 4,
        "pending": 2,
        "accepted": 1,
        "edited": 0,
        "rejected": 1,
        "reviews": 2,
        "pairs": 1,
        "pairs_ready": 1,
        "training_runs": 0,
        "training_runs_succeeded": 0,
        "evaluations": 0,
    }


def test_missing_rows_are_named(sqlite_engine):
    with Session(sqlite_engine) as session:
        with pytest.raises(RecordNotFound, match="variant 'ghost' does not exist"):
            create_trace(session=session, variant_id="ghost", model_id="m", prompt="p", raw_output="")
        with pytest.raises(RecordNotFound, match="trace 42"):
            create_proposal(session=session, trace_id=42, auditor_id="a", steps=[], verdict=None)
        with pytest.raises(RecordNotFound, match="proposal 7"):
            get_review_item(7, session=session)


def test_a_spread_limit_takes_every_schema_before_a_second_of_any(engine):
    # Ids sort by schema, so the first N variants of a split are one schema; --spread goes round-robin.
    from r2ta.store import list_variants_without_trace

    rows = [("a-1", "a"), ("a-2", "a"), ("a-3", "a"), ("a-4", "a"), ("b-1", "b"), ("b-2", "b"), ("c-1", "c")]
    with Session(engine) as session:
        load_dataset([base_dict(b) for b in "abc"],
                     [variant_dict(v, b, "train", ["missing_key"], seed=n) for n, (v, b) in enumerate(rows)]
                     + [variant_dict("a-9", "a", "test", ["missing_key"], seed=9)], session=session)
    with Session(engine) as session:
        def first(limit, spread):
            pending, done = list_variants_without_trace(session=session, model_id="m", split="train", limit=limit, spread=spread)
            return sorted(v.id for v in pending), done

        assert first(3, False) == (["a-1", "a-2", "a-3"], 0)
        assert first(3, True) == (["a-1", "b-1", "c-1"], 0)
        assert first(5, True) == (["a-1", "a-2", "b-1", "b-2", "c-1"], 0)
        assert first(None, True) == first(None, False) == (sorted(v for v, _ in rows), 0)
        create_trace(session=session, variant_id="b-1", model_id="m", prompt=[], raw_output="x", steps=None, verdict=None)
        assert first(3, True) == (["a-1", "c-1"], 1)  # resumable: the one done is counted, not redone
