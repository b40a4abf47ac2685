"""The Train and Evaluate pages through Streamlit's AppTest, on a small database with a finished run and evaluations."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from db.loading import load_dataset
from db.models import EvaluationRow
from r2ta import catalog, eval_jobs, jobs, train_view
from r2ta.config import PROJECT_ROOT
from r2ta.evaluation import evaluate, list_evaluations, run_model_id
from r2ta.loop import bulk_accept
from r2ta.pairs import write_rows
from r2ta.pipeline import export_rows, reason, refine
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS, variant
from test_evaluation import ONLY_FK, WRONG, QueuedBackend

pytestmark = pytest.mark.xdist_group("pages")
APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture
def studio(tmp_path, monkeypatch):
    """A data folder with 4 test + 3 train variants, bulk-accepted refinements, a finished and a crashed run."""
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    engine = catalog.open_engine()
    base = {"id": "company_small", "domain": "business", "title": "Company", "requirements": REQUIREMENTS,
            "diagram": DIAGRAM.model_dump(mode="json")}
    variants = [variant("test", n).model_dump(mode="json") for n in range(4)]
    variants += [variant("train", n).model_dump(mode="json") for n in range(4, 7)]
    with Session(engine) as session:
        load_dataset([base], variants, session=session)
    reason(QueuedBackend([ONLY_FK] * 3, "base"), split="train", engine=engine)
    refine(model_id="base", split="train", engine=engine)
    bulk_accept(model_id="base", split="train", engine=engine)
    write_rows(export_rows("sft", engine=engine).rows, tmp_path / "sft.jsonl")
    write_rows(export_rows("dpo", engine=engine).rows, tmp_path / "dpo.jsonl")

    done = jobs.prepare_run(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe="tiny-cpu",
                            run_dir=jobs.runs_dir() / "20260101-100000-tiny-cpu", overrides=["dpo.beta=0.2"])
    for step, loss in enumerate([2.0, 1.5, 1.1], 1):
        jobs.append_progress(done, {"stage": "sft", "step": step, "loss": loss})
    for step, margin in enumerate([0.1, 0.4], 1):
        jobs.append_progress(done, {"stage": "dpo", "step": step, "loss": 0.6, "reward_margin": margin})
    jobs.write_status(done, status="succeeded", stage="done", fraction=1.0, started_at="2026-01-01T10:00:00+00:00",
                      finished_at="2026-01-01T10:05:00+00:00", artefacts={"sft": str(done / "sft")},
                      metrics={"sft": {"final_loss": 1.1}, "dpo": {"reward_margin": 0.4}})
    crashed = jobs.prepare_run(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe="tiny-cpu",
                               run_dir=jobs.runs_dir() / "20260101-090000-tiny-cpu")
    (crashed / jobs.LOG_FILE).write_text("Traceback (most recent call last):\nRuntimeError: out of cheese\n")
    jobs.write_status(crashed, status="failed", stage="sft", error="RuntimeError: out of cheese")

    # Evaluations: the base model, the finished run's SFT+DPO model, the checker.
    evaluate(QueuedBackend([ONLY_FK, WRONG, ONLY_FK], "base"), split="test", limit=3, engine=engine)
    evaluate(QueuedBackend([CORRECT_TRACE] * 3, run_model_id(done, "sft+dpo")), split="test", limit=3, engine=engine)
    evaluate("checker", split="test", limit=3, engine=engine)
    with Session(engine) as session:  # what `r2ta eval --model RUN_DIR` does: the evaluation names its run
        ids = jobs.sync_run_to_db(done, session=session)
        row = session.exec(select(EvaluationRow).where(EvaluationRow.model_id == run_model_id(done, "sft+dpo"))).one()
        row.run_id = ids["dpo"]
        session.add(row)
        session.commit()
    return engine, done, crashed


def _shown(table):
    """What a st.dataframe shows in the browser, from its data and the config sent with it: a number column's
    printf format (rates_table: %.3f), a missing value as the placeholder (rates_table: n/a), else the text."""
    config = json.loads(table.proto.columns or "{}")
    shown = table.value.astype(object).copy()
    for name in shown.columns:
        fmt = config.get(name, {}).get("type_config", {}).get("format")
        shown[name] = [table.proto.placeholder or "None" if v is None or v != v else (fmt % v if fmt else str(v))
                       for v in table.value[name]]
    return shown


def _page(page: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_train_page_shows_the_newest_run_with_curves_and_past_runs(studio):
    _, done, crashed = studio
    at = _page("pages/train.py")
    run_box = next(s for s in at.selectbox if s.label == "Run")
    assert run_box.value == done.name and run_box.options == [done.name, crashed.name]
    assert any("succeeded" in (p.proto.text or "") for p in at.get("progress"))
    assert len(at.get("plotly_chart")) == 2
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in loss["data"]] == ["SFT", "DPO"] and loss["data"][0]["y"] == [2.0, 1.5, 1.1]
    margin = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert margin["data"][0]["y"] == [0.1, 0.4]
    table = at.dataframe[0].value
    assert list(table["run"]) == [done.name, crashed.name] and list(table["status"]) == ["succeeded", "failed"]
    assert list(table["took"]) == ["5 min", ""]  # 10:00 to 10:05; the crashed run never recorded its times
    assert list(table["started"]) == ["2026-01-01 10:00", ""] and list(table["finished"]) == ["2026-01-01 10:05", ""]
    shown = _shown(at.dataframe[0])  # the finished run's last figures, 3 decimals; the crashed run has none
    assert list(shown["SFT loss"]) == ["1.100", "n/a"] and list(shown["DPO margin"]) == ["0.400", "n/a"]
    assert any(b.label == "Evaluate this run" for b in at.button)  # finished, never evaluated


def test_train_page_shows_the_run_against_the_model_it_started_from(studio):
    """After its evaluation the run's page shows base vs SFT+DPO side by side, on the variants both answered."""
    engine, done, _ = studio
    with Session(engine) as session:
        ids = {e.model_id: e.id for e in session.exec(select(EvaluationRow))}
    eval_jobs.write_eval_status(done, status=eval_jobs.SUCCEEDED, split="test", limit=3, dtype=None,
                                evaluations={"sft+dpo": ids[run_model_id(done, "sft+dpo")], "base": ids["base"]})
    rows = train_view.run_comparison(done, engine=engine)
    assert [(r["model"], r["model id"]) for r in rows] == [
        ("base (before training)", "base"), ("SFT+DPO", run_model_id(done, "sft+dpo"))]
    # the base answered ONLY_FK, WRONG, ONLY_FK; the trained model the correct trace on all three
    assert rows[0]["variants"] == rows[1]["variants"] == 3 and rows[1]["micro F1"] == 1.0 > rows[0]["micro F1"]
    at = _page("pages/train.py", run=done.name)
    assert any(m.value == "**Before and after training**" for m in at.markdown)
    table = next(d for d in at.dataframe if "model id" in d.value.columns)
    shown = _shown(table)
    assert list(shown["model"]) == ["base (before training)", "SFT+DPO"] and list(shown["micro F1"]) == [
        f"{rows[0]['micro F1']:.3f}", "1.000"]
    assert list(table.value["micro F1"]) == [rows[0]["micro F1"], 1.0]  # numbers underneath: they sort as numbers
    # a rate with nothing to judge reads n/a, not None
    assert [("n/a" if r["hallucination"] is None else f"{r['hallucination']:.3f}") for r in rows] == list(
        shown["hallucination"])
    assert any(c.value.startswith("Scored on the 3 test variants the models above all answered") for c in at.caption)
    link = next(e for e in at.get("page_link") if "Compare on the Evaluate page" in e.proto.label)
    assert "models=base" in link.proto.query_string and "models=checker" in link.proto.query_string
    # the Evaluate page opened from it shows those models (and the checker), not the first six by name
    shown = _page("pages/evaluate.py", models=["base", run_model_id(done, "sft+dpo"), "checker", "gone"])
    assert shown.multiselect[0].value == ["base", run_model_id(done, "sft+dpo"), "checker"]

    # the next run stands against the model it replaces too: the previous run's SFT+DPO, on the same variants
    later = jobs.prepare_run(*(jobs.read_request(done)[f"{s}_file"] for s in ("sft", "dpo")), recipe="tiny-cpu",
                             run_dir=jobs.runs_dir() / "20260101-110000-tiny-cpu")
    jobs.write_status(done, created_at="2026-01-01T10:00:00+00:00")
    jobs.write_status(later, status="succeeded", stage="done", created_at="2026-01-01T11:00:00+00:00")
    evaluate(QueuedBackend([WRONG] * 2, run_model_id(later, "sft+dpo")), split="test", limit=2, engine=engine)
    with Session(engine) as session:
        newest = session.exec(select(EvaluationRow).where(EvaluationRow.model_id == run_model_id(later, "sft+dpo"))).one()
    eval_jobs.write_eval_status(later, status=eval_jobs.SUCCEEDED, evaluations={"sft+dpo": newest.id, "base": ids["base"]})
    assert train_view.previous_run(later, engine=engine) == done and train_view.previous_run(done, engine=engine) is None
    rows = train_view.run_comparison(later, engine=engine)
    assert [(r["model"], r["model id"]) for r in rows] == [("base (before training)", "base"), (
        "previous SFT+DPO", run_model_id(done, "sft+dpo")), ("SFT+DPO", run_model_id(later, "sft+dpo"))]
    assert [r["variants"] for r in rows] == [2, 2, 2] and rows[1]["micro F1"] == 1.0  # the 2 all three answered


def test_the_run_stands_beside_the_checker_alone_on_the_same_variants(studio):
    """The evaluation after a run stores the structural checker on its variants too (under a second): the line a
    trained model has to beat, in the run's table and the command's."""
    engine, done, _ = studio
    with Session(engine) as session:
        ids = {e.model_id: e.id for e in session.exec(select(EvaluationRow))}
    checker = evaluate("checker", split="test", limit=3, engine=engine).evaluation_id
    eval_jobs.write_eval_status(done, status=eval_jobs.SUCCEEDED, split="test", limit=3, dtype=None,
                                evaluations={"sft+dpo": ids[run_model_id(done, "sft+dpo")], "base": ids["base"]},
                                checker_evaluation=checker)
    rows = train_view.run_comparison(done, engine=engine)
    assert [(r["model"], r["model id"]) for r in rows] == [
        ("base (before training)", "base"), ("SFT+DPO", run_model_id(done, "sft+dpo")), ("the checker alone", "checker")]
    assert [r["variants"] for r in rows] == [3, 3, 3] and rows[2]["format validity"] == 1.0
    # an evaluation whose checker row is gone leaves the models' table as it was
    eval_jobs.write_eval_status(done, checker_evaluation=10**6)
    assert [r["model"] for r in train_view.run_comparison(done, engine=engine)] == ["base (before training)", "SFT+DPO"]


def test_train_page_shows_a_crashed_run_with_its_log(studio):
    _, _, crashed = studio
    at = _page("pages/train.py", run=crashed.name)
    assert any("out of cheese" in e.value for e in at.error)
    assert any("RuntimeError: out of cheese" in c.value for c in at.code)
    assert not any(b.label == "Cancel run" for b in at.button)
    assert any(c.value.startswith("Cannot be resumed: ") and "before its first checkpoint" in c.value
               for c in at.caption)
    assert not any(b.label.startswith("Resume") for b in at.button)


def test_train_page_evaluates_a_run_again_after_its_evaluation_failed(studio, monkeypatch):
    _, done, _ = studio
    eval_jobs.write_eval_status(done, status=eval_jobs.FAILED, split="test", limit=3, evaluations={},
                                max_new_tokens=320, tokens_per_construct=20,
                                error="the evaluation process (pid 1) ended without a result")
    asked = []
    monkeypatch.setattr(eval_jobs, "start_run_evaluation", lambda run_dir, **kw: asked.append((run_dir, kw)))
    at = _page("pages/train.py", run=done.name)
    assert any("ended without a result" in c.value for c in at.caption)
    assert any(c.value.startswith("Evaluation (320 tokens an answer + 20 a construct): failed") for c in at.caption)
    next(b for b in at.button if b.label == "Evaluate again").click().run()
    assert not at.exception, [e.message for e in at.exception]
    # the same variants under the same budget; the answered ones are kept
    assert asked == [(done, {"split": "test", "limit": 3, "max_new_tokens": 320, "tokens_per_construct": 20})]


def test_train_page_evaluates_a_finished_run_under_the_budget_set_on_the_page(studio, monkeypatch):
    _, done, _ = studio
    asked = []
    monkeypatch.setattr(eval_jobs, "start_run_evaluation", lambda run_dir, **kw: asked.append((run_dir, kw)))
    at = _page("pages/train.py", run=done.name)
    next(n for n in at.number_input if n.label == "Tokens an answer").set_value(320)
    next(n for n in at.number_input if n.label == "More tokens a construct").set_value(20)
    next(b for b in at.button if b.label == "Evaluate this run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert asked == [(done, {"limit": eval_jobs.default_limit(), "max_new_tokens": 320, "tokens_per_construct": 20})]


def test_train_page_resumes_a_cancelled_run_from_its_checkpoint(studio, monkeypatch):
    _, _, crashed = studio
    jobs.write_status(crashed, status="cancelled", stage="sft", error=None)
    (crashed / "sft" / "checkpoint-3").mkdir(parents=True)
    (crashed / "sft" / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"max_steps": 9}))
    started = []

    def prepare_only(run_dir, new_dir=None):  # the page's wiring; the runner's part is tests/test_resume.py's
        started.append(jobs.prepare_resume(run_dir, new_dir=new_dir))
        return started[-1]

    monkeypatch.setattr(eval_jobs, "resume_training", prepare_only)
    at = _page("pages/train.py", run=crashed.name)
    button = next(b for b in at.button if b.label.startswith("Resume"))
    assert button.label == "Resume: SFT goes on from step 3 of 9 (its checkpoint)"
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(started) == 1 and next(s for s in at.selectbox if s.label == "Run").value == started[0].name
    assert any(c.value == f"Continues run {crashed.name}: SFT goes on from step 3 of 9 (its checkpoint)."
               for c in at.caption)
    assert (started[0] / "sft" / "checkpoint-3" / "trainer_state.json").is_file()
    # the cancelled run now points at the one that goes on with it, and offers no second resume
    at = _page("pages/train.py", run=crashed.name)
    assert any(c.value == f"Resumed as run {started[0].name}." for c in at.caption)
    assert not any(b.label.startswith("Resume") for b in at.button)
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[started[0].name, "resumed"] == f"from {crashed.name}"
    assert table.loc[crashed.name, "resumed"] == f"as {started[0].name}"


def test_evaluate_page_compares_models_and_drills_down(studio):
    _, done, _ = studio
    at = _page("pages/evaluate.py")
    models = at.multiselect[0].value
    assert set(models) == {"base", "checker", run_model_id(done, "sft+dpo")}
    origins = at.dataframe[0].value.set_index("model")  # "Where each model comes from"
    trained = origins.loc[run_model_id(done, "sft+dpo")]
    assert trained["trained"] == "SFT then DPO" and trained["recipe"] == "tiny-cpu"
    assert trained["changed settings"] == "dpo.beta=0.2" and trained["run folder"] == str(done)
    assert origins.loc["base", "trained"] == "" and origins.loc["checker", "variants scored"] == 3
    # the checker has no budget; nothing in the table reads None
    assert (origins.loc["checker", "answer budget"], origins.loc["checker", "answers under another budget"]) == ("—", "—")
    assert not any(v is None or str(v) == "None" for v in origins.to_numpy().ravel())
    summary = at.dataframe[1].value.set_index("model")
    assert summary.loc[run_model_id(done, "sft+dpo"), "micro F1"] == 1.0
    assert summary.loc["base", "hallucination"] == pytest.approx(1 / 3)
    assert summary.loc["checker", "format validity"] == 1.0
    shown = _shown(at.dataframe[1]).set_index("model")  # 3 decimals; a rate with nothing to judge reads n/a
    assert shown.loc["base", "hallucination"] == "0.333" and shown.loc["checker", "format validity"] == "1.000"
    assert [shown.loc[m, "grounding"] for m in models] == [
        "n/a" if summary.loc[m, "grounding"] is None else f"{summary.loc[m, 'grounding']:.3f}" for m in models]
    assert not any("None" in str(v) for v in shown.to_numpy().ravel())
    assert any(c.value.startswith("n/a: no predicted mistakes to judge") for c in at.caption)
    assert len(at.get("plotly_chart")) == 2
    download = at.get("download_button")  # each variant's result for the chosen models, as CSV
    assert len(download) == 1 and download[0].proto.label == "Download each variant's result (CSV)"
    per_schema = at.dataframe[3].value  # the "Per base schema" expander
    assert set(per_schema["model"]) == set(models) and per_schema["variants"].sum() == 3 * len(models)
    assert per_schema.set_index("model").loc[run_model_id(done, "sft+dpo"), "micro F1"] == 1.0
    # Drill down: base against the trained model differ on every variant; both traces are shown.
    a_box = next(s for s in at.selectbox if s.label == "Model A")
    b_box = next(s for s in at.selectbox if s.label == "Model B")
    a_box.set_value("base")
    b_box.set_value(run_model_id(done, "sft+dpo")).run()
    assert not at.exception
    codes = [c.value for c in at.code]
    assert codes == [WRONG, CORRECT_TRACE]  # the most different variant first: base found nothing of 2
    pick = next(s for s in at.selectbox if "variants differ" in s.label)
    assert pick.label == "3 variants differ" and "correct: A 0, B 2 of 2" in pick.options[0]


def test_evaluate_page_lists_a_models_earlier_evaluations_on_request(studio):
    engine, _, _ = studio
    first = next(m for m in list_evaluations(split="test", engine=engine) if m.model_id == "base").evaluation_id
    # evaluated again under a budget its stored answers do not fit: three new answers, the page's latest "base"
    evaluate(QueuedBackend([CORRECT_TRACE] * 3, "base"), split="test", limit=3, max_new_tokens=4, engine=engine)
    at = _page("pages/evaluate.py")
    earlier = f"base · evaluation {first}, 256 tokens"  # named with the budget it ran under, which differs
    assert earlier not in at.multiselect[0].options and "base" in at.multiselect[0].options
    next(t for t in at.toggle if t.label == "Earlier evaluations too").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    at.multiselect[0].set_value(["base", earlier]).run()
    assert not at.exception, [e.message for e in at.exception]
    origins, overall = at.dataframe[0].value, at.dataframe[1].value
    assert list(origins["model"]) == list(overall["model"]) == ["base", earlier]
    assert list(origins["answer budget"]) == ["4 tokens", "256 tokens"]
    assert list(origins["answers under another budget"]) == ["0", "0"]
    assert list(_shown(at.dataframe[1])["micro F1"]) == ["1.000", "0.444"]  # the new answers', the old ones'
    assert any(s.label == "Model B" and s.value == earlier for s in at.selectbox)


def test_train_button_starts_a_job_that_the_page_follows(studio):
    """The one button: exports the bulk-accepted data and starts the run (supervisor + runner); cancelled at once."""
    at = _page("pages/train.py")
    next(s for s in at.selectbox if s.label == "Recipe").set_value("tiny-cpu").run()  # the settings follow it
    assert next(n for n in at.number_input if n.label == "SFT epochs").value == 2  # tiny-cpu's, not the default's
    next(r for r in at.radio if r.label == "DPO rejected traces").set_value("planted")
    next(n for n in at.number_input if n.label == "DPO beta").set_value(0.25)
    next(n for n in at.number_input if n.label == train_view.SFT_TERM_LABEL).set_value(20.0)
    box = next(c for c in at.checkbox if c.label == train_view.CHECKPOINTING_LABEL)
    assert box.value is False  # tiny-cpu's (TRL's default)
    box.check()
    next(n for n in at.number_input if n.label == "More tokens a construct").set_value(20)
    next(b for b in at.button if b.label == "Export and train").click().run()
    assert not at.exception, [e.message for e in at.exception]
    started = at.query_params["run"]
    run = jobs.runs_dir() / (started[0] if isinstance(started, list) else started)
    try:
        assert run.is_dir() and jobs.read_request(run)["recipe"] == "tiny-cpu"
        assert jobs.read_request(run)["overrides"] == [
            "dpo.beta=0.25", "dpo.loss_type=[sigmoid, sft]", "dpo.loss_weights=[1.0, 20.0]",
            "sft.activation_checkpointing=true"]
        assert "beta: 0.25" in (run / "recipe.yaml").read_text()
        assert any(c.value.startswith("Recipe tiny-cpu with `dpo.beta=0.25`") for c in at.caption)
        assert len((run / "data" / "sft.jsonl").read_text().splitlines()) == 3
        pairs = [json.loads(line) for line in (run / "data" / "dpo.jsonl").read_text().splitlines()]
        assert len(pairs) == 3 and all(p["provenance"]["rejected_source"].startswith("planted:") for p in pairs)
        assert eval_jobs.read_eval_status(run)["status"] in (eval_jobs.WAITING, eval_jobs.RUNNING, eval_jobs.SKIPPED)
        budget = {k: eval_jobs.read_eval_status(run)[k] for k in ("max_new_tokens", "tokens_per_construct")}
        assert budget == {"max_new_tokens": 256, "tokens_per_construct": 20}  # what the evaluation afterwards uses
        assert next(s for s in at.selectbox if s.label == "Run").value == run.name
    finally:
        deadline = time.monotonic() + 30
        while not jobs.read_status(run).get("pid") and time.monotonic() < deadline:
            time.sleep(0.2)  # the supervisor launches the runner
        jobs.cancel(run, wait_s=30, force=True)
        deadline = time.monotonic() + 30
        while eval_jobs.read_eval_status(run).get("status") not in eval_jobs.FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
    # Cancelled, or failed when SIGTERM lands while the runner is still importing (the runner's behaviour):
    # either way the supervisor must not evaluate it.
    assert jobs.read_progress(run).state in (jobs.CANCELLED, jobs.FAILED)
    status = eval_jobs.read_eval_status(run)
    assert status["status"] == eval_jobs.SKIPPED and status["evaluations"] == {}


def test_train_page_trains_in_a_precision_the_machine_has(studio, monkeypatch):
    """On a CPU that computes bf16 natively the page offers bf16 beside fp32; the run asks for the one picked,
    and a run in the other precision is no reference for the estimate."""
    import streamlit as st

    from r2ta import timing

    _, done, _ = studio
    hardware, _ = train_view.hardware_and_precision("tiny-cpu")
    jobs.write_status(done, hardware={"description": hardware, "processes": 1}, precision="fp32", recipe="tiny-cpu",
                      data=[{"stage": "sft", "rows": 3}, {"stage": "dpo", "rows": 3}],
                      metrics={"sft": {"steps": 3, "train_runtime_s": 60.0, "wall_s": 70.0},
                               "dpo": {"steps": 2, "train_runtime_s": 30.0, "wall_s": 40.0}})
    monkeypatch.setattr(train_view, "precision_choices", lambda: ["fp32", "bf16"])
    monkeypatch.setattr(train_view, "hardware_and_precision", lambda recipe=None: (hardware, "fp32"))
    started = []
    monkeypatch.setattr(eval_jobs, "start_training_with_evaluation",
                        lambda sft, dpo, **kw: started.append(kw) or done)
    st.cache_data.clear()
    try:
        at = _page("pages/train.py")
        next(s for s in at.selectbox if s.label == "Recipe").set_value("tiny-cpu").run()
        box = next(s for s in at.selectbox if s.label == "Precision")
        assert box.options == ["fp32", "bf16"] and box.value == "fp32" and not box.disabled
        assert any(c.value.startswith("Expected on this machine") for c in at.caption)  # the fp32 run's rates
        next(b for b in at.button if b.label == "Export and train").click().run()
        assert started[-1]["precision"] == "auto"  # the recipe's own choice
        box = next(s for s in at.selectbox if s.label == "Precision")
        box.set_value("bf16").run()
        assert any(c.value == timing.NO_ESTIMATE for c in at.caption)  # no bf16 run to take rates from
        next(b for b in at.button if b.label == "Export and train").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert started[-1]["precision"] == "bf16" and started[-1]["recipe"] == "tiny-cpu"
    finally:
        st.cache_data.clear()


def test_train_page_says_what_limits_the_cores_beneath_the_hardware_box(studio, monkeypatch):
    """In a container with a CPU quota the box keeps to what trains and at which precision (the whole line did not
    fit it: "CPU only (2 cores: a CPU quota of 1.…"); the limit is said in full beneath it."""
    import streamlit as st

    from r2ta import cpu
    from training import hardware

    monkeypatch.setattr(hardware, "detect_hardware", lambda: hardware.Hardware(
        "cpu", 0, "cpu", False, 2, None, cpu.limit_note(1.5, set(range(64)), 64)))
    assert train_view.hardware_headline() == ("CPU only (2 cores), fp32", "a CPU quota of 1.5 cores on a machine of 64")
    st.cache_data.clear()
    try:
        at = _page("pages/train.py")
        assert not at.exception, [e.stack_trace for e in at.exception]
        assert next(m for m in at.metric if m.label == "Hardware").value == "CPU only (2 cores), fp32"
        assert any(c.value.startswith("A CPU quota of 1.5 cores on a machine of 64: model jobs and training here "
                                      "take as many threads") for c in at.caption)
        monkeypatch.setattr(hardware, "detect_hardware", lambda: hardware.Hardware("cpu", 0, "cpu", False, 2, None))
        st.cache_data.clear()
        at = _page("pages/train.py")
        assert not any("CPU quota" in c.value for c in at.caption)  # nothing limits the cores: nothing said
    finally:
        st.cache_data.clear()


def test_train_page_says_how_long_a_run_will_take_and_has_left(studio):
    """No finished run of the recipe on this hardware: it says so. One: the estimate from its rates. A run going:
    its stage's time a step and time left on the progress bar, and what comes after it."""
    import datetime as dt
    import os

    from r2ta import timing

    _, done, _ = studio
    at = _page("pages/train.py")
    assert any(c.value == timing.NO_ESTIMATE for c in at.caption)  # the default recipe has no finished run here

    hardware, precision = train_view.hardware_and_precision("tiny-cpu")
    jobs.write_status(done, hardware={"description": hardware, "processes": 1}, precision=precision, recipe="tiny-cpu",
                      data=[{"stage": "sft", "rows": 3}, {"stage": "dpo", "rows": 3}],
                      metrics={"sft": {"steps": 3, "train_runtime_s": 60.0, "wall_s": 70.0, "final_loss": 1.1},
                               "dpo": {"steps": 2, "train_runtime_s": 30.0, "wall_s": 40.0, "reward_margin": 0.4}})
    running = jobs.prepare_run(done / "data" / "sft.jsonl", done / "data" / "dpo.jsonl", recipe="tiny-cpu",
                               run_dir=jobs.runs_dir() / "20260102-100000-tiny-cpu")
    (running / "recipe.yaml").write_text((done / "recipe.yaml").read_text())
    now = dt.datetime.now(dt.timezone.utc)
    for step in (1, 2):
        jobs.append_progress(running, {"stage": "sft", "step": step, "max_steps": 30, "loss": 2.0,
                                       "elapsed_s": 12.0 * step, "time": now.isoformat()})
    jobs.write_status(running, status="running", stage="sft", step=2, max_steps=30, pid=os.getpid(),
                      pid_start=jobs.process_start_ticks(os.getpid()), hardware={"description": hardware},
                      data=[{"stage": "sft", "rows": 30}, {"stage": "dpo", "rows": 3}],
                      threads={"threads": 1, "cores": 2, "stage": "sft", "since_step": 2})  # a job beside it

    at = _page("pages/train.py", run=running.name)
    next(s for s in at.selectbox if s.label == "Recipe").set_value("tiny-cpu").run()
    # The reference saw 5 SFT rows in 3 steps of up to 2 (an epoch of its 3 rows is a step of 2 and one of 1) in
    # 60 s: 12 s a row, +10 s outside its steps; 3 DPO pairs in 2 steps (one epoch) in 30 s: 10 s a pair, +10 s.
    # tiny-cpu, 3 accepted rows and 3 pairs, 2 epochs each.
    assert any(c.value == (
        "Expected on this machine: about 3 min: SFT 82 s (3 rows × 2 epochs), DPO 70 s (3 pairs × 2 epochs), "
        "evaluation not estimated (the reference run has no finished evaluation); "
        f"rates of run {done.name}.") for c in at.caption), [c.value for c in at.caption]
    bar = next(p.proto.text for p in at.get("progress"))
    assert "step 2/30" in bar and "12.0 s a step, about 6 min left in SFT" in bar  # 28 steps x 12 s
    assert any(c.value == f"After SFT: about 70 s: DPO 70 s (3 pairs × 2 epochs); rates of run {done.name}."
               for c in at.caption), [c.value for c in at.caption]
    assert any(c.value.startswith("Training on 1 of 2 cores since SFT step 2: another process on this machine uses "
                                  "the rest") for c in at.caption), [c.value for c in at.caption]
    assert any(w.value.startswith(f"Run {running.name} is training: a second run started now shares this machine's "
                                  "cores") for w in at.warning)  # before the button starts another beside it
    jobs.write_status(running, threads={"threads": 2, "cores": 2, "stage": "sft", "since_step": 9})  # taken back
    at.run()
    assert not any(c.value.startswith("Training on ") for c in at.caption)


def test_train_page_measures_the_machine_when_no_run_gives_an_estimate(studio, monkeypatch):
    """Before the first run of a recipe here the page offers a measurement (r2ta.probe) of this recipe, its
    settings and precision; while it goes it shows its stage, offers to cancel it and holds the train button;
    afterwards the estimate comes from it and says so; a failed one shows why with its log."""
    import os

    from r2ta import probe, timing

    started = []

    def fake_start(sft, dpo, **kw):
        started.append(kw)
        run_dir = probe.probes_dir() / "20260103-100000-smollm2-135m-cpu-x" / "run"
        jobs.prepare_run(sft, dpo, recipe=kw["recipe"], run_dir=run_dir, max_steps=probe.PROBE_STEPS)
        jobs.write_status(run_dir, status="running", stage="sft", step=1, pid=os.getpid(),
                          pid_start=jobs.process_start_ticks(os.getpid()))
        return run_dir

    monkeypatch.setattr(probe, "start_probe", fake_start)
    at = _page("pages/train.py")
    assert any(c.value == timing.NO_ESTIMATE for c in at.caption)
    next(b for b in at.button if b.label == "Measure this machine first").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert started == [{"recipe": "smollm2-135m-cpu", "overrides": [], "precision": "auto"}]
    assert any("Measuring this machine — measuring: SFT, step 1 of 2" in i.value for i in at.info)
    assert next(b for b in at.button if b.label == "Export and train").disabled
    run_dir = probe.active_probe()
    cancelled = []
    monkeypatch.setattr(probe, "cancel_probe", lambda path: cancelled.append(path)
                        or jobs.write_status(path, status="cancelled", finished_at=jobs.now_iso()))
    next(b for b in at.button if b.label == "Cancel the measurement").click().run()
    assert cancelled == [run_dir] and probe.active_probe() is None
    assert any(w.value == "the measurement was cancelled" for w in at.warning)
    assert not next(b for b in at.button if b.label == "Export and train").disabled
    # a measurement that succeeded: the estimate is its, and said to be a rough one
    hardware, precision = train_view.hardware_and_precision("smollm2-135m-cpu")
    jobs.write_status(run_dir, status="succeeded", stage="done", hardware={"description": hardware, "processes": 1},
                      precision=precision, recipe="smollm2-135m-cpu", finished_at=jobs.now_iso(),
                      data=[{"stage": "sft", "rows": 8}, {"stage": "dpo", "rows": 8}],
                      metrics={"sft": {"steps": 2, "train_runtime_s": 80.0, "wall_s": 95.0},
                               "dpo": {"steps": 2, "train_runtime_s": 96.0, "wall_s": 110.0}})
    (run_dir / "recipe.yaml").write_text((jobs.RECIPES_DIR / "smollm2-135m-cpu.yaml").read_text())
    eval_jobs.write_eval_status(run_dir, status="succeeded", models=["base"],
                                generated={"base": {"variants": 2, "seconds": 20.0}})
    at = _page("pages/train.py")
    caption = next(c.value for c in at.caption if c.value.startswith("Expected on this machine"))
    # SFT: 8 rows in 80 s, + 15 s, for 3 rows x 3 epochs; DPO: 8 pairs in 96 s, + 14 s, for 3 pairs x 1 epoch
    sft, dpo = timing.format_duration(15 + 10 * 9), timing.format_duration(14 + 12 * 3)
    total = timing.format_duration(105 + 50 + 10 * (2 * 4 + 4))
    assert caption.startswith(f"Expected on this machine: roughly {total}: SFT {sft}"), caption
    assert f"DPO {dpo}" in caption and "measured by a few training steps" in caption, caption
    # the evaluation at the base model's 10 s a variant: the 4 test variants there are (not the default 24) x 2
    # models + the base model's 4 missing answers
    assert f"evaluation {timing.format_duration(10 * (2 * 4 + 4))} (4 test variants × 2 models + the base model on 4)" \
        in caption, caption
    assert "the base model's 2 answers" in caption, caption
    assert any(b.label == "Measure again" for b in at.button) and not at.warning
    # the base model evaluated by itself here (the Evaluate page) on more variants: its rate is the closer one
    from r2ta import model_jobs

    for name, model_id, answers, seconds in (("a-other", "other-model", 40, 40.0), ("b-few", "smollm2-135m-instruct", 4, 4.0),
                                             ("c-base", "smollm2-135m-instruct", 20, 100.0)):
        eval_jobs.write_eval_status(model_jobs.evaluations_dir() / f"20260104-00000{len(name)}-{name}",
                                    status="succeeded", kind=model_jobs.EVALUATE, model="embedded", model_id=model_id,
                                    generated={"variants": answers, "seconds": seconds})
    at = _page("pages/train.py")
    caption = next(c.value for c in at.caption if c.value.startswith("Expected on this machine"))
    assert f"evaluation {timing.format_duration(5 * (2 * 4 + 4))} (4 test variants" in caption, caption
    assert "the base model's 20 answers" in caption, caption
    # the base model's answers counted are those the evaluation's budget writes: its stored ones under another are
    # answered again (r2ta.pipeline.answers_to_write), so the page asks under the budget typed in
    asked = []
    counted = train_view.base_answers_missing
    monkeypatch.setattr(train_view, "base_answers_missing",
                        lambda *a, **k: asked.append(k.get("max_new_tokens")) or counted(*a, **k))
    next(n for n in at.number_input if n.label == "Tokens an answer").set_value(384).run()
    assert not at.exception and asked and set(asked) == {384}, asked


def test_a_rate_with_nothing_to_judge_reads_n_a_and_the_cells_stay_numbers():
    """rates_table: None shows n/a, a rate 3 decimals, other columns as they are; underneath, numbers and None."""
    at = AppTest.from_string(
        "from r2ta.ui import rates_table\n"
        "rates_table([{'model': 'a', 'hallucination': None, 'micro F1': 0.5, 'variants': 3},"
        " {'model': 'b', 'hallucination': 0.25, 'micro F1': 1 / 3, 'variants': 4}], "
        "('hallucination', 'micro F1', 'not a column'))").run()
    assert not at.exception
    shown = _shown(at.dataframe[0])
    assert list(shown["hallucination"]) == ["n/a", "0.250"] and list(shown["micro F1"]) == ["0.500", "0.333"]
    assert list(shown["variants"]) == ["3", "4"]
    data = at.dataframe[0].value
    assert data["hallucination"].isna().tolist() == [True, False] and data["micro F1"].tolist() == [0.5, 1 / 3]


def test_the_train_page_counts_what_a_run_would_train_on_and_says_what_to_do_when_nothing(studio):
    """Its figures are the train split's decisions in force and the pairs the chosen negatives make; with none,
    it says why the buttons are held and links to the Review page."""
    from db.models import ProposalRow

    from r2ta import review

    engine, _, _ = studio
    rows = train_view.training_rows(engine=engine)
    assert (rows.sft, rows.dpo, rows.dpo_at_most) == (3, 3, False)  # 3 accepted; the model's traces all differ
    assert train_view.training_rows(engine=engine, negatives="planted") == train_view.TrainingRows(3, 3, True)
    assert train_view.training_rows(engine=engine, negatives="both") == train_view.TrainingRows(3, 6, True)
    assert train_view.training_rows(engine=engine, split="test") == train_view.TrainingRows(0, 0, False)
    with pytest.raises(ValueError, match="negatives must be one of"):
        train_view.training_rows(engine=engine, negatives="nope")
    at = _page("pages/train.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["SFT examples"] == "3" and metrics["DPO pairs"] == "3"
    assert not any(i.value.startswith("Nothing to train on yet") for i in at.info)
    # a later review that rejects takes its proposal out; rejecting all three leaves nothing to train on
    with Session(engine) as session:
        proposals = [(p.id, p.version) for p in session.exec(select(ProposalRow))]
    for proposal_id, version in proposals:
        review.decide(engine, proposal_id=proposal_id, expected_version=version, reviewer="Ana", decision="reject",
                      reason="not right")
    assert train_view.training_rows(engine=engine) == train_view.TrainingRows(0, 0, False)
    at = _page("pages/train.py")
    assert {m.label: m.value for m in at.metric}["SFT examples"] == "0"
    assert any(i.value.startswith("Nothing to train on yet: a run learns from reviewed refinements") for i in at.info)
    assert any("Review refinements" in e.proto.label for e in at.get("page_link"))
    assert next(b for b in at.button if b.label == "Export and train").disabled
    assert next(b for b in at.button if b.label == "Measure this machine first").disabled


def test_reviewed_rows_without_a_pair_are_told_to_plant_one(studio, monkeypatch):
    monkeypatch.setattr(train_view, "training_rows", lambda **_: train_view.TrainingRows(2, 0, False))
    at = _page("pages/train.py")
    info = next(i.value for i in at.info if i.value.startswith("Nothing to train on yet"))
    assert "(2 reviewed, but none differs from the model's own trace: choose a planted error" in info
    assert next(b for b in at.button if b.label == "Export and train").disabled


def test_the_train_page_says_when_a_model_job_shares_the_machine(studio):
    import os

    from r2ta import model_jobs

    job_dir = model_jobs.evaluations_dir() / "20260101-000000-000000-reason"
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.RUNNING, kind=model_jobs.REASON, model="embedded",
                                split="train", limit=24, done=8, total=24, pid=os.getpid(),
                                pid_start=jobs.process_start_ticks(os.getpid()))
    at = _page("pages/train.py")
    assert any(w.value == "Going now: the embedded model reasons about 24 more train variants: 8 of 24 new answers "
                          "written. A run started meanwhile shares this machine with it, and both go slower."
               for w in at.warning)
    assert not next(b for b in at.button if b.label == "Export and train").disabled  # said, not held


def test_overview_next_steps_follow_the_loop(studio):
    """Reviewed data and a finished run: train again on what was reviewed since; models scored: no evaluate step."""
    engine, _, _ = studio
    steps = catalog.next_steps(catalog.stage_counts(engine), engine)
    assert [s[2] for s in steps] == ["More to review", "Train on them"]
    assert steps[1][0] == "**3** reviewed examples and **3** DPO pairs now: train again on what was reviewed since."
    counts = {**catalog.stage_counts(engine), "pending": 5, "training_runs_succeeded": 0, "evaluations": 0}
    steps = catalog.next_steps(counts, engine)
    assert [s[2] for s in steps] == ["Review them", "Train on them", "Score models"] and steps[0][0] == "**5** proposals wait for review."
    assert steps[1][0].startswith("**3** reviewed examples and **3** DPO pairs are ready: train the model")


def test_train_page_trains_dpo_again_from_a_runs_sft_with_the_forms_dpo_settings(studio, monkeypatch):
    _, done, crashed = studio
    (done / "sft").mkdir()
    (done / "sft" / "adapter_config.json").write_text("{}")
    (done / "recipe.yaml").write_text(jobs.recipe_file("tiny-cpu").read_text().replace("beta: 0.1", "beta: 0.2"))
    started = []

    def prepare_only(run_dir, **kwargs):  # the page's wiring; the runner's part is tests/test_dpo_again.py's
        started.append((jobs.prepare_dpo_again(run_dir, dpo_file=kwargs["dpo_file"], overrides=kwargs["overrides"]),
                        kwargs))
        return started[-1][0]

    monkeypatch.setattr(eval_jobs, "start_dpo_again", prepare_only)
    at = _page("pages/train.py", run=done.name)
    assert not any(b.label == "Train DPO again" for b in _page("pages/train.py", run=crashed.name).button)  # no SFT
    # the form shows the recipe's beta (0.1); the run ran with 0.2: DPO again changes it back, and says so
    # the form shows the default recipe's values; the run ran tiny-cpu: the page says so, and which to choose
    assert any("this run ran tiny-cpu: choose it as the recipe above" in c.value for c in at.caption)
    next(s for s in at.selectbox if s.label == "Recipe").set_value("tiny-cpu").run()
    assert any("Changed from this run: `dpo.beta=0.1`." in c.value and "this run ran" not in c.value
               for c in at.caption)
    next(n for n in at.number_input if n.label == "DPO beta").set_value(0.2).run()
    assert any("The DPO settings above are this run's" in c.value for c in at.caption)
    next(n for n in at.number_input if n.label == "DPO beta").set_value(0.7).run()
    next(b for b in at.button if b.label == "Train DPO again").click().run()
    assert not at.exception, [e.message for e in at.exception]
    new, kwargs = started[0]
    assert kwargs["overrides"] == ["dpo.beta=0.7"] and kwargs["dpo_file"] is None  # this run's own pairs
    assert next(s for s in at.selectbox if s.label == "Run").value == new.name
    assert any(c.value.startswith(f"DPO again from the SFT stage of run {done.name}") for c in at.caption)
    assert at.dataframe[0].value.set_index("run").loc[new.name, "resumed"] == f"DPO again on the SFT of {done.name}"
    # today's pairs instead of the run's: exported afresh
    at = _page("pages/train.py", run=done.name)
    next(s for s in at.selectbox if s.label == "Recipe").set_value("tiny-cpu").run()
    next(c for c in at.checkbox if c.label.startswith("On today's pairs")).check().run()
    next(b for b in at.button if b.label == "Train DPO again").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert started[1][1]["dpo_file"] is not None and jobs.read_request(started[1][0])["dpo_again_pairs"]
    # a run of `r2ta loop` ran a recipe file of its own, which the Recipe box cannot offer: the page says so
    jobs.write_status(done, recipe="recipe")
    at = _page("pages/train.py", run=done.name)
    assert any("this run ran a recipe file of its own" in c.value for c in at.caption)
    # and its overrides are said against that file, not as if "recipe" were a shipped recipe's name
    jobs.write_status(done, overrides=["dpo.beta=0.7"])
    at = _page("pages/train.py", run=done.name)
    assert any(c.value.startswith("A recipe file of its own (`recipe.yaml`: `r2ta loop`'s or `--recipe FILE`'s; the "
                                  "run folder keeps it as recipe.yaml) with `dpo.beta=0.7`") for c in at.caption)
    assert not any(c.value.startswith("Recipe recipe") for c in at.caption)
