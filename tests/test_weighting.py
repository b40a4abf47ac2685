"""Decision-weighted SFT (``decision_token_weight``): which tokens count more, by how much, and that it trains.

What a user would notice: a recipe with ``decision_token_weight: 5`` trains (the real TRL trainer on the
tiny in-process Llama), logs the unweighted ``nll`` and the decision tokens' ``decision_nll`` beside the
loss, and at weight 1 its loss is exactly plain SFT's; a bad weight is refused when the recipe is read.
"""

from __future__ import annotations

import math

import pytest

from r2ta.pairs import write_rows
from r2ta.prompting import decision_spans, defect_fact_spans
from reasoning_fixtures import CORRECT_TRACE


def _decisions(text: str) -> list[str]:
    return [text[a:b] for a, b in decision_spans(text)]


def test_decision_spans_are_what_the_answer_decides():
    assert _decisions(CORRECT_TRACE) == [
        "DEPARTMENT, DEPARTMENT.Dnumber", "ok", "EMPLOYEE, EMPLOYEE.Ssn", "ok",
        "EMPLOYEE.Dnumber, WORKS_FOR", "foreign_key_attribute", "WORKS_FOR, EMPLOYEE", "participation",
        "WORKS_ON, WORKS_ON.Hours", "ok",
        "foreign_key_attribute", "EMPLOYEE.Dnumber, WORKS_FOR", "participation", "WORKS_FOR, EMPLOYEE",
    ]
    assert _decisions("Step 1 [A]: a -> ok\nVERDICT:\nNONE") == ["A", "ok", "NONE"]
    # The explanation of a MISTAKE line restates; a line with no explanation still has its two decisions.
    assert _decisions("VERDICT:\nMISTAKE: cardinality | R, E") == ["cardinality", "R, E"]
    # Prose, a bracket that is not a step's, and an empty answer decide nothing.
    assert _decisions("The diagram [E] looks fine -> probably") == []
    assert _decisions("") == []
    # Hostile content stays inside its span (no regex or markup meaning).
    hostile = 'Step 1 [<b>"X|Y"</b>, A.(b)]: x -> ok'
    assert _decisions(hostile) == ['<b>"X|Y"</b>, A.(b)', "ok"]


WALK = (
    "Step 1 [PROJECT, PROJECT.Project_no]: key none. PROJECT has no key: nothing identifies it. -> missing_key\n"
    "Step 2 [SECRETARY]: subclass of EMPLOYEE; no own key -> ok\n"
    "Step 3 [MENTORS, ENGINEER]: 2 ends; recursive on ENGINEER, no roles. Which ENGINEER is which? "
    "-> relationship_structure\n"
    "VERDICT:\nMISTAKE: missing_key | PROJECT | PROJECT has no key."
)


def test_defect_fact_spans_are_the_facts_of_the_steps_that_find_a_mistake():
    assert [WALK[a:b] for a, b in defect_fact_spans(WALK)] == [
        "key none", "2 ends; recursive on ENGINEER, no roles"]
    # A name with a dot is not the end of the facts; an ok step, prose and a verdict have none.
    assert [t[a:b] for t in ["Step 4 [R]: 1 end; attribute R.x. One end only. -> relationship_structure"]
            for a, b in defect_fact_spans(t)] == ["1 end; attribute R.x"]
    assert defect_fact_spans("Step 1 [A]: key a -> ok\nThe diagram -> fine\nVERDICT:\nNONE") == []
    hostile = 'Step 1 [<b>"X|Y"</b>]: key <i>"a->b"</i>. Bad. -> missing_key'
    assert [hostile[a:b] for a, b in defect_fact_spans(hostile)] == ['key <i>"a']


class _CharTokenizer:
    """One token per character (what a byte-level tokenizer does to ASCII)."""

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_answer_weights_put_w_on_decisions_and_keep_the_answers_total():
    from training.weighting import answer_token_weights, row_weights

    text = "Step 1 [AB]: x -> ok"
    ids = [ord(c) for c in text]
    weights = answer_token_weights(ids, _CharTokenizer(), 5.0)
    assert math.isclose(sum(weights), len(ids))
    base = min(weights)
    marked = [c for c, w in zip(text, weights) if math.isclose(w, 5 * base)]
    assert "".join(marked) == "ABok"
    assert all(math.isclose(w, base) or math.isclose(w, 5 * base) for w in weights)
    # In a row, the prompt (label -100) weighs nothing and the answer keeps its weights.
    row = row_weights([-100, -100, *ids], _CharTokenizer(), 5.0)
    assert row[:2] == [0.0, 0.0] and row[2:] == weights
    # Weight 1 is plain SFT: every answer token 1.
    assert answer_token_weights(ids, _CharTokenizer(), 1.0) == [1.0] * len(ids)


def test_defect_fact_weight_marks_the_facts_and_a_token_in_both_takes_the_stronger():
    from training.weighting import answer_token_weights

    ids = [ord(c) for c in WALK]
    weights = answer_token_weights(ids, _CharTokenizer(), 1.0, 4.0)
    assert math.isclose(sum(weights), len(ids))
    base = min(weights)
    marked = "".join(c for c, w in zip(WALK, weights) if math.isclose(w, 4 * base))
    assert marked == "key none2 ends; recursive on ENGINEER, no roles"
    both = answer_token_weights(ids, _CharTokenizer(), 2.0, 4.0)
    base = min(both)
    assert {round(w / base, 4) for w in both} == {1.0, 2.0, 4.0}
    by_char = dict(zip(range(len(WALK)), both))
    assert math.isclose(by_char[WALK.index("key none")] / base, 4.0)  # a fact, not a decision
    assert math.isclose(by_char[WALK.index("missing_key")] / base, 2.0)  # a decision
    # A weight below 1 is kept where it is further from 1 than the other.
    down = answer_token_weights(ids, _CharTokenizer(), 0.25, 2.0)
    assert math.isclose(max(down) / min(down), 8.0)


def test_a_token_that_straddles_a_decision_counts_as_one():
    from training.weighting import answer_token_weights

    class Pairs:  # two characters a token
        def decode(self, ids):
            return "".join(chr(i // 1000) + chr(i % 1000) for i in ids)

    text = "Step 12 [AB]: x -> ok "
    ids = [ord(text[i]) * 1000 + ord(text[i + 1]) for i in range(0, len(text), 2)]
    weights = answer_token_weights(ids, Pairs(), 3.0)
    tokens = [text[i:i + 2] for i in range(0, len(text), 2)]
    heavy = [t for t, w in zip(tokens, weights) if w > min(weights)]
    # "[A" and "B]" each hold part of "AB"; " o" and "k " each part of "ok"; "->" none.
    assert heavy == ["[A", "B]", " o", "k "]


@pytest.mark.parametrize("key", ["decision_token_weight", "defect_fact_weight"])
def test_a_bad_weight_is_refused_when_the_recipe_is_read(tmp_path, key):
    from training.recipe import RecipeError, load_recipe, parse_stage
    from training import hardware, sft

    path = tmp_path / "bad.yaml"
    path.write_text(f"model:\n  model_name_or_path: builtin:tiny-llama\nsft:\n  {key}: 0\n"
                    "  activation_checkpointing: false\n")
    recipe = load_recipe(path)  # the key is known
    precision = hardware.resolve_precision("fp32", hardware.detect_hardware())
    with pytest.raises(RecipeError, match=f"{key} must be > 0"):
        parse_stage(sft.make_parser(), recipe, "sft", precision,
                    ["--train_file", "x.jsonl", "--output_dir", str(tmp_path / "out")])


def _train(tmp_path, weight: float, steps: int, *, force_weighted: bool = False, accumulate: int = 1,
           fact_weight: float = 1.0):
    from transformers import TrainerCallback

    from training import hardware, sft
    from training.recipe import load_recipe, parse_stage
    from training.tiny import smoke_rows

    rows, _ = smoke_rows(12)  # rows 10 and 11 are longer: batches hold padding
    write_rows(rows, tmp_path / "sft.jsonl")
    recipe = load_recipe("tiny-cpu")
    precision = hardware.resolve_precision("fp32", hardware.detect_hardware())
    out = tmp_path / f"sft-{weight}-{fact_weight}-{force_weighted}"
    args = ["--train_file", str(tmp_path / "sft.jsonl"), "--output_dir", str(out), "--max_steps", str(steps),
            "--decision_token_weight", str(weight), "--lr_scheduler_type", "constant", "--warmup_steps", "0",
            "--gradient_accumulation_steps", str(accumulate), "--defect_fact_weight", str(fact_weight)]
    parsed = parse_stage(sft.make_parser(), recipe, "sft", precision, args)
    seen: list[dict] = []

    class Logs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs or {}))

    if force_weighted:
        import training.weighting as weighting

        original = weighting.trainer_class
        weighting.trainer_class = lambda args: weighting.DecisionWeightedSFTTrainer
        try:
            trainer = sft.main(*parsed, callbacks=[Logs()])
        finally:
            weighting.trainer_class = original
    else:
        trainer = sft.main(*parsed, callbacks=[Logs()])
    return trainer, [log for log in seen if "loss" in log]


@pytest.mark.slow
def test_weighted_sft_trains_and_logs_the_decision_loss(tmp_path):
    import torch

    from training.weighting import DecisionWeightedSFTTrainer

    trainer, logs = _train(tmp_path, 5.0, 3)
    assert isinstance(trainer, DecisionWeightedSFTTrainer)
    assert len(logs) == 3
    for log in logs:
        assert math.isfinite(log["loss"]) and log["nll"] > 0 and log["decision_nll"] > 0
        assert 0 <= log["mean_token_accuracy"] <= 1
    assert logs[-1]["num_tokens"] > logs[0]["num_tokens"] > 0
    assert any(abs(log["loss"] - log["nll"]) > 1e-4 for log in logs)  # the weights change the loss
    lora = {k: v for k, v in trainer.model.named_parameters() if "lora_B" in k}
    assert lora and any(v.abs().sum() > 0 for v in lora.values())  # B starts at zero; it moved
    # The weights the trainer trains on: prompt 0, the answer's decision tokens 5x its others.
    row = trainer.train_dataset[0]
    weights = torch.tensor(row["loss_weights"])
    answer = weights[torch.tensor(row["labels"]) != -100]
    assert (weights[torch.tensor(row["labels"]) == -100] == 0).all()
    assert math.isclose(answer.sum().item(), len(answer), rel_tol=1e-4)
    assert math.isclose(answer.max().item() / answer.min().item(), 5.0, rel_tol=1e-4)


@pytest.mark.slow
def test_defect_fact_weighted_sft_trains_with_the_facts_weighted(tmp_path):
    import torch

    from training.weighting import DecisionWeightedSFTTrainer

    trainer, logs = _train(tmp_path, 1.0, 2, fact_weight=3.0)
    assert isinstance(trainer, DecisionWeightedSFTTrainer)
    assert all(math.isfinite(log["loss"]) and log["decision_nll"] > 0 for log in logs)
    ratios = set()
    for row in trainer.train_dataset:
        weights = torch.tensor(row["loss_weights"])
        answer = weights[torch.tensor(row["labels"]) != -100]
        ratios.add(round(answer.max().item() / answer.min().item(), 3))
    assert 3.0 in ratios  # rows whose steps find a mistake weight their facts 3x


@pytest.mark.slow
def test_weight_one_through_the_weighted_loss_is_plain_sft(tmp_path):
    """The weighted loss at weight 1 must equal TRL's own: same normalisation, same gradient accumulation."""
    plain_trainer, plain = _train(tmp_path, 1.0, 2, accumulate=2)
    weighted_trainer, weighted = _train(tmp_path, 1.0, 2, force_weighted=True, accumulate=2)
    assert type(plain_trainer).__name__ == "SFTTrainer"
    assert [round(log["loss"], 5) for log in plain] == [round(log["loss"], 5) for log in weighted]
    assert [round(log["loss"], 5) for log in weighted] == [round(log["nll"], 5) for log in weighted]
    # The same tokens counted (the benchmark's tokens/s rests on it), the same accuracy metric.
    assert [log["num_tokens"] for log in plain] == [log["num_tokens"] for log in weighted]
    assert [round(log["mean_token_accuracy"], 5) for log in plain] == \
        [round(log["mean_token_accuracy"], 5) for log in weighted]


def test_the_loss_figure_draws_the_decision_loss_when_a_run_logs_it(tmp_path):
    from pathlib import Path

    from r2ta import jobs, train_view

    plain = jobs.RunProgress(Path(tmp_path), {}, [{"stage": "sft", "step": 1, "loss": 2.0},
                                                  {"stage": "dpo", "step": 1, "loss": 0.69}])
    assert [t.name for t in train_view.loss_figure(plain).data] == ["SFT", "DPO"]
    weighted = jobs.RunProgress(Path(tmp_path), {}, [
        {"stage": "sft", "step": s, "loss": 2.0 / s, "nll": 1.5 / s, "decision_nll": 6.0 - s} for s in (1, 2)])
    figure = train_view.loss_figure(weighted)
    assert [t.name for t in figure.data] == ["SFT", "SFT decision tokens", "SFT unweighted"]
    assert list(figure.data[1].y) == [5.0, 4.0]


def test_the_margin_figure_says_why_it_is_empty_before_dpo_and_in_a_run_that_stopped_before_it(tmp_path):
    from pathlib import Path

    from r2ta import jobs, train_view

    sft_only = [{"stage": "sft", "step": 1, "loss": 2.0}]

    def note(status, points=sft_only):
        figure = train_view.margin_figure(jobs.RunProgress(Path(tmp_path), status, points))
        return (figure.layout.annotations[0].text if figure.layout.annotations else None), len(figure.data)

    assert note({"status": "running", "stage": "sft"}) == ("No DPO step yet: DPO starts when SFT ends", 0)
    assert note({"status": "running", "stage": "dpo"}) == ("DPO's first step is going", 0)
    assert note({"status": "cancelled", "stage": "sft"}) == ("DPO did not run: the run stopped before it", 0)
    assert note({"status": "failed", "stage": "dpo"}) == ("DPO logged no margin", 0)
    drawn = note({"status": "running", "stage": "dpo"}, [*sft_only, {"stage": "dpo", "step": 1, "reward_margin": 0.3}])
    assert drawn == (None, 1)


def test_the_progress_log_keeps_the_decision_loss(tmp_path):
    import json

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from r2ta import jobs
    from training.callbacks import RunProgressCallback

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    callback = RunProgressCallback(run_dir, "sft", 0, 2)
    state = TrainerState()
    state.global_step, state.max_steps = 1, 4
    callback.on_log(TrainingArguments(output_dir=str(tmp_path / "o"), report_to=[]), state, TrainerControl(),
                    logs={"loss": 1.2, "nll": 1.0, "decision_nll": 3.5})
    (point,) = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    assert point["nll"] == 1.0 and point["decision_nll"] == 3.5
    assert jobs.read_progress(run_dir).series("decision_nll", "sft") == [(1, 3.5)]


def test_the_collator_pads_weights_like_labels_and_leaves_rows_without_weights_alone():
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from training.weighting import WeightedCollator

    collator = WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=0, pad_to_multiple_of=4))
    batch = collator([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "loss_weights": [0.0, 0.5, 1.5]},
                      {"input_ids": [8, 9], "labels": [-100, 9], "loss_weights": [0.0, 1.0]}])
    assert batch["labels"].shape == batch["loss_weights"].shape == (2, 4)
    assert batch["loss_weights"].tolist() == [[0.0, 0.5, 1.5, 0.0], [0.0, 1.0, 0.0, 0.0]]
    plain = collator([{"input_ids": [5, 6], "labels": [-100, 6]}])  # e.g. an eval set
    assert "loss_weights" not in plain and torch.equal(plain["labels"], torch.tensor([[-100, 6, -100, -100]]))
    with pytest.raises(ValueError, match="padding_free"):
        WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True))
