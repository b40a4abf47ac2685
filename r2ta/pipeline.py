"""Stage 1 (reason), stage 2 (refine), export and scoring over the stored variants.

* :func:`reason` generates traces for the variants of a split with a backend,
  in batches, storing each trace as soon as its batch is done: a run that stops
  (crash, Ctrl-C) resumes where it was, because variants that already have a
  trace by this model id are skipped. Every output is stored, garbage
  included, with its parse errors: nothing is dropped, nothing raises.
* :func:`refine` audits the traces that no proposal by this auditor covers yet
  and stores one proposal per trace for review.
* :func:`export_rows` turns the decisions in force (latest review: accept or
  edit) into SFT rows or DPO pairs (:mod:`r2ta.pairs`), recording each DPO pair
  in the store so training runs can point at it.
* :func:`evaluate_model` scores a model's newest traces on a split (DESIGN.md §5).

Traces are always re-read from ``raw_output`` with :func:`r2ta.prompting.parse_output`
so the parser stays the one definition of the format.

This module must not import streamlit. It stores through :mod:`db`.
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.engine import get_engine, init_db
from db.models import ProposalRow, ReviewRow, TraceRow, VariantRow
from db.queries import create_evaluation, create_preference_pair, create_proposal, create_trace
from r2ta.audit import (DETERMINISTIC_AUDITOR, EVIDENCE_AUDITOR, WALK_AUDITOR, AuditResult, LLMRefiner, audit_trace, audit_walk,
                        constructs)
from r2ta.backends import Backend, ask_for_verdicts
from r2ta.eerd import EERD, Mistake, parse_diagram
from r2ta.metrics import EvalItem, EvaluationReport, evaluate
from r2ta.negatives import planted_negative
from r2ta.pairs import PairError, dpo_row, sft_row
from r2ta.prompting import (
    DEFAULT_VERDICT_TOKENS,
    PROMPT_VERSION,
    ParsedOutput,
    Step,
    build_messages,
    has_verdict_line,
    parse_output,
    render_trace,
)
from r2ta.store import (first_variant_ids, latest_traces, list_decisions_in_force, list_traces_without_proposal,
                        list_variants_without_trace)

Progress = Callable[[int, int], None]  # (done, total)

DEFAULT_MAX_NEW_TOKENS = 256


def _engine(engine: Engine | None) -> Engine:
    if engine is None:
        engine = get_engine()
        init_db(engine)
    return engine


def _diagram(variant: VariantRow) -> EERD:
    return parse_diagram(variant.diagram)


def _truth(variant: VariantRow) -> list[Mistake]:
    return [Mistake.model_validate(m) for m in variant.mistakes]


def parse_trace(trace: TraceRow, variant: VariantRow) -> ParsedOutput:
    return parse_output(trace.raw_output, _diagram(variant))


# -- stage 1 --------------------------------------------------------------------------


@dataclass
class ReasonReport:
    model_id: str
    split: str
    generated: int = 0
    skipped: int = 0  # already had a trace by this model
    valid: int = 0
    truncated: int = 0
    looped: int = 0
    forced: int = 0  # no verdict in the model's answer: "VERDICT:" appended, the model wrote it (verdict_prefix)
    valid_unforced: int = 0  # valid verdicts the model wrote without that help
    completion_tokens: int = 0
    seconds: float = 0.0  # generating (and storing) the answers, the model's load left out
    load_s: float = 0.0  # loading the model, when this call loaded it (a local model loads on its first answer)
    reused: int = 0  # answers taken from reuse_answers' traces
    not_reused: int = 0  # such traces made under another token budget: generated again
    rewritten: int = 0  # variants this model had answered under another token budget: answered again (rebudget)
    other_budget: int = 0  # rebudget: answers of the split, beyond limit or shard, still from another budget

    def __str__(self) -> str:
        rate = self.completion_tokens / self.seconds if self.seconds else 0.0
        forced = f", {self.forced} verdicts asked for ({self.valid_unforced} valid without)" if self.forced else ""
        reuse = ""
        if self.reused or self.not_reused:
            reuse = f"; {self.reused} answers reused"
            if self.not_reused:
                reuse += f", {self.not_reused} generated again (their stored answer was made under another token budget)"
        if self.rewritten:
            reuse += (f"; {self.rewritten} answered again: this model's stored answer to them was made under another "
                      "token budget")
        if self.other_budget:
            reuse += (f"; {self.other_budget} answers beyond this call's variants were made under another token budget "
                      "and are scored as they are (answer them again: leave out --limit)")
        return (
            f"{self.model_id} on {self.split}: {self.generated} traces stored "
            f"({self.valid} with a valid verdict, {self.truncated} hit the token limit, {self.looped} stopped looping{forced}), "
            f"{self.skipped} already done; {self.completion_tokens} tokens in {self.seconds:.1f} s ({rate:.1f} tokens/s)"
            f"{f', after loading the model in {self.load_s:.1f} s' if self.load_s else ''}{reuse}"
        )


def reason(
    backend: Backend,
    *,
    split: str,
    limit: int | None = None,
    batch_size: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    engine: Engine | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] | None = None,
    verdict_tokens: int = DEFAULT_VERDICT_TOKENS,
    spread: bool = False,
    reuse_answers: str | None = None,
    tokens_per_construct: int = 0,
    rebudget: bool = False,
) -> ReasonReport:
    """Generate and store traces for the first ``limit`` variants of ``split`` that ``backend`` has not done.

    ``spread``: "first" is round-robin across base schemas rather than id order
    (:func:`r2ta.store.first_variant_ids`), so a small ``limit`` covers every schema.

    ``shard=(i, n)``: only the variants whose id hashes to ``i`` modulo ``n``, so that
    ``n`` processes (or machines sharing a database) can split one split between them.
    ``verdict_tokens``: an answer without a ``VERDICT:`` line gets one appended and up to
    this many more tokens for the model to write its verdict (:func:`r2ta.prompting.verdict_prefix`;
    0 = never; only on backends that can continue an answer). The trace records where the model's
    own text ends (``verdict_forced_at``).

    ``reuse_answers``: a model id whose stored traces hold the same answers this backend would
    write (the same model, greedy, the same budget — e.g. the plain traces of a model now decoded
    with ``verdict_grammar``). A variant with such a trace is not generated again: the answer
    the model wrote itself is taken from it, and only its verdict is decoded anew (one R2tA asks for,
    or under ``verdict_grammar`` also one the model started itself). Variants without one are
    generated as usual, and so are those whose stored answer could not have come from this
    budget (:func:`_fits_budget`: cut at another ``max_new_tokens``, or longer than this one).

    ``tokens_per_construct``: each variant's answer gets ``max_new_tokens`` plus this many tokens
    per construct of its diagram (:func:`answer_budget`), not one budget for all: a walk writes a
    line per construct, so one budget that fits a 12-construct diagram cuts a 27-construct one.

    ``rebudget`` (an evaluation): a variant this model has answered already is answered again when
    its latest stored answer could not have come from this call's budget (:func:`_fits_budget`: cut
    at another budget, or longer than this one), so that the scores are those of the budget asked
    for; an answer that ended by itself within the budget is the one greedy decoding writes again
    and is kept. Without it (the review queue) a variant with a trace is never answered twice.
    """
    engine = _engine(engine)
    model_id = backend.id
    model_version = f"{backend.version}; prompt {PROMPT_VERSION}".lstrip("; ")
    if reuse_answers:
        if reuse_answers == model_id:
            raise ValueError("reuse_answers names the model whose traces are being made")
        model_version += f"; answers reused from {reuse_answers}"
        with Session(engine) as session:
            sources = {t.variant_id: t for t, _ in latest_traces(session=session, model_id=reuse_answers, split=split)}
            session.expunge_all()
    else:
        sources = {}
    with Session(engine) as session:
        pending, done = list_variants_without_trace(session=session, model_id=model_id, split=split, limit=limit, spread=spread)
        session.expunge_all()
    report = ReasonReport(model_id=model_id, split=split, skipped=done)

    def budget_of(variant: VariantRow) -> int:
        return _variant_budget(variant, max_new_tokens, tokens_per_construct)

    fits = _fits_call(max_new_tokens, tokens_per_construct, backend.can_continue, verdict_tokens)  # rebudget

    if rebudget and done:
        again = _answered_under_another_budget(engine, model_id, split, limit, spread, fits)
        pending = sorted([*pending, *again], key=lambda v: v.id)
        report.skipped -= len(again)
        report.rewritten = len(again)
    if shard is not None:
        pending = [v for v in pending if zlib.crc32(v.id.encode()) % shard[1] == shard[0]]
    budget = {v.id: budget_of(v) for v in pending}
    if sources:
        wanted = {v.id for v in pending}
        misfits = {i for i, t in sources.items() if i in wanted and not _fits_budget(t, budget[i])}
        report.not_reused = len(misfits)
        report.reused = len(wanted & sources.keys()) - len(misfits)
        sources = {i: t for i, t in sources.items() if i not in misfits}
    size = batch_size or getattr(backend.config, "batch_size", 8)
    total = len(pending)
    if progress:
        progress(0, total)
    t0, loaded = time.perf_counter(), getattr(backend, "load_s", 0.0)
    for start in range(0, total, size):
        batch = pending[start : start + size]
        diagrams = [_diagram(v) for v in batch]
        prompts = [build_messages(v.requirements, d) for v, d in zip(batch, diagrams)]
        fresh = [k for k, v in enumerate(batch) if v.id not in sources]
        generations: list = [None] * len(batch)
        limits = [budget[batch[k].id] for k in fresh]
        # one int when every answer has the same budget: what a backend without per-prompt budgets takes
        asked = limits if tokens_per_construct else max_new_tokens
        for k, g in zip(fresh, backend.generate([prompts[k] for k in fresh], max_new_tokens=asked) if fresh else []):
            generations[k] = g
        first_reasons = [g.finish_reason if g is not None else None for g in generations]
        for k, v in enumerate(batch):
            if generations[k] is None:
                generations[k], first_reasons[k] = _own_answer(sources[v.id], backend)
        forced = ask_for_verdicts(backend, prompts, generations, verdict_tokens, [d.element_ids() for d in diagrams])
        with Session(engine) as session:
            for k, (v, d, prompt, g) in enumerate(zip(batch, diagrams, prompts, generations)):
                parsed = parse_output(g.text, d)
                errors = list(parsed.errors)
                if first_reasons[k] == "length":
                    errors.append(f"generation stopped at max_new_tokens ({budget[v.id]}): the output is cut off")
                    report.truncated += 1
                elif first_reasons[k] == "repetition":
                    errors.append("generation stopped: the model was repeating itself")
                    report.looped += 1
                forced_at, more_tokens = forced.get(k, (None, 0))
                if k in forced and forced_at is None:
                    errors.append(f"the model wrote 'VERDICT:' itself; its verdict was decoded again from there under the "
                                  f"verdict grammar, in {more_tokens} tokens"
                                  + (f" (cut at {verdict_tokens})" if g.finish_reason == "length" else ""))
                if forced_at is not None:
                    report.forced += 1
                    errors.append(
                        f"no verdict in the model's answer: R2tA appended 'VERDICT:' after its complete lines and the "
                        f"model wrote the verdict in {more_tokens} more tokens"
                        + (" under the verdict grammar" if getattr(backend.config, "verdict_grammar", False) else "")
                        + (f" (cut at {verdict_tokens})" if g.finish_reason == "length" else "")
                    )
                create_trace(
                    session=session,
                    variant_id=v.id,
                    model_id=model_id,
                    model_version=model_version,
                    prompt=prompt,
                    raw_output=g.text,
                    steps=[s.model_dump() for s in parsed.steps] or None,
                    verdict=[m.model_dump() for m in parsed.verdict] if (parsed.valid or parsed.verdict) else None,
                    parse_errors=errors,
                    prompt_tokens=g.prompt_tokens,
                    completion_tokens=g.completion_tokens,
                    latency_s=g.latency_s,
                    verdict_forced_at=forced_at,
                )
                report.generated += 1
                report.valid += parsed.valid
                report.valid_unforced += parsed.valid and forced_at is None
                report.completion_tokens += g.completion_tokens or 0
        if progress:
            progress(min(start + size, total), total)
    report.load_s = getattr(backend, "load_s", 0.0) - loaded
    report.seconds = time.perf_counter() - t0 - report.load_s
    if rebudget and (limit is not None or shard is not None):  # an evaluation scores the whole split's answers
        report.other_budget = len(_answered_under_another_budget(engine, model_id, split, None, spread, fits))
    return report


def _answered_under_another_budget(engine: Engine, model_id: str, split: str, limit: int | None, spread: bool,
                                   fits: Callable[[TraceRow, VariantRow], bool]) -> list[VariantRow]:
    """Of the first ``limit`` variants of ``split``, those whose latest answer by ``model_id`` could not
    have come from this call's budgets (``fits`` false: :func:`_fits_budget`, :func:`_fits_verdict`)."""
    with Session(engine) as session:
        first = set(session.exec(first_variant_ids(split, limit, spread=spread)).all())
        stored = [(t, v) for t, v in latest_traces(session=session, model_id=model_id, split=split) if v.id in first]
        session.expunge_all()
    return [v for t, v in stored if not fits(t, v)]


def answers_to_write(
    model_id: str, *, split: str = "test", limit: int | None = None, spread: bool = False,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, tokens_per_construct: int = 0,
    verdict_tokens: int = DEFAULT_VERDICT_TOKENS, can_continue: bool = True, engine: Engine | None = None,
) -> int:
    """How many answers an evaluation of ``model_id`` under this budget generates on the first ``limit`` variants
    of ``split`` (what :func:`reason` with ``rebudget`` would): those it has no answer to, and those whose stored
    answer this budget would have written differently. ``can_continue``: whether its backend can be asked for a
    verdict (a local model can)."""
    engine = _engine(engine)
    with Session(engine) as session:
        pending, done = list_variants_without_trace(session=session, model_id=model_id, split=split, limit=limit,
                                                    spread=spread)
    if not done:
        return len(pending)

    fits = _fits_call(max_new_tokens, tokens_per_construct, can_continue, verdict_tokens)
    return len(pending) + len(_answered_under_another_budget(engine, model_id, split, limit, spread, fits))


def _variant_budget(variant: VariantRow, max_new_tokens: int, tokens_per_construct: int) -> int:
    return answer_budget(_diagram(variant), max_new_tokens, tokens_per_construct) if tokens_per_construct \
        else max_new_tokens


def _fits_call(max_new_tokens: int, tokens_per_construct: int, can_continue: bool,
               verdict_tokens: int) -> Callable[[TraceRow, VariantRow], bool]:
    """Whether a stored answer is the one a call with these budgets would write (:func:`_fits_budget` on the
    variant's budget, :func:`_fits_verdict`)."""
    def fits(trace: TraceRow, variant: VariantRow) -> bool:
        return (_fits_budget(trace, _variant_budget(variant, max_new_tokens, tokens_per_construct))
                and _fits_verdict(trace, can_continue, verdict_tokens))

    return fits


_CUT_AT = re.compile(r"generation stopped at max_new_tokens \((\d+)\)")


def answer_budget(diagram: EERD, max_new_tokens: int, tokens_per_construct: int = 0) -> int:
    """The tokens an answer on ``diagram`` may take: ``max_new_tokens``, plus ``tokens_per_construct``
    for each construct (entity, relationship, specialization, category: a line of the prompt's diagram
    and a step of a walk, :func:`r2ta.audit.constructs`)."""
    return max_new_tokens + tokens_per_construct * len(constructs(diagram))


def _fits_budget(trace: TraceRow, max_new_tokens: int) -> bool:
    """Could greedy decoding under ``max_new_tokens`` have written this stored answer?

    An answer cut by its budget came from exactly that budget; one that stopped by itself
    (end of answer, or the repetition guard) from any budget at least as long as it."""
    for error in trace.parse_errors or []:
        cut = _CUT_AT.match(str(error))
        if cut:
            return int(cut.group(1)) == max_new_tokens
    return _generation_tokens(trace) <= max_new_tokens


def _generation_tokens(trace: TraceRow) -> int:
    """The tokens the model generated for a stored answer before any verdict was asked for: its completion tokens
    less the verdict's (the trace's "… wrote the verdict in N more tokens")."""
    tokens = trace.completion_tokens or 0
    if trace.verdict_forced_at is not None:
        for error in trace.parse_errors or []:
            asked = _VERDICT_ASKED.search(str(error))
            if asked:
                return tokens - int(asked.group(1))
    return tokens


_VERDICT_ASKED = re.compile(r"the model wrote the verdict in (\d+) more tokens.*?(?:\(cut at (\d+)\))?$")
_OWN_DECODED_AGAIN = re.compile(r"its verdict was decoded again from there under the verdict grammar, in (\d+) tokens"
                                r"(?: \(cut at (\d+)\))?$")


def _fits_verdict(trace: TraceRow, can_continue: bool, verdict_tokens: int) -> bool:
    """Would a call asking for verdicts with ``verdict_tokens`` (:func:`r2ta.backends.ask_for_verdicts`, on a
    backend that ``can_continue`` an answer or not) have left this stored answer's verdict as it is?

    An answer whose verdict R2tA asked for needs a call that asks (more than 0 tokens, on a backend that continues
    answers) and, for its verdict, the same budget if that was cut, else one at least as long. So does one whose own
    verdict the grammar decoded again (a call asking for none would leave the model's own as it wrote it). An answer
    without a verdict line that was not asked for one needs a call that does not ask."""
    asks = verdict_tokens > 0 and can_continue
    errors = [str(e) for e in trace.parse_errors or []]
    decoded = (_VERDICT_ASKED if trace.verdict_forced_at is not None else _OWN_DECODED_AGAIN)
    found = next((m for m in map(decoded.search, errors) if m), None)
    if trace.verdict_forced_at is not None or found:
        if not asks:
            return False
        if found is None:
            return True
        return int(found.group(2)) == verdict_tokens if found.group(2) else int(found.group(1)) <= verdict_tokens
    return not asks or has_verdict_line(trace.raw_output)


def _own_answer(trace: TraceRow, backend: Backend):
    """(the answer the model wrote itself in a stored trace, as a Generation; why its generation stopped)."""
    from r2ta.backends import Generation

    own = trace.raw_output if trace.verdict_forced_at is None else trace.raw_output[: trace.verdict_forced_at]
    errors = [str(e) for e in trace.parse_errors or []]
    reason = ("length" if any(e.startswith("generation stopped at max_new_tokens") for e in errors)
              else "repetition" if any(e.startswith("generation stopped: the model was repeating") for e in errors)
              else "stop")
    tokens = trace.completion_tokens
    tokenizer = getattr(backend, "tokenizer", None) if trace.verdict_forced_at is not None else None
    if tokenizer is not None:  # the stored count includes the old verdict's tokens: count the own answer's
        tokens = len(tokenizer(own, add_special_tokens=False)["input_ids"])
    # the own answer of a forced trace already ends after its last complete line: nothing more is cut
    return Generation(text=own, prompt_tokens=trace.prompt_tokens, completion_tokens=tokens, latency_s=trace.latency_s or 0.0,
                      finish_reason="stop" if trace.verdict_forced_at is not None else reason), reason


# -- stage 2 --------------------------------------------------------------------------


@dataclass
class RefineReport:
    auditor: str
    proposals: int = 0
    unchanged: int = 0
    flagged: int = 0
    changes: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.changes.items())) or "none"
        return (
            f"{self.auditor}: {self.proposals} proposals stored ({self.unchanged} unchanged, "
            f"{self.flagged} with flags for the reviewer); changes: {kinds}"
        )


def _store_proposal(session: Session, trace: TraceRow, result: AuditResult) -> ProposalRow:
    step_verdicts = [a.model_dump() for a in result.step_audits]
    verdict_notes = [
        {"verdict_entry": a.index + 1, "status": a.status, "reason": a.reason} for a in result.verdict_audits if a.status != "correct"
    ]
    return create_proposal(
        session=session,
        trace_id=trace.id,  # type: ignore[arg-type]
        auditor_id=result.auditor,
        steps=[s.model_dump() for s in result.refined_steps],
        verdict=[m.model_dump() for m in result.refined_verdict],
        step_verdicts=step_verdicts,
        inserted_steps=[s.model_dump() for s in result.inserted_steps],
        changes=[c.model_dump() for c in result.changes] + verdict_notes,
        flags=result.flags,
    )


def refine(
    *,
    auditor: Literal["deterministic", "walk", "evidence"] | LLMRefiner = "deterministic",
    model_id: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> RefineReport:
    """Audit every trace (of ``model_id``/``split`` if given) that this auditor has not refined yet.

    ``"walk"`` is the deterministic audit with the refined steps walking the diagram (:func:`r2ta.audit.audit_walk`);
    ``"evidence"`` the same walk with each construct's structural facts before its decision.
    """
    engine = _engine(engine)
    offline = {"deterministic": (DETERMINISTIC_AUDITOR, audit_trace), "walk": (WALK_AUDITOR, audit_walk),
               "evidence": (EVIDENCE_AUDITOR, functools.partial(audit_walk, evidence=True))}
    if isinstance(auditor, str) and auditor not in offline:
        raise ValueError(f"unknown auditor {auditor!r}: one of {', '.join(offline)}, or an LLMRefiner")
    auditor_id = offline[auditor][0] if isinstance(auditor, str) else auditor.id
    with Session(engine) as session:
        todo = list_traces_without_proposal(session=session, auditor_id=auditor_id, model_id=model_id, split=split, limit=limit)
        session.expunge_all()
    report = RefineReport(auditor=auditor_id)
    if progress:
        progress(0, len(todo))
    step = 1 if isinstance(auditor, str) else batch_size
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        parsed = [parse_trace(t, v) for t, v in chunk]
        if isinstance(auditor, str):
            audit = offline[auditor][1]
            results = [audit(p, _diagram(v), _truth(v)) for p, (_, v) in zip(parsed, chunk)]
        else:
            results = auditor.refine_many(  # type: ignore[union-attr]
                [(v.requirements, _diagram(v), t.raw_output, p, _truth(v)) for p, (t, v) in zip(parsed, chunk)]
            )
        with Session(engine) as session:
            for (trace, _), result in zip(chunk, results):
                _store_proposal(session, trace, result)
                report.proposals += 1
                report.unchanged += result.unchanged
                report.flagged += bool(result.flags)
                for c in result.changes:
                    report.changes[c.kind] = report.changes.get(c.kind, 0) + 1
        if progress:
            progress(min(start + step, len(todo)), len(todo))
    return report


# -- export ---------------------------------------------------------------------------


def chosen_trace(review: ReviewRow, proposal: ProposalRow) -> str:
    """The accepted trace (the proposal's) or the edited one (the review's), in the trace format."""
    steps_data = proposal.steps
    verdict_data = proposal.verdict
    if review.decision == "edit":
        steps_data = review.steps if review.steps is not None else steps_data
        verdict_data = review.verdict if review.verdict is not None else verdict_data
    if isinstance(steps_data, str):  # an editor that stored the edited trace as text
        return steps_data
    steps = [Step.model_validate(s) for s in steps_data or []]
    verdict = [Mistake.model_validate(m) for m in verdict_data or []]
    return render_trace(steps, verdict)


@dataclass
class ExportReport:
    kind: str
    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


NEGATIVES = ("original", "planted", "omission", "both")


def export_rows(
    kind: Literal["sft", "dpo"], *, split: str | None = "train", engine: Engine | None = None, negatives: str = "original"
) -> ExportReport:
    """SFT rows or DPO pairs from the decisions in force; a decision that makes no valid row is skipped with its reason.

    ``negatives`` picks a DPO pair's rejected trace: ``original`` (the model's own trace, the
    R2tA pair, stored as the review's preference pair), ``planted`` (the chosen trace with one
    planted error, :mod:`r2ta.negatives`), ``omission`` (planted, always one true mistake left
    out; in a walk the same walk saying ``ok`` at that construct) or ``both`` (two pairs per decision). Provenance
    says which (``rejected_source``: ``model`` or ``planted:<kind>``). The stored preference
    pair is always the original one; planted pairs are derived from it, reproducibly.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
    engine = _engine(engine)
    report = ExportReport(kind=kind)
    with Session(engine) as session:
        for d in list_decisions_in_force(session=session, split=split):
            diagram = _diagram(d.variant)
            provenance = {
                "variant_id": d.variant.id,
                "base_id": d.variant.base_id,
                "trace_id": d.trace.id,
                "model_id": d.trace.model_id,
                "proposal_id": d.proposal.id,
                "auditor_id": d.proposal.auditor_id,
                "review_id": d.review.id,
                "reviewer": d.review.reviewer,
                "decision": d.review.decision,
                "reviewed_at": d.review.created_at.isoformat(),
                "prompt_version": PROMPT_VERSION,
            }
            where = f"review {d.review.id} (proposal {d.proposal.id}, variant {d.variant.id})"
            try:
                chosen = chosen_trace(d.review, d.proposal)
                if kind == "sft":
                    report.rows.append(sft_row(d.variant.requirements, diagram, chosen, provenance))
                    continue
                row = dpo_row(d.variant.requirements, diagram, chosen, d.trace.raw_output,
                              {**provenance, "rejected_source": "model"})
                pair = create_preference_pair(
                    session=session, review_id=d.review.id, prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"]
                )
                row["provenance"]["pair_id"] = pair.id
            except PairError as err:
                if kind == "sft" or negatives == "original":
                    report.skipped.append(f"{where}: {err}")
                    continue
                report.skipped.append(f"{where}: no pair with the model's own trace ({err}); the planted pair may still be made")
                row = None
            if row is not None and negatives in ("original", "both"):
                report.rows.append(row)
            if negatives in ("planted", "omission", "both"):
                planted = planted_negative(chosen, diagram, key=d.variant.id,
                                           kind="omission" if negatives == "omission" else None)
                if planted is None:
                    report.skipped.append(f"{where}: " + ("its trace reports no mistake to leave out (no omission pair)"
                                                          if negatives == "omission" else
                                                          "no error can be planted in its trace (no planted pair)"))
                    continue
                source, rejected = planted
                extra = {"pair_id": row["provenance"]["pair_id"]} if row is not None else {}
                try:
                    report.rows.append(dpo_row(d.variant.requirements, diagram, chosen, rejected,
                                               {**provenance, **extra, "rejected_source": f"planted:{source}"}))
                except PairError as err:
                    report.skipped.append(f"{where}: planted pair: {err}")
    return report


# -- evaluation -----------------------------------------------------------------------


def evaluate_model(
    model_id: str, *, split: str = "test", engine: Engine | None = None, store: bool = False,
    settings: dict | None = None,
) -> tuple[EvaluationReport, int | None]:
    """Score ``model_id``'s newest trace of each variant of ``split``; optionally store the evaluation, with the
    ``settings`` the answers were asked for under."""
    engine = _engine(engine)
    with Session(engine) as session:
        rows = latest_traces(session=session, model_id=model_id, split=split)
        items, results = [], []
        for trace, variant in rows:
            parsed = parse_trace(trace, variant)
            items.append(
                EvalItem(
                    variant_id=variant.id,
                    predicted=parsed.verdict,
                    truth=_truth(variant),
                    valid=parsed.valid,
                    references=len(parsed.references),
                    grounded=len(parsed.references) - len(parsed.unresolved),
                    forced=trace.verdict_forced_at is not None,
                )
            )
        report = evaluate(items)
        evaluation_id = None
        if store:
            for (trace, variant), item, pv in zip(rows, items, report.per_variant):
                results.append(
                    {
                        "variant_id": variant.id,
                        "trace_id": trace.id,
                        "predicted": [m.model_dump() for m in item.predicted],
                        "metrics": pv.model_dump(exclude={"variant_id"}),
                    }
                )
            metrics = report.model_dump(exclude={"per_variant"})
            evaluation_id = create_evaluation(session=session, model_id=model_id, split=split, metrics=metrics, results=results,
                                              settings=settings).id
    return report, evaluation_id


# -- first run ------------------------------------------------------------------------


def seed_first_batch(
    limit: int, progress: Callable[[float, str], None] | None = None, engine: Engine | None = None, backend: Backend | None = None
) -> tuple[ReasonReport, RefineReport]:
    """The app's first run: the embedded model reasons about the first ``limit`` train variants,
    and the deterministic auditor refines those traces, so the review queue is not empty."""
    from r2ta.backends import get_backend
    from r2ta.jobs import now_iso
    from r2ta.model_jobs import record_batch

    say = progress or (lambda frac, msg: None)
    backend = backend or get_backend("embedded")
    started = now_iso()
    try:
        reasoned = reason(
            backend,
            split="train",
            limit=limit,
            engine=engine,
            progress=lambda done, total: say(0.8 * done / max(total, 1), f"reasoning: {done}/{total} variants"),
        )
        record_batch(backend, reasoned, started, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, what="the first batch (r2ta seed)")
    finally:
        backend.close()
    refined = refine(
        model_id=backend.id,
        split="train",
        engine=engine,
        progress=lambda done, total: say(0.8 + 0.2 * done / max(total, 1), f"auditing: {done}/{total} traces"),
    )
    say(1.0, f"{reasoned.generated} traces generated, {refined.proposals} proposals ready for review")
    return reasoned, refined
