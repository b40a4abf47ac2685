"""Teacher-forced: does a model tell the wrong constructs from the right ones, line by line?

    R2TA_DATA_DIR=DATA python scripts/walk_decisions.py [--split test] [--limit 50] [--skip-base]
        [--variants-of SFT.jsonl] BASE_MODEL_DIR [ADAPTER_DIR ...]

Prints, for the base model and then each LoRA adapter, :mod:`r2ta.walk_probe`'s figures on the first
``--limit`` variants of the split (``--variants-of``: the variants an SFT export's rows came from, the
rows a model trained on): AUC of P(ok) between wrong and right constructs, how often the
lowest-P(ok) construct is a wrong one (beside a random pick), mean P(ok) on each.
Used for docs/measured/loop-run64k-walk-2026-12-04.txt.
"""
from __future__ import annotations

import json
import sys
import time

import torch
from peft import PeftModel
from sqlmodel import Session, select
from transformers import AutoModelForCausalLM, AutoTokenizer

from db.engine import get_engine
from db.models import VariantRow
from r2ta.pipeline import _diagram, _truth
from r2ta.walk_probe import score, walk_case


def main(argv: list[str]) -> None:
    split, limit, skip_base = "test", 50, "--skip-base" in argv
    argv = [a for a in argv if a != "--skip-base"]
    sft_file = None
    for flag in ("--split", "--limit", "--variants-of"):
        if flag in argv:
            i = argv.index(flag)
            value = argv[i + 1]
            del argv[i : i + 2]
            if flag == "--split":
                split = value
            elif flag == "--limit":
                limit = int(value)
            else:
                sft_file = value
    base_dir, adapters = argv[0], argv[1:]
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(base_dir)
    with Session(get_engine()) as session:
        if sft_file:
            with open(sft_file) as handle:
                ids = [json.loads(line)["provenance"]["variant_id"] for line in handle if line.strip()]
            variants = list(session.exec(select(VariantRow).where(VariantRow.id.in_(ids)).order_by(VariantRow.id)))
            split = f"{len(ids)} rows of {sft_file}"
        else:
            variants = list(session.exec(select(VariantRow).where(VariantRow.split == split).order_by(VariantRow.id).limit(limit)))
    cases = [walk_case(tok, v.requirements, _diagram(v), _truth(v)) for v in variants]

    for name, adapter in ([] if skip_base else [("base", None)]) + [(a, a) for a in adapters]:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()
        t0 = time.time()
        result = score(model, cases)
        print(f"{name} on {split}: {result.line()}; {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
