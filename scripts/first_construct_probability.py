"""Teacher-forced: how much probability does a model give the first construct its SFT targets name?

    python scripts/first_construct_probability.py [--skip-base] BASE_MODEL_DIR SFT_JSONL [ADAPTER_DIR ...]

For each SFT row (an exported sft.jsonl), the probability of the first element of "Step 1 [..."
given the prompt (the choice of which construct is wrong), against the mean loss of the other
answer tokens (which mostly follow from that choice). Base model first, then each LoRA adapter.
Used for docs/measured/loop-run64-more-data-2026-12-03.txt.
"""
import json
import math
import sys
import time

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
argv = sys.argv[1:]
skip_base = "--skip-base" in argv
argv = [a for a in argv if a != "--skip-base"]
base_dir, sft_file, adapters = argv[0], argv[1], argv[2:]
tok = AutoTokenizer.from_pretrained(base_dir)
rows = [json.loads(line) for line in open(sft_file, encoding="utf-8")]
def load(adapter):
    m = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    if adapter:
        m = PeftModel.from_pretrained(m, adapter)
    return m.eval()
for name, adapter in ([] if skip_base else [("base", None)]) + [(a, a) for a in adapters]:
    model = load(adapter)
    t0 = time.time(); stats = {"head": [], "rest": [], "top1": 0}
    for r in rows:
        msgs = r["messages"]
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        answer = msgs[-1]["content"]
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        # the first step's element list: "Step 1 [" ... up to the first "," or "]"
        head_end = answer.index("[") + 1
        stop = min(i for i in (answer.find(",", head_end), answer.find("]", head_end)) if i > 0)
        a_pre = tok(answer[:head_end], add_special_tokens=False)["input_ids"]
        a_el = tok(answer[:stop], add_special_tokens=False)["input_ids"]
        a_all = tok(answer, add_special_tokens=False)["input_ids"]
        if a_el[: len(a_pre)] != a_pre or a_all[: len(a_el)] != a_el:
            continue
        ids = torch.tensor([p_ids + a_all])
        with torch.inference_mode():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        tgt = ids[0, 1:]
        lp = logp[torch.arange(len(tgt)), tgt]
        n0 = len(p_ids) - 1
        el = range(n0 + len(a_pre), n0 + len(a_el))
        stats["head"].append(sum(lp[i].item() for i in el))
        stats["top1"] += int(logp[el[0]].argmax().item() == tgt[el[0]].item())
        rest = [lp[i].item() for i in range(n0, n0 + len(a_all)) if i not in el]
        stats["rest"].append(sum(rest) / len(rest))
    n = len(stats["head"])
    print(f"{name}: {n} rows, {time.time()-t0:.0f} s; P(first element of step 1, whole) geo-mean "
          f"{math.exp(sum(stats['head'])/n):.4f}; its first token top-1 {stats['top1']}/{n}; "
          f"other answer tokens: mean loss {-sum(stats['rest'])/n:.3f} (P {math.exp(sum(stats['rest'])/n):.3f})")
