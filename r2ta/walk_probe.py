"""Teacher-forced: does a model tell the wrong constructs of a diagram from the right ones, line by line?

The probe behind ``scripts/walk_decisions.py`` (docs/measured/loop-run64k-walk-*.txt). For a variant,
the answer that walks the diagram and finds nothing (``Step n [CONSTRUCT]: -> ok`` for every line,
:func:`r2ta.audit.walk_steps` with no mistakes) is scored under the model after the variant's prompt.
For each step, P(ok) is the probability of its decision: the tokens from the end of the construct's
name to the end of ``-> ok`` (``]: -> ok``). A model that knows a construct is wrong gives them little.
Scored against the ground truth's mistakes, anchored to constructs as a walk anchors them
(:func:`r2ta.audit.anchor`):

* AUC: the chance that a wrong construct gets a lower P(ok) than a right one (0.5 = no idea);
* top-1: in how many variants the construct with the lowest P(ok) has a mistake, beside what picking
  a construct at random would score;
* mean P(ok) on right and on wrong constructs.

No generation: one forward pass per variant, logits kept only where they predict an answer token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r2ta.audit import anchor, constructs, walk_steps
from r2ta.eerd import EERD, Mistake
from r2ta.prompting import build_messages, render_trace


@dataclass
class WalkCase:
    prompt_ids: list[int]
    answer: str  # the all-ok walk
    answer_ids: list[int]
    spans: list[list[int]]  # per step, the indices into answer_ids of its decision tokens
    wrong: set[int]  # the steps (constructs) a ground-truth mistake is anchored to


@dataclass
class WalkScore:
    variants: int
    p_right: list[float]
    p_wrong: list[float]
    top1: int  # variants whose lowest-P(ok) construct is a wrong one
    chance: float  # what a construct picked at random would score, summed over the variants

    @property
    def auc(self) -> float:
        return auc([-p for p in self.p_wrong], [-p for p in self.p_right])

    def line(self) -> str:
        n = self.variants
        mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
        return (f"{n} variants, {len(self.p_right) + len(self.p_wrong)} constructs ({len(self.p_wrong)} wrong); "
                f"AUC {self.auc:.3f}; lowest P(ok) is a wrong construct in {self.top1}/{n} "
                f"(random pick: {self.chance:.1f}/{n}); mean P(ok) right {mean(self.p_right):.3f}, "
                f"wrong {mean(self.p_wrong):.3f}")


def auc(wrong: list[float], right: list[float]) -> float:
    """P(a score from ``wrong`` > one from ``right``), ties counted half (Mann-Whitney); NaN if either is empty."""
    if not wrong or not right:
        return float("nan")
    wins = sum((w > r) + 0.5 * (w == r) for w in wrong for r in right)
    return wins / (len(wrong) * len(right))


def walk_case(tokenizer, requirements: str, diagram: EERD, truth: list[Mistake]) -> WalkCase:
    """The all-ok walk of ``diagram`` after its prompt, tokenized, with each step's decision tokens located."""
    walk = constructs(diagram)
    wrong = {anchor(m, walk) for m in truth} - {None}
    steps = walk_steps(diagram, [])
    answer = render_trace(steps, [])
    prompt = tokenizer.apply_chat_template(build_messages(requirements, diagram), tokenize=False,
                                           add_generation_prompt=True)
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    spans, at = [], 0
    for step in steps:
        line_start = answer.index(f"Step {step.number} [", at)
        name_end = line_start + len(f"Step {step.number} [{step.elements[0]}")
        line_end = answer.find("\n", line_start)
        line_end = len(answer) if line_end < 0 else line_end
        spans.append([k for k, (s, e) in enumerate(enc["offset_mapping"]) if e > name_end and s < line_end])
        at = line_end
    return WalkCase(tokenizer(prompt, add_special_tokens=False)["input_ids"], answer, enc["input_ids"], spans, wrong)


def p_ok(model, case: WalkCase) -> list[float]:
    """P(ok) of each step of ``case`` under ``model`` (teacher-forced on the all-ok walk)."""
    import torch

    ids = torch.tensor([case.prompt_ids + case.answer_ids], device=model.device)
    with torch.inference_mode():  # the LM head is most of the cost: logits only where they predict the answer
        logits = model(ids, logits_to_keep=len(case.answer_ids) + 1).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1)
    token_lp = logp[torch.arange(len(case.answer_ids)), torch.tensor(case.answer_ids, device=logp.device)]
    return [math.exp(sum(token_lp[k].item() for k in span)) for span in case.spans]


def score(model, cases: list[WalkCase]) -> WalkScore:
    result = WalkScore(len(cases), [], [], 0, 0.0)
    for case in cases:
        probs = p_ok(model, case)
        for i, p in enumerate(probs):
            (result.p_wrong if i in case.wrong else result.p_right).append(p)
        result.top1 += int(min(range(len(probs)), key=probs.__getitem__) in case.wrong)
        result.chance += len(case.wrong) / len(probs)
    return result
