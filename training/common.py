"""What ``sft.py`` and ``dpo.py`` share: loading the model and tokenizer, and their command line.

Both stage scripts run alone as well as from the runner::

    python -m training.sft --recipe tiny-cpu --train_file sft.jsonl --output_dir out/sft
    python -m training.dpo --recipe tiny-cpu --train_file dpo.jsonl --output_dir out/dpo --init_adapter out/sft

``--recipe`` (name or path) supplies the defaults, ``--precision`` overrides the
recipe's ``run.precision``, and any ``SFTConfig``/``DPOConfig``/``ModelConfig``
flag (``--max_steps 5``) overrides the recipe, as with TRL's own scripts.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("r2ta.training")


def load_model_and_tokenizer(model_args, training_args):
    """The base model in the precision chosen for this machine, and its tokenizer (with a pad token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.recipe import RecipeError, resolve_model_path

    if model_args.load_in_4bit or model_args.load_in_8bit:
        # QLoRA needs bitsandbytes and a CUDA GPU; the project does not ship it.
        raise RecipeError("load_in_4bit/load_in_8bit are not supported here (bitsandbytes is not a dependency)")
    path = resolve_model_path(model_args.model_name_or_path or "")
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise RecipeError(f"the tokenizer of {path} has no chat template; use an instruct model (or set one)")
    return model, tokenizer


def warn_if_truncated(stage: str, dataset, tokenizer, max_length: int | None) -> None:
    from training.data import count_over_length

    over, longest = count_over_length(dataset, tokenizer, max_length)
    logger.info("%s: %d rows, longest %d tokens (max_length %s)", stage, len(dataset), longest, max_length)
    if over:
        logger.warning(
            "%s: %d of %d rows are longer than max_length=%s tokens; their answers are cut. "
            "Raise max_length in the recipe (the longest row has %d tokens).",
            stage, over, len(dataset), max_length, longest,
        )


def stage_cli(stage: str, make_parser, main, argv: list[str] | None = None) -> int:
    """Run one stage from the command line: ``--recipe NAME [--precision P]`` plus TRL flags."""
    import argparse

    from r2ta.errors import R2taError
    from training import hardware
    from training.recipe import load_recipe, parse_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default="tiny-cpu")
    pre.add_argument("--precision", default=None, choices=hardware.PRECISIONS)
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        recipe = load_recipe(known.recipe)
        precision = hardware.resolve_precision(known.precision or recipe.run.precision, hardware.detect_hardware())
        parsed = parse_stage(make_parser(), recipe, stage, precision, rest)
        main(*parsed)
    except R2taError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
