"""Evaluation metrics, exactly as DESIGN.md §5 defines them. Pure functions, no I/O.

* A predicted mistake **matches** a ground-truth mistake when their categories are
  equal and their element sets overlap; each ground-truth mistake (and each
  prediction) is matched at most once. :func:`match` finds a *maximum* matching,
  so the score never depends on the order in which a model listed its mistakes.
* Per category: precision = TP / (TP + FP), recall = TP / (TP + FN), F1; a
  ratio whose denominator is 0 is reported as 0.0 (the counts are kept beside
  it). Micro F1 pools the counts of all categories; macro F1 averages the F1 of
  the categories that occur in the truth or the predictions (a category nobody
  mentioned has no F1 to average).
* **Hallucination rate**: predicted mistakes that match no ground-truth mistake at
  all / all predicted mistakes. (A second prediction of an already matched truth
  is a false positive for precision but not a hallucination: the mistake is there.)
* **Grounding rate**: element references in the reasoning (steps and verdict) that
  resolve to an element of the diagram / all references.
* **Format validity**: outputs whose verdict parses / all outputs. An output whose
  ``VERDICT:`` line R2tA appended (the model wrote none in its budget, see
  :func:`r2ta.prompting.verdict_prefix`) counts when the verdict the model then
  wrote parses; ``verdicts_forced`` counts those outputs and ``unforced_validity``
  is the validity of the answers the model finished by itself.
* **Exact match**: variants whose predictions all match and cover every truth
  (as many predictions as truths, all matched) / all variants.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, model_validator

from r2ta.eerd import CATEGORIES, Mistake


def matches(pred: Mistake, truth: Mistake) -> bool:
    return pred.category == truth.category and bool(set(pred.elements) & set(truth.elements))


def match(predicted: list[Mistake], truth: list[Mistake]) -> list[tuple[int, int]]:
    """A maximum matching as ``(predicted index, truth index)`` pairs, sorted by predicted index.

    Augmenting paths (Kuhn's algorithm): the sets are tiny, and a greedy pass
    could pair a prediction with the "wrong" truth and cost a true positive.
    """
    edges = [[j for j, t in enumerate(truth) if matches(p, t)] for p in predicted]
    owner: dict[int, int] = {}  # truth index -> predicted index

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(predicted)):
        augment(i, set())
    return sorted((i, j) for j, i in owner.items())


class CategoryScore(BaseModel):
    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0


class VariantResult(BaseModel):
    """One variant's outcome; ``matched`` pairs index the predicted and truth lists."""

    variant_id: str
    valid: bool
    predicted: int
    truth: int
    matched: list[tuple[int, int]]
    exact: bool
    references: int
    grounded: int
    forced: bool = False  # "VERDICT:" was appended to the model's answer


class EvaluationReport(BaseModel):
    n: int
    per_category: dict[str, CategoryScore]
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_f1: float
    hallucination_rate: float
    grounding_rate: float
    format_validity: float
    exact_match: float
    predicted: int
    hallucinated: int
    references: int
    grounded: int
    per_variant: list[VariantResult]
    verdicts_forced: int = 0
    unforced_validity: float | None = None  # None (a report stored before it existed): no verdict was forced

    @model_validator(mode="after")
    def _unforced(self) -> "EvaluationReport":
        if self.unforced_validity is None:
            self.unforced_validity = self.format_validity if not self.verdicts_forced else 0.0
        return self


@dataclass
class EvalItem:
    """What evaluation needs from one variant: the prediction (parsed verdict) and the truth.

    ``references`` / ``grounded`` count the element references in the reasoning
    and those that resolve (``len(parsed.references)``, minus ``len(parsed.unresolved)``).
    """

    variant_id: str
    predicted: list[Mistake]
    truth: list[Mistake]
    valid: bool = True
    references: int = 0
    grounded: int = 0
    extra: dict = field(default_factory=dict)
    forced: bool = False  # "VERDICT:" was appended to the model's answer (trace.verdict_forced_at)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score_category(tp: int, fp: int, fn: int) -> CategoryScore:
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return CategoryScore(tp=tp, fp=fp, fn=fn, precision=p, recall=r, f1=_f1(p, r))


def evaluate(items: list[EvalItem]) -> EvaluationReport:
    counts = {c: [0, 0, 0] for c in CATEGORIES}  # tp, fp, fn
    per_variant: list[VariantResult] = []
    n_pred = n_unmatched = refs = grounded = valid = exact = forced = valid_unforced = 0
    for item in items:
        pairs = match(item.predicted, item.truth)
        matched_pred = {i for i, _ in pairs}
        matched_truth = {j for _, j in pairs}
        for i, m in enumerate(item.predicted):
            counts[m.category][0 if i in matched_pred else 1] += 1
        for j, t in enumerate(item.truth):
            if j not in matched_truth:
                counts[t.category][2] += 1
        n_pred += len(item.predicted)
        n_unmatched += sum(1 for m in item.predicted if not any(matches(m, t) for t in item.truth))
        refs += item.references
        grounded += item.grounded
        valid += bool(item.valid)
        forced += bool(item.forced)
        valid_unforced += bool(item.valid) and not item.forced
        is_exact = len(item.predicted) == len(item.truth) == len(pairs)
        exact += is_exact
        per_variant.append(
            VariantResult(
                variant_id=item.variant_id,
                valid=item.valid,
                predicted=len(item.predicted),
                truth=len(item.truth),
                matched=pairs,
                exact=is_exact,
                references=item.references,
                grounded=item.grounded,
                forced=item.forced,
            )
        )
    per_category = {c: score_category(*counts[c]) for c in CATEGORIES}
    tp, fp, fn = (sum(v[k] for v in counts.values()) for k in range(3))
    micro_p, micro_r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    present = [s for s in per_category.values() if s.tp + s.fp + s.fn]
    return EvaluationReport(
        n=len(items),
        per_category=per_category,
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=_f1(micro_p, micro_r),
        macro_f1=_ratio(sum(s.f1 for s in present), len(present)) if present else 0.0,
        hallucination_rate=_ratio(n_unmatched, n_pred),
        grounding_rate=_ratio(grounded, refs),
        format_validity=_ratio(valid, len(items)),
        exact_match=_ratio(exact, len(items)),
        predicted=n_pred,
        hallucinated=n_unmatched,
        references=refs,
        grounded=grounded,
        per_variant=per_variant,
        verdicts_forced=forced,
        unforced_validity=_ratio(valid_unforced, len(items)),
    )


def _rate(value: float, denominator: int) -> str:
    return f"{value:.3f}" if denominator else "n/a"


def format_report(report: EvaluationReport) -> str:
    """A plain-text table for the CLI and the closing notes."""
    lines = [f"{'category':28} {'P':>6} {'R':>6} {'F1':>6} {'TP':>4} {'FP':>4} {'FN':>4}"]
    for c, s in report.per_category.items():
        lines.append(f"{c:28} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.tp:4d} {s.fp:4d} {s.fn:4d}")
    lines += [
        f"variants {report.n}; predicted mistakes {report.predicted}",
        f"micro P/R/F1 {report.micro_precision:.3f}/{report.micro_recall:.3f}/{report.micro_f1:.3f}; "
        f"macro F1 {report.macro_f1:.3f}",
        f"hallucination rate {_rate(report.hallucination_rate, report.predicted)} ({report.hallucinated}/{report.predicted})",
        f"grounding rate {_rate(report.grounding_rate, report.references)} ({report.grounded}/{report.references})",
        f"format validity {report.format_validity:.3f}; exact match {report.exact_match:.3f}",
    ]
    if report.verdicts_forced:
        lines.append(
            f"verdicts asked for {report.verdicts_forced}/{report.n} (no VERDICT line in the model's budget); "
            f"validity without them {report.unforced_validity:.3f}"
        )
    return "\n".join(lines)
