"""DPO stage: preference optimisation on (refined trace, original flawed trace) pairs, from the SFT result.

Reads DPO rows in TRL's conversational format (``prompt``/``chosen``/``rejected``),
trains with ``trl.DPOTrainer`` and saves the adapter (or the full model) with the
tokenizer to ``output_dir``. Mirrors :mod:`training.sft`.

Starting from SFT (``--init_adapter``, LoRA): the SFT adapter is loaded
*trainable* on the same base model and DPO continues training it; TRL keeps a
frozen copy of it (adapter ``ref``) as the reference policy, so the reference
is the SFT model, as DPO assumes. The saved adapter therefore applies to the
base model directly and already contains SFT + DPO. With full fine-tuning, pass
the SFT output folder as ``--model_name_or_path``; TRL loads a second copy of
it as the reference.

    python -m training.dpo --recipe tiny-cpu --train_file dpo.jsonl --output_dir out/dpo --init_adapter out/sft
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class DPOScriptArguments:
    train_file: str = field(metadata={"help": "DPO rows, JSONL in TRL's conversational format (`prompt`...)."})
    init_adapter: str | None = field(
        default=None,
        metadata={"help": "PEFT adapter from the SFT stage to continue training (its frozen copy is the reference)."},
    )


def main(script_args: DPOScriptArguments, training_args, model_args, callbacks=(), resume_from_checkpoint=None):
    """Train (from ``resume_from_checkpoint``, a ``checkpoint-<step>`` folder, when given) and save; returns the
    trainer (its ``model`` is the trained model)."""
    from trl import DPOTrainer, get_peft_config

    from training.common import load_model_and_tokenizer, warn_if_truncated
    from training.data import load_dataset_for
    from training.lm_head import score_labelled_positions_only
    from training.recipe import RecipeError

    score_labelled_positions_only()  # on a CPU, the LM head projects the answers' positions only
    model, tokenizer = load_model_and_tokenizer(model_args, training_args)
    peft_config = get_peft_config(model_args)
    if script_args.init_adapter:
        if not model_args.use_peft:
            raise RecipeError("--init_adapter continues a LoRA adapter; the recipe trains without LoRA (use_peft)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, script_args.init_adapter, is_trainable=True)
        peft_config = None  # the loaded adapter is the one trained; DPOTrainer adds the frozen "ref" copy
    dataset = load_dataset_for("dpo", script_args.train_file)
    warn_if_truncated("dpo", dataset, tokenizer, training_args.max_length)

    trainer = DPOTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=list(callbacks),
    )
    if getattr(training_args, "share_prompt", False):
        from training.shared_prefix import add_shared_prefix_forward

        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        add_shared_prefix_forward(unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped)
        if trainer.ref_model is not None:
            add_shared_prefix_forward(trainer.accelerator.unwrap_model(trainer.ref_model))
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    # The frozen reference copy is training machinery, not part of the result.
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(unwrapped, "peft_config", {}):
        unwrapped.delete_adapter("ref")
    trainer.save_model(training_args.output_dir)
    return trainer


def make_parser():
    from trl import ModelConfig, TrlParser

    from training.shared_prefix import R2taDPOConfig

    return TrlParser((DPOScriptArguments, R2taDPOConfig, ModelConfig))


if __name__ == "__main__":
    from training.common import stage_cli

    sys.exit(stage_cli("dpo", make_parser, main))
