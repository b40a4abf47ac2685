"""Asking a model about an uploaded diagram: parsed verdict, checker confirmation, garbage tolerated."""

from __future__ import annotations

import pytest

from r2ta.backends import Backend, BackendConfig, Generation
from r2ta.diagnose import DiagnoseError, diagnose
from r2ta.eerd import MAX_TEXT_CHARS, parse_diagram


class QueuedBackend(Backend):
    """Returns queued outputs in order (unit tests only)."""

    def __init__(self, outputs):
        super().__init__(BackendConfig(kind="local", model="fake"))
        self.outputs = list(outputs)
        self.prompts = []

    @property
    def id(self):
        return "fake"

    def generate(self, prompts, max_new_tokens=512, temperature=None):
        self.prompts.extend(prompts)
        return [Generation(text=self.outputs.pop(0), completion_tokens=7, latency_s=0.1) for _ in prompts]


def keyless() -> dict:
    return {
        "id": "up",
        "name": "Upload",
        "entities": [
            {"id": "STUDENT", "name": "STUDENT", "attributes": [{"id": "STUDENT.Name", "name": "Name"}]},
            {"id": "COURSE", "name": "COURSE", "attributes": [{"id": "COURSE.Code", "name": "Code", "key": True}]},
        ],
        "relationships": [
            {"id": "TAKES", "name": "TAKES", "participants": [{"entity": "STUDENT"}, {"entity": "COURSE"}]}
        ],
    }


def test_model_claim_confirmed_by_checker_and_prompt_carries_requirements():
    d = parse_diagram(keyless())
    out = (
        "Step 1 [STUDENT]: STUDENT has no key. -> missing_key\n"
        "VERDICT:\nMISTAKE: missing_key | STUDENT | STUDENT needs a key such as a student number.\n"
        "MISTAKE: cardinality | TAKES | made up.\n"
    )
    backend = QueuedBackend([out])
    result = diagnose(d, "Each student has a unique number.", backend)
    assert [m.category for m in result.parsed.verdict] == ["missing_key", "cardinality"]
    assert [m.category for m in result.findings] == ["missing_key"]
    assert [m.category for m in result.confirmed] == ["missing_key"]
    assert "Each student has a unique number." in backend.prompts[0][-1]["content"]


def test_garbage_output_is_reported_not_raised():
    result = diagnose(parse_diagram(keyless()), "text", QueuedBackend(["\x00<<<garbage>>> no verdict"]))
    assert not result.parsed.valid and result.parsed.errors
    assert result.confirmed == []


def test_oversized_requirements_refused():
    with pytest.raises(DiagnoseError, match="limit is"):
        diagnose(parse_diagram(keyless()), "x" * (MAX_TEXT_CHARS + 1), QueuedBackend(["NONE"]))


class ContinuingBackend(QueuedBackend):
    """Can continue an answer (as a local model can): a prefixed call answers from the same queue."""

    @property
    def can_continue(self):
        return True

    def generate(self, prompts, max_new_tokens=512, temperature=None, *, prefixes=None):
        self.prefixes = prefixes
        return super().generate(prompts, max_new_tokens, temperature)


def test_a_model_that_writes_no_verdict_is_asked_for_one():
    d = parse_diagram(keyless())
    steps = "Step 1 [STUDENT]: STUDENT has no key. -> missing_key\nStep 2 [COURSE"
    backend = ContinuingBackend([steps, "MISTAKE: missing_key | STUDENT | STUDENT needs a key."])
    result = diagnose(d, "Each student has a unique number.", backend)
    assert backend.prefixes == ["Step 1 [STUDENT]: STUDENT has no key. -> missing_key\nStep 2 [COURSE\nVERDICT:\n"]
    assert result.parsed.valid and [m.category for m in result.confirmed] == ["missing_key"]
    assert result.verdict_forced_at == len(steps) + 1 and result.completion_tokens == 14
    # switched off, the answer stays as the model left it
    off = diagnose(d, "x", ContinuingBackend([steps]), verdict_tokens=0)
    assert not off.parsed.valid and off.verdict_forced_at is None and off.raw_output == steps
