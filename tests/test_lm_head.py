"""On a CPU the fused LM head scores only labelled positions (training/lm_head.py), with TRL's full result.

The tiny Llama with LoRA, labels on the answer only: the per-token log-probabilities, entropy,
top-1 flags and LoRA gradients are the same whether the head projects every position (TRL's CPU
behaviour) or the labelled ones; and the head is handed exactly the labelled positions.
"""

from __future__ import annotations

import pytest
import torch

from training import lm_head
from training.tiny import build_tiny_llama, build_tiny_tokenizer

LORA_TARGETS = ["q_proj", "v_proj", "down_proj"]


@pytest.fixture(autouse=True)
def _restore_trl():
    import trl.trainer.utils as trl_utils

    before = trl_utils._use_triton
    yield
    trl_utils._use_triton = before


@pytest.fixture()
def model_and_batch():
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    tok = build_tiny_tokenizer()
    model = build_tiny_llama(tok).double()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0))
    torch.manual_seed(1)
    for name, param in peft.named_parameters():
        if "lora_B" in name:  # B = 0 would give the LoRA A weights no gradient
            torch.nn.init.normal_(param, std=0.05)
    peft.train()
    prompts = ["Diagram: PERSON(id, name) WORKS_FOR DEPT. Find the mistake.", "ENTITY X; REL R;"]
    answers = [" Step 1 [PERSON]: ok. VERDICT: none", " missing key"]
    rows, starts = [], []
    for prompt, answer in zip(prompts, answers):
        rows.append(tok(prompt + answer, add_special_tokens=False)["input_ids"])
        starts.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
    width = max(map(len, rows))
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    labels = ids.masked_fill(mask == 0, -100)
    for i, start in enumerate(starts):
        labels[i, :start] = -100
    return peft, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _run(peft, batch):
    peft.zero_grad()
    out = peft(**batch, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}
    return out, grads


def _spy_rows(monkeypatch) -> list[int]:
    """How many positions each call hands the chunked log-prob function."""
    import trl.trainer.utils as trl_utils

    seen, apply = [], trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    return seen


def test_cpu_scores_only_labelled_positions_with_the_full_result(model_and_batch, monkeypatch):
    peft, batch = model_and_batch
    seen = _spy_rows(monkeypatch)
    lm_head.score_all_positions()
    full, full_grads = _run(peft, batch)
    assert lm_head.score_labelled_positions_only() is True
    compact, compact_grads = _run(peft, batch)

    labelled = int((batch["labels"][:, 1:] != -100).sum())
    positions = batch["input_ids"].shape[0] * (batch["input_ids"].shape[1] - 1)
    assert labelled < positions / 2
    assert seen == [positions, labelled]  # TRL on a CPU projected every position; now only the labelled ones

    assert torch.equal(full.label_mask, compact.label_mask)
    for field in ("log_probs", "entropy"):
        torch.testing.assert_close(getattr(compact, field), getattr(full, field), rtol=1e-6, atol=1e-7)
        assert torch.all(getattr(compact, field)[~compact.label_mask] == 0)
    assert torch.equal(compact.is_top1, full.is_top1)
    torch.testing.assert_close(compact.loss, full.loss, rtol=1e-6, atol=1e-7)
    assert full_grads.keys() == compact_grads.keys() and full_grads
    for name, grad in full_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(compact_grads[name], grad, rtol=1e-5, atol=1e-8)


def test_switch_is_idempotent_and_leaves_gpus_to_trl():
    import trl.trainer.utils as trl_utils

    lm_head.score_all_positions()
    original = trl_utils._use_triton
    assert original(torch.device("cpu")) is False  # TRL's own choice on a CPU: every position
    assert lm_head.score_labelled_positions_only() and lm_head.score_labelled_positions_only()
    patched = trl_utils._use_triton
    assert patched.original is original  # not wrapped twice
    assert patched(torch.device("cpu")) is True
    assert patched(torch.device("meta")) is original(torch.device("meta"))
    lm_head.score_all_positions()
    assert trl_utils._use_triton is original


def test_training_stages_turn_it_on(monkeypatch):
    """sft.main and dpo.main switch it on before building their trainer (a TRL that renamed the switch fails here)."""
    import trl.trainer.utils as trl_utils

    from training import dpo, sft

    lm_head.score_all_positions()

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr("training.common.load_model_and_tokenizer", stop)
    for module in (sft, dpo):
        lm_head.score_all_positions()
        with pytest.raises(Stop):
            module.main(None, None, None)
        assert getattr(trl_utils._use_triton, "_r2ta_compact_on_cpu", False), module.__name__
