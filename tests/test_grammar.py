"""The verdict grammar (r2ta.grammar): its state machine on a real tokenizer, and a random tiny model
decoding under it through LocalBackend / ask_for_verdicts — whatever the model prefers, the verdict parses
and names only the diagram's elements."""

from __future__ import annotations

import re

import pytest
from fixtures_eerd import company
from test_backends import _chat, tiny_llama  # noqa: F401  (tiny_llama is a fixture)

from r2ta.backends import BackendConfig, BackendError, Generation, LocalBackend, ask_for_verdicts, get_backend
from r2ta.eerd import CATEGORIES
from r2ta.grammar import VerdictGrammar, _Row, grammar_elements, verdict_regex
from r2ta.prompting import parse_output


def _walk(grammar: VerdictGrammar, text: str, remaining: int | None = None) -> _Row:
    """Feed ``text``'s tokens through the grammar, asserting each one is allowed when it comes."""
    row = _Row()
    ids = grammar.tok(text, add_special_tokens=False)["input_ids"]
    for k, t in enumerate(ids):
        allowed = grammar.allowed(row, None if remaining is None else remaining - k)
        if allowed is None:
            assert t not in grammar.line_break_tokens(), f"token {k} {grammar.tok.decode([t])!r} breaks a line"
        else:
            assert t in allowed, f"token {k} {grammar.tok.decode([t])!r} not allowed in state {row.state}"
        grammar.advance(row, t)
    return row


def test_grammar_elements_leave_out_what_the_line_format_cannot_carry():
    assert grammar_elements(["B", "A", "A", "X,Y", "P|Q", "L\nM", " pad", ""]) == ["A", "B"]


def test_the_grammar_accepts_verdict_lines_and_nothing_else(tiny_llama):
    _, tok = tiny_llama
    g = VerdictGrammar(tok, ["EMPLOYEE", "WORKS_FOR", "EMPLOYEE.Ssn"])
    row = _walk(g, "MISTAKE: cardinality | WORKS_FOR, EMPLOYEE.Ssn | many\nMISTAKE: missing_key | EMPLOYEE | no key")
    assert row.state == "text" and row.lines == 2 and row.history == ["line", "more", "last", "line", "last"]
    g.advance(row, g.newline)
    assert row.state == "line" and set(g.eos) <= g.allowed(row)  # after a complete line the verdict may end
    assert _walk(g, "NONE").state == "end"
    # what the model may start with: only the start of a MISTAKE line or NONE, never a step
    start = g.allowed(_Row())
    step = tok("Step", add_special_tokens=False)["input_ids"][0]
    assert step not in start and tok("MISTAKE", add_special_tokens=False)["input_ids"][0] in start
    # an unknown category, an unknown element: the next token is refused at some point
    for bad in ("MISTAKE: typo | EMPLOYEE | x", "MISTAKE: cardinality | DEPARTMENT | x"):
        with pytest.raises(AssertionError, match="not allowed"):
            _walk(g, bad)


def test_the_grammar_ends_a_verdict_rather_than_start_a_line_it_cannot_finish(tiny_llama):
    _, tok = tiny_llama
    g = VerdictGrammar(tok, ["EMPLOYEE", "WORKS_FOR"])
    row = _walk(g, "MISTAKE: cardinality | WORKS_FOR | many")
    g.advance(row, g.newline)
    assert g.allowed(row, remaining=g.reserve - 1) == set(g.eos)
    assert g.allowed(row, remaining=g.reserve) > set(g.eos)
    # an element list running out of budget closes with its next element
    row = _walk(g, "MISTAKE: cardinality | WORKS_FOR,")
    closing = g.allowed(row, remaining=3)
    assert all(any(seq[0] == t for seq in g.last_element.done) for t in closing)
    # too long an explanation gets a line break
    row = _walk(g, "MISTAKE: cardinality | WORKS_FOR | x")
    row.text_tokens = g.max_text_tokens
    assert g.must_break(row)


def test_every_verdict_a_random_model_writes_under_the_grammar_parses(tiny_llama):
    model, tok = tiny_llama
    diagram = company()
    backend = LocalBackend(BackendConfig(kind="local", model="tiny", device="cpu", batch_size=3, verdict_grammar=True),
                           model=model, tokenizer=tok)
    assert backend.id == "tiny+grammar"
    prompts = [_chat(t) for t in ("Step 1", "check EMPLOYEE and WORKS_FOR", "VERDICT", "a diagram", "x")]
    free = LocalBackend(BackendConfig(kind="local", model="tiny", device="cpu", batch_size=3), model=model, tokenizer=tok)
    # budgets: plenty, and just enough for one line (the tiny tokenizer spends a token on most characters)
    tight = VerdictGrammar(tok, diagram.element_ids()).reserve + 2
    for b, budget in ((backend, 200), (backend, tight), (free, 200)):
        gens = [Generation(text="Step 1 [EMPLOYEE]: the key is Ssn -> ok\nStep 2 [WORKS", finish_reason="length")
                for _ in prompts]
        forced = ask_for_verdicts(b, prompts, gens, budget, [diagram.element_ids()] * len(prompts))
        assert sorted(forced) == list(range(len(prompts)))
        parsed = [parse_output(g.text, diagram) for g in gens]
        if b is free:  # the random model on its own writes no verdict that parses
            assert not any(p.valid for p in parsed)
            continue
        regex = re.compile(verdict_regex(diagram.element_ids()))  # what a vLLM server is sent instead
        for g, p in zip(gens, parsed):
            assert p.valid, (g.text, p.errors)
            assert p.verdict and all(m.category in CATEGORIES for m in p.verdict)
            assert all(e in diagram.element_ids() for m in p.verdict for e in m.elements)
            assert regex.fullmatch(g.text.split("VERDICT:\n", 1)[1].rstrip("\n")), g.text


def test_a_verdict_the_model_started_itself_is_decoded_under_the_grammar_too(tiny_llama):
    model, tok = tiny_llama
    diagram = company()
    steps = "Step 1 [EMPLOYEE]: the key is Ssn -> ok\n"
    own = [steps + "VERDICT: MISTAKE: no_such_category | NOT_AN_ELEMENT | made up",  # invalid, ungrounded
           steps + "**Verdict:** NONE\nStep 2 [WORKS_FOR]: after the verdict -> ok",
           steps + "VERDICT:\nMISTAKE: missing_key | EMPLOYEE | cut mid-verdict by the bud"]
    prompts = [_chat("x")] * len(own)
    kinds = {}
    for grammar in (True, False):
        backend = LocalBackend(BackendConfig(kind="local", model="tiny", device="cpu", batch_size=3, verdict_grammar=grammar),
                               model=model, tokenizer=tok)
        gens = [Generation(text=t, completion_tokens=99, finish_reason=r) for t, r in zip(own, ("stop", "stop", "length"))]
        kinds[grammar] = ask_for_verdicts(backend, prompts, gens, 200, [diagram.element_ids()] * len(own))
        if not grammar:  # without the grammar an own verdict stays as the model wrote it
            assert [g.text for g in gens] == own
            continue
        # decoded again from the model's own VERDICT: line, and not counted as asked for (None)
        assert sorted(kinds[grammar]) == [0, 1, 2] and all(at is None for at, _ in kinds[grammar].values())
        for g, (_, more) in zip(gens, kinds[grammar].values()):
            assert g.text.startswith(steps + "VERDICT:\n")
            parsed = parse_output(g.text, diagram)
            assert parsed.valid, (g.text, parsed.errors)
            assert all(m.category in CATEGORIES and set(m.elements) <= set(diagram.element_ids()) for m in parsed.verdict)
            # the tokens: the steps kept plus the verdict decoded, not the replaced verdict's
            assert g.completion_tokens == len(tok(steps, add_special_tokens=False)["input_ids"]) + more
    assert kinds[False] == {}


def test_a_grammar_needs_a_backend_that_continues_and_the_diagrams(tiny_llama):
    with pytest.raises(BackendError, match="verdict_grammar on an openai backend needs assistant_prefill"):
        get_backend("ollama", verdict_grammar=True)  # a server that cannot continue an answer
    model, tok = tiny_llama
    backend = LocalBackend(BackendConfig(kind="local", model="tiny", device="cpu", verdict_grammar=True),
                           model=model, tokenizer=tok)
    with pytest.raises(BackendError, match="needs each diagram's elements"):
        ask_for_verdicts(backend, [_chat("x")], [Generation(text="Step 1", finish_reason="length")], 20)


def test_a_line_cut_before_its_explanation_is_dropped():
    from r2ta.grammar import trim_incomplete

    line = "MISTAKE: cardinality | WORKS_FOR, EMPLOYEE | many"
    assert trim_incomplete(line) == line
    assert trim_incomplete(line + "\nMISTAKE: missing_key | EMPL") == line + "\n"
    assert trim_incomplete(line + "\nMISTAKE: missing_key | EMPLOYEE |") == line + "\nMISTAKE: missing_key | EMPLOYEE |"
    assert trim_incomplete("MISTAKE: missi") == ""
    assert trim_incomplete("NONE") == "NONE"


def test_the_regex_for_a_server_names_hostile_element_ids_literally():
    ids = ['EMP"<b>', "x.y", "R{1}*", "back\\slash", "a|b", "[OPT]", "ünïcode name"]
    regex = re.compile(verdict_regex(ids))
    for e in ('EMP"<b>', "x.y", "R{1}*", "back\\slash", "[OPT]", "ünïcode name"):
        assert regex.fullmatch(f"MISTAKE: cardinality | {e} | why"), e
    assert not regex.fullmatch("MISTAKE: cardinality | xzy | why")  # "." is no wildcard
    assert not regex.fullmatch("MISTAKE: cardinality | a|b | why")  # the line format cannot carry it
    assert regex.fullmatch("MISTAKE: cardinality | x.y, [OPT] | why\nNONE") is None  # NONE is a verdict of its own
    with pytest.raises(ValueError, match="at least one element"):
        verdict_regex(["a|b", " padded "])
