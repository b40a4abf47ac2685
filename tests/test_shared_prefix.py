"""DPO with a pair's shared start encoded once (training/shared_prefix.py) scores as TRL's concatenated forward.

In float64 on the tiny Llama with LoRA: the same per-token log-probabilities and the same LoRA
gradients, with the adapter on (the policy) and off (the reference); batches it cannot share go to
TRL's forward; and a DPO stage logs the same losses with and without it.
"""

from __future__ import annotations

import math

import pytest
import torch

import training.shared_prefix as shared_prefix
from training.shared_prefix import add_shared_prefix_forward, common_start
from training.tiny import build_tiny_llama, build_tiny_tokenizer, smoke_rows

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _pair(tok, prompt: str, chosen: str, rejected: str, left: bool = False):
    """TRL's layout of one pair: [chosen, rejected], padded (right unless ``left``), labels on the answers only."""
    start = len(tok(prompt, add_special_tokens=False)["input_ids"])
    rows = [tok(prompt + answer, add_special_tokens=False)["input_ids"] for answer in (chosen, rejected)]
    width = max(map(len, rows))
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, row in enumerate(rows):
        where = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, where], mask[i, where] = torch.tensor(row), 1
    labels = ids.masked_fill(mask == 0, -100)
    for i, row in enumerate(rows):
        first = width - len(row) if left else 0
        labels[i, first : first + start] = -100
    return ids, mask, labels


@pytest.fixture()
def lora_model():
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    tok = build_tiny_tokenizer()
    model = build_tiny_llama(tok).double()
    add_fused_lm_head(model)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0))
    torch.manual_seed(1)
    for name, param in peft.named_parameters():
        if "lora_B" in name:  # LoRA starts as a no-op (B = 0); make it change the model so its gradients mean something
            torch.nn.init.normal_(param, std=0.05)
    peft.train()
    return tok, peft


def _scores(peft, batch, adapter: bool = True, exact: bool = False):
    """(per-token log-probs, LoRA gradients of a DPO-like signed sum of the rows' log-probs).

    As TRL's DPO asks for them (``fused_lm_head=True``; TRL's fused head scores in float32), or with
    ``exact`` from the model's own float64 logits (the concatenated forward without TRL's head)."""
    ids, mask, labels = batch
    params = [p for n, p in peft.named_parameters() if "lora_" in n]
    context = peft.disable_adapter() if not adapter else torch.enable_grad()
    with context:
        if exact:
            logits = peft(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
            targets = labels[:, 1:]
            picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
            log_probs = picked.masked_fill(targets == -100, 0.0)
        else:
            log_probs = peft(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False).log_probs
        if not adapter:
            return log_probs.detach(), None
        sign = torch.tensor([1.0, -0.7], dtype=log_probs.dtype).repeat(len(log_probs) // 2)  # chosen +, rejected -
        signed = (log_probs.sum(dim=1) * sign).sum()
        return log_probs.detach(), torch.autograd.grad(signed, params)


def test_a_pair_encoded_from_its_shared_start_scores_as_the_concatenated_forward(lora_model, monkeypatch):
    tok, peft = lora_model
    prompt = "<|im_start|>user\nCheck EMPLOYEE and WORKS_FOR.<|im_end|>\n<|im_start|>assistant\n"
    batch = _pair(tok, prompt, "Step 1 [EMPLOYEE]: key Ssn -> ok\nVERDICT:\nnone<|im_end|>",
                  "Step 1 [EMPLOYEE]: no key -> missing_key\nVERDICT:\nMISTAKE: missing_key | EMPLOYEE<|im_end|>")
    assert common_start(batch[0], batch[1]) > len(tok(prompt)["input_ids"])  # the answers share "Step 1 [EMPLOYEE]: "
    before, before_grads = _scores(peft, batch, exact=True)
    before_ref, _ = _scores(peft, batch, adapter=False, exact=True)
    trl_fused, _ = _scores(peft, batch)

    calls = []
    real = shared_prefix.shared_prefix_log_probs
    monkeypatch.setattr(shared_prefix, "shared_prefix_log_probs", lambda *a: calls.append(1) or real(*a))
    add_shared_prefix_forward(peft.get_base_model())
    after, after_grads = _scores(peft, batch)
    after_ref, _ = _scores(peft, batch, adapter=False)
    assert len(calls) == 2  # policy and reference both took the shared path
    assert after.dtype == torch.float64 and torch.allclose(after, before, rtol=0, atol=1e-12)
    assert torch.allclose(after.float(), trl_fused, rtol=0, atol=1e-5)  # and TRL's float32 head agrees
    assert torch.allclose(after_ref, before_ref, rtol=0, atol=1e-12)
    assert not torch.allclose(after, after_ref)  # the adapter was on, then off
    assert (after[batch[2][:, 1:] == -100] == 0).all()  # zero where nothing is scored, as TRL's fused head
    for a, b in zip(after_grads, before_grads):
        # ~1e-7 apart (relative, per tensor): Llama's RMSNorm takes its variance in float32 even in a float64 model, and the two
        # ways sum the prompt's gradient in a different order (a lost or doubled prompt gradient is ~1e-1)
        assert (a - b).norm() <= 1e-6 * b.norm()
    assert any(g.abs().sum() > 0 for g in after_grads)


def test_batches_that_cannot_share_go_to_trls_forward(lora_model, monkeypatch):
    tok, peft = lora_model
    prompt = "<|im_start|>user\nCheck it.<|im_end|>\n<|im_start|>assistant\n"
    right = _pair(tok, prompt, "ok<|im_end|>", "a longer wrong answer<|im_end|>")
    left = _pair(tok, prompt, "ok<|im_end|>", "a longer wrong answer<|im_end|>", left=True)
    expected = {name: _scores(peft, b)[0] for name, b in (("right", right), ("left", left))}
    four = tuple(torch.cat([t, t]) for t in right)
    expected_four = _scores(peft, four)[0]

    calls = []
    real = shared_prefix.shared_prefix_log_probs
    monkeypatch.setattr(shared_prefix, "shared_prefix_log_probs", lambda *a: calls.append(1) or real(*a))
    base = peft.get_base_model()
    add_shared_prefix_forward(base)
    assert common_start(left[0], left[1]) == 0  # left padding: the rows do not start together
    assert torch.allclose(_scores(peft, left)[0], expected["left"], atol=1e-12) and calls == []
    assert torch.allclose(_scores(peft, four)[0], expected_four, atol=1e-12) and calls == []  # two pairs
    extra = base(input_ids=right[0], attention_mask=right[1], labels=right[2], fused_lm_head=True,
                 position_ids=torch.arange(right[0].shape[1])[None].expand(2, -1))  # an input it does not take: TRL's
    assert torch.allclose(extra.log_probs, expected["right"], atol=1e-5) and calls == []
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert torch.allclose(_scores(peft, right)[0], expected["right"], atol=1e-12) and calls == []  # cache dropped there
    base.gradient_checkpointing_disable()
    assert torch.allclose(_scores(peft, right)[0].float(), expected["right"], atol=1e-5) and calls == [1]  # shared


@pytest.mark.slow
@pytest.mark.parametrize("from_sft", [False, True], ids=["new-adapter", "sft-adapter"])
def test_a_dpo_stage_logs_the_same_losses_with_and_without_sharing(tmp_path, monkeypatch, from_sft):
    """TRL's DPOTrainer end to end, one pair a step (where sharing applies), fp32: the logged losses, margins
    and log-probs agree, and the shared path did run — with a new adapter (reference: adapters off) and
    continuing an SFT adapter (reference: TRL's frozen "ref" copy of it), as the loop runs it."""
    from r2ta.pairs import write_rows
    from training import dpo, hardware, sft
    from training.recipe import load_recipe, parse_stage

    sft_rows, rows = smoke_rows(4)
    write_rows(rows, tmp_path / "dpo.jsonl")
    recipe = load_recipe("tiny-cpu")
    precision = hardware.resolve_precision("fp32", hardware.detect_hardware())
    init = []
    if from_sft:
        write_rows(sft_rows, tmp_path / "sft.jsonl")
        sft.main(*parse_stage(sft.make_parser(), recipe, "sft", precision, ["--train_file", str(tmp_path / "sft.jsonl"),
                                                                            "--output_dir", str(tmp_path / "sft"), "--max_steps", "2"]))
        init = ["--init_adapter", str(tmp_path / "sft")]
    calls = []
    real = shared_prefix.shared_prefix_log_probs
    monkeypatch.setattr(shared_prefix, "shared_prefix_log_probs", lambda *a: calls.append(1) or real(*a))
    logs = {}
    for share in ("true", "false"):
        args = parse_stage(dpo.make_parser(), recipe, "dpo", precision,
                           ["--train_file", str(tmp_path / "dpo.jsonl"), "--output_dir", str(tmp_path / share),
                            "--max_steps", "3", "--per_device_train_batch_size", "1", "--share_prompt", share, *init])
        assert args[1].share_prompt is (share == "true")
        trainer = dpo.main(*args)
        logs[share] = [h for h in trainer.state.log_history if "loss" in h]
        if share == "true":
            assert len(calls) == 2 * 3  # policy and reference, every step
    assert len(logs["true"]) == len(logs["false"]) == 3
    for shared, plain in zip(logs["true"], logs["false"]):
        for key in ("loss", "rewards/margins", "logps/chosen", "logps/rejected", "entropy", "logits/chosen",
                    "logits/rejected", "mean_token_accuracy"):
            assert math.isclose(shared[key], plain[key], rel_tol=1e-4, abs_tol=1e-5), (key, shared[key], plain[key])
