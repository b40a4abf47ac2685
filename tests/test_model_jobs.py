"""Evaluating one model in the background (r2ta.model_jobs), and the Evaluate page's button that starts it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from db.models import EvaluationRow, TraceRow
from r2ta import eval_jobs, jobs, model_jobs
from r2ta.config import PROJECT_ROOT
from r2ta.errors import R2taError
from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS, DEFAULT_VERDICT_TOKENS
from test_evaluation import engine  # noqa: F401 - the fixture
from training.tiny import ensure_tiny_llama

APP = str(PROJECT_ROOT / "app.py")


def _wait(job: model_jobs.ModelJob, timeout: float = 300) -> model_jobs.ModelJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = model_jobs.read_job(job.job_dir)
        if not now.going:
            return now
        time.sleep(0.3)
    raise AssertionError(f"the evaluation did not finish: {model_jobs.read_log(job.job_dir)}")


def test_a_model_is_evaluated_in_the_background_and_its_answers_are_stored(engine, tmp_path):  # noqa: F811
    """A real model (the tiny Llama, from its folder) answers 2 test variants in a job process; then the checker."""
    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    plan = model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=16, tokens_per_construct=1)
    assert (plan.model_id, plan.variants, plan.to_write, plan.seconds_an_answer) == ("models/tiny-llama", 2, 2, None)
    assert plan.describe() == ("2 of the 2 variants get a new answer by models/tiny-llama. No evaluation of this "
                               "model has finished here yet to time it by.")
    job = model_jobs.start_model_evaluation(str(tiny), split="test", limit=2, max_new_tokens=16,
                                            tokens_per_construct=1)
    assert job.job_dir.parent == model_jobs.evaluations_dir() and job.model == str(tiny)
    assert model_jobs.active_job() is None or model_jobs.active_job().job_dir == job.job_dir
    done = _wait(job)
    assert done.state == eval_jobs.SUCCEEDED, model_jobs.read_log(job.job_dir)
    assert done.done == done.total == 2 and done.evaluation_id is not None
    assert done.describe().startswith(f"{tiny} on the first 2 test variants (16 tokens an answer + 1 a construct): "
                                      "done at ")
    with Session(engine) as session:
        row = session.get(EvaluationRow, done.evaluation_id)
        assert row.model_id == "models/tiny-llama" and row.split == "test"
        traces = session.exec(select(TraceRow).where(TraceRow.model_id == "models/tiny-llama")).all()
    # the fixture's diagram has 5 constructs: each answer may take 16 + 1 x 5 = 21 tokens (the tiny model runs on
    # to its budget; at 36 it repeats itself first and is stopped by the repetition guard)
    assert len(traces) == 2 and all("generation stopped at max_new_tokens (21): the output is cut off" in t.parse_errors
                                    for t in traces)
    assert "models/tiny-llama: evaluation" in model_jobs.read_log(job.job_dir)
    assert eval_jobs.read_eval_status(job.job_dir)["beside_run"] is False  # no training run shared its cores
    # before the next one: the same budget reuses both answers; a third variant is one to write, timed by this job
    again = model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=16, tokens_per_construct=1)
    assert again.to_write == 0 and again.describe() == (
        "Each of the 2 variants keeps the answer it has by models/tiny-llama (this budget would write the same): "
        "the evaluation only scores them (seconds).")
    more = model_jobs.plan_model_evaluation(str(tiny), limit=3, max_new_tokens=16, tokens_per_construct=1)
    assert (more.variants, more.to_write) == (3, 1) and more.seconds_an_answer > 0
    when = done.finished_at[:16].replace("T", " ")
    assert more.describe().startswith("1 of the 3 variants get a new answer by models/tiny-llama; 2 keep the answer "
                                      "they have (this budget would write the same): about ")
    assert more.describe().endswith(f"s an answer of the evaluation of {when}.")
    other = model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=24)  # cut at 21: written again
    assert other.to_write == 2 and other.describe().endswith(
        f"of the evaluation of {when} (16 tokens an answer + 1 a construct).")
    assert model_jobs.plan_model_evaluation("checker") is None  # it writes no answers
    with pytest.raises(R2taError, match="cannot evaluate 'no-such-model'"):
        model_jobs.plan_model_evaluation("no-such-model")
    checker = _wait(model_jobs.start_model_evaluation("checker", split="test"))  # all test variants, no limit
    assert checker.state == eval_jobs.SUCCEEDED and checker.describe().startswith("checker on every test variant: done")
    assert [j.job_dir for j in model_jobs.list_jobs()] == [checker.job_dir, job.job_dir]  # newest first


def test_a_bad_request_is_refused_before_anything_starts(engine):  # noqa: F811
    with pytest.raises(R2taError, match="cannot evaluate 'no-such-model'"):
        model_jobs.start_model_evaluation("no-such-model")
    with pytest.raises(R2taError, match="split must be train or test"):
        model_jobs.start_model_evaluation("checker", split="dev")
    with pytest.raises(R2taError, match="at least 1"):
        model_jobs.start_model_evaluation("checker", limit=0)
    with pytest.raises(R2taError, match="between 1 and 4096, not 100000"):
        model_jobs.start_model_evaluation("checker", max_new_tokens=100_000)
    for per in (-1, 1_000):
        with pytest.raises(R2taError, match=f"tokens per construct must be between 0 and 256, not {per}"):
            model_jobs.start_model_evaluation("checker", tokens_per_construct=per)
    assert model_jobs.list_jobs() == []  # nothing was started, no folder left behind


def _fake_going(model: str = "embedded") -> tuple[model_jobs.ModelJob, subprocess.Popen]:
    """A job whose process is a real one in its own session (as eval_jobs._spawn starts it) that sleeps."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    job_dir = model_jobs.evaluations_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-999999-embedded"  # the newest
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.RUNNING, job=model_jobs.JOB, model=model, split="test",
                                limit=24, done=8, total=24, pid=sleeper.pid, pid_start=jobs.process_start_ticks(sleeper.pid),
                                created_at=jobs.now_iso())
    return model_jobs.read_job(job_dir), sleeper


def test_one_at_a_time_and_a_cancel_stops_the_process(engine):  # noqa: F811
    job, sleeper = _fake_going()
    try:
        assert job.going and model_jobs.active_job().job_dir == job.job_dir
        assert job.describe() == "embedded on the first 24 test variants: 8 of 24 new answers written"
        # started 80 s ago, 8 answers written: 10 s an answer, 16 to go
        started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=80)).isoformat()
        eval_jobs.write_eval_status(job.job_dir, started_at=started)
        assert model_jobs.read_job(job.job_dir).describe() == (
            "embedded on the first 24 test variants: 8 of 24 new answers written, about 3 min left")
        with pytest.raises(R2taError, match="an evaluation is already going .*wait for it or cancel it"):
            model_jobs.start_model_evaluation("checker")
        model_jobs.cancel_job(job.job_dir)
        assert sleeper.wait(timeout=10) != 0  # the job's process group got SIGTERM
        cancelled = model_jobs.read_job(job.job_dir)
        assert cancelled.state == eval_jobs.FAILED and cancelled.cancelled and model_jobs.active_job() is None
        assert cancelled.describe() == "embedded on the first 24 test variants: cancelled (the answers written so far are kept)"
        model_jobs.cancel_job(job.job_dir)  # a finished job: nothing to do
        assert model_jobs.read_job(job.job_dir).cancelled
    finally:
        sleeper.kill()


def test_a_job_whose_process_died_reads_failed_in_its_own_words(engine):  # noqa: F811
    job, sleeper = _fake_going()
    sleeper.kill()
    sleeper.wait()
    dead = model_jobs.read_job(job.job_dir)
    assert dead.state == eval_jobs.FAILED and not dead.cancelled and model_jobs.active_job() is None
    assert dead.describe().startswith(f"embedded on the first 24 test variants: failed: the model evaluation process "
                                      f"(pid {sleeper.pid}) ended without a result; see ")


def test_the_job_process_records_a_failure_with_its_reason(engine, tmp_path):  # noqa: F811
    """A model folder that holds no weights: the job fails and says why (no crash, no success)."""
    broken = tmp_path / "org" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    failed = _wait(model_jobs.start_model_evaluation(str(broken), limit=1, max_new_tokens=16))
    assert failed.state == eval_jobs.FAILED and not failed.cancelled
    assert "cannot load model" in failed.error and failed.describe().startswith(f"{broken} on the first 1 test")
    with Session(engine) as session:
        assert session.exec(select(EvaluationRow)).all() == []


def _evaluate_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_evaluate_page_evaluates_a_model_it_has_no_scores_for(engine, monkeypatch, tmp_path):  # noqa: F811
    """An empty page offers the models and starts the job; while it goes, progress and cancel; then the scores."""
    monkeypatch.setattr("r2ta.train_view.base_generation_dtype", lambda *a, **k: None)
    at = _evaluate_page()
    assert any(i.value.startswith("No evaluation on the test split yet: evaluate a model above") for i in at.info)
    pick = next(s for s in at.selectbox if s.label == "Model")
    assert pick.options[:2] == ["the base model (the embedded SmolLM2-135M-Instruct)",
                                "the structural checker (reads the diagram only)"]
    assert [n.label for n in at.number_input][-2:] == ["Tokens an answer", "More tokens a construct"]
    pick.set_value("checker").run()
    assert next(n for n in at.number_input if n.label.startswith("Test variants")).value == 0  # all: it is quick
    assert not any(n.label == "Tokens an answer" for n in at.number_input)  # the checker writes no tokens
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = model_jobs.list_jobs()[0]
    assert job.model == "checker" and job.limit is None
    assert _wait(job).state == eval_jobs.SUCCEEDED
    at = _evaluate_page()
    assert at.multiselect[0].value == ["checker"] and at.dataframe  # its scores
    assert any(c.value.startswith("The last evaluation: checker on every test variant: done at") for c in at.caption)
    # a job going: its progress and a cancel button, and the form waits
    going, sleeper = _fake_going()
    try:
        at = _evaluate_page()
        assert any("Evaluating embedded on the first 24 test variants: 8 of 24 new answers" in (p.proto.text or "")
                   for p in at.get("progress"))
        assert not any(b.label == "Evaluate" for b in at.button)
        next(b for b in at.button if b.label == "Cancel the evaluation").click().run()
        assert sleeper.wait(timeout=10) != 0 and model_jobs.read_job(going.job_dir).cancelled
        assert any(i.value.startswith("The last evaluation: embedded") and "cancelled" in i.value for i in at.info)
    finally:
        sleeper.kill()
    # another model by name: a typo is refused with the models it could be, nothing started
    next(s for s in at.selectbox if s.label == "Model").set_value("another model…").run()
    next(t for t in at.text_input if t.label == "Model to evaluate").input("no-such-model").run()
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert any("cannot evaluate 'no-such-model'" in e.value for e in at.error)
    assert len(model_jobs.list_jobs()) == 2
    # a model folder by name, under the budget set on the page: the job is asked for it and keeps to it
    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    next(t for t in at.text_input if t.label == "Model to evaluate").input(str(tiny)).run()
    next(n for n in at.number_input if n.label.startswith("Test variants")).set_value(2).run()
    next(n for n in at.number_input if n.label == "Tokens an answer").set_value(16).run()
    next(n for n in at.number_input if n.label == "More tokens a construct").set_value(1).run()
    assert any(c.value.startswith("2 of the 2 variants get a new answer by models/tiny-llama.") for c in at.caption)
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = next(j for j in model_jobs.list_jobs() if j.model == str(tiny))  # the fake one above sorts first
    assert (job.limit, job.max_new_tokens, job.tokens_per_construct) == (2, 16, 1)
    assert _wait(job).state == eval_jobs.SUCCEEDED, model_jobs.read_log(job.job_dir)
    with Session(engine) as session:
        traces = session.exec(select(TraceRow).where(TraceRow.model_id == "models/tiny-llama")).all()
    assert len(traces) == 2 and all("generation stopped at max_new_tokens (21): the output is cut off" in t.parse_errors
                                    for t in traces)  # 16 + 1 a construct, 5 constructs
    assert os.environ.get("R2TA_DATABASE_URL")  # the page and the job used the test's database


@pytest.fixture
def tiny_backend(tmp_path, monkeypatch):
    """The default backend is the tiny Llama (a real local model, fast): what the reasoning job loads."""
    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    cfg = tmp_path / "backends.yaml"
    cfg.write_text(f"tinychat:\n  kind: local\n  model: {tiny}\n  batch_size: 2\n")
    monkeypatch.setenv("R2TA_BACKENDS_FILE", str(cfg))
    monkeypatch.setenv("R2TA_BACKEND", "tinychat")
    return tiny


def test_the_model_reasons_about_the_next_variants_and_the_auditor_refines_them(engine, tiny_backend):  # noqa: F811
    """The next N train variants without a trace get one from the default model and a proposal from the auditor."""
    from db.models import ProposalRow, VariantRow

    assert model_jobs.reasoning_model() == "tinychat" and model_jobs.variants_left("train") == 3
    assert model_jobs.reasoning_time(2) is None  # nothing has timed this model here yet
    job = model_jobs.start_reasoning(2)
    assert job.kind == model_jobs.REASON and job.limit == 2 and job.split == "train"
    done = _wait(job)
    assert done.state == eval_jobs.SUCCEEDED, model_jobs.read_log(job.job_dir)
    assert done.proposals == 2 and done.describe().endswith(", 2 proposals to review")
    assert model_jobs.variants_left("train") == 1
    when = done.finished_at[:16].replace("T", " ")
    timed = model_jobs.reasoning_time(1)  # the next batch's time, at this one's rate
    assert timed.startswith("About ") and timed.endswith(f"s a trace of the batch for review of {when}; then the "
                                                          "auditor refines them (seconds).")
    assert f"of the batch for review of {when} ({DEFAULT_MAX_NEW_TOKENS} tokens an answer)" in \
        model_jobs.reasoning_time(1, 16)  # another budget: said
    with Session(engine) as session:
        traces = session.exec(select(TraceRow)).all()
        assert len(traces) == 2 and {t.model_id for t in traces} == {"tiny-llama"}  # a named backend: its folder
        splits = {session.get(VariantRow, t.variant_id).split for t in traces}
        assert splits == {"train"} and len(session.exec(select(ProposalRow)).all()) == 2
    # more than are left: the one left; with a budget of its own (the Review page's "New tokens a trace may take")
    with pytest.raises(R2taError, match="between 16 and 4096, not 8"):
        model_jobs.start_reasoning(1, max_new_tokens=8)
    last = _wait(model_jobs.start_reasoning(5, max_new_tokens=16))
    assert last.limit == 1 and last.state == eval_jobs.SUCCEEDED and last.proposals == 1
    assert eval_jobs.read_eval_status(last.job_dir)["max_new_tokens"] == 16
    assert eval_jobs.read_eval_status(job.job_dir)["max_new_tokens"] == DEFAULT_MAX_NEW_TOKENS
    with Session(engine) as session:
        first, second, third = sorted(session.exec(select(TraceRow)).all(), key=lambda t: t.id)
    # each trace's tokens: its own call's (at most its budget), then the verdict call's; the 16-token budget wrote
    # fewer than the default one did (the same tiny model, greedy)
    assert third.completion_tokens <= 16 + DEFAULT_VERDICT_TOKENS
    assert third.completion_tokens < min(first.completion_tokens, second.completion_tokens)
    with pytest.raises(R2taError, match="reasoned about every train variant already"):
        model_jobs.start_reasoning(1)
    with pytest.raises(R2taError, match="between 1 and 10000"):
        model_jobs.start_reasoning(0)
    assert [j.kind for j in model_jobs.list_jobs()] == [model_jobs.REASON] * 2 and model_jobs.list_jobs("evaluate") == []


def test_the_next_variants_go_round_robin_across_schemas(engine):  # noqa: F811
    """One train variant of each schema before a second of any: a batch covers every schema."""
    from db.loading import load_dataset
    from r2ta.store import first_reaching
    from reasoning_fixtures import DIAGRAM, REQUIREMENTS, variant

    other = {"id": "zoo", "domain": "science", "title": "Zoo", "requirements": REQUIREMENTS,
             "diagram": DIAGRAM.model_dump(mode="json")}
    extra = variant("train", 20).model_dump(mode="json") | {"id": "zoo-0001", "base_id": "zoo"}
    with Session(engine) as session:
        load_dataset([other], [extra], session=session)
        # train variants: company_small 4, 5, 6 (by id) and zoo-0001; round-robin: c4, zoo, c5, c6
        assert first_reaching(session=session, model_id="m", split="train", count=2, spread=True) == 2
        assert first_reaching(session=session, model_id="m", split="train", count=4, spread=True) == 4
        assert first_reaching(session=session, model_id="m", split="train", count=5,
                              spread=True) is None  # fewer lack one: all of them


def test_the_review_page_offers_more_variants_when_its_queue_runs_dry(engine, tiny_backend):  # noqa: F811
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["reviewer"] = "Ana"
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(i.value.startswith("Nothing to review with these filters") for i in at.info)
    count = next(n for n in at.number_input if n.label.startswith("Train variants to reason about next"))
    assert count.label == "Train variants to reason about next (3 left)" and count.value == 3
    count.set_value(2)
    tokens = next(n for n in at.number_input if n.label == "New tokens a trace may take")
    assert tokens.value == DEFAULT_MAX_NEW_TOKENS
    tokens.set_value(64)
    next(b for b in at.button if b.label == "Reason about them").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = model_jobs.active_job() or model_jobs.list_jobs()[0]
    assert job.kind == model_jobs.REASON and job.limit == 2
    assert eval_jobs.read_eval_status(job.job_dir)["max_new_tokens"] == 64
    assert _wait(job).state == eval_jobs.SUCCEEDED, model_jobs.read_log(job.job_dir)
    at.session_state["review_current"] = None  # as the panel does when it sees the job end
    at.run()
    assert not at.exception and not any(i.value.startswith("Nothing to review") for i in at.info)
    assert any(b.label.startswith("Accept") for b in at.button)  # a proposal of the new batch, to review
    assert model_jobs.reasoning_time(1, 64).startswith("About ")  # what the panel shows before the next batch
    assert any(c.value.startswith("About ") and "a trace of the batch for review of" in c.value for c in at.caption)
    # while a job is going, the Evaluate page says so and starts none
    going, sleeper = _fake_going()
    eval_jobs.write_eval_status(going.job_dir, kind=model_jobs.REASON, job=model_jobs.REASONING_JOB, limit=4,
                                split="train", model="tinychat")
    try:
        page = _evaluate_page()
        assert any(i.value.startswith("The model is reasoning about more variants for review") for i in page.info)
        assert not any(b.label == "Evaluate" for b in page.button)
        with pytest.raises(R2taError, match="a reasoning job is already going"):
            model_jobs.start_model_evaluation("checker")
    finally:
        model_jobs.cancel_job(going.job_dir)
        sleeper.kill()


def test_the_next_batch_can_be_made_while_an_item_is_reviewed(engine, tiny_backend):  # noqa: F811
    assert _wait(model_jobs.start_reasoning(1)).state == eval_jobs.SUCCEEDED
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["reviewer"] = "Ana"
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.message for e in at.exception]
    shown = at.session_state["review_current"]
    assert shown is not None and any(b.label.startswith("Accept") for b in at.button)
    count = next(n for n in at.number_input if n.label.startswith("Train variants to reason about next"))
    assert count.label == "Train variants to reason about next (2 left)"  # in the sidebar's expander
    next(b for b in at.button if b.label == "Reason about them").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = model_jobs.list_jobs(model_jobs.REASON)[0]
    assert job.limit == 2 and _wait(job).state == eval_jobs.SUCCEEDED, model_jobs.read_log(job.job_dir)
    at.run()
    assert at.session_state["review_current"] == shown  # the item under review stays; the batch is queued behind it


def test_two_clicks_at_once_start_one_job(engine, monkeypatch):  # noqa: F811
    """Two reviewers press the button together: one job starts, the other is told it is going."""
    import threading

    spawned = []
    monkeypatch.setattr(model_jobs, "_spawn", lambda job_dir, args: spawned.append(job_dir) or model_jobs.read_job(job_dir))
    checked = model_jobs.active_job

    def slow_check(kind=None):  # widen the window between "is one going?" and starting one
        found = checked(kind)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(model_jobs, "active_job", slow_check)
    start, outcomes = threading.Barrier(2), []

    def click() -> None:
        start.wait()
        try:
            outcomes.append(model_jobs.start_model_evaluation("checker"))
        except R2taError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    errors = [o for o in outcomes if isinstance(o, R2taError)]
    assert len(spawned) == 1 and len(errors) == 1 and "an evaluation is already going" in str(errors[0])
    assert len(model_jobs.list_jobs()) == 1


def test_an_empty_queue_says_a_batch_is_coming_while_one_goes(engine):  # noqa: F811
    going, sleeper = _fake_going()
    eval_jobs.write_eval_status(going.job_dir, kind=model_jobs.REASON, job=model_jobs.REASONING_JOB, limit=4,
                                split="train", model="embedded", done=0, total=4)
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["reviewer"] = "Ana"
        at.run()
        at.switch_page("pages/review.py").run()
        assert not at.exception, [e.message for e in at.exception]
        assert any(i.value.startswith("Nothing to review with these filters yet: the model is reasoning about the "
                                      "next variants below") for i in at.info)
        assert any("the embedded model reasons about 4 more train variants: 0 of 4" in (p.proto.text or "")
                   for p in at.get("progress"))
    finally:
        model_jobs.cancel_job(going.job_dir)
        sleeper.kill()


def test_the_plan_times_a_model_by_a_training_runs_evaluation_too(engine, tmp_path):  # noqa: F811
    """A run's models are first evaluated by the job after training: its rate (status 'generated', the evaluation
    ids naming the models) times the Evaluate page's next evaluation of them, and of the base model."""
    from db.queries import create_evaluation

    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    with Session(engine) as session:
        base = create_evaluation(session=session, model_id="models/tiny-llama", split="test", metrics={}).id
        other = create_evaluation(session=session, model_id="someone/else", split="test", metrics={}).id
    run_dir = jobs.runs_dir() / "20261207-120000-tiny-cpu"
    run_dir.mkdir(parents=True)
    jobs.write_status(run_dir, status="succeeded", stage="done", recipe="tiny-cpu")
    eval_jobs.write_eval_status(run_dir, status=eval_jobs.SUCCEEDED, split="test", max_new_tokens=16,
                                tokens_per_construct=1, finished_at="2026-12-07T12:30:00+00:00",
                                evaluations={"sft": other, "base": base},
                                generated={"sft": {"variants": 4, "seconds": 40.0, "load_seconds": 1.0},
                                           "base": {"variants": 2, "seconds": 6.0, "load_seconds": 2.0},
                                           "sft+dpo": {"variants": "x"}})  # unreadable: skipped
    plan = model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=16)
    assert plan.seconds_an_answer == 3.0 and plan.load_s == 2.0  # the base model's: 6 s for 2 answers
    assert plan.describe().endswith("about 8 s, at the 3.0 s an answer of run 20261207-120000-tiny-cpu's "
                                    "evaluation of 2026-12-07 12:30.")  # the base model kept the 16 tokens alone
    assert model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=32).describe().endswith(
        "evaluation of 2026-12-07 12:30 (16 tokens an answer).")
    # a later measurement of the Train page (a probe) timed the base model too: the newest under the budget wins
    from r2ta.probe import probes_dir

    probe = probes_dir() / "20261207-130000-tiny-cpu" / "run"
    probe.mkdir(parents=True)
    jobs.write_status(probe, status="succeeded", stage="done", recipe="tiny-cpu")
    eval_jobs.write_eval_status(probe, status=eval_jobs.SUCCEEDED, max_new_tokens=16,
                                finished_at="2026-12-07T13:00:00+00:00", evaluations={"base": base},
                                generated={"base": {"variants": 4, "seconds": 20.0, "load_seconds": 1.0}})
    assert model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=16).describe().endswith(
        "at the 5.0 s an answer of the measurement of 2026-12-07 13:00.")
    # a newer evaluation from the Evaluate page that ran beside a training run shared its cores: one alone is
    # preferred under the same budget, and where it is the one used, the plan says so
    beside = model_jobs.evaluations_dir() / "20261207-140000-000000-tiny-llama"
    eval_jobs.write_eval_status(beside, status=eval_jobs.SUCCEEDED, kind=model_jobs.EVALUATE, job=model_jobs.JOB,
                                model=str(tiny), model_id="models/tiny-llama", split="test", limit=2,
                                max_new_tokens=16, finished_at="2026-12-07T14:00:00+00:00", beside_run=True,
                                generated={"variants": 4, "seconds": 40.0, "load_seconds": 1.0})
    assert "5.0 s an answer of the measurement" in model_jobs.plan_model_evaluation(
        str(tiny), limit=2, max_new_tokens=16).describe()
    eval_jobs.write_eval_status(beside, max_new_tokens=24)  # now the only one under 24 tokens
    assert model_jobs.plan_model_evaluation(str(tiny), limit=2, max_new_tokens=24).describe().endswith(
        "at the 10.0 s an answer of the evaluation of 2026-12-07 14:00 (beside a training run).")


def test_an_evaluation_on_the_command_line_times_the_next_one_on_the_same_hardware_only(engine, tmp_path):  # noqa: F811
    """`r2ta eval` and `r2ta loop` run no job: the evaluation itself stores what its answers cost and on which
    hardware, and the Evaluate page's next evaluation of that model is timed by it — not by another machine's
    (a PostgreSQL database shared by several) — and a job that names the evaluation is not counted twice."""
    from r2ta.cli import main
    from r2ta.train_view import hardware_and_precision

    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    assert main(["eval", "--model", str(tiny), "--split", "test", "--limit", "2", "--max-new-tokens", "16"]) == 0
    with Session(engine) as session:
        row = session.exec(select(EvaluationRow).where(EvaluationRow.model_id == "models/tiny-llama")).one()
    cost = row.settings["generated"]
    assert cost["variants"] == 2 and cost["seconds"] > 0 and cost["load_seconds"] > 0 and not cost["beside_run"]
    assert cost["hardware"] == hardware_and_precision()[0]
    plan = model_jobs.plan_model_evaluation(str(tiny), limit=4, max_new_tokens=16)  # 2 answers to write
    assert plan.seconds_an_answer == pytest.approx(cost["seconds"] / 2) and plan.load_s == cost["load_seconds"]
    assert f"an answer of evaluation {row.id} of {row.created_at:%Y-%m-%d %H:%M}." in plan.describe()
    # a job that names the same evaluation speaks for it (with its own figures), once
    job = model_jobs.evaluations_dir() / "20261207-140000-000000-tiny-llama"
    eval_jobs.write_eval_status(job, status=eval_jobs.SUCCEEDED, kind=model_jobs.EVALUATE, job=model_jobs.JOB,
                                model=str(tiny), model_id="models/tiny-llama", split="test", limit=2,
                                max_new_tokens=16, finished_at="2026-12-07T14:00:00+00:00",
                                evaluations={"model": row.id},
                                generated={"variants": 2, "seconds": 30.0, "load_seconds": 1.0})
    timed = model_jobs._answer_rate("models/tiny-llama", 16, 0)
    assert timed[0] == 15.0 and timed[2] == "the evaluation of 2026-12-07 14:00"
    import shutil

    shutil.rmtree(job)
    # recorded on another machine: not this one's seconds
    with Session(engine) as session:
        stored = session.get(EvaluationRow, row.id)
        stored.settings = {**stored.settings, "generated": {**cost, "hardware": "1 x NVIDIA H100 80GB HBM3, 80 GB"}}
        session.add(stored)
        session.commit()
    assert model_jobs.plan_model_evaluation(str(tiny), limit=4, max_new_tokens=16).seconds_an_answer is None


def test_a_batch_of_r2ta_reason_or_r2ta_seed_times_the_review_pages_next_batch(engine, tiny_backend):  # noqa: F811
    """A fresh `make run` reasons about its first batch in `r2ta seed`, not in a job: before, the Review page's first
    "next batch" had no time to give. Both note what the batch cost; a line of another machine's, or garbage, is
    left out."""
    import json

    from r2ta.backends import get_backend
    from r2ta.cli import main
    from r2ta.config import data_dir
    from r2ta.pipeline import seed_first_batch

    assert model_jobs.reasoning_time(2) is None
    seed_first_batch(1, backend=get_backend("tinychat"))
    timed = model_jobs.reasoning_time(2)
    assert timed.startswith("About ") and " s a trace of the first batch (r2ta seed) of " in timed
    assert main(["reason", "--split", "train", "--limit", "2", "--max-new-tokens", "16"]) == 0
    assert " s a trace of the batch of r2ta reason of " in model_jobs.reasoning_time(2, 16)
    lines = [json.loads(line) for line in (data_dir() / model_jobs.BATCHES_FILE).read_text().splitlines()]
    assert [(b["what"], b["variants"], b["max_new_tokens"]) for b in lines] == [
        ("the first batch (r2ta seed)", 1, 256), ("the batch of r2ta reason", 1, 16)]  # one variant was reasoned
    assert all(b["model_id"] == "tiny-llama" and b["seconds"] > 0 and b["hardware"] for b in lines), lines
    # another machine's lines (a data folder copied over) and a torn line time nothing here
    moved = [json.dumps({**b, "hardware": "1 x NVIDIA H100 80GB HBM3, 80 GB"}) for b in lines]
    (data_dir() / model_jobs.BATCHES_FILE).write_text("\n".join([*moved, '{"model_id": "models/ti']) + "\n")
    assert model_jobs.reasoning_time(2) is None
