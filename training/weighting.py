"""Decision-weighted SFT loss: the tokens where an answer decides something count more.

An R2tA answer decides in a handful of tokens — which constructs a step examines, what it
finds, what the verdict claims (:func:`r2ta.prompting.decision_spans`) — and restates those
decisions in the other ~150-200. Plain SFT loss averages over all of them, so it can fall
while the decisions stay unlearnt: run64 measured the rest of the answer at loss 0.45 while
the first construct a target names kept probability 0.002 on the very rows trained on
(docs/measured/loop-run64-more-data-2026-12-03.txt).

``decision_token_weight: W`` in a recipe's ``sft`` section (1.0, the default, is plain SFT)
gives each decision token W times the weight of the other tokens *of the same answer*. The
weights of each answer are scaled so that they sum to its number of answer tokens: an
answer's share of the loss, the loss's scale and its normalisation under gradient
accumulation are those of plain SFT; only the split inside an answer changes. The trainer
logs the unweighted ``nll`` and the decision tokens' own ``decision_nll`` beside ``loss``.

Measured (run64w, docs/measured/loop-run64w-decision-weights-2026-12-03.txt): at weight 5 on
run64's 64 rows the first construct moved only 0.002 -> 0.005 while the rest of the answer
ended at loss 0.68 instead of 0.45; test F1 0.056 -> 0.025, validity 0.94 -> 0.70. Every
shipped recipe keeps weight 1; the setting stays for larger data and other answer shapes.

``defect_fact_weight: W`` does the same for the structural facts an evidence-walk step states
before its explanation on the steps that find a mistake (``key none``, ``1 end``;
:func:`r2ta.prompting.defect_fact_spans`): run64n found that SFT teaches the usual fact
there (docs/measured/loop-run64n-disguised-2026-12-06.txt). ``decision_nll`` is then the loss on
every token weighted apart from the rest (both kinds when both settings are used). Measured
(run64f, docs/measured/loop-run64m-dense-rows-2026-12-06.txt): at 10 on run64e's 64 rows the
weighted facts' loss fell 1.79 -> 0.27 but test rows' absences were read 5 of 18 (run64e 3),
and 28 of 50 answers looped; no shipped recipe uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import pad

from r2ta.prompting import decision_spans, defect_fact_spans

WEIGHTS_COLUMN = "loss_weights"


@dataclass
class R2taSFTConfig(SFTConfig):
    """``trl.SFTConfig`` and the one setting R2tA adds to it."""

    decision_token_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of an answer's decision tokens (step elements, step findings, verdict "
                          "categories and elements) against its other tokens; 1.0 is plain SFT."},
    )

    defect_fact_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the facts an evidence-walk step states on the steps that find a mistake "
                          "(key none, 1 end, no roles) against the answer's other tokens; 1.0 is plain SFT."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.decision_token_weight > 0:
            raise ValueError(f"decision_token_weight must be > 0, got {self.decision_token_weight}")
        if not self.defect_fact_weight > 0:
            raise ValueError(f"defect_fact_weight must be > 0, got {self.defect_fact_weight}")


def char_ends(token_ids: list[int], tokenizer) -> list[int]:
    """For each token, the length of the text decoded up to and including it (monotone)."""
    ends, best = [], 0
    for i in range(len(token_ids)):
        best = max(best, len(tokenizer.decode(token_ids[: i + 1])))
        ends.append(best)
    return ends


def _inside(ends: list[int], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token (its text ending at ``ends[i]``), whether it overlaps one of the sorted ``spans``."""
    out, start, k = [], 0, 0
    for end in ends:
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        out.append(k < len(spans) and spans[k][0] < end and start < spans[k][1])
        start = end
    return out


def _stronger(a: float, b: float) -> float:
    """Of two weights on one token, the one further from 1 (1 is no weight)."""
    return a if abs(math.log(a)) >= abs(math.log(b)) else b


def answer_token_weights(token_ids: list[int], tokenizer, weight: float, fact_weight: float = 1.0) -> list[float]:
    """Weights for the tokens of one answer: ``weight`` on decision tokens, ``fact_weight`` on the facts of
    steps that find a mistake, 1 elsewhere (a token in both takes the weight further from 1), scaled to sum
    to len."""
    if not token_ids:
        return []
    if weight == 1.0 and fact_weight == 1.0:
        return [1.0] * len(token_ids)
    ends = char_ends(token_ids, tokenizer)
    text = tokenizer.decode(token_ids)
    raw = [1.0] * len(token_ids)
    for spans, w in ((decision_spans(text), weight), (defect_fact_spans(text), fact_weight)):
        if w != 1.0:
            raw = [_stronger(r, w) if hit else r for r, hit in zip(raw, _inside(ends, spans))]
    scale = len(raw) / sum(raw)
    return [w * scale for w in raw]


def row_weights(labels: list[int], tokenizer, weight: float, fact_weight: float = 1.0) -> list[float]:
    """A row's weights aligned with its tokens: 0 where the label is -100, the answer's weights elsewhere.

    The answer is every run of labelled tokens (one, for a prompt-completion row)."""
    out = [0.0] * len(labels)
    i = 0
    while i < len(labels):
        if labels[i] == -100:
            i += 1
            continue
        j = i
        while j < len(labels) and labels[j] != -100:
            j += 1
        out[i:j] = answer_token_weights(labels[i:j], tokenizer, weight, fact_weight)
        i = j
    return out


class WeightedCollator:
    """Wraps TRL's collator: pads each row's ``loss_weights`` like its labels (0 on padding)."""

    def __init__(self, inner):
        if getattr(inner, "padding_free", False):
            raise ValueError("decision_token_weight does not support padding_free; set padding_free: false")
        self.inner = inner

    def __call__(self, examples):
        if not all(WEIGHTS_COLUMN in example for example in examples):  # an eval set: TRL's own loss
            return self.inner([{k: v for k, v in e.items() if k != WEIGHTS_COLUMN} for e in examples])
        weights = [torch.tensor(example.pop(WEIGHTS_COLUMN), dtype=torch.float32) for example in examples]
        batch = self.inner(examples)
        width = batch["labels"].shape[1]
        padded = pad(weights, padding_value=0.0, padding_side="right")
        if padded.shape[1] < width:  # pad_to_multiple_of
            padded = torch.nn.functional.pad(padded, (0, width - padded.shape[1]))
        batch[WEIGHTS_COLUMN] = padded[:, :width]
        return batch


class DecisionWeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss weights each answer's decision tokens by ``args.decision_token_weight``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weight = float(self.args.decision_token_weight)
        fact_weight = float(getattr(self.args, "defect_fact_weight", 1.0))
        if self.args.packing:
            raise ValueError("decision_token_weight does not support packing; set packing: false")
        tokenizer = self.processing_class
        from datasets import Dataset

        extra = {"desc": "Weighting decision tokens"} if isinstance(self.train_dataset, Dataset) else {}
        self.train_dataset = self.train_dataset.map(
            lambda row: {WEIGHTS_COLUMN: row_weights(row["labels"], tokenizer, weight, fact_weight)}, **extra)
        self.data_collator = WeightedCollator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if WEIGHTS_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, WEIGHTS_COLUMN]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop(WEIGHTS_COLUMN, None)
        if weights is None or return_outputs or not self.model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        mask = outputs.label_mask
        nll = -outputs.log_probs  # zero where the next token has no label
        w = weights[:, 1:].to(nll.dtype) * mask  # the weight of the token each position predicts
        num_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = (nll * w).sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        metrics = self._metrics["train"]
        gather = self.accelerator.gather_for_metrics
        valid = gather(mask.sum()).sum()
        decision = mask & _decision_positions(weights[:, 1:], mask, _marked_weight(self.args))
        with torch.no_grad():
            metrics["entropy"].append((gather(outputs.entropy.sum()).sum() / valid).item() if valid > 0 else 0.0)
            metrics["mean_token_accuracy"].append(
                (gather(outputs.is_top1.sum()).sum() / valid).item() if valid > 0 else 0.0)
            metrics["nll"].append((gather(nll.sum()).sum() / valid).item() if valid > 0 else 0.0)
            n_decision = gather(decision.sum()).sum()
            if n_decision > 0:
                metrics["decision_nll"].append((gather((nll * decision).sum()).sum() / n_decision).item())
        self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        return loss


def _decision_positions(weights: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """Where a row's weight is its decision weight: above the row's lowest (``weight`` > 1) or below its highest."""
    if weight > 1:
        floor = weights.masked_fill(~mask, float("inf")).min(dim=1, keepdim=True).values
        return weights > floor * (1 + 1e-4)
    ceiling = weights.masked_fill(~mask, float("-inf")).max(dim=1, keepdim=True).values
    return weights < ceiling * (1 - 1e-4)


def _marked_weight(args) -> float:
    """The weight whose tokens ``decision_nll`` reports: the one furthest from 1 (either may be 1)."""
    weights = (float(getattr(args, "decision_token_weight", 1.0)), float(getattr(args, "defect_fact_weight", 1.0)))
    return max(weights, key=lambda w: abs(math.log(w)))


def trainer_class(training_args):
    """The plain ``SFTTrainer`` unless the recipe weights decision tokens or defect facts."""
    if _marked_weight(training_args) == 1.0:
        return SFTTrainer
    return DecisionWeightedSFTTrainer
