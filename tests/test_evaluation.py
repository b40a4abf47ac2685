"""Evaluation of models, runs and the checker; comparison helpers; bulk acceptance; eval jobs; r2ta eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from db.engine import get_engine, init_db
from db.loading import load_dataset
from db.models import EvaluationRow, ReviewRow, TraceRow
from r2ta import eval_jobs, jobs
from r2ta.backends import Backend, BackendConfig, Generation
from r2ta.checker import check
from r2ta.cli import main
from r2ta.eerd import Mistake
from r2ta.evaluation import (
    CHECKER_MODEL_ID,
    EvaluationError,
    budget_text,
    checker_trace,
    differing_variants,
    evaluate,
    evaluation_labels,
    format_side_by_side,
    list_evaluations,
    model_origins,
    resolve_model,
    rescore,
    rows_csv,
    run_evaluations,
    run_model_id,
    summary_figure,
    summary_rows,
    variant_rows,
)
from db.queries import count_pairs_ready
from r2ta.loop import BULK_REVIEWER, bulk_accept
from r2ta.pipeline import export_rows, reason, refine
from r2ta.prompting import DEFAULT_VERDICT_TOKENS, parse_output
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS, variant

LINES = CORRECT_TRACE.split("\n")
ONLY_FK = "\n".join(LINES[:3] + ["VERDICT:", LINES[6]])  # finds the foreign key, misses the participation
WRONG = "Step 1 [PROJECT]: PROJECT has no key. -> missing_key\nVERDICT:\nMISTAKE: missing_key | PROJECT | no key"


class QueuedBackend(Backend):
    """A fake backend: answers from a queue, in order."""

    def __init__(self, outputs, model_id="fake-135m"):
        super().__init__(BackendConfig(kind="local", model="fake", batch_size=4))
        self.outputs, self._id = list(outputs), model_id

    @property
    def id(self):
        return self._id

    def generate(self, prompts, max_new_tokens=512, temperature=None):
        # every answer is 5 tokens long: a budget under that cuts it (its text stays whole)
        budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
        return [Generation(text=self.outputs.pop(0), prompt_tokens=10, completion_tokens=min(5, b),
                           finish_reason="stop" if b >= 5 else "length") for b in budgets]


def small_store(tmp_path, monkeypatch, *, test_variants: int = 4, train_variants: int = 3):
    """A SQLite store in ``tmp_path`` (the process's database URL) with one base schema and its variants."""
    url = f"sqlite:///{tmp_path / 'r2ta.db'}"
    monkeypatch.setenv("R2TA_DATABASE_URL", url)
    engine = get_engine(url)
    init_db(engine)
    base = {"id": "company_small", "domain": "business", "title": "Company", "requirements": REQUIREMENTS,
            "diagram": DIAGRAM.model_dump(mode="json")}
    variants = [variant("test", n).model_dump(mode="json") for n in range(test_variants)]
    variants += [variant("train", n).model_dump(mode="json")
                 for n in range(test_variants, test_variants + train_variants)]
    with Session(engine) as session:
        load_dataset([base], variants, session=session)
    return engine


@pytest.fixture
def engine(tmp_path, monkeypatch):
    return small_store(tmp_path, monkeypatch)


def test_checker_trace_is_its_findings_in_the_trace_format():
    findings = check(DIAGRAM)
    parsed = parse_output(checker_trace(DIAGRAM), DIAGRAM)
    assert parsed.valid and not parsed.unresolved
    assert [(m.category, m.elements) for m in parsed.verdict] == [(m.category, m.elements) for m in findings]
    assert [s.finding for s in parsed.steps] == [m.category for m in findings]


def test_checker_is_evaluated_like_a_model(engine):
    outcome = evaluate(CHECKER_MODEL_ID, split="test", limit=3, engine=engine)
    assert outcome.model_id == "checker" and outcome.generated == 3 and outcome.report.n == 3
    # The checker sees the structural foreign key but never the participation (it needs the requirements).
    fk, part = outcome.report.per_category["foreign_key_attribute"], outcome.report.per_category["participation"]
    assert (fk.tp, fk.fn) == (3, 0) and (part.tp, part.fn) == (0, 3)
    assert outcome.report.format_validity == 1.0 and outcome.report.grounding_rate == 1.0
    again = evaluate(CHECKER_MODEL_ID, split="test", limit=3, engine=engine)
    assert again.generated == 0  # traces are stored once, scored again
    stored = {m.model_id: m for m in list_evaluations(split="test", engine=engine)}
    assert stored["checker"].n_variants == 3 and stored["checker"].evaluation_id == again.evaluation_id


def test_an_evaluation_under_another_budget_scores_what_that_budget_writes(engine):
    # every fake answer is 5 tokens and ended by itself: any budget of 5 or more would write it again, a budget of 4
    # would not, so that evaluation answers all four again and is scored on the new answers, not the stored ones
    first = evaluate(QueuedBackend([CORRECT_TRACE] * 4, "m"), split="test", max_new_tokens=300, engine=engine)
    assert first.generated == 4 and first.report.micro_f1 == 1.0
    same = evaluate(QueuedBackend([], "m"), split="test", max_new_tokens=200, engine=engine)
    assert same.generated == 0 and same.report.micro_f1 == 1.0
    tight = evaluate(QueuedBackend([WRONG] * 4, "m"), split="test", max_new_tokens=4, engine=engine)
    assert tight.generated == 4 and tight.report.micro_f1 == 0.0 and tight.report.n == 4
    assert any("4 answered again" in note for note in tight.notes)
    # the page lists each model's latest evaluation; asked, the earlier ones too, each named apart, to compare
    assert [m.evaluation_id for m in list_evaluations(split="test", engine=engine)] == [tight.evaluation_id]
    labels = evaluation_labels(list_evaluations(split="test", engine=engine, every=True))
    assert {k: m.evaluation_id for k, m in labels.items()} == {  # each named with the budget it ran under
        "m": tight.evaluation_id, f"m · evaluation {same.evaluation_id}, 200 tokens": same.evaluation_id,
        f"m · evaluation {first.evaluation_id}, 300 tokens": first.evaluation_id}
    cost = labels["m"].settings.pop("generated")  # what its 4 answers cost; a fake is not hardware of this machine
    assert cost["variants"] == 4 and cost["beside_run"] is False and "hardware" not in cost
    assert labels["m"].settings == {"max_new_tokens": 4, "tokens_per_construct": 0, "verdict_tokens": None,
                                    "other_budget": 0}  # this fake cannot continue an answer: no verdict asked for
    origins = model_origins(labels.values(), engine=engine)
    assert [(o["answer budget"], o["answers under another budget"]) for o in origins] == [
        ("4 tokens", "0"), ("200 tokens", "0"), ("300 tokens", "0")]
    diffs = differing_variants(first.evaluation_id, tight.evaluation_id, engine=engine)
    assert len(diffs) == 4 and all(d.a.raw_output == CORRECT_TRACE and d.b.raw_output == WRONG for d in diffs)
    # an evaluation of the first two variants under 3 tokens (which the 5-token answers do not fit) scores the other
    # two's answers too, as they are, and says so: in its notes, its stored settings and the origins table
    part = evaluate(QueuedBackend([CORRECT_TRACE] * 2, "m"), split="test", limit=2, max_new_tokens=3, engine=engine)
    assert part.generated == 2 and part.report.n == 4 and 0 < part.report.micro_f1 < 1
    assert any("2 answers beyond this call's variants were made under another token budget" in n for n in part.notes)
    latest = evaluation_labels(list_evaluations(split="test", engine=engine))["m"]
    assert latest.settings["other_budget"] == 2
    assert model_origins([latest], engine=engine)[0]["answers under another budget"] == "2"
    # the same budget as the latest is not repeated in an earlier evaluation's name
    again = evaluation_labels(list_evaluations(split="test", engine=engine, every=True))
    assert f"m · evaluation {tight.evaluation_id}, 4 tokens" in again
    same_budget = evaluate(QueuedBackend([], "m"), split="test", limit=2, max_new_tokens=3, engine=engine)
    names = evaluation_labels(list_evaluations(split="test", engine=engine, every=True))
    assert f"m · evaluation {part.evaluation_id}" in names and names["m"].evaluation_id == same_budget.evaluation_id


def test_budget_text_names_what_an_evaluation_ran_under():
    assert budget_text(None) == "" and budget_text({}) == ""  # not recorded: the checker, older evaluations
    assert budget_text({"max_new_tokens": 384, "tokens_per_construct": 0, "verdict_tokens": DEFAULT_VERDICT_TOKENS}) \
        == "384 tokens"
    assert budget_text({"max_new_tokens": 320, "tokens_per_construct": 20, "verdict_tokens": 0}) \
        == "320 + 20 a construct, verdict 0"


def test_a_backend_is_evaluated_and_compared_on_common_variants(engine):
    good = evaluate(QueuedBackend([CORRECT_TRACE] * 4, "good"), split="test", engine=engine)
    half = evaluate(QueuedBackend([ONLY_FK, WRONG], "half"), split="test", limit=2, engine=engine)
    assert good.report.n == 4 and good.report.micro_f1 == 1.0 and good.generated == 4
    assert half.report.n == 2 and half.report.hallucination_rate == 0.5
    reports, common = rescore({"good": good.evaluation_id, "half": half.evaluation_id}, engine=engine)
    assert common == ["company_small-000", "company_small-001"]
    assert reports["good"].n == reports["half"].n == 2
    assert reports["half"].per_category["missing_key"].fp == 1
    alone, _ = rescore({"good": good.evaluation_id, "half": half.evaluation_id}, common_only=False, engine=engine)
    assert alone["good"].n == 4
    table = format_side_by_side(reports)
    assert "micro F1" in table and "foreign_key_attribute" in table and "good" in table.split("\n")[0]


def test_differing_variants_shows_both_traces(engine):
    a = evaluate(QueuedBackend([CORRECT_TRACE, CORRECT_TRACE], "a"), split="test", limit=2, engine=engine)
    b = evaluate(QueuedBackend([CORRECT_TRACE, WRONG], "b"), split="test", limit=2, engine=engine)
    diffs = differing_variants(a.evaluation_id, b.evaluation_id, engine=engine)
    assert [d.variant_id for d in diffs] == ["company_small-001"]
    d = diffs[0]
    assert (d.a_correct, d.b_correct, len(d.truth)) == (2, 0, 2)
    assert d.a.raw_output == CORRECT_TRACE and d.b.raw_output == WRONG


def test_bulk_accept_marks_the_reviews_as_not_human(engine):
    reason(QueuedBackend([ONLY_FK] * 3, "base"), split="train", engine=engine)
    refine(model_id="base", split="train", engine=engine)
    assert bulk_accept(model_id="base", split="train", engine=engine) == 3
    assert bulk_accept(model_id="base", split="train", engine=engine) == 0  # only unreviewed proposals
    with Session(engine) as session:
        reviews = list(session.exec(select(ReviewRow)))
        # each with its DPO pair (the model's trace missed a mistake), as a decision on the Review page stores it
        assert count_pairs_ready(session=session, split="train") == 3
    assert {r.reviewer for r in reviews} == {BULK_REVIEWER}
    assert all("without human review" in r.reason for r in reviews)
    rows = export_rows("sft", split="train", engine=engine).rows
    assert len(rows) == 3 and {r["provenance"]["reviewer"] for r in rows} == {BULK_REVIEWER}
    assert "participation" in rows[0]["messages"][-1]["content"]  # the auditor added the missed mistake


def _fake_run(root: Path, name="20260101-000000-tiny", merged=True) -> Path:
    run = root / name
    (run / "sft").mkdir(parents=True)
    (run / "sft" / "adapter_config.json").write_text("{}")
    (run / "dpo").mkdir()
    (run / "dpo" / "adapter_config.json").write_text("{}")
    if merged:
        (run / "merged").mkdir()
        (run / "merged" / "config.json").write_text("{}")
    (run / "request.json").write_text(json.dumps({"recipe": "tiny-cpu"}))
    (run / "status.json").write_text(json.dumps({"status": "succeeded", "stage": "done"}))
    return run


def test_resolve_model_names_run_stages_and_refuses_unknown(tmp_path):
    run = _fake_run(tmp_path)
    final = resolve_model(str(run))
    assert (final.kind, final.stage, final.model_id) == ("run", "sft+dpo", run_model_id(run, "sft+dpo"))
    assert final.model_path == run.resolve() / "merged"
    sft = resolve_model(f"{run}:sft")
    assert sft.model_id == f"{run.name}:sft" and sft.model_path == run.resolve() / "sft"
    no_merge = _fake_run(tmp_path, "other", merged=False)
    assert resolve_model(str(no_merge)).model_path == no_merge.resolve() / "dpo"
    assert resolve_model("checker").kind == "checker"
    assert resolve_model("embedded").kind == "backend"
    with pytest.raises(EvaluationError, match="not 'checker', a training run folder"):
        resolve_model("no-such-model")
    unfinished = tmp_path / "unfinished"
    (unfinished).mkdir()
    (unfinished / "request.json").write_text("{}")
    (unfinished / "status.json").write_text("{}")
    with pytest.raises(EvaluationError, match="after it succeeded"):
        resolve_model(str(unfinished))


def test_eval_command_scores_and_compares(engine, capsys):
    assert main(["eval", "--model", "checker", "--split", "test", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "checker: stored as evaluation" in out and "format validity 1.000" in out
    assert main(["eval", "--compare", "checker"]) == 0
    out = capsys.readouterr().out
    assert "scored on the 2 variants" in out
    micro_f1 = float(next(line for line in out.splitlines() if line.startswith("micro F1")).split()[-1])
    # one schema here: its line repeats the overall figures
    assert out.splitlines()[-1].split() == ["company_small", "(2)", "1.00", "/", f"{micro_f1:.2f}"]
    assert main(["eval", "--compare", "checker", "nobody"]) == 2
    assert "no stored test evaluation for nobody" in capsys.readouterr().err


def test_each_variants_result_goes_to_a_spreadsheet_safely(engine, tmp_path, capsys):
    good = evaluate(QueuedBackend([CORRECT_TRACE] * 4, "good"), split="test", engine=engine)
    half = evaluate(QueuedBackend([ONLY_FK, WRONG], "=half"), split="test", limit=2, engine=engine)
    rows = variant_rows({"good": good.evaluation_id, "=half": half.evaluation_id}, engine=engine)
    assert [(r["model"], r["variant"]) for r in rows] == [
        *(("good", f"company_small-00{n}") for n in range(4)), ("=half", "company_small-000"),
        ("=half", "company_small-001")]
    assert rows[0] == {
        "model": "good", "variant": "company_small-000", "base schema": "company_small", "verdict parses": True,
        "verdict asked for": False, "right": 2, "wrong": 0, "missed": 0,
        "predicted": "foreign_key_attribute: EMPLOYEE.Dnumber, WORKS_FOR; participation: WORKS_FOR, EMPLOYEE",
        "truth": "participation: WORKS_FOR, EMPLOYEE; foreign_key_attribute: EMPLOYEE.Dnumber, WORKS_FOR"}
    assert [(r["right"], r["wrong"], r["missed"]) for r in rows[4:]] == [(1, 0, 1), (0, 1, 2)]
    assert rows[5]["predicted"] == "missing_key: PROJECT"
    only = variant_rows({"good": good.evaluation_id}, only=["company_small-003"], engine=engine)
    assert [r["variant"] for r in only] == ["company_small-003"]
    # a model (or an imported diagram's element) named like a formula stays text in a spreadsheet
    text = rows_csv(rows)
    lines = text.splitlines()
    assert lines[0] == "model,variant,base schema,verdict parses,verdict asked for,predicted,truth,right,wrong,missed"
    assert lines[5].startswith("'=half,company_small-000,company_small,True,False,")
    assert rows_csv([]) == ""
    # the same from the command line, beside the comparison
    out = tmp_path / "per-variant.csv"
    assert main(["eval", "--compare", "good", "=half", "--per-variant", str(out)]) == 0
    assert "4 rows (model, variant) written to" in capsys.readouterr().out  # the 2 variants both have, 2 models
    assert out.read_text(encoding="utf-8").splitlines()[0] == lines[0] and len(out.read_text().splitlines()) == 5
    assert main(["eval", "--compare", "good", "--per-variant", str(tmp_path / "no" / "such" / "dir.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["eval", "--model", "checker", "--per-variant", str(out)]) == 2
    assert "--per-variant goes with --compare" in capsys.readouterr().err


def test_eval_compare_limit_scores_the_first_variants_only(engine, capsys):
    """--compare --limit N: the models side by side on the first N variants of the split (the first 50 test variants
    are 4 of the 12 schemas; a comparison on them is not one on all 150)."""
    evaluate(QueuedBackend([CORRECT_TRACE, CORRECT_TRACE, WRONG, WRONG], "m"), split="test", engine=engine)
    evaluate(CHECKER_MODEL_ID, split="test", engine=engine)
    assert main(["eval", "--compare", "m", "checker"]) == 0
    out = capsys.readouterr().out
    assert "scored on the 4 variants every model has\n" in out
    assert float(next(line for line in out.splitlines() if line.startswith("micro F1")).split()[-2]) < 1.0
    # what each model's answers were asked under; the checker has no budget
    assert next(line for line in out.splitlines() if line.startswith("answer budget")).split()[-3:] == [
        "256", "tokens", "-"]
    assert main(["eval", "--compare", "m", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "scored on the 2 variants every model has among the first 2" in out
    assert next(line for line in out.splitlines() if line.startswith("micro F1")).split()[-1] == "1.000"
    assert main(["eval", "--compare", "m", "--limit", "0"]) == 2


def test_eval_spread_takes_every_schema_before_a_second_of_any(engine, capsys):
    # The test variants here are company_small-000..003; add two of another schema, whose ids sort after.
    other = {"id": "other", "domain": "business", "title": "Other", "requirements": REQUIREMENTS,
             "diagram": DIAGRAM.model_dump(mode="json")}
    extra = [variant("test", n).model_copy(update={"id": f"other-{n:03d}", "base_id": "other"}).model_dump(mode="json")
             for n in range(2)]
    with Session(engine) as session:
        load_dataset([other], extra, session=session)
    assert main(["eval", "--model", "checker", "--split", "test", "--limit", "3", "--spread"]) == 0
    capsys.readouterr()
    with Session(engine) as session:
        done = sorted(session.exec(select(TraceRow.variant_id).where(TraceRow.model_id == "checker")))
    assert done == ["company_small-000", "company_small-001", "other-000"]
    assert main(["eval", "--compare", "checker"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()[-2:]] == [
        ["company_small", "(2)"], ["other", "(1)"]]


def test_a_run_generates_in_the_dtype_it_trained_in(tmp_path):
    from r2ta.evaluation import generation_dtype, run_generation_dtype

    run = _fake_run(tmp_path)
    assert run_generation_dtype(run) is None  # a status without precision: the backend's default
    for precision, kind, dtype in (("bf16", "cpu", "bfloat16"), ("fp32", "cpu", None), ("bf16", "gpu", None),
                                   ("fp16", "gpu", None)):
        jobs.write_status(run, precision=precision, hardware={"kind": kind})
        assert run_generation_dtype(run) == dtype == generation_dtype(precision, kind)
    (run / "status.json").write_text("{not json")
    assert run_generation_dtype(tmp_path / "no-such-run") is None and run_generation_dtype(run) is None


def test_the_model_a_run_started_from_is_found_on_this_machine_or_named_missing(tmp_path, monkeypatch, engine):
    import huggingface_hub.constants

    from r2ta.evaluation import base_model_id, base_model_name, run_base_model

    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    assert base_model_name("embedded:smollm2-135m-instruct") == "embedded"
    assert base_model_id("embedded:smollm2-135m-instruct", "bfloat16") == "smollm2-135m-instruct@bfloat16"
    assert base_model_name("builtin:tiny-llama") is None  # not built on this machine yet
    tiny = tmp_path / "data" / "models" / "tiny-llama"
    tiny.mkdir(parents=True)
    (tiny / "config.json").write_text("{}")
    assert base_model_name("builtin:tiny-llama") == str(tiny.resolve())
    assert base_model_id("builtin:tiny-llama") == "models/tiny-llama"  # what evaluating that folder stores
    assert resolve_model(base_model_name("builtin:tiny-llama")).model_id == "models/tiny-llama"
    for gone in ("Qwen/Qwen2.5-0.5B-Instruct", "", str(tmp_path / "nothing"), "embedded:other-model"):
        assert base_model_name(gone) is None and base_model_id(gone) is None
        assert eval_jobs.base_answers_missing(gone, None, 3, engine=engine) == 0
    run = _fake_run(tmp_path)
    jobs.write_status(run, base_model="builtin:tiny-llama")
    assert run_base_model(run) == str(tiny.resolve())
    # what the evaluation after a run generates for the base beside the run's two models
    assert eval_jobs.base_answers_missing("builtin:tiny-llama", None, 3, engine=engine) == 3
    evaluate(QueuedBackend([ONLY_FK] * 2, "models/tiny-llama"), split="test", limit=2, engine=engine)
    assert eval_jobs.base_answers_missing("builtin:tiny-llama", None, 3, engine=engine) == 1
    # under a budget its two 5-token answers do not fit, the evaluation would answer them again too
    assert eval_jobs.base_answers_missing("builtin:tiny-llama", None, 3, engine=engine, max_new_tokens=4) == 3
    assert eval_jobs.base_answers_missing("builtin:tiny-llama", "bfloat16", 3, engine=engine) == 3
    assert eval_jobs.base_answers_missing("builtin:tiny-llama", None, None, engine=engine) == 2  # all 4 test


def test_a_model_hub_id_downloaded_here_is_evaluated_from_the_cache_under_its_id(tmp_path, monkeypatch, engine):
    """A recipe that trains from a hub id (the GPU recipe's Qwen) downloads it into the Hugging Face cache; the
    evaluation after the run then scores that base model too, loaded from the cache, stored under the hub id."""
    import huggingface_hub.constants

    from r2ta.evaluation import base_model_id, base_model_name, hub_snapshot, run_base_model
    from training.tiny import ensure_tiny_llama

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert hub_snapshot("acme/tiny-chat") is None and base_model_name("acme/tiny-chat") is None  # not downloaded
    # the cache's layout: refs/main names the snapshot that holds the files
    repo = cache / "models--acme--tiny-chat"
    snapshot = ensure_tiny_llama(repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert hub_snapshot("acme/tiny-chat") == snapshot
    assert base_model_name("acme/tiny-chat") == "acme/tiny-chat"
    assert base_model_id("acme/tiny-chat", "bfloat16") == "acme/tiny-chat@bfloat16"
    spec = resolve_model("acme/tiny-chat")
    assert (spec.kind, spec.model_id, spec.model_path) == ("path", "acme/tiny-chat", snapshot)
    for not_hub in ("acme/never-downloaded", "acme", "../acme/tiny-chat", "acme/tiny-chat/extra", "<b>/x"):
        assert hub_snapshot(not_hub) is None and base_model_name(not_hub) is None
    with pytest.raises(EvaluationError, match="a model hub id in this machine's Hugging Face cache"):
        resolve_model("acme/never-downloaded")
    assert eval_jobs.base_answers_missing("acme/tiny-chat", None, 2, engine=engine) == 2
    outcome = evaluate("acme/tiny-chat", split="test", limit=2, max_new_tokens=4, engine=engine)  # the real model
    assert outcome.model_id == "acme/tiny-chat" and outcome.generated == 2
    assert eval_jobs.base_answers_missing("acme/tiny-chat", None, 2, engine=engine, max_new_tokens=4) == 0
    assert eval_jobs.base_answers_missing("acme/tiny-chat", None, 2, engine=engine) == 2  # cut at 4: 256 differs
    run = _fake_run(tmp_path)
    jobs.write_status(run, base_model="acme/tiny-chat")
    assert run_base_model(run) == "acme/tiny-chat"  # so the evaluation after the run scores it beside the run's


def test_a_run_is_found_with_its_evaluations_in_its_own_dtype(tmp_path, engine):
    run = _fake_run(tmp_path)
    jobs.write_status(run, precision="bf16", hardware={"kind": "cpu"})
    final = run_model_id(run, "sft+dpo")
    evaluate(QueuedBackend([ONLY_FK] * 2, final), split="test", limit=2, engine=engine)
    assert run_evaluations(run, engine=engine)["sft+dpo"].model_id == final  # only the default's: shown
    evaluate(QueuedBackend([CORRECT_TRACE] * 2, final + "@bfloat16"), split="test", limit=2, engine=engine)
    found = run_evaluations(run, engine=engine)
    assert list(found) == ["sft+dpo"] and found["sft+dpo"].model_id == final + "@bfloat16"  # the run's own wins
    jobs.write_status(run, precision="fp32")
    assert run_evaluations(run, engine=engine)["sft+dpo"].model_id == final


def test_eval_job_status_marks_a_dead_process_failed(tmp_path):
    run = _fake_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    eval_jobs.write_eval_status(run, status=eval_jobs.RUNNING, pid=proc.pid, pid_start=12345)
    status = eval_jobs.read_eval_status(run)
    assert status["status"] == eval_jobs.FAILED and "ended without a result" in status["error"]


def test_only_a_succeeded_run_can_be_evaluated(tmp_path):
    run = _fake_run(tmp_path)
    (run / "status.json").write_text(json.dumps({"status": "failed", "stage": "sft", "error": "boom"}))
    with pytest.raises(Exception, match="has not succeeded"):
        eval_jobs.start_run_evaluation(run)
    assert eval_jobs.read_eval_status(run) == {}


def _tiny_data(engine, tmp_path) -> Path:
    """Reviewed rows exported as sft.jsonl / dpo.jsonl in ``tmp_path``; the tiny recipe with room for them."""
    reason(QueuedBackend([ONLY_FK] * 3, "base"), split="train", engine=engine)
    refine(model_id="base", split="train", engine=engine)
    bulk_accept(model_id="base", split="train", engine=engine)
    from r2ta.pairs import write_rows

    write_rows(export_rows("sft", engine=engine).rows, tmp_path / "sft.jsonl")
    write_rows(export_rows("dpo", engine=engine).rows, tmp_path / "dpo.jsonl")
    recipe = tmp_path / "tiny-long.yaml"  # the tiny tokenizer spends a token per character: longer rows
    recipe.write_text((Path(jobs.RECIPES_DIR) / "tiny-cpu.yaml").read_text().replace("max_length: 2048", "max_length: 6000"))
    return recipe


def _train_and_evaluate_tiny(engine, tmp_path, **kwargs) -> tuple[Path, dict]:
    """The Train page's button on the tiny recipe (rows made longer for its character tokenizer), waited for."""
    recipe = _tiny_data(engine, tmp_path)
    run = eval_jobs.start_training_with_evaluation(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe,
                                                   limit=2, max_new_tokens=8, max_steps=1, **kwargs)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = eval_jobs.read_eval_status(run)
        if status.get("status") in eval_jobs.FINISHED:
            break
        time.sleep(1)
    assert jobs.read_progress(run).state == jobs.SUCCEEDED, jobs.read_log(run)
    assert status["status"] == eval_jobs.SUCCEEDED, eval_jobs.read_eval_log(run)
    return run, status


@pytest.mark.slow
def test_tiny_run_is_trained_then_evaluated_out_of_process(engine, tmp_path, monkeypatch):
    """The Train page's flow on the tiny recipe: supervisor trains, then evaluates both stages, linked to the run."""
    run, status = _train_and_evaluate_tiny(engine, tmp_path)
    with Session(engine) as session:
        rows = {e.model_id: e for e in session.exec(select(EvaluationRow))}
    for stage in ("sft", "sft+dpo"):
        row = rows[run_model_id(run, stage)]
        assert row.n_variants == 2 and row.run_id is not None
        assert row.id == status["evaluations"][stage]
    # then the model it started from, on the same variants in the same dtype (tiny-cpu: fp32), not linked to it
    base = rows["models/tiny-llama"]
    assert base.n_variants == 2 and base.run_id is None and base.id == status["evaluations"]["base"]
    assert status["models"] == ["sft", "sft+dpo", "base"] and status["base_pending"] == 2 and status["dtype"] is None
    assert status["allocator"] == ("tcmalloc" if jobs.allocator_env() else "glibc malloc")  # as a training run
    assert {stage: g["variants"] for stage, g in status["generated"].items()} == {"sft": 2, "sft+dpo": 2, "base": 2}
    # each model's load is recorded apart from its answers' seconds: once a model, not in each answer
    assert all(g["load_seconds"] > 0 and g["seconds"] > 0 for g in status["generated"].values())
    from r2ta.train_view import run_comparison

    assert [r["model"] for r in run_comparison(run, engine=engine)] == ["base (before training)", "SFT", "SFT+DPO",
                                                                       "the checker alone"]
    assert rows["checker"].id == status["checker_evaluation"] and rows["checker"].n_variants == 2
    # what the job wrote is what the next run's estimate reads (r2ta.timing)
    from r2ta import timing

    assert status["stage_started_at"] and status["done"] == status["total"] == 2
    rates = timing.run_rates(run)
    assert rates is not None and rates.eval_seconds_per_variant is not None and rates.eval_seconds_per_variant >= 0
    # evaluated again (the Train page's "Evaluate again", r2ta eval --pending): every answer is reused, and the
    # seconds the first evaluation took stay the run's rate
    assert eval_jobs.evaluate_run(run, split="test", limit=2, max_new_tokens=8) == 0
    again = eval_jobs.read_eval_status(run)
    assert again["generated"] == status["generated"] and again["checker_evaluation"] > status["checker_evaluation"]
    assert timing.run_rates(run).eval_seconds_per_variant == rates.eval_seconds_per_variant
    # under a budget that grows with the diagram (the Train page's "More tokens a construct"): the trained models
    # answer again, since their answers were cut at 8; the base model keeps its budget alone, and its answers
    assert eval_jobs.evaluate_run(run, split="test", limit=2, max_new_tokens=8, tokens_per_construct=2) == 0
    with Session(engine) as session:
        traces = {m: session.exec(select(TraceRow).where(TraceRow.model_id == m).order_by(TraceRow.id)).all()
                  for m in (run_model_id(run, "sft"), run_model_id(run, "sft+dpo"), "models/tiny-llama")}
    sft, final, base = traces.values()
    assert len(sft) == len(final) == 4 and len(base) == 2
    assert all("generation stopped at max_new_tokens (18): the output is cut off" in t.parse_errors for t in sft[2:])


@pytest.mark.slow
@pytest.mark.skipif(not __import__("training.hardware", fromlist=["x"]).cpu_has_native_bf16(),
                    reason="bf16 training on a CPU needs one with AMX or AVX512-BF16")
def test_a_bf16_run_on_a_cpu_is_evaluated_in_bf16_beside_the_base_in_bf16(engine, tmp_path):
    """A run trained in bf16 on a CPU generates in bf16 (1.6-1.8x fp32's speed there): its models' evaluations are
    stored as @bfloat16 and linked to the run, the base model's beside them in the same dtype."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the run trains on the GPU")
    run, status = _train_and_evaluate_tiny(engine, tmp_path, precision="bf16")
    assert jobs.read_status(run)["precision"] == "bf16" and status["dtype"] == "bfloat16"
    with Session(engine) as session:
        rows = {e.model_id: e for e in session.exec(select(EvaluationRow))}
    for stage in ("sft", "sft+dpo"):
        row = rows[run_model_id(run, stage) + "@bfloat16"]
        assert row.run_id is not None and row.id == status["evaluations"][stage] and row.n_variants == 2
        assert run_evaluations(run, engine=engine)[stage].evaluation_id == row.id
    assert rows["models/tiny-llama@bfloat16"].id == status["evaluations"]["base"]
    assert not any(m in rows for m in (run_model_id(run, "sft"), "models/tiny-llama"))  # nothing in fp32


@pytest.mark.slow
def test_r2ta_train_evaluates_the_run_beside_its_base_and_prints_them_side_by_side(engine, tmp_path, capsys):
    """Every finished run is evaluated, from the command line too: r2ta train follows the training, then the
    evaluation, then prints base, SFT and SFT+DPO on the variants all three answered."""
    recipe = _tiny_data(engine, tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--sft", str(tmp_path / "sft.jsonl"), "--dpo", str(tmp_path / "dpo.jsonl"), "--recipe",
                 str(recipe), "--max-steps", "1", "--no-merge", "--run-dir", str(run), "--eval-limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "evaluation: afterwards, on the first 2 test variants" in out
    assert "evaluation on the 2 test variants all of them answered:" in out
    table = out.split("all of them answered:")[1].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["base", "SFT", "SFT+DPO"]
    assert table[2].split()[-1] == "models/tiny-llama" and table[4].split()[-1] == run_model_id(run, "sft+dpo")
    status = eval_jobs.read_eval_status(run)
    assert status["status"] == eval_jobs.SUCCEEDED and status["limit"] == 2 and not (run / "merged").exists()
    # --no-eval: none; a negative limit is refused before anything starts
    assert main(["train", "--sft", str(tmp_path / "sft.jsonl"), "--dpo", str(tmp_path / "dpo.jsonl"), "--recipe",
                 str(recipe), "--max-steps", "1", "--run-dir", str(tmp_path / "plain"), "--no-eval"]) == 0
    assert eval_jobs.read_eval_status(tmp_path / "plain") == {} and "evaluation" not in capsys.readouterr().out
    assert main(["train", "--sft", str(tmp_path / "sft.jsonl"), "--dpo", str(tmp_path / "dpo.jsonl"),
                 "--run-dir", str(tmp_path / "never"), "--eval-limit", "-1"]) == 2
    assert "--eval-limit must be 0" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_loop_stage_is_timed_and_a_failing_stage_names_its_log(tmp_path):
    from r2ta.loop import LoopError, run_stage

    ok = run_stage("help", ["--help"], tmp_path, threads=1, say=lambda line: None)
    assert ok.status == 0 and ok.wall_s > 0 and 10 < ok.peak_rss_mb < 2000
    assert "usage: r2ta" in (tmp_path / "help.log").read_text()
    with pytest.raises(LoopError, match=r"stage bad failed \(exit 2\); log .*bad.log"):
        run_stage("bad", ["eval", "--model", "no-such-model"], tmp_path, threads=None, say=lambda line: None)


def test_loop_recipe_overrides_are_checked_and_reproducible(tmp_path):
    import yaml

    from r2ta.errors import R2taError
    from r2ta.loop import LoopConfig, reproduce_command, write_recipe
    from training.recipe import RecipeError

    path = write_recipe("tiny-cpu", ["sft.num_train_epochs=3", "dpo.beta=0.2"], tmp_path / "r.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["sft"]["num_train_epochs"] == 3 and data["dpo"]["beta"] == 0.2
    with pytest.raises(RecipeError, match="learning_rat"):
        write_recipe("tiny-cpu", ["sft.learning_rat=1"], tmp_path / "bad.yaml")
    with pytest.raises(R2taError, match="SECTION.KEY=VALUE"):
        write_recipe("tiny-cpu", ["epochs=3"], tmp_path / "bad.yaml")
    command = reproduce_command(LoopConfig(train_limit=8, test_limit=16, overrides=["dpo.beta=0.2"], out=tmp_path))
    assert "r2ta loop --train-limit 8 --test-limit 16" in command and "--set dpo.beta=0.2" in command
    assert "--base-max-new-tokens" not in command


def test_loop_gives_the_base_model_its_own_token_budget(tmp_path):
    from r2ta.loop import LoopConfig, generation_args, reproduce_command

    config = LoopConfig(max_new_tokens=384, base_max_new_tokens=256, batch_size=4, out=tmp_path)
    assert generation_args(config, base=True) == ["--max-new-tokens", "256", "--batch-size", "4"]
    assert generation_args(config, base=False) == ["--max-new-tokens", "384", "--batch-size", "4"]
    assert "--max-new-tokens 384 --base-max-new-tokens 256" in reproduce_command(config)
    same = LoopConfig(max_new_tokens=384, out=tmp_path)
    assert generation_args(same, base=True) == generation_args(same, base=False)
    # the verdict budget goes to every generating stage when set, and into the command that reproduces the loop
    off = LoopConfig(verdict_tokens=0, out=tmp_path)
    assert generation_args(off, base=True)[-2:] == generation_args(off, base=False)[-2:] == ["--verdict-tokens", "0"]
    assert "--verdict-tokens 0" in reproduce_command(off) and "--verdict-tokens" not in reproduce_command(config)


def test_loop_gives_the_train_answers_their_own_budgets(tmp_path):
    # reason-train's answers feed no walk target and no planted pair: their budget and verdict budget can be cut
    # apart from eval-base's, and the command that reproduces the loop says so.
    from r2ta.loop import LoopConfig, generation_args, reproduce_command

    config = LoopConfig(max_new_tokens=384, base_max_new_tokens=256, reason_max_new_tokens=16, reason_verdict_tokens=0,
                        out=tmp_path)
    assert generation_args(config, base=True, train=True) == ["--max-new-tokens", "16", "--batch-size", "8",
                                                              "--verdict-tokens", "0"]
    assert generation_args(config, base=True) == ["--max-new-tokens", "256", "--batch-size", "8"]
    assert "--reason-max-new-tokens 16 --reason-verdict-tokens 0" in reproduce_command(config)
    # unset, the train answers take the base model's budgets, the verdict budget of every stage included
    plain = LoopConfig(max_new_tokens=384, base_max_new_tokens=256, verdict_tokens=64, out=tmp_path)
    assert generation_args(plain, base=True, train=True) == generation_args(plain, base=True)
    assert "--reason-" not in reproduce_command(plain)


def test_loop_gives_the_trained_models_a_budget_per_construct(tmp_path):
    # run450c: one 384-token budget cut 75 of 150 walks, most on the largest diagrams; the trained models'
    # answers may grow with the diagram, the base model's (no walk) keep theirs
    from r2ta.loop import LoopConfig, generation_args, reproduce_command

    config = LoopConfig(max_new_tokens=320, base_max_new_tokens=256, tokens_per_construct=20, out=tmp_path)
    assert generation_args(config, base=False) == ["--max-new-tokens", "320", "--batch-size", "8",
                                                   "--tokens-per-construct", "20"]
    assert "--tokens-per-construct" not in generation_args(config, base=True)
    assert "--tokens-per-construct" not in generation_args(config, base=True, train=True)
    assert "--max-new-tokens 320 --base-max-new-tokens 256 --tokens-per-construct 20" in reproduce_command(config)
    assert "--tokens-per-construct" not in reproduce_command(LoopConfig(out=tmp_path))


def test_loop_spread_reaches_the_reason_stage_and_the_reproduce_command(tmp_path, monkeypatch):
    # --spread changes which train variants the base model reasons about; the eval stages keep id order.
    import types

    import r2ta.backends
    import r2ta.loop as loop

    seen = []

    class Stop(Exception):
        pass

    def fake_stage(name, argv, out, threads, say):
        seen.append((name, argv))
        raise Stop

    monkeypatch.setattr(loop, "run_stage", fake_stage)
    monkeypatch.setattr(loop, "variant_counts", lambda engine=None: {"train": 9, "test": 9})
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name=None, **kw: types.SimpleNamespace(id="base"))
    for spread in (True, False):
        seen.clear()
        config = loop.LoopConfig(train_limit=12, spread=spread, out=tmp_path / str(spread), base_max_new_tokens=256,
                                 reason_max_new_tokens=16 if spread else None)
        with pytest.raises(Stop):
            loop.run_loop(config, say=lambda line: None)
        name, argv = seen[0]
        assert name == "reason-train" and argv[argv.index("--limit") + 1] == "12"
        assert ("--spread" in argv) is spread
        assert argv[argv.index("--max-new-tokens") + 1] == ("16" if spread else "256")  # the train answers' own budget
        assert ("--train-limit 12 --spread" in loop.reproduce_command(config)) is spread


def test_loop_auditor_reaches_the_refine_stage_and_the_reproduce_command(tmp_path, monkeypatch):
    import types

    import r2ta.backends
    import r2ta.loop as loop

    seen = []

    class Stop(Exception):
        pass

    def fake_stage(name, argv, out, threads, say):
        seen.append((name, argv))
        if name == "refine":
            raise Stop

    monkeypatch.setattr(loop, "run_stage", fake_stage)
    monkeypatch.setattr(loop, "variant_counts", lambda engine=None: {"train": 9, "test": 9})
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name=None, **kw: types.SimpleNamespace(id="base"))
    for auditor in ("walk", "evidence", "deterministic"):
        seen.clear()
        config = loop.LoopConfig(train_limit=4, auditor=auditor, out=tmp_path / auditor)
        with pytest.raises(Stop):
            loop.run_loop(config, say=lambda line: None)
        name, argv = seen[-1]
        assert name == "refine" and argv[argv.index("--auditor") + 1] == auditor
        assert (f"--auditor {auditor}" in loop.reproduce_command(config)) is (auditor != "deterministic")
        assert "--auditor deterministic" not in loop.reproduce_command(config)


def test_scores_per_base_schema_show_which_schemas_a_model_knows(engine):
    from r2ta.evaluation import format_by_schema, schema_rows, variant_schemas
    from r2ta.metrics import EvalItem, evaluate as score

    key = Mistake(category="missing_key", elements=["EMPLOYEE"], explanation="no key")
    other = Mistake(category="cardinality", elements=["WORKS_FOR"], explanation="1:N")
    # v1, v2 of schema a; v3 of schema b. "sft" is right on a, invalid on b; the checker is valid everywhere.
    items = {
        "sft": [EvalItem("v1", [key], [key]), EvalItem("v2", [other], [key]), EvalItem("v3", [], [key], valid=False)],
        "checker": [EvalItem("v1", [], [key]), EvalItem("v2", [], [key]), EvalItem("v3", [key], [key])],
    }
    reports = {label: score(rows) for label, rows in items.items()}
    rows = schema_rows(reports, {"v1": "a", "v2": "a", "v3": "b"})
    got = {(r["base schema"], r["model"]): r for r in rows}
    assert list(got) == [("a", "sft"), ("a", "checker"), ("b", "sft"), ("b", "checker")]
    assert got["a", "sft"]["variants"] == 2 and got["a", "sft"]["format validity"] == 1.0
    assert (got["a", "sft"]["micro P"], got["a", "sft"]["micro R"]) == (0.5, 0.5) and got["a", "sft"]["predicted"] == 2
    assert got["b", "sft"]["format validity"] == 0.0 and got["b", "sft"]["micro F1"] == 0.0
    assert got["b", "checker"]["micro F1"] == 1.0 and got["a", "checker"]["micro F1"] == 0.0
    text = format_by_schema(rows).splitlines()
    assert text[1].split() == ["a", "(2)", "1.00", "/", "0.50", "1.00", "/", "0.00"]
    assert text[2].split() == ["b", "(1)", "0.00", "/", "0.00", "1.00", "/", "1.00"]
    # the map comes from the store
    assert variant_schemas(["company_small-000", "nope"], engine=engine) == {"company_small-000": "company_small"}
    assert variant_schemas([], engine=engine) == {}


def test_cli_refuses_a_negative_verdict_budget(capsys):
    from r2ta.cli import main

    for argv in (["reason", "--split", "test"], ["eval", "--model", "checker"], ["loop"]):
        assert main([*argv, "--verdict-tokens", "-1"]) != 0
        assert "--verdict-tokens must be 0 (never) or more" in capsys.readouterr().err
    # the train answers' own budgets are checked the same way, before any stage runs
    assert main(["loop", "--reason-verdict-tokens", "-1"]) != 0
    assert "--reason-verdict-tokens must be 0 (never) or more" in capsys.readouterr().err
    assert main(["loop", "--reason-max-new-tokens", "0"]) != 0
    assert "--reason-max-new-tokens must be at least 1" in capsys.readouterr().err
    for argv in (["reason", "--split", "test"], ["eval", "--model", "checker"], ["loop"]):
        assert main([*argv, "--tokens-per-construct", "-4"]) != 0
        assert "--tokens-per-construct must be 0 (one budget for all) or more" in capsys.readouterr().err


def test_side_by_side_says_n_a_for_a_rate_with_nothing_to_count(engine):
    # A model that wrote only garbage predicted nothing and named nothing: its hallucination and
    # grounding rates are undefined, and the table must not print them as a perfect 0.000.
    garbage = evaluate(QueuedBackend(["lorem ipsum"] * 2, "garbage"), split="test", limit=2, engine=engine)
    good = evaluate(QueuedBackend([CORRECT_TRACE] * 2, "good"), split="test", limit=2, engine=engine)
    assert garbage.report.predicted == 0 and garbage.report.references == 0
    reports, _ = rescore({"garbage": garbage.evaluation_id, "good": good.evaluation_id}, engine=engine)
    table = format_side_by_side(reports)
    hallucination = next(line for line in table.splitlines() if line.lower().startswith("hallucination"))
    grounding = next(line for line in table.splitlines() if line.lower().startswith("grounding"))
    assert hallucination.split()[-2:] == ["n/a", "0.000"]
    assert grounding.split()[-2] == "n/a" and grounding.split()[-1] != "n/a"


def test_evaluate_page_rows_leave_a_rate_with_nothing_to_count_empty(engine):
    # The Evaluate page's table and bars read summary_rows/summary_figure: the same n/a, as None.
    garbage = evaluate(QueuedBackend(["lorem ipsum"] * 2, "garbage"), split="test", limit=2, engine=engine)
    good = evaluate(QueuedBackend([CORRECT_TRACE] * 2, "good"), split="test", limit=2, engine=engine)
    reports, _ = rescore({"garbage": garbage.evaluation_id, "good": good.evaluation_id}, engine=engine)
    rows = {row["model"]: row for row in summary_rows(reports)}
    assert rows["garbage"]["hallucination"] is None and rows["garbage"]["grounding"] is None
    assert rows["good"]["hallucination"] == 0.0 and rows["good"]["grounding"] is not None
    bars = {trace.name: trace.y for trace in summary_figure(reports).data}
    assert bars["garbage"][2] is None and bars["good"][2] == 0.0


def test_loop_knows_an_empty_store_and_reproduces_its_negatives(engine, tmp_path):
    # A fresh R2TA_DATA_DIR has no variants: the loop must seed it rather than "reason" about nothing
    # and fail later with "no SFT rows".
    from db.engine import get_engine, init_db
    from r2ta.loop import LoopConfig, reproduce_command, variant_counts

    assert variant_counts(engine) == {"test": 4, "train": 3}
    empty = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    init_db(empty)
    assert variant_counts(empty) == {}
    assert "--negatives planted" in reproduce_command(LoopConfig(negatives="planted", out=tmp_path))
    assert "--negatives" not in reproduce_command(LoopConfig(out=tmp_path))


def test_dtype_reaches_a_local_model_and_is_refused_for_a_server():
    from pathlib import Path

    from r2ta.evaluation import EvaluationError, ModelSpec, evaluate, make_backend_for

    spec = ModelSpec("run", "run7:sft", model_path=Path("/nowhere"), run_dir=Path("/nowhere"), stage="sft")
    assert make_backend_for(spec, dtype="bfloat16").config.dtype == "bfloat16"  # loaded lazily: nothing read
    assert make_backend_for(spec, dtype=None).config.dtype == "auto"
    # traces of another dtype than the default (float32 on this CPU) are kept apart; the default's are not
    assert make_backend_for(spec, dtype="bfloat16", device="cpu").id == "run7:sft@bfloat16"
    assert make_backend_for(spec, dtype="bfloat16", device="cpu", verdict_grammar=True).id == "run7:sft@bfloat16+grammar"
    assert make_backend_for(spec, dtype="float32", device="cpu").id == "run7:sft"
    assert make_backend_for(spec, dtype="auto", device="cpu").id == "run7:sft"
    with pytest.raises(EvaluationError, match="--dtype is the setting of a model loaded here"):
        evaluate("some-served-model", backend="vllm", dtype="bfloat16")
    with pytest.raises(EvaluationError, match="--dtype"):
        evaluate(QueuedBackend([ONLY_FK], "base"), dtype="bfloat16")


def test_another_dtype_is_stored_under_its_own_id_and_not_linked_to_the_run(engine, tmp_path, monkeypatch):
    """A run evaluated in bfloat16 on a CPU neither reuses the float32 traces nor replaces the run's evaluation."""
    import r2ta.evaluation as evaluation

    run = _fake_run(tmp_path / "runs")
    for stage in ("sft", "dpo"):  # the run's training files (empty) for syncing it into the database
        (tmp_path / f"{stage}.jsonl").write_text("")
    request = json.loads((run / "request.json").read_text())
    (run / "request.json").write_text(json.dumps({**request, "sft_file": str(tmp_path / "sft.jsonl"),
                                                  "dpo_file": str(tmp_path / "dpo.jsonl")}))
    made = []

    class Local(QueuedBackend):
        def __init__(self, model_id, dtype):
            super().__init__([CORRECT_TRACE] * 2, model_id)
            self.dtype_suffix = "" if dtype in (None, "auto", "float32") else f"@{dtype}"
            self._id = model_id + self.dtype_suffix

        def close(self):
            pass

    def fake_backend(spec, backend=None, **overrides):
        made.append(Local(spec.model_id, overrides.get("dtype")))
        return made[-1]

    monkeypatch.setattr(evaluation, "make_backend_for", fake_backend)
    plain = evaluate(str(run), split="test", limit=2, engine=engine)
    bf16 = evaluate(str(run), split="test", limit=2, engine=engine, dtype="bfloat16")
    assert plain.run_id is not None and bf16.run_id is None
    assert bf16.model_id == plain.model_id + "@bfloat16"
    assert plain.generated == 2 and bf16.generated == 2  # its own traces, not the float32 ones again
    with Session(engine) as session:
        linked = session.get(EvaluationRow, plain.evaluation_id).run_id
        assert linked == plain.run_id and session.get(EvaluationRow, bf16.evaluation_id).run_id is None
        assert {t.model_id for t in session.exec(select(TraceRow))} == {plain.model_id, bf16.model_id}


def test_verdict_grammar_gives_the_models_their_own_ids_and_reaches_the_loops_eval_stages(tmp_path, monkeypatch):
    import types
    from pathlib import Path

    import r2ta.backends
    import r2ta.loop as loop
    from r2ta import jobs
    from r2ta.evaluation import EvaluationError, ModelSpec, evaluate, make_backend_for

    spec = ModelSpec("run", "run7:sft", model_path=Path("/nowhere"), run_dir=Path("/nowhere"), stage="sft")
    assert make_backend_for(spec, verdict_grammar=True).id == "run7:sft+grammar"
    assert make_backend_for(spec, verdict_grammar=None).id == "run7:sft"
    with pytest.raises(EvaluationError, match="checker writes its verdicts itself"):
        evaluate("checker", verdict_grammar=True)
    with pytest.raises(EvaluationError, match="only makes sense with the verdict grammar"):
        evaluate("checker", reuse_answers=True)

    seen, ids = [], {}

    def fake_stage(name, argv, out, threads, say):
        seen.append((name, argv))
        return loop.StageResult(name, " ".join(argv), 0.0, None, 0, "")

    monkeypatch.setattr(loop, "run_stage", fake_stage)
    monkeypatch.setattr(loop, "variant_counts", lambda engine=None: {"train": 9, "test": 9})
    monkeypatch.setattr(loop, "bulk_accept", lambda **kw: 0)
    monkeypatch.setattr(loop, "side_by_side", lambda model_ids, config: ids.update(model_ids) or "table")
    monkeypatch.setattr(jobs, "read_status", lambda run_dir: {"status": jobs.SUCCEEDED, "metrics": {}})
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name=None, **kw: types.SimpleNamespace(id="base"))
    config = loop.LoopConfig(train_limit=4, verdict_grammar=True, out=tmp_path / "loop")
    assert loop.run_loop(config, say=lambda line: None) == "table"
    stages = dict(seen)
    assert "--verdict-grammar" not in stages["reason-train"] and "--verdict-grammar" not in stages["eval-checker"]
    for m in ("sft+dpo", "sft", "base"):  # each model plain, then the same answers under the grammar
        assert "--verdict-grammar" not in stages[f"eval-{m}"]
        assert stages[f"eval-{m}+grammar"][-2:] == ["--verdict-grammar", "--reuse-answers"]
        assert stages[f"eval-{m}+grammar"][:3] == stages[f"eval-{m}"][:3]
    assert [n for n, _ in seen].index("eval-base") < [n for n, _ in seen].index("eval-sft+dpo+grammar")
    assert ids["base+grammar"] == "base+grammar" and ids["sft+grammar"] == ids["sft"] + "+grammar"
    assert ids["checker"] == "checker" and len(ids) == 7
    assert "--verdict-grammar" in loop.reproduce_command(config)
    # a loop's --set writes a recipe file named after the recipe it changes, which names the run's recipe
    seen.clear()
    changed = loop.LoopConfig(train_limit=4, recipe="tiny-cpu", overrides=["dpo.beta=0.3"], out=tmp_path / "set")
    assert loop.run_loop(changed, say=lambda line: None) == "table"
    train = dict(seen)["train"]
    assert train[train.index("--recipe") + 1] == str(tmp_path / "set" / "tiny-cpu-loop.yaml")


def test_loop_generates_in_the_dtype_asked_and_compares_the_ids_it_stores(tmp_path, monkeypatch):
    import types

    import r2ta.backends
    import r2ta.loop as loop
    from r2ta import jobs

    seen, ids = [], {}
    monkeypatch.setattr(loop, "run_stage", lambda name, argv, out, threads, say: seen.append((name, argv))
                        or loop.StageResult(name, " ".join(argv), 0.0, None, 0, ""))
    monkeypatch.setattr(loop, "variant_counts", lambda engine=None: {"train": 9, "test": 9})
    monkeypatch.setattr(loop, "bulk_accept", lambda **kw: 0)
    monkeypatch.setattr(loop, "side_by_side", lambda model_ids, config: ids.update(model_ids) or "table")
    monkeypatch.setattr(jobs, "read_status", lambda run_dir: {"status": jobs.SUCCEEDED, "metrics": {}})
    real_get_backend = r2ta.backends.get_backend
    monkeypatch.setattr(r2ta.backends, "get_backend",
                        lambda name=None, **kw: real_get_backend(name, device="cpu", **kw))  # this CPU's default
    config = loop.LoopConfig(train_limit=4, dtype="bfloat16", verdict_grammar=True, out=tmp_path / "loop")
    assert loop.run_loop(config, say=lambda line: None) == "table"
    stages = dict(seen)
    for name in ("reason-train", "eval-base", "eval-sft", "eval-sft+dpo", "eval-sft+grammar"):
        assert stages[name][stages[name].index("--dtype") + 1] == "bfloat16", name
    assert "--dtype" not in stages["eval-checker"] and "--dtype" not in stages["train"]
    assert stages["refine"][stages["refine"].index("--model-id") + 1] == ids["base"]
    assert ids["base"] == "smollm2-135m-instruct@bfloat16" and ids["sft"].endswith(":sft@bfloat16")
    assert ids["sft+grammar"] == ids["sft"] + "+grammar" and ids["checker"] == "checker"
    assert "--dtype bfloat16" in loop.reproduce_command(config)

    cfg = tmp_path / "backends.yaml"
    cfg.write_text("server:\n  kind: openai\n  base_url: http://127.0.0.1:9/v1\n  model: m\n")
    monkeypatch.setenv("R2TA_BACKENDS_FILE", str(cfg))
    with pytest.raises(loop.LoopError, match="base backend 'server' is a server"):
        loop.run_loop(loop.LoopConfig(dtype="bfloat16", base_backend="server", out=tmp_path / "l2"), say=print)


def test_the_budget_defaults_the_cli_help_names_are_the_ones_used():
    # r2ta eval --help said 384 tokens an answer while evaluations took 256
    from r2ta.cli import build_parser
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None))
    for name in ("eval", "reason"):
        text = " ".join(commands.choices[name].format_help().split())
        assert f"token budget per answer (default: {DEFAULT_MAX_NEW_TOKENS})" in text, name
        assert f"its verdict (default: {DEFAULT_VERDICT_TOKENS};" in text, name
