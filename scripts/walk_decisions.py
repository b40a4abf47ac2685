"""Teacher-forced: does a model tell the wrong constructs from the right ones, line by line?

    R2TA_DATA_DIR=DATA python scripts/walk_decisions.py [--split test] [--limit 50] [--skip-base]
        BASE_MODEL_DIR [ADAPTER_DIR ...]

For each variant, the answer that walks the diagram and finds nothing (``Step n [CONSTRUCT]: -> ok``
for every line, :func:`r2ta.audit.walk_steps` with no mistakes) is scored under the model, after the
variant's prompt. For each step, the probability of its decision, the tokens from the end of the
construct's name to ``ok`` (``]: -> ok``): a model that knows a construct is wrong gives them little.
Scored against the ground truth's mistakes, anchored to constructs as a walk anchors them:

* AUC: the chance that a wrong construct gets a lower P(ok) than a right one (0.5 = no idea);
* top-1: in how many variants the construct with the lowest P(ok) has a mistake (and what picking a
  construct at random would score);
* mean P(ok) on right and on wrong constructs.

Used for docs/measured/loop-run64k-walk-2026-12-03.txt; base model first, then each LoRA adapter.
"""
from __future__ import annotations

import math
import sys
import time

import torch
from peft import PeftModel
from sqlmodel import Session, select
from transformers import AutoModelForCausalLM, AutoTokenizer

from db.engine import get_engine
from db.models import VariantRow
from r2ta.audit import anchor, constructs, walk_steps
from r2ta.pipeline import _diagram, _truth
from r2ta.prompting import build_messages, render_trace


def auc(wrong: list[float], right: list[float]) -> float:
    """P(score of a wrong construct > score of a right one), ties half (Mann-Whitney)."""
    if not wrong or not right:
        return float("nan")
    wins = sum((w > r) + 0.5 * (w == r) for w in wrong for r in right)
    return wins / (len(wrong) * len(right))


def main(argv: list[str]) -> None:
    split, limit, skip_base = "test", 50, "--skip-base" in argv
    argv = [a for a in argv if a != "--skip-base"]
    for flag in ("--split", "--limit"):
        if flag in argv:
            i = argv.index(flag)
            value = argv[i + 1]
            del argv[i : i + 2]
            split, limit = (value, limit) if flag == "--split" else (split, int(value))
    base_dir, adapters = argv[0], argv[1:]
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(base_dir)
    with Session(get_engine()) as session:
        variants = list(session.exec(select(VariantRow).where(VariantRow.split == split).order_by(VariantRow.id).limit(limit)))
    cases = []
    for v in variants:
        diagram, truth = _diagram(v), _truth(v)
        walk = constructs(diagram)
        wrong = {anchor(m, walk) for m in truth} - {None}
        steps = walk_steps(diagram, [])
        answer = render_trace(steps, [])
        prompt = tok.apply_chat_template(build_messages(v.requirements, diagram), tokenize=False, add_generation_prompt=True)
        enc = tok(answer, add_special_tokens=False, return_offsets_mapping=True)
        spans, at = [], 0
        for step in steps:  # from the end of the construct's name to the end of "-> ok"
            line_start = answer.index(f"Step {step.number} [", at)
            name_end = line_start + len(f"Step {step.number} [{step.elements[0]}")
            line_end = answer.index("\n", line_start)
            spans.append([k for k, (s, e) in enumerate(enc["offset_mapping"]) if e > name_end and s < line_end])
            at = line_end
        cases.append((tok(prompt, add_special_tokens=False)["input_ids"], enc["input_ids"], spans, wrong))

    def load(adapter):
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        return (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()

    for name, adapter in ([] if skip_base else [("base", None)]) + [(a, a) for a in adapters]:
        model, t0 = load(adapter), time.time()
        p_right, p_wrong, top1, chance = [], [], 0, 0.0
        for p_ids, a_ids, spans, wrong in cases:
            ids = torch.tensor([p_ids + a_ids])
            with torch.inference_mode():  # logits only where they predict an answer token (the LM head is most of the cost)
                logits = model(ids, logits_to_keep=len(a_ids) + 1).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1)
            lp = logp[torch.arange(len(a_ids)), torch.tensor(a_ids)]  # row k predicts answer token k
            p_ok = [math.exp(sum(lp[k].item() for k in span)) for span in spans]
            for i, p in enumerate(p_ok):
                (p_wrong if i in wrong else p_right).append(p)
            top1 += int(min(range(len(p_ok)), key=p_ok.__getitem__) in wrong)
            chance += len(wrong) / len(p_ok)
        n = len(cases)
        print(f"{name}: {n} {split} variants, {len(p_right) + len(p_wrong)} constructs ({len(p_wrong)} wrong), "
              f"{time.time() - t0:.0f} s; AUC {auc([-p for p in p_wrong], [-p for p in p_right]):.3f}; "
              f"lowest P(ok) is a wrong construct in {top1}/{n} (random pick: {chance:.1f}/{n}); "
              f"mean P(ok) right {sum(p_right) / max(len(p_right), 1):.3f}, wrong {sum(p_wrong) / max(len(p_wrong), 1):.3f}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
