"""Teacher-forced: how much probability does a model give the first construct its SFT targets name?

    python scripts/first_construct_probability.py [--skip-base] BASE_MODEL_DIR SFT_JSONL [ADAPTER_DIR ...]

For each SFT row (an exported sft.jsonl), the probability of the first element of "Step 1 [..."
given the prompt (the choice of which construct is wrong), against the mean loss of the other
answer tokens (which mostly follow from that choice). Base model first, then each LoRA adapter.
Used for docs/measured/loop-run64-more-data-2026-12-03.txt.
"""
from __future__ import annotations

import json
import math
import sys
import time

import torch


def first_element_end(answer: str) -> int | None:
    """Where the first element of the answer's first step list ends ("Step 1 [PROJECT, ..." -> after PROJECT);
    None when the answer has no step list."""
    if "[" not in answer:
        return None
    head_end = answer.index("[") + 1
    ends = [i for i in (answer.find(",", head_end), answer.find("]", head_end)) if i > 0]
    return min(ends) if ends else None


def row_figures(model, tok, messages: list[dict]) -> tuple[float, bool, float] | None:
    """(log P of the first element given the prompt, its first token ranked first, the mean log P of the other
    answer tokens) for one SFT row; None when the answer names no first element or its tokens do not split there."""
    prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    answer = messages[-1]["content"]
    stop = first_element_end(answer)
    if stop is None:
        return None
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_pre = tok(answer[: answer.index("[") + 1], add_special_tokens=False)["input_ids"]
    a_el = tok(answer[:stop], add_special_tokens=False)["input_ids"]
    a_all = tok(answer, add_special_tokens=False)["input_ids"]
    if a_el[: len(a_pre)] != a_pre or a_all[: len(a_el)] != a_el or len(a_el) == len(a_pre):
        return None
    ids = torch.tensor([p_ids + a_all])
    with torch.inference_mode():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    tgt = ids[0, 1:]
    lp = logp[torch.arange(len(tgt)), tgt]
    n0 = len(p_ids) - 1
    el = range(n0 + len(a_pre), n0 + len(a_el))
    rest = [lp[i].item() for i in range(n0, n0 + len(a_all)) if i not in el]
    return (sum(lp[i].item() for i in el), logp[el[0]].argmax().item() == tgt[el[0]].item(),
            sum(rest) / max(len(rest), 1))


def main(argv: list[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    skip_base = "--skip-base" in argv
    argv = [a for a in argv if a != "--skip-base"]
    if len(argv) < 2:
        sys.exit(__doc__)
    base_dir, sft_file, adapters = argv[0], argv[1], argv[2:]
    tok = AutoTokenizer.from_pretrained(base_dir)
    rows = [json.loads(line) for line in open(sft_file, encoding="utf-8") if line.strip()]
    for name, adapter in ([] if skip_base else [("base", None)]) + [(a, a) for a in adapters]:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()
        t0 = time.time()
        figures = [f for r in rows if (f := row_figures(model, tok, r["messages"])) is not None]
        n = len(figures)
        if not n:
            print(f"{name}: no row names a first element to score")
            continue
        head, top1, rest = sum(f[0] for f in figures), sum(f[1] for f in figures), sum(f[2] for f in figures)
        print(f"{name}: {n} rows, {time.time()-t0:.0f} s; P(first element of step 1, whole) geo-mean "
              f"{math.exp(head/n):.4f}; its first token top-1 {top1}/{n}; "
              f"other answer tokens: mean loss {-rest/n:.3f} (P {math.exp(rest/n):.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
