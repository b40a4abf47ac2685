"""The reasoning format: THE one place where the prompt and the answer format are defined.

Generation (stage 1), the parser, the auditor (stage 2), the SFT/DPO export and
the evaluation all go through this module, so a trace means the same thing
everywhere. The prompt (:func:`build_messages`) is a system message (the task, the 11
categories with one-line meanings, the answer format), then the requirements and
the compact diagram (:func:`r2ta.compact.to_compact`). Prompt version ``r2ta-v1``
also put a worked example (a first user/assistant exchange) before the task;
``r2ta-v2`` leaves it out by default (``worked_example=True`` brings it back): on
the 150 test variants the base model wrote 0 valid answers with it, copied its
BAND/MUSICIAN elements into its steps, and it cost ~330 of the ~1,750 tokens of
a median prompt, i.e. ~19% of every generation's prefill and every training
row; a fine-tuned model learns the format from its training rows instead.
The answer a model is asked to write::

    Step 1 [BAND, BAND.Band_name]: BAND is identified by Band_name, a key. -> ok
    Step 2 [PLAYS_IN, MUSICIAN]: Every musician plays in one band, but MUSICIAN is (0,1). -> participation
    VERDICT:
    MISTAKE: participation | PLAYS_IN, MUSICIAN | Every musician plays in a band, so MUSICIAN must be (1,1).

* A **step** examines one construct: ``Step <n> [<elements>]: <reasoning> -> <finding>``,
  where the finding is ``ok`` or one of the 11 category ids.
* The **verdict** follows a line ``VERDICT:``: one ``MISTAKE: category | elements |
  explanation`` line per mistake, or ``NONE``. A line format rather than JSON:
  a 135M model writes it far more reliably, and a truncated answer loses only
  its last line, which the parser notices.
* Elements are referenced by the names shown in the diagram (``MUSICIAN``,
  ``PLAYS_IN``) or ``OWNER.Attribute`` (``MUSICIAN.Band_name``); ids work too.
  :class:`r2ta.compact.ElementIndex` resolves them.

:func:`parse_output` never raises on model output: every problem becomes a parse
error and the verdict keeps what could be read. :func:`render_trace` writes
exactly what the parser reads; ``parse_output(render_trace(s, v), d)``
gives back ``s`` and ``v`` (tested).

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from r2ta.compact import ElementIndex, to_compact
from r2ta.eerd import CATEGORIES, EERD, Mistake

# Bump when the prompt or the answer format changes: stored traces record it,
# and a trained model is only comparable with traces of the same version.
PROMPT_VERSION = "r2ta-v2"

# Guards against pathological outputs (a model that loops until max tokens).
MAX_OUTPUT_CHARS = 100_000
MAX_STEPS = 200
MAX_MISTAKES = 50
MAX_ELEMENTS_PER_ITEM = 20
MAX_TEXT = 2_000
MAX_REF = 400

OK = "ok"

CATEGORY_MEANINGS: dict[str, str] = {
    "missing_key": "a strong entity has no key, or a multivalued or derived key",
    "weak_entity": "a weak entity lacks its owner, identifying relationship, partial key or (1,1), "
    "or has a full key; or a dependent entity is drawn strong",
    "cardinality": "a max bound (1 or N) contradicts the requirements",
    "participation": "a min bound (0 optional, 1 mandatory) contradicts the requirements",
    "attribute_placement": "an attribute is on the wrong entity or relationship",
    "attribute_kind": "multivalued, composite or derived is wrong for an attribute",
    "foreign_key_attribute": "an entity stores another entity's key instead of a relationship",
    "relationship_structure": "a relationship has under 2 participants, links a relationship, "
    "lacks roles when recursive, or has the wrong degree",
    "missing_element": "a required entity, relationship or attribute is missing or duplicated",
    "specialization_constraint": "disjoint/overlapping or total/partial is missing or wrong",
    "specialization_structure": "a subclass has its own key or repeats an inherited attribute, "
    "a specialization lacks a superclass or is cyclic, a category has under 2 superclasses",
}
assert tuple(CATEGORY_MEANINGS) == CATEGORIES

# A worked example, given as a first exchange (small chat models copy a format from a
# previous turn far better than from a description). Its domain is in no base schema,
# so a model that copies it verbatim is caught naming elements that do not exist.
EXAMPLE_REQUIREMENTS = (
    "Each band is identified by its band name and has a genre. Each musician has a unique "
    "musician id and a name. Every musician plays in exactly one band; a band has at least one musician."
)
EXAMPLE_DIAGRAM = (
    "ENTITY BAND: Band_name [key], Genre\n"
    "ENTITY MUSICIAN: Musician_id [key], Name, Band_name\n"
    "RELATIONSHIP PLAYS_IN: MUSICIAN (0,1) -- BAND (1,N)"
)
EXAMPLE_ANSWER = (
    "Step 1 [BAND, BAND.Band_name]: BAND is identified by Band_name, which is its key. -> ok\n"
    "Step 2 [MUSICIAN, MUSICIAN.Band_name, PLAYS_IN]: MUSICIAN stores Band_name although PLAYS_IN "
    "already links each musician to a band. -> foreign_key_attribute\n"
    "Step 3 [PLAYS_IN, MUSICIAN]: Every musician plays in exactly one band, but MUSICIAN is (0,1) in "
    "PLAYS_IN. -> participation\n"
    "VERDICT:\n"
    "MISTAKE: foreign_key_attribute | MUSICIAN.Band_name, PLAYS_IN | Band_name in MUSICIAN duplicates "
    "the PLAYS_IN relationship.\n"
    "MISTAKE: participation | PLAYS_IN, MUSICIAN | Every musician plays in a band, so MUSICIAN must be "
    "(1,1) in PLAYS_IN."
)


def system_prompt() -> str:
    categories = "\n".join(f"- {c}: {m}" for c, m in CATEGORY_MEANINGS.items())
    return (
        "You check a student's EER diagram against its requirements and find every modelling mistake.\n"
        "(min,max) beside an entity is look-here: how often each instance of it takes part; N = many.\n"
        f"Mistake categories:\n{categories}\n"
        "Answer format. Numbered steps, each examining one construct, its elements in brackets "
        "(attributes as OWNER.Attribute), ending with -> ok or -> the mistake category:\n"
        "Step <n> [<element>, <element>]: <reasoning> -> <ok or category>\n"
        "Then the line VERDICT: and one line per mistake (or NONE):\n"
        "MISTAKE: <category> | <element>, <element> | <explanation>"
    )


def _user_text(requirements: str, diagram_text: str) -> str:
    return f"Requirements:\n{requirements.strip()}\n\nDiagram:\n{diagram_text}\n\nCheck the diagram step by step, then give the VERDICT."


def user_prompt(requirements: str, diagram: EERD) -> str:
    return _user_text(requirements, to_compact(diagram))


def build_messages(requirements: str, diagram: EERD, *, worked_example: bool = False) -> list[dict[str, str]]:
    """The chat prompt for one diagram: system, then the task (see the module docstring).

    ``worked_example=True`` puts the worked example (user + assistant) between them,
    as prompt version ``r2ta-v1`` did. The model's answer (the next assistant message) is the trace.
    """
    example = [
        {"role": "user", "content": _user_text(EXAMPLE_REQUIREMENTS, EXAMPLE_DIAGRAM)},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
    ]
    return [
        {"role": "system", "content": system_prompt()},
        *(example if worked_example else []),
        {"role": "user", "content": user_prompt(requirements, diagram)},
    ]


# -- parsed form -------------------------------------------------------------------


class Step(BaseModel):
    """One reasoning step: the elements as written, what they resolve to, the text and the finding."""

    number: int
    elements: list[str] = Field(default_factory=list)  # references as written
    element_ids: list[str | None] = Field(default_factory=list)  # resolved ids (None = unknown)
    text: str = ""
    finding: str | None = None  # "ok", a category id, or None when the step states none


class ParsedOutput(BaseModel):
    """What could be read from a model's answer; ``errors`` lists every problem found.

    ``valid`` (format validity, DESIGN.md §5) means the verdict parses: there is a
    ``VERDICT:`` section, it says ``NONE`` or has at least one mistake, and every
    ``MISTAKE`` line in it has a known category and at least one element. Unknown
    elements and duplicates do not make an answer invalid (they are content
    errors, measured by grounding and hallucination) but are listed in ``errors``.
    """

    steps: list[Step] = Field(default_factory=list)
    verdict: list[Mistake] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    valid: bool = False
    references: list[str] = Field(default_factory=list)  # every element reference, steps then verdict
    unresolved: list[str] = Field(default_factory=list)  # the references that name nothing in the diagram


# -- parsing -------------------------------------------------------------------------

_STEP = re.compile(r"^step\s*#?\s*(\d{1,6})\b\s*(.*)$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(\d{1,6})[.)]\s+(.*)$")  # "1. [A]: ..." — a step without the word Step
_VERDICT = re.compile(r"^(?:final\s+)?verdict\b\s*:?\s*(.*)$", re.IGNORECASE)
_MISTAKE = re.compile(r"^mistake\s*\d*\s*:\s*(.*)$", re.IGNORECASE)
_ARROW = re.compile(r"\s*(?:->|=>|→)\s*([^\n>]*?)\s*$")
_NONE = re.compile(r"^(none|no mistakes?( found)?|there are no mistakes)\.?$", re.IGNORECASE)
_OK_WORDS = {"ok", "okay", "correct", "fine", "none", "no_mistake", "no_mistakes", "valid"}
_SEP = re.compile(r"[\s\-]+")


def _clean_line(line: str) -> str:
    """Drop markdown a chat model likes to add: bold, headings, quotes, list bullets."""
    line = line.replace("**", "").replace("`", "").strip()
    line = line.lstrip("#>").strip()
    if line[:2] in ("- ", "* ", "• "):
        line = line[2:].strip()
    return line


def normalize_category(text: str) -> str | None:
    """A category id from what a model wrote (``Missing key``, ``missing-key``), or None."""
    key = _SEP.sub("_", text.strip().strip("'\".,;:()[]").lower())
    return key if key in CATEGORIES else None


def _normalize_finding(text: str) -> str | None:
    key = _SEP.sub("_", text.strip().strip("'\".,;:()[]").lower())
    if key in _OK_WORDS:
        return OK
    return key if key in CATEGORIES else None


def _split_refs(text: str) -> list[str]:
    refs = []
    for part in re.split(r"[,;]", text):
        ref = part.strip().strip("'\"[]()").strip()
        if ref:
            refs.append(ref[:MAX_REF])
    return refs


class _Parser:
    def __init__(self, diagram: EERD):
        self.index = ElementIndex(diagram)
        self.errors: list[str] = []
        self.references: list[str] = []
        self.unresolved: list[str] = []

    def resolve(self, refs: list[str], where: str) -> list[str | None]:
        out: list[str | None] = []
        for ref in refs:
            element_id = self.index.resolve(ref)
            self.references.append(ref)
            if element_id is None:
                self.unresolved.append(ref)
                self.errors.append(f"{where}: unknown element {ref!r} (not in the diagram)")
            out.append(element_id)
        return out

    def step(self, number: int, rest: str) -> Step:
        where = f"step {number}"
        refs: list[str] = []
        rest = rest.strip()
        if rest.startswith(":") or rest.startswith("."):
            rest = rest[1:].strip()
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                self.errors.append(f"{where}: the element list has no closing ']' (truncated?)")
                refs, rest = _split_refs(rest[1:]), ""
            else:
                refs, rest = _split_refs(rest[1:close]), rest[close + 1 :]
        rest = rest.strip().lstrip(":.-").strip()
        finding = None
        m = _ARROW.search(rest)
        if m:
            raw = m.group(1)
            rest = rest[: m.start()].strip()
            finding = _normalize_finding(raw)
            if finding is None:
                self.errors.append(f"{where}: unknown finding {raw[:60]!r} (expected ok or a category id)")
        else:
            self.errors.append(f"{where}: no finding ('-> ok' or '-> category') at the end")
        if not refs:
            self.errors.append(f"{where}: names no elements ('[ELEMENT, ...]' after the step number)")
        refs = refs[:MAX_ELEMENTS_PER_ITEM]
        return Step(number=number, elements=refs, element_ids=self.resolve(refs, where), text=rest[:MAX_TEXT], finding=finding)

    def mistake(self, body: str, where: str) -> tuple[Mistake | None, bool]:
        """(mistake or None, whether the line is well-formed)."""
        fields = [f.strip() for f in body.split("|", 2)]
        if len(fields) < 2 or not fields[1]:
            self.errors.append(f"{where}: expected 'category | elements | explanation', got {body[:80]!r}")
            return None, False
        category = normalize_category(fields[0])
        if category is None:
            self.errors.append(f"{where}: unknown category {fields[0][:60]!r}; use one of {', '.join(CATEGORIES)}")
            return None, False
        refs = _split_refs(fields[1])[:MAX_ELEMENTS_PER_ITEM]
        if not refs:
            self.errors.append(f"{where}: names no elements")
            return None, False
        ids = self.resolve(refs, where)
        elements: list[str] = []
        for ref, element_id in zip(refs, ids):
            value = element_id or ref
            if value not in elements:
                elements.append(value)
        explanation = fields[2] if len(fields) > 2 else ""
        if not explanation:
            self.errors.append(f"{where}: no explanation")
        return Mistake(category=category, elements=elements, explanation=explanation[:MAX_TEXT]), True


def parse_output(text: str | None, diagram: EERD) -> ParsedOutput:
    """Read a model's answer against ``diagram``. Never raises on model output."""
    p = _Parser(diagram)
    text = text or ""
    if not text.strip():
        return ParsedOutput(errors=["empty output"], valid=False)
    if len(text) > MAX_OUTPUT_CHARS:
        p.errors.append(f"output is {len(text):,} characters; only the first {MAX_OUTPUT_CHARS:,} were read")
        text = text[:MAX_OUTPUT_CHARS]
    lines = [_clean_line(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]

    # Split into the reasoning part and the verdict part at the first VERDICT line.
    verdict_at = next((i for i, line in enumerate(lines) if _VERDICT.match(line)), None)
    reasoning = lines if verdict_at is None else lines[:verdict_at]

    # Steps: a "Step n" line, plus any continuation lines until the next step.
    raw_steps: list[tuple[int, str]] = []
    for line in reasoning:
        m = _STEP.match(line) or _NUMBERED.match(line)
        if m:
            raw_steps.append((int(m.group(1)), m.group(2)))
        elif raw_steps and line:
            n, body = raw_steps[-1]
            raw_steps[-1] = (n, f"{body} {line}")
    if len(raw_steps) > MAX_STEPS:
        p.errors.append(f"{len(raw_steps)} steps; only the first {MAX_STEPS} were read")
        raw_steps = raw_steps[:MAX_STEPS]
    steps = [p.step(n, body) for n, body in raw_steps]
    if not steps:
        p.errors.append("no reasoning steps ('Step 1 [...]: ... -> ...')")
    elif [s.number for s in steps] != list(range(1, len(steps) + 1)):
        p.errors.append("steps are not numbered 1, 2, 3, ...")
    seen_steps: dict[tuple, int] = {}
    for s in steps:
        key = (tuple(s.element_ids), s.finding, s.text.lower())
        if key in seen_steps:
            p.errors.append(f"step {s.number} repeats step {seen_steps[key]}")
        else:
            seen_steps[key] = s.number

    if verdict_at is None:
        p.errors.append("no 'VERDICT:' line (output truncated or format not followed)")
        return ParsedOutput(steps=steps, errors=p.errors, valid=False, references=p.references, unresolved=p.unresolved)

    verdict: list[Mistake] = []
    keys: set[tuple] = set()
    well_formed = True
    said_none = False
    entries = 0
    first = _VERDICT.match(lines[verdict_at]).group(1).strip()  # type: ignore[union-attr]
    body = [(verdict_at + 1, first)] if first else []
    body += [(i + 1, line) for i, line in enumerate(lines[verdict_at + 1 :], start=verdict_at + 1)]
    for lineno, line in body:
        if not line:
            continue
        where = f"verdict line {lineno}"
        if _VERDICT.match(line):
            p.errors.append(f"{where}: a second VERDICT line")
            rest = _VERDICT.match(line).group(1).strip()  # type: ignore[union-attr]
            if not rest:
                continue
            line = rest
        if _NONE.match(line):
            said_none = True
            continue
        m = _MISTAKE.match(line)
        if not m:
            if "|" in line:  # a mistake line without its "MISTAKE:" prefix
                m_body = line
            else:
                p.errors.append(f"{where}: not a 'MISTAKE: ...' line, ignored: {line[:80]!r}")
                continue
        else:
            m_body = m.group(1)
        entries += 1
        if entries > MAX_MISTAKES:
            p.errors.append(f"more than {MAX_MISTAKES} mistakes; the rest were ignored")
            break
        mistake, ok = p.mistake(m_body, where)
        well_formed &= ok
        if mistake is None:
            continue
        key = (mistake.category, frozenset(mistake.elements))
        if key in keys:
            p.errors.append(f"{where}: duplicate of an earlier mistake ({mistake.category} on {', '.join(mistake.elements)})")
            continue
        keys.add(key)
        verdict.append(mistake)

    if said_none and verdict:
        p.errors.append("the verdict says NONE and also lists mistakes; the mistakes were kept")
    if not said_none and entries == 0:
        p.errors.append("the verdict is empty (no MISTAKE lines and no NONE)")
    valid = well_formed and (said_none or entries > 0)
    return ParsedOutput(
        steps=steps, verdict=verdict, errors=p.errors, valid=valid, references=p.references, unresolved=p.unresolved
    )


# -- a verdict the model did not reach -------------------------------------------------

# Tokens a model gets to write its verdict after ``VERDICT:`` was appended (see :func:`verdict_prefix`):
# a verdict line is ~25-40 tokens, so this is room for three or four mistakes.
DEFAULT_VERDICT_TOKENS = 128
VERDICT_HEADER = "VERDICT:\n"


def has_verdict_line(text: str | None) -> bool:
    """Whether ``text`` has the ``VERDICT:`` line :func:`parse_output` splits an answer at."""
    return any(_VERDICT.match(_clean_line(line)) for line in (text or "")[:MAX_OUTPUT_CHARS].splitlines())


def _loop_key(line: str) -> str:
    return re.sub(r"\d+", "#", _clean_line(line)).lower()


def verdict_prefix(text: str | None, *, cut: bool) -> str | None:
    """The answer so far, made ready for the model to write its verdict next; None if it has a verdict.

    A model that spends its token budget on steps (or loops, or ends its turn early)
    never writes the verdict, and an answer without one is not an answer. This keeps
    the complete lines of what it wrote — ``cut=True`` (it hit ``max_new_tokens`` or
    was stopped for looping) drops the last, unfinished line; a looping tail (lines
    that repeat the line before them, numbers aside) is dropped too — and appends
    ``VERDICT:``. The model then writes the verdict itself, from its own steps
    (budget forcing; the s1 paper, Muennighoff et al. 2025, forces the end of
    thinking the same way). Traces made so record where the model's own text ends
    (``TraceRow.verdict_forced_at``), and the metrics count them.
    """
    text = (text or "")[:MAX_OUTPUT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    if has_verdict_line(text):
        return None
    lines = text.split("\n")
    if cut:
        lines = lines[:-1]
    while True:  # drop trailing blank lines, and a last line that repeats the one before it
        while lines and not lines[-1].strip():
            lines.pop()
        before = next((j for j in range(len(lines) - 2, -1, -1) if lines[j].strip()), None)
        if before is None or _loop_key(lines[before]) != _loop_key(lines[-1]):
            break
        del lines[before + 1 :]
    kept = "\n".join(lines).rstrip()
    return f"{kept}\n{VERDICT_HEADER}" if kept else VERDICT_HEADER


def own_verdict_prefix(text: str | None) -> str | None:
    """The answer up to the ``VERDICT:`` line it wrote itself, ending in :data:`VERDICT_HEADER`; None if it has none.

    What a model under the verdict grammar (:mod:`r2ta.grammar`) continues from, so that a
    verdict it started itself is decoded under the grammar as one R2tA asks for is: the
    steps before it are the model's, kept as written; the verdict is decoded again.
    """
    text = (text or "")[:MAX_OUTPUT_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    at = next((i for i, line in enumerate(lines) if _VERDICT.match(_clean_line(line))), None)
    if at is None:
        return None
    kept = "\n".join(lines[:at]).rstrip()
    return f"{kept}\n{VERDICT_HEADER}" if kept else VERDICT_HEADER


# -- rendering ---------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_step(step: Step) -> str:
    body = " ".join(part for part in (_one_line(step.text), f"-> {step.finding}" if step.finding else "") if part)
    return f"Step {step.number} [{', '.join(step.elements)}]: {body}".rstrip()


def render_trace(steps: list[Step], verdict: list[Mistake]) -> str:
    """A trace in exactly the format :func:`parse_output` reads (steps renumbered 1..n)."""
    lines = [render_step(s.model_copy(update={"number": i})) for i, s in enumerate(steps, 1)]
    lines.append("VERDICT:")
    if not verdict:
        lines.append("NONE")
    for m in verdict:
        explanation = _one_line(m.explanation)
        lines.append(f"MISTAKE: {m.category} | {', '.join(m.elements)} | {explanation}".rstrip())
    return "\n".join(lines)


def make_step(number: int, element_ids: list[str], text: str, finding: str) -> Step:
    """A step written by R2tA itself (auditor, editor): elements referenced by id."""
    return Step(number=number, elements=list(element_ids), element_ids=list(element_ids), text=_one_line(text), finding=finding)


# -- decisions in an answer (for the SFT loss) --------------------------------------

_STEP_ELEMENTS = re.compile(r"^[ \t]*step\s*#?\s*\d{1,6}\s*\[([^\]\n]*)\]", re.IGNORECASE | re.MULTILINE)
_STEP_FINDING = re.compile(r"^[ \t]*step\b[^\n]*?(?:->|=>|→)[ \t]*([^\n]*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_MISTAKE_FIELDS = re.compile(r"^[ \t]*mistake\s*\d*\s*:[ \t]*([^|\n]*?)[ \t]*\|[ \t]*([^|\n]*?)[ \t]*(?:\||$)",
                             re.IGNORECASE | re.MULTILINE)
_NONE_LINE = re.compile(r"^[ \t]*(none)[ \t]*$", re.IGNORECASE | re.MULTILINE)
# "Step N [elements]: FACTS. explanation -> finding" or "Step N [elements]: FACTS -> finding" (evidence walk)
_STEP_FACTS = re.compile(
    r"^[ \t]*step\s*#?\s*\d{1,6}\s*\[[^\]\n]*\]:[ \t]*([^\n]*?)(?:\.[ \t][^\n]*?)?[ \t]*(?:->|=>|→)[ \t]*([^\n]*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def defect_fact_spans(answer: str) -> list[tuple[int, int]]:
    """Character spans of the structural facts (``key none``, ``1 end``, ``recursive on E, no roles``) that an
    evidence-walk step states before its explanation, on the steps that find a mistake (not ``-> ok``).

    run64n (docs/measured/loop-run64n-disguised-2026-12-06.txt) found the trained model writes the usual
    fact there ("key <first attribute>" where the line has no key); training can weight these tokens
    (``defect_fact_weight``). A step without facts, or one that finds nothing, has no span. Sorted, non-empty.
    """
    spans = []
    for match in _STEP_FACTS.finditer(answer):
        if match.group(2).strip().lower() in ("ok", ""):
            continue
        start, end = match.span(1)
        if end > start:
            spans.append((start, end))
    return spans


def decision_spans(answer: str) -> list[tuple[int, int]]:
    """Character spans of the answer where it *decides* something, in the format :func:`render_trace` writes.

    A decision is which constructs a step examines (the ``[...]`` of ``Step N [...]``), what the step
    finds (after ``->``: ``ok`` or a category), and what the verdict claims (the category and the
    elements of each ``MISTAKE`` line, or ``NONE``). Everything else restates a decision in words.
    Training can weight these tokens (``decision_token_weight``): run64 measured that the SFT loss fell
    to 0.45 on the other answer tokens while the first construct a target names kept probability 0.002
    (docs/measured/loop-run64-more-data-2026-12-03.txt); weighting them 5x did not help (run64w, same folder).
    Spans are sorted, non-empty, and do not overlap.
    """
    spans: list[tuple[int, int]] = []
    for pattern in (_STEP_ELEMENTS, _STEP_FINDING, _MISTAKE_FIELDS, _NONE_LINE):
        for match in pattern.finditer(answer):
            for group in range(1, (pattern.groups or 0) + 1):
                start, end = match.span(group)
                if end > start:
                    spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
