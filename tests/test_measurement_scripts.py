"""scripts/fact_preference.py, the teacher-forced probe behind the run64e/run64n/run64m records: its fact
comparisons and the token positions it reads, on real dataset rows with the tiny byte-level tokenizer (no model)."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest

from r2ta.audit import construct_evidence, constructs, walk_steps
from r2ta.dataset import BuildConfig, build_variants
from r2ta.records import load_base_schemas
from reasoning_fixtures import DIAGRAM
from scripts import fact_preference
from training.tiny import build_tiny_tokenizer
from test_evaluation import engine  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def rows():
    """The first 40 test variants of the default build, shaped as the script reads database rows."""
    variants = [v for v in build_variants(load_base_schemas(), BuildConfig(seed=0))[0] if v.split == "test"][:40]
    return [SimpleNamespace(**{**v.model_dump(mode="json"), "diagram": v.diagram.model_dump(mode="json")})
            for v in variants]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_a_fact_that_lacks_something_is_told_from_one_that_says_something_else():
    lacks, same = fact_preference.lacks, fact_preference.same_but_order
    assert lacks("key none", "key Ssn") and lacks("1 end", "2 ends") and lacks("no roles", "roles boss, worker")
    assert lacks("subclass of A; disjoint", "subclass of A, B; disjoint")
    assert not lacks("key Code", "key Ssn") and not lacks("2 ends", "2 ends; identifying")
    assert same("subclass of B, A", "subclass of A, B") and not same("subclass of B", "subclass of A, B")


def test_removed_takes_away_one_key_end_or_role_list_and_nothing_else():
    removed = fact_preference.removed
    assert removed("key Ssn") == "key none" and removed("key Ssn; weak") == "key none; weak"
    assert removed("weak; partial key Dname") == "weak; partial key none"
    assert removed("2 ends") == "1 end" and removed("roles supervisor, supervisee; 2 ends") == "no roles; 2 ends"
    assert removed("key none") is None and removed("1 end") is None and removed("") is None


def test_first_steps_names_each_construct_once_in_walk_order():
    steps = walk_steps(DIAGRAM, [], evidence=True)
    again = [*steps, steps[1]]  # a later step on a construct already walked is not a first step
    found = list(fact_preference.first_steps(DIAGRAM, again))
    assert [(n, k.id) for n, k in found] == [(n, k.id) for n, k in enumerate(constructs(DIAGRAM))]


def test_parting_finds_the_first_token_where_two_fact_strings_differ(tok):
    lines = ["Step 1 [EMPLOYEE]: key Ssn -> ok", "Step 2 [PROJECT]: key Pnumber -> ok"]
    a, b, cut = fact_preference.parting(tok, "PROMPT\n", lines, 1, "key Pnumber", "key none")
    assert a[:cut] == b[:cut] and a[cut] != b[cut]
    assert tok.decode(a[:cut]).endswith("Step 2 [PROJECT]: key ") and tok.decode([a[cut]]) == "P"
    assert fact_preference.parting(tok, "PROMPT\n", lines, 1, "2 ends", "2 ends; total")[2] is None  # a prefix


def test_the_probe_compares_each_changed_construct_at_the_token_where_the_facts_part(rows, tok):
    cases = fact_preference.cases(tok, rows)
    assert cases, "40 test variants plant mistakes that change some construct's facts"
    for context, mine, theirs, label, lacking in cases:
        facts = label.split(": ", 1)[1]
        assert mine != theirs and " vs " in facts
        assert tok.decode(context).endswith("]: " + _common_prefix(*_facts(facts)))
        assert lacking == fact_preference.lacks(*_facts(facts))
    assert any(lacking for *_, lacking in cases) and not all(lacking for *_, lacking in cases)


def test_the_mirror_probe_reads_sound_facts_in_one_pass_at_the_right_positions(rows, tok):
    bases = {b.id: b.diagram for b in load_base_schemas()}
    found = 0
    for full, points in fact_preference.sound_cases(tok, rows):
        for cut, mine, alt, label in points:
            found += 1
            facts, removed = _facts(label.split(": ", 1)[1])
            assert full[cut] == mine != alt and fact_preference.removed(facts) == removed
            assert tok.decode(full[:cut]).endswith("]: " + _common_prefix(facts, removed))
    assert found > 40  # keys and ends of sound constructs: several per variant
    # only constructs whose facts are the base schema's count: a planted defect is the other probe's
    row = rows[0]
    diagram = fact_preference._diagram(row)
    sound = {construct_evidence(diagram, k) for k in constructs(diagram)
             if construct_evidence(bases[row.base_id], k) == construct_evidence(diagram, k)}
    first = fact_preference.sound_cases(tok, [row])[0][1]
    assert {_facts(label.split(": ", 1)[1])[0] for *_, label in first} <= sound


def _facts(text: str) -> tuple[str, str]:
    mine, theirs = text.split(" vs ")
    return mine.strip("'\""), theirs.strip("'\"")


def _common_prefix(a: str, b: str) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n]


def test_evidence_facts_tallies_copied_facts_and_decisions_from_stored_traces(tmp_path):
    """scripts/evidence_facts.py on two real rows: the true evidence walk copies every fact and flags exactly the
    wrong constructs; a walk that writes the base schema's facts at a defect is counted as reciting the schema."""
    from sqlmodel import Session

    from db.engine import get_engine, init_db
    from db.loading import load_dataset
    from db.queries import create_trace
    from r2ta.audit import shows_defect
    from r2ta.prompting import render_trace
    from scripts import evidence_facts

    schemas = load_base_schemas()
    variants = [v for v in build_variants(schemas, BuildConfig(seed=0))[0] if v.split == "test"]
    bases = {b.id: b.diagram for b in schemas}

    def defect_steps(v):  # (index, construct) of first steps whose facts show a defect the base schema lacks
        steps = walk_steps(v.diagram, v.mistakes, evidence=True)
        return steps, [(n, k) for n, k in fact_preference.first_steps(v.diagram, steps)
                       if shows_defect(construct_evidence(v.diagram, k))
                       and construct_evidence(v.diagram, k) != construct_evidence(bases[v.base_id], k)]

    row = next(v for v in variants if defect_steps(v)[1])
    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    with Session(engine) as session:
        load_dataset([s.model_dump(mode="json") for s in schemas], [row.model_dump(mode="json")], session=session)
        steps, defects = defect_steps(row)
        create_trace(session=session, variant_id=row.id, model_id="true-walk", prompt={},
                     raw_output=render_trace(steps, row.mistakes))
        n, k = defects[0]
        recited = [s.model_copy(update={"text": construct_evidence(bases[row.base_id], k), "finding": "ok"})
                   if i == n else s for i, s in enumerate(steps)]
        create_trace(session=session, variant_id=row.id, model_id="reciter", prompt={},
                     raw_output=render_trace(recited, []))
        session.commit()
        true, reciter = (evidence_facts.tally(session, m, "test") for m in ("true-walk", "reciter"))
    walked = len(list(fact_preference.first_steps(row.diagram, steps)))
    assert true["answers"] == 1 and true["facts right"] == true["steps"] >= walked
    assert true["defect facts stated right"] == true["defect constructs walked to"] >= len(defects)
    assert true["defect facts as in the base schema"] == 0 and true["ok facts stated as defect"] == 0
    assert true["wrong construct steps flagged"] == true["wrong construct steps"] > 0
    assert true["right construct steps flagged"] == 0
    assert reciter["defect facts as in the base schema"] == 1 and reciter["facts right"] == true["facts right"] - 1
    assert reciter["defect constructs flagged"] == true["defect constructs flagged"] - 1


# -- scripts/verdict_claims.py, scripts/walk_decisions.py, scripts/first_construct_probability.py ----------------


@pytest.fixture
def tiny_dir(tmp_path_factory):
    from training.tiny import ensure_tiny_llama

    return ensure_tiny_llama(tmp_path_factory.getbasetemp() / "tiny-llama-scripts")


def test_verdict_claims_counts_each_models_mistake_lines_and_categories(engine, capsys):  # noqa: F811
    from r2ta.evaluation import evaluate
    from scripts import verdict_claims
    from test_evaluation import ONLY_FK, WRONG, QueuedBackend

    evaluate(QueuedBackend([ONLY_FK, WRONG, WRONG], "m"), split="test", limit=3, engine=engine)
    verdict_claims.main(["m", "nobody"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "m on test: 3 traces, 0 verdicts asked for, 0 own verdicts decoded again under the grammar"
    assert out[1] == "  mistake lines per answer {1: 3}"
    assert out[2] == "  claims {'missing_key': 2, 'foreign_key_attribute': 1}"
    assert out[3].startswith("nobody on test: 0 traces") and out[5] == "  claims {}"


def test_walk_decisions_reads_an_exports_variants_and_scores_the_base_model(engine, tmp_path, tiny_dir, capsys):  # noqa: F811
    from scripts import walk_decisions

    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"messages": [], "provenance": {"variant_id": "v-train-4"}}\n\n'
                   '{"messages": [], "provenance": {"variant_id": "v-train-5"}}\n')
    assert walk_decisions._variant_ids(str(sft)) == ["v-train-4", "v-train-5"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    with pytest.raises(SystemExit, match="line 1: not an SFT export row"):
        walk_decisions._variant_ids(str(bad))
    walk_decisions.main([str(tiny_dir), "--limit", "2"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("base on test: 2 variants, ") and "constructs (" in line and "AUC " in line, line
    with pytest.raises(SystemExit, match="no variants to score"):
        walk_decisions.main([str(tiny_dir), "--split", "train", "--limit", "0"])
    # a full fine-tuned model (a model's folder, no adapter_config.json) is scored as it is
    walk_decisions.main([str(tiny_dir), str(tiny_dir), "--limit", "2", "--skip-base"])
    full = capsys.readouterr().out.strip()
    assert full.startswith(f"{tiny_dir} on test: 2 variants, ") and full.split(";")[0] == line.replace(
        "base on", f"{tiny_dir} on").split(";")[0], (full, line)
    with pytest.raises(SystemExit, match="neither a LoRA adapter"):
        walk_decisions.main([str(tiny_dir), str(tmp_path), "--limit", "2", "--skip-base"])


def test_first_construct_probability_scores_the_first_element_of_each_target(tmp_path, tiny_dir, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scripts import first_construct_probability as fcp

    assert fcp.first_element_end("Step 1 [PROJECT, EMPLOYEE]: x") == len("Step 1 [PROJECT")
    assert fcp.first_element_end("Step 1 [PROJECT]: x") == len("Step 1 [PROJECT")
    assert fcp.first_element_end("no steps at all") is None and fcp.first_element_end("Step 1 [") is None
    messages = [{"role": "system", "content": "Audit."}, {"role": "user", "content": "Diagram: PROJECT"},
                {"role": "assistant", "content": "Step 1 [PROJECT]: no key. -> missing_key"}]
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    head, top1, rest = fcp.row_figures(model, tok, messages)
    # byte-level: "PROJECT" is 7 tokens, each with log P < 0; the other answer tokens' mean too
    assert head < 0 and rest < 0 and isinstance(top1, bool)
    assert fcp.row_figures(model, tok, [*messages[:2], {"role": "assistant", "content": "nothing"}]) is None
    rows = tmp_path / "sft.jsonl"
    rows.write_text("".join(json.dumps({"messages": m}) + "\n" for m in
                            (messages, [*messages[:2], {"role": "assistant", "content": "nothing"}])))
    fcp.main([str(tiny_dir), str(rows)])
    out = capsys.readouterr().out
    assert out.startswith("base: 1 rows, ") and f"geo-mean {math.exp(head):.4f}" in out, out


def test_walk_lengths_counts_each_walk_target_and_the_budgets_that_fit_it(rows, tok):
    # scripts/walk_lengths.py: the walk a trained model is taught, counted in the model's tokens, against a flat
    # budget and a budget per construct (r2ta eval --tokens-per-construct)
    from r2ta.prompting import render_trace
    from scripts import walk_lengths

    variants = [v for v in build_variants(load_base_schemas(), BuildConfig(seed=0))[0] if v.split == "test"][:12]
    got = walk_lengths.targets(variants, tok)
    by_id = {v.id: v for v in variants}
    for t, v in zip(got, variants):
        walk = render_trace(walk_steps(v.diagram, v.mistakes), v.mistakes)
        assert t.tokens == len(tok(walk, add_special_tokens=False)["input_ids"])
        assert t.constructs == len(constructs(v.diagram)) and t.mistakes == len(v.mistakes)
        assert t.all_ok < t.tokens or not v.mistakes
    longest = max(t.tokens for t in got)
    assert walk_lengths.uncut(got, by_id, longest) == (len(got), longest * len(got))
    assert walk_lengths.uncut(got, by_id, min(t.tokens for t in got) - 1)[0] == 0
    fit, total = walk_lengths.uncut(got, by_id, 0, longest)  # a construct's worth of budget covers any walk here
    assert fit == len(got) and total == longest * sum(t.constructs for t in got)
    text = walk_lengths.report(got, by_id, 384, [(320, 20)])
    assert "--max-new-tokens 320 --tokens-per-construct 20" in text and f"of {len(got)} fit" in text
    assert "fit: tokens ~" in text and variants[0].base_id in text


@pytest.mark.slow
def test_dpo_step_probe_prints_one_line_of_figures_for_a_recipe(tmp_path, capsys):
    # scripts/dpo_step_probe.py, behind docs/measured/dpo-shared-prompt-2026-12-05.txt: 4 DPO steps of one pair on
    # the tiny recipe (the records ran the embedded one), its figures as one JSON line, the losses logged each step
    from r2ta.pairs import write_rows
    from scripts import dpo_step_probe
    from training.tiny import smoke_rows

    write_rows(smoke_rows(6)[1], tmp_path / "dpo.jsonl")
    dpo_step_probe.main([str(tmp_path / "dpo.jsonl"), str(tmp_path / "out"), "--recipe", "tiny-cpu",
                         "--share_prompt", "false"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["extra"] == "--share_prompt false" and figures["share"] is False
    assert len(figures["losses"]) == len(figures["margins"]) == len(figures["logps_chosen"]) == 4
    assert figures["tok_s_after_step1"] > 0 and figures["s_per_step_after_step1"] > 0 and figures["peak_rss_gb"] > 0
    with pytest.raises(SystemExit):
        dpo_step_probe.main([str(tmp_path / "dpo.jsonl")])  # the usage, not a traceback


@pytest.mark.slow
def test_allocator_probe_prints_the_rss_of_each_step_for_a_recipe(tmp_path, capsys, monkeypatch):
    # scripts/allocator_probe.py, behind docs/measured/sft-labelled-positions-2026-12-05.txt: SFT steps on the tiny
    # recipe in fp32 (the record ran the embedded one in bf16) on rows of an export, the process's RSS after each
    # shown step and its peak
    from r2ta.pairs import write_rows
    from scripts import allocator_probe
    from training.tiny import smoke_rows

    write_rows(smoke_rows(4)[0], tmp_path / "sft.jsonl")
    allocator_probe.main(["3", "glibc", "--recipe", "tiny-cpu", "--precision", "fp32",
                          "--data", str(tmp_path / "sft.jsonl")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("glibc: 3 steps in ") and " tok/s; RSS MB after step 1:" in line
    steps = re.search(r"after step (.*); peak (\d+) MB", line)
    assert [int(s.split(":")[0]) for s in steps.group(1).split(", ")] == [1, 3]  # the first and the last step
    assert int(steps.group(2)) > 0
    with pytest.raises(SystemExit):
        allocator_probe.main(["0", "glibc"])  # the usage, not a traceback
    with pytest.raises(SystemExit, match="allocator_probe: .*no-such-recipe"):
        allocator_probe.main(["1", "glibc", "--recipe", "no-such-recipe"])  # the reason, not a traceback
    # bf16 (the default) on a CPU that would emulate it: the reason too (this CPU's own or not)
    from training import hardware

    monkeypatch.setattr(hardware, "detect_hardware", lambda: hardware.Hardware("cpu", 0, "cpu", False, 2, None))
    with pytest.raises(SystemExit, match="allocator_probe: precision bf16 on a CPU needs one that computes bf16"):
        allocator_probe.main(["1", "glibc", "--recipe", "tiny-cpu"])
    with pytest.raises(SystemExit):
        allocator_probe.main(["1", "glibc", "--data", str(tmp_path / "missing.jsonl")])
