"""A tiny Llama and its tokenizer, built in-process: for tests, smoke runs and benchmarks.

Nothing is downloaded. The tokenizer is byte-level (every byte is a token, no
merges), so any text encodes; it carries a ChatML chat template like SmolLM2's.
The model is a two-layer Llama with a 32-wide hidden state: it learns nothing
useful, but it exercises exactly the code paths the real models take (chat
template, LoRA target modules ``q_proj``...``down_proj``, SFT then DPO).

The recipe ``tiny-cpu`` names it as ``model_name_or_path: builtin:tiny-llama``;
:func:`ensure_tiny_llama` writes it once to a folder and returns that folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TINY_LLAMA = "tiny-llama"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer without merges (about 260 tokens) with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_llama(tokenizer, *, seed: int = 0):
    """A randomly initialised two-layer Llama sized to ``tokenizer`` (about 40k parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def ensure_tiny_llama(folder: Path) -> Path:
    """Write the tiny model and tokenizer to ``folder`` unless it already holds them; return ``folder``."""
    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(tokenizer)
    # Write beside the target and rename, so two runs starting at once never see half a model.
    staging = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(folder)
    except OSError:  # another run renamed its copy first: the same deterministic model
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def smoke_rows(n: int) -> tuple[list[dict], list[dict]]:
    """``n`` short SFT rows and ``n`` DPO rows in the export format (validated by :mod:`r2ta.pairs`).

    Real prompts are ~8,000 bytes, so ~8,000 tokens for the byte-level tiny
    tokenizer; these keep the prompt's message shape with one-line contents.
    """
    from r2ta.pairs import PROMPT_ROLES, validate_dpo, validate_sft

    good = ("Step 1 [WORKS_FOR]: EMPLOYEE is drawn (0,N) in WORKS_FOR -> cardinality\n"
            "VERDICT:\nMISTAKE: cardinality | WORKS_FOR, EMPLOYEE | each employee works for one department")
    sft, dpo = [], []
    for i in range(n):
        texts = {
            "system": "You audit EER diagrams: reason step by step, then give a verdict.",
            "user": f"Requirements: each employee works for one department.\nDiagram {i}: EMPLOYEE(Ssn), "
                    "DEPARTMENT(Dnumber), WORKS_FOR(EMPLOYEE 0..N, DEPARTMENT 0..N).",
            "assistant": "Step 1 [EMPLOYEE]: Ssn is the key -> ok\nVERDICT:\nNONE",
        }
        prompt = [{"role": role, "content": texts[role]} for role in PROMPT_ROLES]
        bad = f"Step 1 [PROJECT]: PROJECT has no key -> missing_key\nVERDICT:\nMISTAKE: missing_key | PROJECT | no key {i}"
        answer = [{"role": "assistant", "content": good}]
        sft.append(validate_sft({"messages": prompt + answer, "provenance": {"row": i}}))
        dpo.append(validate_dpo({"prompt": prompt, "chosen": answer,
                                 "rejected": [{"role": "assistant", "content": bad}], "provenance": {"row": i}}))
    return sft, dpo
