"""Ask a model to audit one diagram against pasted requirements (the upload page's "ask the model").

Runs one generation through any :class:`~r2ta.backends.Backend` with the same
prompt and parser as the pipeline, and reports the structural checker's view
beside it, so a teacher can compare what the model says with what is certain.
No streamlit here; nothing is stored (an uploaded diagram is not a dataset variant).
"""

from __future__ import annotations

from dataclasses import dataclass

from r2ta.backends import Backend, ask_for_verdicts
from r2ta.checker import check
from r2ta.eerd import EERD, MAX_TEXT_CHARS, Mistake
from r2ta.errors import R2taError
from r2ta.metrics import match
from r2ta.prompting import DEFAULT_VERDICT_TOKENS, ParsedOutput, build_messages, parse_output

MAX_NEW_TOKENS = 512


class DiagnoseError(R2taError):
    """The request cannot be sent as it is (e.g. requirements text too long)."""


@dataclass
class Diagnosis:
    raw_output: str
    parsed: ParsedOutput
    findings: list[Mistake]  # the structural checker's findings on the same diagram
    confirmed: list[Mistake]  # model claims that a structural finding confirms
    latency_s: float
    completion_tokens: int | None
    # R2tA appended "VERDICT:" after this many characters of the model's own answer (it wrote none)
    verdict_forced_at: int | None = None


def diagnose(
    diagram: EERD,
    requirements: str,
    backend: Backend,
    max_new_tokens: int = MAX_NEW_TOKENS,
    verdict_tokens: int = DEFAULT_VERDICT_TOKENS,
) -> Diagnosis:
    requirements = requirements.strip()
    if len(requirements) > MAX_TEXT_CHARS:
        raise DiagnoseError(
            f"the requirements text has {len(requirements):,} characters; the limit is {MAX_TEXT_CHARS:,}"
        )
    prompts = [build_messages(requirements or "(no requirements given)", diagram)]
    generations = backend.generate(prompts, max_new_tokens)
    forced_at = ask_for_verdicts(backend, prompts, generations, verdict_tokens, [diagram.element_ids()]).get(0, (None, 0))[0]
    generation = generations[0]
    parsed = parse_output(generation.text, diagram)
    findings = check(diagram)
    pairs = match(parsed.verdict, findings)
    confirmed = [parsed.verdict[i] for i, _ in pairs]
    return Diagnosis(generation.text, parsed, findings, confirmed, generation.latency_s, generation.completion_tokens,
                     forced_at)
