"""Generation, refinement, export and scoring through the store (SQLite in a temp folder)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import time

import pytest
from sqlmodel import Session, select

from db.engine import get_engine, init_db
from db.loading import load_dataset
from db.queries import create_review, get_proposal, list_evaluation_results, list_traces
from db.models import ProposalRow
from r2ta.audit import LLMRefiner
from r2ta.backends import Backend, BackendConfig, Generation
from r2ta.cli import main
from r2ta.pairs import read_rows
from r2ta.pipeline import answers_to_write, evaluate_model, export_rows, reason, refine
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS, variant

LINES = CORRECT_TRACE.split("\n")
MISSES_PARTICIPATION = "\n".join(LINES[:3] + LINES[4:7])
GARBAGE = "The requirements are:\n1. Each employee has a name.\n1. Each employee has a name."


class QueuedBackend(Backend):
    """A fake backend (unit tests only): answers from a queue, optionally failing on call number ``fail_on``."""

    def __init__(self, outputs, model_id="fake-135m", fail_on=None):
        super().__init__(BackendConfig(kind="local", model="fake", batch_size=2))
        self.outputs, self._id, self.fail_on, self.calls = list(outputs), model_id, fail_on, 0

    @property
    def id(self):
        return self._id

    def generate(self, prompts, max_new_tokens=512, temperature=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of a run
        out = []
        for _ in prompts:
            text, reason = self.outputs.pop(0)
            out.append(Generation(text=text, prompt_tokens=100, completion_tokens=len(text.split()), latency_s=0.01, finish_reason=reason))
        return out


@pytest.fixture
def engine(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    base = {"id": "company_small", "domain": "business", "title": "Company", "requirements": REQUIREMENTS, "diagram": DIAGRAM.model_dump(mode="json")}
    variants = [variant("test", n).model_dump(mode="json") for n in range(3)] + [variant("train", n).model_dump(mode="json") for n in range(3, 5)]
    with Session(engine) as session:
        load_dataset([base], variants, session=session)
    return engine


def test_reason_stores_every_output_garbage_included_and_resumes(engine):
    outputs = [(CORRECT_TRACE, "stop"), (GARBAGE, "stop"), (CORRECT_TRACE[:150], "length")]
    backend = QueuedBackend(outputs)
    seen = []
    report = reason(backend, split="test", engine=engine, progress=lambda d, t: seen.append((d, t)))
    assert (report.generated, report.valid, report.truncated, report.skipped) == (3, 1, 1, 0)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    with Session(engine) as session:
        traces = list_traces(session=session, model_id="fake-135m")
    assert [t.variant_id for t in traces] == ["company_small-000", "company_small-001", "company_small-002"]
    good, garbage, cut = traces
    assert good.raw_output == CORRECT_TRACE and good.parse_errors == [] and len(good.verdict) == 2 and len(good.steps) == 5
    assert good.prompt[-1]["content"].startswith("Requirements:\n" + REQUIREMENTS[:30])
    assert good.model_version == "prompt r2ta-v2" and good.completion_tokens > 0 and good.latency_s == 0.01
    assert garbage.raw_output == GARBAGE and garbage.verdict is None
    assert any("no 'VERDICT:' line" in e for e in garbage.parse_errors)
    assert any("max_new_tokens" in e for e in cut.parse_errors)
    # Nothing left to do: a second run generates nothing and calls no model.
    again = QueuedBackend([])
    assert reason(again, split="test", engine=engine).generated == 0 and again.calls == 0


def test_reason_leaves_the_models_load_out_of_its_seconds_and_says_it_apart(engine):
    """A local model loads on its first answer: that load is a model's once, not a part of each answer's time (a
    measurement of two answers with a 5-s load in their clock overstated the evaluation's time a variant)."""

    class Loading(QueuedBackend):
        def generate(self, prompts, max_new_tokens=512, temperature=None):
            if self.calls == 0:
                time.sleep(0.3)
                self.load_s += 0.3
            return super().generate(prompts, max_new_tokens, temperature)

    backend = Loading([(CORRECT_TRACE, "stop")] * 3)
    started = time.perf_counter()
    report = reason(backend, split="test", engine=engine)
    wall = time.perf_counter() - started
    assert report.load_s == pytest.approx(0.3)
    assert 0 <= report.seconds <= wall - 0.3
    assert "after loading the model in 0.3 s" in str(report)
    # a model already loaded (the second model call of a job): nothing is counted twice
    assert reason(Loading([]), split="test", engine=engine).load_s == 0.0


class ContinuingBackend(QueuedBackend):
    """A fake that can continue an answer (as a local model or vLLM can): a second queue answers prefixed calls."""

    def __init__(self, outputs, verdicts):
        super().__init__(outputs)
        self.verdicts, self.prefixed = list(verdicts), []

    @property
    def can_continue(self):
        return True

    def generate(self, prompts, max_new_tokens=512, temperature=None, *, prefixes=None, grammars=None):
        if prefixes is None:
            return super().generate(prompts, max_new_tokens, temperature)
        self.prefixed.append((prefixes, max_new_tokens))
        self.grammars = grammars
        finish = getattr(self, "verdict_finish", "stop")  # "length": each verdict ran to its budget
        return [Generation(text=self.verdicts.pop(0), prompt_tokens=150,
                           completion_tokens=max_new_tokens if finish == "length" else 12, latency_s=0.02,
                           finish_reason=finish) for _ in prompts]


def test_an_answer_without_a_verdict_gets_one_asked_for_and_the_trace_says_so(engine):
    steps_only = "\n".join(LINES[:5])  # five steps, then the budget ran out in the sixth line
    outputs = [(CORRECT_TRACE, "stop"), (steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")]
    backend = ContinuingBackend(outputs, verdicts=["MISTAKE: participation | WORKS_FOR, EMPLOYEE | Must be (1,1).",
                                                   "NONE"])
    report = reason(backend, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64)
    assert (report.generated, report.forced, report.valid, report.valid_unforced, report.truncated) == (3, 2, 3, 1, 1)
    assert "2 verdicts asked for (1 valid without)" in str(report)
    # only the answers without a verdict were continued (batch size 2: one per batch), from their complete
    # lines (a repeated last line dropped) plus "VERDICT:", with the verdict budget
    kept = GARBAGE.rsplit("\n", 1)[0] + "\n"
    assert backend.prefixed == [([steps_only + "\nVERDICT:\n"], 64), ([kept + "VERDICT:\n"], 64)]
    with Session(engine) as session:
        good, cut, garbage = list_traces(session=session, model_id="fake-135m")
    assert good.verdict_forced_at is None and good.raw_output == CORRECT_TRACE
    assert cut.raw_output == steps_only + "\nVERDICT:\nMISTAKE: participation | WORKS_FOR, EMPLOYEE | Must be (1,1)."
    assert cut.raw_output[: cut.verdict_forced_at] == steps_only + "\n"  # what the model wrote itself
    assert len(cut.steps) == 5 and [m["category"] for m in cut.verdict] == ["participation"]
    assert cut.completion_tokens == len((steps_only + "\nStep 6 [EMPLOY").split()) + 12
    assert any("max_new_tokens (300)" in e for e in cut.parse_errors)
    assert any("R2tA appended 'VERDICT:'" in e and "12 more tokens" in e for e in cut.parse_errors)
    assert garbage.raw_output == kept + "VERDICT:\nNONE" and garbage.verdict_forced_at == len(kept)
    # scoring counts them: every verdict parses, one of three without help
    report, evaluation_id = evaluate_model("fake-135m", engine=engine, store=True)
    assert (report.format_validity, report.verdicts_forced) == (1.0, 2)
    assert report.unforced_validity == pytest.approx(1 / 3)
    assert [v.forced for v in report.per_variant] == [False, True, True]
    # and so does a comparison, rescored from the stored per-variant results (the Evaluate page, r2ta eval --compare)
    from r2ta.evaluation import format_side_by_side, rescore

    again = rescore({"fake": evaluation_id}, engine=engine)[0]["fake"]
    assert (again.verdicts_forced, again.unforced_validity) == (2, report.unforced_validity)
    table = format_side_by_side({"fake": again})
    assert "verdicts asked for" in table and "validity, unforced" in table


def test_reused_answers_are_not_generated_again_only_their_asked_for_verdicts(engine):
    steps_only = "\n".join(LINES[:5])
    outputs = [(CORRECT_TRACE, "stop"), (steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")]
    plain = ContinuingBackend(outputs, verdicts=["NONE", "NONE"])
    reason(plain, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64)
    # the same model again, its verdicts now decoded otherwise (e.g. under the grammar): a new model id
    again = ContinuingBackend([], verdicts=["MISTAKE: participation | WORKS_FOR, EMPLOYEE | Must be (1,1).", "NONE"])
    again._id = "fake-135m+grammar"
    report = reason(again, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, reuse_answers="fake-135m")
    assert again.calls == 0  # no answer generated again
    kept = GARBAGE.rsplit("\n", 1)[0] + "\n"
    assert again.prefixed == [([steps_only + "\nVERDICT:\n"], 64), ([kept + "VERDICT:\n"], 64)]  # the same prefixes
    assert (report.generated, report.forced, report.truncated) == (3, 2, 1)
    with Session(engine) as session:
        before = list_traces(session=session, model_id="fake-135m")
        after = list_traces(session=session, model_id="fake-135m+grammar")
    assert after[0].raw_output == before[0].raw_output == CORRECT_TRACE and after[0].verdict_forced_at is None
    assert after[1].raw_output == steps_only + "\nVERDICT:\nMISTAKE: participation | WORKS_FOR, EMPLOYEE | Must be (1,1)."
    assert after[1].verdict_forced_at == before[1].verdict_forced_at
    assert any("max_new_tokens (300)" in e for e in after[1].parse_errors)  # why the answer stopped, kept
    assert all("answers reused from fake-135m" in t.model_version for t in after)
    with pytest.raises(ValueError, match="names the model whose traces"):
        reason(again, split="test", engine=engine, reuse_answers="fake-135m+grammar")


def test_under_the_grammar_an_own_verdict_is_decoded_again_and_still_counts_as_unforced(engine):
    steps_only = "\n".join(LINES[:5])
    outputs = [(CORRECT_TRACE, "stop"), (steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")]
    reason(ContinuingBackend(outputs, verdicts=["NONE", "NONE"]), split="test", engine=engine, max_new_tokens=300,
           verdict_tokens=64)
    again = ContinuingBackend([], verdicts=["NONE", "MISTAKE: participation | WORKS_FOR, EMPLOYEE | Must be (1,1).", "NONE"])
    again.config = again.config.model_copy(update={"verdict_grammar": True})
    again._id = "fake-135m+grammar"
    report = reason(again, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, reuse_answers="fake-135m")
    steps_before_verdict = CORRECT_TRACE.split("\nVERDICT:")[0] + "\nVERDICT:\n"
    # batch 2: the own verdict and the cut answer's asked-for one, then the garbage's asked-for one
    assert again.prefixed == [([steps_before_verdict, steps_only + "\nVERDICT:\n"], 64),
                              ([GARBAGE.rsplit("\n", 1)[0] + "\nVERDICT:\n"], 64)]
    assert (report.generated, report.forced, report.valid_unforced) == (3, 2, 1)
    assert len(again.grammars) == 1 and "EMPLOYEE" in again.grammars[0]  # each diagram's elements go along
    with Session(engine) as session:
        own = list_traces(session=session, model_id="fake-135m+grammar")[0]
    assert own.raw_output == steps_before_verdict + "NONE" != CORRECT_TRACE
    assert own.verdict_forced_at is None
    assert any("wrote 'VERDICT:' itself" in e and "under the verdict grammar, in 12 tokens" in e for e in own.parse_errors)
    # what another evaluation under the grammar would write again: a verdict decoded again is the verdict budget's
    # too, whether the model began it (the first) or R2tA asked for it (the other two); 12 tokens each, uncut
    def to_write(tokens):
        return answers_to_write("fake-135m+grammar", split="test", max_new_tokens=300, verdict_tokens=tokens,
                                engine=engine)

    assert [to_write(t) for t in (64, 12, 8, 0)] == [0, 0, 3, 3]  # 0: no verdict asked for leaves the model's own
    # a verdict decoded again that ran to its budget needs that very budget
    cut = ContinuingBackend([], verdicts=["NONE"] * 3)
    cut.config = again.config
    cut._id, cut.verdict_finish = "fake-135m+grammar", "length"
    report = reason(cut, split="test", engine=engine, max_new_tokens=300, verdict_tokens=8, rebudget=True,
                    reuse_answers="fake-135m")
    assert report.rewritten == 3
    with Session(engine) as session:
        own = [t for t in list_traces(session=session, model_id="fake-135m+grammar") if t.verdict_forced_at is None][-1]
    assert any(e.endswith("under the verdict grammar, in 8 tokens (cut at 8)") for e in own.parse_errors)
    assert [to_write(t) for t in (8, 12, 64)] == [0, 3, 3]


def test_verdicts_are_not_asked_for_when_switched_off_or_the_backend_cannot_continue(engine):
    outputs = [("\n".join(LINES[:5]), "length")] * 3
    off = ContinuingBackend(outputs, verdicts=[])
    report = reason(off, split="test", engine=engine, verdict_tokens=0)
    assert (report.forced, report.valid) == (0, 0) and off.prefixed == []
    with Session(engine) as session:
        assert all(t.verdict_forced_at is None for t in list_traces(session=session, model_id="fake-135m"))
    # QueuedBackend is a Backend that cannot continue an answer (like a chat API without prefill)
    report = reason(QueuedBackend(outputs, model_id="plain"), split="test", engine=engine)
    assert (report.generated, report.forced) == (3, 0)


def test_an_interrupted_run_keeps_what_it_finished_and_resumes(engine):
    backend = QueuedBackend([(CORRECT_TRACE, "stop")] * 2, fail_on=2)  # batch size 2: the second batch dies
    with pytest.raises(KeyboardInterrupt):
        reason(backend, split="test", engine=engine)
    with Session(engine) as session:
        assert len(list_traces(session=session, model_id="fake-135m")) == 2
    rest = QueuedBackend([(GARBAGE, "stop")])
    report = reason(rest, split="test", engine=engine)
    assert (report.generated, report.skipped) == (1, 2)
    # --limit takes the first N variants of the split: all done already.
    assert reason(QueuedBackend([]), split="test", limit=2, engine=engine).skipped == 2


def test_refine_stores_one_proposal_per_trace_once(engine):
    reason(QueuedBackend([(CORRECT_TRACE, "stop"), (MISSES_PARTICIPATION, "stop"), (GARBAGE, "stop")]), split="test", engine=engine)
    report = refine(engine=engine)
    assert (report.proposals, report.unchanged) == (3, 1)
    assert report.changes["inserted_step"] == 3 and report.changes["added_mistake"] == 3
    assert refine(engine=engine).proposals == 0  # already refined by this auditor
    with Session(engine) as session:
        proposals = list(session.exec(select(ProposalRow).order_by(ProposalRow.id)))
        assert [p.auditor_id for p in proposals] == ["deterministic-v1"] * 3
        assert proposals[0].changes == [] and proposals[0].status == "pending"
        assert [v["verdict"] for v in proposals[0].step_verdicts] == ["correct"] * 5
        assert [s["finding"] for s in proposals[1].inserted_steps] == ["participation"]
        assert {m["category"] for m in proposals[2].verdict} == {"participation", "foreign_key_attribute"}


def test_refine_walk_stores_its_own_proposals_beside_the_deterministic_ones(engine, capsys, monkeypatch):
    reason(QueuedBackend([(CORRECT_TRACE, "stop"), (GARBAGE, "stop"), (GARBAGE, "stop")]), split="test", engine=engine)
    assert refine(engine=engine).proposals == 3
    monkeypatch.setenv("R2TA_DATABASE_URL", str(engine.url))
    assert main(["refine", "--auditor", "walk"]) == 0  # its own auditor id: every trace is refined again
    assert "deterministic-walk-v1: 3 proposals stored (0 unchanged" in capsys.readouterr().out
    assert refine(auditor="walk", engine=engine).proposals == 0
    with Session(engine) as session:
        walks = list(session.exec(select(ProposalRow).where(ProposalRow.auditor_id == "deterministic-walk-v1")))
    assert len(walks) == 3
    # one step per diagram line (3 entities, 2 relationships), the two mistakes in place of their lines' ok
    assert [s["finding"] for s in walks[0].steps] == ["ok", "foreign_key_attribute", "ok", "participation", "ok"]
    assert [s["finding"] for s in walks[1].inserted_steps] == ["foreign_key_attribute", "participation"]
    with pytest.raises(ValueError, match="unknown auditor 'wolk'"):
        refine(auditor="wolk", engine=engine)
    assert main(["refine", "--auditor", "evidence"]) == 0  # the evidence walk: its own proposals again
    assert "deterministic-evidence-v1: 3 proposals stored" in capsys.readouterr().out
    with Session(engine) as session:
        evidence = list(session.exec(select(ProposalRow).where(ProposalRow.auditor_id == "deterministic-evidence-v1")))
    assert [s["finding"] for s in evidence[0].steps] == [s["finding"] for s in walks[0].steps]
    assert [s["text"].split(". ")[0] for s in evidence[0].steps] == ["key Dnumber", "key Ssn", "key Pnumber", "2 ends", "2 ends"]


def test_llm_refiner_through_the_pipeline_flags_disagreements(engine):
    reason(QueuedBackend([(MISSES_PARTICIPATION, "stop")] * 3), split="test", engine=engine)
    llm = QueuedBackend([(MISSES_PARTICIPATION, "stop"), (CORRECT_TRACE, "stop"), ("", "stop")], model_id="big-refiner")
    report = refine(auditor=LLMRefiner(llm), engine=engine)
    assert report.proposals == 3 and report.flagged == 2
    with Session(engine) as session:
        p1, p2, p3 = list(session.exec(select(ProposalRow).order_by(ProposalRow.id)))
    assert p1.auditor_id == "llm:big-refiner"
    assert any("misses a real mistake" in f for f in p1.flags)
    assert p2.flags == []
    assert any("does not parse cleanly: empty output" in f for f in p3.flags)


def _reason_refine_review(engine):
    """Traces for every variant (one that misses a mistake, the rest garbage), proposals, then :func:`_review_all`."""
    reason(QueuedBackend([(MISSES_PARTICIPATION, "stop"), (GARBAGE, "stop"), (GARBAGE, "stop")]), split="train", engine=engine)
    reason(QueuedBackend([(GARBAGE, "stop")] * 3), split="test", engine=engine)
    refine(engine=engine)
    _review_all(engine)


def _review_all(engine):
    """Accept proposal 1, edit proposal 2, reject proposal 3."""
    with Session(engine) as session:
        p1, p2, p3 = (get_proposal(i, session=session) for i in (1, 2, 3))
        create_review(session=session, proposal_id=1, reviewer="ana", decision="accept", expected_version=p1.version)
        edited = [dict(s, text="Edited by the teacher.") if s["finding"] == "participation" else s for s in p2.steps]
        create_review(session=session, proposal_id=2, reviewer="ben", decision="edit", expected_version=p2.version, steps=edited)
        create_review(session=session, proposal_id=3, reviewer="ana", decision="reject", expected_version=p3.version)


def test_export_sft_and_dpo_from_the_decisions_in_force(engine):
    _reason_refine_review(engine)
    sft = export_rows("sft", split="train", engine=engine)
    assert len(sft.rows) == 2 and sft.skipped == []
    accepted, edited = sft.rows
    assert accepted["provenance"]["decision"] == "accept" and accepted["provenance"]["reviewer"] == "ana"
    assert "-> participation" in accepted["messages"][-1]["content"]
    assert "Edited by the teacher. -> participation" in edited["messages"][-1]["content"]
    dpo = export_rows("dpo", split="train", engine=engine)
    assert [r["rejected"][0]["content"] for r in dpo.rows] == [MISSES_PARTICIPATION, GARBAGE]
    assert [r["provenance"]["pair_id"] for r in dpo.rows] == [1, 2]
    assert export_rows("dpo", split="train", engine=engine).rows[0]["provenance"]["pair_id"] == 1  # idempotent
    assert export_rows("sft", split="test", engine=engine).rows == []


def test_evaluate_model_scores_the_newest_traces(engine):
    reason(QueuedBackend([(CORRECT_TRACE, "stop"), (MISSES_PARTICIPATION, "stop"), (GARBAGE, "stop")]), split="test", engine=engine)
    report, evaluation_id = evaluate_model("fake-135m", split="test", engine=engine, store=True)
    assert report.n == 3
    assert report.format_validity == pytest.approx(2 / 3) and report.exact_match == pytest.approx(1 / 3)
    part = report.per_category["participation"]
    assert (part.tp, part.fp, part.fn) == (1, 0, 2)
    assert report.hallucination_rate == 0.0 and report.grounding_rate == 1.0
    with Session(engine) as session:
        results = list_evaluation_results(evaluation_id, session=session)
    assert [r.metrics["exact"] for r in results] == [True, False, False]


# -- the commands end to end, against an OpenAI-compatible server on localhost ------------------


class _Fixed(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = MISSES_PARTICIPATION if "Answer to check" not in body["messages"][-1]["content"] else CORRECT_TRACE
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 9}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_commands_reason_refine_export(engine, tmp_path, monkeypatch, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = tmp_path / "backends.yaml"
        cfg.write_text(f"local-chat:\n  kind: openai\n  base_url: http://127.0.0.1:{server.server_address[1]}/v1\n  model: served-model\n")
        monkeypatch.setenv("R2TA_BACKENDS_FILE", str(cfg))
        monkeypatch.setenv("R2TA_DATABASE_URL", str(engine.url))
        assert main(["reason", "--split", "train", "--backend", "local-chat", "--evaluate"]) == 0
        out = capsys.readouterr().out
        assert "served-model on train: 2 traces stored" in out and "format validity 1.000" in out
        assert main(["refine", "--auditor", "llm", "--backend", "local-chat"]) == 0
        assert "2 proposals stored (0 unchanged, 0 with flags" in capsys.readouterr().out
        with Session(engine) as session:
            p = get_proposal(1, session=session)
            create_review(session=session, proposal_id=1, reviewer="ana", decision="accept", expected_version=p.version)
        out_file = tmp_path / "dpo.jsonl"
        assert main(["export", "dpo", "--out", str(out_file)]) == 0
        rows = read_rows(out_file, "dpo")
        assert len(rows) == 1 and rows[0]["chosen"][0]["content"] == CORRECT_TRACE
        assert rows[0]["provenance"]["auditor_id"] == "llm:served-model"
        assert main(["reason", "--split", "test", "--backend", "nope"]) == 2
        capsys.readouterr()
        assert main(["reason", "--split", "test", "--backend", "local-chat", "--dtype", "bfloat16"]) == 2
        assert "--dtype is the setting of a model loaded here" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_shards_split_the_work_without_overlap(engine):
    first = reason(QueuedBackend([(GARBAGE, "stop")] * 3), split="test", shard=(0, 3), engine=engine)
    rest = [reason(QueuedBackend([(GARBAGE, "stop")] * 3), split="test", shard=(i, 3), engine=engine) for i in (1, 2)]
    assert [first.generated] + [r.generated for r in rest] == [1, 0, 2]  # crc32 of the three ids mod 3: 0, 2, 2
    assert reason(QueuedBackend([]), split="test", engine=engine).skipped == 3


def test_export_dpo_with_planted_negatives_keeps_the_stored_pair_and_says_where_rejected_came_from(engine):
    _reason_refine_review(engine)
    original = export_rows("dpo", split="train", engine=engine)
    planted = export_rows("dpo", split="train", engine=engine, negatives="planted")
    both = export_rows("dpo", split="train", engine=engine, negatives="both")
    assert [r["provenance"]["rejected_source"] for r in original.rows] == ["model", "model"]
    assert [r["provenance"]["rejected_source"].split(":")[0] for r in planted.rows] == ["planted", "planted"]
    assert [r["chosen"] for r in planted.rows] == [r["chosen"] for r in original.rows]
    assert [r["provenance"]["pair_id"] for r in planted.rows] == [1, 2]  # derived from the stored pairs
    assert all(r["rejected"][0]["content"] not in (MISSES_PARTICIPATION, GARBAGE) for r in planted.rows)
    assert len(both.rows) == 4 and both.rows[0] == original.rows[0] and both.rows[1] == planted.rows[0]
    with Session(engine) as session:
        from db.models import PreferencePairRow

        assert len(session.exec(select(PreferencePairRow)).all()) == 2  # planted pairs are not stored
    omission = export_rows("dpo", split="train", engine=engine, negatives="omission")
    assert [r["provenance"]["rejected_source"] for r in omission.rows] == ["planted:omission"] * len(omission.rows)
    assert omission.rows and all(len(r["rejected"][0]["content"]) < len(r["chosen"][0]["content"]) for r in omission.rows)
    with pytest.raises(ValueError, match="negatives must be one of"):
        export_rows("dpo", split="train", engine=engine, negatives="hard")


def test_the_clis_offer_every_kind_of_negatives_the_export_makes():
    from r2ta.cli import build_parser
    from r2ta.pipeline import NEGATIVES
    from r2ta.train_view import NEGATIVE_CHOICES

    parser = build_parser()
    for command in (["export", "dpo", "--out", "x"], ["loop"]):
        for kind in NEGATIVES:
            assert parser.parse_args([*command, "--negatives", kind]).negatives == kind
    assert tuple(NEGATIVE_CHOICES) == NEGATIVES


def test_a_stored_answer_from_another_budget_is_generated_again_not_reused(engine):
    steps_only = "\n".join(LINES[:5])
    outputs = [(CORRECT_TRACE, "stop"), (steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")]
    reason(ContinuingBackend(outputs, verdicts=["NONE", "NONE"]), split="test", engine=engine, max_new_tokens=300,
           verdict_tokens=64)
    own_tokens = len(CORRECT_TRACE.split())  # the fake counts words
    # Budget 200: the answer cut at 300 would have been cut elsewhere; the two that ended by themselves fit.
    again = ContinuingBackend([(steps_only + "\nStep 6", "length")], verdicts=["NONE", "NONE"])
    again._id = "fake-135m+b200"
    report = reason(again, split="test", engine=engine, max_new_tokens=200, verdict_tokens=64, reuse_answers="fake-135m")
    assert (report.reused, report.not_reused, again.calls) == (2, 1, 1)
    assert "2 answers reused, 1 generated again (their stored answer was made under another token budget)" in str(report)
    with Session(engine) as session:
        cut = list_traces(session=session, model_id="fake-135m+b200")[1]
    assert any("max_new_tokens (200)" in e for e in cut.parse_errors)  # the new generation's own budget
    # A budget shorter than an answer that ended by itself: that answer is generated again too.
    short = ContinuingBackend([(CORRECT_TRACE, "length"), (steps_only, "length")], verdicts=["NONE", "NONE"])
    short._id = "fake-135m+short"
    report = reason(short, split="test", engine=engine, max_new_tokens=own_tokens - 1, verdict_tokens=64,
                    reuse_answers="fake-135m")
    assert (report.reused, report.not_reused, short.calls) == (1, 2, 1)  # only the short garbage answer fits
    # The same budget reuses every stored answer (the existing path).
    same = ContinuingBackend([], verdicts=["NONE", "NONE"])
    same._id = "fake-135m+same"
    report = reason(same, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, reuse_answers="fake-135m")
    assert (report.reused, report.not_reused, same.calls) == (3, 0, 0)


def test_an_evaluation_under_another_budget_answers_again_what_that_budget_would_have_written_otherwise(engine):
    # rebudget (what r2ta eval does): a stored answer cut at another budget, or longer than this one, is written
    # again; one that ended by itself within this budget is what greedy decoding writes again, and is kept
    steps_only = "\n".join(LINES[:5])
    own_tokens = len(CORRECT_TRACE.split())  # the fake counts words
    reason(QueuedBackend([(CORRECT_TRACE, "stop"), (steps_only, "length"), (GARBAGE, "stop")]), split="test",
           engine=engine, max_new_tokens=300, verdict_tokens=0)
    # the review queue's path: a variant with a trace is never answered twice, whatever the budget
    plain = QueuedBackend([])
    report = reason(plain, split="test", engine=engine, max_new_tokens=400, verdict_tokens=0)
    assert (report.generated, report.skipped, report.rewritten, plain.calls) == (0, 3, 0, 0)
    same = QueuedBackend([])
    report = reason(same, split="test", engine=engine, max_new_tokens=300, verdict_tokens=0, rebudget=True)
    assert (report.generated, report.skipped, report.rewritten, same.calls) == (0, 3, 0, 0)
    # a longer budget: only the answer cut at 300 could come out differently
    longer = QueuedBackend([(CORRECT_TRACE, "stop")])
    report = reason(longer, split="test", engine=engine, max_new_tokens=400, verdict_tokens=0, rebudget=True)
    assert (report.generated, report.skipped, report.rewritten) == (1, 2, 1)
    assert "1 answered again: this model's stored answer to them was made under another token budget" in str(report)
    with Session(engine) as session:
        newest = {t.variant_id: t for t in list_traces(session=session, model_id="fake-135m")}  # id order: the last
    assert all(t.raw_output in (CORRECT_TRACE, GARBAGE) for t in newest.values())
    assert not any("max_new_tokens" in e for t in newest.values() for e in t.parse_errors or [])
    # a budget shorter than the correct answers: those two are written again, the short garbage answer is kept
    shorter = QueuedBackend([(steps_only, "length"), (steps_only, "length")])
    report = reason(shorter, split="test", engine=engine, max_new_tokens=own_tokens - 1, verdict_tokens=0,
                    rebudget=True, limit=2)  # the first two variants only: the third is not looked at
    assert (report.generated, report.rewritten, report.truncated) == (2, 2, 2)
    with Session(engine) as session:
        cut = [t for t in list_traces(session=session, model_id="fake-135m") if t.raw_output == steps_only][-2:]
    assert all(f"max_new_tokens ({own_tokens - 1})" in " ".join(t.parse_errors) for t in cut)
    # per-construct budgets are judged per variant: 100 + 20 a construct fits every stored answer here
    wide = QueuedBackend([(CORRECT_TRACE, "stop"), (CORRECT_TRACE, "stop")])
    report = reason(wide, split="test", engine=engine, max_new_tokens=own_tokens - 50, tokens_per_construct=20,
                    verdict_tokens=0, rebudget=True)
    assert (report.generated, report.rewritten) == (2, 2)  # the two cut at own_tokens - 1, not the garbage
    assert report.other_budget == 0  # no limit: nothing of the split is left under another budget
    # with a limit, the answers beyond it stay as they were; the report counts those another budget made
    tight = QueuedBackend([(steps_only, "length")])
    report = reason(tight, split="test", engine=engine, max_new_tokens=own_tokens - 1, verdict_tokens=0,
                    rebudget=True, limit=1)
    assert (report.generated, report.rewritten, report.other_budget) == (1, 1, 1)  # the second correct answer
    assert "1 answers beyond this call's variants were made under another token budget" in str(report)


def test_an_evaluation_asking_for_verdicts_otherwise_answers_again(engine):
    # the verdict budget is part of what an answer is: a verdict R2tA asked for is not one the model writes when
    # no verdict is asked for, nor one cut at another verdict budget; an answer without a verdict line that was not
    # asked for one gets one asked for when the call asks
    steps_only = "\n".join(LINES[:5])
    reason(ContinuingBackend([(CORRECT_TRACE, "stop"), (steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")],
                             verdicts=["NONE", "NONE"]), split="test", engine=engine, max_new_tokens=300,
           verdict_tokens=64)
    same = ContinuingBackend([], verdicts=[])
    report = reason(same, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, rebudget=True)
    assert (report.generated, report.rewritten) == (0, 0)
    # a verdict budget of 12 or more leaves the two 12-token verdicts as they were; 8 would have cut them
    wider = ContinuingBackend([], verdicts=[])
    assert reason(wider, split="test", engine=engine, max_new_tokens=300, verdict_tokens=12, rebudget=True).rewritten == 0
    cut = ContinuingBackend([(steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")], verdicts=["NONE", "NONE"])
    # what the Train page's estimate counts before an evaluation: the answers it will write, stored ones included
    assert answers_to_write("fake-135m", split="test", max_new_tokens=300, verdict_tokens=8, engine=engine) == 2
    assert answers_to_write("fake-135m", split="test", max_new_tokens=300, verdict_tokens=12, engine=engine) == 0
    assert answers_to_write("fake-135m", split="test", max_new_tokens=300, verdict_tokens=12, limit=1,
                            engine=engine) == 0  # the first variant's answer has its own verdict
    assert answers_to_write("fake-135m", split="test", max_new_tokens=301, verdict_tokens=12, engine=engine) == 1
    assert answers_to_write("nobody", split="test", engine=engine) == 3
    report = reason(cut, split="test", engine=engine, max_new_tokens=300, verdict_tokens=8, rebudget=True)
    assert (report.generated, report.rewritten) == (2, 2)
    # no verdicts asked for: the two answers whose verdict was asked for are answered again, left without one
    plain = ContinuingBackend([(steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")], verdicts=[])
    report = reason(plain, split="test", engine=engine, max_new_tokens=300, verdict_tokens=0, rebudget=True)
    assert (report.generated, report.rewritten, report.forced) == (2, 2, 0)
    # and asked for again: those two have no verdict line and were not asked for one
    asking = ContinuingBackend([(steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")], verdicts=["NONE", "NONE"])
    report = reason(asking, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, rebudget=True)
    assert (report.generated, report.rewritten, report.forced) == (2, 2, 2)
    # a backend that cannot continue an answer never asks: the answers it would write have no verdict asked for
    queued = QueuedBackend([(steps_only + "\nStep 6 [EMPLOY", "length"), (GARBAGE, "stop")])
    assert reason(queued, split="test", engine=engine, max_new_tokens=300, verdict_tokens=64, rebudget=True).rewritten == 2


class BudgetRecordingBackend(QueuedBackend):
    """A fake backend (unit tests only) that records the token budgets it was asked for."""

    def __init__(self, outputs):
        super().__init__(outputs)
        self.asked = []

    def generate(self, prompts, max_new_tokens=512, temperature=None):
        self.asked.append(max_new_tokens)
        return super().generate(prompts, max_new_tokens, temperature)


def test_reason_gives_each_answer_a_budget_that_grows_with_its_diagram(tmp_path):
    # a walk writes a step per construct: with tokens_per_construct a 5-construct diagram's answer gets
    # 5 times that more than max_new_tokens, one with a relationship less 4 times, and a cut trace says its own budget
    from r2ta.pipeline import answer_budget

    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    small = DIAGRAM.model_copy(update={"relationships": DIAGRAM.relationships[:1]})
    base = {"id": "company_small", "domain": "business", "title": "Company", "requirements": REQUIREMENTS,
            "diagram": DIAGRAM.model_dump(mode="json")}
    variants = [variant("test", 0).model_dump(mode="json"),
                variant("test", 1).model_copy(update={"diagram": small, "mistakes": []}).model_dump(mode="json")]
    with Session(engine) as session:
        load_dataset([base], variants, session=session)
    assert answer_budget(DIAGRAM, 100) == 100 and answer_budget(DIAGRAM, 100, 20) == 200 and answer_budget(small, 100, 20) == 180
    backend = BudgetRecordingBackend([(CORRECT_TRACE[:150], "length"), (CORRECT_TRACE[:90], "length")])
    report = reason(backend, split="test", engine=engine, max_new_tokens=100, tokens_per_construct=20, verdict_tokens=0)
    assert backend.asked == [[200, 180]] and report.truncated == 2
    with Session(engine) as session:
        big, little = list_traces(session=session, model_id="fake-135m")
    assert "generation stopped at max_new_tokens (200): the output is cut off" in big.parse_errors
    assert "generation stopped at max_new_tokens (180): the output is cut off" in little.parse_errors
    # without it every answer has one budget, asked for as one number (what every backend takes)
    plain = BudgetRecordingBackend([(CORRECT_TRACE, "stop")])
    plain._id = "fake-plain"
    reason(plain, split="test", engine=engine, max_new_tokens=100, limit=1)
    assert plain.asked == [100]
