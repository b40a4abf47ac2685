"""Teacher-forced: does a model tell the wrong constructs from the right ones, line by line?

    R2TA_DATA_DIR=DATA python scripts/walk_decisions.py [--split test] [--limit 50] [--skip-base]
        [--variants-of SFT.jsonl] BASE_MODEL_DIR [ADAPTER_DIR ...]

Prints, for the base model and then each trained model (a LoRA adapter folder on the base, or a
full fine-tuned model's folder), :mod:`r2ta.walk_probe`'s figures on the first
``--limit`` variants of the split (``--variants-of``: the variants an SFT export's rows came from, the
rows a model trained on): AUC of P(ok) between wrong and right constructs, how often the
lowest-P(ok) construct is a wrong one (beside a random pick), mean P(ok) on each.
Used for docs/measured/loop-run64k-walk-2026-12-04.txt.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from peft import PeftModel
from sqlmodel import Session, select
from transformers import AutoModelForCausalLM, AutoTokenizer

from db.engine import get_engine
from db.models import VariantRow
from r2ta.pipeline import _diagram, _truth
from r2ta.walk_probe import score, walk_case


def _variant_ids(sft_file: str) -> list[str]:
    """The variants an SFT export's rows came from; exits with a message on a file that is not one."""
    ids = []
    with open(sft_file) as handle:
        for n, line in enumerate(handle, 1):
            if line.strip():
                try:
                    ids.append(json.loads(line)["provenance"]["variant_id"])
                except (ValueError, KeyError, TypeError):
                    sys.exit(f"{sft_file}, line {n}: not an SFT export row (no provenance.variant_id)")
    return ids


def _load(base_dir: str, trained: str | None):
    """The base model, the base with a LoRA adapter, or a full fine-tuned model (no adapter_config.json)."""
    if trained and not Path(trained, "adapter_config.json").exists():
        if not Path(trained, "config.json").exists():
            sys.exit(f"{trained}: neither a LoRA adapter (adapter_config.json) nor a model (config.json)")
        return AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return (PeftModel.from_pretrained(model, trained) if trained else model).eval()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_dir", help="the base model's folder")
    ap.add_argument("adapters", nargs="*",
                    help="trained models scored after the base model: LoRA adapter folders, or full models' folders")
    ap.add_argument("--split", default="test", choices=("train", "test"))
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--skip-base", action="store_true")
    ap.add_argument("--variants-of", metavar="SFT.jsonl", help="score the variants this SFT export's rows came from")
    args = ap.parse_args(argv)
    split = args.split
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.base_dir)
    with Session(get_engine()) as session:
        if args.variants_of:
            ids = _variant_ids(args.variants_of)
            variants = list(session.exec(select(VariantRow).where(VariantRow.id.in_(ids)).order_by(VariantRow.id)))
            split = f"{len(ids)} rows of {args.variants_of}"
        else:
            variants = list(session.exec(select(VariantRow).where(VariantRow.split == split).order_by(VariantRow.id).limit(args.limit)))
    if not variants:
        sys.exit(f"no variants to score ({split}) in this database (R2TA_DATA_DIR / R2TA_DATABASE_URL)")
    cases = [walk_case(tok, v.requirements, _diagram(v), _truth(v)) for v in variants]

    for name, adapter in ([] if args.skip_base else [("base", None)]) + [(a, a) for a in args.adapters]:
        model = _load(args.base_dir, adapter)
        t0 = time.time()
        result = score(model, cases)
        print(f"{name} on {split}: {result.line()}; {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
