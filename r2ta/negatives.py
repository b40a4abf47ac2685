"""Hard DPO negatives: the reviewed trace with exactly one planted error.

The R2tA pair is (reviewed trace, the model's original trace). Measured on the
embedded model (README, "What it measures today"), the original traces of a
135M base model are degenerate loops ("The VERDICT is: The VERDICT is: ..."):
DPO separates them from a real trace in a few steps (loss 0.693 -> 0.06 by step
8) and learns nothing about *which* mistakes to report. A planted negative
differs from the chosen trace in one place, so the only thing DPO can learn
from the pair is that one place:

* ``omission`` -- one true mistake is dropped from the verdict and its step
  says ``ok`` (in a walk, :func:`r2ta.audit.walk_steps`, the step becomes the
  construct's own bare ``Step n [X]: -> ok``, exactly as the walk without that
  mistake writes it, so the pair differs in one decision and one verdict line);
* ``hallucination`` -- a mistake that is not there is claimed against a real
  element (an entity that has a key is said to have none; a relationship's
  cardinality is said to contradict the requirements), with a step for it (the
  step that said ``ok`` about exactly that element, as a walk has, becomes it);
* ``misclassification`` -- one true mistake keeps its elements but gets
  another category, in its step and in the verdict.

Every edit works on the trace's lines, so the rejected text is the chosen text
but for the planted error (no re-rendering). The kind is chosen from what the
trace allows, deterministically by ``key`` (a variant id), so an export is
reproducible. A trace that allows no kind yields ``None``.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import hashlib
import re

from r2ta.eerd import CATEGORIES, EERD
from r2ta.prompting import ParsedOutput, parse_output, render_step

KINDS = ("omission", "hallucination", "misclassification")

# The category a misclassification swaps in: a near neighbour, so the pair is hard.
_CONFUSED_WITH = {
    "missing_key": "weak_entity",
    "weak_entity": "missing_key",
    "cardinality": "participation",
    "participation": "cardinality",
    "attribute_placement": "foreign_key_attribute",
    "attribute_kind": "attribute_placement",
    "foreign_key_attribute": "attribute_placement",
    "relationship_structure": "cardinality",
    "missing_element": "relationship_structure",
    "specialization_constraint": "specialization_structure",
    "specialization_structure": "specialization_constraint",
}
assert set(_CONFUSED_WITH) == set(CATEGORIES) and all(a != b for a, b in _CONFUSED_WITH.items())

_MISTAKE_LINE = re.compile(r"^MISTAKE:\s*([a-z_]+)\s*\|", re.IGNORECASE)
_STEP_FINDING = re.compile(r"\s->\s*([a-z_]+)\s*$", re.IGNORECASE)


def _pick(options: list, key: str, salt: str):
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _mistake_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if _MISTAKE_LINE.match(line.strip())]


def _step_for(lines: list[str], mistake_line: str) -> int | None:
    """The step behind a verdict line: its finding is the line's category, its elements the line's
    when some step has exactly those (the auditor writes both alike), else the first with the category."""
    category, _, rest = mistake_line.split(":", 1)[1].partition("|")
    category, elements = category.strip().lower(), rest.partition("|")[0].strip()
    candidates = [i for i, line in enumerate(lines) if line.lower().startswith("step")
                  and (m := _STEP_FINDING.search(line)) and m.group(1).lower() == category]
    exact = [i for i in candidates if f"[{elements}]" in lines[i]]
    return (exact or candidates or [None])[0]


def _verdict_at(lines: list[str]) -> int | None:
    return next((i for i, line in enumerate(lines) if line.strip().upper().startswith("VERDICT")), None)


def _walk_omission(lines: list[str], targets: list[int], i: int, parsed: ParsedOutput, diagram: EERD) -> list[str] | None:
    """The omission in a walk (plain or evidence): the walk of the verdict without mistake ``i``, or None when
    ``lines`` is no walk."""
    from r2ta.audit import walk_steps  # not at the top: r2ta.audit is the heavier module

    at = [n for n, line in enumerate(lines) if line.lower().startswith("step")]
    if not at or at != list(range(at[0], at[-1] + 1)) or len(targets) != len(parsed.verdict):
        return None
    written = [lines[n].strip() for n in at]
    shape = next((e for e in (False, True)
                  if written == [render_step(s) for s in walk_steps(diagram, parsed.verdict, evidence=e)]), None)
    if shape is None:
        return None
    j = targets.index(i)
    steps = [render_step(s) for s in walk_steps(diagram, parsed.verdict[:j] + parsed.verdict[j + 1:], evidence=shape)]
    out = lines[: at[0]] + steps + lines[at[-1] + 1:]
    del out[i + len(steps) - len(at)]
    if not _mistake_lines(out):
        out.insert(i + len(steps) - len(at), "NONE")
    return out


def _omission(lines: list[str], key: str, parsed: ParsedOutput | None = None, diagram: EERD | None = None) -> list[str] | None:
    targets = _mistake_lines(lines)
    if not targets:
        return None
    i = _pick(targets, key, "omission")
    if parsed is not None and diagram is not None and (walk := _walk_omission(lines, targets, i, parsed, diagram)):
        return walk
    out = list(lines)
    step = _step_for(out, lines[i])
    if step is not None:
        out[step] = _STEP_FINDING.sub(" -> ok", out[step])
    del out[i]
    if not _mistake_lines(out):
        out.insert(i, "NONE")
    return out


def _misclassification(lines: list[str], key: str) -> list[str] | None:
    targets = _mistake_lines(lines)
    if not targets:
        return None
    i = _pick(targets, key, "misclassification")
    category = _MISTAKE_LINE.match(lines[i].strip()).group(1).lower()  # type: ignore[union-attr]
    wrong = _CONFUSED_WITH.get(category)
    if wrong is None:
        return None
    out = list(lines)
    step = _step_for(out, lines[i])
    out[i] = re.sub(r"^(\s*MISTAKE:\s*)[a-z_]+", lambda m: m.group(1) + wrong, out[i], count=1, flags=re.IGNORECASE)
    if step is not None:
        out[step] = _STEP_FINDING.sub(f" -> {wrong}", out[step])
    return out


def _hallucination(lines: list[str], diagram: EERD, claimed: set[str], key: str) -> list[str] | None:
    """Claim a mistake the verdict does not have, against an element no verdict line names."""
    options: list[tuple[str, str, str, str, str]] = []  # (category, elements, step text, explanation, element id)
    for e in diagram.entities:
        keys = [a for a in e.attributes if a.key]
        if e.id not in claimed and not e.weak and keys and "missing_key" not in _categories(lines):
            options.append(("missing_key", e.name, f"{e.name} has no key attribute that identifies each instance.",
                            f"{e.name} has no key.", e.id))
    for r in diagram.relationships:
        if r.id not in claimed and len(r.participants) == 2 and "cardinality" not in _categories(lines):
            options.append(("cardinality", r.name, f"The maximum bounds of {r.name} contradict the requirements.",
                            f"The cardinality of {r.name} is the wrong way round.", r.id))
    if not options:
        return None
    category, elements, step_text, explanation, element_id = _pick(options, key, "hallucination")
    verdict = _verdict_at(lines)
    if verdict is None:
        return None
    out = list(lines)
    # A step that says ok about exactly this element (a walk has one per construct) turns into the claim,
    # so the pair differs in that step and the verdict line; otherwise the claim is a new last step. An
    # evidence walk's step keeps its facts (the claim then contradicts them, as a model's false claim would).
    own = re.compile(rf"^step\s*(\d+)\s*\[{re.escape(elements)}\]:\s*(.*?)\s*->\s*ok\s*$", re.IGNORECASE)
    at = next((i for i, line in enumerate(lines[:verdict]) if own.match(line.strip())), None)
    if at is not None:
        number, said = own.match(lines[at].strip()).groups()  # type: ignore[union-attr]
        facts = f"{said}. " if said and said == _facts_of(diagram, element_id) else ""
        out[at] = f"Step {number} [{elements}]: {facts}{step_text} -> {category}"
    else:
        n_steps = sum(1 for line in lines[:verdict] if line.lower().startswith("step"))
        out.insert(verdict, f"Step {n_steps + 1} [{elements}]: {step_text} -> {category}")
    out = [line for line in out if line.strip().upper() != "NONE"]
    out.append(f"MISTAKE: {category} | {elements} | {explanation}")
    return out


def _facts_of(diagram: EERD, element_id: str) -> str | None:
    """The facts an evidence walk states about the construct ``element_id`` (None if it is none)."""
    from r2ta.audit import construct_evidence, constructs  # not at the top: r2ta.audit is the heavier module

    return next((construct_evidence(diagram, c) for c in constructs(diagram) if c.id == element_id), None)


def _categories(lines: list[str]) -> set[str]:
    return {m.group(1).lower() for line in lines if (m := _MISTAKE_LINE.match(line.strip()))}


def planted_negative(chosen: str, diagram: EERD, key: str, kind: str | None = None) -> tuple[str, str] | None:
    """``(kind, rejected text)``: ``chosen`` with one planted error, or None when it allows none.

    ``kind`` forces one of :data:`KINDS`; by default the kind is picked by ``key``
    among those the trace allows. The result always parses as a valid trace.
    """
    parsed = parse_output(chosen, diagram)
    if not parsed.valid:
        return None
    lines = chosen.strip().splitlines()
    claimed = {e for m in parsed.verdict for e in m.elements}
    makers = {
        "omission": lambda: _omission(lines, key, parsed, diagram),
        "hallucination": lambda: _hallucination(lines, diagram, claimed, key),
        "misclassification": lambda: _misclassification(lines, key),
    }
    if kind is not None and kind not in makers:
        raise ValueError(f"unknown negative kind {kind!r}; one of {', '.join(KINDS)}")
    order = [kind] if kind else sorted(KINDS, key=lambda k: hashlib.sha256(f"{k}:{key}".encode()).digest())
    for k in order:
        out = makers[k]()
        if out is None:
            continue
        text = "\n".join(out)
        if text.strip() != chosen.strip() and parse_output(text, diagram).valid:
            return k, text
    return None
