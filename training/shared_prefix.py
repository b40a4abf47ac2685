"""DPO with the start a pair shares encoded once: the prompt, and the answer up to where chosen and rejected part.

TRL's ``DPOTrainer`` runs chosen and rejected as two rows of one batch, so the prompt every pair
shares (1,200-2,100 tokens of system message, requirements and diagram here, against answers of
~200-450) is encoded twice by the policy and twice by the reference, and on a CPU the two rows'
padding sends attention to its masked kernel (r2ta/kv_cache.py measured that kernel ~2.7x slower
than the causal one at these lengths). R2tA's pairs share more than the prompt: a planted
negative is the chosen answer with one step changed or dropped
(:mod:`r2ta.negatives`), so the two agree up to that step.

:func:`add_shared_prefix_forward` wraps the model's fused-LM-head forward (the one TRL's DPO calls,
``model(..., labels=..., fused_lm_head=True)``): for a batch of one pair it runs the backbone once
over the tokens both rows start with, repeats that KV cache for the two rows, runs each row's rest
on it, and scores the labelled positions with the LM head. The log-probabilities, the loss and
its gradients are the concatenated forward's up to float rounding (tests/test_shared_prefix.py checks
them in float64 on a tiny Llama); nothing else in TRL's loss changes. A batch it cannot share —
more than one pair, left padding, no common start, activation checkpointing on while training
(the cache cannot be kept under it), MoE router logits, any other input — goes to TRL's own
forward unchanged. ``share_prompt: false`` in the recipe's ``dpo`` section turns it off.

``python -m benchmarks.bench_training`` prints DPO tokens/s with and without it.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
from trl import DPOConfig

_SHAREABLE = {"input_ids", "attention_mask", "labels", "use_cache", "fused_lm_head"}


@dataclass
class R2taDPOConfig(DPOConfig):
    """``trl.DPOConfig`` and the one setting R2tA adds to it."""

    share_prompt: bool = field(
        default=True,
        metadata={"help": "Encode the start chosen and rejected share (the prompt, and the answer up to where they "
                          "differ) once per pair instead of twice (training.shared_prefix). Batches of one pair, "
                          "without activation checkpointing; other batches use TRL's forward."},
    )


def common_start(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading positions the two rows of ``input_ids`` share, real tokens (mask 1) in both."""
    same = (input_ids[0] == input_ids[1]) & (attention_mask[0] == 1) & (attention_mask[1] == 1)
    differ = (~same).nonzero()
    return int(differ[0, 0]) if len(differ) else input_ids.shape[1]


def _shareable(model, args: tuple, kwargs: dict) -> bool:
    if args or not kwargs.get("fused_lm_head"):
        return False
    # PEFT passes inputs_embeds / output_attentions / output_hidden_states / return_dict, unset
    for key, value in kwargs.items():  # (identity tests: a tensor compared with == would not give one bool)
        if key not in _SHAREABLE and not (value is None or value is False or (key == "return_dict" and value is True)):
            return False
    ids, mask, labels = kwargs.get("input_ids"), kwargs.get("attention_mask"), kwargs.get("labels")
    if ids is None or mask is None or labels is None or ids.dim() != 2 or ids.shape[0] != 2:
        return False
    if model.training and getattr(model, "is_activation_checkpointing", False):  # the layers would drop the cache
        return False
    return common_start(ids, mask) >= 2


def shared_prefix_log_probs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
    """The per-token fields of TRL's ``FusedCausalLMOutput`` for one pair, ``[2, L-1]`` each, 0 where the label is -100.

    ``log_probs`` of each next-token label (with gradient), and, for TRL's metrics and WPO weights,
    without gradient: ``entropy``, ``mean_logits``, ``is_top1``, ``log_sum_sq_probs``; and ``label_mask``.
    """
    start = min(common_start(input_ids, attention_mask), input_ids.shape[1] - 1)
    backbone = getattr(model, model.base_model_prefix)
    head = backbone(input_ids=input_ids[:1, :start], attention_mask=attention_mask[:1, :start], use_cache=True)
    cache = head.past_key_values
    cache.batch_repeat_interleave(2)
    rest = backbone(input_ids=input_ids[:, start:], attention_mask=attention_mask, past_key_values=cache, use_cache=True)
    hidden = torch.cat([head.last_hidden_state.expand(2, -1, -1), rest.last_hidden_state], dim=1)[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    lm_head = model.get_output_embeddings()
    scored = lm_head(hidden[mask].to(lm_head.weight.dtype))
    scored = scored.to(torch.promote_types(scored.dtype, torch.float32))  # bf16 logits scored in fp32
    log_softmax = torch.log_softmax(scored, dim=-1)
    wanted = targets[mask]
    picked = log_softmax.gather(-1, wanted[:, None])[:, 0]

    def spread(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)

    with torch.no_grad():
        probs = log_softmax.exp()
        fields = {
            "entropy": spread(-(probs * log_softmax).sum(-1)),
            "mean_logits": spread(scored.mean(-1)),
            "is_top1": spread(scored.argmax(-1) == wanted),
            "log_sum_sq_probs": spread(torch.logsumexp(2 * log_softmax, dim=-1)),
        }
    return {"log_probs": spread(picked), **fields, "label_mask": mask}


def add_shared_prefix_forward(model) -> None:
    """Wrap ``model``'s forward (TRL's fused LM head already added) so that a pair's shared start is encoded once.

    ``model``: the causal LM itself (under PEFT, ``peft_model.get_base_model()``: the LoRA layers live
    in its modules, and enabling, disabling or switching adapters works as before).
    """
    from trl.trainer.utils import FusedCausalLMOutput

    inner = model.forward

    def forward(self, *args, **kwargs):
        if not _shareable(self, args, kwargs):
            return inner(*args, **kwargs)
        fields = shared_prefix_log_probs(self, kwargs["input_ids"], kwargs["attention_mask"], kwargs["labels"])
        loss = -fields["log_probs"].sum() / fields["label_mask"].sum().clamp(min=1)
        return FusedCausalLMOutput(loss=loss, **fields)

    model.forward = types.MethodType(forward, model)
