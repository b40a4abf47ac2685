"""SFT stage: supervised fine-tuning on the reviewed (accepted or edited) reasoning traces.

Reads SFT rows in TRL's conversational format (``messages``), trains with
``trl.SFTTrainer`` (LoRA when the recipe says ``use_peft: true``, else full
fine-tuning), and saves the adapter (or the full model) with the tokenizer to
``output_dir``. The loss covers the assistant's answer only (see
:mod:`training.data`); ``decision_token_weight`` weights the answer's decision
tokens (:mod:`training.weighting`). Mirrors :mod:`training.dpo`.

    python -m training.sft --recipe tiny-cpu --train_file sft.jsonl --output_dir out/sft
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class SFTScriptArguments:
    train_file: str = field(metadata={"help": "SFT rows, JSONL in TRL's conversational format (`messages`)."})


def main(script_args: SFTScriptArguments, training_args, model_args, callbacks=(), resume_from_checkpoint=None):
    """Train (from ``resume_from_checkpoint``, a ``checkpoint-<step>`` folder, when given) and save; returns the
    trainer (its ``model`` is the trained model)."""
    from trl import get_peft_config

    from training.common import load_model_and_tokenizer, warn_if_truncated
    from training.data import load_dataset_for
    from training.lm_head import score_labelled_positions_only
    from training.weighting import trainer_class

    score_labelled_positions_only()  # on a CPU, the LM head projects the answer's positions only
    model, tokenizer = load_model_and_tokenizer(model_args, training_args)
    dataset = load_dataset_for("sft", script_args.train_file)
    warn_if_truncated("sft", dataset, tokenizer, training_args.max_length)

    trainer = trainer_class(training_args)(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=list(callbacks),
    )
    if trainer.train_dataset is not None and len(trainer.train_dataset) == 0:
        # TRL drops a row whose answer max_length cuts away whole; with none left, its sampler fails with
        # "num_samples should be a positive integer value, but got num_samples=0"
        from training.recipe import RecipeError

        raise RecipeError(
            f"sft: none of the {len(dataset)} rows keeps an answer token within max_length="
            f"{training_args.max_length}: each row's prompt fills it. Raise max_length in the recipe "
            "(the log gives the longest row's tokens)."
        )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    return trainer


def make_parser():
    from trl import ModelConfig, TrlParser

    from training.weighting import R2taSFTConfig

    return TrlParser((SFTScriptArguments, R2taSFTConfig, ModelConfig))


if __name__ == "__main__":
    from training.common import stage_cli

    sys.exit(stage_cli("sft", make_parser, main))
